//! What the loop needs from the layers below it: a reconciler per target (observe, plan, and
//! maybe apply, once), a source of repository snapshots, and a resolver from a snapshot to the
//! desired jobs of one environment. The production implementations are in `wiring`; tests plug
//! in their own.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::cloud::RequestMetrics;
use crate::desired::snapshot::RepoSnapshot;
use crate::model::{DesiredJobs, JobKind, ObservedJobs};
use crate::pass::Stop;
use crate::plan::{ActionClass, Plan};
use crate::status::ErrorInfo;

/// One pass over one target.
pub struct PassRequest<'a> {
    /// The desired jobs of the newest valid revision; `None` observes only (no valid revision
    /// is known yet), which reports health but no sync status.
    pub desired: Option<&'a DesiredJobs>,
    /// The revision `desired` was resolved from.
    pub revision: Option<&'a str>,
    /// Carry out the plan; otherwise observe and plan only (report).
    pub execute: bool,
    /// Set when the daemon is shutting down: finish the call in flight, journal it, and return
    /// without starting another action.
    pub stop: &'a Stop,
    /// Called once the live service has been observed and the first change is about to be
    /// made, so that readiness does not wait for a long apply.
    pub on_applying: &'a (dyn Fn() + Send + Sync),
    /// A person asked for this pass (a manual sync): drift is reverted on every job. Otherwise
    /// the target's `self_heal` and each job's `drift:` decide.
    pub manual: bool,
    /// Automatic rollback may act even when `execute` is off (not suspended, not held).
    pub watch_upgrades: bool,
    /// Each step of each action, announced before it runs (for status during the pass).
    pub progress: crate::apply::StepProgress,
}

/// What one pass saw and did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// The live service as last observed in the pass (after any apply).
    pub observed: ObservedJobs,
    /// The plan made at the start of the pass.
    pub plan: Option<Plan>,
    /// The plan against the live state at the end of the pass: what is still out of sync.
    /// Equal to `plan` when nothing was executed.
    pub remaining: Option<Plan>,
    /// The plan was carried out (as far as it went).
    pub executed: bool,
    /// One entry per action that was run.
    pub outcomes: Vec<ActionOutcome>,
    /// The pass stopped early because the daemon is shutting down.
    pub interrupted: bool,
    /// Actions an earlier run (a shutdown past its grace period, a crash, an aborted `apply`)
    /// left without an outcome, which this pass resolved by observing before it planned:
    /// `upgrade of clicks (found job 12 (job_cancel_success))`.
    pub resolved: Vec<String>,
    /// Jobs held on the definition automatic rollback restored: (name, revision rolled back
    /// from, why). Their health is Degraded; the revision is not journaled as applied.
    pub held: Vec<(String, Option<String>, String)>,
    /// Upgrades automatic rollback still watches: look again soon.
    pub watching: usize,
}

impl PassReport {
    /// Executed, every action succeeded, and nothing is left to do: the revision is live.
    pub fn converged(&self) -> bool {
        self.executed
            && !self.interrupted
            && self.outcomes.iter().all(|outcome| outcome.error.is_none())
            && self.remaining.as_ref().is_some_and(Plan::is_empty)
    }

    pub fn failed_actions(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|outcome| outcome.error.is_some())
            .count()
    }
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    pub kind: JobKind,
    pub name: String,
    pub class: ActionClass,
    /// `None` on success; the service's code and message on failure.
    pub error: Option<ErrorInfo>,
}

/// A pass that could not run at all (observation failed, the journal refused a write, ...).
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct PassError {
    /// What was being done, to what, and what failed; the source's text included, since this
    /// is what the status page shows.
    pub what: String,
    /// The service's error code, when the failure came from the service.
    pub code: Option<String>,
}

/// Observes, plans and (maybe) applies one target. One pass at a time per target is guaranteed
/// by the caller.
pub trait TargetReconciler: Send + Sync + 'static {
    fn pass<'a>(&'a self, request: PassRequest<'a>)
    -> BoxFuture<'a, Result<PassReport, PassError>>;

    /// The revision the journal says the target last converged on (read at start).
    fn applied_revision(&self) -> Option<String>;

    /// Records that the target converged on `revision` (the journal's `RevisionApplied`).
    fn record_applied<'a>(
        &'a self,
        revision: &'a str,
        plan_id: Option<&'a str>,
        summary: &'a str,
    ) -> BoxFuture<'a, Result<(), PassError>>;

    /// The target's API request counters, for `/metrics`.
    fn request_metrics(&self) -> Option<RequestMetrics>;

    /// Garbage collection of the target (`retention:`) when it is due: a line saying what it
    /// deleted or refused, when it ran and did anything. Nothing by default.
    fn collect_garbage<'a>(&'a self) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }

    /// What the journal holds per job (by journal key): its last savepoint and its backups,
    /// newest first, for status. None by default.
    fn job_records(&self) -> std::collections::BTreeMap<String, crate::status::JobRecords> {
        std::collections::BTreeMap::new()
    }
}

/// Where a source's new revisions come from. Blocking calls; the daemon runs them on the
/// blocking pool.
pub trait SnapshotSource: Send + Sync + 'static {
    /// Fetches (git) or re-reads (directory); returns the snapshot when its revision differs
    /// from `last_revision`.
    fn poll(&self, last_revision: Option<&str>) -> Result<Option<RepoSnapshot>, SourceFailure>;

    /// How long to wait between polls (with jitter applied); `None` for sources that are
    /// watched instead of polled.
    fn next_poll_in(&self) -> Option<Duration>;

    /// A stream of "something changed" notices, for watched sources.
    fn watch(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, SourceFailure>;

    /// `git` or `dir`.
    fn kind(&self) -> &'static str;

    /// The url (credentials removed) or directory, for status.
    fn location(&self) -> String;

    /// The repository url and ref a push webhook must name, for git sources.
    fn webhook_match(&self) -> Option<(String, String)>;
}

/// A failed fetch or read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceFailure {
    pub message: String,
    pub retryable: bool,
}

/// Resolves a snapshot into the desired jobs of one environment, or every problem found.
pub type Resolver =
    Arc<dyn Fn(&RepoSnapshot, &str) -> Result<DesiredJobs, Vec<String>> + Send + Sync>;
