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

mod checks;
mod probe;
mod recordings;
