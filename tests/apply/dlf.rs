//! DLF: job types, schedules, task warnings, drift, export and rollback, and stops and runs
//! whose answers were late or lost.

use super::*;

// ---------------------------------------------------------------------------------------------
// DLF: job types, schedules, task warnings, drift and export
// ---------------------------------------------------------------------------------------------

const DLF_MUTATING: &[&str] = &["DlfImportJob", "DlfDeleteJob", "DlfStartJob", "DlfStopJob"];

fn dlf_calls(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut calls = mutating(before, after);
    for operation in DLF_MUTATING
        .iter()
        .chain(["DlfListJobs", "DlfShowJob"].iter())
    {
        let delta = after.get(*operation).copied().unwrap_or(0)
            - before.get(*operation).copied().unwrap_or(0);
        if delta > 0 {
            calls.insert(operation.to_string(), delta);
        }
    }
    calls
}

fn dlf_definition(name: &str, process_type: &str, statement: &str) -> String {
    format!(
        r#"{{"name": "{name}", "processType": "{process_type}", "nodes": [{{"name": "n", "type": "DWSSQL", "properties": [{{"name": "statement", "value": "{statement}"}}]}}], "schedule": {{"type": "CRON", "cron": {{"expression": "0 0 2 * * ?"}}}}}}"#
    )
}

/// The DLF job `nightly` (`SELECT 1`, git leaving `desired_state` unset) created, its schedule
/// then started by hand, and the target in sync.
async fn scheduled_nightly(harness: &Harness) {
    harness.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 1"));
    harness.apply_converged().await;
    let dlf = &harness.context().live.clients.dlf;
    dlf.start_job("nightly").await.unwrap();
    harness.assert_in_sync().await;
}

