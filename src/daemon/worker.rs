//! One target's loop: wait for a reason (coalesced), validate a new revision, decide whether
//! this pass may change anything (policy), run one pass, and publish status and metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::TargetSpec;
use super::reconciler::{PassReport, PassRequest, Resolver, TargetReconciler};
use super::sources::SourceState;
use crate::model::DesiredJobs;
use crate::pass::Stop;
use crate::status::{
    DaemonMetrics, ErrorInfo, HealthStatus, JobKey, OperationPhase, OperationState, PlanView,
    RejectedRevision, StatusBoard, StatusInputs, SyncStatus, Trigger, TriggerKind, job_statuses,
};

/// The longest wait between retries of a pass that could not run.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(2);

pub(crate) struct Worker {
    pub spec: TargetSpec,
    pub reconciler: Arc<dyn TargetReconciler>,
    pub resolver: Resolver,
    pub source: watch::Receiver<SourceState>,
    pub trigger: Arc<Trigger>,
    pub board: Arc<StatusBoard>,
    pub metrics: Arc<DaemonMetrics>,
    pub stop: Stop,
    pub suspended: bool,
    /// How soon to look again while jobs are moving.
    pub progress_interval: Duration,
    pub memory: Memory,
    /// Promotion: a `promote_from` target converges to its promoted revision, and
    /// every target's passes feed the gates.
    pub promotion: Option<Arc<crate::promotion::PromotionHook>>,
    /// Suspend, change windows and break-glass overrides.
    pub controls: Arc<crate::status::control::Controls>,
}

/// What the worker remembers between passes.
#[derive(Default)]
pub(crate) struct Memory {
    /// The last revision resolved (valid or not), so each revision is validated once.
    checked_revision: Option<String>,
    /// The newest valid revision and its jobs.
    desired: Option<(String, Arc<DesiredJobs>)>,
    rejected: Option<RejectedRevision>,
    job_errors: BTreeMap<JobKey, ErrorInfo>,
    /// Passes in a row that could not run at all.
    consecutive_errors: u32,
    /// Passes in a row in which some action failed.
    failed_passes: u32,
    /// A manual sync that a change window made wait: it runs when the window lets it.
    held_manual: bool,
}

/// What happened in one pass, for logs, metrics and scheduling.
struct PassOutcome {
    result: &'static str,
    next_in: Duration,
}

/// What a pass may do, decided before it runs.
struct Decision {
    /// The revision of the desired jobs, when a valid one is known.
    revision: Option<String>,
    /// The pass may change things.
    execute: bool,
    /// A `promote_from` target without a promotion pipeline: observed and reported only.
    held: bool,
    /// Why suspend or a change window made the pass wait.
    control_hold: Option<String>,
    /// When an open change window closes (the pass stops then).
    window_closes: Option<chrono::DateTime<Utc>>,
}

/// What `finish_report` needs of the pass besides its report.
struct Finished<'a> {
    operation: OperationState,
    desired: Option<&'a DesiredJobs>,
    desired_revision: Option<&'a str>,
    source_error: Option<ErrorInfo>,
}

impl Worker {
    pub async fn run(mut self) {
        let span = tracing::info_span!("target", target = %self.spec.name);
        async move {
            // The first pass waits for the source's first poll, so it plans against git.
            let mut source = self.source.clone();
            tokio::select! {
                _ = source.wait_for(|state| state.polled) => {}
                _ = self.stop.wait() => return,
            }
            self.trigger.fire(TriggerKind::Startup);
            let mut next_pass = Instant::now() + self.spec.policy.resync_interval;
            loop {
                let triggers = tokio::select! {
                    biased;
                    _ = self.stop.wait() => break,
                    triggers = self.trigger.wait() => triggers,
                    _ = tokio::time::sleep_until(next_pass) => {
                        let mut triggers = self.trigger.take();
                        triggers.insert(self.scheduled_kind());
                        triggers
                    }
                };
                if self.stop.is_stopping() {
                    break;
                }
                let outcome = self.pass(triggers).await;
                // Garbage collection, at its own low rate (`retention.interval`).
                if !self.suspended
                    && !self.stop.is_stopping()
                    && let Some(line) = self.reconciler.collect_garbage().await
                {
                    tracing::info!(result = %line, "Garbage collection ran.");
                }
                // What the pass freed goes back to the kernel: the daemon rests on what it
                // keeps, not on its busiest pass.
                crate::memory::release_after_pass();
                next_pass = Instant::now() + outcome.next_in;
                tracing::debug!(
                    result = outcome.result,
                    next_in_ms = outcome.next_in.as_millis() as u64,
                    "Next pass scheduled."
                );
            }
            tracing::info!("Target loop stopped.");
        }
        .instrument(span)
        .await
    }

