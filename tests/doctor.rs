//! `dli-gitops doctor`: the real binary against the emulator on loopback. A sound setup passes;
//! each broken setup (wrong secret, missing bucket, missing queue, wrong project, an action
//! answered 403) fails its own check with a fix; `--probe --record` exercises every endpoint on a
//! scratch job, leaves nothing behind, touches no job but its own, and writes a recording with
//! no secret in it; every recording under `tests/fixtures/real/` decodes through our client.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dli_gitops::cloud::{
    ClientOptions, CloudError, Credentials, DliClient, ListJobsQuery, Secret, parse_endpoint,
};
use dli_gitops::doctor::record::{self, RecordedExchange};
use dli_gitops::emulator::config::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
use dli_gitops::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use dli_gitops::model::{FlinkJobConfig, JobKind, UpdateScope};
use serde_json::Value;

const WRONG_PROJECT: &str = "ffffffffffffffffffffffffffffffff";

struct Setup {
    dir: tempfile::TempDir,
    emulator: EmulatorHandle,
}

/// What to break.
#[derive(Default)]
struct Broken {
    secret: Option<&'static str>,
    project: Option<&'static str>,
    staging_bucket: Option<&'static str>,
    queue: Option<&'static str>,
    /// A DataArts workspace: DLF is then in use (checked and probed).
    workspace: Option<&'static str>,
}

async fn start(mut emulator_config: EmulatorConfig, broken: Broken) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    emulator_config.data_dir = dir.path().join("emulator");
    let emulator = Emulator::start(emulator_config)
        .await
        .expect("emulator starts");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("environments")).unwrap();
    std::fs::create_dir_all(repo.join("flink")).unwrap();
    std::fs::write(repo.join("environments/dev.yaml"), "variables: {}\n").unwrap();
    std::fs::write(
        repo.join("flink/clicks.yaml"),
        format!(
            "kind: FlinkSqlJob\nname: clicks\nsql_body: \"SELECT 1 AS v;\"\nqueue_name: {}\nobs_bucket: dli-gitops-savepoints\n",
            broken.queue.unwrap_or("dev_flink")
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
    std::fs::write(
        dir.path().join("sk"),
        broken.secret.unwrap_or(DEV_SECRET_KEY),
    )
    .unwrap();
    let api = emulator.dli_url();
    let s3 = emulator.s3_url();
    let config = format!(
        r#"state_dir: state
sources:
  jobs:
    path: repo
targets:
  - name: dev
    source: jobs
    environment: dev
    region: cn-north-4
{}    endpoints: {{dli: "{api}", dlf: "{api}", iam: "{api}", obs: "{s3}"}}
    credentials: {{access_key_file: ak, secret_key_file: sk}}
    staging: obs://{}/dev/
    backups: obs://dli-gitops-backups/dev/
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 50ms}}
{}"#,
        match broken.project.unwrap_or(DEV_PROJECT_ID) {
            "" => String::new(),
            id => format!("    project_id: {id}\n"),
        },
        broken.staging_bucket.unwrap_or("dli-gitops-staging"),
        broken
            .workspace
            .map(|w| format!("    workspace: {w}\n"))
            .unwrap_or_default(),
    );
    std::fs::write(dir.path().join("dli-gitops.yaml"), config).unwrap();
    Setup { dir, emulator }
}

struct Run {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

impl Run {
    fn check(&self, name: &str) -> &Value {
        self.json["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no check {name} in {}", self.stdout))
    }

    fn assert_no_secret(&self) {
        for text in [&self.stdout, &self.stderr] {
            assert!(!text.contains(DEV_SECRET_KEY), "the secret key was printed");
            assert!(!text.contains("Signature="), "a signature was printed");
        }
    }
}

async fn doctor(setup: &Setup, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec![
        "doctor".into(),
        "--config".into(),
        setup
            .dir
            .path()
            .join("dli-gitops.yaml")
            .display()
            .to_string(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .args(&args)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}\n{stderr}"));
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        json,
        stdout,
        stderr,
    };
    run.assert_no_secret();
    run
}

fn dli(emulator: &EmulatorHandle) -> DliClient {
    DliClient::new(
        parse_endpoint(&emulator.dli_url()).unwrap(),
        DEV_PROJECT_ID,
        Credentials::AkSk {
            access_key: DEV_ACCESS_KEY.into(),
            secret_key: Secret::new(DEV_SECRET_KEY.to_string()),
            security_token: None,
        },
        ClientOptions::default(),
    )
    .unwrap()
}

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

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
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

/// Every recording shipped under `tests/fixtures/real/` decodes through our client.
#[tokio::test(flavor = "multi_thread")]
async fn every_shipped_recording_decodes_through_our_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut recordings = 0;
    for entry in std::fs::read_dir(&root).expect("tests/fixtures/real exists") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            decode_recording(&path).await;
            recordings += 1;
        }
    }
    assert!(recordings >= 1, "no recording under {}", root.display());
}

