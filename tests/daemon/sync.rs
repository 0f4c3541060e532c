//! The daemon syncing commits: upgrades with savepoints, drift, webhooks, the cost of a pass,
//! logging configuration, and an hour of passes over a converged target.

use super::*;

/// Changes a job's `cu_number` through the DLI API, as someone in the console would: a running
/// job takes only hot fields, so it is stopped, updated and started again.
fn change_behind_the_daemons_back(emulator: &Emulator, name: &str, cu_number: i32) -> i64 {
    runtime().block_on(async {
        let dli = emulator.dli();
        let id = live_job_id(&dli, name).await;
        let running = dli.job_detail(id).await.unwrap().status.is_running();
        if running {
            dli.stop_jobs(&[id], false).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut detail = dli.job_detail(id).await.unwrap();
        while !detail.status.is_stopped() {
            assert!(
                Instant::now() < deadline,
                "the job did not stop: {}",
                detail.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            detail = dli.job_detail(id).await.unwrap();
        }
        detail.config.cu_number = cu_number;
        dli.update_sql_job(id, &detail.config).await.unwrap();
        if running {
            dli.run_jobs(&[id], false).await.unwrap();
            while !dli.job_detail(id).await.unwrap().status.is_running() {
                assert!(Instant::now() < deadline, "the job did not start again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        id
    })
}

fn github_signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn commits_converge_upgrade_with_the_savepoint_and_an_invalid_commit_is_refused() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "first job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "a");

    // A commit converges.
    let status = daemon.wait_for("the first commit to converge", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    assert_eq!(job(&status, "clicks")["sync_status"], "Synced");
    let job_id = job(&status, "clicks")["live_id"].as_i64().unwrap();

    // A second commit upgrades the running job, carrying its state in a savepoint.
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&job_yaml("clicks", 4)))],
    );
    let status = daemon.wait_for("the upgrade to converge", |status| {
        synced_at(status, &second) && job(status, "clicks")["live_status"] == "job_running"
    });
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 4);
    let live_id = job(&status, "clicks")["live_id"].as_i64().unwrap();
    assert_eq!(live_id, job_id, "an import with is_cover keeps the job id");
    let runs = setup.emulator.runs(live_id);
    let runs = runs["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("{runs:#}"));
    assert!(runs.len() >= 2, "{runs:#?}");
    let last = runs.last().unwrap();
    assert_eq!(last["resume_savepoint"], true, "{last:#}");
    assert!(
        last["restored_from"]
            .as_str()
            .is_some_and(|path| path.contains("savepoint")),
        "the upgraded job did not resume from a savepoint: {last:#}"
    );
    let plan = status["last_plan"]["text"].as_str().unwrap_or("");
    assert!(!plan.is_empty());

    // An invalid commit is refused; the previous revision stays.
    let broken = setup.repo.commit(
        "typo",
        &[(
            "flink/clicks.yaml",
            Some(&job_yaml("clicks", 8).replace("cu_number", "cu_nmber")),
        )],
    );
    let status = daemon.wait_for("the invalid commit to be refused", |status| {
        status["rejected_revision"]["revision"] == broken
    });
    assert_eq!(status["sync"]["revision"], second);
    assert_eq!(status["sync"]["applied_revision"], second);
    let errors = status["rejected_revision"]["errors"].to_string();
    assert!(errors.contains("flink/clicks.yaml"), "{errors}");
    assert!(errors.contains("cu_nmber"), "{errors}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 4);

    // The CLI, the page and the metrics say the same.
    let output = Command::new(BINARY)
        .args(["status", "--server", &daemon.base])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("TARGET dev  sync=Synced  health=Healthy"),
        "{text}"
    );
    assert!(text.contains("does not validate"), "{text}");
    assert!(text.contains("clicks"), "{text}");
    let (code, page) = ureq_get(&format!("{}/", daemon.base)).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("cu_nmber"));
    let (_, metrics) = ureq_get(&format!("{}/metrics", daemon.base)).unwrap();
    for family in [
        "dli_gitops_reconcile_duration_seconds_count{target=\"dev\"}",
        "dli_gitops_sync_total{target=\"dev\",result=\"succeeded\"}",
        "dli_gitops_sync_total{target=\"dev\",result=\"invalid_revision\"} 1",
        "dli_gitops_jobs{target=\"dev\",sync_status=\"Synced\",health=\"Healthy\"} 1",
        "dli_gitops_git_fetches_total{source=\"jobs\",result=\"succeeded\"}",
        "dli_gitops_api_requests_total{target=\"dev\",service=\"dli\",operation=\"list_jobs\",status=\"200\"}",
        "dli_gitops_journal_records_total{kind=\"intent\"}",
        "dli_gitops_journal_records_total{kind=\"outcome\"}",
    ] {
        assert!(metrics.contains(family), "missing {family} in:\n{metrics}");
    }
    assert!(daemon.stop().success());
}

#[test]
fn drift_is_reported_without_self_heal_and_corrected_with_it() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "report");
    daemon.wait_for("convergence", |status| synced_at(status, &first));

    change_behind_the_daemons_back(&setup.emulator, "clicks", 6);
    let status = daemon.wait_for("the drift to be reported", |status| {
        status["sync"]["status"] == "OutOfSync"
    });
    assert_eq!(job(&status, "clicks")["sync_status"], "OutOfSync");
    assert_eq!(job(&status, "clicks")["action"], "upgrade");
    // Several resyncs later it is still reported, not corrected.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 6);
    assert_eq!(daemon.target()["sync"]["status"], "OutOfSync");
    assert!(daemon.stop().success());

    let daemon = setup.start_daemon(true, "1s", "heal");
    daemon.wait_for("self-heal", |status| synced_at(status, &first));
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 2);
    assert!(daemon.stop().success());
}

