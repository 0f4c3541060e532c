//! Drift per job: which actions put back a live job that moved away from a definition git still
//! asks for, and whether this pass reverts that or only reports it.
//!
//! Drift is a change on the live side only: the journal's digest of the definition last
//! applied to the job (Flink `applied_digest`, DLF `imported_digest`) equals the desired digest,
//! and yet the plan has something to do. A change in git is never drift. On an automatic pass
//! (`PlanPolicy::self_heal` is `Some`), a job's `drift:` decides, else the target's
//! `self_heal`; drift that is reported only is put on hold (shown, journaled by `apply` as a
//! `drift_detected` record, not reverted). A pass a person asked for reverts all drift.
//! `ignore_differences` fields are no drift at all: they keep their live values
//! ([`keep_ignored`]) and are listed in [`JobAction::ignored`].
//!
//! # Design and invariants
//!
//! Drift (`plan/drift.rs`, after the per-job decisions). A job drifted when the journal's digest of
//! the definition last applied (Flink `JournalFlinkJob::applied_digest` = the outcome's
//! `spec_digest`; DLF `imported_digest`) equals the desired digest and the plan still acts on it
//! (not a `WaitSteady`): the fields are the diffs (`job` for a live job gone, `desired_state` for a
//! run-state change). `PlanPolicy::self_heal` is `Some(target's self_heal)` on the daemon's
//! automatic passes and `None` for a pass a person asked for (`apply`, a manual sync), which reverts
//! everything. Otherwise `drift:` decides, else `self_heal`; `report` puts the action on hold (not
//! blocking convergence). The daemon runs an automatic pass on an applied revision when `self_heal`
//! is on or some job says `drift: revert` (`Worker::reverts_drift`). `ignore_differences` fields are
//! overwritten with the live values before comparing (`drift::keep_ignored`), so they are neither a
//! difference nor changed by an update; `JobAction::ignored` lists those that differ. DLF:
//! `definition` ignored makes a moved live digest no drift, `schedule_status` keeps the schedule as
//! found while git's definition is the one imported. `apply::record_drift` logs and journals each
//! drift as a `drift_detected` record `{job, fields, mode, plan_id}` when it differs from the job's
//! `JobState::drift` (the last one journaled); the job's next successful action clears it, so a
//! drift is journaled once per occurrence, across restarts. Old journals have no such records and
//! read as before; older builds keep the records as an unknown kind. Tested: `tests/drift_policy.rs`.

use std::collections::HashMap;

use super::{ActionClass, Drift, JobAction, JournalView, PlanPolicy};
use crate::model::{
    DesiredJobs, DriftMode, FlinkJobConfig, JobKind, JobPolicy, MANAGED_TAG_KEY, ObservedFlinkJob,
    ObservedJobs,
};

/// The field named when the live job is gone altogether.
const GONE_FIELD: &str = "job";
/// The field named when only the run state (Flink) differs.
const STATE_FIELD: &str = "desired_state";

/// `config` with the live values of the fields the job lists in `ignore_differences`, so that
/// they are neither compared nor changed by an update. A job that is not live is created with
/// git's values.
pub(super) fn keep_ignored(
    config: FlinkJobConfig,
    policy: &JobPolicy,
    live: Option<&ObservedFlinkJob>,
) -> FlinkJobConfig {
    let Some(live) = live else {
        return config;
    };
    if policy.ignore_differences.is_empty() {
        return config;
    }
    let mut fields = config.to_field_map();
    let live_fields = live.config.to_field_map();
    for field in &policy.ignore_differences {
        if let Some(value) = live_fields.get(field) {
            fields.insert(field.clone(), value.clone());
        }
    }
    let managed_tag = config.tags.get(MANAGED_TAG_KEY).cloned();
    match serde_json::from_value::<FlinkJobConfig>(serde_json::Value::Object(fields)) {
        Ok(mut kept) => {
            // Ignoring `tags` keeps the live tags, never the ownership mark.
            if let Some(value) = managed_tag {
                kept.tags.insert(MANAGED_TAG_KEY.to_string(), value);
            }
            kept
        }
        // The live job's own fields always read back; if not, git's config is used whole.
        Err(_) => config,
    }
}

