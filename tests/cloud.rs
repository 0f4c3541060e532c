//! The cloud client against scripted HTTP servers on loopback (the exact sequence of calls each
//! operation must make, every decoding quirk, retries, throttling, timeouts, dropped connections,
//! auth failures and non-idempotent creates), the signer against the official SDK's vectors, and
//! the OBS path against a real S3 server (`s3s-fs`) started in-process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dli_gitops::cloud::signer::{self, Authorization, SignableRequest};
use dli_gitops::cloud::{
    ClientOptions, CloudError, Credentials, DlfClient, DlfImportRequest, DliClient, ListJobsQuery,
    ObjectStore, ObsOptions, RequestMetrics, RetryPolicy, Secret, SystemTaskStatus,
};
use dli_gitops::model::{CheckpointMode, FlinkJobConfig, JobKind};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use url::Url;

const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const ACCESS_KEY: &str = "TESTACCESSKEY";
const SECRET_KEY: &str = "test-secret-key-DO-NOT-LEAK-7f3a";
const TOKEN_SECRET: &str = "security-token-DO-NOT-LEAK-91c2";

// ---------------------------------------------------------------------------------------------
// The scripted server
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Reply {
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without answering.
    Drop,
    /// Answer after a delay (longer than the client's timeout to provoke one).
    Delay(Duration, Box<Reply>),
}

fn json_reply(status: u16, body: Value) -> Reply {
    Reply::Status {
        status,
        headers: vec![("X-Request-Id".into(), format!("req-{status}"))],
        body: body.to_string().into_bytes(),
    }
}

fn json_reply_with(status: u16, body: Value, headers: &[(&str, &str)]) -> Reply {
    let Reply::Status {
        status,
        headers: mut all,
        body,
    } = json_reply(status, body)
    else {
        unreachable!()
    };
    all.retain(|(name, _)| !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)));
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Reply::Status {
        status,
        headers: all,
        body,
    }
}

struct Step {
    method: &'static str,
    path_end: String,
    reply: Reply,
}