    /// Some job of the desired revision says `drift: revert`: automatic passes act on an
    /// applied revision even with `self_heal` off (the planner reverts only those jobs).
    fn reverts_drift(&self) -> bool {
        let revert = Some(crate::model::DriftMode::Revert);
        self.memory.desired.as_ref().is_some_and(|(_, jobs)| {
            jobs.flink.iter().any(|job| job.policy.drift == revert)
                || jobs.dlf.iter().any(|job| job.policy.drift == revert)
        })
    }

    /// The reason a timer-driven pass runs.
    fn scheduled_kind(&self) -> TriggerKind {
        if self.memory.consecutive_errors > 0 || self.memory.failed_passes > 0 {
            TriggerKind::Retry
        } else if self.board.target_is_progressing(&self.spec.name) {
            TriggerKind::Progress
        } else {
            TriggerKind::Resync
        }
    }

    /// One pass: read what the target follows, decide what the pass may do, run it (bounded
    /// by `sync_timeout`), then publish what it found and tell the hooks.
    async fn pass(&mut self, mut triggers: BTreeSet<TriggerKind>) -> PassOutcome {
        if std::mem::take(&mut self.memory.held_manual) {
            triggers.insert(TriggerKind::Manual);
        }
        let started = Instant::now();
        let started_at = Utc::now();
        let source_state = self.followed_source().await;
        self.check_revision(&source_state).await;
        let manual = triggers.contains(&TriggerKind::Manual);
        let decision = self.decide(manual);
        let operation = self.announce_start(&triggers, &decision, started_at);

        let desired = self.memory.desired.as_ref().map(|(_, jobs)| jobs.clone());
        let on_applying = self.on_applying();
        // A change window that opens during the pass stops it after the action in flight.
        let (pass_stop, window_watch) = self.window_watch(decision.window_closes);
        let request = PassRequest {
            desired: desired.as_deref(),
            revision: decision.revision.as_deref(),
            execute: decision.execute,
            stop: &pass_stop,
            on_applying: &on_applying,
            manual,
            // Automatic rollback guards an upgrade even in a pass that only reports.
            watch_upgrades: !self.suspended
                && !decision.held
                && !self.controls.suspended_now(&self.spec.name),
            progress: self.step_progress(),
        };
        let sync_timeout = self.spec.policy.sync_timeout;
        let result = tokio::time::timeout(sync_timeout, self.reconciler.pass(request)).await;
        let window_stopped = window_watch.is_some_and(|watch| watch.finish());
        let resolved = match &result {
            Ok(Ok(report)) => report.resolved.clone(),
            _ => Vec::new(),
        };
        let elapsed = started.elapsed();
        let outcome = match result {
            Ok(Ok(report)) => {
                self.memory.consecutive_errors = 0;
                let finished = Finished {
                    operation,
                    desired: desired.as_deref(),
                    desired_revision: decision.revision.as_deref(),
                    source_error: source_state.error.clone(),
                };
                self.finish_report(report, finished).await
            }
            Ok(Err(error)) => self.finish_error(
                operation,
                ErrorInfo {
                    code: error.code.clone(),
                    message: error.what.clone(),
                    time: Some(Utc::now()),
                },
            ),
            Err(_elapsed) => self.finish_error(
                operation,
                ErrorInfo {
                    code: None,
                    message: format!(
                        "the reconcile pass took longer than the target's sync_timeout ({}s) and was abandoned; pending intents are resolved on the next pass",
                        sync_timeout.as_secs()
                    ),
                    time: Some(Utc::now()),
                },
            ),
        };
        let outcome = self.after_controls(outcome, decision.control_hold, window_stopped);
        self.after_pass(&outcome, resolved, decision.revision, elapsed)
            .await;
        outcome
    }

