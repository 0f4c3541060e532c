//! Executes plans against a target: observe, plan, apply — the one code path that `plan`,
//! `apply` and the daemon share — plus `export` (adopt live jobs into a repository) and
//! `rollback` (re-import the backups an apply took).
//!
//! Layout: `live` (the service operations the executor needs) and `ledger` (the journal
//! operations) are the two seams; `target` backs them with the `cloud` clients and the
//! `journal` for one configured target; `observe`, `execute`, `export` and `rollback` are
//! written against the seams only. The executor makes no choice the plan did not make.
//!
//! # Design and invariants
//!
//! `apply` runs one pass for one target — observe, resolve unfinished intents, plan, execute — and
//! is what `pass::run_pass`, the one path of `plan`, `apply` and the daemon, runs (`reconcile_with`;
//! `dry_run` for `plan`; `reconcile_once` for a single call).
//! It is written against two seams, so the executor reads as the plan's steps and nothing else:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | `ApplyOptions`, `ApplyReport`, `ActionResult`, `ApplyError`, `reconcile_with` (generic over the seams), intent resolution |
//! | `live/mod.rs` | `LiveService`: the operations steps need (list, detail, import a job, import a savepoint, run, stop, delete, export, DLF import/poll), `ServiceFailure` (code, message, request id, retryable) |
//! | `ledger/mod.rs` | `Ledger`: intents, outcomes, observations, the `JournalView`, backups; `journal_key` (`name` for Flink, `dlf:name` for DLF) |
//! | `live/cloud.rs` | `CloudLive`: `LiveService` over `cloud` + `bundle` (DLF bundles are built and uploaded here; DLI exports are never written, only re-imported) |
//! | `ledger/journal.rs` | `JournalLedger`: `Ledger` over `journal::Journal` for one target |
//! | `target.rs` | `TargetContext`: clients, OBS locations, journal, policy and timeouts from `config`; for `embedded` endpoints the emulator (`state_dir/emulator/`), started once and shared by a daemon's targets (`with_shared`, `start_embedded_emulator`); `observe`, `reconcile_once`, `export`, `rollback`; `authorize_obs`: with the target's `authorize_obs`, one obs-authorize call for the staging, backup and checkpoint (`obs_bucket`, `checkpoint_path`) buckets not yet granted in this process, before a pass that may act (not `plan`) and before a rollback |
//! | `observe.rs` | paged listing with `show_detail`; configuration from the listing and tags in bulk when `(live id, update_time, status)` moved since the cached `Observed` record, a detail read only for an entry without a readable configuration; `reobserve_acted_on`, the look after a pass that acted |
//! | `execute.rs` | one action = intent, steps in order, outcome |
//! | `export.rs`, `rollback.rs` | the `export` and `rollback` commands' logic |
//! | `auto_rollback.rs` | automatic rollback of a failed upgrade (`policy.rollback_on_failure`): `RollbackPolicy` (target default + per-job overrides), the journaled `Memory` per job (`guard`: the upgrade under watch; `failed`: the revision marked failed), `guard_upgrades` (by the executor, right after each action's outcome), `watch` (before planning: clear marks git moved past, close windows, roll back), `held_jobs` |
//! | `pass/commands.rs` (module `pass`) | the CLI commands (config → context → one call → print) |
//!
//! Invariants and contracts:
//!
//! * Every action writes an `intent` (fsync'd) before its first call and an `outcome` after; only a
//!   journal failure stops a pass (an action that cannot be announced does not run). A failed step
//!   ends its action; the others still run. Actions touch one job each and run
//!   `parallel_actions` (default 4) at a time; results and the report keep plan order. Outcome effects: `live_id`, the savepoint taken at stop
//!   or imported, backup zips, and on success `spec_digest` = the plan's `desired_digest`,
//!   `managed: true`, `protected`; `restore_key` once the restore's `ImportSavepoint` succeeded.
//! * Run, stop and DLI import are sent once (`Call::not_idempotent`): after a timeout or a lost
//!   answer the executor reads the job (`did_it_land`): a call that took effect lets the step go
//!   on, otherwise the step fails, retryable, and the next pass plans from what it sees. Before a
//!   start that resumes, the job must hold the savepoint the action imported (or the held one the
//!   plan saw), else it is not started.
//! * One-shot effects are journaled the moment their step succeeds, as their own intent/outcome
//!   pair `<action id>-<part>`: the stop savepoint (`-stop-savepoint`) and a restore's savepoint
//!   import with its `restore_key` (`-restore`), so a crash before the action's outcome neither
//!   loses the savepoint nor applies the restore twice.
//! * Observation re-checks, by id, every job the journal manages (`Ledger::known_live_id`) that
//!   the list left out: a well-formed but implausible listing (empty, or much shorter) never turns
//!   live jobs into creates. A "no such job" answer journals the job as gone (`observed_gone`).
//! * Intents without an outcome at the start of a pass are resolved first: the jobs they name are
//!   re-read (cache bypassed) and an outcome `ok: false`, code `INTERRUPTED`, records what was found
//!   (and the savepoint the job holds), then the pass plans from that observation.
//! * Strict state (see the `savepoints` module docs): a stop with a savepoint is preceded by a triggered, copied,
//!   verified and journaled savepoint, or the job is not stopped; the stop savepoint is copied
//!   before anything restarts the job, and the restart resumes from the copy.
//! * A stop with a savepoint that reports no savepoint fails the action before anything is imported
//!   over the job, so state is never dropped silently.
//! * DLF imports are one job per zip (`<staging>/plan-<plan id prefix>/dlf-<name>.zip`), so one bad
//!   job cannot fail another's import; backups go to `<backups>/plan-<plan id prefix>/`. No code path
//!   outside the emulator writes a DLI Flink export zip: exports are opaque bytes, named and
//!   re-imported as DLI wrote them.
//! * `rollback` checks that every backup of the chosen set is still on OBS before it stops
//!   anything (a set with a missing zip is refused whole, naming the zips). It stops a running job
//!   with a savepoint, copies it into the savepoint catalog (the copy is what it journals and
//!   resumes from; a copy that fails is logged and the service's own is used) and journals that
//!   savepoint at once (a `stop_savepoint` intent/outcome pair, as an upgrade does) before it
//!   imports the backup over the job. Its intent records
//!   `was_running`; a rerun that finds such an intent still open (the process died) closes it as
//!   `INTERRUPTED` and restarts the job from the journaled savepoint.
//! * Action ids are `<plan id prefix>-<pass id>-<index>`; the pass id is random per executing pass
//!   (equal plans have equal ids, so only the pass tells two applies of one plan apart). The
//!   journal's `BackupEntry.action_id` keeps it, and `rollback` groups backups by plan id and pass.
//!   `--to SEQ` picks the set whose backup records span SEQ, and no other (a SEQ no set spans is refused with the list of sets).
//! * `apply` (the command) applies only the plan that was shown: the pass is refused when its plan id
//!   differs (`expected_plan_id`).
//! * The observation cache lives in the journal's `observed` records (the normalised
//!   `ObservedFlinkJob`, or the DLF definition); a record is written only when a job was read again
//!   (from the listing or its detail; records share fsyncs, 64 at a time). The
//!   journal's `JobState.protected` (from `Effects.protected`) remembers `prune: false` for the
//!   planner's prune guard.
//!
//! Automatic rollback: the `auto_rollback` module docs. Observation (cold listings, tags in bulk, the confirming read, DLF listing and schedules, DLF import tasks): the `observe` module docs and docs/service-fidelity.md.

