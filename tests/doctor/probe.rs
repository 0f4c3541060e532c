//! The probe: it exercises every endpoint, cleans up and records without secrets, also when
//! interrupted by Ctrl-C.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_probe_exercises_every_endpoint_cleans_up_and_records_without_secrets() {
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            workspace: Some("doctor-test-workspace"),
            ..Broken::default()
        },
    )
    .await;
    let client = dli(&setup.emulator);
    // A leftover of an earlier, interrupted probe (prefix and tag), and a job that only looks
    // like one (prefix, no tag): the first is removed, the second left alone.
    let mut tagged = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    tagged.sql_body = Some("SELECT 1;".into());
    tagged.queue_name = Some("dev_flink".into());
    tagged.tags = BTreeMap::from([("dli-gitops-doctor".to_string(), "scratch".to_string())]);
    let leftover = client
        .create_sql_job("dli-gitops-doctor-leftover", &tagged)
        .await
        .unwrap();
    let mut untagged = tagged.clone();
    untagged.tags.clear();
    let foreign = client
        .create_sql_job("dli-gitops-doctor-not-ours", &untagged)
        .await
        .unwrap();

    let recording = setup.dir.path().join("recording");
    let run = doctor(
        &setup,
        &["--probe", "--record", recording.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        run.code, 2,
        "the untagged look-alike is a warning: {}",
        run.stdout
    );
    let probe = &run.json["probe"];
    let steps = probe["steps"].as_array().unwrap();
    for name in [
        "create",
        "tags",
        "duplicate create",
        "detail",
        "update",
        "run",
        "trigger savepoint",
        "stop with savepoint",
        "export",
        "import is_cover",
        "import-savepoint",
        "delete",
        "dlf import",
    ] {
        let step = steps
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}"));
        assert_eq!(step["status"], "ok", "{name}: {}", run.stdout);
    }
    let verdict = |assumption: &str| {
        probe["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["assumption"].as_str().unwrap().starts_with(assumption))
            .unwrap_or_else(|| panic!("no finding {assumption}"))["verdict"]
            .clone()
    };
    assert_eq!(verdict("is_cover keeps the job id"), "confirmed");
    assert_eq!(verdict("export writes one zip per job"), "confirmed");
    assert_eq!(verdict("a duplicate create is refused"), "confirmed");
    assert_eq!(verdict("savepoint_path names the savepoint"), "confirmed");
    assert_eq!(verdict("obs:// is accepted"), "confirmed");
    assert_eq!(verdict("what the service fills in"), "confirmed");
    let cleaned: Vec<&str> = probe["cleaned_up"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        cleaned.iter().any(|c| c.contains(&leftover.to_string())),
        "{cleaned:?}"
    );

    // Nothing of the doctor's is left; the look-alike and nothing else remains.
    let jobs = client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, vec!["dli-gitops-doctor-not-ours"], "{names:?}");
    assert_eq!(jobs[0].id, foreign);
    let scratch = setup
        .emulator
        .data_dir()
        .join("obs/dli-gitops-staging/dev/.dli-gitops-doctor");
    assert!(walk(&scratch).is_empty(), "{:?}", walk(&scratch));

    // The recording: every exchange, no secret, no signature, no project id.
    let exchanges = record::load(&recording).unwrap();
    assert!(exchanges.len() >= 15, "{} exchanges", exchanges.len());
    for file in walk(&recording) {
        let text = std::fs::read_to_string(&file).unwrap();
        for secret in [
            DEV_SECRET_KEY,
            DEV_ACCESS_KEY,
            DEV_PROJECT_ID,
            "Signature=",
            "SDK-HMAC-SHA256",
            "X-Auth-Token",
            "x-auth-token",
            "authorization",
            "doctor-test-workspace",
        ] {
            assert!(
                !text.contains(secret),
                "{} contains {secret}",
                file.display()
            );
        }
    }
    decode_recording(&recording).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_the_probe_still_removes_the_scratch_job() {
    // Slow transitions: the probe is still waiting for its job to run when Ctrl-C comes.
    let mut config = EmulatorConfig::for_tests(PathBuf::new());
    config.delays.submit_ms = 4_000;
    let setup = start(config, Broken::default()).await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["doctor", "--json", "--probe", "--config"])
        .arg(setup.dir.path().join("dli-gitops.yaml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let client = dli(&setup.emulator);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let jobs = client.list_jobs(&ListJobsQuery::default()).await.unwrap();
        if jobs.iter().any(|job| {
            job.name.starts_with("dli-gitops-doctor-")
                && job.status == dli_gitops::model::FlinkJobStatus::Submitting
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the probe never started its job"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let steps = json["probe"]["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["name"] == "interrupted" && s["status"] == "warn"),
        "{stdout}"
    );
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    let jobs = client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    assert!(jobs.is_empty(), "left behind: {jobs:?}");
}