async fn dlf_status(harness: &Harness, name: &str) -> Option<String> {
    use dli_gitops::apply::LiveService;
    harness
        .context()
        .live
        .list_dlf_jobs()
        .await
        .unwrap()
        .jobs
        .into_iter()
        .find(|job| job.name == name)
        .and_then(|job| job.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlf_real_time_jobs_are_seen_and_scheduled_jobs_are_stopped_around_an_overwrite() {
    let mut harness = Harness::start().await;
    harness.write(
        "dlf/stream.yaml",
        "kind: DlfJob\nname: stream\ndefinition_file: stream.job\ndesired_state: running\n",
    );
    harness.write(
        "dlf/stream.job",
        &dlf_definition("stream", "REAL_TIME", "SELECT 1"),
    );
    harness.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 1"));
    let created = harness.apply_converged().await;
    assert_eq!(class_of(&created, "stream"), ActionClass::Create);
    assert_eq!(
        dlf_status(&harness, "stream").await.as_deref(),
        Some("NORMAL")
    );
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("STOPPED")
    );
    // The REAL_TIME job is listed (its own listing), so it is not imported again.
    harness.assert_in_sync().await;
    let before = harness.stats().await;
    harness.assert_in_sync().await;
    let calls = dlf_calls(&before, &harness.stats().await);
    assert_eq!(
        calls,
        BTreeMap::from([("DlfListJobs".to_string(), 2)]),
        "a no-change pass lists each DLF job type once and reads no detail"
    );

    // A change to a scheduled job: stop its schedule, import, start it again.
    harness.write(
        "dlf/stream.job",
        &dlf_definition("stream", "REAL_TIME", "SELECT 2"),
    );
    let plan = harness.plan().await;
    let action = plan
        .plan
        .actions
        .iter()
        .find(|a| a.name == "stream")
        .unwrap();
    let steps: Vec<String> = action
        .steps
        .iter()
        .map(|step| {
            serde_json::to_value(step).unwrap()["step"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        steps,
        ["backup", "stop", "dlf_import", "start"],
        "{}",
        plan.plan.render_text()
    );
    assert!(plan.plan.render_text().contains("stop the job's schedule"));
    let before = harness.stats().await;
    let upgraded = harness.apply_converged().await;
    assert_eq!(class_of(&upgraded, "stream"), ActionClass::Upgrade);
    let calls = dlf_calls(&before, &harness.stats().await);
    assert_eq!(calls.get("DlfStopJob"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("DlfStartJob"), Some(&1), "{calls:?}");
    assert_eq!(
        dlf_status(&harness, "stream").await.as_deref(),
        Some("NORMAL")
    );
    harness.assert_in_sync().await;

    // A schedule left unset in git is kept as found: started by hand, it stays started, and an
    // overwrite stops and restarts it.
    harness
        .context()
        .live
        .clients
        .dlf
        .start_job("nightly")
        .await
        .unwrap();
    harness.assert_in_sync().await;
    harness.write(
        "dlf/nightly.job",
        &dlf_definition("nightly", "BATCH", "SELECT 2"),
    );
    let updated = harness.apply_converged().await;
    assert_eq!(class_of(&updated, "nightly"), ActionClass::Upgrade);
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("NORMAL")
    );
    harness.assert_in_sync().await;

    // `desired_state: stopped` stops a schedule without an import.
    harness.write(
        "dlf/stream.yaml",
        "kind: DlfJob\nname: stream\ndefinition_file: stream.job\ndesired_state: stopped\n",
    );
    let stopped = harness.apply_converged().await;
    assert_eq!(class_of(&stopped, "stream"), ActionClass::Stop);
    assert_eq!(
        dlf_status(&harness, "stream").await.as_deref(),
        Some("STOPPED")
    );
    harness.assert_in_sync().await;

    // Prune deletes a scheduled job after stopping its schedule (DataArts refuses otherwise).
    harness.context_mut().policy.prune = true;
    harness.remove("dlf/nightly.yaml");
    harness.remove("dlf/nightly.job");
    let pruned = harness.apply_converged().await;
    assert_eq!(class_of(&pruned, "nightly"), ActionClass::Prune);
    assert_eq!(dlf_status(&harness, "nightly").await, None, "deleted");
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlf_task_that_ends_warning_is_done_and_its_warnings_are_reported() {
    let harness = Harness::start().await;
    // The environment replaces a resource this job does not use: DataArts imports the job and
    // ends the task WARNING.
    harness.write(
        "environments/dev.yaml",
        "variables: {}\ndlf:\n  resources: [{name: unused_dws, type: DWS_CONNECTION, replace: prod_dws}]\n",
    );
    harness.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 1"));
    let started = std::time::Instant::now();
    let report = harness.apply_converged().await;
    let result = report.results.iter().find(|r| r.name == "nightly").unwrap();
    assert!(result.ok);
    assert!(
        result.warnings.iter().any(|w| w.contains("unused_dws")),
        "{:?}",
        result.warnings
    );
    assert!(
        report.render_text().contains("warnings:"),
        "{}",
        report.render_text()
    );
    let journal = std::fs::read_to_string(harness.dir.path().join("state/journal.jsonl")).unwrap();
    assert!(
        journal
            .lines()
            .any(|line| line.contains("\"outcome\"") && line.contains("unused_dws")),
        "the outcome journals the warning"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a WARNING task is finished, not waited on until the 20 s timeout"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_a_dlf_job_is_drift_and_the_next_apply_corrects_it() {
    let harness = Harness::start().await;
    harness.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 1"));
    harness.apply_converged().await;
    harness.assert_in_sync().await;

    // Someone edits the job in the console (here: an import over it, outside dli-gitops).
    use dli_gitops::apply::LiveService;
    let live = &harness.context().live;
    let edited = dli_gitops::model::DesiredDlfJob {
        name: "nightly".into(),
        definition: serde_json::from_str(&dlf_definition("nightly", "BATCH", "SELECT 666"))
            .unwrap(),
        scripts: BTreeMap::new(),
        import: Default::default(),
        prune: true,
        desired_state: None,
        source: Default::default(),
        digest: String::new(),
        policy: Default::default(),
    };
    let task = live.import_dlf_job(&edited, "by-hand").await.unwrap();
    live.wait_dlf_task(&task, Duration::from_secs(10))
        .await
        .unwrap();

    let plan = harness.plan().await;
    let action = plan
        .plan
        .actions
        .iter()
        .find(|a| a.name == "nightly")
        .unwrap();
    assert_eq!(
        action.class,
        ActionClass::UpdateInPlace,
        "{}",
        plan.plan.render_text()
    );
    assert!(action.reason.contains("drift"), "{}", action.reason);
    assert!(
        plan.plan.render_text().contains("SELECT 666"),
        "the diff shows the live edit: {}",
        plan.plan.render_text()
    );
    // Another plan reads nothing new and still sees it.
    let again = harness.plan().await;
    assert_eq!(again.observe.dlf_detail_calls, 0);
    assert!(!again.plan.is_empty());

    harness.apply_converged().await;
    let text = live.dlf_job("nightly").await.unwrap().to_string();
    assert!(
        text.contains("SELECT 1") && !text.contains("SELECT 666"),
        "{text}"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_died_after_stopping_a_schedule_is_finished_by_the_next_pass() {
    let harness = Harness::start().await;
    scheduled_nightly(&harness).await;
    let dlf = &harness.context().live.clients.dlf;

    // A pass announced stop → import → start, stopped the schedule, and died.
    use dli_gitops::apply::Ledger;
    harness
        .context()
        .ledger
        .intent(dli_gitops::apply::IntentEntry {
            action_id: "0123456789ab-dead-0".into(),
            job: "dlf:nightly".into(),
            action: "upgrade".into(),
            plan_id: Some("0123456789abcdef".into()),
            detail: serde_json::json!({"kind": "DlfJob", "steps": [
                {"step": "backup"}, {"step": "stop", "trigger_savepoint": false},
                {"step": "dlf_import"}, {"step": "start", "resume_savepoint": false}]}),
        })
        .await
        .unwrap();
    dlf.stop_job("nightly").await.unwrap();

    // `plan` resolves the intent and remembers the schedule is owed; so does a second plan.
    let plan = harness.plan().await;
    assert_eq!(plan.resolved.len(), 1);
    assert_eq!(
        class_of(&plan, "nightly"),
        ActionClass::Start,
        "{}",
        plan.plan.render_text()
    );
    assert_eq!(
        class_of(&harness.plan().await, "nightly"),
        ActionClass::Start
    );
    harness.apply_converged().await;
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("NORMAL")
    );
    harness.assert_in_sync().await;
    // Seen scheduled, the debt is paid: stopped by hand later, the schedule stays stopped.
    dlf.stop_job("nightly").await.unwrap();
    harness.assert_in_sync().await;
    harness.stop().await;
}

/// Whether the plan's action on `name` starts its schedule.
fn starts_schedule(report: &ApplyReport, name: &str) -> bool {
    report.plan.actions.iter().any(|action| {
        action.name == name
            && action
                .steps
                .iter()
                .any(|step| matches!(step, dli_gitops::plan::Step::Start { .. }))
    })
}

/// A start owed by a pass that died after stopping the schedule stays owed through the next
/// pass's import: that pass imports git's change (no stop: the schedule is already stopped) and
/// fails or dies before its start. Its import must not forget the debt, and its interrupted
/// intent (import → start, no stop) owes the start too; otherwise the schedule, left unset in
/// git, stays stopped for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_owed_after_a_crash_survives_an_import_that_fails_before_its_start() {
    // The service refuses every schedule start (as without the IAM permission).
    let refusing_starts = || {
        let mut emulator = EmulatorConfig::for_tests(PathBuf::new());
        emulator.faults.forbidden = vec!["DlfStartJob".to_string()];
        emulator
    };
    let harness = Harness::start_with(refusing_starts(), "prune: true").await;
    harness.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 1"));
    harness.apply_converged().await;
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("STOPPED")
    );

    use dli_gitops::apply::{Ledger, LiveService};
    let ledger = &harness.context().ledger;
    let died = |id: &str, steps: serde_json::Value| dli_gitops::apply::IntentEntry {
        action_id: id.into(),
        job: "dlf:nightly".into(),
        action: "upgrade".into(),
        plan_id: Some("0123456789abcdef".into()),
        detail: serde_json::json!({"kind": "DlfJob", "steps": steps}),
    };
    // A pass announced stop → import → start, stopped the schedule, and died.
    ledger
        .intent(died(
            "0123456789ab-dead-0",
            serde_json::json!([{"step": "stop", "trigger_savepoint": false},
                {"step": "dlf_import"}, {"step": "start", "resume_savepoint": false}]),
        ))
        .await
        .unwrap();
    assert_eq!(
        class_of(&harness.plan().await, "nightly"),
        ActionClass::Start
    );

    // Git changes; the next pass imports (no stop) and its start is refused.
    harness.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 2"));
    let report = harness.reconcile(false).await;
    let result = report.results.iter().find(|r| r.name == "nightly").unwrap();
    assert!(!result.ok, "{}", report.render_text());
    assert!(
        harness
            .context()
            .live
            .dlf_job("nightly")
            .await
            .unwrap()
            .to_string()
            .contains("SELECT 2"),
        "the import went through"
    );
    // The failed action recorded no import, so the plan imports again; it must start too.
    let plan = harness.plan().await;
    assert!(
        starts_schedule(&plan, "nightly"),
        "the start is still owed after the import: {}",
        plan.plan.render_text()
    );

    // The same when a pass that owed no start announced import → start and died between them.
    let fresh = Harness::start_with(refusing_starts(), "prune: true").await;
    fresh.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 1"));
    fresh.apply_converged().await;
    fresh
        .context()
        .ledger
        .intent(died(
            "0123456789ab-dead-1",
            serde_json::json!([{"step": "dlf_import"}, {"step": "start", "resume_savepoint": false}]),
        ))
        .await
        .unwrap();
    let plan = fresh.plan().await;
    assert!(
        starts_schedule(&plan, "nightly"),
        "{}",
        plan.plan.render_text()
    );
    fresh.stop().await;
    harness.stop().await;
}

/// A schedule stop whose answer is lost took effect; the action fails at that stop. The start
/// it was to end with is owed all the same: the next pass imports and starts the schedule
/// again (git leaves `desired_state` unset), it does not leave the job unscheduled for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_stop_whose_answer_was_lost_is_followed_by_a_start() {
    let mut emulator = EmulatorConfig::for_tests(PathBuf::new());
    emulator.faults.lost_answer = vec![TargetedFault {
        operation: "DlfStopJob".into(),
        skip: 0,
        times: 0,
        delay_ms: 0,
    }];
    let harness = Harness::start_with(emulator, "prune: true").await;
    scheduled_nightly(&harness).await;

    harness.dlf_job(&dlf_definition("nightly", "BATCH", "SELECT 2"));
    let report = harness.reconcile(false).await;
    let result = report.results.iter().find(|r| r.name == "nightly").unwrap();
    assert!(
        !result.ok,
        "the stop's answer was lost: {}",
        report.render_text()
    );
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("STOPPED"),
        "the stop took effect"
    );
    let plan = harness.plan().await;
    assert!(
        starts_schedule(&plan, "nightly"),
        "the schedule is started again: {}",
        plan.plan.render_text()
    );
    harness.apply_converged().await;
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("NORMAL")
    );
    harness.stop().await;
}

/// A start owed while the schedule in fact still runs (a stop refused before it took effect:
/// the pass cannot tell) is paid by the next observation that lists the schedule running, even
/// though nothing about the job moved; so a later stop by hand is left alone (git leaves
/// `desired_state` unset) instead of being undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_owed_while_the_schedule_runs_is_paid_when_it_is_listed_running() {
    use dli_gitops::apply::{Ledger, ObservationEntry};
    let harness = Harness::start().await;
    scheduled_nightly(&harness).await;
    let dlf = &harness.context().live.clients.dlf;

    // What a failed stop leaves in the journal: the cached observation, owing a start.
    let ledger = &harness.context().ledger;
    let cached = ledger.cached("dlf:nightly").expect("observed");
    let mut snapshot = cached.snapshot.clone();
    snapshot["restart_schedule"] = serde_json::json!(true);
    ledger
        .observed(ObservationEntry {
            job: "dlf:nightly".into(),
            live_id: None,
            update_time: cached.update_time,
            status: cached.status.clone(),
            snapshot,
        })
        .await
        .unwrap();
    // Listed running, nothing moved: no definition read, and the debt is paid.
    let seen = harness.plan().await;
    assert_eq!(seen.observe.dlf_detail_calls, 0);
    assert!(seen.plan.is_empty(), "{}", seen.plan.render_text());

    dlf.stop_job("nightly").await.unwrap();
    let after = harness.plan().await;
    assert!(
        !starts_schedule(&after, "nightly"),
        "a schedule stopped by hand stays stopped: {}",
        after.plan.render_text()
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_managed_dlf_target_leaves_both_repositories_without_changes() {
    let harness = Harness::start().await;
    harness.write(
        "environments/dev.yaml",
        "variables: {}\ndlf:\n  params: {env: dev}\n",
    );
    harness.write(
        "dlf/nightly.yaml",
        "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\nscripts: [load.script]\nprune: false\n",
    );
    harness.write(
        "dlf/nightly.job",
        r#"{"name": "nightly", "processType": "BATCH", "params": [{"name": "env", "value": "none"}], "nodes": [{"name": "n", "type": "DLISQL", "properties": [{"name": "scriptName", "value": "load_sql"}]}], "schedule": {"type": "EXECUTE_ONCE"}}"#,
    );
    harness.write(
        "dlf/load.script",
        r#"{"name": "load_sql", "type": "DLISQL", "content": "INSERT INTO t SELECT 1"}"#,
    );
    harness.apply_converged().await;
    harness.assert_in_sync().await;

    let exported = harness.dir.path().join("exported");
    let report = apply::export(harness.context(), &exported)
        .await
        .expect("export");
    assert_eq!(
        report.dlf_jobs,
        vec!["nightly".to_string()],
        "{}",
        report.render_text()
    );
    let job = std::fs::read_to_string(exported.join("dlf/nightly.job")).unwrap();
    for volatile in [
        "\"id\"",
        "lastUpdateTime",
        "\"version\"",
        "createTime",
        "targetStatus",
    ] {
        assert!(!job.contains(volatile), "{volatile} in {job}");
    }
    let script = std::fs::read_to_string(exported.join("dlf/load_sql.script"))
        .expect("the job's script is exported");
    assert!(script.contains("INSERT INTO t SELECT 1"), "{script}");
    let yaml = std::fs::read_to_string(exported.join("dlf/nightly.yaml")).unwrap();
    assert!(yaml.contains("prune: false"), "{yaml}");

    // The repository the job came from still plans no change...
    harness.assert_in_sync().await;
    // ...and so does the exported one, put in its place.
    std::fs::rename(harness.repo(), harness.dir.path().join("original")).unwrap();
    std::fs::rename(&exported, harness.repo()).unwrap();
    harness.assert_in_sync().await;
    harness.stop().await;
}

/// `rollback` checks every backup before it stops anything, and a rerun after a rollback that
/// died between its stop and its import restarts the job from the savepoint that run journaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_checks_its_backups_first_and_a_rerun_restarts_what_an_interrupted_one_stopped() {
    use dli_gitops::apply::{ActionEffects, IntentEntry, Ledger, OutcomeEntry};
    let harness = Harness::start().await;
    harness.sql_job("agg", "cu_number: 2\n");
    harness.apply_converged().await;
    harness.sql_job("agg", "cu_number: 6\n");
    harness.apply_converged().await;
    let ledger = &harness.context().ledger;
    let set = ledger.backup_sets().last().cloned().expect("a backup set");
    let zip = set.jobs[0].1[0].clone();

    // A backup pulled away: refused, and nothing is stopped or imported.
    let file = harness
        .emulator()
        .data_dir()
        .join("obs")
        .join(zip.trim_start_matches("obs://"));
    let saved = std::fs::read(&file).expect("the backup zip is on OBS");
    std::fs::remove_file(&file).unwrap();
    let before = harness.stats().await;
    let refused = apply::rollback(harness.context(), None).await;
    match &refused {
        Err(apply::ApplyError::Rollback { problem, .. }) => {
            assert!(problem.contains("nothing was stopped"), "{problem}");
            assert!(problem.contains(&zip), "{problem}");
        }
        other => panic!("expected a refused rollback, got {other:?}"),
    }
    assert_eq!(mutating(&before, &harness.stats().await), BTreeMap::new());
    assert!(harness.flink_job("agg").await.status.is_running());
    std::fs::write(&file, saved).unwrap();

    // A rollback that stopped the job, journaled the stop savepoint, then died.
    let job_id = harness.flink_job("agg").await.id;
    harness
        .context()
        .live
        .clients
        .dli
        .stop_jobs(&[job_id], true)
        .await
        .unwrap();
    let mut stopped = harness.flink_job("agg").await;
    for _ in 0..100 {
        if stopped.status.is_stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stopped = harness.flink_job("agg").await;
    }
    let savepoint = stopped.savepoint_path.clone().expect("a stop savepoint");
    let crashed = "crashed-rollback-0".to_string();
    ledger
        .intent(IntentEntry {
            action_id: crashed.clone(),
            job: "agg".into(),
            action: "rollback".into(),
            plan_id: set.plan_id.clone(),
            detail: serde_json::json!({"zips": [zip], "was_running": true}),
        })
        .await
        .unwrap();
    ledger
        .intent(IntentEntry {
            action_id: format!("{crashed}-stop-savepoint"),
            job: "agg".into(),
            action: "stop_savepoint".into(),
            plan_id: set.plan_id.clone(),
            detail: serde_json::json!({"live_id": job_id, "part_of": crashed}),
        })
        .await
        .unwrap();
    ledger
        .outcome(OutcomeEntry {
            action_id: format!("{crashed}-stop-savepoint"),
            job: "agg".into(),
            ok: true,
            error: None,
            effects: ActionEffects {
                savepoint_path: Some(savepoint.clone()),
                ..ActionEffects::default()
            },
            plan_id: set.plan_id.clone(),
        })
        .await
        .unwrap();

    let report = apply::rollback(harness.context(), None)
        .await
        .expect("the rerun rolls back");
    assert!(report.jobs[0].error.is_none(), "{}", report.render_text());
    let live = harness.flink_job("agg").await;
    assert!(live.status.is_running(), "the rerun restarted the job");
    assert_eq!(live.config.cu_number, 2, "the backup's definition");
    let runs = harness.runs(live.id).await["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        runs.last().unwrap()["restored_from"].as_str(),
        Some(savepoint.as_str()),
        "it resumed from the savepoint the interrupted rollback took"
    );
    assert!(
        ledger.pending().is_empty(),
        "no intent is left open: {:?}",
        ledger.pending()
    );
    harness.stop().await;
}

/// A stop held by the gateway past the client's timeout, then applied late: the client never
/// resends it (a resend would let the late first one stop the job after the upgrade started it
/// again), the action fails instead of claiming success, and the next pass converges from what
/// the late stop left: the job runs again from the savepoint that stop took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_stop_is_never_resent_and_never_leaves_the_job_stopped_after_a_pass_said_done() {
    let mut emulator = EmulatorConfig::for_tests(PathBuf::new());
    emulator.faults.late = vec![TargetedFault {
        operation: "BatchStopFlinkJobs".into(),
        skip: 0,
        times: 1,
        delay_ms: 2_500,
    }];
    let harness = Harness::start_with_timeouts(emulator, "prune: true", "request: 1s, ").await;
    harness.sql_job("late", "cu_number: 2\nqueue_name: q1\n");
    harness.apply_converged().await;
    harness.sql_job("late", "cu_number: 3\nqueue_name: q1\n");

    let first = harness.reconcile(false).await;
    let result = first.results.iter().find(|r| r.name == "late").unwrap();
    assert!(
        !result.ok,
        "the upgrade does not claim success: {}",
        first.render_text()
    );
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("not sent again"), "{message}");
    assert_eq!(harness.stats().await.get("BatchStopFlinkJobs"), Some(&1));

    // The held stop lands now, after the client gave up on it.
    let mut live = harness.flink_job("late").await;
    for _ in 0..200 {
        if live.status.is_stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        live = harness.flink_job("late").await;
    }
    assert!(
        live.status.is_stopped(),
        "the late stop landed: {}",
        live.status
    );
    let stop_savepoint = live
        .savepoint_path
        .clone()
        .expect("the late stop took a savepoint");

    harness.apply_converged().await;
    harness.assert_in_sync().await;
    let live = harness.flink_job("late").await;
    assert!(live.status.is_running());
    assert_eq!(live.config.cu_number, 3);
    let runs = harness.runs(live.id).await["runs"]
        .as_array()
        .unwrap()
        .clone();
    // The service's savepoint the job held was copied before the restart and the copy imported.
    let late_run = runs
        .iter()
        .find(|run| run["stop_savepoint"].as_str() == Some(stop_savepoint.as_str()))
        .expect("the run the late stop ended");
    assert_eq!(
        runs.last().unwrap()["restored_savepoint_id"],
        late_run["stop_savepoint_id"],
        "resumed from the savepoint the late stop took"
    );
    assert_eq!(
        harness.stats().await.get("BatchStopFlinkJobs"),
        Some(&1),
        "no stop was ever sent again"
    );
    harness.stop().await;
}

