//! Flink jobs over the emulator's API: the lifecycle with a savepoint across a reimport, and the
//! SDK's field model.

use super::*;

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

/// The per-type field sets of the SDK request models, the fields the service fills, the
/// documented `run_mode`/`job_type` pairs and the fields a running job accepts.
/// The service names a stop savepoint's directory to the second (the huaweicloud Terraform
/// provider, `updateFlinkSqlJobWithStop`: `jobs/savepoint/{job_id}/{yyyy-mm-dd_hH-mm-ss}/`), so
/// two stops of one job in one second share one directory: the second's `_metadata` replaces
/// the first's, as an upload to an existing name does on OBS, and the next run resumes from it.
#[tokio::test]
async fn two_stops_of_a_job_in_one_second_share_one_savepoint_directory() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(temp.path()).await;
    let client = Client::dev(&handle);
    let job_id = create(&client, sql_job("orders")).await;
    let batch = |action: &'static str, body: Value| {
        let client = &client;
        async move {
            let answer = client
                .call(
                    Method::POST,
                    &format!("streaming/jobs/{action}"),
                    &[],
                    Some(body),
                )
                .await;
            assert_eq!(answer.body[0]["is_success"], "true", "{}", answer.body);
        }
    };
    let run = || {
        batch(
            "run",
            json!({"job_ids": [job_id], "resume_savepoint": true}),
        )
    };
    let stop = || {
        batch(
            "stop",
            json!({"job_ids": [job_id], "trigger_savepoint": true}),
        )
    };
    let savepoint_id = |path: &str| -> String {
        let file = handle
            .data_dir()
            .join("obs")
            .join(path.trim_start_matches("obs://"))
            .join("_metadata");
        let bytes = std::fs::read(&file).unwrap_or_else(|_| panic!("{}", file.display()));
        let metadata: Value = serde_json::from_slice(&bytes).unwrap();
        metadata["savepoint_id"].as_str().unwrap().to_string()
    };
    let held = || async {
        detail(&client, job_id).await["savepoint_path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    run().await;
    // Each attempt starts right after a second begins, so that stop, run and stop (zero
    // delays, in process) fall in it; one that crosses into the next second is tried again.
    for _ in 0..5 {
        let into_second = chrono::Utc::now().timestamp_subsec_millis();
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(
            1000 - into_second.min(999),
        )))
        .await;
        stop().await;
        let first_path = held().await;
        let first = savepoint_id(&first_path);
        run().await;
        stop().await;
        let second_path = held().await;
        if second_path != first_path {
            run().await;
            continue;
        }
        let second = savepoint_id(&second_path);
        assert_ne!(
            first, second,
            "the second savepoint replaced the first in {second_path}"
        );
        run().await;
        let runs: Value = handle_runs(&handle, job_id).await;
        let last = runs["runs"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["restored_from"], second_path.as_str());
        assert_eq!(last["restored_savepoint_id"], second.as_str());
        return;
    }
    panic!("no two stops fell in one second in five attempts");
}

/// The emulator's run log of `job_id` (`/_emulator/v1/{project}/jobs/{id}/runs`).
async fn handle_runs(handle: &EmulatorHandle, job_id: i64) -> Value {
    let url = format!(
        "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{job_id}/runs",
        handle.dli_url()
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

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