fn step(method: &'static str, path_end: impl Into<String>, reply: Reply) -> Step {
    Step {
        method,
        path_end: path_end.into(),
        reply,
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// `None` when the request carried no SDK-HMAC-SHA256 authorization.
    signature_ok: Option<bool>,
    signed_headers: Vec<String>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ScriptState {
    steps: Mutex<VecDeque<Step>>,
    seen: Mutex<Vec<Recorded>>,
    unexpected: Mutex<Vec<String>>,
}

struct ScriptServer {
    url: Url,
    state: Arc<ScriptState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptServer {
    async fn start(steps: Vec<Step>) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let state = Arc::new(ScriptState {
            steps: Mutex::new(steps.into()),
            ..ScriptState::default()
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { answer(state, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ScriptServer { url, state, task }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Every scripted step was used, nothing unexpected arrived, and every request was signed
    /// correctly.
    fn assert_done(&self) {
        let unexpected = self.state.unexpected.lock().unwrap().clone();
        assert!(
            unexpected.is_empty(),
            "unexpected requests: {unexpected:#?}"
        );
        let left: Vec<String> = self
            .state
            .steps
            .lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path_end))
            .collect();
        assert!(left.is_empty(), "scripted calls never made: {left:?}");
        for request in self.requests() {
            assert_ne!(
                request.signature_ok,
                Some(false),
                "bad signature on {} {}",
                request.method,
                request.path
            );
        }
    }
}

async fn answer(
    state: Arc<ScriptState>,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<axum::body::Body>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
        .await
        .unwrap_or_default();
    let path = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let (signature_ok, signed_headers) = match parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        Some(value) => match Authorization::parse(value) {
            Ok(authorization) => {
                let signable = SignableRequest {
                    method: parts.method.as_str(),
                    path: &path,
                    query: &query,
                    headers: &headers,
                    body: &body,
                };
                let ok = authorization.access_key == ACCESS_KEY
                    && signer::verify(&authorization, SECRET_KEY, &signable).is_ok();
                (Some(ok), authorization.signed_headers)
            }
            Err(_) => (Some(false), Vec::new()),
        },
        None => (None, Vec::new()),
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: path.clone(),
        query,
        headers,
        body,
        signature_ok,
        signed_headers,
    };
    state.seen.lock().unwrap().push(recorded);
    let next = {
        let mut steps = state.steps.lock().unwrap();
        match steps.front() {
            Some(step)
                if step.method == parts.method.as_str() && path.ends_with(&step.path_end) =>
            {
                steps.pop_front()
            }
            _ => None,
        }
    };
    let Some(step) = next else {
        state
            .unexpected
            .lock()
            .unwrap()
            .push(format!("{} {}", parts.method, path));
        return Ok(build(
            418,
            &[],
            br#"{"error_code":"TEST.UNEXPECTED","error_msg":"not in the script"}"#.to_vec(),
        ));
    };
    let mut reply = step.reply;
    loop {
        match reply {
            Reply::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
            Reply::Drop => return Err(std::io::Error::other("scripted connection drop")),
            Reply::Status {
                status,
                headers,
                body,
            } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                return Ok(build(status, &headers, body));
            }
        }
    }
}

fn build(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> http::Response<axum::body::Body> {
    let mut response = http::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(axum::body::Body::from(body)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn aksk() -> Credentials {
    Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new(SECRET_KEY),
        security_token: None,
    }
}

fn fast_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 4,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
        },
        requests_per_second: 0.0,
        ..ClientOptions::default()
    }
}

fn dli(server: &ScriptServer, options: ClientOptions) -> DliClient {
    DliClient::new(server.url.clone(), PROJECT, aksk(), options).unwrap()
}

fn jobs_path() -> String {
    format!("/v1.0/{PROJECT}/streaming/jobs")
}

fn listed(id: i64) -> Value {
    json!({"job_id": id, "name": format!("job-{id}"), "status": "job_running", "update_time": 1711647009620_i64 + id,
           "job_type": "flink_opensource_sql_job", "queue_name": "q"})
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

#[test]
fn signer_matches_the_official_python_sdk_vectors() {
    let table: Value = serde_json::from_str(include_str!("signer_vectors.json")).unwrap();
    let vectors = table["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 15, "the vector table is too small");
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let pairs = |v: &Value| -> Vec<(String, String)> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_string(),
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let query = pairs(&vector["query"]);
        let headers = pairs(&vector["headers"]);
        let expected = vector["authorization"].as_str().unwrap();
        let signed = Authorization::parse(expected).unwrap().signed_headers;
        let signed: Vec<&str> = signed.iter().map(String::as_str).collect();
        let request = SignableRequest {
            method: vector["method"].as_str().unwrap(),
            path: vector["path"].as_str().unwrap(),
            query: &query,
            headers: &headers,
            body: vector["body"].as_str().unwrap().as_bytes(),
        };
        let ours = signer::sign(
            vector["access_key"].as_str().unwrap(),
            vector["secret_key"].as_str().unwrap(),
            &request,
            &signed,
        )
        .unwrap();
        assert_eq!(ours, expected, "vector {name:?}");
        let parsed = Authorization::parse(&ours).unwrap();
        signer::verify(&parsed, vector["secret_key"].as_str().unwrap(), &request).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// DLI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_jobs_pages_with_limit_100_until_done() {
    let page = |ids: std::ops::Range<i64>, total: i64, stringly: bool| {
        let jobs: Vec<Value> = ids
            .map(|id| {
                let mut job = listed(id);
                if stringly {
                    job["job_id"] = json!(id.to_string());
                    job["update_time"] = json!((1711647009620_i64 + id).to_string());
                }
                job
            })
            .collect();
        json_reply(
            200,
            json!({"is_success": if stringly { json!("true") } else { json!(true) }, "message": "",
                               "job_list": {"total_count": total, "jobs": jobs}}),
        )
    };
    let server = ScriptServer::start(vec![
        step("GET", jobs_path(), page(0..100, 237, false)),
        step("GET", jobs_path(), page(100..200, 237, true)),
        step("GET", jobs_path(), page(200..237, 237, false)),
    ])
    .await;
    let client = dli(&server, fast_options());
    let listing = client
        .list_jobs_paged(&ListJobsQuery::default())
        .await
        .unwrap();
    assert_eq!(listing.pages, 3);
    assert_eq!(listing.jobs.len(), 237);
    assert_eq!(listing.jobs[150].id, 150);
    assert_eq!(listing.jobs[150].update_time, 1711647009770);
    assert_eq!(listing.jobs[150].queue_name.as_deref(), Some("q"));
    server.assert_done();
    let requests = server.requests();
    let offsets: Vec<&str> = requests
        .iter()
        .map(|r| r.query_value("offset").unwrap())
        .collect();
    assert_eq!(offsets, vec!["0", "100", "200"]);
    for request in &requests {
        assert_eq!(request.query_value("limit"), Some("100"));
        assert_eq!(
            request.signed_headers,
            vec!["host", "x-project-id", "x-sdk-date"]
        );
        assert_eq!(request.header("x-project-id"), Some(PROJECT));
    }
}

#[tokio::test]
async fn list_by_name_keeps_exact_matches_and_encodes_special_characters() {
    let name = "clicks & views/é+1";
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(200, json!({"is_success": "true", "job_list": {"total_count": 2, "jobs": [
            {"job_id": 1, "name": name, "status": "job_init", "update_time": 1},
            {"job_id": 2, "name": format!("{name}-copy"), "status": "job_init", "update_time": 1}]}})),
    )])
    .await;
    let client = dli(&server, fast_options());
    let jobs = client
        .list_jobs(&ListJobsQuery {
            name: Some(name.into()),
            ..ListJobsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, 1);
    server.assert_done();
    assert_eq!(server.requests()[0].query_value("name"), Some(name));
}

#[tokio::test]
async fn job_detail_normalises_the_wire_quirks() {
    let detail = json!({"is_success": "true", "message": "", "job_detail": {
        "job_id": "42", "name": "clickstream-agg", "desc": "", "job_type": "flink_opensource_sql_job",
        "status": "job_running", "update_time": 1711647009620_i64, "sql_body": "select 1", "run_mode": "exclusive_cluster",
        "queue_name": "q1", "savepoint_path": "obs://b/sp/",
        "job_config": {"checkpoint_enabled": "true", "checkpoint_mode": "exactly_once", "checkpoint_interval": 60,
            "cu_number": 4, "parallel_number": 2, "smn_topic": "", "obs_bucket": "",
            "runtime_config": "[{\"key\":\"table.exec.state.ttl\",\"value\":\"1h\"}]",
            "tags": [{"key": "managed-by", "value": "dli-gitops"}, {"key": "team", "value": "growth"}]}}});
    let untagged = json!({"is_success": true, "job_detail": {"job_id": 43, "name": "plain", "status": "job_init", "update_time": 1}});
    let server = ScriptServer::start(vec![
        step("GET", format!("{}/42", jobs_path()), json_reply(200, detail)),
        step("GET", format!("{}/43", jobs_path()), json_reply(200, untagged.clone())),
        step("GET", format!("/v3/{PROJECT}/dli_flink_job/43/tags"), json_reply(200, json!({"tags": [{"key": "managed-by", "value": "dli-gitops"}], "count": 1}))),
        step("GET", format!("{}/43", jobs_path()), json_reply(200, untagged)),
        step("GET", format!("/v3/{PROJECT}/dli_flink_job/43/tags"), json_reply(404, json!({"error_code": "APIG.0101", "error_msg": "The API does not exist or has not been published in the environment"}))),
    ])
    .await;
    let client = dli(&server, fast_options());
    let job = client.job_detail(42).await.unwrap();
    assert_eq!(job.id, 42);
    assert_eq!(job.update_time, 1711647009620);
    assert_eq!(job.savepoint_path.as_deref(), Some("obs://b/sp/"));
    assert!(job.status.is_running());
    assert!(job.is_managed());
    assert_eq!(
        job.config.tags.get("team").map(String::as_str),
        Some("growth")
    );
    assert_eq!(job.config.checkpoint_mode, CheckpointMode::ExactlyOnce);
    assert_eq!(job.config.smn_topic, None);
    assert_eq!(
        job.config
            .runtime_config
            .get("table.exec.state.ttl")
            .map(String::as_str),
        Some("1h")
    );
    let tagged = client.job_detail(43).await.unwrap();
    assert!(tagged.is_managed());
    // A service without the tag API (404 without a job error code) reads as untagged.
    let untagged = client.job_detail(43).await.unwrap();
    assert!(untagged.config.tags.is_empty());
    server.assert_done();
}

#[tokio::test]
async fn missing_job_is_a_typed_not_found_with_the_request_id() {
    let server = ScriptServer::start(vec![step(
        "GET",
        format!("{}/7", jobs_path()),
        json_reply_with(
            400,
            json!({"error_code": "DLI.16001", "error_msg": "The job does not exist"}),
            &[("X-Request-Id", "rid-123")],
        ),
    )])
    .await;
    let client = dli(&server, fast_options());
    let error = client.job_detail(7).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(error.error_code(), Some("DLI.16001"));
    assert_eq!(error.status(), Some(400));
    let text = error.to_string();
    for part in [
        "dli job_detail",
        "job 7",
        "HTTP 400",
        "DLI.16001",
        "The job does not exist",
        "rid-123",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    assert_eq!(
        server.requests().len(),
        1,
        "a permanent error is not retried"
    );
    server.assert_done();
}

#[tokio::test]
async fn transient_5xx_are_retried_with_backoff_and_counted() {
    let detail = json!({"is_success": "true", "job_detail": {"job_id": 1, "name": "a", "status": "job_init", "update_time": 1, "tags": []}});
    let server = ScriptServer::start(vec![
        step(
            "GET",
            format!("{}/1", jobs_path()),
            json_reply(503, json!({"error_code": "DLI.0999", "error_msg": "busy"})),
        ),
        step(
            "GET",
            format!("{}/1", jobs_path()),
            Reply::Status {
                status: 502,
                headers: vec![],
                body: b"<html>Bad Gateway</html>".to_vec(),
            },
        ),
        step("GET", format!("{}/1", jobs_path()), json_reply(200, detail)),
    ])
    .await;
    let metrics = RequestMetrics::default();
    let client = dli(
        &server,
        ClientOptions {
            metrics: metrics.clone(),
            ..fast_options()
        },
    );
    assert_eq!(client.job_detail(1).await.unwrap().name, "a");
    server.assert_done();
    assert_eq!(metrics.count("dli", "job_detail", "503"), 1);
    assert_eq!(metrics.count("dli", "job_detail", "502"), 1);
    assert_eq!(metrics.count("dli", "job_detail", "200"), 1);
}

#[tokio::test]
async fn persistent_5xx_give_up_after_max_attempts_with_a_retryable_error() {
    let failing = || {
        step(
            "GET",
            jobs_path(),
            json_reply(500, json!({"code": "DLI.0999", "message": "server error"})),
        )
    };
    let server = ScriptServer::start(vec![failing(), failing(), failing()]).await;
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let error = dli(&server, options)
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    assert!(error.to_string().contains("after 3 attempts"), "{error}");
    server.assert_done();
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let ok = json_reply(
        200,
        json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}}),
    );
    let server = ScriptServer::start(vec![
        step(
            "GET",
            jobs_path(),
            json_reply_with(
                429,
                json!({"error_code": "APIG.0308", "error_msg": "The request is throttled"}),
                &[("Retry-After", "1")],
            ),
        ),
        step("GET", jobs_path(), ok),
    ])
    .await;
    let started = Instant::now();
    let jobs = dli(&server, fast_options())
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap();
    assert!(jobs.is_empty());
    // The backoff alone is at most 20 ms here; only Retry-After explains a wait of a second.
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
    server.assert_done();
}

