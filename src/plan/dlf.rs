//! Planning for DataArts Factory jobs: imported whole, compared by the digest last imported.
//!
//! The service rewrites a DLF job on import (ids, parameter values, resource replacements), so
//! git's definition is not compared with the live one field by field: the journal's digest of
//! the definition we last imported is the test of "already applied". Drift is the live
//! definition moving away from what it was right after that import (the journal's
//! `live_digest`, server-set fields left out). The schedule: DataArts imports over and deletes
//! only stopped jobs, so a scheduled job's schedule is stopped first and, when git wants it
//! scheduled (`desired_state: running`, or unset and it was scheduled), started again after.

use super::{ActionClass, JobAction, JournalDlfJob, NameIndex, PassInputs, PlanPolicy, Step};
use crate::model::{DesiredDlfJob, FieldDiff, JobKind, ObservedDlfJob, RunState};

pub(super) fn plan_dlf(
    inputs: &PassInputs<'_>,
    actions: &mut Vec<JobAction>,
    warnings: &mut Vec<String>,
) {
    let (desired, observed, view, policy) =
        (inputs.desired, inputs.observed, inputs.view, inputs.policy);
    let prune_guard = &inputs.prune_guard;
    let index = NameIndex::new(
        desired.dlf.iter().map(|job| job.name.as_str()),
        &observed.dlf,
        |job: &ObservedDlfJob| job.name.as_str(),
    );
    index.warn_duplicates(
        "DLF",
        |name| {
            format!(
                "the service lists the DLF job `{name}` more than once; it is left alone until it is listed once"
            )
        },
        warnings,
    );

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
                    steps,
                    reason: "managed by dli-gitops and no longer in git".to_string(),
                    ..JobAction::new(JobKind::Dlf, live.name.clone(), ActionClass::Prune)
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
        desired_digest: Some(desired.digest.clone()),
        protected: !desired.prune,
        ..JobAction::new(JobKind::Dlf, desired.name.clone(), ActionClass::None)
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
    let same_digest = imported_digest == Some(desired.digest.as_str())
        || journal.is_some_and(|entry| entry.equivalent_digests.contains(&desired.digest));
    // `ignore_differences: [schedule_status]`: a schedule started or stopped in the console
    // stays as found while git's definition is the one imported.
    let schedule_ignored =
        same_digest && !restart_owed && desired.policy.ignores("schedule_status");
    let want_scheduled = match desired.desired_state {
        _ if schedule_ignored => scheduled,
        Some(RunState::Running) => true,
        Some(RunState::Stopped) => false,
        None => scheduled || restart_owed,
    };
    let live_digest = dlf_definition_digest(&live.definition);
    // `ignore_differences: [definition]`: edits in the console are not drift.
    let drifted = same_digest
        && !desired.policy.ignores("definition")
        && journal
            .and_then(|entry| entry.live_digest.as_deref())
            .is_some_and(|recorded| recorded != live_digest);

    if same_digest && !drifted {
        return converge_schedule(action, desired, live, want_scheduled);
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
    action.reason = import_reason(managed, imported_digest, drifted, scheduled, want_scheduled);
    action
}

/// Git's definition is the one imported and the live one has not drifted: only the schedule
/// may need starting or stopping.
fn converge_schedule(
    mut action: JobAction,
    desired: &DesiredDlfJob,
    live: &ObservedDlfJob,
    want_scheduled: bool,
) -> JobAction {
    if want_scheduled == live.is_scheduled() {
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
    action
}

/// Why git's definition is imported (drift, adoption, no journaled import, a change), and
/// what happens to the schedule around the import.
fn import_reason(
    managed: bool,
    imported_digest: Option<&str>,
    drifted: bool,
    scheduled: bool,
    want_scheduled: bool,
) -> String {
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
    reason
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
    crate::desired::digest_of(&without_server_fields(definition))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DesiredJobs, ObservedJobs, SourceLocation};
    use crate::plan::{JournalView, PlanPolicy, plan};
    use serde_json::json;

    fn desired(digest: &str, state: Option<RunState>) -> DesiredDlfJob {
        DesiredDlfJob {
            name: "nightly".into(),
            definition: json!({"name": "nightly", "processType": "BATCH", "nodes": [{"name": "a"}], "schedule": {"type": "CRON"}}),
            scripts: Default::default(),
            import: Default::default(),
            prune: true,
            desired_state: state,
            source: SourceLocation::default(),
            digest: digest.into(),
            policy: Default::default(),
        }
    }

    fn live(statement: &str, status: &str) -> ObservedDlfJob {
        ObservedDlfJob {
            name: "nightly".into(),
            // Server-set fields (`id`, `version`, ...) ride along and never count.
            definition: json!({"name": "nightly", "processType": "BATCH", "nodes": [{"name": "a", "statement": statement}],
                               "schedule": {"type": "CRON"}, "id": 7, "version": 3, "lastUpdateUser": "ops"}),
            last_update: Some(1_711_647_009_620),
            status: Some(status.into()),
        }
    }

    fn view(imported: &str, baseline_of: Option<&ObservedDlfJob>) -> JournalView {
        let mut view = JournalView::default();
        view.dlf.insert(
            "nightly".into(),
            JournalDlfJob {
                managed: true,
                imported_digest: Some(imported.into()),
                live_digest: baseline_of.map(|job| dlf_definition_digest(&job.definition)),
                ..JournalDlfJob::default()
            },
        );
        view
    }

    fn one(desired: DesiredDlfJob, live: ObservedDlfJob, view: &JournalView) -> JobAction {
        let jobs = DesiredJobs {
            flink: Vec::new(),
            dlf: vec![desired],
        };
        let observed = ObservedJobs {
            flink: Vec::new(),
            dlf: vec![live],
        };
        let policy = PlanPolicy {
            prune: true,
            allow_empty_prune: false,
            backups: true,
            ..PlanPolicy::default()
        };
        plan(&jobs, &observed, view, &policy).actions.remove(0)
    }

    fn stop() -> Step {
        Step::Stop {
            trigger_savepoint: false,
        }
    }

    fn start() -> Step {
        Step::Start {
            resume_savepoint: false,
        }
    }

    #[test]
    fn a_live_edit_after_the_import_is_drift_and_server_fields_are_not() {
        let imported = live("SELECT 1", "STOPPED");
        let view = view("d1", Some(&imported));
        let mut reread = imported.clone();
        reread.definition["version"] = json!(4);
        reread.definition["lastUpdateUser"] = json!("someone");
        assert_eq!(
            one(desired("d1", None), reread, &view).class,
            ActionClass::None
        );
        let action = one(desired("d1", None), live("SELECT 666", "STOPPED"), &view);
        assert_eq!(action.class, ActionClass::UpdateInPlace);
        assert!(action.reason.contains("drift"), "{}", action.reason);
        assert_eq!(action.steps, [Step::Backup, Step::DlfImport]);
        // Without a baseline (imported before drift was measured) nothing is claimed.
        let unknown = self::view("d1", None);
        assert_eq!(
            one(desired("d1", None), live("SELECT 666", "STOPPED"), &unknown).class,
            ActionClass::None
        );
    }

    #[test]
    fn a_scheduled_job_is_stopped_around_an_import_and_started_when_git_wants_it() {
        let kept = one(desired("d2", None), live("x", "NORMAL"), &view("d1", None));
        assert_eq!(kept.class, ActionClass::Upgrade);
        assert_eq!(kept.steps, [Step::Backup, stop(), Step::DlfImport, start()]);
        let stopped = one(
            desired("d2", Some(RunState::Stopped)),
            live("x", "NORMAL"),
            &view("d1", None),
        );
        assert_eq!(stopped.steps, [Step::Backup, stop(), Step::DlfImport]);
        let started = one(
            desired("d2", Some(RunState::Running)),
            live("x", "STOPPED"),
            &view("d1", None),
        );
        assert_eq!(started.steps, [Step::Backup, Step::DlfImport, start()]);
    }

    #[test]
    fn the_schedule_alone_starts_or_stops_without_an_import() {
        let action = one(
            desired("d1", Some(RunState::Stopped)),
            live("x", "NORMAL"),
            &view("d1", None),
        );
        assert_eq!(
            (action.class, action.steps),
            (ActionClass::Stop, vec![stop()])
        );
        let action = one(
            desired("d1", Some(RunState::Running)),
            live("x", "STOPPED"),
            &view("d1", None),
        );
        assert_eq!(
            (action.class, action.steps),
            (ActionClass::Start, vec![start()])
        );
        // Unset: the schedule is left as found...
        assert_eq!(
            one(desired("d1", None), live("x", "STOPPED"), &view("d1", None)).class,
            ActionClass::None
        );
        // ...unless an interrupted pass stopped it on its way to an import.
        let mut owed = view("d1", None);
        owed.dlf.get_mut("nightly").unwrap().restart_schedule = true;
        let action = one(desired("d1", None), live("x", "STOPPED"), &owed);
        assert_eq!(
            (action.class, action.steps),
            (ActionClass::Start, vec![start()])
        );
    }

    #[test]
    fn a_digest_export_recorded_as_equivalent_is_in_sync() {
        let mut view = view("d1", None);
        view.dlf.get_mut("nightly").unwrap().equivalent_digests = vec!["exported".into()];
        assert_eq!(
            one(desired("exported", None), live("x", "STOPPED"), &view).class,
            ActionClass::None
        );
        assert_eq!(
            one(desired("other", None), live("x", "STOPPED"), &view).class,
            ActionClass::UpdateInPlace
        );
    }

    #[test]
    fn a_scheduled_job_is_pruned_after_its_schedule_is_stopped() {
        let jobs = DesiredJobs {
            flink: Vec::new(),
            dlf: vec![DesiredDlfJob {
                name: "other".into(),
                ..desired("d9", None)
            }],
        };
        let observed = ObservedJobs {
            flink: Vec::new(),
            dlf: vec![live("x", "NORMAL")],
        };
        let policy = PlanPolicy {
            prune: true,
            allow_empty_prune: false,
            backups: true,
            ..PlanPolicy::default()
        };
        let plan = plan(&jobs, &observed, &view("d1", None), &policy);
        let pruned = plan.actions.iter().find(|a| a.name == "nightly").unwrap();
        assert_eq!(pruned.class, ActionClass::Prune);
        assert_eq!(pruned.steps, [Step::Backup, stop(), Step::Delete]);
    }

    #[test]
    fn server_fields_are_left_out_of_the_definition_digest() {
        let a = json!({"name": "n", "nodes": [], "id": 1, "createTime": 5, "version": "2"});
        let b = json!({"name": "n", "nodes": []});
        assert_eq!(dlf_definition_digest(&a), dlf_definition_digest(&b));
        assert_eq!(without_server_fields(&a), b);
    }
}
