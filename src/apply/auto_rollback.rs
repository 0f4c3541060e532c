//! Automatic rollback of a failed upgrade (opt-in: a target's `policy.rollback_on_failure`).
//!
//! After a pass upgraded (or restored) a Flink job whose policy asks for it, the journal keeps
//! a guard of that upgrade (`Memory::guard`): the definition the job had before (as last read
//! from the service), the savepoint the upgrade stopped it with, the revisions and the time.
//! Every later pass (the daemon's report passes too, unless suspended) looks at the guarded job
//! first: when it failed to reach running, or failed within `within` of the upgrade, the
//! previous definition is written back (`UpdateJob`), the stop savepoint imported, and the job
//! started from it. The revision is marked failed for that job (`Memory::failed`), so the
//! planner holds the job instead of looping back into the bad version; the next commit that
//! changes the job (another desired digest) clears the mark.
//!
//! Journaling: the rollback is one action (`auto_rollback` intent, outcome); the failure mark
//! is journaled as its own one-shot (`-revision-failed`) before anything is touched, so a crash
//! anywhere afterwards leaves a mark whose guard is still set: the rollback is owed, and the
//! next pass finishes it whatever the clock says. An intent left open by a crash before the
//! mark is owed too. The memory rides on outcome effects (`effects.auto_rollback`), replaced
//! whole, so the journal state holds it per job.
//!
//! # Design and invariants
//!
//! * Automatic rollback (`auto_rollback.rs`, opt-in per target and job). As each action ends, every
//!   `Upgrade`/`Restore` of a Flink job whose policy asks for it and that ended running, or failed
//!   at its start step, gets a guard: a one-shot `<action>-rollback-guard` whose outcome carries
//!   `effects.auto_rollback` = `{guard: {previous_config (the live definition the pass observed
//!   before acting), savepoint (the path the upgrade imported: its stop savepoint, our copy once
//!   copied), revision, previous_revision, desired_digest, within_ms, started_at}}`. The journal
//!   keeps it per job (`JobState.auto_rollback`, replaced whole; `{}` forgets it); the planner sees
//!   it as `JournalView::auto_rollback`. At the start of every pass that may act, and of the
//!   daemon's report passes unless suspended (`ApplyOptions::watch_upgrades`), before planning:
//!   a guarded job that failed (`is_failed`) within its window is rolled back: an `auto_rollback`
//!   intent, then the failure mark (`-revision-failed` one-shot, `failed: {desired_digest, note,
//!   revision}`) before any call, then `UpdateJob` with the previous definition (full body, or
//!   clearing), `ImportSavepoint` of the guard's savepoint, a check that the job holds it, `run`
//!   with `resume_savepoint`, wait for running; the outcome clears the guard and sets
//!   `rolled_back`. A guard with a mark for its digest, or an open `auto_rollback` intent, is owed:
//!   the next pass finishes it whatever the clock says (crash safety); at most `MAX_ATTEMPTS` (3)
//!   tries. A job still running after its window loses its guard. The planner holds a job whose
//!   desired digest equals the mark's (`JournalView::held` → class `None`, a reason and a warning);
//!   a different digest (a commit that changes the job) clears the mark (journaled) and plans
//!   normally. Status: `status::mark_rolled_back` makes a held job `Degraded`/`OutOfSync`
//!   with the note and the revision; a successful rollback journals `revision_applied` with the
//!   guard's `previous_revision` when the journal had the failed revision as applied (the upgrade
//!   pass may have converged before the job failed), so status and the promotion pipeline never
//!   take the failed revision for a good one; the worker does not journal the revision as applied while a
//!   job is held and looks again every `progress_interval` while an upgrade is watched; a Degraded
//!   sample is a failed revision for the promotion gate (`sample_of`).
//!   Per job, from git: the job field `rollback_on_failure: {enabled, within}` (a field-table
//!   `TextMap`, read into `model::JobPolicy::rollback_on_failure` by `desired::dependencies`, so an
//!   environment override sets it like any field; not part of the digest) wins over the config's
//!   `policy.rollback_on_failure.jobs.<name>`, which wins over the target's setting
//!   (`RollbackPolicy::for_job_with`).
//!   Choice: the previous definition comes from the journal (the observation the pass made before
//!   acting), not from the backup export: writing it with the documented update call needs no
//!   export layout and works with backups off. The guard is journaled right after the upgrade's
//!   outcome, by the executor for that one action (`Executor::guard_against`), not after the
//!   whole run: a crash later in the pass leaves it watched
//!   (`tests/auto_rollback.rs::an_upgrade_is_guarded_even_when_the_pass_dies_after_it`). Not
//!   covered: a crash in the moment between those two fsyncs leaves that upgrade unguarded (the
//!   job is then reported Degraded as before).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::execute::{new_pass_id, start_settled, wait_for_job};
use super::ledger::{
    ActionEffects, IntentEntry, Ledger, OneShot, OutcomeEntry, PendingAction, RecordedFailure,
    record_one_shot,
};
use super::live::{LiveService, ServiceFailure};
use super::{ActionResult, ApplyError, ApplyOptions};
use crate::model::{DesiredJobs, FlinkJobConfig, JobKind, ObservedFlinkJob, ObservedJobs};
use crate::plan::{ActionClass, JournalView, Step};

