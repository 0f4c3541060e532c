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

mod dlf_and_obs;
mod dli;
mod secrets;
mod signing_and_tokens;