    /// The source as this target follows it: a stage swaps the branch head for the revision
    /// promoted to it (a revision already validated is not read again); a failure to read it
    /// is the source's error for this pass.
    async fn followed_source(&self) -> SourceState {
        let mut source_state = self.source.borrow().clone();
        let Some(hook) = self
            .promotion
            .as_ref()
            .filter(|hook| hook.is_stage(&self.spec.name))
        else {
            return source_state;
        };
        let promoted = hook.promoted_revision(&self.spec.name);
        let result = if promoted.is_some() && promoted == self.memory.checked_revision {
            Ok(None)
        } else {
            hook.promoted_snapshot(&self.spec.name, source_state.snapshot.clone())
                .await
        };
        match result {
            Ok(snapshot) => source_state.snapshot = snapshot,
            Err(error) => {
                source_state.snapshot = None;
                source_state.error = Some(ErrorInfo {
                    code: None,
                    message: crate::promotion::error_text(&error),
                    time: Some(Utc::now()),
                });
            }
        }
        source_state
    }

    /// Whether this pass may change things: a valid revision, not suspended or held, and a
    /// manual sync or auto_sync with something to do; then suspend and change windows.
    fn decide(&mut self, manual: bool) -> Decision {
        let policy = &self.spec.policy;
        let revision = self.memory.desired.as_ref().map(|(rev, _)| rev.clone());
        // The revision the target last converged on: the journal's (automatic rollback may put
        // an earlier one back), never a copy kept here.
        let revision_is_new = revision.is_some() && revision != self.reconciler.applied_revision();
        // Without a promotion hook (tests that build the daemon by hand), a `promote_from`
        // target has nothing to follow and is held.
        let held = policy.promote_from.is_some() && self.promotion.is_none();
        let execute = self.memory.desired.is_some()
            && !self.suspended
            && !held
            && (manual
                || (policy.auto_sync
                    && (revision_is_new || policy.self_heal || self.reverts_drift())));
        // Suspend and change windows: a pass that would change things waits (reports only).
        let (execute, control_hold, window_closes) = if execute {
            self.control_gate(manual)
        } else {
            (false, None, None)
        };
        Decision {
            revision,
            execute,
            held,
            control_hold,
            window_closes,
        }
    }

    /// Logs the start of the pass and shows it as the target's running operation.
    fn announce_start(
        &self,
        triggers: &BTreeSet<TriggerKind>,
        decision: &Decision,
        started_at: chrono::DateTime<Utc>,
    ) -> OperationState {
        let mode = if decision.execute { "apply" } else { "report" };
        let trigger_list: Vec<TriggerKind> = triggers.iter().copied().collect();
        tracing::info!(
            triggers = ?trigger_list.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            revision = decision.revision.as_deref().unwrap_or("-"),
            mode,
            "Reconcile pass started."
        );
        let operation = OperationState {
            phase: OperationPhase::Running,
            mode: mode.to_string(),
            triggers: trigger_list,
            revision: decision.revision.clone(),
            started_at,
            finished_at: None,
            message: None,
        };
        self.board.update_target(&self.spec.name, |status| {
            status.operation = Some(operation.clone());
            status.sync.revision = decision.revision.clone();
            status.rejected_revision = self.memory.rejected.clone();
            status.begin_pass(decision.execute);
        });
        operation
    }