pub mod auto_rollback;
mod execute;
mod export;
mod ledger;
mod live;
mod observe;
mod progress;
mod rollback;
mod target;

use std::time::Duration;

use serde::Serialize;

pub use export::{ExportReport, render_export};
pub use ledger::journal::JournalLedger;
pub use ledger::{
    ActionEffects, BackupSet, CachedObservation, DLF_KEY_PREFIX, DriftEntry, IntentEntry, Ledger,
    ObservationEntry, OutcomeEntry, PendingAction, RecordedFailure, journal_key,
};
pub use live::cloud::CloudLive;
pub use live::{
    BulkTags, ExportedDlfJob, ImportedJob, ListedConfig, ListedDlfJob, ListedFlinkJob, Listing,
    LiveService, ServiceFailure,
};
pub use observe::ObserveReport;
pub use progress::{StepEvent, StepProgress, step_words};
pub use rollback::{
    RollbackReport, RolledBackJob, backup_set_for, choose_backup_set, render_backup_sets,
    rollback_heading,
};
pub use target::{
    TargetContext, export, observe, reconcile_once, rollback, start_embedded_emulator,
};

use crate::model::{DesiredJobs, JobKind, ObservedJobs};
use crate::plan::{ActionClass, Plan, PlanPolicy};

/// How one pass runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Observe and plan only (what `plan` does).
    pub dry_run: bool,
    /// The revision `desired` was read from; journaled when the pass converges.
    pub revision: Option<String>,
    /// How long a job may take to reach running or stopped.
    pub transition_timeout: Duration,
    /// Extra time a stop with a savepoint may take.
    pub savepoint_timeout: Duration,
    /// How long a DLF import task may run.
    pub import_task_timeout: Duration,
    /// Pause between two looks at a moving job.
    pub poll_interval: Duration,
    /// Apply only if the pass plans exactly this plan (the one a person approved).
    pub expected_plan_id: Option<String>,
    /// Actions run at once (each on its own job); 1 runs them one by one, in plan order.
    pub parallel_actions: usize,
    /// Promotion: savepoints already copied into this target's OBS from another
    /// target's account (`pass::carry_for_target`), by job name. A `FromTarget` import
    /// uses these instead of the other target's own path, which this account may not read.
    pub carried_savepoints: std::collections::BTreeMap<String, String>,
    /// Only plan and apply the jobs whose names match one of these globs (`--select`); empty
    /// means every job.
    pub select: Vec<String>,
    /// Automatic rollback of failed upgrades (`policy.rollback_on_failure`), per job.
    pub rollback_on_failure: auto_rollback::RollbackPolicy,
    /// Automatic rollback also acts in a pass that only reports (`dry_run`): the daemon's
    /// passes unless it is suspended. `plan` never sets it.
    pub watch_upgrades: bool,
    /// The revision `desired` was read from, for the records automatic rollback keeps (the
    /// daemon journals the applied revision itself and leaves `revision` unset).
    pub source_revision: Option<String>,
    /// The revision the target last converged on, when the caller knows it (the revision a
    /// failed upgrade rolls back to, for the records).
    pub applied_revision: Option<String>,
    /// Where each step of each action is announced before it runs (the daemon's status).
    pub progress: StepProgress,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            dry_run: false,
            revision: None,
            transition_timeout: Duration::from_secs(900),
            savepoint_timeout: Duration::from_secs(600),
            import_task_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            expected_plan_id: None,
            parallel_actions: 4,
            carried_savepoints: std::collections::BTreeMap::new(),
            select: Vec::new(),
            rollback_on_failure: auto_rollback::RollbackPolicy::default(),
            watch_upgrades: false,
            source_revision: None,
            progress: StepProgress::default(),
            applied_revision: None,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyReport {
    pub target: String,
    /// This pass's id (part of every action id it journals).
    pub pass_id: String,
    pub plan: Plan,
    pub observe: ObserveReport,
    /// The live jobs the plan was made from (before any action of this pass), so a caller that
    /// needs them (the daemon's status) does not observe the target a second time. Not
    /// serialised: the plan already carries what changes.
    #[serde(skip)]
    pub observed: ObservedJobs,
    /// Intents of an interrupted earlier pass, resolved by observing first.
    pub resolved: Vec<ResolvedIntent>,
    /// One entry per action that changes something (empty on a dry run).
    pub results: Vec<ActionResult>,
    pub dry_run: bool,
    /// Failed upgrades automatic rollback put back before planning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_rollbacks: Vec<auto_rollback::AutoRollbackResult>,
    /// Jobs held on the definition automatic rollback restored (git still asks for the one
    /// that failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<auto_rollback::HeldJob>,
    /// Upgrades automatic rollback still watches (their window is open).
    #[serde(skip)]
    pub watching: usize,
}

