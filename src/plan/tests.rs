//! Unit tests for the planner rules, one rule per test.

use std::collections::BTreeMap;

use super::test_support::{desired_sql, live_of, managed_view};
use super::*;
use crate::model::{
    DesiredFlinkJob, DesiredJobs, FlinkJobConfig, FlinkJobStatus, JobKind, MANAGED_TAG_KEY,
    MANAGED_TAG_VALUE, ObservedDlfJob, ObservedFlinkJob, ObservedJobs, Restore, RunState,
    SourceLocation, UpgradeMode,
};

fn policy() -> PlanPolicy {
    PlanPolicy {
        prune: true,
        allow_empty_prune: false,
        backups: true,
        ..PlanPolicy::default()
    }
}

fn plan_one(
    desired: DesiredFlinkJob,
    live: Option<ObservedFlinkJob>,
    view: &JournalView,
    policy: &PlanPolicy,
) -> Plan {
    let desired_jobs = flink_jobs(vec![desired]);
    let observed = ObservedJobs {
        flink: live.into_iter().collect(),
        dlf: Vec::new(),
    };
    super::plan(&desired_jobs, &observed, view, policy)
}

/// The step that stops the job, with or without a savepoint.
fn stop(trigger_savepoint: bool) -> Step {
    Step::Stop { trigger_savepoint }
}

/// The step that starts the job, resuming from its savepoint or from empty state.
fn start(resume_savepoint: bool) -> Step {
    Step::Start { resume_savepoint }
}

/// The step that imports the savepoint at `path` into the job.
fn import(path: &str) -> Step {
    Step::ImportSavepoint {
        source: SavepointSource::Path(path.into()),
    }
}

/// The step that imports the savepoint the stop step took.
fn import_from_stop() -> Step {
    Step::ImportSavepoint {
        source: SavepointSource::FromStop,
    }
}

/// Desired Flink jobs only.
fn flink_jobs(flink: Vec<DesiredFlinkJob>) -> DesiredJobs {
    DesiredJobs {
        flink,
        dlf: Vec::new(),
    }
}

/// Live Flink jobs only.
fn live_jobs(flink: Vec<ObservedFlinkJob>) -> ObservedJobs {
    ObservedJobs {
        flink,
        dlf: Vec::new(),
    }
}

/// `desired` against `observed`, with an empty journal and the test policy.
fn plan_unjournaled(desired: &DesiredJobs, observed: &ObservedJobs) -> Plan {
    super::plan(desired, observed, &JournalView::default(), &policy())
}

/// `desired` with nothing live and an empty journal, under the test policy.
fn plan_fresh(desired: &DesiredJobs) -> Plan {
    plan_unjournaled(desired, &ObservedJobs::default())
}

/// One desired job against its live twin `live`, managed by the journal, under the test policy.
fn plan_managed(desired: &DesiredFlinkJob, live: &ObservedFlinkJob) -> Plan {
    plan_one(
        desired.clone(),
        Some(live.clone()),
        &managed_view(&[&desired.name]),
        &policy(),
    )
}

/// `desired` (a changed `agg`) against `agg` as declared, running and managed.
fn plan_against_running_agg(desired: &DesiredFlinkJob) -> Plan {
    plan_managed(
        desired,
        &live_of(&desired_sql("agg"), 7, FlinkJobStatus::Running),
    )
}

fn only_action(plan: &Plan) -> &JobAction {
    assert_eq!(plan.actions.len(), 1, "expected one action: {plan:#?}");
    &plan.actions[0]
}

#[test]
fn equal_config_and_same_state_is_a_no_op() {
    for (status, desired_state) in [
        ("job_running", RunState::Running),
        ("job_cancel_success", RunState::Stopped),
        ("job_init", RunState::Stopped),
    ] {
        let mut desired = desired_sql("agg");
        desired.lifecycle.desired_state = desired_state;
        let live = live_of(&desired, 7, status);
        let plan = plan_managed(&desired, &live);
        let action = only_action(&plan);
        assert_eq!(action.class, ActionClass::None, "{status}");
        assert!(action.steps.is_empty());
        assert!(plan.is_empty());
    }
}