    /// Called when the pass is about to make its first change: the target is ready (observed)
    /// without waiting for a long apply.
    fn on_applying(&self) -> impl Fn() + Send + Sync + 'static {
        let board = self.board.clone();
        let target_name = self.spec.name.clone();
        move || {
            board.update_target(&target_name, |status| {
                if !status.ready {
                    status.ready = true;
                    status.observed_at = Some(Utc::now());
                }
            });
        }
    }

    /// Each step of each action, shown in the target's status before it runs.
    fn step_progress(&self) -> crate::apply::StepProgress {
        let board = self.board.clone();
        let target_name = self.spec.name.clone();
        crate::apply::StepProgress::new(move |event| {
            board.update_target(&target_name, |status| status.mark_step(&event));
        })
    }

    /// After the pass: notifications, metrics, the promotion gates downstream, the log line.
    async fn after_pass(
        &self,
        outcome: &PassOutcome,
        resolved: Vec<String>,
        revision: Option<String>,
        elapsed: Duration,
    ) {
        self.notify(outcome.result, resolved, revision).await;
        self.metrics
            .observe_reconcile(&self.spec.name, outcome.result, elapsed);
        if let (Some(hook), Some(status)) = (&self.promotion, self.board.target(&self.spec.name)) {
            // Every pass feeds the gates of the targets downstream of this one.
            let sample = crate::status::sample_of(&status);
            let hook = hook.clone();
            let name = self.spec.name.clone();
            let _ = tokio::task::spawn_blocking(move || hook.after_pass(&name, &sample)).await;
        }
        tracing::info!(
            result = outcome.result,
            duration_ms = elapsed.as_millis() as u64,
            "Reconcile pass finished."
        );
    }

    /// Resolves a revision the worker has not seen. A revision that does not validate is kept
    /// out: the previous valid one stays desired, and the errors are reported.
    async fn check_revision(&mut self, source_state: &SourceState) {
        let Some(snapshot) = source_state.snapshot.clone() else {
            return;
        };
        if self.memory.checked_revision.as_deref() == Some(snapshot.revision.as_str()) {
            return;
        }
        let revision = snapshot.revision.clone();
        self.memory.checked_revision = Some(revision.clone());
        let resolver = self.resolver.clone();
        let environment = self.spec.environment.clone();
        // Promotion: the target's `restore: {from_target}` default.
        let restore_default = self
            .promotion
            .as_ref()
            .and_then(|hook| hook.endpoint().config.target(&self.spec.name).cloned());
        // At most one revision per core is parsed at a time: parsing is CPU work, so more at
        // once only holds more node trees in memory (50 targets starting together would hold
        // all of theirs, and the heap would keep that peak's pages).
        let _permit = resolve_permits().acquire().await;
        let resolved = tokio::task::spawn_blocking(move || {
            crate::pass::resolve_for(
                &snapshot,
                &environment,
                restore_default.as_ref(),
                |snapshot, environment| resolver(snapshot, environment),
            )
        })
        .await;
        let resolved = match resolved {
            Ok(resolved) => resolved,
            Err(join_error) => Err(vec![format!(
                "validating the revision failed unexpectedly: {join_error}"
            )]),
        };
        match resolved {
            Ok(desired) => {
                tracing::info!(
                    %revision,
                    flink_jobs = desired.flink.len(),
                    dlf_jobs = desired.dlf.len(),
                    "New revision validated."
                );
                self.memory.desired = Some((revision, Arc::new(desired)));
                self.memory.rejected = None;
            }
            Err(errors) => {
                tracing::warn!(
                    %revision,
                    problems = errors.len(),
                    first = errors.first().map(String::as_str).unwrap_or(""),
                    kept = self.memory.desired.as_ref().map(|(rev, _)| rev.as_str()).unwrap_or("-"),
                    "New revision does not validate; it is not applied."
                );
                self.metrics
                    .count_sync_result(&self.spec.name, "invalid_revision");
                self.memory.rejected = Some(RejectedRevision {
                    revision,
                    errors,
                    time: Utc::now(),
                });
            }
        }
    }

    /// Folds a pass that ran into the worker's memory and the target's status: job errors,
    /// the applied revision when the target converged, job statuses, the operation, and when
    /// to look next.
    async fn finish_report(&mut self, report: PassReport, finished: Finished<'_>) -> PassOutcome {
        let now = Utc::now();
        if !report.resolved.is_empty() {
            tracing::warn!(
                resolved = %report.resolved.join("; "),
                "This pass first resolved actions an interrupted earlier run (a shutdown past its grace period, a crash) left open; it plans from what is live and finishes them."
            );
        }
        if report.interrupted {
            return self.finish_interrupted(&report, finished, now);
        }
        self.remember_job_errors(&report, now);
        let failed = report.failed_actions();
        let in_sync = failed == 0
            // Automatic rollback holds a job on its previous definition: not the revision.
            && report.held.is_empty()
            && report
                .remaining
                .as_ref()
                .is_some_and(|plan| plan.is_empty());
        let record_error = if in_sync {
            self.record_convergence(&report, finished.desired_revision, now)
                .await
        } else {
            None
        };
        let mut jobs = job_statuses(&StatusInputs {
            desired: finished.desired,
            observed: &report.observed,
            plan: report.remaining.as_ref(),
            errors: &self.memory.job_errors,
        });
        crate::status::mark_rolled_back(&mut jobs, &report.held);
        crate::status::attach_records(&mut jobs, &self.reconciler.job_records());
        let progressing = jobs
            .iter()
            .any(|job| job.health.status == HealthStatus::Progressing)
            || report
                .remaining
                .as_ref()
                .is_some_and(|plan| plan.actions.iter().any(|action| action.is_waiting()));
        let result = pass_result(&report, failed, in_sync);
        let mut operation = finished.operation;
        operation.phase = if failed > 0 || record_error.is_some() {
            OperationPhase::Failed
        } else {
            OperationPhase::Succeeded
        };
        operation.finished_at = Some(now);
        operation.message = Some(self.finished_message(&report, finished.desired.is_none()));
        self.metrics.set_jobs(&self.spec.name, &jobs);
        let last_error = record_error.or(finished.source_error);
        self.publish(
            &report,
            jobs,
            operation,
            finished.desired_revision,
            last_error,
            now,
        );
        let next_in = self.next_after_report(&report, failed, in_sync, progressing);
        PassOutcome { result, next_in }
    }

    /// Shutdown cut the pass short: what it saw is partial, so the last full status stays;
    /// only the operation says what happened.
    fn finish_interrupted(
        &self,
        report: &PassReport,
        finished: Finished<'_>,
        now: chrono::DateTime<Utc>,
    ) -> PassOutcome {
        let mut operation = finished.operation;
        operation.phase = OperationPhase::Failed;
        operation.finished_at = Some(now);
        operation.message = Some(operation_message(
            report,
            self.suspended,
            finished.desired.is_none(),
        ));
        self.board.update_target(&self.spec.name, |status| {
            status.operation = Some(operation);
        });
        PassOutcome {
            result: "interrupted",
            next_in: self.spec.policy.resync_interval,
        }
    }

    /// Each action's error stays on its job until an action on the job succeeds.
    fn remember_job_errors(&mut self, report: &PassReport, now: chrono::DateTime<Utc>) {
        for outcome in &report.outcomes {
            let key = JobKey::new(outcome.kind, &outcome.name);
            match &outcome.error {
                Some(error) => {
                    let mut error = error.clone();
                    error.time.get_or_insert(now);
                    self.memory.job_errors.insert(key, error);
                }
                None => {
                    self.memory.job_errors.remove(&key);
                }
            }
        }
    }

    /// The target is in sync: journals the revision as applied when it is new. Returns the
    /// error to show when recording failed.
    async fn record_convergence(
        &mut self,
        report: &PassReport,
        desired_revision: Option<&str>,
        now: chrono::DateTime<Utc>,
    ) -> Option<ErrorInfo> {
        let revision = desired_revision?;
        if self.reconciler.applied_revision().as_deref() == Some(revision) {
            return None;
        }
        let plan_id = report.plan.as_ref().map(|plan| plan.id.clone());
        let summary = summarize(report);
        match self
            .reconciler
            .record_applied(revision, plan_id.as_deref(), &summary)
            .await
        {
            Ok(()) => {
                tracing::info!(%revision, "Target converged on the revision.");
                None
            }
            Err(error) => {
                tracing::error!(%revision, error = %error.what, "Recording the applied revision failed.");
                Some(ErrorInfo {
                    code: None,
                    message: error.what,
                    time: Some(now),
                })
            }
        }
    }

    /// The operation's closing message; a `promote_from` target says why it only reports.
    fn finished_message(&self, report: &PassReport, no_revision: bool) -> String {
        let message = operation_message(report, self.suspended, no_revision);
        let Some(upstream) = &self.spec.policy.promote_from else {
            return message;
        };
        if self.promotion.is_none() {
            format!(
                "{message}; held: this target is promoted from `{upstream}` and this daemon runs no promotion pipeline, so it is observed and reported only"
            )
        } else if no_revision {
            format!("{message}; nothing promoted from `{upstream}` yet")
        } else {
            message
        }
    }

    /// Shows the pass's findings as the target's status.
    fn publish(
        &self,
        report: &PassReport,
        jobs: Vec<crate::status::JobStatus>,
        operation: OperationState,
        desired_revision: Option<&str>,
        last_error: Option<ErrorInfo>,
        now: chrono::DateTime<Utc>,
    ) {
        let applied_revision = self.reconciler.applied_revision();
        let rejected = self.memory.rejected.clone();
        self.board.update_target(&self.spec.name, |status| {
            status.set_jobs(jobs, report.remaining.is_some());
            status.sync.revision = desired_revision.map(str::to_string);
            status.sync.applied_revision = applied_revision;
            // A revision not yet applied is never shown Synced.
            status.settle_revision();
            status.rejected_revision = rejected;
            status.last_error = last_error;
            status.ready = true;
            status.observed_at = Some(now);
            if let Some(plan) = &report.plan {
                status.last_plan = Some(PlanView::of(plan, desired_revision, now));
            }
            status.operation = Some(operation);
        });
    }

    /// When to look again after a pass that ran: soon while jobs move, with backoff while
    /// actions fail, else at the resync interval.
    fn next_after_report(
        &mut self,
        report: &PassReport,
        failed: usize,
        in_sync: bool,
        progressing: bool,
    ) -> Duration {
        let resync = self.spec.policy.resync_interval;
        if failed > 0 {
            self.memory.failed_passes += 1;
        } else {
            self.memory.failed_passes = 0;
        }
        if failed > 0 {
            // A failing job is retried with backoff, so a permanent error does not hammer the
            // service; each retry is a fresh plan from what is observed.
            retry_delay(self.memory.failed_passes).min(resync)
        } else if progressing || report.watching > 0 || (report.executed && !in_sync) {
            self.progress_interval.min(resync)
        } else {
            resync
        }
    }

    fn finish_error(&mut self, mut operation: OperationState, error: ErrorInfo) -> PassOutcome {
        self.memory.consecutive_errors += 1;
        tracing::warn!(
            error = %error.message,
            code = error.code.as_deref().unwrap_or(""),
            attempt = self.memory.consecutive_errors,
            "Reconcile pass failed."
        );
        operation.phase = OperationPhase::Error;
        operation.finished_at = Some(Utc::now());
        operation.message = Some(error.message.clone());
        let rejected = self.memory.rejected.clone();
        self.board.update_target(&self.spec.name, |status| {
            status.sync.status = SyncStatus::Unknown;
            status.last_error = Some(error);
            status.rejected_revision = rejected;
            status.operation = Some(operation);
        });
        PassOutcome {
            result: "error",
            next_in: retry_delay(self.memory.consecutive_errors)
                .min(self.spec.policy.resync_interval),
        }
    }
}

