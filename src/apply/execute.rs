//! Runs a plan's actions step by step, exactly as planned: one idempotent attempt per action,
//! an intent before and an outcome after each, a failure on one job never stopping the others.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument;

use super::ledger::{
    ActionEffects, IntentEntry, Ledger, OneShot, OutcomeEntry, RecordedFailure, journal_key,
    record_one_shot,
};
use super::live::{LiveService, ServiceFailure};
use super::{ActionResult, ApplyError, ApplyOptions};
use crate::journal::SavepointRecord;
use crate::model::{DesiredJobs, FlinkJobStatus, JobKind, ObservedFlinkJob};
use crate::plan::{ActionClass, JobAction, Plan, SavepointSource, Step};
use crate::savepoints::Origin;

/// Everything one pass's execution reads.
pub(crate) struct Executor<'a, L, J> {
    pub pass_id: &'a str,
    pub live: &'a L,
    pub ledger: &'a J,
    pub desired: &'a DesiredJobs,
    pub plan: &'a Plan,
    pub options: &'a ApplyOptions,
    /// With automatic rollback in play: each upgrade is guarded as soon as its outcome is
    /// journaled (`auto_rollback::guard_upgrades` for that one action), not after the whole
    /// run, so a crash later in the pass cannot leave it unguarded.
    pub guard_against: Option<GuardScope<'a>>,
}

/// What guarding upgrades as they end needs, read once per pass.
pub(crate) struct GuardScope<'a> {
    /// The live jobs as observed before the pass acted (a guard's previous definition).
    pub observed_before: &'a crate::model::ObservedJobs,
    /// The jobs with a guard when the pass planned: another change to one of them forgets it.
    pub watched: std::collections::BTreeSet<String>,
}

impl GuardScope<'_> {
    /// `action` may set or clear a guard: an upgrade or restore of a Flink job, or any change
    /// to a watched one. Only those pay for `guard_upgrades` (it reads the journal's view).
    fn concerns(&self, action: &JobAction) -> bool {
        action.kind != JobKind::Dlf
            && (matches!(action.class, ActionClass::Upgrade | ActionClass::Restore)
                || self.watched.contains(&action.name))
    }
}

/// What the steps of one action produced so far.
#[derive(Debug, Default)]
struct ActionState {
    live_id: Option<i64>,
    stop_savepoint: Option<String>,
    savepoint: Option<String>,
    backups: Vec<String>,
    restore_applied: bool,
    deleted: bool,
    steps_done: usize,
    /// What the service reported as warnings (a DLF task that ended `WARNING`).
    warnings: Vec<String>,
    /// The savepoint triggered before the stop (the service's) and our verified copy of it
    /// (the catalog's entry).
    pre_stop: Option<(String, String)>,
    /// The next `ImportSavepoint` imports this copy instead of the service's savepoint the
    /// job holds (which the service deletes when the job restarts).
    import_copy: Option<String>,
}

