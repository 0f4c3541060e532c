//! DLF imports polled to the end, and listings that refuse what DataArts refuses.

use super::*;

#[tokio::test]
async fn dlf_import_is_polled_to_successful_and_to_failed() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    // Long enough that the first poll sees RUNNING, so polling is really exercised.
    config.delays.dlf_task_ms = 1500;
    let handle = start(config).await;
    let metrics = RequestMetrics::default();
    // Built the way a target builds its clients, from one set of endpoints.
    let endpoints = ServiceEndpoints {
        dli: url(&handle.dli_url()),
        dlf: url(&handle.dlf_url()),
        iam: url(&handle.iam_url()),
        obs: url(&handle.s3_url()),
    };
    let clients = CloudClients::new(
        &endpoints,
        "cn-north-4",
        DEV_PROJECT_ID,
        dev_keys(),
        options(&metrics),
        None,
    )
    .unwrap();
    let client = &clients.dlf;
    let staging = clients.object_store(STAGING).unwrap();

    let nodes = json!([{"name": "load", "type": "DLISQL", "properties": [{"name": "scriptName", "value": "load_sql"}]}]);
    let zip = bundle::write_dlf_zip(&[dlf_job("nightly-load", nodes)]).unwrap();
    staging
        .put("dlf/nightly-load.zip", Bytes::from(zip))
        .await
        .unwrap();
    let task_id = client
        .import_jobs(&dlf_import(
            staging.url_of("dlf/nightly-load.zip"),
            &[("env", "prod")],
        ))
        .await
        .unwrap();
    let first = client.system_task(&task_id).await.unwrap();
    assert_eq!(first.status, SystemTaskStatus::Running);
    let done = client
        .wait_system_task(&task_id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done.status, SystemTaskStatus::Successful);
    assert!(metrics.total("dlf", "system_task") >= 2);

    let jobs = client
        .list_jobs(&DlfListJobsQuery {
            job_name: Some("nightly-load".into()),
            ..DlfListJobsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let detail = client.job_detail("nightly-load").await.unwrap();
    assert_eq!(
        detail["params"][0]["value"],
        json!("prod"),
        "params replaced: {detail}"
    );
    let exported = client
        .batch_export(&["nightly-load".to_string()])
        .await
        .unwrap();
    let entries = bundle::read_dlf_zip(&exported, &ZipLimits::default()).unwrap();
    assert_eq!(entries[0].name, "nightly-load");
    // A single export goes to OBS; the zip it names is there and holds the job and its script.
    let written = client
        .export_job("nightly-load", &staging.url_of("dlf-exports/"))
        .await
        .unwrap()
        .expect("the export names the zip it wrote");
    let key = written
        .strip_prefix("obs://dli-gitops-staging/tests/")
        .unwrap_or_else(|| panic!("export wrote {written} outside the requested folder"));
    let entries =
        bundle::read_dlf_zip(&staging.get(key).await.unwrap(), &ZipLimits::default()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].job["params"][0]["value"], json!("prod"));
    assert!(
        entries[0].scripts.contains_key("load_sql"),
        "{:?}",
        entries[0]
    );

    // A job without nodes makes the task FAILED; the error carries the subtask's message.
    let broken = bundle::write_dlf_zip(&[dlf_job("broken-load", json!([]))]).unwrap();
    staging
        .put("dlf/broken.zip", Bytes::from(broken))
        .await
        .unwrap();
    let task_id = client
        .import_jobs(&dlf_import(staging.url_of("dlf/broken.zip"), &[]))
        .await
        .unwrap();
    let failed = client
        .wait_system_task(&task_id, Duration::from_secs(20))
        .await
        .unwrap_err();
    match &failed {
        CloudError::TaskFailed {
            task_id: failed_id,
            message,
        } => {
            assert_eq!(failed_id, &task_id);
            assert!(message.contains("broken-load"), "{message}");
            assert!(message.contains("DLF.1006"), "{message}");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert!(!failed.is_retryable());

    // A zip that is not there: refused at once with DLF.0815, sent exactly once.
    let before = count(&stats(&handle).await, "DlfImportJob");
    let missing = client
        .import_jobs(&dlf_import(staging.url_of("dlf/missing.zip"), &[]))
        .await
        .unwrap_err();
    assert_eq!(missing.error_code(), Some("DLF.0815"), "{missing}");
    assert_eq!(missing.status(), Some(400));
    assert!(!missing.is_retryable());
    assert!(missing.to_string().contains("dlf import_jobs"), "{missing}");
    assert_eq!(count(&stats(&handle).await, "DlfImportJob") - before, 1);
    handle.shutdown().await;
}

/// Imports `entries` (OVERWRITE) and waits for the task; `resources` replaced on the way.
async fn dlf_import_entries(
    client: &DlfClient,
    staging: &ObjectStore,
    key: &str,
    entries: &[DlfJobEntry],
    resources: Vec<dli_gitops::model::DlfResourceReplacement>,
) -> Result<dli_gitops::cloud::SystemTask, CloudError> {
    let zip = bundle::write_dlf_zip(entries).unwrap();
    staging.put(key, Bytes::from(zip)).await.unwrap();
    let mut request = dlf_import(staging.url_of(key), &[]);
    request.settings.resources = resources;
    let task_id = client.import_jobs(&request).await?;
    client
        .wait_system_task(&task_id, Duration::from_secs(20))
        .await
}

#[tokio::test]
async fn dlf_lists_real_time_jobs_only_when_asked_and_refuses_what_dataarts_refuses() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(EmulatorConfig::for_tests(temp.path().to_path_buf())).await;
    let metrics = RequestMetrics::default();
    let client = dlf(&handle, dev_keys(), options(&metrics));
    let staging = store(&handle, STAGING);
    let nodes = json!([{"name": "load", "type": "DLISQL", "properties": [{"name": "scriptName", "value": "load_sql"}]}]);
    let mut stream = dlf_job("stream", nodes.clone());
    stream.job["processType"] = json!("REAL_TIME");
    let batch = dlf_job("batch", nodes.clone());
    let task = dlf_import_entries(
        &client,
        &staging,
        "dlf/two.zip",
        &[stream, batch],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(task.status, SystemTaskStatus::Successful);

    // The list without jobType answers BATCH jobs only (dataartsstudio_02_0086): the
    // REAL_TIME job is invisible there, and a listing per type sees both.
    let default_listing = client
        .list_jobs(&DlfListJobsQuery::default())
        .await
        .unwrap();
    let names: Vec<&str> = default_listing
        .iter()
        .map(|job| job.name.as_str())
        .collect();
    assert_eq!(names, ["batch"]);
    let before = count(&stats(&handle).await, "DlfListJobs");
    let (every, calls) = client.list_every_job(None).await.unwrap();
    let mut names: Vec<(&str, Option<&str>)> = every
        .iter()
        .map(|job| (job.name.as_str(), job.job_type.as_deref()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [("batch", Some("BATCH")), ("stream", Some("REAL_TIME"))]
    );
    assert_eq!(calls, 2);
    assert_eq!(count(&stats(&handle).await, "DlfListJobs") - before, 2);
    let wrong_type = client
        .list_jobs(&DlfListJobsQuery {
            job_type: Some("STREAM".into()),
            ..DlfListJobsQuery::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_type.status(), Some(400), "{wrong_type}");

    // A replacement the job does not use: imported, task WARNING, the warning says which.
    let task = dlf_import_entries(
        &client,
        &staging,
        "dlf/warned.zip",
        &[dlf_job("batch", nodes.clone())],
        vec![dli_gitops::model::DlfResourceReplacement {
            name: "unused_dws".into(),
            resource_type: "DWS_CONNECTION".into(),
            replace: Some("prod_dws".into()),
        }],
    )
    .await
    .expect("a WARNING task is finished, not failed");
    assert_eq!(task.status, SystemTaskStatus::Warning);
    assert!(
        task.messages().iter().any(|m| m.contains("unused_dws")),
        "{:?}",
        task.messages()
    );

    // The CreateJob body's required fields, as an import checks them.
    for (field, value, code) in [
        ("processType", json!("STREAMING"), "DLF.3051"),
        ("schedule", Value::Null, "DLF.3025"),
        ("name", json!(""), "DLF.3004"),
        ("nodes", json!([]), "DLF.1006"),
    ] {
        let mut job = dlf_job("checked", nodes.clone());
        if value.is_null() {
            job.job.as_object_mut().unwrap().remove(field);
        } else {
            job.job[field] = value;
        }
        let failed = dlf_import_entries(&client, &staging, "dlf/checked.zip", &[job], Vec::new())
            .await
            .unwrap_err();
        assert!(failed.to_string().contains(code), "{field}: {failed}");
    }

    // A scheduled job is neither imported over nor deleted until its schedule is stopped.
    client.start_job("batch").await.unwrap();
    let over = dlf_import_entries(
        &client,
        &staging,
        "dlf/over.zip",
        &[dlf_job("batch", nodes.clone())],
        Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(over.to_string().contains("stop it"), "{over}");
    let delete = client.delete_job("batch").await.unwrap_err();
    assert_eq!(delete.status(), Some(400), "{delete}");
    client.stop_job("batch").await.unwrap();
    client.delete_job("batch").await.unwrap();
    let missing = client.stop_job("batch").await.unwrap_err();
    assert_eq!(missing.error_code(), Some("DLF.0100"), "{missing}");
    handle.shutdown().await;
}