#[tokio::test]
async fn retry_after_beyond_the_limit_fails_fast_and_stays_retryable() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply_with(
            429,
            json!({"error_code": "APIG.0308", "error_msg": "throttled"}),
            &[("Retry-After", "3600")],
        ),
    )])
    .await;
    let error = dli(&server, fast_options())
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    server.assert_done();
}

#[tokio::test]
async fn timeouts_and_dropped_connections_are_retried() {
    let ok = || {
        json_reply(
            200,
            json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}}),
        )
    };
    let server = ScriptServer::start(vec![
        step(
            "GET",
            jobs_path(),
            Reply::Delay(Duration::from_secs(6), Box::new(ok())),
        ),
        step("GET", jobs_path(), Reply::Drop),
        step("GET", jobs_path(), ok()),
    ])
    .await;
    let metrics = RequestMetrics::default();
    let options = ClientOptions {
        request_timeout: Duration::from_millis(1000),
        metrics: metrics.clone(),
        ..fast_options()
    };
    dli(&server, options)
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap();
    server.assert_done();
    assert_eq!(metrics.count("dli", "list_jobs", "timeout"), 1);
    assert_eq!(metrics.count("dli", "list_jobs", "io"), 1);
    assert_eq!(metrics.count("dli", "list_jobs", "200"), 1);
}