/// Suspend and change windows (see `control.rs`).
impl Worker {
    /// Whether a pass that would change things may: (execute, why it waits, when a window
    /// will stop it).
    fn control_gate(
        &mut self,
        manual: bool,
    ) -> (bool, Option<String>, Option<chrono::DateTime<Utc>>) {
        use crate::status::control::Gate;
        match self.controls.gate(&self.spec.name, manual) {
            Gate::Open {
                overridden,
                closes_at,
            } => {
                if let Some(used) = overridden {
                    tracing::warn!(by = %used.by, reason = %used.reason, "Break-glass: this pass runs inside a closed change window.");
                }
                (true, None, closes_at)
            }
            Gate::Suspended { why, until } => {
                let until = until.map_or_else(
                    || " until resumed".to_string(),
                    |until| format!(" until {}", until.to_rfc3339()),
                );
                tracing::info!(%why, "Target suspended: observed and reported only.");
                (false, Some(format!("held: {why}{until}")), None)
            }
            Gate::Window { block, until } => {
                if manual {
                    self.memory.held_manual = true;
                }
                let until = until.map_or_else(String::new, |until| {
                    format!("; syncs resume at {}", until.to_rfc3339())
                });
                tracing::info!(window = %block, "A change window holds this pass: observed and reported only.");
                (false, Some(format!("waiting: {block}{until}")), None)
            }
        }
    }