#[test]
fn a_stopped_job_that_should_run_is_started_from_the_savepoint_it_holds() {
    let desired = desired_sql("agg");
    let mut live = live_of(&desired, 7, FlinkJobStatus::CancelSuccess);
    live.savepoint_path = Some("obs://ckpt/savepoint/7/a/".into());
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Start);
    assert_eq!(action.steps, vec![start(true)]);
    assert_eq!(
        action.resume_from,
        Some(SavepointSource::Held("obs://ckpt/savepoint/7/a/".into()))
    );
    assert!(action.config.is_none(), "a start writes no configuration");
}

#[test]
fn a_start_falls_back_to_the_journal_savepoint_when_the_service_lost_it() {
    let desired = desired_sql("agg");
    let live = live_of(&desired, 7, FlinkJobStatus::Init);
    let mut view = managed_view(&["agg"]);
    view.flink.get_mut("agg").unwrap().last_savepoint = Some("obs://ckpt/sp/1/".into());
    let plan = plan_one(desired.clone(), Some(live.clone()), &view, &policy());
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Start);
    assert_eq!(action.steps, vec![import("obs://ckpt/sp/1/"), start(true)]);

    // Without any savepoint the job starts from empty state, and the plan says so.
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.steps, vec![start(false)]);
    assert!(action.reason.contains("empty state"), "{}", action.reason);
}

#[test]
fn a_running_job_that_should_stop_is_stopped_with_a_savepoint_unless_stateless() {
    let mut desired = desired_sql("agg");
    desired.lifecycle.desired_state = RunState::Stopped;
    let live = live_of(&desired, 7, FlinkJobStatus::Running);
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Stop);
    assert_eq!(action.steps, vec![stop(true)]);

    desired.lifecycle.upgrade_mode = UpgradeMode::Stateless;
    let plan = plan_managed(&desired, &live);
    assert_eq!(only_action(&plan).steps, vec![stop(false)]);
}

#[test]
fn hot_fields_change_in_place_on_a_running_job() {
    let desired = desired_sql("agg");
    let mut live = live_of(&desired, 7, FlinkJobStatus::Running);
    live.config.smn_topic = Some("old-topic".into());
    live.config.restart_when_exception = true;
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::UpdateInPlace);
    assert_eq!(action.steps, vec![Step::Backup, Step::UpdateJob]);
    let fields: Vec<_> = action
        .diffs
        .iter()
        .map(|diff| diff.field.as_str())
        .collect();
    assert_eq!(fields, vec!["restart_when_exception", "smn_topic"]);
    assert!(
        action.config.is_some(),
        "the update writes the desired config"
    );
}

#[test]
fn a_cold_change_upgrades_a_running_job_through_the_stop_savepoint() {
    let mut desired = desired_sql("agg");
    desired.config.cu_number = 8;
    let plan = plan_against_running_agg(&desired);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Upgrade);
    assert_eq!(
        action.steps,
        vec![
            Step::Backup,
            stop(true),
            Step::UpdateJob,
            import_from_stop(),
            start(true),
        ]
    );
    assert_eq!(action.resume_from, Some(SavepointSource::FromStop));
    assert_eq!(
        action.config.as_ref().map(|config| config.cu_number),
        Some(8)
    );
}

#[test]
fn a_stateless_upgrade_stops_without_a_savepoint_and_starts_empty() {
    let mut desired = desired_sql("agg");
    desired.lifecycle.upgrade_mode = UpgradeMode::Stateless;
    desired.config.parallel_number = 4;
    let plan = plan_against_running_agg(&desired);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Upgrade);
    assert_eq!(
        action.steps,
        vec![Step::Backup, stop(false), Step::UpdateJob, start(false),]
    );
    assert_eq!(action.resume_from, None);
}