/// A loopback server that answers each request with a recorded answer: the exchange under
/// test for its method and path, else the first recorded exchange with that method and path.
#[derive(Clone, Default)]
struct Replay {
    exchanges: Arc<Vec<RecordedExchange>>,
    current: Arc<Mutex<Option<RecordedExchange>>>,
}

fn same_route(exchange: &RecordedExchange, method: &str, path: &str) -> bool {
    let recorded: Vec<&str> = exchange.path.split('/').collect();
    let asked: Vec<&str> = path.split('/').collect();
    exchange.method == method
        && recorded.len() == asked.len()
        && recorded
            .iter()
            .zip(&asked)
            .all(|(r, a)| r == a || r.starts_with('{'))
}

async fn replay_handler(
    axum::extract::State(replay): axum::extract::State<Replay>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let current = replay.current.lock().unwrap().clone();
    let chosen = current
        .filter(|e| same_route(e, &method, &path))
        .or_else(|| {
            replay
                .exchanges
                .iter()
                .find(|e| same_route(e, &method, &path) && (200..300).contains(&e.status))
                .cloned()
        });
    let mut response = axum::response::Response::new(axum::body::Body::from(match &chosen {
        Some(exchange) if exchange.response_body.is_null() => String::new(),
        Some(exchange) => exchange.response_body.to_string(),
        None => r#"{"error_code":"APIG.0101","error_msg":"not in the recording"}"#.to_string(),
    }));
    *response.status_mut() =
        axum::http::StatusCode::from_u16(chosen.map(|e| e.status).unwrap_or(404)).unwrap();
    response
}

