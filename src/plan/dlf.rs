//! Planning for DataArts Factory jobs: imported whole, compared by the digest last imported.
//!
//! The service rewrites a DLF job on import (ids, parameter values, resource replacements), so
//! git's definition is not compared with the live one field by field: the journal's digest of
//! the definition we last imported is the test of "already applied". Drift is the live
//! definition moving away from what it was right after that import (the journal's
//! `live_digest`, server-set fields left out). The schedule: DataArts imports over and deletes
//! only stopped jobs, so a scheduled job's schedule is stopped first and, when git wants it
//! scheduled (`desired_state: running`, or unset and it was scheduled), started again after.

use super::{
    ActionClass, JobAction, JournalDlfJob, JournalView, NameIndex, PlanPolicy, PruneGuard, Step,
};
use crate::model::{
    DesiredDlfJob, DesiredJobs, FieldDiff, JobKind, ObservedDlfJob, ObservedJobs, RunState,
};

pub(super) fn plan_dlf(
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    view: &JournalView,
    policy: &PlanPolicy,
    prune_guard: &PruneGuard<'_>,
    actions: &mut Vec<JobAction>,
    warnings: &mut Vec<String>,
) {
    let index = NameIndex::new(
        desired.dlf.iter().map(|job| job.name.as_str()),
        &observed.dlf,
        |job: &ObservedDlfJob| job.name.as_str(),
    );
    for name in &index.desired_duplicates {
        warnings.push(format!(
            "git declares the DLF job `{name}` more than once; it is skipped until the repository names it once"
        ));
    }
    for name in &index.live_duplicates {
        warnings.push(format!(
            "the service lists the DLF job `{name}` more than once; it is left alone until it is listed once"
        ));
    }

    for desired_job in &desired.dlf {
        let name = desired_job.name.as_str();
        if index.is_ambiguous(name) {
            continue;
        }
        actions.push(converge(
            desired_job,
            index.live_by_name.get(name).copied(),
            view.dlf.get(name),
            policy,
        ));
    }

    for live in index.live_by_name.values() {
        if index.desired_names.contains(live.name.as_str()) {
            continue;
        }
        let Some(journal) = view.dlf.get(&live.name) else {
            continue;
        };
        if !journal.managed {
            continue;
        }
        match prune_guard.check(JobKind::Dlf, &live.name, journal.protected) {
            Ok(()) => {
                let mut steps = Vec::new();
                if policy.backups {
                    steps.push(Step::Backup);
                }
                // DataArts deletes only a job whose schedule is stopped.
                if live.is_scheduled() {
                    steps.push(stop_schedule());
                }
                steps.push(Step::Delete);
                actions.push(JobAction {
                    kind: JobKind::Dlf,
                    name: live.name.clone(),
                    class: ActionClass::Prune,
                    live_id: None,
                    diffs: Vec::new(),
                    steps,
                    reason: "managed by dli-gitops and no longer in git".to_string(),
                    config: None,
                    desired_digest: None,
                    resume_from: None,
                    restore_key: None,
                    protected: false,
                });
            }
            Err(warning) => warnings.push(warning),
        }
    }
}