impl ApplyReport {
    /// Actions that failed.
    pub fn failures(&self) -> impl Iterator<Item = &ActionResult> {
        self.results.iter().filter(|result| !result.ok)
    }

    /// Every planned change ran to its end.
    pub fn converged(&self) -> bool {
        !self.dry_run && self.results.iter().all(|result| result.ok)
    }

    /// A few lines for people: one per action, then a summary.
    pub fn render_text(&self) -> String {
        // Data from git or the service is escaped for the terminal (control, bidi).

        crate::terminal::escape(&self.render_text_unescaped()).into_owned()
    }

    fn render_text_unescaped(&self) -> String {
        let mut text = String::new();
        for resolved in &self.resolved {
            text.push_str(&format!(
                "resolved interrupted {} of {} ({}): {}\n",
                resolved.action, resolved.job, resolved.action_id, resolved.found
            ));
        }
        for result in &self.results {
            let status = if result.ok { "done" } else { "FAILED" };
            text.push_str(&format!(
                "{status:>6}  {} {} ({} of {} steps)",
                result.class.as_str(),
                result.name,
                result.steps_done,
                result.steps_total
            ));
            if let Some(error) = &result.error {
                text.push_str(&format!(
                    ": {}{}",
                    error
                        .code
                        .as_deref()
                        .map(|code| format!("{code} "))
                        .unwrap_or_default(),
                    error.message
                ));
            }
            if !result.warnings.is_empty() {
                text.push_str(&format!(" (warnings: {})", result.warnings.join("; ")));
            }
            text.push('\n');
        }
        let failed = self.failures().count();
        text.push_str(&format!(
            "Apply complete: {} action(s), {} succeeded, {} failed.\n",
            self.results.len(),
            self.results.len() - failed,
            failed
        ));
        text
    }
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionResult {
    pub kind: JobKind,
    pub name: String,
    pub class: ActionClass,
    pub action_id: String,
    pub ok: bool,
    pub error: Option<RecordedFailure>,
    pub steps_done: usize,
    pub steps_total: usize,
    pub live_id: Option<i64>,
    pub savepoint_path: Option<String>,
    pub backups: Vec<String>,
    /// Warnings the service reported while the action succeeded (a DLF import task that ended
    /// `WARNING`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// An intent left without an outcome by an interrupted pass, and what was found live.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedIntent {
    pub action_id: String,
    pub job: String,
    pub action: String,
    /// `running as job 12 (job_running)`, or `absent`.
    pub found: String,
}

/// Why a pass, an export or a rollback could not run.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("observing target `{target}`: {what}")]
    Observe {
        target: String,
        what: &'static str,
        #[source]
        source: ServiceFailure,
    },
    #[error(
        "journal of target `{target}`: {what} failed; no further action is started until the journal works"
    )]
    Journal {
        target: String,
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("target `{target}`: {problem}")]
    Target { target: String, problem: String },
    /// A step of setting the target up failed: its journal, endpoints, credentials, clients,
    /// the OBS grant, the IAM project lookup. Reads `target `t`: {doing}: {cause}; {advice}`.
    #[error("target `{target}`: {}", with_cause(.doing, .source.as_ref(), .advice))]
    TargetSetup {
        target: String,
        /// What was being done (may be empty when the cause says it).
        doing: String,
        #[source]
        source: BoxError,
        /// What to do about it (may be empty).
        advice: String,
    },
    #[error("reading the job repository for target `{target}`: {problem}")]
    Repository { target: String, problem: String },
    /// The source could not be read (git, the directory).
    #[error("reading the job repository for target `{target}`: {source}")]
    RepositoryRead {
        target: String,
        #[source]
        source: BoxError,
    },
    /// The revision promoted to the target could not be read from its source. The message
    /// quotes the whole chain of causes (which git call failed, and why).
    #[error(
        "reading the job repository for target `{target}`: {}",
        crate::error_chain::error_chain(.source.as_ref())
    )]
    PromotedRevision {
        target: String,
        #[source]
        source: BoxError,
    },
    #[error("export to {path}: {problem}")]
    Export {
        path: std::path::PathBuf,
        problem: String,
    },
    /// Writing or reading back the exported files failed.
    #[error("export to {path}: {doing}: {source}")]
    ExportFiles {
        path: std::path::PathBuf,
        doing: String,
        #[source]
        source: BoxError,
    },
    #[error("rollback of target `{target}`: {problem}")]
    Rollback { target: String, problem: String },
    #[error(
        "target `{target}`: the live state changed since plan {expected} was shown (it now plans {found}); nothing was applied, run apply again"
    )]
    PlanChanged {
        target: String,
        expected: String,
        found: String,
    },
    #[error("loading config {path}: {source}")]
    Config {
        path: std::path::PathBuf,
        #[source]
        source: crate::config::ConfigError,
    },
    #[error("not applied: {reason}")]
    NotApproved { reason: String },
    #[error("{problem}")]
    Runtime { problem: String },
    /// A step of a command failed for a reason another module reports (the terminal, the
    /// async runtime, the journal).
    #[error("{doing}: {source}")]
    Failed {
        doing: &'static str,
        #[source]
        source: BoxError,
    },
    /// Carrying promoted state into the target failed (`promotion::carry_for_target`). The
    /// message quotes the whole chain of causes.
    #[error("{}", crate::error_chain::error_chain(.source.as_ref()))]
    Carry {
        #[source]
        source: BoxError,
    },
}