/// A run whose answer is lost after the service applied it: not sent again; the job is looked
/// at, it is starting, and the action reports what is true (done), not a failure from a
/// refused resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_answer_was_lost_is_confirmed_by_looking_not_by_sending_it_again() {
    let mut emulator = EmulatorConfig::for_tests(PathBuf::new());
    emulator.faults.lost_answer = vec![TargetedFault {
        operation: "BatchRunFlinkJobs".into(),
        skip: 1,
        times: 1,
        delay_ms: 0,
    }];
    let harness = Harness::start_with(emulator, "prune: true").await;
    harness.sql_job("lost", "cu_number: 2\nqueue_name: q1\n");
    harness.apply_converged().await;
    harness.sql_job("lost", "cu_number: 3\nqueue_name: q1\n");
    let upgraded = harness.apply_converged().await;
    assert_eq!(class_of(&upgraded, "lost"), ActionClass::Upgrade);
    assert_eq!(
        harness.stats().await.get("BatchRunFlinkJobs"),
        Some(&2),
        "one run for the create, one for the upgrade: never sent again"
    );
    let live = harness.flink_job("lost").await;
    assert!(live.status.is_running());
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_a_scheduled_dlf_job_stops_its_schedule_imports_and_starts_it_again() {
    let harness = Harness::start().await;
    harness.write(
        "dlf/nightly.yaml",
        "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\ndesired_state: running\n",
    );
    harness.write(
        "dlf/nightly.job",
        &dlf_definition("nightly", "BATCH", "SELECT 1"),
    );
    harness.apply_converged().await;
    harness.write(
        "dlf/nightly.job",
        &dlf_definition("nightly", "BATCH", "SELECT 2"),
    );
    harness.apply_converged().await;
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("NORMAL")
    );

    let report = apply::rollback(harness.context(), None)
        .await
        .expect("rollback runs");
    assert!(
        report.jobs.iter().all(|job| job.error.is_none()),
        "{}",
        report.render_text()
    );
    use dli_gitops::apply::LiveService;
    let text = harness
        .context()
        .live
        .dlf_job("nightly")
        .await
        .unwrap()
        .to_string();
    assert!(
        text.contains("SELECT 1"),
        "the backup is live again: {text}"
    );
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("NORMAL")
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_fails_after_the_schedule_was_stopped_leaves_a_start_for_the_next_pass() {
    let harness = Harness::start().await;
    scheduled_nightly(&harness).await;

    // The staging prefix cannot take objects (a file stands where its folder would be): the
    // schedule is stopped, then the upload fails.
    let prefix = harness
        .dir
        .path()
        .join("emulator/obs/dli-gitops-staging/dev");
    let parked = harness.dir.path().join("parked-staging");
    if prefix.exists() {
        std::fs::rename(&prefix, &parked).unwrap();
    }
    std::fs::write(&prefix, "not a folder").unwrap();
    harness.write(
        "dlf/nightly.job",
        &dlf_definition("nightly", "BATCH", "SELECT 2"),
    );
    let failed = harness.reconcile(false).await;
    let result = failed.results.iter().find(|r| r.name == "nightly").unwrap();
    assert!(!result.ok, "{}", failed.render_text());
    assert_eq!(
        result.steps_done,
        2,
        "backup and stop ran: {}",
        failed.render_text()
    );
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("STOPPED")
    );

    // Git leaves the schedule unset, and still the next pass imports and starts it again.
    std::fs::remove_file(&prefix).unwrap();
    let plan = harness.plan().await;
    let action = plan
        .plan
        .actions
        .iter()
        .find(|a| a.name == "nightly")
        .unwrap();
    assert_eq!(
        action.steps.last(),
        Some(&dli_gitops::plan::Step::Start {
            resume_savepoint: false
        }),
        "{}",
        plan.plan.render_text()
    );
    harness.apply_converged().await;
    assert_eq!(
        dlf_status(&harness, "nightly").await.as_deref(),
        Some("NORMAL")
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}