/// The intent's action word of an automatic rollback.
pub const ACTION: &str = "auto_rollback";

/// Rollback attempts on one guard before automatic rollback gives up and reports the job as
/// needing a manual restore.
pub const MAX_ATTEMPTS: u32 = 3;

/// A target's `rollback_on_failure`, resolved: the target's default and per-job overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RollbackPolicy {
    pub enabled: bool,
    pub within: Duration,
    /// Per job: `(enabled, within)`, each overriding the target's when set.
    pub jobs: BTreeMap<String, (Option<bool>, Option<Duration>)>,
}

impl RollbackPolicy {
    pub fn from_config(config: &crate::config::RollbackOnFailureConfig) -> RollbackPolicy {
        RollbackPolicy {
            enabled: config.enabled,
            within: config.within.get(),
            jobs: config
                .jobs
                .iter()
                .map(|(name, job)| {
                    (
                        name.clone(),
                        (job.enabled, job.within.as_ref().map(|within| within.get())),
                    )
                })
                .collect(),
        }
    }

    /// The watch window of `job` when automatic rollback is on for it.
    pub fn for_job(&self, job: &str) -> Option<Duration> {
        let (enabled, within) = self.jobs.get(job).cloned().unwrap_or_default();
        enabled
            .unwrap_or(self.enabled)
            .then(|| within.unwrap_or(self.within))
    }

    /// The watch window of `job`, its own `rollback_on_failure` (from git: the job file or an
    /// environment override) winning over the config's per-job and target settings.
    pub fn for_job_with(
        &self,
        job: &str,
        own: Option<&crate::model::RollbackOverride>,
    ) -> Option<Duration> {
        let (config_enabled, config_within) = self.jobs.get(job).cloned().unwrap_or_default();
        let enabled = own
            .and_then(|own| own.enabled)
            .or(config_enabled)
            .unwrap_or(self.enabled);
        let within = own
            .and_then(|own| own.within_ms)
            .map(Duration::from_millis)
            .or(config_within)
            .unwrap_or(self.within);
        enabled.then_some(within)
    }

    /// On for at least one job.
    pub fn any(&self) -> bool {
        self.enabled
            || self
                .jobs
                .values()
                .any(|(enabled, _)| *enabled == Some(true))
    }
}

/// What the journal remembers for automatic rollback about one job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedMark>,
}

impl Memory {
    pub fn from_value(value: &serde_json::Value) -> Option<Memory> {
        serde_json::from_value(value.clone()).ok()
    }

