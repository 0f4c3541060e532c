//! DLF import tasks, listing and exports; the S3 endpoint over the data directory.

use super::*;

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
