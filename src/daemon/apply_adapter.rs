//! The production reconciler: one target's `apply::TargetContext`, run through
//! `pass::run_pass` (the path `plan` and `apply` share), with a ledger that refuses to
//! announce new actions once shutdown begins, so the action in flight finishes and is
//! journaled and no other starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

use super::reconciler::{ActionOutcome, PassError, PassReport, PassRequest, TargetReconciler};
use crate::apply::{self, ApplyError, ApplyOptions, Ledger, TargetContext};
use crate::cloud::RequestMetrics;
use crate::config::Config;
use crate::emulator::EmulatorHandle;
use crate::error_chain::error_chain;
use crate::journal::Journal;
use crate::model::DesiredJobs;
use crate::pass::{ActionSlots, StoppingLedger};
use crate::status::ErrorInfo;

/// A target reconciled through `apply`.
pub struct ApplyReconciler {
    context: TargetContext,
    journal: Journal,
    /// For carrying state from other targets.
    config: Arc<Config>,
    /// The check for a target without history ran once (it only matters at start).
    history_checked: AtomicBool,
    /// When garbage collection last ran (`retention.interval` apart).
    last_gc: Mutex<Option<std::time::Instant>>,
    /// The daemon-wide action slots (`max_concurrent_actions`), shared fairly by the targets.
    slots: Option<Arc<ActionSlots>>,
}

impl ApplyReconciler {
    /// Builds the target over the daemon's shared journal and embedded emulator.
    pub async fn open(
        config: &Arc<Config>,
        target: &str,
        journal: Journal,
        emulator: Option<Arc<EmulatorHandle>>,
        slots: Option<Arc<ActionSlots>>,
    ) -> Result<ApplyReconciler, ApplyError> {
        let context = TargetContext::with_shared(config, target, journal.clone(), emulator).await?;
        Ok(ApplyReconciler {
            context,
            journal,
            config: Arc::clone(config),
            history_checked: AtomicBool::new(false),
            last_gc: Mutex::new(None),
            slots,
        })
    }
}

impl ApplyReconciler {
    /// One pass; see [`TargetReconciler::pass`]: the adoption check, then `pass::run_pass`
    /// (carry → reconcile → the look after a pass that acted, in the `reconcile` span).
    async fn run_pass(&self, request: PassRequest<'_>) -> Result<PassReport, PassError> {
        let ledger = StoppingLedger::new(&self.context.ledger, request.stop)
            .on_first_intent(request.on_applying)
            .sharing(self.slots.clone());
        let empty = DesiredJobs::default();
        let observe_only = request.desired.is_none();
        let desired = request.desired.unwrap_or(&empty);
        let execute = request.execute && !observe_only;
        if execute {
            self.adopt_once(desired).await?;
        }
        // Drift: an automatic pass follows the target's self_heal and each job's `drift:`;
        // a manual sync reverts it all.
        let policy = crate::plan::PlanPolicy {
            self_heal: (!request.manual).then_some(self.context.target.policy.self_heal),
            ..self.context.policy.clone()
        };
        let run = crate::pass::run_pass(crate::pass::Pass {
            context: &self.context,
            ledger: &ledger,
            desired,
            policy: &policy,
            options: self.pass_options(&request, observe_only, execute),
            // Promotion: state this target's jobs take from another target is copied into
            // this account before the pass imports it.
            carry: Some(&self.config),
            // A pass costs one observation unless it changed something: then the target is
            // observed once more, so status shows what the pass left to do (and the live jobs
            // as they are now), not what it started from.
            look_again: true,
        })
        .await;
        match run {
            Ok(run) => pass_report(run, observe_only, execute, ledger.refused_any()),
            Err(_) if ledger.refused_any() => Ok(PassReport {
                executed: execute,
                interrupted: true,
                ..PassReport::default()
            }),
            Err(error) => Err(pass_error(&error)),
        }
    }

