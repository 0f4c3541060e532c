//! Integration tests of the emulator over HTTP on loopback: every DLI, DLF, IAM and
//! introspection endpoint, the error shapes, authentication, isolation, persistence, faults
//! and the S3 endpoint. Each test starts its own emulator on port 0 and shuts it down.

use std::io::Write;
use std::path::Path;

use dli_gitops::bundle::{self, ZipLimits};
use dli_gitops::cloud::signer::{self, SignableRequest};
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, DEV_USER_NAME, DEV_USER_PASSWORD, Emulator,
    EmulatorConfig, EmulatorCredential, EmulatorDelays, EmulatorFaults, EmulatorHandle,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A minimal signing client (the real one lives in `cloud`, built elsewhere).
struct Client {
    http: reqwest::Client,
    base: String,
    access_key: String,
    secret_key: String,
    project_id: String,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    bytes: Vec<u8>,
}

impl Client {
    fn dev(handle: &EmulatorHandle) -> Client {
        Client::at(&handle.dli_url())
    }

    fn at(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.to_string(),
            access_key: DEV_ACCESS_KEY.into(),
            secret_key: DEV_SECRET_KEY.into(),
            project_id: DEV_PROJECT_ID.into(),
        }
    }

    fn with_keys(
        handle: &EmulatorHandle,
        access_key: &str,
        secret_key: &str,
        project_id: &str,
    ) -> Client {
        Client {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            project_id: project_id.into(),
            ..Client::dev(handle)
        }
    }

    /// `path` is relative to the project (`streaming/jobs`), or absolute when it starts with `/`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        self.call_raw(
            method,
            path,
            query,
            body.map(|value| value.to_string().into_bytes()),
            None,
        )
        .await
        .expect("the request reaches the emulator")
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        sdk_date: Option<String>,
    ) -> Result<Answer, reqwest::Error> {
        let path = if path.starts_with('/') {
            path.to_string()
        } else if path.starts_with("streaming") || path.starts_with("dli/") {
            format!("/v1.0/{}/{path}", self.project_id)
        } else {
            format!("/v1/{}/{path}", self.project_id)
        };
        let body = body.unwrap_or_default();
        let host = self.base.trim_start_matches("http://").to_string();
        let date =
            sdk_date.unwrap_or_else(|| chrono::Utc::now().format(signer::DATE_FORMAT).to_string());
        let headers = vec![
            (
                "Content-Type".to_string(),
                "application/json;charset=UTF-8".to_string(),
            ),
            ("Host".to_string(), host),
            ("X-Project-Id".to_string(), self.project_id.clone()),
            ("X-Sdk-Date".to_string(), date),
        ];
        let query_pairs: Vec<(String, String)> = query
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        // The signature covers the decoded path; the URL carries it encoded.
        let decoded_path = percent_encoding::percent_decode_str(&path)
            .decode_utf8_lossy()
            .into_owned();
        let authorization = signer::sign(
            &self.access_key,
            &self.secret_key,
            &SignableRequest {
                method: method.as_str(),
                path: &decoded_path,
                query: &query_pairs,
                headers: &headers,
                body: &body,
            },
            &["content-type", "host", "x-project-id", "x-sdk-date"],
        )
        .unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query)
            .header("Authorization", authorization)
            .body(body);
        for (name, value) in &headers {
            if name != "Host" {
                request = request.header(name, value);
            }
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?.to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
            bytes,
        })
    }
}

async fn start(data_dir: &Path) -> EmulatorHandle {
    start_with(EmulatorConfig::for_tests(data_dir.to_path_buf())).await
}

async fn start_with(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::start(config).await.expect("the emulator starts")
}

fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "body: {}", answer.body);
    assert_eq!(answer.body["error_code"], code, "body: {}", answer.body);
    assert!(
        answer.body["error_msg"]
            .as_str()
            .is_some_and(|message| !message.is_empty())
    );
    assert!(answer.headers.contains_key("x-request-id"));
}

fn sql_job(name: &str) -> Value {
    json!({"name": name, "queue_name": "q1", "sql_body": "SELECT 1;", "cu_number": 2,
           "checkpoint_mode": 1, "tags": [{"key": "managed-by", "value": "dli-gitops"}]})
}

async fn create(client: &Client, body: Value) -> i64 {
    let answer = client
        .call(Method::POST, "streaming/sql-jobs", &[], Some(body))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["job"]["job_id"].as_i64().unwrap()
}

async fn detail(client: &Client, job_id: i64) -> Value {
    let answer = client
        .call(Method::GET, &format!("streaming/jobs/{job_id}"), &[], None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["job_detail"].clone()
}

fn write_object(handle: &EmulatorHandle, bucket: &str, key: &str, bytes: &[u8]) {
    let path = handle.data_dir().join("obs").join(bucket).join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn zip_with(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn dlf_bundle(name: &str, nodes: Value) -> Vec<u8> {
    bundle::write_dlf_zip(&[bundle::DlfJobEntry {
        name: name.into(),
        job: json!({"name": name, "processType": "BATCH", "nodes": nodes,
                    "params": [{"name": "env", "value": "dev"}], "schedule": {"type": "EXECUTE_ONCE"}}),
        scripts: [("load_sql".to_string(), json!({"name": "load_sql", "content": "select 1"}))].into_iter().collect(),
        resources: Default::default(),
    }])
    .unwrap()
}

mod dlf_and_s3;
mod flink;
mod refusals;
mod state_and_process;