#[tokio::test]
async fn refused_connection_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let client = DliClient::new(url, PROJECT, aksk(), options).unwrap();
    let error = client.job_detail(1).await.unwrap_err();
    assert!(matches!(error, CloudError::Transport { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("could not connect"), "{error}");
}

#[tokio::test]
async fn apig_0301_stops_at_once_and_holds_back_further_requests() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(401, json!({"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information: verify aksk signature fail", "request_id": "r1"})),
    )])
    .await;
    let client = dli(&server, fast_options());
    let error = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_auth_failure());
    assert!(!error.is_retryable());
    // The next calls are refused locally: the key is never locked out by our own retries.
    for _ in 0..5 {
        let held = client.job_detail(1).await.unwrap_err();
        assert!(matches!(held, CloudError::AuthBackoff { .. }), "{held:?}");
        assert!(held.is_auth_failure());
        assert!(held.to_string().contains("APIG.0301"), "{held}");
    }
    // So is a fresh client with the same key (a daemon rebuilding its clients every cycle).
    let rebuilt = dli(&server, fast_options());
    let held = rebuilt
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(held, CloudError::AuthBackoff { .. }), "{held:?}");
    assert_eq!(server.requests().len(), 1);
    server.assert_done();
    // A corrected secret key is a different identity and may try at once.
    let fixed = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new("corrected-secret"),
        security_token: None,
    };
    let corrected = DliClient::new(server.url.clone(), PROJECT, fixed, fast_options()).unwrap();
    let answered = corrected
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert_eq!(
        answered.error_code(),
        Some("TEST.UNEXPECTED"),
        "{answered:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

fn sql_config() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.sql_body = Some("insert into sink select * from source".into());
    config.queue_name = Some("q".into());
    config.checkpoint_mode = CheckpointMode::AtLeastOnce;
    config
        .runtime_config
        .insert("table.exec.state.ttl".into(), "1h".into());
    config.tags.insert("managed-by".into(), "dli-gitops".into());
    config
}

#[tokio::test]
async fn create_is_not_resent_when_the_job_already_exists() {
    let create_path = format!("/v1.0/{PROJECT}/streaming/sql-jobs");
    let server = ScriptServer::start(vec![
        step(
            "POST",
            create_path.clone(),
            json_reply(
                503,
                json!({"error_code": "DLI.0999", "error_msg": "gateway timeout"}),
            ),
        ),
        step(
            "GET",
            jobs_path(),
            json_reply(
                200,
                json!({"is_success": "true", "job_list": {"total_count": 1, "jobs": [
            {"job_id": "77", "name": "clickstream-agg", "status": "job_init", "update_time": 1}]}}),
            ),
        ),
    ])
    .await;
    let id = dli(&server, fast_options())
        .create_sql_job("clickstream-agg", &sql_config())
        .await
        .unwrap();
    assert_eq!(id, 77);
    server.assert_done();
    let requests = server.requests();
    assert_eq!(requests[1].query_value("name"), Some("clickstream-agg"));
    let body = requests[0].json();
    assert_eq!(body["checkpoint_mode"], json!(2));
    assert_eq!(
        body["runtime_config"],
        json!("[{\"key\":\"table.exec.state.ttl\",\"value\":\"1h\"}]")
    );
    assert_eq!(
        body["tags"],
        json!([{"key": "managed-by", "value": "dli-gitops"}])
    );
    assert_eq!(
        requests[0].signed_headers,
        vec!["content-type", "host", "x-project-id", "x-sdk-date"]
    );
}

#[tokio::test]
async fn create_is_resent_only_after_checking_the_job_is_absent() {
    let create_path = format!("/v1.0/{PROJECT}/streaming/flink-jobs");
    let empty = json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}});
    let server = ScriptServer::start(vec![
        step("POST", create_path.clone(), Reply::Drop),
        step("GET", jobs_path(), json_reply(200, empty)),
        step("POST", create_path.clone(), json_reply(200, json!({"is_success": "true", "message": "ok", "job": {"job_id": 88, "status_name": "job_init"}}))),
    ])
    .await;
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
    config.entrypoint = Some("obs://bucket/app.jar".into());
    config.main_class = Some("com.example.Main".into());
    let id = dli(&server, fast_options())
        .create_jar_job("fraud-detector", &config)
        .await
        .unwrap();
    assert_eq!(id, 88);
    server.assert_done();
    assert_eq!(
        server.requests()[2].json()["entrypoint"],
        json!("obs://bucket/app.jar")
    );
}

