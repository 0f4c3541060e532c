//! `dli-gitops doctor`: first contact with an account. Read-only checks of one target (signed
//! calls and clock skew, project id, endpoints, buckets, queues, the DataArts workspace, IAM
//! permissions, the rate limit), each `ok` / `warn` / `fail` / `not checked` with what to do;
//! with `--probe` a scratch Flink job of its own that exercises every endpoint the product uses
//! and answers the open assumptions; with `--record DIR` every request and answer of the probe,
//! redacted, for the tests under `tests/fixtures/real/`.
//!
//! The doctor never takes the journal's lock (it opens a throw-away journal), so it runs beside
//! a daemon. It writes only under `<location prefix>.dli-gitops-doctor/` in the target's buckets
//! and touches no job but its own scratch jobs (name prefix [`PROBE_PREFIX`] and tag
//! [`PROBE_TAG_KEY`]).
//!
//! # Design and invariants
//!
//! `dli-gitops doctor` is first contact with an account: what a new user must learn in minutes,
//! safely. `main.rs` fills `DoctorCommand`; `doctor_command` loads the config, builds the target
//! with `TargetContext::with_journal` over a **throw-away journal** (a temp directory: the doctor
//! never takes the daemon's lock and reads nothing from its journal), runs the checks, optionally
//! the probe, and prints text or `--json`. Exit code: 1 for any `fail`, else 2 for any `warn`, else 0
//! (`not checked` is neither).
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | `DoctorCommand`, `Check` (`ok`/`warn`/`fail`/`not_checked`, detail, fix), `DoctorReport` (text, JSON, exit code), `Finding`/`Verdict`, `run` |
//! | `checks.rs` | the read-only checks, in order; each failure carries its fix |
//! | `probe.rs` | `--probe`: the scratch job's steps, the findings, cleanup (`remove_leftovers`, `remove_objects`) |
//! | `record.rs` | `--record`: the `Recorder` (an exchange observer), redaction, `load` for the tests |
//! | `project.rs` | the project id of the region from IAM (`cloud::iam`), for the `project id` check's fix |
//!
//! The checks and where each assumption comes from:
//!
//! * **signed calls / clock skew**: one signed DLI call, the queue list. The skew is our clock minus
//!   the answer's `Date` header, read through the exchange observer (below). APIG refuses a
//!   signature 15 minutes off (the emulator's `auth.rs` applies the same window); the doctor fails
//!   at 15 minutes and warns from 1. A refusal is `APIG.0301`/HTTP 401 (`cloud::error::AUTH_CODES`).
//! * **project id**: HTTP 403 `APIG.0302` on that call (README "Being a good API citizen"). The
//!   fix then names the right id, looked up with the same AK/SK (`project.rs`: IAM
//!   `GET /v3/projects?name={region}`, `KeystoneListProjects`, signed as the SDK's
//!   `BasicCredentials.process_auth_params` signs its own project-id lookup: no `X-Project-Id`).
//! * **endpoints**: the first call of each service; a transport error fails the endpoint with the
//!   default host of the region (`ServiceEndpoints::for_region`). TLS is reqwest's verification.
//! * **buckets**: staging, backups (the target's locations) and every bucket a job names in
//!   `obs_bucket`/`checkpoint_path`: put, get, delete of one object under
//!   `<prefix>.dli-gitops-doctor/`. A missing bucket is OBS's 404 `NoSuchBucket` (obs_04_0115).
//! * **queues**: `DliClient::list_queues`, `GET /v1.0/{project_id}/queues?queue_type=all` (SDK
//!   `ListQueuesRequest`: `queue_type` `sql`/`general`/`all`, default `sql`, so without `all` the
//!   `general` queues Flink runs on would be missing; `ListQueuesResponse`
//!   `{is_success, message, queues: [QueueDetails]}`, `queue_details.py`). Listing queues needs no
//!   IAM action (DLI user guide "IAM Permissions", dli_01_0441: "Querying all queues: /"). Every
//!   `queue_name` of the target's jobs must be listed and not of type `sql`.
//! * **dataarts workspace**: one `DlfClient::list_jobs` page (`jobType=BATCH`, a name that matches
//!   nothing) when the repository has DLF jobs or the target names a `workspace`.
//! * **permissions**: a harmless call per permission where one exists: list Flink jobs (a name that
//!   matches nothing), list DLF jobs, the bucket round trips. A refusal is HTTP 403 (other than
//!   `APIG.0302`) or `DLI.0003` (dli_02_0056: permission check failed). Writes have no harmless
//!   form and are reported `not checked`; the probe exercises them.
//! * **rate limit**: `rate_limit.requests_per_second` against the documented 30 requests/s per user
//!   (the figure README gives; a warning above it).
//! * **iam endpoint**: used only for tokens (password credentials); `not checked` with AK/SK.
//!
//! The probe (`--probe`, never the default) works on scratch jobs of its own only: name prefix
//! `dli-gitops-doctor-` and tag `dli-gitops-doctor=scratch`; cleanup removes a job only when both
//! hold (a job with the prefix but not the tag is reported and left alone). Steps: leftovers removed,
//! create (`create_sql_job`, tags in the create body), tags read back (added through the v3 tag API if
//! the create dropped them), a duplicate create sent once without the by-name check
//! (`DliClient::send_once_for_probe`), detail (what the service filled in, and whether
//! `FlinkJobConfig::field_diffs`, the planner's comparison, sees any of it), update, run / trigger
//! savepoint (under the scratch prefix) / stop with savepoint when there is a queue (`--queue`, else
//! the first queue the jobs use), export under the scratch prefix, import of that zip with
//! `is_cover`, import-savepoint of the stop savepoint (`obs://`), delete. With DataArts in use (DLF
//! jobs in git or a `workspace`): a one-node DLF job (`Dummy` node, the same scratch name) imported
//! from a zip under the scratch prefix (`write_dlf_zip`, `OVERWRITE`), its system task awaited, read
//! back and deleted; DataArts jobs carry no tags, so the marker is the job parameter
//! `dli_gitops_doctor=scratch`, and DLF cleanup removes only jobs with the prefix and that parameter.
//! Each open assumption of the fidelity review becomes a `Finding`
//! (`confirmed`/`refuted`/`not_checked`). The steps race Ctrl-C; cleanup (Flink jobs, DLF jobs, then
//! the objects under `<staging>.dli-gitops-doctor/`) runs after the steps, after a failure and after
//! Ctrl-C (tested: `ctrl_c_during_the_probe_still_removes_the_scratch_job` sends SIGINT while the
//! scratch job is submitting).
//!
//! The exchange observer (`cloud::observe_exchanges`, `cloud::Exchange`): a task-local hook in
//! `ServiceClient::attempt` that sees every answered attempt (method, path, query, request headers
//! and body, status, response headers and body) of the calls made inside its future. Credential
//! headers (`Authorization`, `X-Auth-Token`, `X-Security-Token`) are removed before an observer sees
//! anything; without an observer nothing is built. OBS (through `object_store`) is not observed.
//!
//! Recording (`--record DIR`): one `NNNN-<service>-<operation>.json` per exchange plus `probe.json`
//! (the scratch job's spec, the findings). Redacted before writing: the project id, access and
//! secret keys, security token, IAM user/domain/password, DLF workspace id (exact replacements,
//! longest first), identity keys in bodies (`owner`, `user_name`, `user_id`, `domain_id`,
//! `domain_name`, `project_id`, `tenant_id`, `tenant`), and any standalone 32-hex id; `x-request-id`
//! is kept (it is what support asks for). `tests/doctor/` greps a fresh recording for the dev
//! account's key, secret, project id and signature markers, and replays every recording under
//! `tests/fixtures/real/` (one made against the emulator is shipped) through the typed client: each
//! 2xx answer must decode, each error must decode to the recorded status and code, and the planner
//! (`field_diffs`) must find no difference between the first detail read back and the spec in
//! `probe.json`. `the_emulator_answers_in_the_shape_of_every_recording` runs the same probe against
//! a fresh emulator and compares, for the first answer of each (service, operation, status class),
//! the keys and JSON types recursively (arrays by their first element, `null` matching anything):
//! a key only one side has, or a number where the other has a string, is a failure naming the
//! path. A real recording therefore fails the suite until the emulator answers like the service.
//!
//! Tests (`tests/doctor/`, the real binary against the emulator on loopback): a sound setup exits
//! 0; a wrong secret fails `signed calls`, a wrong project `project id`, a missing staging bucket
//! `bucket staging`, a queue the project lacks `queues`, and the `forbidden` fault on
//! `ListFlinkJobs`/`ListQueues` the permission and queue checks, each with its fix and with no secret
//! in the output; `--probe --record` passes every step, confirms the assumptions on the emulator,
//! removes a tagged leftover, leaves an untagged look-alike alone (exit 2: a warning), leaves no
//! object under the scratch prefix and records no secret.

