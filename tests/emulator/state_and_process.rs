//! The emulator's state and process: restarts, corruption, configured delays and faults, the
//! CLI and SIGTERM, a killed emulator's change log.

use super::*;

#[tokio::test]
async fn state_survives_a_restart_and_corruption_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(temp.path()).await;
    let client = Client::dev(&handle);
    let job_id = create(&client, sql_job("durable")).await;
    client
        .call(
            Method::POST,
            "streaming/jobs/run",
            &[],
            Some(json!({"job_ids": [job_id]})),
        )
        .await;
    handle.shutdown().await;

    let handle = start(temp.path()).await;
    let client = Client::dev(&handle);
    let job = detail(&client, job_id).await;
    assert_eq!(job["name"], "durable");
    assert_eq!(job["status"], "job_running");
    let second = create(&client, sql_job("second")).await;
    assert!(second > job_id, "ids keep increasing after a restart");
    handle.shutdown().await;

    std::fs::write(
        temp.path().join("state.json"),
        b"{\"format_version\": 1, \"oops\"",
    )
    .unwrap();
    let refused = Emulator::start(EmulatorConfig::for_tests(temp.path().to_path_buf())).await;
    assert!(refused.is_err());
    let message = refused
        .err()
        .map(|error| format!("{error} / {:?}", std::error::Error::source(&error)))
        .unwrap();
    assert!(message.contains("state.json"), "{message}");
}

#[tokio::test]
async fn statuses_follow_the_configured_delays() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.delays = EmulatorDelays {
        submit_ms: 300,
        cancel_ms: 300,
        savepoint_ms: 300,
        dlf_task_ms: 0,
    };
    let handle = start_with(config).await;
    let client = Client::dev(&handle);
    let job_id = create(&client, sql_job("slow")).await;
    let orphan = create(
        &client,
        json!({"name": "no-queue", "run_mode": "exclusive_cluster"}),
    )
    .await;
    client
        .call(
            Method::POST,
            "streaming/jobs/run",
            &[],
            Some(json!({"job_ids": [job_id, orphan]})),
        )
        .await;
    assert_eq!(detail(&client, job_id).await["status"], "job_submitting");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(detail(&client, job_id).await["status"], "job_running");
    let failed = detail(&client, orphan).await;
    assert_eq!(failed["status"], "job_submit_fail");
    assert!(
        failed["status_desc"]
            .as_str()
            .unwrap()
            .contains("DLI.13024")
    );
    client
        .call(
            Method::POST,
            "streaming/jobs/stop",
            &[],
            Some(json!({"job_ids": [job_id], "trigger_savepoint": true})),
        )
        .await;
    assert_eq!(detail(&client, job_id).await["status"], "job_savepointing");
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_eq!(detail(&client, job_id).await["status"], "job_canceling");
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_eq!(
        detail(&client, job_id).await["status"],
        "job_cancel_success"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn faults_are_injected_from_the_config() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().join("errors"));
    config.faults = EmulatorFaults {
        error_rate: 1.0,
        ..EmulatorFaults::default()
    };
    let handle = start_with(config).await;
    let answer = Client::dev(&handle)
        .call(Method::GET, "streaming/jobs", &[], None)
        .await;
    assert_error(&answer, StatusCode::INTERNAL_SERVER_ERROR, "DLI.0999");
    let stats = reqwest::get(format!("{}/_emulator/v1/stats", handle.dli_url()))
        .await
        .unwrap();
    assert_eq!(
        stats.status(),
        StatusCode::OK,
        "introspection is never faulted"
    );
    handle.shutdown().await;

    let mut config = EmulatorConfig::for_tests(temp.path().join("throttle"));
    config.faults = EmulatorFaults {
        throttle_rate: 1.0,
        retry_after_seconds: 7,
        latency_ms: 150,
        ..EmulatorFaults::default()
    };
    let handle = start_with(config).await;
    let started = std::time::Instant::now();
    let answer = Client::dev(&handle)
        .call(Method::GET, "streaming/jobs", &[], None)
        .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "APIG.0308");
    assert_eq!(answer.headers["retry-after"], "7");
    assert!(answer.body["request_id"].is_string());
    handle.shutdown().await;

    let mut config = EmulatorConfig::for_tests(temp.path().join("drop"));
    config.faults = EmulatorFaults {
        drop_rate: 1.0,
        ..EmulatorFaults::default()
    };
    let handle = start_with(config).await;
    let dropped = Client::dev(&handle)
        .call_raw(Method::GET, "streaming/jobs", &[], None, None)
        .await;
    assert!(
        dropped.is_err(),
        "the connection is dropped without a complete response"
    );
    handle.shutdown().await;
}