#[test]
fn an_upgrade_updates_the_job_and_imports_the_stop_savepoint_before_it_starts() {
    let mut desired = desired_sql("agg");
    desired.config.sql_body = Some("INSERT INTO sink\nSELECT id FROM source;\n".into());
    let live = live_of(&desired_sql("agg"), 7, FlinkJobStatus::Running);
    let plan = plan_one(
        desired,
        Some(live),
        &managed_view(&["agg"]),
        &PlanPolicy {
            backups: false,
            ..policy()
        },
    );
    let action = only_action(&plan);
    assert_eq!(
        action.steps,
        vec![stop(true), Step::UpdateJob, import_from_stop(), start(true),]
    );
    assert_eq!(action.resume_from, Some(SavepointSource::FromStop));
}

#[test]
fn a_stopped_job_with_changes_is_updated_without_start_and_keeps_its_savepoint() {
    let mut desired = desired_sql("agg");
    desired.lifecycle.desired_state = RunState::Stopped;
    desired.config.cu_number = 8;
    let mut live = live_of(&desired_sql("agg"), 7, FlinkJobStatus::CancelSuccess);
    live.savepoint_path = Some("obs://ckpt/sp/7/".into());
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::UpdateInPlace);
    assert!(
        !action
            .steps
            .iter()
            .any(|step| matches!(step, Step::Stop { .. } | Step::Start { .. })),
        "{:?}",
        action.steps
    );
    // A job that stays stopped keeps the savepoint it holds: nothing is imported into it.
    assert_eq!(action.steps.last(), Some(&Step::UpdateJob));

    // The same change to a job that should run: update, then start from that savepoint.
    desired.lifecycle.desired_state = RunState::Running;
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Start);
    assert_eq!(
        &action.steps[action.steps.len() - 2..],
        &[import("obs://ckpt/sp/7/"), start(true)]
    );
}

fn with_restore(mut desired: DesiredFlinkJob, path: &str, nonce: u64) -> DesiredFlinkJob {
    desired.lifecycle.restore = Some(Restore {
        savepoint_path: Some(path.into()),
        nonce: Some(nonce),
        from_target: None,
        from_catalog: None,
    });
    desired
}

#[test]
fn a_new_restore_key_restores_and_an_applied_one_does_not() {
    let desired = with_restore(desired_sql("agg"), "obs://ckpt/manual/", 1);
    let live = live_of(&desired, 7, FlinkJobStatus::Running);
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Restore);
    assert_eq!(
        action.steps,
        vec![stop(true), import("obs://ckpt/manual/"), start(true),]
    );
    let key = desired.lifecycle.restore.as_ref().unwrap().key();
    assert_eq!(action.restore_key.as_deref(), Some(key.as_str()));

    let mut view = managed_view(&["agg"]);
    view.flink.get_mut("agg").unwrap().applied_restore_key = Some(key);
    let plan = plan_one(desired.clone(), Some(live.clone()), &view, &policy());
    assert!(plan.is_empty(), "{plan:#?}");

    // A new nonce asks for the same path again.
    let bumped = with_restore(desired_sql("agg"), "obs://ckpt/manual/", 2);
    let plan = plan_one(bumped, Some(live), &view, &policy());
    assert_eq!(only_action(&plan).class, ActionClass::Restore);
}

#[test]
fn a_restore_with_config_changes_is_an_upgrade_from_the_restore_savepoint() {
    let mut desired = with_restore(desired_sql("agg"), "obs://ckpt/manual/", 1);
    desired.config.cu_number = 8;
    let plan = plan_against_running_agg(&desired);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Upgrade);
    let imports: Vec<_> = action
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::ImportSavepoint { source } => Some(source.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        imports,
        vec![SavepointSource::Path("obs://ckpt/manual/".into())]
    );
    assert_eq!(
        action.resume_from,
        Some(SavepointSource::Path("obs://ckpt/manual/".into()))
    );
}