    /// The stop signal a pass gets: the daemon's, or one that also fires when a change window
    /// closes the target during the pass.
    fn window_watch(
        &self,
        closes_at: Option<chrono::DateTime<Utc>>,
    ) -> (super::Stop, Option<WindowWatch>) {
        let Some(closes_at) = closes_at else {
            return (self.stop.clone(), None);
        };
        let pass_stop = Stop::new();
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (daemon_stop, pass_stop, fired) =
                (self.stop.clone(), pass_stop.clone(), fired.clone());
            let controls = self.controls.clone();
            let name = self.spec.name.clone();
            tokio::spawn(async move {
                let mut at = closes_at;
                loop {
                    let wait = (at - controls.now()).to_std().unwrap_or_default();
                    tokio::select! {
                        _ = daemon_stop.wait() => {
                            pass_stop.trigger();
                            return;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                    if let Some(block) = controls.window_blocks_now(&name) {
                        tracing::warn!(window = %block, "A change window opened during the pass: the action in flight finishes, no other starts.");
                        fired.store(true, std::sync::atomic::Ordering::SeqCst);
                        pass_stop.trigger();
                        return;
                    }
                    match controls.next_change(&name) {
                        Some(next) if next > at => at = next,
                        _ => return,
                    }
                }
            })
        };
        (pass_stop, Some(WindowWatch { task, fired }))
    }

    /// Folds the controls into a finished pass: the operation says why it waited or stopped,
    /// and the next pass comes when the controls may let it run.
    fn after_controls(
        &mut self,
        mut outcome: PassOutcome,
        hold: Option<String>,
        window_stopped: bool,
    ) -> PassOutcome {
        let note = if window_stopped {
            self.memory.held_manual = false;
            Some(
                "stopped: a change window opened during the pass; the action in flight finished and no other started"
                    .to_string(),
            )
        } else {
            hold
        };
        let Some(note) = note else {
            return outcome;
        };
        self.board.update_target(&self.spec.name, |status| {
            if let Some(operation) = status.operation.as_mut() {
                let message = operation.message.take().unwrap_or_default();
                operation.message = Some(if message.is_empty() {
                    note.clone()
                } else {
                    format!("{message}; {note}")
                });
            }
        });
        if let Some(next) = self.controls.next_change(&self.spec.name) {
            let wait =
                (next - self.controls.now()).to_std().unwrap_or_default() + Duration::from_secs(1);
            outcome.next_in = if window_stopped {
                wait
            } else {
                outcome.next_in.min(wait)
            };
        } else if window_stopped {
            outcome.next_in = self.spec.policy.resync_interval;
        }
        if window_stopped {
            outcome.result = "window_stopped";
        }
        outcome
    }
}

/// Notifications (see `crate::notify`).
impl Worker {
    /// Reports this pass to the notifier: journals a change of state and hands its messages to
    /// delivery tasks; never waits for a sink.
    async fn notify(&self, result: &str, resolved: Vec<String>, revision: Option<String>) {
        let Some(notifier) = self.controls.notifier() else {
            return;
        };
        let status = self.board.target(&self.spec.name);
        let (sync_known, sync_failed) = match result {
            "failed" | "error" => (
                true,
                Some(
                    status
                        .as_ref()
                        .and_then(|status| status.operation.as_ref())
                        .and_then(|operation| operation.message.clone())
                        .unwrap_or_else(|| "the pass failed".to_string()),
                ),
            ),
            "synced" | "applied" => (true, None),
            _ => (false, None),
        };
        let (health_known, degraded) = match status.as_ref().map(|status| &status.health) {
            Some(health) if health.status == HealthStatus::Degraded => (
                true,
                Some(
                    health
                        .message
                        .clone()
                        .unwrap_or_else(|| "a job is Degraded".to_string()),
                ),
            ),
            Some(health) if health.status == HealthStatus::Healthy => (true, None),
            _ => (false, None),
        };
        let policy = &self.spec.policy;
        let suspended = self.suspended || self.controls.suspended_now(&self.spec.name);
        let signals = crate::notify::PassSignals {
            sync_failed,
            sync_known,
            degraded,
            health_known,
            resolved,
            auto_sync_off: !policy.auto_sync || suspended,
            self_heal_off: !policy.self_heal || suspended,
            revision,
        };
        notifier
            .after_pass(&self.spec.name, signals, self.controls.now())
            .await;
    }
}

/// The task that stops a pass when a change window opens.
struct WindowWatch {
    task: tokio::task::JoinHandle<()>,
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl WindowWatch {
    /// Ends the watch; whether it stopped the pass.
    fn finish(self) -> bool {
        self.task.abort();
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Exponential backoff from 2 s, capped at 5 minutes.
fn retry_delay(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(10);
    (FIRST_RETRY_DELAY * 2u32.pow(exponent)).min(MAX_RETRY_DELAY)
}

/// The pass's result word, for logs, metrics and notifications.
fn pass_result(report: &PassReport, failed: usize, in_sync: bool) -> &'static str {
    let changes = report
        .plan
        .as_ref()
        .map_or(0, |plan| plan.changes().count());
    if report.interrupted {
        "interrupted"
    } else if failed > 0 {
        "failed"
    } else if report.executed && changes > 0 && in_sync {
        "applied"
    } else if in_sync {
        "synced"
    } else if report.executed {
        "progressing"
    } else {
        "out_of_sync"
    }
}

/// The journaled summary of a converged pass: every change class with its count.
fn summarize(report: &PassReport) -> String {
    match &report.plan {
        Some(plan) => plan
            .summary()
            .by_class()
            .iter()
            .map(|(count, class)| format!("{count} {class}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => "observed only".to_string(),
    }
}

fn operation_message(report: &PassReport, suspended: bool, no_revision: bool) -> String {
    let mut message = pass_message(report, suspended, no_revision);
    if !report.resolved.is_empty() {
        message.push_str(&format!(
            "; first resolved {} action(s) an interrupted earlier run left open (the plan then \
             finishes them): {}",
            report.resolved.len(),
            report.resolved.join("; ")
        ));
    }
    message
}

fn pass_message(report: &PassReport, suspended: bool, no_revision: bool) -> String {
    if no_revision {
        return "no valid revision yet: observed only".to_string();
    }
    let changes = report
        .plan
        .as_ref()
        .map_or(0, |plan| plan.changes().count());
    if !report.executed {
        let why = if suspended {
            " (the daemon is suspended)"
        } else {
            ""
        };
        return match changes {
            0 => "in sync".to_string(),
            n => format!("{n} change(s) planned, not applied{why}"),
        };
    }
    let failed: Vec<String> = report
        .outcomes
        .iter()
        .filter_map(|outcome| {
            outcome.error.as_ref().map(|error| match &error.code {
                Some(code) => format!("{} ({code}: {})", outcome.name, error.message),
                None => format!("{} ({})", outcome.name, error.message),
            })
        })
        .collect();
    let mut message = format!(
        "{} action(s) run, {} failed",
        report.outcomes.len(),
        failed.len()
    );
    if !failed.is_empty() {
        message.push_str(": ");
        message.push_str(&failed.join("; "));
    }
    if report.interrupted {
        message.push_str("; stopped early for shutdown");
    }
    message
}

/// The daemon-wide permits for parsing revisions: one per core (`available_parallelism`).
fn resolve_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cores)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(2), Duration::from_secs(4));
        assert_eq!(retry_delay(4), Duration::from_secs(16));
        assert_eq!(retry_delay(30), MAX_RETRY_DELAY);
    }
}