#[test]
fn a_signed_webhook_fetches_at_once_and_an_unsigned_one_is_rejected() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    // Polling once an hour: only the webhook can bring the next commit in time.
    let daemon = setup.start_daemon(false, "1h", "hook");
    daemon.wait_for("convergence", |status| synced_at(status, &first));
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&job_yaml("clicks", 3)))],
    );
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "after": second,
        "repository": {"clone_url": setup.repo.path.display().to_string()},
    })
    .to_string();
    let hook = format!("{}/api/v1/hooks/git", daemon.base);

    let (code, answer) = http("POST", &hook, &[("X-GitHub-Event", "push".into())], &body).unwrap();
    assert_eq!(code, 401, "{answer}");
    let (code, _) = http(
        "POST",
        &hook,
        &[
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", "sha256=00".into()),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.target()["sync"]["revision"], first);

    let (code, answer) = http(
        "POST",
        &hook,
        &[
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", github_signature(&body)),
            ("Content-Type", "application/json".into()),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(code, 202, "{answer}");
    daemon.wait_for("the pushed commit to converge", |status| {
        synced_at(status, &second)
    });
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 3);

    // A manual sync needs the token.
    let sync = format!("{}/api/v1/targets/dev/sync", daemon.base);
    let (code, _) = http("POST", &sync, &[], "").unwrap();
    assert_eq!(code, 401);
    let (code, _) = http(
        "POST",
        &sync,
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        "",
    )
    .unwrap();
    assert_eq!(code, 202);
    let (_, metrics) = ureq_get(&format!("{}/metrics", daemon.base)).unwrap();
    assert!(
        metrics.contains(
            "dli_gitops_webhook_requests_total{provider=\"github\",result=\"rejected\"} 2"
        )
    );
    assert!(
        metrics.contains(
            "dli_gitops_webhook_requests_total{provider=\"github\",result=\"accepted\"} 1"
        )
    );
    assert!(daemon.stop().success());
}

/// Reads, at a quiet moment (no pass running, none finishing in between), the number of passes
/// the daemon has finished (its `/metrics`) and the emulator's call counters.
fn quiet_counts(daemon: &Daemon, emulator: &Emulator) -> (u64, Value) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let before = daemon.target();
        let (_, stats) = get_json(&format!("{}/_emulator/v1/stats", emulator.url("dli")));
        let (_, metrics) = ureq_get(&format!("{}/metrics", daemon.base)).unwrap();
        let after = daemon.target();
        let passes = metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix("dli_gitops_reconcile_duration_seconds_count{target=\"dev\"} ")
            })
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if before["operation"]["phase"] != "Running" && before["operation"] == after["operation"] {
            return (passes, stats);
        }
        assert!(Instant::now() < deadline, "the daemon was never idle");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(stats: &Value, operation: &str) -> u64 {
    stats["operations"][operation].as_u64().unwrap_or(0)
}