fn converge(
    desired: &DesiredDlfJob,
    live: Option<&ObservedDlfJob>,
    journal: Option<&JournalDlfJob>,
    policy: &PlanPolicy,
) -> JobAction {
    let mut action = JobAction {
        kind: JobKind::Dlf,
        name: desired.name.clone(),
        class: ActionClass::None,
        live_id: None,
        diffs: Vec::new(),
        steps: Vec::new(),
        reason: String::new(),
        config: None,
        desired_digest: Some(desired.digest.clone()),
        resume_from: None,
        restore_key: None,
        protected: !desired.prune,
    };
    let imported_digest = journal.and_then(|entry| entry.imported_digest.as_deref());
    let managed = journal.is_some_and(|entry| entry.managed);
    let Some(live) = live else {
        action.class = ActionClass::Create;
        action.steps = vec![Step::DlfImport];
        action.reason = "in git, not live".to_string();
        if desired.desired_state == Some(RunState::Running) {
            action.steps.push(start_schedule());
            action
                .reason
                .push_str("; its schedule is started (desired_state: running)");
        }
        action.diffs = vec![digest_diff(None, &desired.digest)];
        return action;
    };
    let scheduled = live.is_scheduled();
    let restart_owed = journal.is_some_and(|entry| entry.restart_schedule);
    let want_scheduled = match desired.desired_state {
        Some(RunState::Running) => true,
        Some(RunState::Stopped) => false,
        None => scheduled || restart_owed,
    };
    let same_digest = imported_digest == Some(desired.digest.as_str())
        || journal.is_some_and(|entry| entry.equivalent_digests.contains(&desired.digest));
    let live_digest = dlf_definition_digest(&live.definition);
    let drifted = same_digest
        && journal
            .and_then(|entry| entry.live_digest.as_deref())
            .is_some_and(|recorded| recorded != live_digest);

    if same_digest && !drifted {
        if want_scheduled == scheduled {
            action.reason = "in sync (this definition was the last one imported)".to_string();
            return action;
        }
        action.diffs = vec![schedule_diff(live, want_scheduled)];
        if want_scheduled {
            action.class = ActionClass::Start;
            action.steps = vec![start_schedule()];
            action.reason = if desired.desired_state == Some(RunState::Running) {
                "git wants its schedule running (desired_state: running)".to_string()
            } else {
                "an interrupted pass stopped its schedule to change the job; it is started again"
                    .to_string()
            };
        } else {
            action.class = ActionClass::Stop;
            action.steps = vec![stop_schedule()];
            action.reason = "git wants its schedule stopped (desired_state: stopped)".to_string();
        }
        return action;
    }

    let mut steps = Vec::new();
    if policy.backups {
        steps.push(Step::Backup);
    }
    if scheduled {
        steps.push(stop_schedule());
    }
    steps.push(Step::DlfImport);
    if want_scheduled {
        steps.push(start_schedule());
    }
    action.class = if scheduled && want_scheduled {
        ActionClass::Upgrade
    } else {
        ActionClass::UpdateInPlace
    };
    action.steps = steps;
    action.diffs = vec![digest_diff(imported_digest, &desired.digest)];
    let live_definition = without_server_fields(&live.definition);
    if live_definition != desired.definition {
        action.diffs.push(FieldDiff {
            field: "definition".to_string(),
            live: live_definition,
            desired: desired.definition.clone(),
        });
    }
    if scheduled != want_scheduled {
        action.diffs.push(schedule_diff(live, want_scheduled));
    }
    let mut reason = match (managed, imported_digest, drifted) {
        (_, _, true) => {
            "the live definition was edited outside dli-gitops since the last import (drift): git's definition is imported over it"
                .to_string()
        }
        (false, _, _) => {
            "adopts this live DLF job, which dli-gitops does not manage yet: git's definition is imported over it"
                .to_string()
        }
        (true, None, _) => "no import of this definition is journaled: it is imported again".to_string(),
        (true, Some(_), _) => "the definition changed since the last import".to_string(),
    };
    match (scheduled, want_scheduled) {
        (true, true) => reason.push_str(
            "; DataArts imports only over a stopped job, so its schedule is stopped first and started again after",
        ),
        (true, false) => reason.push_str(
            "; DataArts imports only over a stopped job, so its schedule is stopped first (and stays stopped)",
        ),
        (false, true) => reason.push_str("; its schedule is started after the import"),
        (false, false) => {}
    }
    action.reason = reason;
    action
}

fn stop_schedule() -> Step {
    Step::Stop {
        trigger_savepoint: false,
    }
}

fn start_schedule() -> Step {
    Step::Start {
        resume_savepoint: false,
    }
}

fn schedule_diff(live: &ObservedDlfJob, want_scheduled: bool) -> FieldDiff {
    FieldDiff {
        field: "schedule_status".to_string(),
        live: live
            .status
            .as_ref()
            .map(|status| serde_json::Value::String(status.clone()))
            .unwrap_or(serde_json::Value::Null),
        desired: serde_json::Value::String(
            if want_scheduled { "NORMAL" } else { "STOPPED" }.to_string(),
        ),
    }
}

/// Top-level fields of a DLF job detail that the service sets, never the author: the
/// `ShowJobResponse` fields that the CreateJob body (`JobInfo`) lacks (`id`, `createTime`,
/// `version`, `downstreamJobs`; dgc `show_job_response.py`, `job_info.py`), the owner and time
/// stamps of the last change, and the list/status fields some answers carry. Export leaves
/// them out and drift ignores them.
pub const DLF_SERVER_FIELDS: &[&str] = &[
    "id",
    "createTime",
    "createUser",
    "version",
    "downstreamJobs",
    "lastUpdateUser",
    "lastUpdateTime",
    "jobType",
    "status",
    "submitStatus",
    "targetStatus",
    "approvers",
];

/// The definition without [`DLF_SERVER_FIELDS`].
pub fn without_server_fields(definition: &serde_json::Value) -> serde_json::Value {
    let mut definition = definition.clone();
    if let serde_json::Value::Object(object) = &mut definition {
        for field in DLF_SERVER_FIELDS {
            object.remove(*field);
        }
    }
    definition
}

/// Digest of a live DLF definition without its server-set fields: equal digests, equal
/// authored content.
pub fn dlf_definition_digest(definition: &serde_json::Value) -> String {
    crate::spec::digest_of(&without_server_fields(definition))
}

fn digest_diff(imported_digest: Option<&str>, desired_digest: &str) -> FieldDiff {
    FieldDiff {
        field: "definition_digest".to_string(),
        live: imported_digest
            .map(|digest| serde_json::Value::String(digest.to_string()))
            .unwrap_or(serde_json::Value::Null),
        desired: serde_json::Value::String(desired_digest.to_string()),
    }
}