#[tokio::test]
async fn update_reports_is_success_false_as_a_rejection() {
    let server = ScriptServer::start(vec![step(
        "PUT",
        format!("/v1.0/{PROJECT}/streaming/sql-jobs/5"),
        json_reply(
            200,
            json!({"is_success": "false", "message": "The job is running and cannot be modified"}),
        ),
    )])
    .await;
    let error = dli(&server, fast_options())
        .update_sql_job(5, &sql_config())
        .await
        .unwrap_err();
    assert!(matches!(error, CloudError::Rejected { .. }), "{error:?}");
    assert!(error.to_string().contains("cannot be modified"));
    assert!(
        server.requests()[0].json().get("tags").is_none(),
        "update bodies carry no tags"
    );
    server.assert_done();
}

#[tokio::test]
async fn batch_calls_surface_per_job_failures() {
    let server = ScriptServer::start(vec![
        step(
            "POST",
            format!("{}/run", jobs_path()),
            json_reply(
                200,
                json!([
            {"is_success": "true", "message": "delivered"},
            {"is_success": "false", "message": "queue busy"}]),
            ),
        ),
        step(
            "POST",
            format!("{}/stop", jobs_path()),
            json_reply(200, json!([{"is_success": true, "message": "ok"}])),
        ),
        step(
            "POST",
            format!("{}/run", jobs_path()),
            json_reply(
                400,
                json!([{"error_code": "DLI.13024", "error_msg": "No job-running queue selected"}]),
            ),
        ),
        step(
            "POST",
            format!("{}/delete", jobs_path()),
            json_reply(200, json!([{"is_success": "true"}, {"is_success": "true"}])),
        ),
        step(
            "DELETE",
            format!("{}/9", jobs_path()),
            json_reply(200, json!({"is_success": "true", "message": "deleted"})),
        ),
    ])
    .await;
    let client = dli(&server, fast_options());
    match client.run_jobs(&[1, 2], true).await.unwrap_err() {
        CloudError::BatchFailed {
            failures, total, ..
        } => {
            assert_eq!(total, 2);
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].job_id, 2);
            assert_eq!(failures[0].message, "queue busy");
        }
        other => panic!("expected a batch failure, got {other:?}"),
    }
    client.stop_jobs(&[3], true).await.unwrap();
    let error = client.run_jobs(&[4], false).await.unwrap_err();
    assert_eq!(error.error_code(), Some("DLI.13024"));
    client.delete_jobs(&[5, 6]).await.unwrap();
    client.delete_job(9).await.unwrap();
    client.run_jobs(&[], false).await.unwrap();
    server.assert_done();
    let requests = server.requests();
    assert_eq!(
        requests[0].json(),
        json!({"job_ids": [1, 2], "resume_savepoint": true})
    );
    assert_eq!(
        requests[1].json(),
        json!({"job_ids": [3], "trigger_savepoint": true})
    );
}

#[tokio::test]
async fn export_import_and_savepoints_use_the_documented_path_formats() {
    let server = ScriptServer::start(vec![
        step("POST", format!("{}/export", jobs_path()), json_reply(200, json!({"is_success": "true", "zip_file": ["bkt/backups/a_1582677879475.zip"]}))),
        step("POST", format!("{}/import", jobs_path()), json_reply(200, json!({"is_success": true, "job_mapping": [
            {"old_job_id": "100", "new_job_id": "200", "remark": "imported"}, {"old_job_id": 101, "new_job_id": -1, "remark": "name exists"}]}))),
        step("POST", format!("{}/200/import-savepoint", jobs_path()), json_reply(200, json!({"is_success": true, "message": ""}))),
        step("POST", format!("{}/200/savepoint", jobs_path()), json_reply(200, json!({"is_success": "true", "message": ""}))),
        step("POST", format!("{}/export", jobs_path()), json_reply(200, json!({"is_success": "true", "zip_file": []}))),
    ])
    .await;
    let client = dli(&server, fast_options());
    assert_eq!(
        client
            .export_jobs("obs://bkt/backups", Some(&[100]))
            .await
            .unwrap(),
        vec!["bkt/backups/a_1582677879475.zip"]
    );
    let mapping = client
        .import_jobs("obs://bkt/staging/bundle.zip", true)
        .await
        .unwrap();
    assert_eq!(
        (mapping[0].old_job_id, mapping[0].new_job_id),
        (Some(100), 200)
    );
    assert_eq!(mapping[1].new_job_id, -1);
    client.import_savepoint(200, "bkt/sp/200/").await.unwrap();
    client
        .trigger_savepoint(200, "obs://bkt/sp/")
        .await
        .unwrap();
    assert!(
        client
            .export_jobs("bkt/all", None)
            .await
            .unwrap()
            .is_empty()
    );
    server.assert_done();
    let requests = server.requests();
    assert_eq!(
        requests[0].json(),
        json!({"obs_dir": "bkt/backups", "is_selected": true, "job_selected": [100]})
    );
    assert_eq!(
        requests[1].json(),
        json!({"zip_file": "bkt/staging/bundle.zip", "is_cover": true})
    );
    assert_eq!(
        requests[2].json(),
        json!({"job_id": 200, "savepoint_path": "obs://bkt/sp/200/"})
    );
    assert_eq!(
        requests[3].json(),
        json!({"action": "TRIGGER", "savepoint_path": "bkt/sp/"})
    );
    assert_eq!(
        requests[4].json(),
        json!({"obs_dir": "bkt/all", "is_selected": false})
    );
}

