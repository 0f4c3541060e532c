//! `doctor` against the emulator: it passes, and each broken thing (secret, project, bucket, queue,
//! permission) fails its own check with its fix; a target without a project id looks it up.

use super::*;

const WRONG_PROJECT: &str = "ffffffffffffffffffffffffffffffff";

fn assert_fails_with_fix(run: &Run, name: &str, fix_mentions: &str) {
    assert_eq!(run.code, 1, "{}", run.stdout);
    let check = run.check(name);
    assert_eq!(check["status"], "fail", "{}", run.stdout);
    let fix = check["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains(fix_mentions),
        "the fix of {name} does not mention {fix_mentions:?}: {fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_against_the_emulator() {
    let setup = start(EmulatorConfig::for_tests(PathBuf::new()), Broken::default()).await;
    let run = doctor(&setup, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json["exit_code"], 0);
    for name in [
        "rate limit",
        "dli endpoint",
        "signed calls",
        "project id",
        "job repository",
        "queues",
        "bucket staging",
        "bucket backups",
        "bucket checkpoints",
        "permission list jobs",
    ] {
        assert_eq!(run.check(name)["status"], "ok", "{name}: {}", run.stdout);
    }
    assert!(
        run.check("signed calls")["detail"]
            .as_str()
            .unwrap()
            .contains("clock skew")
    );
    // The bucket checks removed their objects.
    let staging = setup.emulator.data_dir().join("obs/dli-gitops-staging/dev");
    let leftovers: Vec<_> = walk(&staging);
    assert!(leftovers.is_empty(), "objects left behind: {leftovers:?}");
    // The text form says the same, one line per check.
    let text = tokio::task::spawn_blocking({
        let config = setup.dir.path().join("dli-gitops.yaml");
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
                .args(["doctor", "--config"])
                .arg(config)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(text.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("ok    signed calls"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_fails_signed_calls_with_its_fix() {
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            secret: Some("not-the-secret-key"),
            ..Broken::default()
        },
    )
    .await;
    let run = doctor(&setup, &[]).await;
    assert_fails_with_fix(&run, "signed calls", "secret key");
    assert_eq!(run.check("project id")["status"], "not_checked");
    assert!(!run.stdout.contains("not-the-secret-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_project_fails_the_project_check_with_its_fix() {
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            project: Some(WRONG_PROJECT),
            ..Broken::default()
        },
    )
    .await;
    let run = doctor(&setup, &[]).await;
    assert_fails_with_fix(&run, "project id", "My Credentials");
    // The fix names the right project, looked up from IAM with the same keys.
    assert_fails_with_fix(
        &run,
        "project id",
        &format!("set `project_id: {DEV_PROJECT_ID}`"),
    );
    assert_eq!(run.check("signed calls")["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_project_id_the_target_looks_it_up_from_iam() {
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            project: Some(""),
            ..Broken::default()
        },
    )
    .await;
    let run = doctor(&setup, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.check("project id")["status"], "ok");
    let detail = run.check("project id")["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("looked it up from IAM") && detail.contains(DEV_PROJECT_ID),
        "{detail}"
    );

    // Keys IAM refuses: the error says how to find the id by hand.
    let refused = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            project: Some(""),
            secret: Some("not-the-secret-key"),
            ..Broken::default()
        },
    )
    .await;
    let output = tokio::task::spawn_blocking({
        let config = refused.dir.path().join("dli-gitops.yaml");
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
                .args(["doctor", "--config"])
                .arg(config)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("looking it up from IAM failed") && stderr.contains("My Credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_fails_its_bucket_check_with_its_fix() {
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            staging_bucket: Some("no-such-bucket"),
            ..Broken::default()
        },
    )
    .await;
    let run = doctor(&setup, &[]).await;
    assert_fails_with_fix(&run, "bucket staging", "create the bucket `no-such-bucket`");
    assert_eq!(run.check("bucket backups")["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_queue_fails_the_queue_check_with_its_fix() {
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            queue: Some("no_such_queue"),
            ..Broken::default()
        },
    )
    .await;
    let run = doctor(&setup, &[]).await;
    assert_fails_with_fix(&run, "queues", "create the queue");
    assert!(
        run.check("queues")["detail"]
            .as_str()
            .unwrap()
            .contains("no_such_queue")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_answered_403_fails_its_permission_check_with_its_fix() {
    let mut config = EmulatorConfig::for_tests(PathBuf::new());
    config.faults.forbidden = vec!["ListFlinkJobs".to_string()];
    let setup = start(config, Broken::default()).await;
    let run = doctor(&setup, &[]).await;
    assert_fails_with_fix(&run, "permission list jobs", "allow listing DLI Flink jobs");
    assert_eq!(run.check("signed calls")["status"], "ok");
    assert_eq!(run.check("queues")["status"], "ok");

    // The queue list itself refused: the queue check fails and says what to allow.
    let mut config = EmulatorConfig::for_tests(PathBuf::new());
    config.faults.forbidden = vec!["ListQueues".to_string()];
    let refused = start(config, Broken::default()).await;
    let run = doctor(&refused, &[]).await;
    assert_fails_with_fix(&run, "queues", "allow the user to list DLI queues");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_lists_queues_as_the_sdk_model_says() {
    let setup = start(EmulatorConfig::for_tests(PathBuf::new()), Broken::default()).await;
    let queues = dli(&setup.emulator).list_queues().await.unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    assert!(
        names.contains(&"dev_flink") && names.contains(&"q1"),
        "{names:?}"
    );
    assert!(
        queues
            .iter()
            .all(|q| q.queue_type.as_deref() == Some("general"))
    );
    // Without queue_type the service lists SQL queues only (the SDK's default), and a bad
    // queue_type is a parameter error.
    let client = dli(&setup.emulator);
    let sql_only = client
        .send_once_for_probe("list_queues", reqwest::Method::GET, &["queues"], None)
        .await
        .unwrap();
    assert_eq!(sql_only["queues"], serde_json::json!([]));
    assert_eq!(sql_only["is_success"], true);
}