#[test]
fn the_cli_prints_its_endpoints_and_stops_on_sigterm() {
    use std::io::BufRead;
    let temp = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_dli-gitops");
    let mut child = std::process::Command::new(binary)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--fault-seed",
            "3",
            "--data",
        ])
        .arg(temp.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoints: Value = serde_json::from_str(&line).unwrap();
    for key in ["dli", "dlf", "iam", "s3"] {
        assert!(
            endpoints[key]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:"),
            "{line}"
        );
    }
    let stats_url = format!("{}/_emulator/v1/stats", endpoints["dli"].as_str().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stats: Value =
        runtime.block_on(async { reqwest::get(stats_url).await.unwrap().json().await.unwrap() });
    assert_eq!(stats["total"], 0);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success(), "exit 0 after SIGTERM");
    assert!(temp.path().join("data/obs/dli-gitops-savepoints").is_dir());

    let refused = std::process::Command::new(binary)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--fault-error-rate",
            "2",
            "--data",
        ])
        .arg(temp.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("error_rate"));
}

/// Starts the CLI on `data_dir` and returns the child and its DLI base URL.
fn spawn_cli(data_dir: &Path, config: &Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .arg("--data")
        .arg(data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoints: Value = serde_json::from_str(&line).unwrap();
    (child, endpoints["dli"].as_str().unwrap().to_string())
}

#[test]
fn a_killed_emulator_replays_its_change_log_on_restart() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("emulator.yaml");
    std::fs::write(
        &config,
        "delays: {submit_ms: 0, cancel_ms: 0, savepoint_ms: 0, dlf_task_ms: 200}\n",
    )
    .unwrap();
    let data = temp.path().join("data");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut child, base) = spawn_cli(&data, &config);
    let job_id = runtime.block_on(async {
        let client = Client::at(&base);
        let job_id = create(&client, sql_job("survivor")).await;
        client
            .call(
                Method::POST,
                "streaming/jobs/run",
                &[],
                Some(json!({"job_ids": [job_id]})),
            )
            .await;
        let nodes = json!([{"name": "n", "type": "DWSSQL", "properties": []}]);
        let path = data.join("obs/dli-gitops-staging/dlf/job.zip");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, dlf_bundle("daily", nodes)).unwrap();
        let task = client
            .call(
                Method::POST,
                "jobs/import",
                &[],
                Some(json!({"path": "obs://dli-gitops-staging/dlf/job.zip"})),
            )
            .await;
        // The task completes while a read observes it; that completion must be logged too.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let task = client
            .call(
                Method::GET,
                &format!("system-tasks/{}", task.body["taskId"].as_str().unwrap()),
                &[],
                None,
            )
            .await;
        assert_eq!(task.body["status"], "SUCCESSFUL");
        client
            .call(Method::POST, "jobs/daily/start", &[], None)
            .await;
        job_id
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(data.join("changes.jsonl")).unwrap();
    assert!(
        log.lines().count() >= 4,
        "the changes are in the log, not yet in a snapshot: {log}"
    );

    let (mut child, base) = spawn_cli(&data, &config);
    runtime.block_on(async {
        let client = Client::at(&base);
        let job = detail(&client, job_id).await;
        assert_eq!(job["status"], "job_running");
        let dlf_job = client.call(Method::GET, "jobs", &[], None).await;
        assert_eq!(
            dlf_job.body["jobs"][0]["status"], "NORMAL",
            "{}",
            dlf_job.body
        );
        assert_eq!(
            dlf_job.body["jobs"][0]["version"], 1,
            "the import is applied once"
        );
        assert!(create(&client, sql_job("next")).await > job_id);
    });
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read(data.join("changes.jsonl")).unwrap().len(),
        0,
        "a clean stop compacts the log"
    );
}