/// A cause of any type, kept (not turned into text) so that `source()` reaches it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `{doing}: {cause}; {advice}`, the parts that are empty left out. The message quotes the
/// cause's own text; its causes stay reachable through `source()`, and
/// [`crate::error_chain::error_chain`] does not repeat what the message already quotes.
fn with_cause(doing: &str, cause: &(dyn std::error::Error + 'static), advice: &str) -> String {
    let mut text = String::new();
    if !doing.is_empty() {
        text.push_str(doing);
        text.push_str(": ");
    }
    text.push_str(&cause.to_string());
    if !advice.is_empty() {
        text.push_str("; ");
        text.push_str(advice);
    }
    text
}

/// Observes, resolves unfinished intents, plans, and — unless `options.dry_run` — executes the
/// plan. The one path shared by `plan`, `apply` and the daemon.
pub async fn reconcile_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    desired: &DesiredJobs,
    policy: &PlanPolicy,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    reconcile_from(live, ledger, desired, policy, options, None).await
}

/// The jobs a pass acted on (name, live id it reported), over the observation it planned from.
type ActedOn = (ObservedJobs, Vec<(String, Option<i64>)>);

/// [`reconcile_with`], observing either the whole target or, after a pass that acted
/// (`reuse`), only the jobs it acted on.
async fn reconcile_from<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    desired: &DesiredJobs,
    policy: &PlanPolicy,
    options: &ApplyOptions,
    reuse: Option<ActedOn>,
) -> Result<ApplyReport, ApplyError> {
    let pending = ledger.pending();
    let scope = observe::ObserveScope {
        dlf: observe::dlf_in_scope(ledger, desired.dlf.len()),
        refresh: pending.iter().map(|intent| intent.job.clone()).collect(),
    };
    let (mut observed, mut observe_report) = match reuse {
        Some((previous, acted_on)) => {
            observe::reobserve_acted_on(live, ledger, previous, &acted_on).await?
        }
        None => observe::observe_with(live, ledger, &scope).await?,
    };
    let owed_rollbacks = auto_rollback::interrupted(&pending);
    let resolved = resolve_pending(ledger, &pending, &observed).await?;
    // Automatic rollback looks at the upgrades it watches before the plan is made, so that a
    // failed one is put back (and held) instead of being started again on the bad definition.
    let mut auto_rollbacks = Vec::new();
    if !options.dry_run || options.watch_upgrades {
        auto_rollbacks =
            auto_rollback::watch(live, ledger, desired, &observed, &owed_rollbacks, options)
                .await?;
        if !auto_rollbacks.is_empty() {
            (observed, observe_report) = observe::observe_with(live, ledger, &scope).await?;
        }
    }
    let view = ledger.view();
    let held = auto_rollback::held_jobs(&view, desired);
    let watched = auto_rollback::watched_names(&view);
    let watching = watched.len();
    let plan = crate::plan::plan(desired, &observed, &view, policy).selected(&options.select);
    record_drift(ledger, &plan).await?;
    tracing::info!(
        target_name = ledger.target(),
        plan_id = %plan.id,
        changes = plan.changes().count(),
        observe_calls = observe_report.total_calls(),
        dry_run = options.dry_run,
        "Planned a pass."
    );
    let mut report = ApplyReport {
        target: ledger.target().to_string(),
        pass_id: execute::new_pass_id(),
        plan,
        observe: observe_report,
        observed,
        resolved,
        results: Vec::new(),
        dry_run: options.dry_run,
        auto_rollbacks,
        held,
        watching,
    };
    if options.dry_run {
        return Ok(report);
    }
    if let Some(expected) = &options.expected_plan_id
        && *expected != report.plan.id
    {
        return Err(ApplyError::PlanChanged {
            target: report.target,
            expected: expected.clone(),
            found: report.plan.id,
        });
    }
    let job_asks = desired.flink.iter().any(|job| {
        job.policy
            .rollback_on_failure
            .as_ref()
            .is_some_and(|own| own.enabled == Some(true))
    });
    let guarding = options.rollback_on_failure.any() || job_asks || report.watching > 0;
    let executor = execute::Executor {
        pass_id: &report.pass_id,
        live,
        ledger,
        desired,
        plan: &report.plan,
        options,
        guard_against: guarding.then_some(execute::GuardScope {
            observed_before: &report.observed,
            watched,
        }),
    };
    report.results = executor.run().await?;
    if guarding {
        report.watching = auto_rollback::watched_jobs(&ledger.view());
    }
    // An action held for a dependency is still to do: the revision is not applied yet.
    let waiting = report
        .plan
        .changes()
        .any(|action| action.is_waiting() || action.holds_convergence());
    // A selection (`--select`) converges only part of the revision: not journaled as applied.
    if report.converged()
        && !waiting
        && options.select.is_empty()
        // A job automatic rollback holds is not on the revision.
        && report.held.is_empty()
        && let Some(revision) = &options.revision
    {
        let summary = summary_line(&report.plan);
        ledger
            .revision_applied(revision, &report.plan.id, &summary)
            .await?;
    }
    Ok(report)
}