/// Replays every answer of a recording to the client call that asked for it.
async fn decode_recording(dir: &Path) {
    let exchanges = record::load(dir).unwrap();
    let probe: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("probe.json")).unwrap()).unwrap();
    let spec: FlinkJobConfig = serde_json::from_value(probe["spec"].clone()).unwrap();
    let replay = Replay {
        exchanges: Arc::new(exchanges.clone()),
        current: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(replay_handler)
        .with_state(replay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = DliClient::new(
        parse_endpoint(&format!("http://{address}")).unwrap(),
        "00000000000000000000000000000000",
        Credentials::AkSk {
            access_key: "REPLAY".into(),
            secret_key: Secret::new("replay".to_string()),
            security_token: None,
        },
        ClientOptions {
            retry: dli_gitops::cloud::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            },
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let dlf = dli_gitops::cloud::DlfClient::new(
        parse_endpoint(&format!("http://{address}")).unwrap(),
        "00000000000000000000000000000000",
        Credentials::AkSk {
            access_key: "REPLAY".into(),
            secret_key: Secret::new("replay".to_string()),
            security_token: None,
        },
        ClientOptions {
            retry: dli_gitops::cloud::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            },
            ..ClientOptions::default()
        },
        None,
    )
    .unwrap();
    let last_segment = |exchange: &RecordedExchange| -> String {
        exchange
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let job_id = |exchange: &RecordedExchange| -> i64 {
        exchange
            .path
            .split('/')
            .filter_map(|s| s.parse::<i64>().ok())
            .next()
            .or_else(|| {
                exchange
                    .request_body
                    .as_ref()
                    .and_then(|b| b["job_ids"][0].as_i64())
            })
            .unwrap_or(1)
    };
    for exchange in &exchanges {
        *replay.current.lock().unwrap() = Some(exchange.clone());
        let id = job_id(exchange);
        let name = exchange
            .request_body
            .as_ref()
            .and_then(|b| b["name"].as_str())
            .unwrap_or("job")
            .to_string();
        let result: Result<(), CloudError> = if exchange.service == "dlf" {
            match exchange.operation.as_str() {
                "import_jobs" => dlf
                    .import_jobs(&dli_gitops::cloud::DlfImportRequest {
                        path: "obs://bucket/x.zip".into(),
                        same_name_policy: "OVERWRITE".into(),
                        jobs_params: Vec::new(),
                        settings: Default::default(),
                    })
                    .await
                    .map(drop),
                "system_task" => dlf.system_task(&last_segment(exchange)).await.map(drop),
                "list_jobs" => dlf
                    .list_jobs(&dli_gitops::cloud::DlfListJobsQuery::default())
                    .await
                    .map(drop),
                "job_detail" => dlf.job_detail(&last_segment(exchange)).await.map(drop),
                "delete_job" => dlf.delete_job(&last_segment(exchange)).await,
                other => panic!("{}: no replay for DLF operation {other}", dir.display()),
            }
        } else {
            match exchange.operation.as_str() {
                "list_jobs" => client.list_jobs(&ListJobsQuery::default()).await.map(drop),
                "list_queues" => client.list_queues().await.map(drop),
                "job_detail" => client.job_detail(id).await.map(drop),
                "job_tags" => client.job_tags(id).await.map(drop),
                "create_job_tags" => client.create_job_tags(id, &spec.tags).await,
                "create_sql_job" if (200..300).contains(&exchange.status) => {
                    // The typed create lists by name first (the recording's list answers that),
                    // then creates.
                    client.create_sql_job(&name, &spec).await.map(drop)
                }
                "create_sql_job" => client
                    .send_once_for_probe(
                        "create_sql_job",
                        reqwest::Method::POST,
                        &["streaming", "sql-jobs"],
                        exchange.request_body.clone(),
                    )
                    .await
                    .map(drop),
                "update_sql_job" => client.update_job(id, &spec, &UpdateScope::Full).await,
                "run_jobs" => client.run_jobs(&[id], false).await,
                "stop_jobs" => client.stop_jobs(&[id], true).await,
                "trigger_savepoint" => client.trigger_savepoint(id, "bucket/dir/").await,
                "export_jobs" => client
                    .export_jobs("bucket/dir/", Some(&[id]))
                    .await
                    .map(|zips| assert!(!zips.is_empty(), "export answered no zip")),
                "import_jobs" => client
                    .import_jobs("bucket/dir/x.zip", true)
                    .await
                    .map(|mappings| assert!(!mappings.is_empty(), "import answered no mapping")),
                "import_savepoint" => client.import_savepoint(id, "obs://bucket/sp/").await,
                "delete_job" => client.delete_job(id).await,
                other => panic!("{}: no replay for operation {other}", dir.display()),
            }
        };
        match (&result, (200..300).contains(&exchange.status)) {
            (Ok(()), true) => {}
            (
                Err(CloudError::Service {
                    status, error_code, ..
                }),
                false,
            ) => {
                assert_eq!(*status, exchange.status);
                assert_eq!(
                    error_code.as_deref(),
                    exchange.response_body["error_code"].as_str(),
                    "{}: {}",
                    dir.display(),
                    exchange.operation
                );
            }
            _ => panic!(
                "{}: {} answered {} but our client said {result:?}",
                dir.display(),
                exchange.operation,
                exchange.status
            ),
        }
    }
    // The planner finds no difference between the job as first read back and the spec that
    // created it.
    let first_detail = exchanges
        .iter()
        .find(|e| e.operation == "job_detail" && (200..300).contains(&e.status))
        .expect("the recording reads the scratch job back");
    *replay.current.lock().unwrap() = Some(first_detail.clone());
    let observed = client.job_detail(job_id(first_detail)).await.unwrap();
    let diffs = spec.field_diffs(&observed.config);
    assert!(
        diffs.is_empty(),
        "{}: the planner would act on {diffs:?}",
        dir.display()
    );
    server.abort();
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

/// Keys and JSON types of `recorded` against `emulated`, recursively (arrays by their first
/// element; `null` matches anything: a field may be unset).
fn shape_differences(path: &str, recorded: &Value, emulated: &Value, out: &mut Vec<String>) {
    let kind = |value: &Value| match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    match (recorded, emulated) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(recorded), Value::Object(emulated)) => {
            for key in recorded.keys().filter(|k| !emulated.contains_key(*k)) {
                out.push(format!("{path}.{key}: missing in the emulator's answer"));
            }
            for key in emulated.keys().filter(|k| !recorded.contains_key(*k)) {
                out.push(format!("{path}.{key}: only in the emulator's answer"));
            }
            for (key, value) in recorded {
                if let Some(other) = emulated.get(key) {
                    shape_differences(&format!("{path}.{key}"), value, other, out);
                }
            }
        }
        (Value::Array(recorded), Value::Array(emulated)) => {
            if let (Some(first), Some(other)) = (recorded.first(), emulated.first()) {
                shape_differences(&format!("{path}[0]"), first, other, out);
            }
        }
        (recorded, emulated) if kind(recorded) != kind(emulated) => out.push(format!(
            "{path}: {} in the recording, {} from the emulator",
            kind(recorded),
            kind(emulated)
        )),
        _ => {}
    }
}

/// The emulator answers the probe's calls in the shape of every shipped recording: the same
/// probe run against a fresh emulator, compared call by call (first answer of each service,
/// operation and status class).
#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_answers_in_the_shape_of_every_recording() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            workspace: Some("shape-workspace"),
            ..Broken::default()
        },
    )
    .await;
    let fresh = setup.dir.path().join("fresh");
    let run = doctor(
        &setup,
        &[
            "--probe",
            "--queue",
            "dev_flink",
            "--record",
            fresh.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let emulated = record::load(&fresh).unwrap();
    let key = |e: &RecordedExchange| (e.service.clone(), e.operation.clone(), e.status / 100);
    let mut differences = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let recorded = record::load(&dir).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for exchange in &recorded {
            if !seen.insert(key(exchange)) {
                continue;
            }
            let Some(answer) = emulated.iter().find(|e| key(e) == key(exchange)) else {
                differences.push(format!(
                    "{}: {} {} answered {}: the emulator's probe made no such call",
                    dir.display(),
                    exchange.service,
                    exchange.operation,
                    exchange.status
                ));
                continue;
            };
            let mut found = Vec::new();
            shape_differences(
                &format!("{} {}", exchange.service, exchange.operation),
                &exchange.response_body,
                &answer.response_body,
                &mut found,
            );
            differences.extend(found.into_iter().map(|d| format!("{}: {d}", dir.display())));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