#[tokio::test]
async fn the_rate_limit_spaces_requests() {
    let ok = || {
        step(
            "GET",
            jobs_path(),
            json_reply(
                200,
                json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}}),
            ),
        )
    };
    let server = ScriptServer::start((0..11).map(|_| ok()).collect()).await;
    let options = ClientOptions {
        requests_per_second: 20.0,
        burst: 1,
        ..fast_options()
    };
    let client = dli(&server, options);
    let started = Instant::now();
    for _ in 0..11 {
        client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    }
    // Ten requests after the first at 20/s: at least half a second (a lower bound only).
    assert!(
        started.elapsed() >= Duration::from_millis(480),
        "{:?}",
        started.elapsed()
    );
    server.assert_done();
}

#[tokio::test]
async fn temporary_credentials_send_and_sign_the_security_token() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(200, json!({"is_success": "true", "job_list": {"jobs": []}})),
    )])
    .await;
    let credentials = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new(SECRET_KEY),
        security_token: Some(Secret::new(TOKEN_SECRET)),
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, fast_options()).unwrap();
    client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    server.assert_done();
    let request = &server.requests()[0];
    assert_eq!(request.header("x-security-token"), Some(TOKEN_SECRET));
    assert_eq!(
        request.signed_headers,
        vec!["host", "x-project-id", "x-sdk-date", "x-security-token"]
    );
}

// ---------------------------------------------------------------------------------------------
// Token auth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn password_auth_caches_the_token_and_renews_it_once_when_refused() {
    let token_reply = |token: &str| {
        let expires = (chrono::Utc::now() + chrono::Duration::hours(24)).to_rfc3339();
        json_reply_with(
            201,
            json!({"token": {"expires_at": expires, "methods": ["password"]}}),
            &[("X-Subject-Token", token)],
        )
    };
    let ok = || json_reply(200, json!({"is_success": "true", "job_list": {"jobs": []}}));
    let server = ScriptServer::start(vec![
        step("POST", "/v3/auth/tokens", token_reply("token-one")),
        step("GET", jobs_path(), ok()),
        step("GET", jobs_path(), ok()),
        step("GET", jobs_path(), json_reply(401, json!({"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information: token expires"}))),
        step("POST", "/v3/auth/tokens", token_reply("token-two")),
        step("GET", jobs_path(), ok()),
    ])
    .await;
    let credentials = Credentials::Password {
        user: "alice".into(),
        password: Secret::new("hunter2-DO-NOT-LEAK"),
        domain: "acme".into(),
    };
    let options = ClientOptions {
        iam_endpoint: Some(server.url.clone()),
        ..fast_options()
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, options).unwrap();
    for _ in 0..3 {
        client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    }
    server.assert_done();
    let requests = server.requests();
    let auth = requests[0].json();
    assert_eq!(
        auth["auth"]["identity"]["password"]["user"]["name"],
        json!("alice")
    );
    assert_eq!(
        auth["auth"]["identity"]["password"]["user"]["domain"]["name"],
        json!("acme")
    );
    assert_eq!(auth["auth"]["scope"]["project"]["id"], json!(PROJECT));
    assert_eq!(requests[1].header("x-auth-token"), Some("token-one"));
    assert_eq!(requests[2].header("x-auth-token"), Some("token-one"));
    assert_eq!(requests[5].header("x-auth-token"), Some("token-two"));
    assert!(requests[1].header("authorization").is_none());
}

#[tokio::test]
async fn the_token_is_renewed_before_it_expires() {
    // The token lives one hour and the client renews an hour early: every call needs a new one.
    let token_reply = |token: &str| {
        let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        json_reply_with(
            201,
            json!({"token": {"expires_at": expires}}),
            &[("X-Subject-Token", token)],
        )
    };
    let ok = || json_reply(200, json!({"is_success": "true", "job_list": {"jobs": []}}));
    let server = ScriptServer::start(vec![
        step("POST", "/v3/auth/tokens", token_reply("token-one")),
        step("GET", jobs_path(), ok()),
        step("POST", "/v3/auth/tokens", token_reply("token-two")),
        step("GET", jobs_path(), ok()),
    ])
    .await;
    let credentials = Credentials::Password {
        user: "bob".into(),
        password: Secret::new("pw"),
        domain: "acme".into(),
    };
    let options = ClientOptions {
        iam_endpoint: Some(server.url.clone()),
        token_renew_before: Duration::from_secs(3600),
        ..fast_options()
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, options).unwrap();
    client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    server.assert_done();
    assert_eq!(
        server.requests()[3].header("x-auth-token"),
        Some("token-two")
    );
}