/// The look after a pass that acted (its `results`): plans again, as a dry run, from the
/// observation the pass started with (`observed`), each Flink job it acted on read again (one detail read
/// per job; see `observe::reobserve_acted_on`) instead of every list page. A pass that acted on
/// DLF jobs, or left intents open, is looked at with a full dry run instead.
pub async fn confirm_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    desired: &DesiredJobs,
    policy: &PlanPolicy,
    options: &ApplyOptions,
    observed: ObservedJobs,
    results: &[ActionResult],
) -> Result<ApplyReport, ApplyError> {
    let look = ApplyOptions {
        dry_run: true,
        ..options.clone()
    };
    let dlf_acted = results.iter().any(|result| result.kind == JobKind::Dlf);
    if dlf_acted || !ledger.pending().is_empty() {
        return reconcile_with(live, ledger, desired, policy, &look).await;
    }
    let acted_on: Vec<(String, Option<i64>)> = results
        .iter()
        .map(|result| (result.name.clone(), result.live_id))
        .collect();
    reconcile_from(
        live,
        ledger,
        desired,
        policy,
        &look,
        Some((observed, acted_on)),
    )
    .await
}

/// Logs and journals (`drift_detected`) the drift the plan found, once per job until it changes
/// or the job's next successful action.
async fn record_drift<J: Ledger>(ledger: &J, plan: &Plan) -> Result<(), ApplyError> {
    for action in &plan.actions {
        let Some(drift) = &action.drift else {
            continue;
        };
        let entry = DriftEntry {
            job: journal_key(action.kind, &action.name),
            fields: drift.fields.clone(),
            mode: drift.mode.as_str().to_string(),
            plan_id: plan.id.clone(),
        };
        if ledger.drift_detected(entry).await?.is_some() {
            tracing::warn!(
                target_name = ledger.target(),
                job = %action.name,
                fields = %drift.fields.join(","),
                mode = drift.mode.as_str(),
                "Drift detected: the live job changed outside dli-gitops."
            );
        }
    }
    Ok(())
}

