//! A job's life through passes over the in-process emulator: create, update, upgrade with its
//! savepoint, stop and start, restore, prune, DLF import, permanent errors, rollback, export and
//! random edits.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_update_in_place_and_a_second_apply_makes_no_mutating_call() {
    let harness = Harness::start().await;
    harness.sql_job("orders", "cu_number: 2\n");
    harness.sql_job("clicks", "desired_state: stopped\n");

    let created = harness.apply_converged().await;
    assert_eq!(class_of(&created, "orders"), ActionClass::Create);
    assert_eq!(class_of(&created, "clicks"), ActionClass::Create);
    assert!(harness.flink_job("orders").await.status.is_running());
    assert_eq!(
        harness.flink_job("clicks").await.status.as_str(),
        "job_init"
    );
    harness.assert_in_sync().await;

    let before = harness.stats().await;
    let second = harness.apply_converged().await;
    assert!(
        second.results.is_empty(),
        "nothing to do: {}",
        second.render_text()
    );
    let after = harness.stats().await;
    assert_eq!(
        mutating(&before, &after),
        BTreeMap::new(),
        "no mutating call the second time"
    );
    // A steady pass costs one list page: no job detail is read again.
    assert_eq!(second.observe.flink_list_calls, 1);
    assert_eq!(second.observe.flink_detail_calls, 0);
    assert_eq!(after.get("ShowFlinkJob"), before.get("ShowFlinkJob"));

    let orders_id = harness.flink_job("orders").await.id;
    let runs_before = harness.runs(orders_id).await["runs"]
        .as_array()
        .unwrap()
        .len();
    harness.sql_job(
        "orders",
        "cu_number: 2\nsmn_topic: alerts\nrestart_when_exception: true\n",
    );
    let updated = harness.apply_converged().await;
    assert_eq!(class_of(&updated, "orders"), ActionClass::UpdateInPlace);
    let live = harness.flink_job("orders").await;
    assert_eq!(live.config.smn_topic.as_deref(), Some("alerts"));
    assert!(live.status.is_running());
    let runs_after = harness.runs(orders_id).await["runs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        runs_before, runs_after,
        "a hot change does not restart the job"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_carries_the_savepoint_across_the_reimport() {
    let harness = Harness::start().await;
    harness.sql_job("agg", "cu_number: 2\n");
    harness.apply_converged().await;
    let first_id = harness.flink_job("agg").await.id;

    harness.sql_job("agg", "cu_number: 4\nparallel_number: 2\n");
    let upgraded = harness.apply_converged().await;
    assert_eq!(class_of(&upgraded, "agg"), ActionClass::Upgrade);
    let result = upgraded.results.iter().find(|r| r.name == "agg").unwrap();
    assert!(
        !result.backups.is_empty(),
        "the live job was backed up first"
    );
    let live = harness.flink_job("agg").await;
    assert!(live.status.is_running());
    assert_eq!(live.config.cu_number, 4);

    let runs = harness.runs(live.id).await;
    let runs = runs["runs"].as_array().unwrap().clone();
    let history = if live.id == first_id {
        runs
    } else {
        panic!("ids differ: {first_id} vs {}", live.id)
    };
    assert!(history.len() >= 2, "the job ran twice: {history:?}");
    let stopped = &history[history.len() - 2];
    let resumed = &history[history.len() - 1];
    stopped["stop_savepoint"]
        .as_str()
        .expect("a savepoint at stop");
    assert_eq!(resumed["resume_savepoint"], Value::Bool(true));
    // From our verified copy of it (the service deletes its own at the restart): same state.
    assert_eq!(
        resumed["restored_savepoint_id"], stopped["stop_savepoint_id"],
        "the new run restored the savepoint taken at stop"
    );
    assert!(
        resumed["restored_from"]
            .as_str()
            .is_some_and(|path| path.contains("/dli-gitops/savepoints/dev/agg/")),
        "{resumed}"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_start_resumes_from_the_stop_savepoint() {
    let harness = Harness::start().await;
    harness.sql_job("stream", "");
    harness.apply_converged().await;
    harness.sql_job("stream", "desired_state: stopped\n");
    let stopped = harness.apply_converged().await;
    assert_eq!(class_of(&stopped, "stream"), ActionClass::Stop);
    let live = harness.flink_job("stream").await;
    assert!(live.status.is_stopped());
    harness.assert_in_sync().await;

    harness.sql_job("stream", "desired_state: running\n");
    let started = harness.apply_converged().await;
    assert_eq!(class_of(&started, "stream"), ActionClass::Start);
    let live = harness.flink_job("stream").await;
    assert!(live.status.is_running());
    let runs = harness.runs(live.id).await["runs"]
        .as_array()
        .unwrap()
        .clone();
    let last = runs.last().unwrap();
    assert_eq!(
        last["restored_from"].as_str(),
        runs[runs.len() - 2]["stop_savepoint"].as_str(),
        "the start resumed from the savepoint of the stop"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_restore_imports_that_savepoint_once() {
    let harness = Harness::start().await;
    harness.sql_job("ledger", "");
    harness.apply_converged().await;
    let savepoint = harness.savepoint("manual/ledger-1");
    harness.sql_job(
        "ledger",
        &format!("restore: {{savepoint_path: \"{savepoint}\", nonce: 1}}\n"),
    );
    let restored = harness.apply_converged().await;
    assert_eq!(class_of(&restored, "ledger"), ActionClass::Restore);
    let live = harness.flink_job("ledger").await;
    assert!(live.status.is_running());
    let runs = harness.runs(live.id).await["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        runs.last().unwrap()["restored_from"].as_str(),
        Some(savepoint.as_str())
    );
    // Applied once: the same path and nonce do not restore again.
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_managed_jobs_and_the_guard_keeps_an_empty_checkout_from_deleting_all() {
    let mut harness = Harness::start().await;
    harness.sql_job("keep", "");
    harness.sql_job("gone", "");
    harness.apply_converged().await;

    harness.context_mut().policy.prune = false;
    harness.remove("flink/gone.yaml");
    let report = harness.apply_converged().await;
    assert!(report.results.is_empty());
    assert!(
        report
            .plan
            .warnings
            .iter()
            .any(|w| w.contains("pruning is off"))
    );
    assert!(harness.is_live("gone").await);

    harness.context_mut().policy.prune = true;
    let pruned = harness.apply_converged().await;
    assert_eq!(class_of(&pruned, "gone"), ActionClass::Prune);
    let result = pruned.results.iter().find(|r| r.name == "gone").unwrap();
    assert!(
        !result.backups.is_empty(),
        "pruned jobs are backed up first"
    );
    assert!(!harness.is_live("gone").await);
    harness.assert_in_sync().await;

    harness.remove("flink/keep.yaml");
    let guarded = harness.apply_converged().await;
    assert!(guarded.results.is_empty());
    assert!(
        guarded
            .plan
            .warnings
            .iter()
            .any(|w| w.contains("zero jobs"))
    );
    assert!(
        harness.is_live("keep").await,
        "an empty checkout prunes nothing"
    );

    harness.context_mut().policy.allow_empty_prune = true;
    harness.apply_converged().await;
    assert!(!harness.is_live("keep").await);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlf_job_is_imported_and_its_task_polled() {
    let mut emulator_config = EmulatorConfig::for_tests(PathBuf::new());
    emulator_config.delays.dlf_task_ms = 700;
    let mut harness = Harness::start_with(emulator_config, "prune: false").await;
    harness.write(
        "environments/dev.yaml",
        "variables: {}\ndlf:\n  params: {env: prod}\n  resources: [{name: dev_dws, type: DWS_CONNECTION, replace: prod_dws}]\n  target_status: SAVED\n",
    );
    harness.write(
        "dlf/nightly.yaml",
        "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\nparams: {retention_days: 30}\n",
    );
    harness.write(
        "dlf/nightly.job",
        r#"{"name": "nightly", "processType": "BATCH", "params": [{"name": "env", "value": "dev"}, {"name": "retention_days", "value": "400"}], "nodes": [{"name": "load", "type": "DWSSQL", "properties": [{"name": "statement", "value": "SELECT 1"}, {"name": "connectionName", "value": "dev_dws"}]}], "schedule": {"type": "EXECUTE_ONCE"}}"#,
    );
    let before = harness.stats().await;
    let created = harness.apply_converged().await;
    assert_eq!(class_of(&created, "nightly"), ActionClass::Create);
    let after = harness.stats().await;
    assert_eq!(after.get("DlfImportJob").copied().unwrap_or(0), 1);
    assert!(
        after.get("DlfListSystemTasks").copied().unwrap_or(0)
            > before.get("DlfListSystemTasks").copied().unwrap_or(0) + 1,
        "the task was polled while RUNNING: {after:?}"
    );
    use dli_gitops::apply::LiveService;
    let live = harness.context().live.dlf_job("nightly").await.unwrap();
    let text = live.to_string();
    assert!(
        text.contains(r#"{"name":"env","value":"prod"}"#),
        "environment params: {text}"
    );
    assert!(
        text.contains(r#"{"name":"retention_days","value":"30"}"#),
        "job params: {text}"
    );
    assert!(
        text.contains("prod_dws") && !text.contains("dev_dws"),
        "resources: {text}"
    );
    harness.assert_in_sync().await;

    harness.write(
        "dlf/nightly.job",
        r#"{"name": "nightly", "processType": "BATCH", "params": [{"name": "env", "value": "dev"}], "nodes": [{"name": "load", "type": "DWSSQL", "properties": [{"name": "statement", "value": "SELECT 2"}]}], "schedule": {"type": "EXECUTE_ONCE"}}"#,
    );
    let updated = harness.apply_converged().await;
    assert_eq!(class_of(&updated, "nightly"), ActionClass::UpdateInPlace);
    harness.assert_in_sync().await;

    // Removed from git with pruning on: backed up, then deleted.
    harness.context_mut().policy.prune = true;
    harness.context_mut().policy.allow_empty_prune = true;
    harness.remove("dlf/nightly.yaml");
    harness.remove("dlf/nightly.job");
    let pruned = harness.apply_converged().await;
    assert_eq!(class_of(&pruned, "nightly"), ActionClass::Prune);
    assert!(
        !pruned.results[0].backups.is_empty(),
        "backed up before the delete"
    );
    let listed = harness.context().live.list_dlf_jobs().await.unwrap();
    assert!(
        listed.jobs.is_empty(),
        "the DLF job is gone: {:?}",
        listed.jobs
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_on_one_job_is_recorded_and_the_others_converge() {
    let harness = Harness::start().await;
    harness.sql_job("healthy", "");
    harness.sql_job(
        "broken",
        "restore: {savepoint_path: \"obs://dli-gitops-savepoints/no/such/savepoint/\"}\n",
    );
    let report = harness.reconcile(false).await;
    let broken = report.results.iter().find(|r| r.name == "broken").unwrap();
    assert!(!broken.ok);
    let error = broken.error.as_ref().unwrap();
    assert!(
        error.code.is_some(),
        "the service's code is kept: {error:?}"
    );
    assert!(
        error.message.contains("import_savepoint"),
        "{}",
        error.message
    );
    let healthy = report.results.iter().find(|r| r.name == "healthy").unwrap();
    assert!(healthy.ok);
    assert!(harness.flink_job("healthy").await.status.is_running());

    let journal = harness.context().ledger.journal.state();
    let job = journal
        .job("dev", "broken")
        .expect("the journal knows the job");
    let outcome = job.last_outcome.as_ref().expect("an outcome");
    assert!(!outcome.ok);
    assert_eq!(outcome.error.as_ref().unwrap().code, error.code);
    assert_eq!(
        journal.pending_intents("dev"),
        Vec::new(),
        "every intent has its outcome"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_reimports_the_backups_of_the_last_apply() {
    let harness = Harness::start().await;
    harness.sql_job("agg", "cu_number: 2\n");
    harness.apply_converged().await;
    harness.sql_job("agg", "cu_number: 6\n");
    harness.apply_converged().await;
    assert_eq!(harness.flink_job("agg").await.config.cu_number, 6);

    let report = apply::rollback(harness.context(), None)
        .await
        .expect("rollback runs");
    assert_eq!(report.jobs.len(), 1, "{}", report.render_text());
    assert!(report.jobs[0].error.is_none(), "{}", report.render_text());
    let live = harness.flink_job("agg").await;
    assert_eq!(
        live.config.cu_number, 2,
        "the backup's definition is live again"
    );
    assert!(
        live.status.is_running(),
        "a running job runs again after the rollback"
    );
    // Git still says 6: the next plan converges back.
    assert_eq!(class_of(&harness.plan().await, "agg"), ActionClass::Upgrade);
    harness.apply_converged().await;
    assert_eq!(harness.flink_job("agg").await.config.cu_number, 6);

    // `--to SEQ` picks an older apply: the one that overwrote cu_number 2 with 6.
    let sets = dli_gitops::apply::Ledger::backup_sets(&harness.context().ledger);
    assert_eq!(sets.len(), 2, "two applies took backups: {sets:?}");
    let report = apply::rollback(harness.context(), Some(sets[0].first_seq))
        .await
        .expect("rollback runs");
    assert_eq!(report.plan_id, sets[0].plan_id, "{}", report.render_text());
    assert_eq!(harness.flink_job("agg").await.config.cu_number, 2);
    let error = apply::rollback(harness.context(), Some(u64::MAX)).await;
    assert!(
        matches!(error, Err(apply::ApplyError::Rollback { .. })),
        "{error:?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_adopts_live_jobs_into_a_repository_that_plans_no_change() {
    let harness = Harness::start().await;
    let mut config =
        dli_gitops::model::FlinkJobConfig::defaults_for(dli_gitops::model::JobKind::FlinkSql);
    config.sql_body = Some("SELECT name, COUNT(*) FROM t GROUP BY name".to_string());
    config.queue_name = Some("q1".to_string());
    config.cu_number = 3;
    config
        .runtime_config
        .insert("table.exec.state.ttl".into(), "1h".into());
    config.tags.insert("team".into(), "growth".into());
    let live = &harness.context().live;
    use dli_gitops::apply::LiveService;
    let running = live
        .create_flink_job("adopted-running", &config)
        .await
        .unwrap();
    live.run_flink_job(running, false).await.unwrap();
    live.create_flink_job("adopted-draft", &config)
        .await
        .unwrap();
    let dlf_job = dli_gitops::model::DesiredDlfJob {
        name: "adopted-dlf".into(),
        definition: serde_json::json!({"name": "adopted-dlf", "processType": "BATCH",
            "schedule": {"type": "EXECUTE_ONCE"},
            "nodes": [{"name": "n", "type": "DWSSQL", "properties": [{"name": "statement", "value": "SELECT ${x}"}]}]}),
        scripts: BTreeMap::new(),
        import: Default::default(),
        prune: true,
        desired_state: None,
        source: Default::default(),
        digest: String::new(),
        policy: Default::default(),
    };
    let task = live.import_dlf_job(&dlf_job, "manual").await.unwrap();
    live.wait_dlf_task(&task, Duration::from_secs(10))
        .await
        .unwrap();

    // The repository directory holds only the environment file; export writes beside it.
    std::fs::remove_dir_all(harness.repo()).unwrap();
    let report = apply::export(harness.context(), &harness.repo())
        .await
        .expect("export");
    assert_eq!(report.flink_jobs.len(), 2, "{}", report.render_text());
    assert_eq!(
        report.dlf_jobs,
        vec!["adopted-dlf".to_string()],
        "{}",
        report.render_text()
    );
    assert_eq!(report.adopted.len(), 3);
    let report = dli_gitops::desired::validate(
        &dli_gitops::desired::read_directory(&harness.repo()).unwrap(),
        Some("dev"),
    );
    assert!(report.is_clean(), "{}", report.render_text());
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_job_sets_and_edits_converge_in_one_apply() {
    let harness = Harness::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let names = ["a", "b", "c", "d"];
    for round in 0..5 {
        for name in names {
            let path = format!("flink/{name}.yaml");
            match rng.gen_range(0..5) {
                0 => {
                    if harness.repo().join(&path).exists() {
                        harness.remove(&path);
                    }
                }
                _ => {
                    let mut fields = format!("cu_number: {}\n", rng.gen_range(2..5));
                    if rng.gen_bool(0.5) {
                        fields.push_str(&format!("smn_topic: topic-{}\n", rng.gen_range(0..3)));
                    }
                    if rng.gen_bool(0.3) {
                        fields.push_str("desired_state: stopped\n");
                    }
                    if rng.gen_bool(0.3) {
                        fields.push_str("upgrade_mode: stateless\n");
                    }
                    harness.sql_job(name, &fields);
                }
            }
        }
        let report = harness.reconcile(false).await;
        assert!(
            report.converged(),
            "round {round}: every action succeeds:\n{}\n{}",
            report.plan.render_text(),
            report.render_text()
        );
        let again = harness.plan().await;
        assert!(
            again.plan.is_empty(),
            "round {round}: apply then plan is empty, got:\n{}",
            again.plan.render_text()
        );
    }
    harness.stop().await;
}