#[test]
fn a_job_in_git_and_not_live_is_created_with_the_create_call() {
    let desired = desired_sql("agg");
    let plan = plan_one(desired.clone(), None, &JournalView::default(), &policy());
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Create);
    assert!(matches!(action.steps[0], Step::CreateJob));
    assert_eq!(action.steps.last(), Some(&start(false)));
    assert_eq!(
        action
            .config
            .as_ref()
            .and_then(|config| config.tags.get(MANAGED_TAG_KEY))
            .map(String::as_str),
        Some(MANAGED_TAG_VALUE)
    );

    let mut stopped = with_restore(desired, "obs://ckpt/seed/", 1);
    stopped.lifecycle.desired_state = RunState::Stopped;
    let plan = plan_one(stopped, None, &JournalView::default(), &policy());
    assert_eq!(
        only_action(&plan).steps,
        vec![Step::CreateJob, import("obs://ckpt/seed/")]
    );
}

#[test]
fn unmanaged_live_jobs_outside_git_are_left_alone() {
    let stranger = desired_sql("someone-elses");
    let mut live = live_of(&stranger, 9, FlinkJobStatus::Running);
    live.config.tags.clear();
    let observed = live_jobs(vec![live]);
    let desired = flink_jobs(vec![desired_sql("agg")]);
    let plan = plan_unjournaled(&desired, &observed);
    let names: Vec<_> = plan
        .actions
        .iter()
        .map(|action| action.name.as_str())
        .collect();
    assert_eq!(names, vec!["agg"]);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

#[test]
fn a_live_job_in_git_that_is_not_managed_is_adopted_in_place() {
    let desired = desired_sql("agg");
    let mut live = live_of(&desired, 7, FlinkJobStatus::Running);
    live.config.tags.clear();
    live.config.tags.insert("team".into(), "growth".into());
    let plan = plan_one(desired, Some(live), &JournalView::default(), &policy());
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::UpdateInPlace);
    let mut set = BTreeMap::new();
    set.insert(MANAGED_TAG_KEY.to_string(), MANAGED_TAG_VALUE.to_string());
    assert_eq!(
        action.steps,
        vec![Step::UpdateTags {
            set,
            remove: vec!["team".to_string()]
        }]
    );
    assert!(action.reason.starts_with("adopts"), "{}", action.reason);
}

fn prune_inputs(tagged: bool) -> (DesiredJobs, ObservedJobs) {
    let gone = desired_sql("gone");
    let mut live = live_of(&gone, 3, FlinkJobStatus::Running);
    if !tagged {
        live.config.tags.clear();
    }
    let desired = flink_jobs(vec![desired_sql("agg")]);
    let observed = live_jobs(vec![live]);
    (desired, observed)
}

fn prune_action(plan: &Plan) -> Option<&JobAction> {
    plan.actions.iter().find(|action| action.name == "gone")
}

#[test]
fn managed_jobs_out_of_git_are_pruned_only_when_allowed() {
    let (desired, observed) = prune_inputs(true);
    let plan = plan_unjournaled(&desired, &observed);
    let action = prune_action(&plan).expect("a prune");
    assert_eq!(action.class, ActionClass::Prune);
    assert_eq!(action.steps, vec![Step::Backup, stop(true), Step::Delete]);

    // Managed through the journal alone (the tag was removed by hand).
    let (desired, observed) = prune_inputs(false);
    let plan_untagged = super::plan(&desired, &observed, &managed_view(&["gone"]), &policy());
    assert!(prune_action(&plan_untagged).is_some());
    let plan_unknown = plan_unjournaled(&desired, &observed);
    assert!(prune_action(&plan_unknown).is_none());
    assert!(plan_unknown.warnings.is_empty());

    // Pruning off: a warning, no action.
    let (desired, observed) = prune_inputs(true);
    let off = super::plan(
        &desired,
        &observed,
        &JournalView::default(),
        &PlanPolicy {
            prune: false,
            ..policy()
        },
    );
    assert!(prune_action(&off).is_none());
    assert!(
        off.warnings[0].contains("pruning is off"),
        "{:?}",
        off.warnings
    );

    // Protected by `prune: false` when last applied.
    let mut view = managed_view(&["gone"]);
    view.flink.get_mut("gone").unwrap().protected = true;
    let protected = super::plan(&desired, &observed, &view, &policy());
    assert!(prune_action(&protected).is_none());
    assert!(protected.warnings[0].contains("prune: false"));
}

