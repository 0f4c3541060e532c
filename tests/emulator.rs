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

const OTHER_ACCESS_KEY: &str = "OTHERACCESSKEY";
const OTHER_SECRET_KEY: &str = "other-secret";
const OTHER_PROJECT_ID: &str = "99999999999999999999999999999999";

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

#[tokio::test]
async fn flink_job_lifecycle_carries_a_savepoint_across_a_reimport() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(temp.path()).await;
    let client = Client::dev(&handle);

    let sql_id = create(&client, sql_job("clicks")).await;
    let jar = client
        .call(
            Method::POST,
            "streaming/flink-jobs",
            &[],
            Some(json!({"name": "fraud", "entrypoint": "obs://b/app.jar", "main_class": "Main"})),
        )
        .await;
    let jar_id = jar.body["job"]["job_id"].as_i64().unwrap();
    assert_eq!(jar.body["is_success"], "true");

    let page = client
        .call(
            Method::GET,
            "streaming/jobs",
            &[("limit", "1"), ("offset", "1"), ("order", "asc")],
            None,
        )
        .await;
    assert_eq!(page.body["job_list"]["total_count"], 2);
    assert_eq!(page.body["job_list"]["jobs"][0]["job_id"], jar_id);
    assert!(page.body["job_list"]["jobs"][0].get("job_config").is_none());
    let filtered = client
        .call(
            Method::GET,
            "streaming/jobs",
            &[("job_type", "flink_jar_job"), ("show_detail", "true")],
            None,
        )
        .await;
    assert_eq!(
        filtered.body["job_list"]["jobs"][0]["job_config"]["entrypoint"],
        "obs://b/app.jar"
    );
    for (key, value, expected) in [
        ("name", "cli", 1),
        ("status", "job_running", 0),
        ("queue_name", "q1", 1),
        ("tags", "managed-by=dli-gitops", 1),
    ] {
        let answer = client
            .call(Method::GET, "streaming/jobs", &[(key, value)], None)
            .await;
        assert_eq!(
            answer.body["job_list"]["total_count"], expected,
            "filter {key}={value}"
        );
    }

    let job = detail(&client, sql_id).await;
    assert_eq!(job["status"], "job_init");
    assert_eq!(job["job_config"]["checkpoint_mode"], "exactly_once");
    assert_eq!(job["create_time"].as_i64().unwrap().to_string().len(), 13);

    let updated = client
        .call(
            Method::PUT,
            &format!("streaming/sql-jobs/{sql_id}"),
            &[],
            Some(json!({"cu_number": 6, "runtime_config": "[{\"key\":\"a\",\"value\":\"b\"}]"})),
        )
        .await;
    assert_eq!(updated.body["is_success"], "true");
    let job = detail(&client, sql_id).await;
    assert_eq!(job["job_config"]["cu_number"], 6);
    assert_eq!(job["queue_name"], "q1");
    let wrong_endpoint = client
        .call(
            Method::PUT,
            &format!("streaming/flink-jobs/{sql_id}"),
            &[],
            Some(json!({"cu_number": 3})),
        )
        .await;
    assert_error(&wrong_endpoint, StatusCode::BAD_REQUEST, "DLI.0001");

    let ran = client
        .call(
            Method::POST,
            "streaming/jobs/run",
            &[],
            Some(json!({"job_ids": [sql_id, 424242], "resume_savepoint": false})),
        )
        .await;
    assert_eq!(ran.body[0]["is_success"], "true");
    assert_eq!(ran.body[1]["is_success"], "false");
    assert_eq!(detail(&client, sql_id).await["status"], "job_running");
    let again = client
        .call(
            Method::POST,
            "streaming/jobs/run",
            &[],
            Some(json!({"job_ids": [sql_id]})),
        )
        .await;
    assert_eq!(again.body[0]["is_success"], "false");

    let triggered = client
        .call(
            Method::POST,
            &format!("streaming/jobs/{sql_id}/savepoint"),
            &[],
            Some(json!({"action": "TRIGGER", "savepoint_path": "dli-gitops-savepoints/manual/"})),
        )
        .await;
    assert_eq!(triggered.body["is_success"], "true");
    assert!(
        handle
            .data_dir()
            .join("obs/dli-gitops-savepoints/manual/_metadata")
            .is_file()
    );
    assert_eq!(detail(&client, sql_id).await["status"], "job_running");

    let stopped = client
        .call(
            Method::POST,
            "streaming/jobs/stop",
            &[],
            Some(json!({"job_ids": [sql_id], "trigger_savepoint": true})),
        )
        .await;
    assert_eq!(stopped.body[0]["is_success"], "true");
    let job = detail(&client, sql_id).await;
    assert_eq!(job["status"], "job_cancel_success");
    let savepoint = job["savepoint_path"].as_str().unwrap().to_string();
    let prefix = format!("obs://dli-gitops-savepoints/jobs/savepoint/{sql_id}/");
    assert!(
        savepoint.starts_with(&prefix) && savepoint.ends_with('/'),
        "{savepoint}"
    );
    let metadata = handle
        .data_dir()
        .join("obs/dli-gitops-savepoints")
        .join(&savepoint["obs://dli-gitops-savepoints/".len()..])
        .join("_metadata");
    assert!(metadata.is_file(), "{}", metadata.display());

    let exported = client
        .call(Method::POST, "streaming/jobs/export", &[], Some(json!({"obs_dir": "dli-gitops-backups/run1", "is_selected": true, "job_selected": [sql_id]})))
        .await;
    let zip_file = exported.body["zip_file"][0].as_str().unwrap().to_string();
    assert!(zip_file.starts_with("dli-gitops-backups/run1/clicks_") && zip_file.ends_with(".zip"));
    let bytes = std::fs::read(handle.data_dir().join("obs").join(&zip_file)).unwrap();

    // DLI imports only what DLI exported: the export re-imports, a zip anyone else wrote does
    // not (dli_01_0461), even one laid out like an export or altered by one byte.
    let mut altered = bytes.clone();
    let middle = altered.len() / 3;
    altered[middle] ^= 0x55;
    let authored = zip_with(&[(
        "jobs/clicks.json",
        br#"{"name":"clicks","sql_body":"select 1"}"#,
    )]);
    for (name, zip) in [("altered.zip", &altered), ("authored.zip", &authored)] {
        write_object(
            &handle,
            "dli-gitops-staging",
            &format!("authored/{name}"),
            zip,
        );
        let refused = client
            .call(
                Method::POST,
                "streaming/jobs/import",
                &[],
                Some(json!({"zip_file": format!("dli-gitops-staging/authored/{name}"), "is_cover": true})),
            )
            .await;
        assert_error(&refused, StatusCode::BAD_REQUEST, "DLI.0001");
        assert!(
            refused
                .body
                .to_string()
                .contains("only jobs exported from DLI"),
            "{}",
            refused.body
        );
    }
    assert_eq!(
        detail(&client, sql_id).await["status"],
        "job_cancel_success"
    );

    let bundle_bytes = bytes;
    write_object(
        &handle,
        "dli-gitops-staging",
        "upgrade/clicks.zip",
        &bundle_bytes,
    );
    let clash = client
        .call(
            Method::POST,
            "streaming/jobs/import",
            &[],
            Some(json!({"zip_file": "dli-gitops-staging/upgrade/clicks.zip"})),
        )
        .await;
    assert_eq!(clash.body["job_mapping"][0]["new_job_id"], -1);
    let imported = client
        .call(
            Method::POST,
            "streaming/jobs/import",
            &[],
            Some(json!({"zip_file": "dli-gitops-staging/upgrade", "is_cover": true})),
        )
        .await;
    assert_eq!(imported.body["is_success"], "true", "{}", imported.body);
    assert_eq!(imported.body["job_mapping"][0]["new_job_id"], sql_id);
    let job = detail(&client, sql_id).await;
    assert_eq!(job["status"], "job_init");
    assert_eq!(job["job_config"]["cu_number"], 6, "the exported definition");
    assert!(
        job.get("savepoint_path").is_none(),
        "a covered job must import its savepoint again"
    );

    let missing_savepoint = client
        .call(
            Method::POST,
            &format!("streaming/jobs/{sql_id}/import-savepoint"),
            &[],
            Some(json!({"job_id": sql_id, "savepoint_path": "obs://dli-gitops-savepoints/none/"})),
        )
        .await;
    assert_error(&missing_savepoint, StatusCode::BAD_REQUEST, "DLI.0001");
    let mismatched = client
        .call(
            Method::POST,
            &format!("streaming/jobs/{sql_id}/import-savepoint"),
            &[],
            Some(json!({"job_id": jar_id, "savepoint_path": savepoint})),
        )
        .await;
    assert_error(&mismatched, StatusCode::BAD_REQUEST, "DLI.0001");
    let restored = client
        .call(
            Method::POST,
            &format!("streaming/jobs/{sql_id}/import-savepoint"),
            &[],
            Some(json!({"job_id": sql_id.to_string(), "savepoint_path": savepoint})),
        )
        .await;
    assert_eq!(restored.body["is_success"], "true", "{}", restored.body);
    client
        .call(
            Method::POST,
            "streaming/jobs/run",
            &[],
            Some(json!({"job_ids": [sql_id], "resume_savepoint": true})),
        )
        .await;
    let running_import = client
        .call(
            Method::POST,
            &format!("streaming/jobs/{sql_id}/import-savepoint"),
            &[],
            Some(json!({"job_id": sql_id, "savepoint_path": savepoint})),
        )
        .await;
    assert_error(&running_import, StatusCode::BAD_REQUEST, "DLI.0001");
    let over_running = client
        .call(
            Method::POST,
            "streaming/jobs/import",
            &[],
            Some(json!({"zip_file": "dli-gitops-staging/upgrade/clicks.zip", "is_cover": true})),
        )
        .await;
    assert_error(&over_running, StatusCode::BAD_REQUEST, "DLI.0001");

    let runs = reqwest::get(format!(
        "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{sql_id}/runs",
        handle.dli_url()
    ))
    .await
    .unwrap()
    .json::<Value>()
    .await
    .unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["stop_savepoint"], savepoint.as_str());
    assert_eq!(runs[1]["resume_savepoint"], true);
    assert_eq!(runs[1]["restored_from"], savepoint.as_str());

    let tags = client
        .call(
            Method::POST,
            &format!("/v3/{DEV_PROJECT_ID}/dli_flink_job/{jar_id}/tags/create"),
            &[],
            Some(json!({"tags": [{"key": "team", "value": "risk"}]})),
        )
        .await;
    assert_eq!(tags.status, StatusCode::NO_CONTENT);
    let tags = client
        .call(
            Method::GET,
            &format!("/v3/{DEV_PROJECT_ID}/dli_flink_job/{jar_id}/tags"),
            &[],
            None,
        )
        .await;
    assert_eq!(tags.body["tags"], json!([{"key": "team", "value": "risk"}]));
    client
        .call(
            Method::POST,
            &format!("/v3/{DEV_PROJECT_ID}/dli_flink_job/{jar_id}/tags/delete"),
            &[],
            Some(json!({"tags": [{"key": "team"}]})),
        )
        .await;
    let tags = client
        .call(
            Method::GET,
            &format!("/v3/{DEV_PROJECT_ID}/dli_flink_job/{jar_id}/tags"),
            &[],
            None,
        )
        .await;
    assert_eq!(tags.body["tags"], json!([]));
    let authorize = client
        .call(
            Method::POST,
            "dli/obs-authorize",
            &[],
            Some(json!({"obs_buckets": ["dli-gitops-staging"]})),
        )
        .await;
    assert_eq!(authorize.body["is_success"], true);

    let deleted = client
        .call(
            Method::DELETE,
            &format!("streaming/jobs/{jar_id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.body["is_success"], "true");
    let batch = client
        .call(
            Method::POST,
            "streaming/jobs/delete",
            &[],
            Some(json!({"job_ids": [sql_id, jar_id]})),
        )
        .await;
    assert_eq!(
        batch.body,
        json!([{"is_success": "true", "message": "The job is deleted successfully."}, {"is_success": "false", "message": format!("The job does not exist: job_id={jar_id}")}])
    );
    assert_error(
        &client
            .call(Method::GET, &format!("streaming/jobs/{sql_id}"), &[], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.16001",
    );

    let stats = reqwest::get(format!("{}/_emulator/v1/stats", handle.dli_url()))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    // Three imports of the export, two refused (an altered export, an authored zip).
    assert_eq!(stats["operations"]["ImportFlinkJobs"], 5);
    assert_eq!(stats["operations"]["BatchRunFlinkJobs"], 3);
    assert!(stats["total"].as_u64().unwrap() > 30);
    handle.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_the_service_error_shapes_and_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.limits.max_body_bytes = 64 * 1024;
    config.limits.zip.max_entry_bytes = 256 * 1024;
    let handle = start_with(config).await;
    let client = Client::dev(&handle);
    let post = |body: &'static [u8]| {
        client.call_raw(
            Method::POST,
            "streaming/sql-jobs",
            &[],
            Some(body.to_vec()),
            None,
        )
    };

    assert_error(
        &post(b"{not json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &post(b"").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &post(b"[1,2]").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &post(br#"{"name": "x", "cu_number": "four"}"#)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &post(br#"{"name": "x", "checkpoint_mode": 7}"#)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &post(br#"{"name": ""}"#).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &post(br#"{"name": "a/b"}"#).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    let long_name = json!({"name": "n".repeat(58)});
    assert_error(
        &client
            .call(Method::POST, "streaming/sql-jobs", &[], Some(long_name))
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    let oversized = client
        .call_raw(
            Method::POST,
            "streaming/sql-jobs",
            &[],
            Some(vec![b' '; 70 * 1024]),
            None,
        )
        .await
        .unwrap();
    assert_error(&oversized, StatusCode::PAYLOAD_TOO_LARGE, "DLI.0001");
    assert_error(
        &client
            .call(Method::GET, "streaming/jobs/abc", &[], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &client
            .call(Method::GET, "streaming/jobs/77", &[], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.16001",
    );
    assert_error(
        &client
            .call(Method::DELETE, "streaming/jobs/77", &[], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.16001",
    );
    assert_error(
        &client
            .call(
                Method::PUT,
                "streaming/sql-jobs/77",
                &[],
                Some(json!({"cu_number": 3})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.16001",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/77/savepoint",
                &[],
                Some(json!({"action": "TRIGGER"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.16001",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/run",
                &[],
                Some(json!({"job_ids": []})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/stop",
                &[],
                Some(json!({"job_ids": "1"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &client
            .call(Method::GET, "streaming/jobs", &[("limit", "500")], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &client
            .call(Method::GET, "streaming/jobs", &[("offset", "x")], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    let unknown_route = client
        .call(Method::GET, "streaming/nothing-here", &[], None)
        .await;
    assert_error(&unknown_route, StatusCode::NOT_FOUND, "APIG.0101");
    assert!(unknown_route.body["request_id"].is_string());
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/export",
                &[],
                Some(json!({"obs_dir": "no-such-bucket", "is_selected": false})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/export",
                &[],
                Some(json!({"obs_dir": "dli-gitops-backups", "is_selected": true})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );

    // Hostile and broken zips: each refused with a 400, and no job appears.
    let good_id = create(&client, sql_job("good")).await;
    let exported = client
        .call(Method::POST, "streaming/jobs/export", &[], Some(json!({"obs_dir": "dli-gitops-backups/good", "is_selected": true, "job_selected": [good_id]})))
        .await;
    let good_zip = exported.body["zip_file"][0].as_str().unwrap().to_string();
    let good = std::fs::read(handle.data_dir().join("obs").join(&good_zip)).unwrap();
    client
        .call(
            Method::DELETE,
            &format!("streaming/jobs/{good_id}"),
            &[],
            None,
        )
        .await;
    let bomb = zip_with(&[("jobs/bomb.json", &vec![b' '; 1024 * 1024])]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "traversal.zip",
            zip_with(&[("../../escape.json", br#"{"name":"escape"}"#)]),
        ),
        (
            "absolute.zip",
            zip_with(&[("/etc/job.json", br#"{"name":"abs"}"#)]),
        ),
        ("bomb.zip", bomb),
        ("garbage.zip", b"PK\x03\x04 this is not a zip".to_vec()),
        (
            "badvalue.zip",
            zip_with(&[("jobs/x.json", br#"{"name":"x","checkpoint_mode":9}"#)]),
        ),
    ];
    for (name, bytes) in &cases {
        write_object(
            &handle,
            "dli-gitops-staging",
            &format!("hostile/{name}"),
            bytes,
        );
        let answer = client
            .call(Method::POST, "streaming/jobs/import", &[], Some(json!({"zip_file": format!("dli-gitops-staging/hostile/{name}"), "is_cover": true})))
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "DLI.0001");
    }
    // A folder import is all or nothing: one bad zip next to a good one imports neither.
    write_object(&handle, "dli-gitops-staging", "mixed/a-good.zip", &good);
    write_object(
        &handle,
        "dli-gitops-staging",
        "mixed/b-bad.zip",
        &cases[0].1,
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/import",
                &[],
                Some(json!({"zip_file": "dli-gitops-staging/mixed"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    write_object(&handle, "dli-gitops-staging", "notzip/readme.txt", b"hello");
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/import",
                &[],
                Some(json!({"zip_file": "dli-gitops-staging/notzip"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/import",
                &[],
                Some(json!({"zip_file": "dli-gitops-staging/none.zip"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0002",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "streaming/jobs/import",
                &[],
                Some(json!({"zip_file": "dli-gitops-staging/../x.zip"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.0001",
    );
    let listed = client.call(Method::GET, "streaming/jobs", &[], None).await;
    assert_eq!(
        listed.body["job_list"]["total_count"], 0,
        "nothing was imported: {}",
        listed.body
    );
    assert!(!temp.path().join("escape.json").exists());
    handle.shutdown().await;
}

#[tokio::test]
async fn authentication_tokens_and_project_isolation() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.credentials.push(EmulatorCredential {
        access_key: OTHER_ACCESS_KEY.into(),
        secret_key: OTHER_SECRET_KEY.into(),
        project_id: OTHER_PROJECT_ID.into(),
    });
    let handle = start_with(config).await;
    let client = Client::dev(&handle);
    let job_id = create(&client, sql_job("private")).await;

    let wrong_secret = Client::with_keys(&handle, DEV_ACCESS_KEY, "wrong", DEV_PROJECT_ID);
    let answer = wrong_secret
        .call(Method::GET, "streaming/jobs", &[], None)
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "APIG.0301");
    assert_eq!(
        answer.body["error_msg"],
        "Incorrect IAM authentication information: verify aksk signature fail"
    );
    assert_eq!(
        answer.body["request_id"].as_str(),
        answer.headers["x-request-id"].to_str().ok()
    );
    let unknown_key = Client::with_keys(&handle, "NOSUCHKEY", "x", DEV_PROJECT_ID);
    assert_error(
        &unknown_key
            .call(Method::GET, "streaming/jobs", &[], None)
            .await,
        StatusCode::UNAUTHORIZED,
        "APIG.0301",
    );
    let stale = (chrono::Utc::now() - chrono::Duration::minutes(16))
        .format(signer::DATE_FORMAT)
        .to_string();
    let answer = client
        .call_raw(Method::GET, "streaming/jobs", &[], None, Some(stale))
        .await
        .unwrap();
    assert_error(&answer, StatusCode::UNAUTHORIZED, "APIG.0301");
    let fresh_enough = (chrono::Utc::now() - chrono::Duration::minutes(14))
        .format(signer::DATE_FORMAT)
        .to_string();
    let answer = client
        .call_raw(Method::GET, "streaming/jobs", &[], None, Some(fresh_enough))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let unsigned = reqwest::get(format!(
        "{}/v1.0/{DEV_PROJECT_ID}/streaming/jobs",
        handle.dli_url()
    ))
    .await
    .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    let other = Client::with_keys(
        &handle,
        OTHER_ACCESS_KEY,
        OTHER_SECRET_KEY,
        OTHER_PROJECT_ID,
    );
    assert_eq!(
        other
            .call(Method::GET, "streaming/jobs", &[], None)
            .await
            .body["job_list"]["total_count"],
        0
    );
    assert_error(
        &other
            .call(Method::GET, &format!("streaming/jobs/{job_id}"), &[], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLI.16001",
    );
    let cross = other
        .call(
            Method::GET,
            &format!("/v1.0/{DEV_PROJECT_ID}/streaming/jobs"),
            &[],
            None,
        )
        .await;
    assert_error(&cross, StatusCode::FORBIDDEN, "APIG.0302");

    let http = reqwest::Client::new();
    let token_body = |password: &str| json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": DEV_USER_NAME, "password": password, "domain": {"name": "dli-gitops-dev"}}}}, "scope": {"project": {"id": DEV_PROJECT_ID}}}});
    let refused = http
        .post(format!("{}/v3/auth/tokens", handle.iam_url()))
        .json(&token_body("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let granted = http
        .post(format!("{}/v3/auth/tokens", handle.iam_url()))
        .json(&token_body(DEV_USER_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), StatusCode::CREATED);
    let token = granted.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = granted.json().await.unwrap();
    assert_eq!(body["token"]["project"]["id"], DEV_PROJECT_ID);
    let with_token = http
        .get(format!(
            "{}/v1.0/{DEV_PROJECT_ID}/streaming/jobs/{job_id}",
            handle.dli_url()
        ))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
    let bad_token = http
        .get(format!(
            "{}/v1.0/{DEV_PROJECT_ID}/streaming/jobs",
            handle.dli_url()
        ))
        .header("X-Auth-Token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    let projects = client
        .call(Method::GET, "/v3/projects", &[("name", "cn-north-4")], None)
        .await;
    assert_eq!(projects.body["projects"][0]["id"], DEV_PROJECT_ID);
    assert_eq!(projects.body["projects"][0]["name"], "cn-north-4");
    handle.shutdown().await;
}

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

#[tokio::test]
async fn dlf_import_tasks_listing_and_exports() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.delays.dlf_task_ms = 300;
    let handle = start_with(config).await;
    let client = Client::dev(&handle);
    let nodes = json!([{"name": "load", "type": "DWSSQL", "properties": [{"name": "connectionName", "value": "dev_dws"}, {"name": "scriptName", "value": "load_sql"}]}]);
    write_object(
        &handle,
        "dli-gitops-staging",
        "dlf/nightly.zip",
        &dlf_bundle("nightly", nodes.clone()),
    );
    let import = json!({"path": "obs://dli-gitops-staging/dlf/nightly.zip", "params": {"env": "prod"}, "sameNamePolicy": "OVERWRITE",
                        "jobsParam": [{"name": "nightly", "params": {}}], "executeUser": "ops", "targetStatus": "SUBMITTED",
                        "approvers": [{"approverName": "lead"}], "resources": [{"name": "dev_dws", "type": "DWS_CONNECTION", "replace": "prod_dws"}]});
    let answer = client
        .call(Method::POST, "jobs/import", &[], Some(import.clone()))
        .await;
    let task_id = answer.body["taskId"].as_str().unwrap().to_string();
    let task = client
        .call(Method::GET, &format!("system-tasks/{task_id}"), &[], None)
        .await;
    assert_eq!(task.body["status"], "RUNNING");
    assert_error(
        &client.call(Method::GET, "jobs/nightly", &[], None).await,
        StatusCode::BAD_REQUEST,
        "DLF.0100",
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let task = client
        .call(Method::GET, &format!("system-tasks/{task_id}"), &[], None)
        .await;
    assert_eq!(task.body["status"], "SUCCESSFUL", "{}", task.body);
    assert_eq!(task.body["subtasks"][0]["status"], "SUCCESSFUL");
    assert_eq!(task.body["endTime"].as_i64().unwrap().to_string().len(), 13);
    let job = client.call(Method::GET, "jobs/nightly", &[], None).await;
    assert_eq!(job.body["params"][0]["value"], "prod");
    assert_eq!(job.body["nodes"][0]["properties"][0]["value"], "prod_dws");
    assert_eq!(job.body["targetStatus"], "SUBMITTED");
    let listed = client
        .call(Method::GET, "jobs", &[("jobName", "night")], None)
        .await;
    assert_eq!(listed.body["total"], 1);

    // A job without nodes fails the whole task, and changes nothing.
    write_object(
        &handle,
        "dli-gitops-staging",
        "dlf/empty.zip",
        &dlf_bundle("nightly", json!([])),
    );
    let failing = client.call(Method::POST, "jobs/import", &[], Some(json!({"path": "obs://dli-gitops-staging/dlf/empty.zip", "sameNamePolicy": "OVERWRITE"}))).await;
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let task = client
        .call(
            Method::GET,
            &format!("system-tasks/{}", failing.body["taskId"].as_str().unwrap()),
            &[],
            None,
        )
        .await;
    assert_eq!(task.body["status"], "FAILED");
    assert!(
        task.body["subtasks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("DLF.1006")
    );
    assert_eq!(
        client
            .call(Method::GET, "jobs/nightly", &[], None)
            .await
            .body["nodes"][0]["name"],
        "load"
    );

    assert_error(
        &client
            .call(
                Method::POST,
                "jobs/import",
                &[],
                Some(json!({"path": "obs://dli-gitops-staging/none.zip"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLF.0815",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "jobs/import",
                &[],
                Some(json!({"path": "dli-gitops-staging/dlf/nightly.zip"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLF.0803",
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "jobs/import",
                &[],
                Some(json!({"path": "obs://no-bucket-here/x.zip"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLF.1242",
    );
    assert_error(
        &client
            .call(Method::POST, "jobs/import", &[], Some(json!({"path": 5})))
            .await,
        StatusCode::BAD_REQUEST,
        "DLF.3051",
    );
    assert_error(&client.call(Method::POST, "jobs/import", &[], Some(json!({"path": "obs://dli-gitops-staging/dlf/nightly.zip", "sameNamePolicy": "MERGE"}))).await, StatusCode::BAD_REQUEST, "DLF.3051");
    write_object(
        &handle,
        "dli-gitops-staging",
        "dlf/evil.zip",
        &zip_with(&[("../jobs/x.job", b"{}")]),
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "jobs/import",
                &[],
                Some(json!({"path": "obs://dli-gitops-staging/dlf/evil.zip"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLF.0815",
    );
    assert_error(
        &client
            .call(Method::GET, "system-tasks/unknown", &[], None)
            .await,
        StatusCode::BAD_REQUEST,
        "DLF.0810",
    );

    let exported = client
        .call(Method::POST, "jobs/nightly/export", &[], None)
        .await;
    assert_eq!(exported.status, StatusCode::OK);
    assert_eq!(exported.headers["content-type"], "application/octet-stream");
    let entries = bundle::read_dlf_zip(&exported.bytes, &ZipLimits::default()).unwrap();
    assert_eq!(entries[0].name, "nightly");
    assert!(entries[0].scripts.contains_key("load_sql"));
    let to_obs = client
        .call(
            Method::POST,
            "jobs/nightly/export",
            &[],
            Some(json!({"obsPath": "obs://dli-gitops-backups/dlf/", "exportDepend": false})),
        )
        .await;
    let obs_path = to_obs.body["obsPath"].as_str().unwrap();
    let written = std::fs::read(
        handle
            .data_dir()
            .join("obs")
            .join(obs_path.trim_start_matches("obs://")),
    )
    .unwrap();
    assert!(
        bundle::read_dlf_zip(&written, &ZipLimits::default()).unwrap()[0]
            .scripts
            .is_empty()
    );
    let batch = client
        .call(
            Method::POST,
            "jobs/batch-export",
            &[],
            Some(json!({"jobList": ["nightly"]})),
        )
        .await;
    let entries = bundle::read_zip_entries(&batch.bytes, &ZipLimits::default()).unwrap();
    assert!(
        entries
            .iter()
            .any(|entry| entry.path == "jobs/nightly/nightly.job")
    );
    assert_error(
        &client
            .call(
                Method::POST,
                "jobs/batch-export",
                &[],
                Some(json!({"jobList": ["ghost"]})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DLF.0100",
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn the_s3_endpoint_serves_the_data_directory_to_our_s3_client() {
    use object_store::{ObjectStore, PutPayload, path::Path as ObjectPath};
    let temp = tempfile::tempdir().unwrap();
    let handle = start(temp.path()).await;
    let store = |secret: &str| {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(handle.s3_url())
            .with_allow_http(true)
            .with_region("cn-north-4")
            .with_bucket_name("dli-gitops-staging")
            .with_access_key_id(DEV_ACCESS_KEY)
            .with_secret_access_key(secret)
            .build()
            .unwrap()
    };
    let good = store(DEV_SECRET_KEY);
    let client = Client::dev(&handle);
    // A genuine export, fetched and uploaded again through S3, imports (after the job is gone).
    let job_id = create(&client, sql_job("via-s3")).await;
    let exported = client
        .call(
            Method::POST,
            "streaming/jobs/export",
            &[],
            Some(json!({"obs_dir": "dli-gitops-staging/back", "is_selected": false})),
        )
        .await;
    let key = exported.body["zip_file"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("dli-gitops-staging/")
        .to_string();
    let fetched = good
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    good.put(
        &ObjectPath::from("upload/via-s3.zip"),
        PutPayload::from(fetched.clone()),
    )
    .await
    .unwrap();
    client
        .call(
            Method::DELETE,
            &format!("streaming/jobs/{job_id}"),
            &[],
            None,
        )
        .await;
    let imported = client
        .call(
            Method::POST,
            "streaming/jobs/import",
            &[],
            Some(json!({"zip_file": "dli-gitops-staging/upload/via-s3.zip"})),
        )
        .await;
    assert_eq!(
        imported.body["job_mapping"][0]["remark"], "Job successfully created",
        "{}",
        imported.body
    );
    let wrong = store("not-the-secret");
    assert!(
        wrong
            .get(&ObjectPath::from("upload/via-s3.zip"))
            .await
            .is_err()
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn hostile_input_never_gets_a_server_error() {
    use rand::{Rng, SeedableRng};
    let temp = tempfile::tempdir().unwrap();
    let handle = start(temp.path()).await;
    let client = Client::dev(&handle);
    let job_id = create(&client, sql_job("target")).await;
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "streaming/jobs".into()),
        (Method::GET, format!("streaming/jobs/{job_id}")),
        (Method::GET, "streaming/jobs/99999999999999999999".into()),
        (Method::GET, "streaming/jobs/%E2%98%83".into()),
        (Method::POST, "streaming/sql-jobs".into()),
        (Method::PUT, format!("streaming/sql-jobs/{job_id}")),
        (Method::POST, "streaming/flink-jobs".into()),
        (Method::PUT, format!("streaming/flink-jobs/{job_id}")),
        (Method::POST, "streaming/jobs/run".into()),
        (Method::POST, "streaming/jobs/stop".into()),
        (Method::POST, "streaming/jobs/delete".into()),
        (Method::POST, "streaming/jobs/export".into()),
        (Method::POST, "streaming/jobs/import".into()),
        (Method::POST, format!("streaming/jobs/{job_id}/savepoint")),
        (
            Method::POST,
            format!("streaming/jobs/{job_id}/import-savepoint"),
        ),
        (Method::POST, "dli/obs-authorize".into()),
        (
            Method::POST,
            format!("/v3/{DEV_PROJECT_ID}/dli_flink_job/{job_id}/tags/create"),
        ),
        (Method::POST, "jobs/import".into()),
        (Method::POST, "jobs/batch-export".into()),
        (Method::POST, "jobs/x/export".into()),
        (Method::GET, "system-tasks/%00".into()),
        (Method::POST, "/v3/auth/tokens".into()),
    ];
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "null",
        "[]",
        "{}",
        "\"text\"",
        "1e999",
        "{\"name\": {}}",
        "{\"job_ids\": [\"x\", null]}",
        "{\"job_ids\": [1e30]}",
        "{\"zip_file\": 5, \"obs_dir\": [], \"path\": null}",
        "{\"zip_file\": \"../../../../etc/passwd\", \"obs_dir\": \"/\", \"path\": \"obs://../x\"}",
        "{\"name\": \"\\u0000\", \"runtime_config\": {\"a\": [1]}, \"tags\": \"x\"}",
        "{\"action\": 1, \"savepoint_path\": 3, \"job_id\": {}}",
        "{\"auth\": {\"identity\": {\"methods\": \"password\"}}}",
    ]
    .iter()
    .map(|text| text.as_bytes().to_vec())
    .collect();
    bodies.push("[".repeat(100_000).into_bytes());
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for _ in 0..10 {
        let length = rng.gen_range(1..512);
        bodies.push((0..length).map(|_| rng.r#gen::<u8>()).collect());
    }
    for (method, path) in &routes {
        for body in &bodies {
            let answer = client
                .call_raw(method.clone(), path, &[], Some(body.clone()), None)
                .await
                .unwrap();
            assert!(
                answer.status.is_client_error() || answer.status.is_success(),
                "{method} {path} with {:?} answered {}: {}",
                String::from_utf8_lossy(&body[..body.len().min(80)]),
                answer.status,
                answer.body
            );
        }
    }
    assert_eq!(
        detail(&client, job_id).await["name"],
        "target",
        "the emulator still serves"
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

#[tokio::test]
async fn repeated_bad_signatures_lock_the_access_key_for_a_while() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.auth = dli_gitops::emulator::EmulatorAuth {
        lockout_failures: 3,
        lockout_seconds: 1,
    };
    let handle = start_with(config).await;
    let good = Client::dev(&handle);
    let bad = Client::with_keys(&handle, DEV_ACCESS_KEY, "wrong", DEV_PROJECT_ID);
    for _ in 0..2 {
        assert_error(
            &bad.call(Method::GET, "streaming/jobs", &[], None).await,
            StatusCode::UNAUTHORIZED,
            "APIG.0301",
        );
    }
    assert_eq!(
        good.call(Method::GET, "streaming/jobs", &[], None)
            .await
            .status,
        StatusCode::OK,
        "a success resets the count"
    );
    for _ in 0..3 {
        bad.call(Method::GET, "streaming/jobs", &[], None).await;
    }
    let locked = good.call(Method::GET, "streaming/jobs", &[], None).await;
    assert_error(&locked, StatusCode::UNAUTHORIZED, "APIG.0301");
    assert!(
        locked.body["error_msg"].as_str().unwrap().contains("limit"),
        "{}",
        locked.body
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        good.call(Method::GET, "streaming/jobs", &[], None)
            .await
            .status,
        StatusCode::OK
    );
    handle.shutdown().await;
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

/// The per-type field sets of the SDK request models, the fields the service fills, the
/// documented `run_mode`/`job_type` pairs and the fields a running job accepts.
#[tokio::test]
async fn flink_jobs_follow_the_sdk_field_model_and_running_jobs_take_only_hot_fields() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(temp.path()).await;
    let client = Client::dev(&handle);

    // A field the Jar create body does not have is refused.
    let refused = client
        .call(
            Method::POST,
            "streaming/flink-jobs",
            &[],
            Some(json!({"name": "jar", "entrypoint": "obs://b/a.jar", "run_mode": "exclusive_cluster"})),
        )
        .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "DLI.0001");
    assert!(
        refused.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("run_mode")
    );
    // The SDK forbids shared_cluster with flink_opensource_sql_job.
    let refused = client
        .call(
            Method::POST,
            "streaming/sql-jobs",
            &[],
            Some(
                json!({"name": "bad-pair", "sql_body": "select 1", "run_mode": "shared_cluster",
                        "job_type": "flink_opensource_sql_job"}),
            ),
        )
        .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "DLI.0001");

    // A Jar job with queue, feature and Flink version unset gets the service's values.
    let jar = client
        .call(
            Method::POST,
            "streaming/flink-jobs",
            &[],
            Some(json!({"name": "jar", "entrypoint": "obs://b/a.jar", "obs_bucket": "ckpt"})),
        )
        .await;
    let jar_id = jar.body["job"]["job_id"].as_i64().unwrap();
    let shown = detail(&client, jar_id).await;
    assert_eq!(shown["queue_name"], "default");
    assert_eq!(shown["job_config"]["feature"], "basic");
    assert_eq!(shown["job_config"]["flink_version"], "1.15");
    assert_eq!(shown["job_config"]["resource_config_version"], "v1");

    // A v2 job keeps its resource_config, with the documented defaults filled.
    let v2 = create(
        &client,
        json!({"name": "v2", "queue_name": "q1", "sql_body": "select 1",
               "resource_config_version": "v2",
               "resource_config": {"parallel_number": 3, "taskmanager_resource_spec": {"cpu": 2, "memory": "8G"}}}),
    )
    .await;
    let shown = detail(&client, v2).await;
    assert_eq!(
        shown["job_config"]["resource_config"],
        json!({"max_slot": 1, "parallel_number": 3, "taskmanager_resource_spec": {"cpu": 2.0, "memory": "8G"}})
    );
    let refused = client
        .call(
            Method::POST,
            "streaming/sql-jobs",
            &[],
            Some(json!({"name": "v3", "sql_body": "select 1", "resource_config": {"slots": 1}})),
        )
        .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "DLI.0001");

    // Running: only the hot fields change; anything else is refused until the job stops.
    client
        .call(
            Method::POST,
            "streaming/jobs/run",
            &[],
            Some(json!({"job_ids": [jar_id]})),
        )
        .await;
    assert_eq!(detail(&client, jar_id).await["status"], "job_running");
    let cold = client
        .call(
            Method::PUT,
            &format!("streaming/flink-jobs/{jar_id}"),
            &[],
            Some(json!({"cu_number": 4, "smn_topic": "alerts"})),
        )
        .await;
    assert_error(&cold, StatusCode::BAD_REQUEST, "DLI.0001");
    assert!(
        cold.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("cu_number")
    );
    let same_bucket = client
        .call(
            Method::PUT,
            &format!("streaming/flink-jobs/{jar_id}"),
            &[],
            Some(json!({"obs_bucket": "ckpt"})),
        )
        .await;
    assert_error(&same_bucket, StatusCode::BAD_REQUEST, "DLI.0001");
    let hot = client
        .call(
            Method::PUT,
            &format!("streaming/flink-jobs/{jar_id}"),
            &[],
            Some(
                json!({"smn_topic": "alerts", "restart_when_exception": true,
                        "resume_checkpoint": true, "resume_max_num": 3, "obs_bucket": "ckpt2"}),
            ),
        )
        .await;
    assert_eq!(hot.status, StatusCode::OK, "{}", hot.body);
    let shown = detail(&client, jar_id).await;
    assert_eq!(shown["status"], "job_running");
    assert_eq!(shown["job_config"]["smn_topic"], "alerts");
    assert_eq!(shown["job_config"]["obs_bucket"], "ckpt2");
    assert_eq!(shown["job_config"]["cu_number"], 2);

    // A stopped job: an empty value clears a field an earlier call set.
    let main = client
        .call(
            Method::PUT,
            &format!("streaming/flink-jobs/{jar_id}"),
            &[],
            Some(json!({"main_class": "com.example.Main", "dependency_jars": ["obs://b/d.jar"]})),
        )
        .await;
    assert_error(&main, StatusCode::BAD_REQUEST, "DLI.0001");
    client
        .call(
            Method::POST,
            "streaming/jobs/stop",
            &[],
            Some(json!({"job_ids": [jar_id], "trigger_savepoint": false})),
        )
        .await;
    for body in [
        json!({"main_class": "com.example.Main", "dependency_jars": ["obs://b/d.jar"]}),
        json!({"main_class": "", "dependency_jars": []}),
    ] {
        let answer = client
            .call(
                Method::PUT,
                &format!("streaming/flink-jobs/{jar_id}"),
                &[],
                Some(body),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    let shown = detail(&client, jar_id).await;
    assert!(shown.get("main_class").is_none(), "{shown}");
    assert_eq!(shown["job_config"]["dependency_jars"], json!([]));
}
