//! The DLF client, and OBS over a real S3 server.

use super::*;

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