#[test]
fn an_empty_git_prunes_nothing_unless_explicitly_allowed() {
    let (_, observed) = prune_inputs(true);
    let empty = DesiredJobs::default();
    let guarded = plan_unjournaled(&empty, &observed);
    assert!(guarded.actions.is_empty());
    assert!(
        guarded.warnings[0].contains("zero jobs"),
        "{:?}",
        guarded.warnings
    );

    let allowed = super::plan(
        &empty,
        &observed,
        &JournalView::default(),
        &PlanPolicy {
            allow_empty_prune: true,
            ..policy()
        },
    );
    assert_eq!(allowed.actions.len(), 1);
    assert_eq!(allowed.actions[0].class, ActionClass::Prune);
}

#[test]
fn a_moving_job_is_never_acted_on() {
    let mut desired = desired_sql("agg");
    desired.config.cu_number = 8;
    for status in [
        "job_submitting",
        "job_canceling",
        "job_savepointing",
        "job_something_new",
    ] {
        let live = live_of(&desired_sql("agg"), 7, status);
        let plan = plan_managed(&desired, &live);
        let action = only_action(&plan);
        assert_ne!(action.class, ActionClass::None, "{status}");
        assert_eq!(action.steps, vec![Step::WaitSteady], "{status}");
        assert!(action.is_waiting());
        assert!(action.reason.contains(status), "{}", action.reason);
        assert_eq!(plan.summary().waiting, 1);
    }

    // Already heading where git wants it: nothing to wait for.
    let desired = desired_sql("agg");
    let live = live_of(&desired, 7, FlinkJobStatus::Submitting);
    let plan = plan_managed(&desired, &live);
    assert!(plan.is_empty(), "{plan:#?}");

    // A moving managed job out of git waits too.
    let (desired, mut observed) = prune_inputs(true);
    observed.flink[0].status = FlinkJobStatus::Canceling;
    let plan = plan_unjournaled(&desired, &observed);
    assert_eq!(prune_action(&plan).unwrap().steps, vec![Step::WaitSteady]);
}

#[test]
fn a_job_type_change_replaces_the_job() {
    let desired = desired_sql("agg");
    let mut live = live_of(&desired, 7, FlinkJobStatus::Running);
    live.config.job_type = crate::model::defaults::JAR_JOB_TYPE.into();
    live.config.sql_body = None;
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Upgrade);
    assert_eq!(action.steps[..3], [Step::Backup, stop(false), Step::Delete]);
    assert!(action.reason.contains("job type"));
}

fn desired_dlf(name: &str, digest: &str) -> crate::model::DesiredDlfJob {
    crate::model::DesiredDlfJob {
        name: name.into(),
        definition: serde_json::json!({"name": name, "nodes": [{"name": "load"}]}),
        scripts: BTreeMap::new(),
        import: Default::default(),
        prune: true,
        desired_state: None,
        source: SourceLocation::default(),
        digest: digest.into(),
        policy: Default::default(),
    }
}

