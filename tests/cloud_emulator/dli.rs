//! Every DLI call through our client round-trips through the emulator; listing pages with exact
//! call counts.

use super::*;

async fn job_runs(handle: &EmulatorHandle, job_id: i64) -> Value {
    reqwest::get(format!(
        "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{job_id}/runs",
        handle.dli_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

/// A SQL job with every field the create call carries set away from its default, including
/// the service-computed ones, so that a round trip proves each of them.
fn full_sql_config() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.desc = "Per-minute click aggregates".into();
    config.queue_name = Some("flink_queue".into());
    config.sql_body =
        Some("insert into sink select user_id, count(*) from clicks group by user_id".into());
    config.run_mode = "exclusive_cluster".into();
    config.cu_number = 6;
    config.manager_cu_number = 2;
    config.parallel_number = 4;
    config.tm_cus = 2;
    config.tm_slot_num = Some(2);
    config.checkpoint_enabled = true;
    config.checkpoint_mode = CheckpointMode::AtLeastOnce;
    config.checkpoint_interval = 60;
    config.obs_bucket = Some("dli-gitops-savepoints".into());
    config.log_enabled = true;
    config.smn_topic = Some("alerts".into());
    config.restart_when_exception = true;
    config.idle_state_retention = 7200;
    config.resume_checkpoint = true;
    config.resume_max_num = 3;
    config.dirty_data_strategy = "1".into();
    config.udf_jar_url = Some("udfs/clicks.jar".into());
    config.flink_version = Some("1.15".into());
    config
        .runtime_config
        .insert("table.exec.state.ttl".into(), "1h".into());
    config
        .runtime_config
        .insert("pipeline.name".into(), "clicks, \"quoted\"".into());
    config.tags.insert("managed-by".into(), "dli-gitops".into());
    config.tags.insert("team".into(), "growth".into());
    config
}

fn full_jar_config() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
    config.desc = "Fraud detector".into();
    config.queue_name = Some("flink_queue".into());
    // No run_mode: the Jar job API has none (CreateFlinkJarJobRequestBody), so it stays the
    // service default.
    config.cu_number = 4;
    config.parallel_number = 3;
    config.tm_slot_num = Some(1);
    config.flink_version = Some("1.15".into());
    config.log_enabled = true;
    config.obs_bucket = Some("dli-gitops-savepoints".into());
    config.entrypoint = Some("jars/fraud-detector-2.3.jar".into());
    config.main_class = Some("com.example.fraud.Main".into());
    config.entrypoint_args = Some("--window 5m --threshold 0.9".into());
    config.dependency_jars = vec!["jars/common-1.0.jar".into()];
    config.dependency_files = vec!["files/rules.json".into()];
    config
        .runtime_config
        .insert("taskmanager.memory.process.size".into(), "4g".into());
    config.tags.insert("managed-by".into(), "dli-gitops".into());
    config
}

/// A zip of the given entries, as anyone but DLI could write one.
fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

// ---------------------------------------------------------------------------------------------
// DLI: every endpoint, over real HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_dli_call_round_trips_through_the_emulator() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(EmulatorConfig::for_tests(temp.path().to_path_buf())).await;
    let metrics = RequestMetrics::default();
    let client = dli(&handle, dev_keys(), options(&metrics));
    let staging = store(&handle, STAGING);

    // Create, then read back: the canonical model equals what was created, field for field.
    let sql_config = full_sql_config();
    let sql_id = client
        .create_sql_job("clickstream-agg", &sql_config)
        .await
        .unwrap();
    let jar_config = full_jar_config();
    let jar_id = client
        .create_jar_job("fraud-detector", &jar_config)
        .await
        .unwrap();
    assert_ne!(sql_id, jar_id);
    let sql = client.job_detail(sql_id).await.unwrap();
    assert_eq!(sql.id, sql_id);
    assert_eq!(sql.name, "clickstream-agg");
    assert_eq!(sql.status.as_str(), "job_init");
    // The service fills unset fields (queue, Flink version, resource model): not a difference.
    assert_eq!(
        sql_config.field_diffs(&sql.config),
        vec![],
        "{:#?}",
        sql.config
    );
    assert!(sql.is_managed());
    assert!(
        sql.update_time > 1_000_000_000_000,
        "13-digit ms: {}",
        sql.update_time
    );
    let jar = client.job_detail(jar_id).await.unwrap();
    // The service fills unset fields (queue, Flink version, resource model): not a difference.
    assert_eq!(
        jar_config.field_diffs(&jar.config),
        vec![],
        "{:#?}",
        jar.config
    );

    // A duplicate name is refused by the service; permanent, so sent exactly once.
    let before = metrics.total("dli", "create_sql_job");
    let duplicate = client
        .create_sql_job("clickstream-agg", &sql_config)
        .await
        .unwrap_err();
    assert!(!duplicate.is_retryable(), "{duplicate}");
    assert_eq!(duplicate.status(), Some(400), "{duplicate}");
    assert!(duplicate.request_id().is_some(), "{duplicate}");
    assert_eq!(metrics.total("dli", "create_sql_job"), before + 1);

    // Update both kinds in place.
    let mut sql_v2 = sql_config.clone();
    sql_v2.sql_body =
        Some("insert into sink select user_id, sum(clicks) from clicks group by user_id".into());
    sql_v2.cu_number = 8;
    sql_v2.checkpoint_mode = CheckpointMode::ExactlyOnce;
    sql_v2.runtime_config.remove("pipeline.name");
    client.update_sql_job(sql_id, &sql_v2).await.unwrap();
    let sql = client.job_detail(sql_id).await.unwrap();
    // The service fills unset fields (queue, Flink version, resource model): not a difference.
    assert_eq!(sql_v2.field_diffs(&sql.config), vec![], "{:#?}", sql.config);
    let mut jar_v2 = jar_config.clone();
    jar_v2.main_class = Some("com.example.fraud.MainV2".into());
    jar_v2.dependency_jars.push("jars/extra-0.1.jar".into());
    client.update_jar_job(jar_id, &jar_v2).await.unwrap();
    let jar = client.job_detail(jar_id).await.unwrap();
    // The service fills unset fields (queue, Flink version, resource model): not a difference.
    assert_eq!(jar_v2.field_diffs(&jar.config), vec![], "{:#?}", jar.config);

    // Run, trigger a savepoint, stop with a savepoint.
    client.run_jobs(&[sql_id], false).await.unwrap();
    assert_eq!(
        client.job_detail(sql_id).await.unwrap().status.as_str(),
        "job_running"
    );
    client
        .trigger_savepoint(sql_id, "obs://dli-gitops-savepoints/manual/clickstream/")
        .await
        .unwrap();
    let sql = client.job_detail(sql_id).await.unwrap();
    assert_eq!(sql.status.as_str(), "job_running");
    assert_eq!(
        sql.savepoint_path.as_deref(),
        Some("obs://dli-gitops-savepoints/manual/clickstream/")
    );
    let savepoints = store(&handle, SAVEPOINTS);
    assert!(
        savepoints
            .list("manual/clickstream")
            .await
            .unwrap()
            .contains(&"manual/clickstream/_metadata".to_string())
    );
    client.stop_jobs(&[sql_id], true).await.unwrap();
    let stopped = client.job_detail(sql_id).await.unwrap();
    assert_eq!(stopped.status.as_str(), "job_cancel_success");
    let stop_savepoint = stopped
        .savepoint_path
        .clone()
        .expect("stop took a savepoint");
    assert_ne!(
        stop_savepoint,
        "obs://dli-gitops-savepoints/manual/clickstream/"
    );
    // Stopping a stopped job is a per-job failure inside a 200 answer.
    let again = client.stop_jobs(&[sql_id], false).await.unwrap_err();
    match &again {
        CloudError::BatchFailed {
            failures, total, ..
        } => {
            assert_eq!(*total, 1);
            assert_eq!(failures[0].job_id, sql_id);
        }
        other => panic!("expected a batch failure, got {other:?}"),
    }

    // Export → a zip on OBS, opaque to the client → the job is changed through the API →
    // importing the export over it (is_cover) puts the exported definition back, in draft,
    // detached from its savepoint → import the stop savepoint → run resuming from it.
    let zips = client
        .export_jobs("obs://dli-gitops-staging/tests/exports/", Some(&[sql_id]))
        .await
        .unwrap();
    assert_eq!(zips.len(), 1, "{zips:?}");
    let zip_key = zips[0]
        .strip_prefix("dli-gitops-staging/tests/")
        .unwrap_or_else(|| panic!("export wrote {} outside the requested folder", zips[0]));
    assert!(
        zip_key.starts_with("exports/clickstream-agg_") && zip_key.ends_with(".zip"),
        "one zip per job named {{job_name}}_{{epoch_ms}}.zip: {zip_key}"
    );
    let exported_bytes = staging.get(zip_key).await.unwrap();

    let mut sql_v3 = sql_v2.clone();
    sql_v3.parallel_number = 6;
    sql_v3.desc = "Per-minute click aggregates, v3".into();
    client.update_sql_job(sql_id, &sql_v3).await.unwrap();
    assert_eq!(
        sql_v3.field_diffs(&client.job_detail(sql_id).await.unwrap().config),
        vec![]
    );

    let import_url = staging.url_of(zip_key);
    let mapping = client.import_jobs(&import_url, true).await.unwrap();
    assert_eq!(mapping.len(), 1, "{mapping:?}");
    assert_eq!(mapping[0].new_job_id, sql_id);
    let imported = client.job_detail(sql_id).await.unwrap();
    assert_eq!(
        imported.status.as_str(),
        "job_init",
        "an import leaves a draft"
    );
    // The service fills unset fields (queue, Flink version, resource model): not a difference.
    assert_eq!(
        sql_v2.field_diffs(&imported.config),
        vec![],
        "the export's definition is back: {:#?}",
        imported.config
    );
    assert_eq!(imported.savepoint_path, None);
    // Without is_cover the same-name job is left alone and mapped to -1.
    let skipped = client.import_jobs(&import_url, false).await.unwrap();
    assert_eq!(skipped[0].new_job_id, -1);

    // DLI imports only what DLI exported: a zip changed after its export is refused, and so is
    // any zip the client could author.
    let mut altered = exported_bytes.to_vec();
    let middle = altered.len() / 3;
    altered[middle] ^= 0x55;
    staging
        .put("imports/altered.zip", Bytes::from(altered))
        .await
        .unwrap();
    let authored = zip_of(&[(
        "jobs/clickstream-agg.json",
        serde_json::to_vec(&json!({"name": "clickstream-agg", "sql_body": "select 1"})).unwrap(),
    )]);
    staging
        .put("imports/authored.zip", Bytes::from(authored))
        .await
        .unwrap();
    for key in ["imports/altered.zip", "imports/authored.zip"] {
        let refused = client
            .import_jobs(&staging.url_of(key), true)
            .await
            .unwrap_err();
        assert_eq!(refused.error_code(), Some("DLI.0001"), "{refused}");
        assert!(
            refused.to_string().contains("only jobs exported from DLI"),
            "{refused}"
        );
    }
    assert_eq!(
        sql_v2.field_diffs(&client.job_detail(sql_id).await.unwrap().config),
        vec![]
    );

    client
        .import_savepoint(sql_id, &stop_savepoint)
        .await
        .unwrap();
    assert_eq!(
        client
            .job_detail(sql_id)
            .await
            .unwrap()
            .savepoint_path
            .as_deref(),
        Some(stop_savepoint.as_str())
    );
    client.run_jobs(&[sql_id], true).await.unwrap();
    assert_eq!(
        client.job_detail(sql_id).await.unwrap().status.as_str(),
        "job_running"
    );
    let runs = job_runs(&handle, sql_id).await;
    let last_run = runs["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last_run["resume_savepoint"], json!(true), "{runs}");
    assert_eq!(last_run["restored_from"], json!(stop_savepoint), "{runs}");
    // A savepoint cannot be imported into a running job: permanent, typed, sent once.
    let before = metrics.total("dli", "import_savepoint");
    let refused = client
        .import_savepoint(sql_id, &stop_savepoint)
        .await
        .unwrap_err();
    assert_eq!(refused.error_code(), Some("DLI.0001"), "{refused}");
    assert_eq!(metrics.total("dli", "import_savepoint"), before + 1);

    // Listing by exact name, then deletes (single and batch).
    let listed = client
        .list_jobs(&ListJobsQuery {
            name: Some("fraud-detector".into()),
            ..ListJobsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, jar_id);
    assert_eq!(listed[0].job_type.as_deref(), Some("flink_jar_job"));
    client.delete_job(jar_id).await.unwrap();
    let missing = client.job_detail(jar_id).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(missing.error_code(), Some("DLI.16001"));
    assert!(!missing.is_retryable());
    client.stop_jobs(&[sql_id], false).await.unwrap();
    client.delete_jobs(&[sql_id]).await.unwrap();
    assert!(
        client
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Every attempt the client counted reached the emulator, and nothing else did.
    let emulator = stats(&handle).await;
    let client_total: u64 = metrics.snapshot().iter().map(|c| c.count).sum();
    let emulator_total: u64 = emulator.values().sum();
    assert_eq!(
        client_total,
        emulator_total,
        "client {:?} vs emulator {emulator:?}",
        metrics.snapshot()
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn listing_more_than_100_jobs_pages_with_exact_call_counts() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(EmulatorConfig::for_tests(temp.path().to_path_buf())).await;
    let metrics = RequestMetrics::default();
    let client = dli(&handle, dev_keys(), options(&metrics));

    // 250 jobs, created through the API, so the listing is what the test counts.
    let names: Vec<String> = (0..250).map(|n| format!("job-{n:04}")).collect();
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.sql_body = Some("select 1".into());
    let mut created = BTreeSet::new();
    for name in &names {
        created.insert(client.create_sql_job(name, &config).await.unwrap());
    }

    let listed_calls = |stats: &BTreeMap<String, u64>| count(stats, "ListFlinkJobs");
    let before = listed_calls(&stats(&handle).await);
    let listing = client
        .list_jobs_paged(&ListJobsQuery::default())
        .await
        .unwrap();
    assert_eq!(listing.jobs.len(), 250);
    assert_eq!(listing.pages, 3, "100 + 100 + 50");
    assert_eq!(listing.total_count, Some(250));
    assert_eq!(listed_calls(&stats(&handle).await) - before, 3);
    let listed_names: BTreeSet<&str> = listing.jobs.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(listed_names, names.iter().map(String::as_str).collect());
    let ids: BTreeSet<i64> = listing.jobs.iter().map(|job| job.id).collect();
    assert_eq!(ids.len(), 250);
    assert_eq!(ids, created);
    assert!(
        listing
            .jobs
            .iter()
            .all(|job| job.status.as_str() == "job_init")
    );

    // Smaller pages: exactly ceil(250 / 50) calls, no extra empty page thanks to total_count.
    let before = listed_calls(&stats(&handle).await);
    let small = client
        .list_jobs_paged(&ListJobsQuery {
            page_size: 50,
            ..ListJobsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(small.pages, 5);
    assert_eq!(small.jobs, listing.jobs);
    assert_eq!(listed_calls(&stats(&handle).await) - before, 5);

    // A page size over the service's maximum is clamped to 100, not refused.
    let clamped = client
        .list_jobs_paged(&ListJobsQuery {
            page_size: 1000,
            ..ListJobsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(clamped.pages, 3);

    // By name: one call, one exact match (the service matches names fuzzily).
    let before = listed_calls(&stats(&handle).await);
    let one = client
        .list_jobs(&ListJobsQuery {
            name: Some("job-0042".into()),
            ..ListJobsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "job-0042");
    assert_eq!(listed_calls(&stats(&handle).await) - before, 1);
    assert_eq!(
        metrics.count("dli", "list_jobs", "200"),
        listed_calls(&stats(&handle).await)
    );
    handle.shutdown().await;
}