    /// No history of this target in the journal, but its jobs may be live: a restore that may
    /// have run before is recorded as done, never replayed. Checked once per process.
    async fn adopt_once(&self, desired: &DesiredJobs) -> Result<(), PassError> {
        if self.history_checked.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !self.journal.state_guard().knows_jobs_of(&self.context.name) {
            let (observed, _) = apply::observe(&self.context)
                .await
                .map_err(|error| pass_error(&error))?;
            crate::pass::adopt_without_history(
                &self.journal,
                &self.context.name,
                &self.context.policy.instance,
                desired,
                &observed,
            )
            .await
            .map_err(|error| PassError {
                what: error_chain(&error),
                code: None,
            })?;
        }
        // Known to the journal now: nothing to adopt, now or later in this process.
        self.history_checked.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The options of one daemon pass.
    fn pass_options(
        &self,
        request: &PassRequest<'_>,
        observe_only: bool,
        execute: bool,
    ) -> ApplyOptions {
        ApplyOptions {
            dry_run: !execute,
            // The daemon journals the revision itself once the target is in sync.
            revision: None,
            // Automatic rollback: also in report passes, unless suspended or held.
            watch_upgrades: request.watch_upgrades && !observe_only,
            source_revision: request.revision.map(str::to_string),
            progress: request.progress.clone(),
            applied_revision: self.applied_revision(),
            ..self.context.options.clone()
        }
    }
}

/// The loop's report of a pass: what it planned and did, and — after the look that followed a
/// pass that acted — what remains and the live jobs as they are now.
fn pass_report(
    run: crate::pass::PassRun,
    observe_only: bool,
    execute: bool,
    interrupted: bool,
) -> Result<PassReport, PassError> {
    let crate::pass::PassRun { report, after } = run;
    let resolved: Vec<String> = report
        .resolved
        .iter()
        .map(|intent| {
            format!(
                "{} of {} (found {})",
                intent.action, intent.job, intent.found
            )
        })
        .collect();
    if observe_only {
        return Ok(PassReport {
            observed: report.observed,
            resolved,
            ..PassReport::default()
        });
    }
    let outcomes: Vec<ActionOutcome> = report
        .results
        .iter()
        .map(|result| ActionOutcome {
            kind: result.kind,
            name: result.name.clone(),
            class: result.class,
            error: result.error.as_ref().map(|failure| ErrorInfo {
                code: failure.code.clone(),
                message: failure.message.clone(),
                time: None,
            }),
        })
        .collect();
    // Automatic rollback may have acted in the look (an upgrade that failed to start).
    let (observed, remaining, held, watching) = match after {
        Some(after) => {
            let after = after.map_err(|error| pass_error(&error))?;
            let held = held_of(&after);
            (after.observed, after.plan, held, after.watching)
        }
        None => {
            let held = held_of(&report);
            (report.observed, report.plan.clone(), held, report.watching)
        }
    };
    Ok(PassReport {
        observed,
        plan: Some(report.plan),
        remaining: Some(remaining),
        executed: execute,
        outcomes,
        interrupted,
        resolved,
        held,
        watching,
    })
}

/// Automatic rollback's held jobs, for status: (name, revision rolled back from, why).
fn held_of(report: &apply::ApplyReport) -> Vec<(String, Option<String>, String)> {
    report
        .held
        .iter()
        .map(|job| (job.name.clone(), job.revision.clone(), job.note.clone()))
        .collect()
}

impl TargetReconciler for ApplyReconciler {
    fn pass<'a>(
        &'a self,
        request: PassRequest<'a>,
    ) -> BoxFuture<'a, Result<PassReport, PassError>> {
        Box::pin(self.run_pass(request))
    }

    fn applied_revision(&self) -> Option<String> {
        Ledger::applied_revision(&self.context.ledger)
    }

    fn record_applied<'a>(
        &'a self,
        revision: &'a str,
        plan_id: Option<&'a str>,
        summary: &'a str,
    ) -> BoxFuture<'a, Result<(), PassError>> {
        Box::pin(async move {
            self.context
                .ledger
                .revision_applied(revision, plan_id.unwrap_or(""), summary)
                .await
                .map(|_| ())
                .map_err(|error| pass_error(&error))
        })
    }

    fn request_metrics(&self) -> Option<RequestMetrics> {
        Some(self.context.live.clients.dli.request_metrics())
    }

    fn collect_garbage<'a>(&'a self) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let interval = self.context.target.retention.interval.get();
            {
                let mut last = self.last_gc.lock().unwrap_or_else(PoisonError::into_inner);
                if last.is_some_and(|at| at.elapsed() < interval) {
                    return None;
                }
                *last = Some(std::time::Instant::now());
            }
            let (mirrors, _) = crate::gc::collect_mirrors(&self.config, false);
            if !mirrors.is_empty() {
                tracing::info!(
                    mirrors = mirrors.len(),
                    "Garbage collection deleted git mirrors no source uses."
                );
            }
            match crate::gc::collect(&self.context, false).await {
                Ok(report) => (!report.deleted.is_empty()
                    || !report.finished.is_empty()
                    || !report.refused.is_empty()
                    || !report.failed.is_empty())
                .then(|| {
                    format!(
                        "garbage collection: {} deleted, {} finished, {} refused, {} failed",
                        report.deleted.len(),
                        report.finished.len(),
                        report.refused.len(),
                        report.failed.len()
                    )
                }),
                Err(error) => Some(format!("garbage collection failed: {error}")),
            }
        })
    }

    fn job_records(&self) -> std::collections::BTreeMap<String, crate::status::JobRecords> {
        let state = self.journal.state_guard();
        let Some(target) = state.targets.get(&self.context.name) else {
            return Default::default();
        };
        let mut records: std::collections::BTreeMap<String, crate::status::JobRecords> = target
            .jobs
            .iter()
            .map(|(key, job)| {
                (
                    key.clone(),
                    crate::status::JobRecords {
                        savepoint: job.savepoint_path.clone(),
                        backups: Vec::new(),
                    },
                )
            })
            .collect();
        for backup in target.backups.iter().rev() {
            let entry = records.entry(backup.job.clone()).or_default();
            if entry.backups.len() < crate::status::BACKUPS_SHOWN {
                entry.backups.extend(backup.zip_paths.iter().rev().cloned());
                entry.backups.truncate(crate::status::BACKUPS_SHOWN);
            }
        }
        records
    }
}

fn pass_error(error: &ApplyError) -> PassError {
    let code = match error {
        ApplyError::Observe { source, .. } => source.code.clone(),
        _ => None,
    };
    PassError {
        what: error_chain(error),
        code,
    }
}