#[test]
fn dlf_jobs_import_when_the_digest_differs_or_the_job_is_absent() {
    let desired = DesiredJobs {
        flink: Vec::new(),
        dlf: vec![desired_dlf("nightly", "d2")],
    };
    let absent = plan_fresh(&desired);
    assert_eq!(absent.actions[0].class, ActionClass::Create);
    assert_eq!(absent.actions[0].steps, vec![Step::DlfImport]);

    let observed = ObservedJobs {
        flink: Vec::new(),
        dlf: vec![ObservedDlfJob {
            name: "nightly".into(),
            definition: serde_json::json!({"name": "nightly", "nodes": []}),
            last_update: None,
            status: None,
        }],
    };
    let mut view = JournalView::default();
    view.dlf.insert(
        "nightly".into(),
        JournalDlfJob {
            managed: true,
            protected: false,
            imported_digest: Some("d1".into()),
            ..Default::default()
        },
    );
    let changed = super::plan(&desired, &observed, &view, &policy());
    assert_eq!(changed.actions[0].class, ActionClass::UpdateInPlace);
    assert_eq!(
        changed.actions[0].steps,
        vec![Step::Backup, Step::DlfImport]
    );
    assert!(changed.actions[0].desired_dlf(&desired).is_ok());

    view.dlf.get_mut("nightly").unwrap().imported_digest = Some("d2".into());
    assert!(super::plan(&desired, &observed, &view, &policy()).is_empty());

    // Out of git and managed: pruned.
    let pruned = super::plan(
        &flink_jobs(vec![desired_sql("keep")]),
        &observed,
        &view,
        &policy(),
    );
    let action = pruned
        .actions
        .iter()
        .find(|action| action.kind == JobKind::Dlf)
        .unwrap();
    assert_eq!(action.class, ActionClass::Prune);
    assert_eq!(action.steps, vec![Step::Backup, Step::Delete]);
}

#[test]
fn a_dlf_action_refuses_a_desired_job_that_moved_on() {
    let desired = DesiredJobs {
        flink: Vec::new(),
        dlf: vec![desired_dlf("nightly", "d2")],
    };
    let plan = plan_fresh(&desired);
    let newer = DesiredJobs {
        flink: Vec::new(),
        dlf: vec![desired_dlf("nightly", "d3")],
    };
    let error = plan.actions[0].desired_dlf(&newer).unwrap_err();
    assert!(error.to_string().contains("re-plan"), "{error}");
}

#[test]
fn actions_are_sorted_by_kind_then_name_and_the_id_follows_the_content() {
    let desired = DesiredJobs {
        flink: vec![desired_sql("zeta"), desired_sql("alpha")],
        dlf: vec![desired_dlf("beta", "d1")],
    };
    let mut jar = desired_sql("jar");
    jar.config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
    let mut desired_with_jar = desired.clone();
    desired_with_jar.flink.push(jar);
    let first = plan_fresh(&desired_with_jar);
    let order: Vec<_> = first
        .actions
        .iter()
        .map(|action| (action.kind, action.name.as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            (JobKind::FlinkSql, "alpha"),
            (JobKind::FlinkSql, "zeta"),
            (JobKind::FlinkJar, "jar"),
            (JobKind::Dlf, "beta"),
        ]
    );
    let mut reversed = desired_with_jar.clone();
    reversed.flink.reverse();
    let second = plan_fresh(&reversed);
    assert_eq!(first, second);
    let other = plan_fresh(&desired);
    assert_ne!(first.id, other.id);
}

/// A create's diffs are left out of the plan id (they follow from its configuration), yet the
/// id still changes with any field of the configuration, and the plan keeps the diffs.
#[test]
fn a_create_plan_id_covers_its_configuration_and_the_plan_keeps_its_diffs() {
    let desired = DesiredJobs {
        flink: vec![desired_sql("alpha")],
        dlf: Vec::new(),
    };
    let first = plan_fresh(&desired);
    let create = &first.actions[0];
    assert_eq!(create.class, ActionClass::Create);
    assert!(
        !create.diffs.is_empty(),
        "the plan still shows what the create sets"
    );
    let mut edited = desired.clone();
    edited.flink[0].config.sql_body = Some("SELECT 2 AS v;".into());
    let second = plan_fresh(&edited);
    assert_ne!(
        first.id, second.id,
        "a different SQL body is a different plan"
    );
    assert_eq!(first.id, plan_fresh(&desired).id, "and the id is stable");
}