impl<L: LiveService, J: Ledger> Executor<'_, L, J> {
    /// Runs every action that changes something, in plan order. Only a journal failure stops
    /// the pass (an action that cannot be announced must not run).
    /// Actions run `options.parallel_actions` at a time (each touches one job); results come
    /// back in plan order.
    pub async fn run(&self) -> Result<Vec<ActionResult>, ApplyError> {
        // `depends_on`: an action on hold does not run; the others run in the plan's order
        // (`Plan::order`), a group at a time, and an action whose `after` failed does not start.
        let changes: Vec<(usize, &JobAction)> = self
            .plan
            .changes()
            .enumerate()
            .filter(|(_, action)| !action.is_held())
            .collect();
        let groups = crate::plan::waves(changes.iter().map(|(_, action)| *action))
            .unwrap_or_else(|| vec![(0..changes.len()).collect()]);
        let mut results: Vec<Option<Result<ActionResult, ApplyError>>> =
            changes.iter().map(|_| None).collect();
        for group in groups {
            let mut runnable = Vec::new();
            for position in group {
                let (index, action) = changes[position];
                let failed = action.after.iter().find(|key| {
                    changes.iter().zip(&results).any(|((_, before), result)| {
                        before.key() == **key && matches!(result, Some(Ok(result)) if !result.ok)
                    })
                });
                match failed {
                    Some(key) => {
                        results[position] = Some(Ok(not_started(
                            self,
                            index,
                            action,
                            format!(
                                "not started: `{key}`, which it waits for (depends_on), did not complete in this pass"
                            ),
                        )))
                    }
                    None => runnable.push(position),
                }
            }
            // Collected first: a lazy `map` over borrowed actions would make the pass's future
            // lose `Send` (rustc cannot prove the closure general over lifetimes), and the
            // daemon spawns it.
            let actions: Vec<_> = runnable
                .iter()
                .map(|&position| {
                    let (index, action) = changes[position];
                    let span = tracing::info_span!(
                        "action",
                        target = self.ledger.target(),
                        plan_id = %self.plan.id,
                        job = %action.name,
                        class = action.class.as_str()
                    );
                    self.run_and_guard(index, action).instrument(span)
                })
                .collect();
            // Every action that started runs to its end, even when another fails to be
            // announced (a journal error, shutdown): dropping it would cut an upgrade between
            // its stop and its start and leave the job down. The first error is returned after,
            // and no later group starts.
            let done: Vec<Result<ActionResult, ApplyError>> = futures::stream::iter(actions)
                .buffered(self.options.parallel_actions.max(1))
                .collect()
                .await;
            let refused = done.iter().any(Result::is_err);
            for (position, result) in runnable.into_iter().zip(done) {
                results[position] = Some(result);
            }
            if refused {
                break;
            }
        }
        results.into_iter().flatten().collect()
    }

    /// One action, then (with automatic rollback in play) its guard, journaled right after
    /// its outcome.
    async fn run_and_guard(
        &self,
        index: usize,
        action: &JobAction,
    ) -> Result<ActionResult, ApplyError> {
        let result = self.run_action(index, action).await?;
        if let Some(scope) = &self.guard_against
            && scope.concerns(action)
        {
            super::auto_rollback::guard_upgrades(
                self.ledger,
                std::slice::from_ref(&result),
                self.plan,
                scope.observed_before,
                self.desired,
                self.options,
            )
            .await?;
        }
        Ok(result)
    }

    async fn run_action(
        &self,
        index: usize,
        action: &JobAction,
    ) -> Result<ActionResult, ApplyError> {
        let action_id = action_id(&self.plan.id, self.pass_id, index);
        let job = journal_key(action.kind, &action.name);
        self.journal_intent(&action_id, &job, action).await?;
        let mut state = ActionState {
            live_id: action.live_id,
            ..ActionState::default()
        };
        let failure = self.run_steps(&action_id, &job, action, &mut state).await?;
        self.finish_action(action_id, job, action, state, failure)
            .await
    }

    /// Journals the intent of an action before its first step.
    async fn journal_intent(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
    ) -> Result<(), ApplyError> {
        self.ledger
            .intent(IntentEntry {
                action_id: action_id.to_string(),
                job: job.to_string(),
                action: action.class.as_str().to_string(),
                plan_id: Some(self.plan.id.clone()),
                detail: json!({
                    "kind": action.kind,
                    "live_id": action.live_id,
                    "steps": action.steps,
                    "desired_digest": action.desired_digest,
                }),
            })
            .await?;
        Ok(())
    }

    /// Runs the action's steps in order, each after its savepoint is secured; the first that
    /// fails ends the action. Answers the failed step's name and failure, if one failed.
    async fn run_steps(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
        state: &mut ActionState,
    ) -> Result<Option<(&'static str, ServiceFailure)>, ApplyError> {
        let mut failure = None;
        for step in &action.steps {
            self.options.progress.report(|| super::StepEvent {
                kind: action.kind,
                job: action.name.clone(),
                action: action.class.as_str().to_string(),
                step: super::step_words(step),
                number: state.steps_done + 1,
                total: action.steps.len(),
            });
            // Strict state: what a step needs saved is copied and verified before it runs.
            if let Err(error) = self
                .before_step(action_id, job, action, step, state)
                .await?
            {
                tracing::warn!(
                    target_name = self.ledger.target(),
                    job = %action.name,
                    step = step_name(step),
                    error = %error.message,
                    "The savepoint a step needs could not be secured; the action ends here and the job is left as it is."
                );
                failure = Some(("savepoint", error));
                break;
            }
            match self.run_step(action, step, state).await {
                Ok(()) => {
                    state.steps_done += 1;
                    if let Some(failed) =
                        self.after_step(action_id, job, action, step, state).await?
                    {
                        failure = Some(failed);
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        target_name = self.ledger.target(),
                        job = %action.name,
                        step = step_name(step),
                        code = error.code.as_deref().unwrap_or("-"),
                        error = %error.message,
                        "A step failed; the action ends here and the next pass re-plans."
                    );
                    failure = Some((step_name(step), error));
                    break;
                }
            }
        }
        Ok(failure)
    }

    /// What follows a step that succeeded: the savepoint a stop took is copied and journaled
    /// (the action ends when it cannot be copied), a restore's import is journaled at once.
    async fn after_step(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
        step: &Step,
        state: &mut ActionState,
    ) -> Result<Option<(&'static str, ServiceFailure)>, ApplyError> {
        if let (Step::Stop { .. }, Some(path)) = (step, state.stop_savepoint.clone()) {
            // The service deletes its stop savepoint when the job restarts: the
            // action resumes from our verified copy of it.
            let copied = self
                .keep_savepoint(action_id, job, action, state.live_id, &path, Origin::Stop)
                .await?;
            let kept = copied.as_ref().map_or(&path, |(copy, _)| copy).clone();
            self.record_one_shot(
                action_id,
                job,
                "stop_savepoint",
                state.live_id,
                ActionEffects {
                    savepoint_path: Some(kept.clone()),
                    ..ActionEffects::default()
                },
            )
            .await?;
            if let Err(error) = copied {
                return Ok(Some((
                    "copy_stop_savepoint",
                    ServiceFailure {
                        message: format!(
                            "the job is stopped and its state is in the service's savepoint {path}, which the service deletes at the next restart; it was not copied, so the job is not restarted: {}",
                            error.message
                        ),
                        ..error
                    },
                )));
            }
            state.stop_savepoint = Some(kept.clone());
            state.savepoint = Some(kept);
        }
        if let (Step::ImportSavepoint { .. }, true, Some(key)) =
            (step, state.restore_applied, &action.restore_key)
        {
            // A restore is a one-shot step: applied twice, it would throw away
            // everything the job built since. Journaled the moment it succeeds.
            self.record_one_shot(
                action_id,
                job,
                "restore",
                state.live_id,
                ActionEffects {
                    live_id: state.live_id,
                    savepoint_path: state.savepoint.clone(),
                    restore_key: Some(key.clone()),
                    ..ActionEffects::default()
                },
            )
            .await?;
        }
        Ok(None)
    }

    /// Journals the action's outcome (its effects so far, and the failure if a step failed)
    /// and reports it.
    async fn finish_action(
        &self,
        action_id: String,
        job: String,
        action: &JobAction,
        state: ActionState,
        failure: Option<(&'static str, ServiceFailure)>,
    ) -> Result<ActionResult, ApplyError> {
        let ok = failure.is_none();
        if !ok && action.kind == JobKind::Dlf {
            self.dlf_after_failure(action, &job, state.steps_done)
                .await?;
        }
        let effects = ActionEffects {
            live_id: if state.deleted { None } else { state.live_id },
            savepoint_path: state.savepoint.clone(),
            backup_zips: state.backups.clone(),
            spec_digest: if ok && action.class != ActionClass::Prune && !action.is_waiting() {
                action.desired_digest.clone()
            } else {
                None
            },
            restore_key: if state.restore_applied {
                action.restore_key.clone()
            } else {
                None
            },
            deleted: state.deleted,
            managed: (ok && !state.deleted && !action.is_waiting()).then_some(true),
            protected: (ok && action.class != ActionClass::Prune && !action.is_waiting())
                .then_some(action.protected),
            warnings: state.warnings.clone(),
            ..ActionEffects::default()
        };
        let error = failure.as_ref().map(|(step, failure)| RecordedFailure {
            code: failure.code.clone(),
            message: format!("{step}: {}", failure.message),
            request_id: failure.request_id.clone(),
        });
        self.ledger
            .outcome(OutcomeEntry {
                action_id: action_id.clone(),
                job,
                ok,
                error: error.clone(),
                effects: effects.clone(),
                plan_id: Some(self.plan.id.clone()),
            })
            .await?;
        if ok {
            tracing::info!(target_name = self.ledger.target(), job = %action.name, class = action.class.as_str(), "Applied an action.");
        }
        Ok(ActionResult {
            kind: action.kind,
            name: action.name.clone(),
            class: action.class,
            action_id,
            ok,
            error,
            steps_done: state.steps_done,
            steps_total: action.steps.len(),
            live_id: effects.live_id,
            savepoint_path: effects.savepoint_path,
            backups: effects.backup_zips,
            warnings: state.warnings,
        })
    }

    /// Journals a one-shot step's effect the moment it succeeded (see [`record_one_shot`]):
    /// the savepoint a stop just took (an update may detach the job from it), or a restore's
    /// savepoint import (never to be applied twice).
    async fn record_one_shot(
        &self,
        action_id: &str,
        job: &str,
        part: &str,
        live_id: Option<i64>,
        effects: ActionEffects,
    ) -> Result<(), ApplyError> {
        record_one_shot(
            self.ledger,
            OneShot {
                part_of: action_id,
                job,
                part,
                plan_id: Some(&self.plan.id),
                live_id,
                effects,
            },
        )
        .await
    }

    /// Secures the state a step is about to put at risk (strict state):
    /// * before a stop with a savepoint of a running Flink job: a savepoint is triggered while
    ///   it runs, found complete (`_metadata`), copied under our prefix, verified and journaled
    ///   (`savepoint`, origin `triggered`); if any of it fails the job is not stopped and keeps
    ///   running its current version;
    /// * before the import of the savepoint a stopped job holds on the service (the service's
    ///   own, deleted at the restart): it is copied and verified, and the copy is imported.
    ///
    /// The outer `Result` is a journal failure (ends the pass); the inner one ends the action.
    async fn before_step(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
        step: &Step,
        state: &mut ActionState,
    ) -> Result<Result<(), ServiceFailure>, ApplyError> {
        if action.kind == JobKind::Dlf {
            return Ok(Ok(()));
        }
        match step {
            Step::Stop {
                trigger_savepoint: true,
            } => {
                self.secure_stop_savepoint(action_id, job, action, state)
                    .await
            }
            Step::ImportSavepoint {
                source: SavepointSource::Path(path) | SavepointSource::Held(path),
            } => {
                self.secure_imported_savepoint(action_id, job, action, path, state)
                    .await
            }
            Step::Start {
                resume_savepoint: true,
            } if state.savepoint.is_none() => {
                self.secure_held_savepoint(action_id, job, action, state)
                    .await
            }
            _ => Ok(Ok(())),
        }
    }

    /// Before a stop with a savepoint: the savepoint is triggered and copied (and verified)
    /// while the job still runs; if either fails the job is not stopped.
    async fn secure_stop_savepoint(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
        state: &mut ActionState,
    ) -> Result<Result<(), ServiceFailure>, ApplyError> {
        // The plan stops only a running job (a moving one waits for `WaitSteady`), so
        // the savepoint is triggered without reading the job first; a job that is not
        // running refuses the trigger and is not stopped.
        let Some(job_id) = state.live_id else {
            return Ok(Ok(()));
        };
        let triggered = match self.trigger_complete_savepoint(action, job_id).await {
            Ok(path) => path,
            Err(error) => {
                return Ok(Err(explained(
                    error,
                    format_args!(
                        "no savepoint could be taken before the stop, so job {job_id} was not stopped and keeps running its current version"
                    ),
                )));
            }
        };
        let kept = self
            .keep_savepoint(
                action_id,
                job,
                action,
                Some(job_id),
                &triggered,
                Origin::Triggered,
            )
            .await?;
        Ok(kept
            .map(|(copy, _)| state.pre_stop = Some((triggered, copy)))
            .map_err(|error| {
                explained(
                    error,
                    format_args!(
                        "the savepoint taken before the stop could not be copied and verified, so job {job_id} was not stopped and keeps running its current version"
                    ),
                )
            }))
    }

    /// Before a savepoint import: a savepoint of the service's own that the job holds (which
    /// the service deletes when the job restarts) is copied first, unless a copy exists.
    async fn secure_imported_savepoint(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
        path: &str,
        state: &mut ActionState,
    ) -> Result<Result<(), ServiceFailure>, ApplyError> {
        let (Some(job_id), Some(base)) = (state.live_id, self.live.savepoint_base()) else {
            return Ok(Ok(()));
        };
        if is_a_copy(path, &base, self.ledger.target()) {
            return Ok(Ok(()));
        }
        let held = match self.live.flink_job(job_id).await {
            Ok(live) => live.savepoint_path,
            Err(error) => return Ok(Err(error)),
        };
        if !held.is_some_and(|held| crate::savepoints::same_directory(&held, path)) {
            // An explicit savepoint of the user's: not the service's to delete.
            return Ok(Ok(()));
        }
        if let Some(copy) = self.catalogued_copy_of(&action.name, path).await {
            state.import_copy = Some(copy);
            return Ok(Ok(()));
        }
        let kept = self
            .keep_savepoint(action_id, job, action, Some(job_id), path, Origin::Held)
            .await?;
        Ok(kept
            .map(|(copy, _)| state.import_copy = Some(copy))
            .map_err(|error| {
                explained(
                    error,
                    format_args!(
                        "job {job_id} holds the service's savepoint {path}, which the service deletes when the job restarts; it could not be copied, so it is not imported"
                    ),
                )
            }))
    }

    /// Before a start that resumes from the savepoint the job holds, without an import: the
    /// service deletes it at this restart, so a copy is kept first. The job resumes from the
    /// savepoint the plan named (the check before the start).
    async fn secure_held_savepoint(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
        state: &mut ActionState,
    ) -> Result<Result<(), ServiceFailure>, ApplyError> {
        let (Some(job_id), Some(base), Some(SavepointSource::Held(path))) = (
            state.live_id,
            self.live.savepoint_base(),
            action.resume_from.as_ref(),
        ) else {
            return Ok(Ok(()));
        };
        if is_a_copy(path, &base, self.ledger.target())
            || self.catalogued_copy_of(&action.name, path).await.is_some()
        {
            return Ok(Ok(()));
        }
        let kept = self
            .keep_savepoint(action_id, job, action, Some(job_id), path, Origin::Held)
            .await?;
        Ok(kept.map(|_| ()).map_err(|error| {
            explained(
                error,
                format_args!(
                    "job {job_id} would resume from the service's savepoint {path}, which the service deletes when the job restarts; it could not be copied, so the job is not started"
                ),
            )
        }))
    }

    /// A verified copy the catalog already holds of the savepoint that is in `source` now (a
    /// crashed pass copied it; a savepoint can be huge, so it is not copied twice).
    ///
    /// The same directory is not enough: the service names its stop savepoints to the second
    /// (`jobs/savepoint/{job_id}/{yyyy-mm-dd_HH-mm-ss}/`), so a second stop in the same second
    /// writes a newer savepoint into the directory an older copy was made from. The newest
    /// copy made from `source` is compared with what `source` holds now (objects and sizes,
    /// `_metadata` byte for byte); when it differs, or cannot be compared, there is none and
    /// the savepoint is copied again.
    async fn catalogued_copy_of(&self, name: &str, source: &str) -> Option<String> {
        let copy = {
            let view = self.ledger.view();
            view.savepoint_catalog
                .get(name)?
                .iter()
                .rev()
                .find(|copy| {
                    copy.source_path
                        .as_deref()
                        .is_some_and(|copied| crate::savepoints::same_directory(copied, source))
                })?
                .path
                .clone()
        };
        match self.live.savepoint_copy_matches(source, &copy).await {
            Ok(true) => Some(copy),
            Ok(false) => {
                tracing::info!(target_name = self.ledger.target(), job = name, savepoint = source, copy = %copy, "The catalog's copy of this savepoint directory is of another savepoint (the service reused the directory); it is copied again.");
                None
            }
            Err(error) => {
                tracing::warn!(target_name = self.ledger.target(), job = name, savepoint = source, copy = %copy, error = %error.message, "Could not compare the catalog's copy with the savepoint; it is copied again.");
                None
            }
        }
    }

    /// Triggers a savepoint of the running job into a fresh directory under our prefix
    /// (`<base>dli-gitops/triggered/<target>/<job>/<time>/`, the service's own savepoint: it is
    /// deleted at the restart) and waits until its `_metadata` is there and the job runs again.
    async fn trigger_complete_savepoint(
        &self,
        action: &JobAction,
        job_id: i64,
    ) -> Result<String, ServiceFailure> {
        let base = self.live.savepoint_base().ok_or_else(no_savepoint_base)?;
        let directory = crate::savepoints::trigger_directory(
            &base,
            self.ledger.target(),
            &action.name,
            chrono::Utc::now(),
        );
        self.live
            .trigger_flink_savepoint(job_id, &directory)
            .await
            .map_err(|failure| ServiceFailure {
                message: format!(
                    "triggering a savepoint into {directory}: {}",
                    failure.message
                ),
                ..failure
            })?;
        let started = Instant::now();
        loop {
            let size = self.live.savepoint_size(&directory).await?;
            let job = self.live.flink_job(job_id).await?;
            if size.is_some() && job.status.is_running() {
                return Ok(directory);
            }
            if !job.status.is_running() && job.status != FlinkJobStatus::Savepointing {
                return Err(ServiceFailure::local(format!(
                    "job {job_id} left the running state ({}) while its savepoint into {directory} was taken",
                    job.status
                )));
            }
            if started.elapsed() >= self.options.savepoint_timeout {
                return Err(ServiceFailure {
                    code: None,
                    message: format!(
                        "the savepoint triggered into {directory} was not complete (no `_metadata`) after {:?}",
                        self.options.savepoint_timeout
                    ),
                    request_id: None,
                    retryable: true,
                });
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Copies the service's savepoint `source` under our prefix, verifies the copy and journals
    /// it as a catalog entry. Returns the copy and its catalog seq.
    async fn keep_savepoint(
        &self,
        action_id: &str,
        job: &str,
        action: &JobAction,
        live_id: Option<i64>,
        source: &str,
        origin: Origin,
    ) -> Result<Result<(String, u64), ServiceFailure>, ApplyError> {
        keep_savepoint(
            self.live,
            self.ledger,
            KeptSavepoint {
                action_id,
                job,
                name: &action.name,
                live_id,
                source,
                origin,
            },
        )
        .await
    }

    async fn run_step(
        &self,
        action: &JobAction,
        step: &Step,
        state: &mut ActionState,
    ) -> Result<(), ServiceFailure> {
        let folder = plan_folder(&self.plan.id);
        match (action.kind, step) {
            (JobKind::Dlf, Step::Backup) => {
                let paths = self.live.backup_dlf_job(&action.name, &folder).await?;
                state.backups.extend(paths);
            }
            (JobKind::Dlf, Step::DlfImport) => self.dlf_import(action, &folder, state).await?,
            (JobKind::Dlf, Step::Stop { .. }) => {
                self.live.stop_dlf_schedule(&action.name).await?;
            }
            (JobKind::Dlf, Step::Start { .. }) => {
                self.live.start_dlf_schedule(&action.name).await?;
            }
            (JobKind::Dlf, Step::Delete) => {
                self.live.delete_dlf_job(&action.name).await?;
                state.deleted = true;
            }
            (JobKind::Dlf, other) => {
                return Err(ServiceFailure::local(format!(
                    "the plan asks for step `{}` on a DLF job, which has no such step; re-plan",
                    step_name(other)
                )));
            }
            (_, Step::WaitSteady) => {
                let job_id = need_id(action, state)?;
                let job = self
                    .wait_for(job_id, self.options.transition_timeout, |job| {
                        !job.status.is_transitional()
                            && (job.status.is_running() || job.status.is_stopped())
                    })
                    .await?;
                tracing::info!(job = %action.name, status = %job.status, "The job settled; the next pass plans its change.");
            }
            (_, Step::Backup) => {
                let job_id = need_id(action, state)?;
                let paths = self.live.backup_flink_job(job_id, &folder).await?;
                if paths.is_empty() {
                    return Err(ServiceFailure::local(
                        "the export for the backup returned no zip file; the job is not overwritten without a backup",
                    ));
                }
                state.backups.extend(paths);
            }
            (_, Step::Stop { trigger_savepoint }) => {
                self.stop_flink(action, *trigger_savepoint, state).await?;
            }
            (_, Step::CreateJob) => {
                let config = need_config(action)?;
                let job_id = self.live.create_flink_job(&action.name, config).await?;
                state.live_id = Some(job_id);
            }
            (_, Step::UpdateJob) => {
                let job_id = need_id(action, state)?;
                let config = need_config(action)?;
                // A running job takes only the hot fields (see `UpdateScope::for_diffs`).
                let scope = crate::model::UpdateScope::for_diffs(&action.diffs);
                self.live.update_flink_job(job_id, config, &scope).await?;
            }
            (_, Step::UpdateTags { set, remove }) => {
                let job_id = need_id(action, state)?;
                self.live.update_flink_tags(job_id, set, remove).await?;
            }
            (_, Step::ImportSavepoint { source }) => {
                let job_id = need_id(action, state)?;
                let path = match state.import_copy.take() {
                    Some(copy) => copy,
                    None => self.savepoint_path(action, source, state)?,
                };
                self.live.import_savepoint(job_id, &path).await?;
                state.savepoint = Some(path);
                if action.restore_key.is_some() {
                    state.restore_applied = true;
                }
            }
            (_, Step::Start { resume_savepoint }) => {
                self.start_flink(action, *resume_savepoint, state).await?;
            }
            (_, Step::Delete) => {
                let job_id = need_id(action, state)?;
                self.live.delete_flink_job(job_id).await?;
                state.deleted = true;
            }
            (_, Step::DlfImport) => {
                return Err(ServiceFailure::local(
                    "the plan asks for a DLF import on a Flink job; re-plan",
                ));
            }
        }
        Ok(())
    }

    /// Stops a Flink job (with a savepoint when asked) and waits until it is stopped; the
    /// savepoint the stop took becomes the one the action resumes from. A stop that reports
    /// no new savepoint fails, so that nothing is imported over the job's state.
    async fn stop_flink(
        &self,
        action: &JobAction,
        trigger_savepoint: bool,
        state: &mut ActionState,
    ) -> Result<(), ServiceFailure> {
        let job_id = need_id(action, state)?;
        let before = self.live.flink_job(job_id).await?.savepoint_path;
        if let Err(failure) = self.live.stop_flink_job(job_id, trigger_savepoint).await {
            self.did_it_land(job_id, "stop", failure, |job| {
                job.status.is_stopped()
                    || matches!(
                        job.status,
                        FlinkJobStatus::Canceling | FlinkJobStatus::Savepointing
                    )
            })
            .await?;
        }
        let timeout = if trigger_savepoint {
            self.options.transition_timeout + self.options.savepoint_timeout
        } else {
            self.options.transition_timeout
        };
        let stopped = self
            .wait_for(job_id, timeout, |job| job.status.is_stopped())
            .await?;
        if trigger_savepoint {
            let triggered = state.pre_stop.clone();
            match stopped.savepoint_path {
                // Still the savepoint triggered before the stop: the stop took none.
                Some(path)
                    if triggered.as_ref().is_some_and(|(source, _)| {
                        crate::savepoints::same_directory(source, &path)
                    }) =>
                {
                    let copy = triggered.map(|(_, copy)| copy).unwrap_or_default();
                    return Err(ServiceFailure::local(format!(
                        "job {job_id} stopped ({}) but reports no new savepoint (it still names the one triggered before the stop, {path}); nothing is imported over it; its state before the stop is kept in the catalog as {copy}",
                        stopped.status
                    )));
                }
                Some(path) => {
                    if Some(&path) == before.as_ref() {
                        // Services name savepoint folders by time; two stops in one
                        // second can share one. Said, not fatal.
                        tracing::warn!(job_id, savepoint = %path, "The job reports the same savepoint folder as before its stop.");
                    }
                    state.stop_savepoint = Some(path.clone());
                    state.savepoint = Some(path);
                }
                None => {
                    return Err(ServiceFailure::local(format!(
                        "job {job_id} stopped ({}) but reports no new savepoint; nothing is imported over it so that its state is not lost",
                        stopped.status
                    )));
                }
            }
        }
        Ok(())
    }

    /// Starts a Flink job (resuming from its savepoint when asked, after checking it is the
    /// one the plan named) and waits until it runs; one that does not fails with the status.
    async fn start_flink(
        &self,
        action: &JobAction,
        resume_savepoint: bool,
        state: &mut ActionState,
    ) -> Result<(), ServiceFailure> {
        let job_id = need_id(action, state)?;
        let before = self.live.flink_job(job_id).await?;
        if resume_savepoint {
            check_resume_savepoint(job_id, action, state, &before)?;
        }
        if let Err(failure) = self.live.run_flink_job(job_id, resume_savepoint).await {
            self.did_it_land(job_id, "run", failure, |job| {
                job.status.is_running()
                    || job.status == FlinkJobStatus::Submitting
                    || start_settled(&before, job)
            })
            .await?;
        }
        let job = self
            .wait_for(job_id, self.options.transition_timeout, |job| {
                start_settled(&before, job)
            })
            .await?;
        if !(job.status.is_running() || job.status == FlinkJobStatus::Finish) {
            return Err(ServiceFailure {
                code: job.status_desc.as_deref().and_then(leading_error_code),
                message: format!(
                    "job {job_id} did not start: it is {}{}",
                    job.status,
                    job.status_desc
                        .as_deref()
                        .map(|desc| format!(" ({desc})"))
                        .unwrap_or_default()
                ),
                request_id: None,
                retryable: false,
            });
        }
        Ok(())
    }

    /// A DLF action that was to end with the job's schedule started and failed before its
    /// start (after its stop, or with no stop: on its way to a start an earlier pass owed): the
    /// journal remembers the schedule is owed a start, so the next pass starts it (with or
    /// without an import) even when git leaves `desired_state` unset.
    async fn dlf_after_failure(
        &self,
        action: &JobAction,
        job: &str,
        steps_done: usize,
    ) -> Result<(), ApplyError> {
        let at = |wanted: fn(&Step) -> bool| action.steps.iter().position(wanted);
        let start_not_done =
            at(|step| matches!(step, Step::Start { .. })).is_some_and(|index| index >= steps_done);
        // The failed step itself may have taken effect (a stop whose answer was lost stopped
        // the schedule); only a stop never reached leaves nothing owed.
        let stop_never_sent =
            at(|step| matches!(step, Step::Stop { .. })).is_some_and(|index| index > steps_done);
        if start_not_done && !stop_never_sent {
            super::observe::remember_dlf_restart_owed(self.ledger, job).await?;
        }
        Ok(())
    }

    /// A DLF import: bundle, upload, import, wait for the task (a `WARNING` task is done, its
    /// messages go to the action's warnings), then read the definition as the service now
    /// holds it and journal its digest: the baseline drift is measured against.
    async fn dlf_import(
        &self,
        action: &JobAction,
        folder: &str,
        state: &mut ActionState,
    ) -> Result<(), ServiceFailure> {
        let desired = action
            .desired_dlf(self.desired)
            .map_err(|error| ServiceFailure::local(error.to_string()))?;
        let task_id = self.live.import_dlf_job(desired, folder).await?;
        let warnings = self
            .live
            .wait_dlf_task_warnings(&task_id, self.options.import_task_timeout)
            .await?;
        for warning in &warnings {
            tracing::warn!(target_name = self.ledger.target(), job = %action.name, task = %task_id, warning = %warning, "The DLF import finished with a warning.");
        }
        state.warnings.extend(warnings);
        let definition = self.live.dlf_job(&action.name).await?;
        let key = journal_key(JobKind::Dlf, &action.name);
        // A start the schedule is still owed (an earlier pass stopped it and died) stays owed
        // until an observation sees the schedule running: this action may die before its own
        // start, and nothing else would remember it.
        let restart_schedule = self.ledger.cached(&key).is_some_and(|cached| {
            super::observe::DlfCacheEntry::from_snapshot(cached.snapshot).restart_schedule
        });
        let entry = super::observe::DlfCacheEntry {
            live_digest: Some(crate::plan::dlf_definition_digest(&definition)),
            definition,
            restart_schedule,
            ..Default::default()
        };
        // No list time or status is known here: the next observation reads the detail once
        // more and keeps this baseline.
        self.ledger
            .observed(super::ledger::ObservationEntry {
                job: key,
                live_id: None,
                update_time: None,
                status: None,
                snapshot: entry.to_value(),
            })
            .await
            .map_err(|error| ServiceFailure::local(format!("journaling the import: {error}")))?;
        Ok(())
    }

    /// The savepoint directory an `ImportSavepoint` step imports.
    fn savepoint_path(
        &self,
        action: &JobAction,
        source: &SavepointSource,
        state: &ActionState,
    ) -> Result<String, ServiceFailure> {
        match source {
            SavepointSource::FromStop => state.stop_savepoint.clone().ok_or_else(|| {
                ServiceFailure::local(
                    "the plan imports the savepoint taken at stop, but no stop of this action produced one",
                )
            }),
            SavepointSource::Path(path) | SavepointSource::Held(path) => Ok(path.clone()),
            // Promotion: a copy carried into this account wins.
            SavepointSource::FromTarget(_) if self.options.carried_savepoints.contains_key(&action.name) => {
                Ok(self.options.carried_savepoints[&action.name].clone())
            }
            SavepointSource::FromTarget(target) => self
                .ledger
                .savepoint_in_target(target, &action.name)
                .ok_or_else(|| {
                    ServiceFailure::local(format!(
                        "restore from target `{target}`: its journal records no savepoint for `{}`; stop that job with a savepoint first, or restore from an explicit path",
                        action.name
                    ))
                }),
        }
    }

    /// A lifecycle call (run, stop) failed without a clear answer: it is never sent again
    /// blindly, since a first attempt delivered late would land after whatever came next. The
    /// job is observed instead: if it shows the call took effect (`landed`), the step goes on;
    /// otherwise the step fails, retryable, and the next pass plans from what it sees.
    async fn did_it_land(
        &self,
        job_id: i64,
        call: &str,
        failure: ServiceFailure,
        landed: impl Fn(&ObservedFlinkJob) -> bool,
    ) -> Result<(), ServiceFailure> {
        if !failure.retryable {
            return Err(failure);
        }
        let seen = self.live.flink_job(job_id).await?;
        if landed(&seen) {
            tracing::warn!(job_id, call, status = %seen.status, error = %failure.message,
                "A lifecycle call got no clear answer, but the job shows it took effect; not sending it again.");
            return Ok(());
        }
        Err(ServiceFailure {
            message: format!(
                "the {call} call for job {job_id} got no clear answer ({}), and the job is still {}: it is not sent again, since a late first attempt could land after it; the next pass looks again",
                failure.message, seen.status
            ),
            ..failure
        })
    }

    /// Polls a job's detail until `done` holds, or fails after `timeout`.
    async fn wait_for(
        &self,
        job_id: i64,
        timeout: Duration,
        done: impl Fn(&ObservedFlinkJob) -> bool,
    ) -> Result<ObservedFlinkJob, ServiceFailure> {
        wait_for_job(self.live, job_id, timeout, self.options.poll_interval, done).await
    }
}

/// A savepoint of the service to copy into the catalog.
pub(crate) struct KeptSavepoint<'a> {
    pub action_id: &'a str,
    /// The job's journal key.
    pub job: &'a str,
    /// The job's name (its folder under the target's prefix).
    pub name: &'a str,
    pub live_id: Option<i64>,
    pub source: &'a str,
    pub origin: Origin,
}

/// Copies the service's savepoint under the target's savepoint prefix, verifies the copy and
/// journals it as a catalog entry (`savepoint`). Returns the copy and its catalog seq; the
/// outer `Result` is a journal failure, the inner one a copy that could not be made.
pub(crate) async fn keep_savepoint<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    kept: KeptSavepoint<'_>,
) -> Result<Result<(String, u64), ServiceFailure>, ApplyError> {
    let Some(base) = live.savepoint_base() else {
        return Ok(Err(no_savepoint_base()));
    };
    let copy = crate::savepoints::copy_directory(
        &base,
        ledger.target(),
        kept.name,
        chrono::Utc::now(),
        kept.origin,
    );
    let size = match live.copy_savepoint(kept.source, &copy).await {
        Ok(size) => size,
        Err(error) => return Ok(Err(error)),
    };
    let seq = ledger
        .savepoint(SavepointRecord {
            job: kept.job.to_string(),
            path: copy.clone(),
            origin: kept.origin.as_str().to_string(),
            source_path: Some(crate::savepoints::directory(kept.source)),
            revision: ledger.applied_revision(),
            spec_digest: None,
            action_id: Some(kept.action_id.to_string()),
            live_id: kept.live_id.map(|id| id.to_string()),
            objects: size.objects,
            size_bytes: size.bytes,
            verified: true,
            extra: serde_json::Map::new(),
        })
        .await?;
    tracing::info!(target_name = ledger.target(), job = kept.name, origin = kept.origin.as_str(), savepoint = %copy, seq, bytes = size.bytes, "Copied and verified a savepoint into the catalog.");
    Ok(Ok((copy, seq)))
}

/// Polls a job's detail until `done` holds, or fails after `timeout`.
pub(crate) async fn wait_for_job<L: LiveService>(
    live: &L,
    job_id: i64,
    timeout: Duration,
    poll_interval: Duration,
    done: impl Fn(&ObservedFlinkJob) -> bool,
) -> Result<ObservedFlinkJob, ServiceFailure> {
    let started = Instant::now();
    loop {
        let job = live.flink_job(job_id).await?;
        if done(&job) {
            return Ok(job);
        }
        if started.elapsed() >= timeout {
            return Err(ServiceFailure {
                code: None,
                message: format!(
                    "job {job_id} is still {} after {:?}; the next pass looks again",
                    job.status, timeout
                ),
                request_id: None,
                retryable: true,
            });
        }
        tokio::time::sleep(poll_interval).await;
    }
}

/// A started job has settled: it runs (or its bounded input finished), or it failed — where a
/// failure status only counts once the job moved, since the service takes a moment to act on a
/// run and the job may have been failed before it.
pub(crate) fn start_settled(before: &ObservedFlinkJob, job: &ObservedFlinkJob) -> bool {
    let moved = job.status != before.status || job.update_time != before.update_time;
    job.status.is_running()
        || job.status == FlinkJobStatus::Finish
        || (moved && job.status.is_failed())
}

/// Before a start that resumes: the job must hold the savepoint this action imported (or, for
/// a held savepoint, the one the plan saw). A job that holds another one, or none, is not
/// started, so that it never resumes from the wrong state or silently from empty state.
fn check_resume_savepoint(
    job_id: i64,
    action: &JobAction,
    state: &ActionState,
    before: &ObservedFlinkJob,
) -> Result<(), ServiceFailure> {
    let expected = match (&state.savepoint, &action.resume_from) {
        (Some(imported), _) => Some(imported.as_str()),
        (None, Some(SavepointSource::Held(path))) => Some(path.as_str()),
        _ => None,
    };
    let Some(expected) = expected else {
        return Ok(());
    };
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    match before.savepoint_path.as_deref() {
        Some(held) if same(held, expected) => Ok(()),
        held => Err(ServiceFailure::local(format!(
            "job {job_id} should resume from {expected} but holds {}; it is not started, so that it does not resume from the wrong state",
            held.unwrap_or("no savepoint")
        ))),
    }
}

fn no_savepoint_base() -> ServiceFailure {
    ServiceFailure::local(
        "the target has neither a `backups:` nor a `staging:` location, where savepoint copies are kept; set one, or make the job `upgrade_mode: stateless`",
    )
}

/// Whether `path` is already a copy of ours: in the target's catalog prefix, or a savepoint
/// carried from another target (`carried-savepoints/`).
fn is_a_copy(path: &str, base: &str, target: &str) -> bool {
    crate::savepoints::is_ours(path, base, target)
        || path.contains(&format!("/{}/", crate::savepoints::CARRIED_PREFIX))
}

fn need_id(action: &JobAction, state: &ActionState) -> Result<i64, ServiceFailure> {
    state.live_id.ok_or_else(|| {
        ServiceFailure::local(format!(
            "the plan acts on live job `{}` but no live id is known for it; re-plan",
            action.name
        ))
    })
}

fn need_config(action: &JobAction) -> Result<&crate::model::FlinkJobConfig, ServiceFailure> {
    action.config.as_deref().ok_or_else(|| {
        ServiceFailure::local(format!(
            "the plan writes job `{}` but carries no configuration; re-plan",
            action.name
        ))
    })
}

/// `DLI.13024: ...` → `DLI.13024`.
fn leading_error_code(text: &str) -> Option<String> {
    let (code, _) = text.split_once(':')?;
    let code = code.trim();
    let looks_like_code = code.contains('.')
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
    looks_like_code.then(|| code.to_string())
}

/// A fresh id for one executing pass (64 random bits, hex): equal plans get equal plan ids, so
/// the pass id is what tells two applies of one plan apart (rollback picks backups by it).
/// The result of an action that did not start because an action it waits for failed.
fn not_started<L, J: Ledger>(
    executor: &Executor<'_, L, J>,
    index: usize,
    action: &JobAction,
    message: String,
) -> ActionResult {
    tracing::warn!(
        target_name = executor.ledger.target(),
        job = %action.name,
        "{message}"
    );
    ActionResult {
        kind: action.kind,
        name: action.name.clone(),
        class: action.class,
        action_id: action_id(&executor.plan.id, executor.pass_id, index),
        ok: false,
        error: Some(RecordedFailure {
            code: Some("DEPENDENCY_NOT_READY".to_string()),
            message,
            request_id: None,
        }),
        steps_done: 0,
        steps_total: action.steps.len(),
        live_id: action.live_id,
        savepoint_path: None,
        backups: Vec::new(),
        warnings: Vec::new(),
    }
}

pub(crate) fn new_pass_id() -> String {
    let random: u64 = rand::random();
    format!("{random:016x}")
}

/// The id of the `index`th action of a pass: `<plan id prefix>-<pass id>-<index>`.
pub(crate) fn action_id(plan_id: &str, pass_id: &str, index: usize) -> String {
    format!("{}-{pass_id}-{index}", plan_short(plan_id))
}

/// The pass an action id names (see [`action_id`]).
pub(crate) fn pass_of(action_id: &str) -> Option<&str> {
    action_id.split('-').nth(1)
}

pub(crate) fn plan_short(plan_id: &str) -> &str {
    &plan_id[..plan_id.len().min(12)]
}

/// The staging/backup folder of one plan: its id's prefix, so retries of the same plan
/// overwrite their own files rather than pile up.
pub(crate) fn plan_folder(plan_id: &str) -> String {
    format!("plan-{}", plan_short(plan_id))
}

/// The failure with `why` said before the service's message.
fn explained(error: ServiceFailure, why: std::fmt::Arguments<'_>) -> ServiceFailure {
    ServiceFailure {
        message: format!("{why}: {}", error.message),
        ..error
    }
}

pub(crate) fn step_name(step: &Step) -> &'static str {
    match step {
        Step::WaitSteady => "wait_steady",
        Step::Backup => "backup",
        Step::Stop { .. } => "stop",
        Step::CreateJob => "create_job",
        Step::UpdateJob => "update_job",
        Step::UpdateTags { .. } => "update_tags",
        Step::ImportSavepoint { .. } => "import_savepoint",
        Step::Start { .. } => "start",
        Step::Delete => "delete",
        Step::DlfImport => "dlf_import",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_taken_from_status_descriptions() {
        assert_eq!(
            leading_error_code("DLI.13024: No job-running queue selected."),
            Some("DLI.13024".to_string())
        );
        assert_eq!(leading_error_code("the queue is gone: try again"), None);
        assert_eq!(leading_error_code("no colon"), None);
    }

    #[test]
    fn a_start_settles_on_running_or_on_a_failure_the_job_moved_into() {
        let job = |status: FlinkJobStatus, update_time: i64| ObservedFlinkJob {
            id: 1,
            name: "j".into(),
            status,
            update_time,
            config: crate::model::FlinkJobConfig::defaults_for(JobKind::FlinkSql),
            savepoint_path: None,
            status_desc: None,
        };
        let crashed = job(FlinkJobStatus::RunningException, 10);
        assert!(
            !start_settled(&crashed, &job(FlinkJobStatus::RunningException, 10)),
            "not yet acted on"
        );
        assert!(!start_settled(
            &crashed,
            &job(FlinkJobStatus::Submitting, 11)
        ));
        assert!(start_settled(&crashed, &job(FlinkJobStatus::Running, 12)));
        assert!(start_settled(
            &crashed,
            &job(FlinkJobStatus::SubmitFail, 12)
        ));
        let stopped = job(FlinkJobStatus::CancelSuccess, 10);
        assert!(!start_settled(
            &stopped,
            &job(FlinkJobStatus::CancelSuccess, 10)
        ));
        assert!(start_settled(&stopped, &job(FlinkJobStatus::Finish, 11)));
    }

    #[test]
    fn action_ids_name_their_plan_and_pass() {
        let plan_id = "0123456789abcdef0123";
        let (first_pass, second_pass) = (new_pass_id(), new_pass_id());
        assert_ne!(first_pass, second_pass);
        let id = action_id(plan_id, &first_pass, 3);
        assert_eq!(id, format!("0123456789ab-{first_pass}-3"));
        assert_eq!(pass_of(&id), Some(first_pass.as_str()));
        assert_ne!(id, action_id(plan_id, &second_pass, 3));
        assert_eq!(plan_folder(plan_id), "plan-0123456789ab");
    }
}