#[tokio::test]
async fn a_refused_password_is_not_retried() {
    let server = ScriptServer::start(vec![step(
        "POST",
        "/v3/auth/tokens",
        json_reply(401, json!({"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}})),
    )])
    .await;
    let credentials = Credentials::Password {
        user: "alice".into(),
        password: Secret::new("wrong-DO-NOT-LEAK"),
        domain: "acme".into(),
    };
    let options = ClientOptions {
        iam_endpoint: Some(server.url.clone()),
        ..fast_options()
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, options).unwrap();
    let error = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_auth_failure(), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("The username or password is wrong"),
        "{error}"
    );
    assert!(error.to_string().contains("iam issue_token"), "{error}");
    assert!(!format!("{error} {error:?}").contains("wrong-DO-NOT-LEAK"));
    assert_eq!(server.requests().len(), 1);
    server.assert_done();
}

#[tokio::test]
async fn password_auth_without_an_iam_endpoint_is_a_clear_configuration_error() {
    let server = ScriptServer::start(vec![]).await;
    let credentials = Credentials::Password {
        user: "alice".into(),
        password: Secret::new("pw"),
        domain: "acme".into(),
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, fast_options()).unwrap();
    let error = client.job_detail(1).await.unwrap_err();
    assert!(error.to_string().contains("iam_endpoint"), "{error}");
    assert!(server.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// DLF
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dlf_import_polls_the_system_task_to_the_end() {
    let dlf_path = format!("/v1/{PROJECT}");
    let server = ScriptServer::start(vec![
        step("POST", format!("{dlf_path}/jobs/import"), json_reply(200, json!({"taskId": "task-1"}))),
        step("GET", format!("{dlf_path}/system-tasks/task-1"), json_reply(200, json!({"id": "task-1", "status": "RUNNING", "subtasks": []}))),
        step("GET", format!("{dlf_path}/system-tasks/task-1"), json_reply(200, json!({"id": "task-1", "status": "SUCCESSFUL", "startTime": 1711647009620_i64,
            "subtasks": [{"id": "s1", "name": "nightly-load", "status": "SUCCESSFUL", "lastUpdate": 1711647009999_i64}]}))),
        step("POST", format!("{dlf_path}/jobs/import"), json_reply(200, json!({"taskId": "task-2"}))),
        step("GET", format!("{dlf_path}/system-tasks/task-2"), json_reply(200, json!({"status": "FAILED", "message": "import failed",
            "subTasks": [{"name": "nightly-load", "status": "FAILED", "message": "DLF.0815 failed to read OBS file", "lastUpdate": "1711647009999"}]}))),
        step("GET", format!("{dlf_path}/system-tasks/task-3"), json_reply(200, json!({"status": "RUNNING"}))),
    ])
    .await;
    let client = DlfClient::new(
        server.url.clone(),
        PROJECT,
        aksk(),
        fast_options(),
        Some("ws-42"),
    )
    .unwrap();
    let request = DlfImportRequest {
        path: "bkt/dlf/jobs.zip".into(),
        same_name_policy: "OVERWRITE".into(),
        jobs_params: vec![],
        settings: Default::default(),
    };
    let task_id = client.import_jobs(&request).await.unwrap();
    let task = client
        .wait_system_task(&task_id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(task.status, SystemTaskStatus::Successful);
    assert_eq!(task.subtasks[0].last_update, Some(1711647009999));
    let failed_task = client.import_jobs(&request).await.unwrap();
    let error = client
        .wait_system_task(&failed_task, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("DLF.0815"), "{error}");
    let timeout = client
        .wait_system_task("task-3", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(timeout, CloudError::TaskTimeout { .. }),
        "{timeout:?}"
    );
    server.assert_done();
    let requests = server.requests();
    assert_eq!(requests[0].json()["path"], json!("obs://bkt/dlf/jobs.zip"));
    assert_eq!(requests[0].json()["sameNamePolicy"], json!("OVERWRITE"));
    assert!(
        requests
            .iter()
            .all(|r| r.header("workspace") == Some("ws-42"))
    );
}

#[tokio::test]
async fn dlf_detail_list_export_and_not_found() {
    let dlf_path = format!("/v1/{PROJECT}");
    let zip = b"PK\x03\x04fake zip".to_vec();
    let server = ScriptServer::start(vec![
        step("GET", format!("{dlf_path}/jobs"), json_reply(200, json!({"total": 2, "jobs": [
            {"name": "nightly-load", "jobType": "BATCH", "status": "NORMAL", "lastUpdateTime": 1711647009620_i64},
            {"name": "stream", "jobType": "REAL_TIME"}]}))),
        step("GET", format!("{dlf_path}/jobs/nightly load"), json_reply(200, json!({"name": "nightly load", "nodes": [], "processType": "BATCH"}))),
        step("GET", format!("{dlf_path}/jobs/gone"), json_reply(400, json!({"error_code": "DLF.0100", "error_msg": "The job does not exist."}))),
        step("POST", format!("{dlf_path}/jobs/nightly load/export"), json_reply(200, json!({"obsPath": "obs://bkt/jobs-storage/x/1"}))),
        step("POST", format!("{dlf_path}/jobs/batch-export"), Reply::Status { status: 200, headers: vec![("content-type".into(), "application/octet-stream".into())], body: zip.clone() }),
    ])
    .await;
    let client = DlfClient::new(server.url.clone(), PROJECT, aksk(), fast_options(), None).unwrap();
    let jobs = client.list_jobs(&Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].last_update, Some(1711647009620));
    assert_eq!(
        client.job_detail("nightly load").await.unwrap()["processType"],
        json!("BATCH")
    );
    let error = client.job_detail("gone").await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert_eq!(
        client
            .export_job("nightly load", "bkt/jobs-storage/")
            .await
            .unwrap()
            .as_deref(),
        Some("obs://bkt/jobs-storage/x/1")
    );
    assert_eq!(
        client.batch_export(&["nightly load".into()]).await.unwrap(),
        Bytes::from(zip)
    );
    server.assert_done();
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("workspace").is_none())
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug_output() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(
            401,
            json!({"error_code": "APIG.0301", "error_msg": "verify aksk signature fail"}),
        ),
    )])
    .await;
    let credentials = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new(SECRET_KEY),
        security_token: Some(Secret::new(TOKEN_SECRET)),
    };
    let client = DliClient::new(
        server.url.clone(),
        PROJECT,
        credentials.clone(),
        fast_options(),
    )
    .unwrap();
    let mut errors: Vec<CloudError> = Vec::new();
    errors.push(
        client
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap_err(),
    );
    errors.push(client.job_detail(1).await.unwrap_err());
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        url
    };
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 1,
            ..fast_options().retry
        },
        ..fast_options()
    };
    errors.push(
        DliClient::new(
            closed.clone(),
            PROJECT,
            credentials.clone(),
            options.clone(),
        )
        .unwrap()
        .job_detail(1)
        .await
        .unwrap_err(),
    );
    errors.push(
        DlfClient::new(closed, PROJECT, credentials.clone(), options, None)
            .unwrap()
            .system_task("t")
            .await
            .unwrap_err(),
    );
    errors.push(
        ObjectStore::from_url(
            "obs://bucket/x",
            &ObsOptions {
                credentials: Some(credentials.clone()),
                ..ObsOptions::default()
            },
        )
        .unwrap_err(),
    );
    let password = Credentials::Password {
        user: "u".into(),
        password: Secret::new(SECRET_KEY),
        domain: "d".into(),
    };
    errors.push(
        ObjectStore::from_url(
            "obs://bucket/x",
            &ObsOptions {
                credentials: Some(password.clone()),
                endpoint: Some(closed_url()),
                ..ObsOptions::default()
            },
        )
        .unwrap_err(),
    );
    assert_eq!(errors.len(), 6);
    for error in &errors {
        for text in [format!("{error}"), format!("{error:?}"), error_chain(error)] {
            assert!(!text.contains(SECRET_KEY), "secret in {text}");
            assert!(!text.contains(TOKEN_SECRET), "token in {text}");
        }
    }
    for text in [
        format!("{client:?}"),
        format!("{credentials:?}"),
        format!("{password:?}"),
        format!("{:?}", fast_options()),
    ] {
        assert!(
            !text.contains(SECRET_KEY) && !text.contains(TOKEN_SECRET),
            "secret in {text}"
        );
    }
}