/// The intent action word of one garbage-collection deletion: a pass leaves these intents to
/// `gc`, which finishes its own interrupted deletions.
pub const GC_ACTION: &str = "gc_delete";

/// Writes an outcome for every intent an interrupted pass left open, from what is live now.
async fn resolve_pending<J: Ledger>(
    ledger: &J,
    pending: &[PendingAction],
    observed: &ObservedJobs,
) -> Result<Vec<ResolvedIntent>, ApplyError> {
    let mut resolved = Vec::new();
    for intent in pending {
        if intent.action == GC_ACTION {
            // Garbage collection finishes its own interrupted deletions (`gc`).
            continue;
        }
        let (found, effects) = match intent.job.strip_prefix(DLF_KEY_PREFIX) {
            Some(name) => match observed.dlf.iter().find(|job| job.name == name) {
                Some(job) => {
                    remember_dlf_restart(ledger, intent, job).await?;
                    (
                        format!(
                            "present ({})",
                            job.status.as_deref().unwrap_or("status unknown")
                        ),
                        ActionEffects::default(),
                    )
                }
                None => ("absent".to_string(), ActionEffects::default()),
            },
            None => match observed.flink.iter().find(|job| job.name == intent.job) {
                Some(job) => (
                    format!("job {} ({})", job.id, job.status),
                    ActionEffects {
                        live_id: Some(job.id),
                        // A stop with a savepoint may have completed: keep the state it made.
                        savepoint_path: job.savepoint_path.clone(),
                        ..ActionEffects::default()
                    },
                ),
                None => ("absent".to_string(), ActionEffects::default()),
            },
        };
        tracing::warn!(
            target_name = ledger.target(),
            job = %intent.job,
            action = %intent.action,
            action_id = %intent.action_id,
            found = %found,
            "Resolved an intent an interrupted pass left open; this pass re-plans from what is live."
        );
        ledger
            .outcome(OutcomeEntry {
                action_id: intent.action_id.clone(),
                job: intent.job.clone(),
                ok: false,
                error: Some(RecordedFailure {
                    code: Some("INTERRUPTED".to_string()),
                    message: format!(
                        "the pass that started this {} ended before writing its outcome; found {found}",
                        intent.action
                    ),
                    request_id: None,
                }),
                effects,
                plan_id: intent.plan_id.clone(),
            })
            .await?;
        resolved.push(ResolvedIntent {
            action_id: intent.action_id.clone(),
            job: intent.job.clone(),
            action: intent.action.clone(),
            found,
        });
    }
    Ok(resolved)
}

