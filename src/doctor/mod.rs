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
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
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