/// Marks every action that reverts drift, puts drift that is reported only on hold, and lists
/// ignored differences.
pub(super) fn classify(
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    view: &JournalView,
    policy: &PlanPolicy,
    actions: &mut [JobAction],
) {
    // Hashed: only looked up, once per action. The Flink maps are built on first use: a
    // Flink action with nothing to do and no `ignore_differences` in git needs neither.
    let flink_map = std::cell::OnceCell::new();
    let flink = || {
        flink_map.get_or_init(|| {
            desired
                .flink
                .iter()
                .map(|job| (job.name.as_str(), job))
                .collect::<HashMap<&str, _>>()
        })
    };
    let live_flink_map = std::cell::OnceCell::new();
    let live_flink = || {
        live_flink_map.get_or_init(|| {
            observed
                .flink
                .iter()
                .map(|job| (job.name.as_str(), job))
                .collect::<HashMap<&str, &ObservedFlinkJob>>()
        })
    };
    let flink_ignores = desired
        .flink
        .iter()
        .any(|job| !job.policy.ignore_differences.is_empty());
    let dlf: HashMap<&str, _> = desired
        .dlf
        .iter()
        .map(|job| (job.name.as_str(), job))
        .collect();
    let live_dlf: HashMap<&str, _> = observed
        .dlf
        .iter()
        .map(|job| (job.name.as_str(), job))
        .collect();
    for action in actions.iter_mut() {
        let name = action.name.as_str();
        let (job_policy, applied) = match action.kind {
            JobKind::Dlf => {
                let Some(job) = dlf.get(name) else { continue };
                let journal = view.dlf.get(name);
                if let (Some(live), Some(recorded)) = (
                    live_dlf.get(name),
                    journal.and_then(|entry| entry.live_digest.as_deref()),
                ) && job.policy.ignores("definition")
                    && super::dlf_definition_digest(&live.definition) != recorded
                {
                    action.ignored.push("definition".to_string());
                }
                let applied = journal.is_some_and(|entry| {
                    entry.managed
                        && (entry.imported_digest.as_deref() == Some(job.digest.as_str())
                            || entry.equivalent_digests.contains(&job.digest))
                });
                (&job.policy, applied)
            }
            JobKind::FlinkSql | JobKind::FlinkJar => {
                // Nothing below applies to it (see the end of the loop).
                if !flink_ignores && (action.class == ActionClass::None || action.is_waiting()) {
                    continue;
                }
                let Some(job) = flink().get(name) else {
                    continue;
                };
                if let Some(live) = live_flink().get(name)
                    && !job.policy.ignore_differences.is_empty()
                {
                    let git = job.config.field_diffs(&live.config);
                    action.ignored = git
                        .into_iter()
                        .filter(|diff| job.policy.ignores(&diff.field))
                        .map(|diff| diff.field)
                        .collect();
                }
                let applied = view.flink.get(name).is_some_and(|entry| {
                    entry.managed && entry.applied_digest.as_deref() == Some(job.digest.as_str())
                });
                (&job.policy, applied)
            }
        };
        if !applied || action.class == ActionClass::None || action.is_waiting() {
            continue;
        }
        mark_drift(action, job_policy, policy);
    }
}

/// An action that changes an applied job back reverts drift: say so in its reason, and hold
/// it when the job's (or the target's) drift mode only reports.
fn mark_drift(action: &mut JobAction, job_policy: &JobPolicy, policy: &PlanPolicy) {
    let fields = drifted_fields(action);
    let mode = match policy.self_heal {
        None => DriftMode::Revert,
        Some(self_heal) => job_policy.drift.unwrap_or(if self_heal {
            DriftMode::Revert
        } else {
            DriftMode::Report
        }),
    };
    let listed = fields.join(", ");
    let why = match (job_policy.drift, policy.self_heal) {
        (_, None) => "a manual sync reverts drift",
        (Some(DriftMode::Revert), _) => "drift: revert",
        (Some(DriftMode::Report), _) => "drift: report",
        (None, Some(true)) => "the target's self_heal is on",
        (None, Some(false)) => "the target's self_heal is off",
    };
    let what = match mode {
        DriftMode::Revert => "reverted",
        DriftMode::Report => "reported, not reverted",
    };
    action.reason = format!(
        "drift: {listed} changed outside dli-gitops, {what} ({why}); {}",
        action.reason
    );
    if mode == DriftMode::Report && action.on_hold.is_none() {
        action.on_hold = Some(format!(
            "drift in {listed} is reported only ({why}); a manual sync or `drift: revert` puts git back"
        ));
    }
    action.drift = Some(Drift { fields, mode });
}

/// The fields an action changes back: its diffs (DLF: without the digest it imports), the
/// run state when nothing else differs, or the whole job when it is gone.
fn drifted_fields(action: &JobAction) -> Vec<String> {
    if action.class == ActionClass::Create {
        return vec![GONE_FIELD.to_string()];
    }
    let mut fields: Vec<String> = action
        .diffs
        .iter()
        .map(|diff| diff.field.clone())
        .filter(|field| field != "definition_digest")
        .collect();
    let run_state_differs = matches!(action.class, ActionClass::Start | ActionClass::Stop);
    if fields.is_empty() || (action.kind != JobKind::Dlf && run_state_differs) {
        fields.push(STATE_FIELD.to_string());
    }
    fields.sort();
    fields.dedup();
    fields
}