#[test]
fn duplicate_names_are_skipped_with_a_warning() {
    let desired = flink_jobs(vec![desired_sql("agg"), desired_sql("agg")]);
    let plan = plan_fresh(&desired);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].contains("more than once"));

    let twin = desired_sql("twin");
    let observed = live_jobs(vec![
        live_of(&twin, 1, FlinkJobStatus::Running),
        live_of(&twin, 2, FlinkJobStatus::Running),
    ]);
    let desired = flink_jobs(vec![twin]);
    let plan = plan_unjournaled(&desired, &observed);
    assert!(plan.actions.is_empty());
    assert!(plan.warnings[0].contains("several Flink jobs"));
}

#[test]
fn plan_json_round_trips() {
    let mut desired = desired_sql("agg");
    desired.config.cu_number = 8;
    let plan = plan_against_running_agg(&desired);
    let json = plan.render_json();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["actions"][0]["class"], "upgrade");
    assert_eq!(value["actions"][0]["steps"][1]["step"], "stop");
    assert_eq!(value["actions"][0]["steps"][2]["step"], "update_job");
    assert_eq!(
        value["actions"][0]["steps"][3]["source"]["from"],
        "from_stop"
    );
}

#[test]
fn a_finished_job_is_not_restarted_unless_it_changed() {
    let desired = desired_sql("batchy");
    let live = live_of(&desired, 7, FlinkJobStatus::Finish);
    let plan = plan_managed(&desired, &live);
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(only_action(&plan).reason.contains("finished"));

    let mut changed = desired;
    changed.config.cu_number = 4;
    let plan = plan_managed(&changed, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Start);
    assert!(matches!(action.steps.last(), Some(Step::Start { .. })));
}

/// The per-type field model end to end: a Jar job that leaves queue, feature and Flink version
/// to the service, read back from a detail that reports them filled (and reports SQL-only
/// fields for the Jar job, as the shared detail model can), plans to no change.
#[test]
fn a_jar_job_with_service_filled_fields_plans_no_change() {
    let mut desired = desired_sql("fraud");
    desired.config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
    desired.config.entrypoint = Some("obs://bucket/fraud.jar".into());
    desired
        .config
        .tags
        .insert(MANAGED_TAG_KEY.into(), MANAGED_TAG_VALUE.into());
    let detail = serde_json::json!({
        "job_id": 7, "name": "fraud", "status": "job_running", "job_type": "flink_jar_job",
        "run_mode": "shared_cluster", "queue_name": "default",
        "job_config": {
            "entrypoint": "obs://bucket/fraud.jar", "feature": "basic", "flink_version": "1.15",
            "resource_config_version": "v1", "tm_slot_num": 1, "idle_state_retention": 3600,
            "dirty_data_strategy": "0", "checkpoint_mode": "exactly_once",
            "checkpoint_path": "obs://bucket/checkpoints/7/", "runtime_config": "[]",
            "tags": [{"key": MANAGED_TAG_KEY, "value": MANAGED_TAG_VALUE}]
        }
    });
    let live = crate::cloud::dli_wire::observed_from_detail(&detail, None).unwrap();
    let plan = plan_managed(&desired, &live);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::None, "{action:#?}");
}

/// Hot fields on a running job: an in-place update whose body is the running-job body.
#[test]
fn a_hot_change_to_a_running_job_updates_with_the_running_scope() {
    let mut desired = desired_sql("agg");
    desired.config.smn_topic = Some("alerts".into());
    let plan = plan_against_running_agg(&desired);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::UpdateInPlace);
    assert!(
        action.steps.contains(&Step::UpdateJob),
        "{:?}",
        action.steps
    );
    assert_eq!(
        crate::model::UpdateScope::for_diffs(&action.diffs),
        crate::model::UpdateScope::Running {
            changed: vec!["smn_topic".into()]
        }
    );
}

#[test]
fn a_plan_without_changes_says_when_a_job_is_still_moving() {
    let desired = desired_sql("agg");
    let live = live_of(&desired, 7, FlinkJobStatus::Submitting);
    let plan = plan_managed(&desired, &live);
    assert!(plan.is_empty());
    let text = plan.render_text();
    assert!(
        text.contains("not settled yet: waiting for agg (job_submitting)"),
        "{text}"
    );
    assert!(!text.contains("The live jobs match git"), "{text}");
}