#[test]
fn a_pass_over_a_synced_target_costs_one_list_call() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    // self_heal off: each resync (every 10 s, the shortest allowed) is a report-only pass.
    let config = setup.config_with(false, "1h", "10s", "");
    let daemon = Daemon::start(setup.dir.path(), &config, "calls");
    daemon.wait_for("convergence", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    let (passes_before, stats_before) = quiet_counts(&daemon, &setup.emulator);

    // A report-only pass (a resync), then a pass that may apply (a manual sync) with nothing to do.
    let deadline = Instant::now() + Duration::from_secs(40);
    while quiet_counts(&daemon, &setup.emulator).0 == passes_before {
        assert!(Instant::now() < deadline, "no resync pass ran");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/targets/dev/sync", daemon.base),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        "",
    )
    .unwrap();
    assert!(
        (200..300).contains(&code),
        "manual sync answered {code}: {body}"
    );
    daemon.wait_for("the manual sync to run", |status| {
        status["operation"]["mode"] == "apply"
            && status["operation"]["phase"] == "Succeeded"
            && status["operation"]["triggers"]
                .as_array()
                .is_some_and(|triggers| triggers.iter().any(|t| t == "manual"))
    });
    let (passes_after, stats_after) = quiet_counts(&daemon, &setup.emulator);

    let passes = passes_after - passes_before;
    assert!(passes >= 2, "only {passes} pass(es) ran");
    let lists = count(&stats_after, "ListFlinkJobs") - count(&stats_before, "ListFlinkJobs");
    assert_eq!(
        lists, passes,
        "{passes} passes over an unchanged target made {lists} list calls; before: {stats_before:#}, after: {stats_after:#}"
    );
    let total = stats_after["total"].as_u64().unwrap() - stats_before["total"].as_u64().unwrap();
    assert_eq!(
        total, passes,
        "an unchanged target costs one call per pass and nothing else; before: {stats_before:#}, after: {stats_after:#}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn the_configs_logging_block_applies_unless_the_flag_or_rust_log_say_otherwise() {
    let setup = Setup::new(300);
    setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let config = setup.config_with(
        false,
        "1h",
        "1m",
        "logging: {format: json, level: \"warn,dli_gitops::daemon=debug\"}\n",
    );
    let is_json = |line: &str| serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object());

    // The config alone: JSON lines, its filter (debug events of the daemon, no info of others).
    let daemon = Daemon::start_with(setup.dir.path(), &config, "config", &[], None);
    daemon.wait_for("a pass to finish", |status| {
        status["operation"]["finished_at"].is_string()
    });
    let status = daemon.stop();
    assert!(status.success());
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-config.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|line| is_json(line)), "not JSON:\n{log}");
    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        events.iter().any(|event| event["level"] == "DEBUG"
            && event["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("dli_gitops::daemon"))),
        "the config's debug filter was not applied:\n{log}"
    );
    assert!(
        !events.iter().any(|event| event["level"] == "INFO"
            && !event["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("dli_gitops::daemon"))),
        "info events outside the daemon passed a `warn` filter:\n{log}"
    );

    // --log-format text and RUST_LOG win.
    let daemon = Daemon::start_with(
        setup.dir.path(),
        &config,
        "flag",
        &["--log-format", "text"],
        Some("info"),
    );
    assert!(daemon.stop().success());
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-flag.log")).unwrap();
    assert!(log.contains("Logging set up."), "{log}");
    assert!(
        log.lines().all(|line| !is_json(line)),
        "JSON despite --log-format text:\n{log}"
    );
    assert!(
        !log.contains("DEBUG"),
        "RUST_LOG=info did not win over the config:\n{log}"
    );
    assert!(log.contains(" INFO "), "{log}");
}

/// The stand-in answers as the documented service does (service-filled fields, BATCH and
/// REAL_TIME DLF jobs): once converged over SQL (v1 and v2 resources), a Jar job with
/// `feature`, `flink_version` and `queue_name` unset, and DLF jobs of both types, `plan
/// --detailed-exitcode` exits 0 and a daemon with `self_heal` makes no mutating call over
/// twelve applying passes (an hour of passes at the default five-minute resync).
#[test]
fn a_converged_daemon_makes_no_mutating_call_for_an_hour_of_passes() {
    let setup = Setup::new(300);
    let dlf_job = |name: &str, process_type: &str| {
        format!(
            r#"{{"name": "{name}", "processType": "{process_type}", "nodes": [{{"name": "n", "type": "DWSSQL", "properties": [{{"name": "statement", "value": "SELECT 1"}}]}}], "schedule": {{"type": "CRON", "cron": {{"expression": "0 0 2 * * ?"}}}}}}"#
        )
    };
    let batch = dlf_job("nightly", "BATCH");
    let streaming = dlf_job("stream-load", "REAL_TIME");
    let jar = "kind: FlinkJarJob\nname: fraud\nentrypoint: obs://dli-gitops-staging/app.jar\nmain_class: com.example.Main\ncu_number: 2\ndesired_state: running\n";
    let v2 = "kind: FlinkSqlJob\nname: sessions\nqueue_name: ${flink_queue}\nsql_body: \"SELECT 2\"\nflink_version: \"1.15\"\nresource_config_version: v2\nresource_config: {max_slot: 2, parallel_number: 2, jobmanager_resource_spec: {cpu: 1, memory: 4G}, taskmanager_resource_spec: {cpu: 1, memory: 4G}}\ndesired_state: running\n";
    let revision = setup.repo.commit(
        "jobs of every kind",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("flink/fraud.yaml", Some(jar)),
            ("flink/sessions.yaml", Some(v2)),
            (
                "dlf/nightly.yaml",
                Some("kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\n"),
            ),
            ("dlf/nightly.job", Some(&batch)),
            (
                "dlf/stream-load.yaml",
                Some("kind: DlfJob\nname: stream-load\ndefinition_file: stream-load.job\n"),
            ),
            ("dlf/stream-load.job", Some(&streaming)),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let config = setup.config_with(true, "1h", "1h", "");
    let daemon = Daemon::start(setup.dir.path(), &config, "quiet-hour");
    daemon.wait_for("convergence over every kind of job", |status| {
        synced_at(status, &revision)
            && ["clicks", "fraud", "sessions"]
                .iter()
                .all(|name| job(status, name)["live_status"] == "job_running")
    });
    let (passes_before, stats_before) = quiet_counts(&daemon, &setup.emulator);
    let mut passes = 0;
    while passes < 12 {
        let (code, body) = http(
            "POST",
            &format!("{}/api/v1/targets/dev/sync", daemon.base),
            &[("Authorization", format!("Bearer {API_TOKEN}"))],
            "",
        )
        .unwrap();
        assert!(
            (200..300).contains(&code),
            "manual sync answered {code}: {body}"
        );
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let (done, _) = quiet_counts(&daemon, &setup.emulator);
            if done > passes_before + passes {
                passes = done - passes_before;
                break;
            }
            assert!(Instant::now() < deadline, "the manual sync never ran");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (_, stats_after) = quiet_counts(&daemon, &setup.emulator);
    let reads = ["List", "Show", "DlfList", "DlfShow", "Iam"];
    let mutating: Vec<(String, u64)> = stats_after["operations"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(operation, _)| !reads.iter().any(|read| operation.starts_with(read)))
        .filter_map(|(operation, count)| {
            let delta = count.as_u64().unwrap_or(0) - count_of(&stats_before, operation);
            (delta > 0).then(|| (operation.clone(), delta))
        })
        .collect();
    assert_eq!(
        mutating,
        Vec::<(String, u64)>::new(),
        "{passes} applying passes over a converged target changed something; before: {stats_before:#}, after: {stats_after:#}"
    );
    let dlf_lists = count_of(&stats_after, "DlfListJobs") - count_of(&stats_before, "DlfListJobs");
    assert_eq!(
        dlf_lists,
        2 * passes,
        "one DLF list per job type (BATCH, REAL_TIME) per pass"
    );
    assert!(daemon.stop().success());
    let plan = std::process::Command::new(BINARY)
        .args(["plan", "--detailed-exitcode", "--target", "dev", "--config"])
        .arg(&config)
        .env("E2E_AK", ACCESS_KEY)
        .env("E2E_SK", SECRET_KEY)
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after converging: {}{}",
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );
}

fn count_of(stats: &Value, operation: &str) -> u64 {
    stats["operations"][operation].as_u64().unwrap_or(0)
}