/// An interrupted DLF action that was to end with the job's schedule started (its journaled
/// steps end in a start, after a stop or after a start an earlier pass owed) may have died
/// before the start: if the job is now not scheduled, the journal's cached observation of it
/// says so (`restart_schedule`), and the planner starts the schedule again until an
/// observation sees it scheduled. Without this, a schedule left unset in git would stay
/// stopped after a crash.
async fn remember_dlf_restart<J: Ledger>(
    ledger: &J,
    intent: &PendingAction,
    job: &crate::model::ObservedDlfJob,
) -> Result<(), ApplyError> {
    let steps = intent
        .detail
        .get("steps")
        .and_then(|steps| steps.as_array());
    let has_step = |name: &str| {
        steps.is_some_and(|steps| {
            steps
                .iter()
                .any(|step| step.get("step").and_then(|step| step.as_str()) == Some(name))
        })
    };
    if !has_step("start") || job.is_scheduled() {
        return Ok(());
    }
    observe::remember_dlf_restart_owed(ledger, &intent.job).await
}

/// `2 create, 1 upgrade` (the classes that occur), or `no changes`.
pub fn summary_line(plan: &Plan) -> String {
    let summary = plan.summary();
    let parts: Vec<String> = summary
        .by_class()
        .iter()
        .chain([(summary.waiting, "waiting")].iter())
        .filter(|(count, _)| *count > 0)
        .map(|(count, word)| format!("{count} {word}"))
        .collect();
    if parts.is_empty() {
        "no changes".to_string()
    } else {
        parts.join(", ")
    }
}

/// Writes the live jobs as a repository in `out_dir`, checks it resolves for `environment`,
/// and adopts the jobs (see the `export` module).
pub async fn export_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    out_dir: &std::path::Path,
    environment: &str,
) -> Result<ExportReport, ApplyError> {
    export::export_with(live, ledger, out_dir, environment).await
}

/// Re-imports the backups one apply took (see [`choose_backup_set`] for `to`).
pub async fn rollback_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    to: Option<u64>,
    options: &ApplyOptions,
) -> Result<RollbackReport, ApplyError> {
    rollback::rollback_with(live, ledger, to, options).await
}

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod tests;