fn closed_url() -> Url {
    Url::parse("http://127.0.0.1:9").unwrap()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(" <- ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// OBS over a real S3 server
// ---------------------------------------------------------------------------------------------

struct S3Server {
    endpoint: Url,
    task: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_s3(buckets: &[&str]) -> S3Server {
    let root = tempfile::tempdir().unwrap();
    for bucket in buckets {
        std::fs::create_dir_all(root.path().join(bucket)).unwrap();
    }
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    S3Server {
        endpoint,
        task,
        _root: root,
    }
}

#[tokio::test]
async fn obs_path_works_over_a_real_s3_server() {
    let server = start_s3(&["dli-gitops-staging"]).await;
    let options = ObsOptions {
        endpoint: Some(server.endpoint.clone()),
        region: "cn-north-4".into(),
        credentials: Some(aksk()),
        ..ObsOptions::default()
    };
    let store = ObjectStore::from_url("obs://dli-gitops-staging/dev/", &options).unwrap();
    let bundle = Bytes::from(vec![7u8; 300_000]);
    store
        .put("bundles/rev-1.zip", bundle.clone())
        .await
        .unwrap();
    store
        .put("bundles/rev-2.zip", Bytes::from_static(b"PK two"))
        .await
        .unwrap();
    store
        .put("other/readme.txt", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(store.get("bundles/rev-1.zip").await.unwrap(), bundle);
    assert_eq!(
        store.list("bundles").await.unwrap(),
        vec!["bundles/rev-1.zip", "bundles/rev-2.zip"]
    );
    assert_eq!(store.list("").await.unwrap().len(), 3);
    assert_eq!(
        store.url_of("bundles/rev-1.zip"),
        "obs://dli-gitops-staging/dev/bundles/rev-1.zip"
    );
    store.delete("bundles/rev-1.zip").await.unwrap();
    let missing = store.get("bundles/rev-1.zip").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(!missing.is_retryable());

    // A wrong secret key is refused by the server and reported without the key.
    let wrong = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new("wrong-secret-DO-NOT-LEAK"),
        security_token: None,
    };
    let refused_store = ObjectStore::from_url(
        "obs://dli-gitops-staging/dev/",
        &ObsOptions {
            credentials: Some(wrong),
            ..options.clone()
        },
    )
    .unwrap();
    let refused = refused_store.get("bundles/rev-2.zip").await.unwrap_err();
    assert!(!error_chain(&refused).contains("wrong-secret-DO-NOT-LEAK"));
    assert!(!refused.is_not_found());
}