    fn to_value(&self) -> serde_json::Value {
        // `{}` (nothing to remember) makes the journal forget the job's memory.
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

/// An upgrade under watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    /// The upgrade's action id.
    pub action_id: String,
    /// The revision the upgrade applied (rolled back from, if it fails).
    pub revision: Option<String>,
    /// The revision the target had converged on before.
    pub previous_revision: Option<String>,
    /// The desired digest the upgrade applied.
    pub desired_digest: Option<String>,
    /// The definition the job had before the upgrade, as the service reported it.
    pub previous_config: FlinkJobConfig,
    /// The savepoint the upgrade stopped the job with (what a rollback resumes from).
    pub savepoint: Option<String>,
    pub within_ms: u64,
    /// When the upgrade ended (the start of the watch window).
    pub started_at: DateTime<Utc>,
    /// Rollback attempts made so far.
    #[serde(default)]
    pub attempts: u32,
}

/// A revision that failed for a job and was rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedMark {
    pub revision: Option<String>,
    /// The desired digest that failed: the planner holds the job while git asks for it.
    pub desired_digest: String,
    /// Why, in a sentence (status and plan show it).
    pub note: String,
    pub previous_revision: Option<String>,
    pub at: DateTime<Utc>,
    /// The rollback finished: the previous definition runs again from its savepoint.
    #[serde(default)]
    pub rolled_back: bool,
}

/// A job held on its previous definition by a failure mark, for status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldJob {
    pub name: String,
    /// The revision rolled back from.
    pub revision: Option<String>,
    pub note: String,
    pub rolled_back: bool,
}

/// What automatic rollback did to one job in a pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoRollbackResult {
    pub name: String,
    pub action_id: String,
    pub revision: Option<String>,
    pub ok: bool,
    pub message: String,
}

/// The memory of every Flink job the journal has one for.
fn memories(view: &JournalView) -> BTreeMap<String, Memory> {
    view.auto_rollback
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), Memory::from_value(value)?)))
        .collect()
}

/// The jobs git still asks to run the definition that failed (for status and the worker).
pub fn held_jobs(view: &JournalView, desired: &DesiredJobs) -> Vec<HeldJob> {
    memories(view)
        .into_iter()
        .filter_map(|(name, memory)| {
            let mark = memory.failed?;
            desired
                .flink
                .iter()
                .any(|job| job.name == name && job.digest == mark.desired_digest)
                .then_some(HeldJob {
                    name,
                    revision: mark.revision,
                    note: mark.note,
                    rolled_back: mark.rolled_back,
                })
        })
        .collect()
}

/// Jobs with an upgrade under watch.
pub fn watched_jobs(view: &JournalView) -> usize {
    watched_names(view).len()
}

/// The Flink jobs with an upgrade under watch (a guard), by name.
pub fn watched_names(view: &JournalView) -> BTreeSet<String> {
    memories(view)
        .into_iter()
        .filter(|(_, memory)| memory.guard.is_some())
        .map(|(name, _)| name)
        .collect()
}

/// Jobs whose automatic rollback an interrupted run left open (its intent has no outcome).
pub fn interrupted(pending: &[PendingAction]) -> BTreeSet<String> {
    pending
        .iter()
        .filter(|intent| intent.action == ACTION)
        .map(|intent| intent.job.clone())
        .collect()
}

/// Journals a job's memory as a one-shot step of `part_of`.
async fn remember<J: Ledger>(
    ledger: &J,
    part_of: &str,
    job: &str,
    part: &str,
    live_id: Option<i64>,
    memory: &Memory,
) -> Result<(), ApplyError> {
    record_one_shot(
        ledger,
        OneShot {
            part_of,
            job,
            part,
            plan_id: None,
            live_id,
            effects: ActionEffects {
                auto_rollback: Some(memory.to_value()),
                ..ActionEffects::default()
            },
        },
    )
    .await
}

