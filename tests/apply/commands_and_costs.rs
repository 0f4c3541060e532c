//! The CLI's plan/apply, recovery of a crashed pass, the calls a pass costs, injected faults,
//! replacement of a job, a restore from another target and the cold upgrade's call budget.

use super::*;

/// The commands end to end through the binary, against an `embedded` target (the emulator runs
/// inside each command, with its state under `state_dir/emulator/`).
#[test]
fn the_cli_plans_refuses_without_a_terminal_applies_and_plans_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("environments")).unwrap();
    std::fs::create_dir_all(repo.join("flink")).unwrap();
    std::fs::write(
        repo.join("environments/dev.yaml"),
        "variables: {topic: alerts}\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("flink/clicks.yaml"),
        "kind: FlinkSqlJob\nname: clicks\nqueue_name: q1\nsql_body: \"SELECT 1 AS v;\"\nsmn_topic: ${topic}\n",
    )
    .unwrap();
    let config = dir.path().join("dli-gitops.yaml");
    std::fs::write(
        &config,
        "state_dir: state\nsources:\n  jobs:\n    path: repo\ntargets:\n  - name: dev\n    source: jobs\n    endpoints: {dli: embedded, dlf: embedded, obs: embedded}\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .args(["--target", "dev"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the binary runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "changes planned: {stdout}{stderr}");
    assert!(stdout.contains("+ create FlinkSqlJob clicks"), "{stdout}");
    assert!(stdout.contains("Plan: 1 to create,"), "{stdout}");

    let (code, _, stderr) = run(&["apply"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--auto-approve"), "{stderr}");

    let (code, stdout, stderr) = run(&["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("Apply complete: 1 action(s), 1 succeeded, 0 failed."),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(&["plan", "--detailed-exitcode", "--json"]);
    assert_eq!(code, Some(0), "no changes after apply: {stdout}{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("the plan is JSON");
    assert_eq!(plan["actions"][0]["class"], "none");
    assert_eq!(plan["summary"]["update"], 0, "the summary counts: {plan}");

    // A person at a terminal answers the question; only `yes` applies.
    std::fs::write(
        repo.join("environments/dev.yaml"),
        "variables: {topic: pager}\n",
    )
    .unwrap();
    let command = dli_gitops::pass::ApplyCommand {
        config: config.clone(),
        target: "dev".into(),
        auto_approve: false,
        select: Vec::new(),
    };
    let mut output = Vec::new();
    let refused = dli_gitops::pass::apply_command(
        &command,
        &mut output,
        dli_gitops::pass::Prompt {
            input: &mut "no\n".as_bytes(),
            is_terminal: true,
        },
    );
    assert!(
        matches!(
            refused,
            Err(dli_gitops::apply::ApplyError::NotApproved { .. })
        ),
        "{refused:?}"
    );
    assert!(String::from_utf8_lossy(&output).contains("Only 'yes' will be accepted"));
    let mut output = Vec::new();
    let applied = dli_gitops::pass::apply_command(
        &command,
        &mut output,
        dli_gitops::pass::Prompt {
            input: &mut "yes\n".as_bytes(),
            is_terminal: true,
        },
    );
    let output = String::from_utf8_lossy(&output);
    assert_eq!(applied.expect("applied"), 0, "{output}");
    assert!(output.contains("~ update FlinkSqlJob clicks"), "{output}");
    let (code, stdout, stderr) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // The in-place update backed the job up first: rolling back restores the old topic.
    // Without a terminal and without --auto-approve, rollback asks nobody and changes nothing.
    let (code, stdout, stderr) = run(&["rollback"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("--auto-approve"), "{stderr}");
    assert!(
        stdout.contains("Rollback of target `dev`"),
        "the preview: {stdout}"
    );
    let (code, stdout, stderr) = run(&["rollback", "--list"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("clicks: obs://"), "{stdout}");
    // A seq no apply's backups span is refused with the list, never another set.
    let (code, stdout, stderr) = run(&["rollback", "--to", "1", "--auto-approve"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("no apply's backups span journal seq 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("clicks: obs://"),
        "the list of sets: {stderr}"
    );
    let (code, stdout, stderr) = run(&["rollback", "--auto-approve"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("Rollback complete: 1 job(s), 0 failed."),
        "{stdout}"
    );

    let adopted = dir.path().join("adopted");
    let (code, stdout, stderr) = run(&["export", "--out", adopted.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Exported 1 Flink job(s)"), "{stdout}");
    let exported = std::fs::read_to_string(adopted.join("flink/clicks.yaml")).unwrap();
    assert!(
        exported.contains("smn_topic: alerts"),
        "the rolled-back value: {exported}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_left_by_a_crash_is_resolved_by_observing_first() {
    use dli_gitops::journal::{Intent, RecordBody};
    let harness = Harness::start().await;
    harness.sql_job("survivor", "");
    harness.apply_converged().await;
    let journal = harness.context().ledger.journal.clone();
    // A pass announced an upgrade and died before writing its outcome.
    journal
        .append_async(
            "dev",
            RecordBody::Intent(Intent {
                action_id: "crashed-upgrade".into(),
                job: "survivor".into(),
                action: "upgrade".into(),
                plan_id: Some("0123456789ab".into()),
                detail: serde_json::json!({"steps": [{"step": "stop", "trigger_savepoint": true}]}),
                extra: Default::default(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(journal.pending_intents("dev").len(), 1);

    let report = harness.reconcile(false).await;
    assert_eq!(report.resolved.len(), 1, "{}", report.render_text());
    assert!(
        report.resolved[0].found.contains("job_running"),
        "{:?}",
        report.resolved
    );
    assert!(journal.pending_intents("dev").is_empty());
    let state = journal.state();
    let outcome = state
        .job("dev", "survivor")
        .unwrap()
        .last_outcome
        .clone()
        .unwrap();
    assert_eq!(outcome.action_id, "crashed-upgrade");
    assert_eq!(outcome.error.unwrap().code.as_deref(), Some("INTERRUPTED"));
    assert!(report.plan.is_empty(), "{}", report.plan.render_text());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observing_an_unchanged_target_costs_one_call_per_list_page() {
    use dli_gitops::apply::LiveService;
    let harness = Harness::start().await;
    let mut config =
        dli_gitops::model::FlinkJobConfig::defaults_for(dli_gitops::model::JobKind::FlinkSql);
    config.sql_body = Some("SELECT 1".to_string());
    for number in 0..250 {
        harness
            .context()
            .live
            .create_flink_job(&format!("job-{number:03}"), &config)
            .await
            .unwrap();
    }
    let (observed, first) = apply::observe(harness.context()).await.unwrap();
    assert_eq!(observed.flink.len(), 250);
    assert_eq!(first.flink_list_calls, 3);
    // Cold: configurations come from the listing (`show_detail`), tags from one bulk read.
    assert_eq!(first.flink_detail_calls, 0);
    assert_eq!(first.flink_tag_calls, 1);

    let before = harness.stats().await;
    let (observed, second) = apply::observe(harness.context()).await.unwrap();
    let after = harness.stats().await;
    assert_eq!(observed.flink.len(), 250);
    assert_eq!(
        (
            second.flink_list_calls,
            second.flink_detail_calls,
            second.recorded
        ),
        (3, 0, 0)
    );
    let delta = |operation: &str| {
        after.get(operation).copied().unwrap_or(0) - before.get(operation).copied().unwrap_or(0)
    };
    assert_eq!(delta("ListFlinkJobs"), 3, "⌈250/100⌉ list calls");
    assert_eq!(
        delta("ShowFlinkJob"),
        0,
        "no detail call for an unchanged job"
    );
    assert_eq!(
        after.values().sum::<u64>() - before.values().sum::<u64>(),
        3
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_injected_faults_repeated_passes_converge_and_every_intent_is_closed() {
    let mut emulator_config = EmulatorConfig::for_tests(PathBuf::new());
    emulator_config.faults.error_rate = 0.25;
    emulator_config.faults.drop_rate = 0.1;
    emulator_config.faults.seed = 7;
    let harness = Harness::start_with(emulator_config, "prune: true").await;
    for name in ["f1", "f2", "f3"] {
        harness.sql_job(name, "cu_number: 2\n");
    }
    let troubled_passes = std::cell::Cell::new(0);
    let converge = |edit: Option<(&'static str, &'static str)>| {
        if let Some((name, fields)) = edit {
            harness.sql_job(name, fields);
        }
        let troubled_passes = &troubled_passes;
        let harness = &harness;
        async move {
            for _attempt in 0..25 {
                let context = harness.context();
                let Ok((desired, _)) = dli_gitops::pass::desired_for(&context, None).await else {
                    continue;
                };
                let options = ApplyOptions {
                    dry_run: false,
                    ..context.options.clone()
                };
                match apply::reconcile_once(context, &desired, &options).await {
                    Ok(report) if report.plan.is_empty() => return true,
                    Ok(report) if report.converged() => {}
                    _ => troubled_passes.set(troubled_passes.get() + 1),
                }
            }
            false
        }
    };
    assert!(
        converge(None).await,
        "the jobs converge despite 5xx and dropped connections"
    );
    assert!(
        converge(Some(("f2", "cu_number: 3\n"))).await,
        "an upgrade converges too"
    );
    assert!(
        troubled_passes.get() > 0,
        "the injected faults made at least one pass fail (else this test proves nothing)"
    );
    let journal = harness.context().ledger.journal.state();
    assert!(
        journal.pending_intents("dev").is_empty(),
        "no intent is left open"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_created_and_updated_through_json_calls_and_state_through_savepoint_import() {
    let harness = Harness::start().await;
    harness.sql_job("via-api", "cu_number: 2\n");
    let before = harness.stats().await;
    harness.apply_converged().await;
    harness.sql_job("via-api", "cu_number: 5\n");
    let upgraded = harness.apply_converged().await;
    assert_eq!(class_of(&upgraded, "via-api"), ActionClass::Upgrade);
    let after = harness.stats().await;
    let calls = mutating(&before, &after);
    assert_eq!(calls.get("CreateFlinkSqlJob"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("UpdateFlinkSqlJob"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get("ImportFlinkJobs"),
        None,
        "no job definition is ever imported from a zip dli-gitops wrote: {calls:?}"
    );
    assert_eq!(
        calls.get("ImportFlinkJobSavepoint"),
        Some(&1),
        "the stop savepoint is imported before the start: {calls:?}"
    );
    let live = harness.flink_job("via-api").await;
    assert_eq!(live.config.cu_number, 5);
    let runs = harness.runs(live.id).await["runs"]
        .as_array()
        .unwrap()
        .clone();
    let last = runs.last().unwrap();
    assert_eq!(
        last["restored_savepoint_id"],
        runs[runs.len() - 2]["stop_savepoint_id"],
        "the job resumed from (our copy of) the stop savepoint"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_changes_from_sql_to_jar_is_replaced() {
    let harness = Harness::start().await;
    harness.sql_job("swap", "");
    harness.apply_converged().await;
    let sql_id = harness.flink_job("swap").await.id;
    harness.write(
        "flink/swap.yaml",
        "kind: FlinkJarJob\nname: swap\nentrypoint: obs://dli-gitops-staging/app.jar\nmain_class: com.example.Main\n",
    );
    let replaced = harness.apply_converged().await;
    assert_eq!(class_of(&replaced, "swap"), ActionClass::Upgrade);
    let live = harness.flink_job("swap").await;
    assert_eq!(live.config.kind(), dli_gitops::model::JobKind::FlinkJar);
    assert_ne!(live.id, sql_id, "a new job replaced the old one");
    assert!(live.status.is_running());
    harness.assert_in_sync().await;
    harness.stop().await;
}

/// Promotion: a job in `prod` starts from the savepoint its copy in `dev` took, found through the
/// shared journal (`restore: {from_target: dev}` in prod's overrides). Two projects on one
/// emulator, two targets over one journal, as a daemon runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_from_another_target_uses_that_targets_latest_savepoint() {
    const PROD_PROJECT: &str = "1f2e3d4c5b6a79808192a3b4c5d6e7f8";
    let dir = tempfile::tempdir().unwrap();
    let mut emulator_config = EmulatorConfig::for_tests(dir.path().join("emulator"));
    emulator_config
        .credentials
        .push(dli_gitops::emulator::EmulatorCredential {
            access_key: "PRODACCESSKEY".into(),
            secret_key: "prod-secret-key".into(),
            project_id: PROD_PROJECT.into(),
        });
    let emulator = Emulator::start(emulator_config).await.unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("environments")).unwrap();
    std::fs::create_dir_all(repo.join("flink")).unwrap();
    std::fs::write(repo.join("environments/dev.yaml"), "variables: {}\n").unwrap();
    std::fs::write(
        repo.join("environments/prod.yaml"),
        "variables: {}\noverrides:\n  carried: {restore: {from_target: dev}}\n",
    )
    .unwrap();
    let job = |state: &str| {
        std::fs::write(
            repo.join("flink/carried.yaml"),
            format!(
                "kind: FlinkSqlJob\nname: carried\nqueue_name: q1\nsql_body: \"SELECT 1\"\ndesired_state: {state}\n"
            ),
        )
        .unwrap()
    };
    for (file, secret) in [
        ("dev-ak", DEV_ACCESS_KEY),
        ("dev-sk", DEV_SECRET_KEY),
        ("prod-ak", "PRODACCESSKEY"),
        ("prod-sk", "prod-secret-key"),
    ] {
        std::fs::write(dir.path().join(file), secret).unwrap();
    }
    let target = |name: &str, project: &str| {
        format!(
            "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {project}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: {name}-ak, secret_key_file: {name}-sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n    rate_limit: {{requests_per_second: 100000, burst: 100000}}\n",
            api = emulator.dli_url(),
            s3 = emulator.s3_url()
        )
    };
    let config_path = dir.path().join("dli-gitops.yaml");
    std::fs::write(
        &config_path,
        format!(
            "state_dir: state\nsources:\n  jobs:\n    path: repo\ntargets:\n{}{}",
            target("dev", DEV_PROJECT_ID),
            target("prod", PROD_PROJECT)
        ),
    )
    .unwrap();
    let config = Config::load(&config_path).expect("config loads");
    let (journal, _) = dli_gitops::journal::Journal::open(
        &config.state_dir,
        dli_gitops::journal::JournalOptions::default(),
    )
    .unwrap();
    let mut dev = TargetContext::with_shared(&config, "dev", journal.clone(), None)
        .await
        .unwrap();
    let mut prod = TargetContext::with_shared(&config, "prod", journal.clone(), None)
        .await
        .unwrap();
    dev.options.poll_interval = Duration::from_millis(5);
    prod.options.poll_interval = Duration::from_millis(5);
    job("running");
    converge(&dev).await;
    job("stopped");
    let stopped = converge(&dev).await;
    let dev_savepoint = stopped.results[0]
        .savepoint_path
        .clone()
        .expect("dev's stop savepoint");

    job("running");
    let promoted = converge(&prod).await;
    assert_eq!(class_of(&promoted, "carried"), ActionClass::Create);
    let (observed, _) = apply::observe(&prod).await.unwrap();
    let prod_job = observed
        .flink
        .iter()
        .find(|job| job.name == "carried")
        .unwrap();
    let runs: Value = reqwest::get(format!(
        "{}/_emulator/v1/{PROD_PROJECT}/jobs/{}/runs",
        emulator.dli_url(),
        prod_job.id
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        runs["runs"][0]["restored_from"].as_str(),
        Some(dev_savepoint.as_str()),
        "prod started from dev's savepoint: {runs}"
    );
    let (desired, _) = dli_gitops::pass::desired_for(&prod, None).await.unwrap();
    let again = apply::reconcile_once(
        &prod,
        &desired,
        &ApplyOptions {
            dry_run: true,
            ..prod.options.clone()
        },
    )
    .await
    .unwrap();
    assert!(
        again.plan.is_empty(),
        "the restore is applied once: {}",
        again.plan.render_text()
    );
    dev.shutdown().await;
    prod.shutdown().await;
    emulator.shutdown().await;
}

/// The daemon runs passes on spawned tasks: the futures must be `Send`.
#[allow(dead_code)]
fn passes_can_run_on_spawned_tasks(
    context: &'static TargetContext,
    desired: &'static dli_gitops::model::DesiredJobs,
) {
    fn spawnable<T: Send + 'static>(_: T) {}
    spawnable(apply::reconcile_once(context, desired, &context.options));
    spawnable(apply::observe(context));
    spawnable(apply::rollback(context, None));
    spawnable(dli_gitops::pass::desired_for(context, None));
    spawnable(apply::export(context, std::path::Path::new("/nonexistent")));
}

/// Every call one cold upgrade of a running SQL job makes (reads included), counted by the
/// emulator: the figure BENCHMARKS.md reports as "calls per cold change".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_upgrade_makes_a_bounded_set_of_calls() {
    let harness = Harness::start().await;
    harness.sql_job("cold", "cu_number: 2\n");
    harness.apply_converged().await;
    harness.sql_job("cold", "cu_number: 3\n");
    let before = harness.stats().await;
    let upgraded = harness.apply_converged().await;
    assert_eq!(class_of(&upgraded, "cold"), ActionClass::Upgrade);
    let after = harness.stats().await;
    let calls: BTreeMap<String, u64> = after
        .iter()
        .filter_map(|(operation, count)| {
            let delta = count - before.get(operation).copied().unwrap_or(0);
            (delta > 0).then(|| (operation.clone(), delta))
        })
        .collect();
    let total: u64 = calls.values().sum();
    eprintln!("one cold upgrade: {total} calls: {calls:?}");
    // Written with the update call, state carried by one savepoint import, nothing imported
    // from a zip; a savepoint triggered (and copied) before the stop; 18 calls on this emulator
    // (BENCHMARKS.md).
    for (operation, expected) in [
        ("ExecuteFlinkJobSavepoint", 1),
        ("UpdateFlinkSqlJob", 1),
        ("ImportFlinkJobSavepoint", 1),
        ("BatchStopFlinkJobs", 1),
        ("BatchRunFlinkJobs", 1),
        ("ExportFlinkJobs", 1),
    ] {
        assert_eq!(
            calls.get(operation),
            Some(&expected),
            "{operation}: {calls:?}"
        );
    }
    assert_eq!(calls.get("ImportFlinkJobs"), None, "{calls:?}");
    assert!(total <= 18, "{total} calls: {calls:?}");
    harness.stop().await;
}