fn blue() -> PlanPolicy {
    PlanPolicy {
        instance: "blue".into(),
        ..policy()
    }
}

#[test]
fn a_job_of_another_installation_is_a_conflict_never_changed_or_pruned() {
    // Tagged `managed-by: dli-gitops` (the default installation's), planned by `blue`.
    let mut desired = desired_sql("agg");
    desired.config.cu_number = 9;
    let live = live_of(&desired_sql("agg"), 7, FlinkJobStatus::Running);
    let plan = plan_one(
        desired,
        Some(live.clone()),
        &JournalView::default(),
        &blue(),
    );
    assert!(plan.is_empty(), "{}", plan.render_text());
    assert!(
        plan.warnings[0].contains("managed by another dli-gitops installation"),
        "{:?}",
        plan.warnings
    );

    // Not in git, prune on: still left alone.
    let desired_jobs = flink_jobs(vec![desired_sql("something-else")]);
    let observed = live_jobs(vec![live]);
    let plan = super::plan(&desired_jobs, &observed, &JournalView::default(), &blue());
    assert!(
        !plan
            .actions
            .iter()
            .any(|action| action.class == ActionClass::Prune),
        "{}",
        plan.render_text()
    );
    assert!(plan.warnings.iter().any(|w| w.contains("never prunes it")));
}

#[test]
fn a_job_this_installation_manages_is_migrated_to_its_tag_and_its_own_jobs_are_pruned() {
    // Our journal manages a job still tagged the old way: the tag moves to `dli-gitops.blue`
    // through the tag API, nothing restarts.
    let live = live_of(&desired_sql("agg"), 7, FlinkJobStatus::Running);
    let plan = plan_one(
        desired_sql("agg"),
        Some(live),
        &managed_view(&["agg"]),
        &blue(),
    );
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::UpdateInPlace);
    assert_eq!(
        action.steps,
        vec![Step::UpdateTags {
            set: BTreeMap::from([(MANAGED_TAG_KEY.to_string(), "dli-gitops.blue".to_string())]),
            remove: Vec::new(),
        }]
    );

    // A job tagged by this installation and gone from git is pruned.
    let mut ours = live_of(&desired_sql("old"), 8, FlinkJobStatus::Running);
    ours.config
        .tags
        .insert(MANAGED_TAG_KEY.into(), "dli-gitops.blue".into());
    let observed = live_jobs(vec![ours]);
    let desired_jobs = flink_jobs(vec![desired_sql("kept")]);
    let plan = super::plan(&desired_jobs, &observed, &JournalView::default(), &blue());
    assert!(
        plan.actions
            .iter()
            .any(|action| action.name == "old" && action.class == ActionClass::Prune),
        "{}",
        plan.render_text()
    );
}

/// The SQL update body has no `job_type`: a change between the SQL types replaces the job
/// instead of updating it forever.
#[test]
fn a_sql_job_type_change_replaces_the_job() {
    let mut desired = desired_sql("agg");
    desired.config.job_type = "flink_sql_job".into();
    let plan = plan_against_running_agg(&desired);
    let action = only_action(&plan);
    assert_eq!(action.class, ActionClass::Upgrade);
    assert!(action.steps.contains(&Step::Delete), "{:?}", action.steps);
    assert!(
        action.reason.contains("job type changes"),
        "{}",
        action.reason
    );
}

#[test]
fn globs_match_like_a_shell() {
    use super::glob_matches;
    assert!(glob_matches("orders-*", "orders-eu"));
    assert!(glob_matches("*", ""));
    assert!(glob_matches("o*s-?u", "orders-eu"));
    assert!(glob_matches("*eu", "orders-eu"));
    assert!(!glob_matches("orders-*", "clicks"));
    assert!(!glob_matches("orders", "orders-eu"));
    assert!(!glob_matches("?", ""));
    assert!(glob_matches("a*b*c", "axxbyyc"));
    assert!(!glob_matches("a*b*c", "axxbyy"));
}