mod checks;
mod probe;
mod project;
pub mod record;

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::apply::TargetContext;
use crate::config::Config;

pub use probe::{PROBE_PREFIX, PROBE_TAG_KEY, PROBE_TAG_VALUE};

/// The object prefix (below a location's own prefix) the doctor writes and removes.
pub const OBJECT_PREFIX: &str = ".dli-gitops-doctor/";

/// `dli-gitops doctor`.
#[derive(Debug, Clone, Default)]
pub struct DoctorCommand {
    pub config: PathBuf,
    /// Default: the only target, else an error naming them.
    pub target: Option<String>,
    pub json: bool,
    /// Run the write probe (scratch jobs of its own).
    pub probe: bool,
    /// The queue the probe runs its scratch job on (default: the first queue the target's jobs
    /// use); without one, run/savepoint/stop are not checked.
    pub queue: Option<String>,
    /// Write every request and answer of the probe here, redacted.
    pub record: Option<PathBuf>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Could not be checked (no harmless call exists, or an earlier check failed).
    NotChecked,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::NotChecked => "n/c",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do, for `warn` and `fail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(Status::Fail, name.into(), detail.into(), fix.into())
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(Status::Warn, name.into(), detail.into(), fix.into())
    }

    /// A failed or warning check: what was found and what to do about it.
    fn with_fix(status: Status, name: String, detail: String, fix: String) -> Check {
        Check {
            name,
            status,
            detail,
            fix: Some(fix),
        }
    }

    pub fn not_checked(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::NotChecked,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// What the probe found out about one open assumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    Refuted,
    NotChecked,
}

/// One open assumption and what the probe saw.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub assumption: String,
    pub verdict: Verdict,
    pub observed: String,
}

/// The probe's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeReport {
    /// Every step (create, detail, update, ...) as a check line.
    pub steps: Vec<Check>,
    pub findings: Vec<Finding>,
    /// Scratch jobs removed (this run's and leftovers of earlier runs).
    pub cleaned_up: Vec<String>,
    /// Recorded exchanges (with `--record`).
    pub recorded: usize,
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub target: String,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
}

impl DoctorReport {
    fn all_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .chain(self.probe.iter().flat_map(|probe| probe.steps.iter()))
    }

    /// 0 all ok, 1 a failure, 2 warnings only (`not checked` counts as neither).
    pub fn exit_code(&self) -> u8 {
        if self.all_checks().any(|check| check.status == Status::Fail) {
            1
        } else if self.all_checks().any(|check| check.status == Status::Warn) {
            2
        } else {
            0
        }
    }

    pub fn render_text(&self) -> String {
        // Data from git or the service is escaped for the terminal (control, bidi).

        crate::terminal::escape(&self.render_text_unescaped()).into_owned()
    }

    fn render_text_unescaped(&self) -> String {
        let mut text = format!("dli-gitops doctor: target {}\n", self.target);
        let line = |text: &mut String, check: &Check| {
            text.push_str(&format!(
                "{:<5} {:<28} {}\n",
                check.status.label(),
                check.name,
                check.detail
            ));
            if let Some(fix) = &check.fix {
                text.push_str(&format!("      {:<28} fix: {fix}\n", ""));
            }
        };
        for check in &self.checks {
            line(&mut text, check);
        }
        if let Some(probe) = &self.probe {
            text.push_str("\nprobe (scratch jobs of its own):\n");
            for check in &probe.steps {
                line(&mut text, check);
            }
            text.push_str("\nopen assumptions:\n");
            for finding in &probe.findings {
                let verdict = match finding.verdict {
                    Verdict::Confirmed => "confirmed",
                    Verdict::Refuted => "REFUTED",
                    Verdict::NotChecked => "not checked",
                };
                text.push_str(&format!(
                    "  {verdict:<11} {}: {}\n",
                    finding.assumption, finding.observed
                ));
            }
            if !probe.cleaned_up.is_empty() {
                text.push_str(&format!(
                    "\nremoved scratch jobs: {}\n",
                    probe.cleaned_up.join(", ")
                ));
            }
            if probe.recorded > 0 {
                text.push_str(&format!("recorded {} exchanges\n", probe.recorded));
            }
        }
        let count = |status: Status| self.all_checks().filter(|c| c.status == status).count();
        text.push_str(&format!(
            "\n{} ok, {} warning(s), {} failure(s), {} not checked\n",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail),
            count(Status::NotChecked)
        ));
        text
    }
}

/// Errors that stop the doctor before any check (the config, the target).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("loading config {path}: {problem}")]
    Config { path: PathBuf, problem: String },
    #[error("{problem}")]
    Target { problem: String },
    #[error("doctor: {problem}")]
    Runtime { problem: String },
}

/// Runs `doctor`, prints the report (text or JSON) and returns the exit code.
pub fn doctor_command(command: &DoctorCommand, out: &mut dyn Write) -> Result<u8, DoctorError> {
    let config = Config::load(&command.config).map_err(|error| DoctorError::Config {
        path: command.config.clone(),
        problem: error.to_string(),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| DoctorError::Runtime {
            problem: format!("starting the async runtime: {error}"),
        })?;
    let report = runtime.block_on(run(&config, command))?;
    let text = if command.json {
        let value = serde_json::json!({
            "target": report.target,
            "exit_code": report.exit_code(),
            "checks": report.checks,
            "probe": report.probe,
        });
        format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )
    } else {
        report.render_text()
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| DoctorError::Runtime {
            problem: format!("writing the report: {error}"),
        })?;
    Ok(report.exit_code())
}

/// Picks the target: the one named, or the only one.
fn target_name(config: &Config, wanted: Option<&str>) -> Result<String, DoctorError> {
    if let Some(name) = wanted {
        return Ok(name.to_string());
    }
    match config.targets.as_slice() {
        [only] => Ok(only.name.clone()),
        targets => Err(DoctorError::Target {
            problem: format!(
                "{} targets are configured ({}); name one with --target",
                targets.len(),
                targets
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// A private temporary directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> Result<ScratchDir, DoctorError> {
        let path = std::env::temp_dir().join(format!(
            "dli-gitops-doctor-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        std::fs::create_dir(&path).map_err(|error| DoctorError::Runtime {
            problem: format!("creating a scratch directory {}: {error}", path.display()),
        })?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the checks (and the probe) for one target of `config`.
pub async fn run(config: &Config, command: &DoctorCommand) -> Result<DoctorReport, DoctorError> {
    let name = target_name(config, command.target.as_deref())?;
    // A throw-away journal: the doctor reads nothing from the daemon's and must not take its lock.
    let scratch = ScratchDir::create()?;
    let directory = scratch.0.clone();
    let (journal, _) = tokio::task::spawn_blocking(move || {
        crate::journal::Journal::open(&directory, crate::journal::JournalOptions::default())
    })
    .await
    .map_err(|error| DoctorError::Runtime {
        problem: error.to_string(),
    })?
    .map_err(|error| DoctorError::Runtime {
        problem: format!("opening a scratch journal: {error}"),
    })?;
    let context = TargetContext::with_journal(config, &name, journal)
        .await
        .map_err(|error| DoctorError::Target {
            problem: error.to_string(),
        })?;
    let mut report = DoctorReport {
        target: name,
        checks: Vec::new(),
        probe: None,
    };
    let outcome = checks::run_checks(&context).await;
    report.checks = outcome.checks;
    if command.probe {
        if outcome.can_probe {
            report.probe = Some(probe::run_probe(&context, command, &outcome.queues).await);
        } else {
            report.checks.push(Check::fail(
                "probe",
                "not started: signed calls or the project id failed above",
                "fix the failures above, then run `doctor --probe` again",
            ));
        }
    }
    context.shutdown().await;
    Ok(report)
}