/// After an action's outcome (the executor calls it for each action as it ends): guard every
/// upgrade or restore of a Flink job whose policy asks for automatic rollback and that ended
/// running or failed at its start; forget the guard of a job another action changed since.
pub(crate) async fn guard_upgrades<J: Ledger>(
    ledger: &J,
    results: &[ActionResult],
    plan: &crate::plan::Plan,
    observed_before: &ObservedJobs,
    desired: &DesiredJobs,
    options: &ApplyOptions,
) -> Result<(), ApplyError> {
    let view = ledger.view();
    let known = memories(&view);
    for result in results {
        if result.kind == JobKind::Dlf {
            continue;
        }
        let Some(action) = plan
            .changes()
            .find(|action| action.kind == result.kind && action.name == result.name)
        else {
            continue;
        };
        let memory = known.get(&result.name).cloned().unwrap_or_default();
        let starts = action
            .steps
            .iter()
            .any(|step| matches!(step, Step::Start { .. }));
        let failed_at_start = !result.ok
            && result
                .error
                .as_ref()
                .is_some_and(|error| error.message.starts_with("start:"));
        let own = desired
            .flink
            .iter()
            .find(|job| job.name == result.name)
            .and_then(|job| job.policy.rollback_on_failure.as_ref());
        let window = options.rollback_on_failure.for_job_with(&result.name, own);
        let before = observed_before
            .flink
            .iter()
            .find(|job| job.name == result.name);
        let guarded = matches!(action.class, ActionClass::Upgrade | ActionClass::Restore)
            && starts
            && (result.ok || failed_at_start);
        match (window, before, guarded) {
            (Some(within), Some(before), true) => {
                let guard = Guard {
                    action_id: result.action_id.clone(),
                    revision: options.source_revision.clone(),
                    previous_revision: options.applied_revision.clone(),
                    desired_digest: action.desired_digest.clone(),
                    previous_config: before.config.clone(),
                    savepoint: result
                        .savepoint_path
                        .clone()
                        .or_else(|| view.flink.get(&result.name)?.last_savepoint.clone()),
                    within_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX),
                    started_at: Utc::now(),
                    attempts: 0,
                };
                let memory = Memory {
                    guard: Some(guard),
                    ..memory
                };
                remember(
                    ledger,
                    &result.action_id,
                    &journal_job(&result.name),
                    "rollback_guard",
                    result.live_id,
                    &memory,
                )
                .await?;
                tracing::info!(target_name = ledger.target(), job = %result.name, within_s = within.as_secs(), "Automatic rollback watches this upgrade.");
            }
            _ if memory.guard.is_some() && result.ok => {
                // Another change replaced the watched upgrade's definition.
                let memory = Memory {
                    guard: None,
                    ..memory
                };
                remember(
                    ledger,
                    &result.action_id,
                    &journal_job(&result.name),
                    "rollback_unguard",
                    result.live_id,
                    &memory,
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn journal_job(name: &str) -> String {
    super::journal_key(JobKind::FlinkSql, name)
}

/// Before a pass plans: clear failure marks git moved past, close watches that ran their
/// window, and roll back every guarded job that failed within it (or whose rollback is owed).
/// Returns what was rolled back (the caller observes again when anything was).
pub(crate) async fn watch<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    owed: &BTreeSet<String>,
    options: &ApplyOptions,
) -> Result<Vec<AutoRollbackResult>, ApplyError> {
    let view = ledger.view();
    let mut results = Vec::new();
    let now = Utc::now();
    for (name, mut memory) in memories(&view) {
        let key = journal_job(&name);
        let live_job = observed.flink.iter().find(|job| job.name == name);
        // The next commit that changes the job clears the mark.
        if let Some(mark) = &memory.failed {
            let changed = desired
                .flink
                .iter()
                .find(|job| job.name == name)
                .is_some_and(|job| job.digest != mark.desired_digest);
            if changed && memory.guard.is_none() {
                tracing::info!(target_name = ledger.target(), job = %name, "A new definition of the job clears its automatic-rollback mark.");
                memory.failed = None;
                let fresh = format!("auto-rollback-{}", new_pass_id());
                remember(
                    ledger,
                    &fresh,
                    &key,
                    "rollback_mark_cleared",
                    live_job.map(|job| job.id),
                    &memory,
                )
                .await?;
                continue;
            }
        }
        let Some(guard) = memory.guard.clone() else {
            continue;
        };
        let marked = memory
            .failed
            .as_ref()
            .is_some_and(|mark| Some(&mark.desired_digest) == guard.desired_digest.as_ref());
        let is_owed = marked || owed.contains(&key);
        let elapsed = (now - guard.started_at).to_std().unwrap_or_default();
        let in_window = elapsed <= Duration::from_millis(guard.within_ms);
        let Some(job) = live_job else {
            // The job is gone (deleted by hand or pruned): nothing to watch.
            memory.guard = None;
            let fresh = format!("auto-rollback-{}", new_pass_id());
            remember(ledger, &fresh, &key, "rollback_unguard", None, &memory).await?;
            continue;
        };
        if job.status.is_transitional() {
            continue; // the next pass sees where it settles
        }
        if job.status.is_running() && !is_owed {
            if !in_window {
                tracing::info!(target_name = ledger.target(), job = %name, "The upgrade kept running through its watch window; automatic rollback stops watching it.");
                stop_watching(ledger, &guard, &key, job, &mut memory).await?;
            }
            continue;
        }
        let failed = job.status.is_failed();
        if !(is_owed || (failed && in_window)) {
            if failed || !job.status.is_running() {
                // Failed after its window, or stopped by someone: not the upgrade's fault.
                stop_watching(ledger, &guard, &key, job, &mut memory).await?;
            }
            continue;
        }
        if guard.attempts >= MAX_ATTEMPTS && !job.status.is_running() {
            continue; // reported as held; a person restores it (or a commit changes the job)
        }
        results.push(roll_back(live, ledger, &name, job, memory, guard, owed, options).await?);
    }
    Ok(results)
}

/// The upgrade's watch window passed (or the job stopped for another reason): automatic
/// rollback stops watching the job, and journals that.
async fn stop_watching<J: Ledger>(
    ledger: &J,
    guard: &Guard,
    key: &str,
    job: &ObservedFlinkJob,
    memory: &mut Memory,
) -> Result<(), ApplyError> {
    memory.guard = None;
    remember(
        ledger,
        &guard.action_id,
        key,
        "rollback_window_passed",
        Some(job.id),
        memory,
    )
    .await
}

/// Why a job is rolled back: its failed status, or the status an interrupted automatic
/// rollback left it in.
fn failure_reason(job: &ObservedFlinkJob) -> String {
    if job.status.is_failed() {
        format!(
            "job {} is {}{}",
            job.id,
            job.status,
            job.status_desc
                .as_deref()
                .filter(|desc| !desc.is_empty())
                .map(|desc| format!(" ({desc})"))
                .unwrap_or_default()
        )
    } else {
        format!(
            "an interrupted automatic rollback left job {} {}",
            job.id, job.status
        )
    }
}

/// Marks the guarded definition failed (`note` says why), keeping an earlier mark of the
/// same definition.
fn mark_failed(memory: &mut Memory, guard: &Guard, note: &str) {
    if let Some(digest) = &guard.desired_digest {
        let keep = memory
            .failed
            .as_ref()
            .filter(|mark| &mark.desired_digest == digest)
            .cloned();
        memory.failed = Some(keep.unwrap_or(FailedMark {
            revision: guard.revision.clone(),
            desired_digest: digest.clone(),
            note: note.to_string(),
            previous_revision: guard.previous_revision.clone(),
            at: Utc::now(),
            rolled_back: false,
        }));
    }
}

/// The journal outcome of a rollback attempt: ok with the restored job's effects, or the
/// failure (and whether a person must take over after [`MAX_ATTEMPTS`]). Answers ok, the
/// recorded failure, the effects, and the message to report.
fn rollback_outcome(
    result: Result<i64, ServiceFailure>,
    memory: &mut Memory,
    guard: &Guard,
    note: &str,
) -> (bool, Option<RecordedFailure>, ActionEffects, String) {
    match result {
        Ok(live_id) => {
            if let Some(mark) = &mut memory.failed {
                mark.rolled_back = true;
            }
            memory.guard = None;
            (
                true,
                None,
                ActionEffects {
                    live_id: Some(live_id),
                    savepoint_path: guard.savepoint.clone(),
                    managed: Some(true),
                    auto_rollback: Some(memory.to_value()),
                    ..ActionEffects::default()
                },
                note.to_string(),
            )
        }
        Err(failure) => {
            let message = if guard.attempts >= MAX_ATTEMPTS {
                format!(
                    "automatic rollback failed {} times ({}); the job needs a manual restore (`dli-gitops rollback`, or a commit that changes it)",
                    guard.attempts, failure.message
                )
            } else {
                format!(
                    "automatic rollback failed ({}); the next pass tries again",
                    failure.message
                )
            };
            (
                false,
                Some(RecordedFailure {
                    code: failure.code.clone(),
                    message: message.clone(),
                    request_id: failure.request_id.clone(),
                }),
                ActionEffects {
                    auto_rollback: Some(memory.to_value()),
                    ..ActionEffects::default()
                },
                message,
            )
        }
    }
}

/// Rolls one job back: mark, previous definition, stop savepoint, start.
#[allow(clippy::too_many_arguments)]
async fn roll_back<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    name: &str,
    job: &ObservedFlinkJob,
    mut memory: Memory,
    mut guard: Guard,
    owed: &BTreeSet<String>,
    options: &ApplyOptions,
) -> Result<AutoRollbackResult, ApplyError> {
    let key = journal_job(name);
    let action_id = format!("auto-rollback-{}", new_pass_id());
    let revision_text = guard.revision.as_deref().unwrap_or("(unknown revision)");
    let reason = failure_reason(job);
    ledger
        .intent(IntentEntry {
            action_id: action_id.clone(),
            job: key.clone(),
            action: ACTION.to_string(),
            plan_id: None,
            detail: json!({
                "upgrade": guard.action_id,
                "revision": guard.revision,
                "previous_revision": guard.previous_revision,
                "savepoint": guard.savepoint,
                "live_id": job.id,
                "status": job.status.as_str(),
                "taken_over": owed.contains(&key),
            }),
        })
        .await?;
    guard.attempts += 1;
    let note = format!(
        "revision {revision_text} failed after its upgrade ({reason}); rolled back to the previous definition{}",
        guard
            .previous_revision
            .as_deref()
            .map(|revision| format!(" (revision {revision})"))
            .unwrap_or_default()
    );
    mark_failed(&mut memory, &guard, &note);
    memory.guard = Some(guard.clone());
    // The mark first: from here on a crash leaves the rollback owed.
    remember(
        ledger,
        &action_id,
        &key,
        "revision_failed",
        Some(job.id),
        &memory,
    )
    .await?;
    tracing::warn!(target_name = ledger.target(), job = %name, revision = revision_text, reason = %reason, "Automatic rollback: the upgraded job failed; putting the previous definition back.");
    let result = restore_previous(live, job, &guard, options).await;
    let (ok, error, effects, message) = rollback_outcome(result, &mut memory, &guard, &note);
    ledger
        .outcome(OutcomeEntry {
            action_id: action_id.clone(),
            job: key,
            ok,
            error,
            effects,
            plan_id: None,
        })
        .await?;
    // The failed revision may have been journaled as applied by the pass that upgraded (the
    // job ran before it failed). Rolled back, the target is on the previous revision again:
    // journal that, so status and promotion never take the failed revision for a good one.
    if ok
        && let (Some(failed), Some(previous)) = (&guard.revision, &guard.previous_revision)
        && ledger.applied_revision().as_deref() == Some(failed.as_str())
    {
        ledger
            .revision_applied(
                previous,
                &action_id,
                &format!("rolled back automatically from revision {failed} (job {name})"),
            )
            .await?;
    }
    Ok(AutoRollbackResult {
        name: name.to_string(),
        action_id,
        revision: guard.revision.clone(),
        ok,
        message,
    })
}

/// The service side of a rollback: the previous definition written back, the stop savepoint
/// imported, and the job started from it. Safe to run again after an interruption: a job
/// already running again (the interrupted run's start) is left running.
async fn restore_previous<L: LiveService>(
    live: &L,
    job: &ObservedFlinkJob,
    guard: &Guard,
    options: &ApplyOptions,
) -> Result<i64, ServiceFailure> {
    if job.status.is_running() {
        return Ok(job.id);
    }
    let mut diffs = guard.previous_config.field_diffs(&job.config);
    diffs.sort_by(|a, b| a.field.cmp(&b.field));
    let definition_differs = diffs.iter().any(|diff| diff.field != "tags");
    if definition_differs {
        let scope = match crate::model::UpdateScope::for_diffs(&diffs) {
            // The job is not running: the full body, never the running-job subset.
            crate::model::UpdateScope::Running { .. } => crate::model::UpdateScope::Full,
            other => other,
        };
        live.update_flink_job(job.id, &guard.previous_config, &scope)
            .await?;
    }
    if let Some(path) = &guard.savepoint {
        live.import_savepoint(job.id, path).await?;
    }
    let before = live.flink_job(job.id).await?;
    if let Some(path) = &guard.savepoint {
        let same = before
            .savepoint_path
            .as_deref()
            .is_some_and(|held| held.trim_end_matches('/') == path.trim_end_matches('/'));
        if !same {
            return Err(ServiceFailure::local(format!(
                "job {} should resume from {path} but holds {}; it is not started",
                job.id,
                before.savepoint_path.as_deref().unwrap_or("no savepoint")
            )));
        }
    }
    live.run_flink_job(job.id, guard.savepoint.is_some())
        .await?;
    let settled = wait_for_job(
        live,
        job.id,
        options.transition_timeout,
        options.poll_interval,
        |seen| start_settled(&before, seen),
    )
    .await?;
    if !settled.status.is_running() {
        return Err(ServiceFailure::local(format!(
            "job {} did not start on the previous definition: it is {}",
            job.id, settled.status
        )));
    }
    Ok(job.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_resolves_per_job_overrides() {
        let mut policy = RollbackPolicy {
            enabled: false,
            within: Duration::from_secs(600),
            jobs: BTreeMap::new(),
        };
        assert_eq!(policy.for_job("a"), None);
        assert!(!policy.any());
        policy
            .jobs
            .insert("a".into(), (Some(true), Some(Duration::from_secs(5))));
        assert_eq!(policy.for_job("a"), Some(Duration::from_secs(5)));
        assert!(policy.any());
        policy.enabled = true;
        policy.jobs.insert("b".into(), (Some(false), None));
        assert_eq!(policy.for_job("b"), None);
        assert_eq!(policy.for_job("c"), Some(Duration::from_secs(600)));
    }

    #[test]
    fn memory_round_trips_and_an_empty_one_is_an_empty_object() {
        assert_eq!(Memory::default().to_value(), json!({}));
        let memory = Memory {
            guard: None,
            failed: Some(FailedMark {
                revision: Some("abc".into()),
                desired_digest: "d1".into(),
                note: "n".into(),
                previous_revision: None,
                at: Utc::now(),
                rolled_back: true,
            }),
        };
        let value = memory.to_value();
        assert_eq!(Memory::from_value(&value), Some(memory));
        let mut view = JournalView::default();
        view.auto_rollback.insert("job".into(), value);
        assert_eq!(view.held("job"), Some(("d1", "n")));
    }
}
