//! The cloud client against the in-process emulator over real HTTP on loopback: every typed DLI
//! call, DLF import with system-task polling, `ObjectStore` over the emulator's S3 endpoint, IAM
//! token auth, refused credentials, and the emulator's fault injection. Call counts come from
//! the emulator's own `/_emulator/v1/stats` and are compared with the client's metrics, so a
//! hidden retry on either side shows up. Each test starts its own emulator and shuts it down.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dli_gitops::bundle::{self, DlfJobEntry, ZipLimits};
use dli_gitops::cloud::{
    ClientOptions, CloudClients, CloudError, Credentials, DlfClient, DlfImportRequest,
    DlfListJobsQuery, DliClient, ListJobsQuery, ObjectStore, ObsOptions, RequestMetrics,
    RetryPolicy, Secret, ServiceEndpoints, SystemTaskStatus,
};
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_DOMAIN_NAME, DEV_PROJECT_ID, DEV_SECRET_KEY, DEV_USER_NAME,
    DEV_USER_PASSWORD, Emulator, EmulatorConfig, EmulatorDelays, EmulatorFaults, EmulatorHandle,
};
use dli_gitops::model::{CheckpointMode, DlfImportSettings, FlinkJobConfig, JobKind};
use serde_json::{Value, json};
use url::Url;

const STAGING: &str = "obs://dli-gitops-staging/tests/";
const SAVEPOINTS: &str = "obs://dli-gitops-savepoints/";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn start(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::start(config)
        .await
        .expect("the emulator starts on loopback")
}

fn dev_keys() -> Credentials {
    Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.into(),
        secret_key: Secret::new(DEV_SECRET_KEY),
        security_token: None,
    }
}

/// Quick backoff and no client-side rate limit, so tests spend their time on the wire.
fn options(metrics: &RequestMetrics) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        requests_per_second: 0.0,
        metrics: metrics.clone(),
        ..ClientOptions::default()
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn dli(handle: &EmulatorHandle, credentials: Credentials, options: ClientOptions) -> DliClient {
    DliClient::new(url(&handle.dli_url()), DEV_PROJECT_ID, credentials, options).unwrap()
}

fn dlf(handle: &EmulatorHandle, credentials: Credentials, options: ClientOptions) -> DlfClient {
    DlfClient::new(
        url(&handle.dlf_url()),
        DEV_PROJECT_ID,
        credentials,
        options,
        None,
    )
    .unwrap()
}

/// An `ObjectStore` on the emulator's S3 endpoint: the same code path as real OBS.
fn store(handle: &EmulatorHandle, location: &str) -> ObjectStore {
    let options = ObsOptions {
        endpoint: Some(url(&handle.s3_url())),
        region: "cn-north-4".into(),
        credentials: Some(dev_keys()),
        ..ObsOptions::default()
    };
    ObjectStore::from_url(location, &options).unwrap()
}

/// The emulator's per-operation call counts (every HTTP attempt that reached it).
async fn stats(handle: &EmulatorHandle) -> BTreeMap<String, u64> {
    let body: Value = reqwest::get(format!("{}/_emulator/v1/stats", handle.dli_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(body["operations"].clone()).unwrap()
}

fn count(stats: &BTreeMap<String, u64>, operation: &str) -> u64 {
    stats.get(operation).copied().unwrap_or(0)
}

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

// ---------------------------------------------------------------------------------------------
// DLF: import from OBS and system-task polling
// ---------------------------------------------------------------------------------------------

fn dlf_job(name: &str, nodes: Value) -> DlfJobEntry {
    DlfJobEntry {
        name: name.into(),
        job: json!({
            "name": name,
            "processType": "BATCH",
            "nodes": nodes,
            "params": [{"name": "env", "value": "dev"}],
            "schedule": {"type": "EXECUTE_ONCE"},
        }),
        scripts: [(
            "load_sql".to_string(),
            json!({"name": "load_sql", "type": "DLISQL", "content": "insert into t select 1"}),
        )]
        .into_iter()
        .collect(),
        resources: BTreeMap::new(),
    }
}

fn dlf_import(path: String, params: &[(&str, &str)]) -> DlfImportRequest {
    DlfImportRequest {
        path,
        same_name_policy: "OVERWRITE".into(),
        jobs_params: Vec::new(),
        settings: DlfImportSettings {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target_status: Some("SUBMITTED".into()),
            ..DlfImportSettings::default()
        },
    }
}

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

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn iam_token_auth_fetches_one_token_and_reuses_it() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(EmulatorConfig::for_tests(temp.path().to_path_buf())).await;
    let metrics = RequestMetrics::default();
    let token_options = ClientOptions {
        iam_endpoint: Some(url(&handle.iam_url())),
        ..options(&metrics)
    };
    let user = Credentials::Password {
        user: DEV_USER_NAME.into(),
        password: Secret::new(DEV_USER_PASSWORD),
        domain: DEV_DOMAIN_NAME.into(),
    };
    let client = dli(&handle, user, token_options.clone());
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.sql_body = Some("select 1".into());
    let job_id = client.create_sql_job("token-job", &config).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            client
                .list_jobs(&ListJobsQuery::default())
                .await
                .unwrap()
                .len(),
            1
        );
    }
    assert_eq!(client.job_detail(job_id).await.unwrap().name, "token-job");
    let counted = stats(&handle).await;
    assert_eq!(count(&counted, "IamCreateToken"), 1, "{counted:?}");
    assert_eq!(count(&counted, "ListFlinkJobs"), 3);

    // A wrong password: IAM refuses it once, and the client does not ask again.
    let wrong = Credentials::Password {
        user: DEV_USER_NAME.into(),
        password: Secret::new("not-the-password-3e1f"),
        domain: DEV_DOMAIN_NAME.into(),
    };
    let refused_client = dli(&handle, wrong, token_options);
    let refused = refused_client
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(refused.is_auth_failure(), "{refused}");
    assert!(!refused.to_string().contains("not-the-password-3e1f"));
    let held = refused_client
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(held, CloudError::AuthBackoff { .. }), "{held}");
    let counted = stats(&handle).await;
    assert_eq!(count(&counted, "IamCreateToken"), 2, "{counted:?}");
    assert_eq!(
        count(&counted, "ListFlinkJobs"),
        3,
        "nothing sent without a token"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_key_fails_fast_and_is_never_retried_into_a_lockout() {
    let temp = tempfile::tempdir().unwrap();
    // The emulator's default gateway lockout (5 bad signatures) stays on: the point is that our
    // client never gets there.
    let handle = start(EmulatorConfig::for_tests(temp.path().to_path_buf())).await;
    let metrics = RequestMetrics::default();
    let wrong = Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.into(),
        secret_key: Secret::new("wrong-secret-key-5d0c"),
        security_token: None,
    };
    let bad_dli = dli(&handle, wrong.clone(), options(&metrics));
    let first = bad_dli
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    match &first {
        CloudError::Service {
            status,
            error_code,
            context,
            request_id,
            ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(error_code.as_deref(), Some("APIG.0301"));
            assert_eq!(context.attempts, 1);
            assert!(request_id.is_some());
        }
        other => panic!("expected the gateway's 401, got {other:?}"),
    }
    assert!(first.is_auth_failure());
    assert!(!first.is_retryable());
    for _ in 0..9 {
        let held = bad_dli
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap_err();
        assert!(matches!(held, CloudError::AuthBackoff { .. }), "{held}");
        assert!(held.to_string().contains("fix the access key"), "{held}");
    }
    // The DLF client with the same key at the same endpoint is held back too.
    let bad_dlf = dlf(&handle, wrong, options(&metrics));
    let held = bad_dlf
        .list_jobs(&DlfListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(held, CloudError::AuthBackoff { .. }), "{held}");
    for error in [&first, &held] {
        assert!(!format!("{error} {error:?}").contains("wrong-secret-key-5d0c"));
    }

    let counted = stats(&handle).await;
    assert_eq!(count(&counted, "ListFlinkJobs"), 1, "{counted:?}");
    assert_eq!(count(&counted, "DlfListJobs"), 0, "{counted:?}");
    assert_eq!(metrics.total("dli", "list_jobs"), 1);
    // One bad signature is far from the gateway's lockout: the right key still works.
    let good = dli(&handle, dev_keys(), options(&RequestMetrics::default()));
    assert!(
        good.list_jobs(&ListJobsQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------------------------

/// The emulator's operation name for each client operation the fault test makes.
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("dli", "create_sql_job", "CreateFlinkSqlJob"),
    ("dli", "list_jobs", "ListFlinkJobs"),
    ("dli", "job_detail", "ShowFlinkJob"),
    ("dli", "job_tags", "ListFlinkJobTags"),
    ("dli", "update_sql_job", "UpdateFlinkSqlJob"),
    ("dli", "run_jobs", "BatchRunFlinkJobs"),
    ("dli", "stop_jobs", "BatchStopFlinkJobs"),
    ("dli", "export_jobs", "ExportFlinkJobs"),
    ("dli", "delete_jobs", "BatchDeleteFlinkJobs"),
    ("dlf", "import_jobs", "DlfImportJob"),
    ("dlf", "system_task", "DlfListSystemTasks"),
];

#[tokio::test]
async fn calls_ride_out_injected_faults_within_the_retry_budget() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.delays = EmulatorDelays::zero();
    config.faults = EmulatorFaults {
        error_rate: 0.2,
        throttle_rate: 0.1,
        drop_rate: 0.1,
        latency_ms: 5,
        retry_after_seconds: 1,
        seed: 20261122,
        ..EmulatorFaults::default()
    };
    let handle = start(config).await;
    let metrics = RequestMetrics::default();
    let max_attempts = 8;
    let client_options = ClientOptions {
        retry: RetryPolicy {
            max_attempts,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        ..options(&metrics)
    };
    let client = dli(&handle, dev_keys(), client_options.clone());
    let started = Instant::now();
    let mut calls: BTreeMap<&str, u64> = BTreeMap::new();
    let mut job_config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    job_config.sql_body = Some("insert into sink select * from source".into());
    // An exclusive-cluster job (the default) starts only with a queue.
    job_config.queue_name = Some("flink_queue".into());
    job_config
        .tags
        .insert("managed-by".into(), "dli-gitops".into());

    let names: Vec<String> = (0..6).map(|n| format!("faulty-{n}")).collect();
    let mut ids = Vec::new();
    for name in &names {
        ids.push(client.create_sql_job(name, &job_config).await.unwrap());
        *calls.entry("create_sql_job").or_default() += 1;
    }
    let listed = client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    *calls.entry("list_jobs").or_default() += 1;
    // A create that failed in transit was checked by name before being resent: no duplicates.
    let listed_names: Vec<&str> = listed.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(listed_names.len(), names.len(), "{listed_names:?}");
    assert_eq!(
        listed_names.iter().copied().collect::<BTreeSet<_>>(),
        names.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    let mut updated = job_config.clone();
    updated.cu_number = 4;
    for &job_id in &ids {
        client.update_sql_job(job_id, &updated).await.unwrap();
        *calls.entry("update_sql_job").or_default() += 1;
        let observed = client.job_detail(job_id).await.unwrap();
        *calls.entry("job_detail").or_default() += 1;
        *calls.entry("job_tags").or_default() += 1;
        // Unset service-computed fields (tm_slot_num, flink_version) are the service's choice.
        assert_eq!(updated.field_diffs(&observed.config), vec![]);
    }
    // Run and stop are never resent by the client (a late first attempt could land after the
    // resend): a failed one is one request, and the caller decides. These faults all happen
    // before the emulator changes anything, so here the test sends the call again itself.
    for operation in ["run_jobs", "stop_jobs"] {
        loop {
            *calls.entry(operation).or_default() += 1;
            let sent = if operation == "run_jobs" {
                client.run_jobs(&ids, false).await
            } else {
                client.stop_jobs(&ids, true).await
            };
            match sent {
                Ok(()) => break,
                Err(error) => {
                    assert!(error.is_retryable(), "{error}");
                    assert_eq!(
                        error.context().map(|context| context.attempts),
                        Some(1),
                        "a lifecycle call is sent once: {error}"
                    );
                }
            }
        }
    }
    let zips = client
        .export_jobs("obs://dli-gitops-backups/faulty/", Some(&ids))
        .await
        .unwrap();
    assert_eq!(zips.len(), ids.len());
    client.delete_jobs(&ids).await.unwrap();
    for operation in ["export_jobs", "delete_jobs"] {
        *calls.entry(operation).or_default() += 1;
    }

    // DLF: an import through the same faults, polled to its end.
    let dlf_client = dlf(&handle, dev_keys(), client_options.clone());
    let staging = store(&handle, STAGING);
    let nodes = json!([{"name": "load", "type": "DLISQL"}]);
    let zip = bundle::write_dlf_zip(&[dlf_job("faulty-load", nodes)]).unwrap();
    staging
        .put("dlf/faulty.zip", Bytes::from(zip))
        .await
        .unwrap();
    let task_id = dlf_client
        .import_jobs(&dlf_import(staging.url_of("dlf/faulty.zip"), &[]))
        .await
        .unwrap();
    *calls.entry("import_jobs").or_default() += 1;
    let task = dlf_client
        .wait_system_task(&task_id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(task.status, SystemTaskStatus::Successful);
    // Each poll is one logical call that ended in one answer.
    calls.insert("system_task", metrics.count("dlf", "system_task", "200"));

    // A permanent error is not retried, faults or not: the first real answer ends the call.
    let missing = client.job_detail(ids[0]).await.unwrap_err();
    *calls.entry("job_detail").or_default() += 1;
    assert_eq!(missing.error_code(), Some("DLI.16001"), "{missing}");
    assert!(missing.is_not_found() && !missing.is_retryable());
    assert_eq!(metrics.count("dli", "job_detail", "400"), 1);

    // Faults happened, and every one was ridden out within the budget.
    let snapshot = metrics.snapshot();
    let faulted = |outcome: &str| -> u64 {
        snapshot
            .iter()
            .filter(|c| c.outcome == outcome)
            .map(|c| c.count)
            .sum()
    };
    let (server_errors, throttled, dropped) = (faulted("500"), faulted("429"), faulted("io"));
    assert!(
        server_errors > 0 && throttled > 0 && dropped > 0,
        "{snapshot:#?}"
    );
    println!(
        "faults ridden out: {server_errors} x 500, {throttled} x 429, {dropped} dropped, in {:?}; {snapshot:?}",
        started.elapsed()
    );
    let emulator = stats(&handle).await;
    for (service, operation, emulator_name) in OPERATIONS {
        let attempts = metrics.total(service, operation);
        // The client counted exactly the attempts the emulator saw: no hidden retries.
        assert_eq!(
            attempts,
            count(&emulator, emulator_name),
            "{operation}: {emulator:?}"
        );
        let logical = match *operation {
            // A create that failed in transit looks its name up before it is sent again.
            "list_jobs" => {
                calls["list_jobs"] + calls["create_sql_job"] * u64::from(max_attempts - 1)
            }
            other => calls[other],
        };
        assert!(
            attempts <= logical * u64::from(max_attempts),
            "{operation}: {attempts} attempts for {logical} calls"
        );
    }
    // Retry-After (1 s) was honoured for every throttled attempt that was retried.
    assert!(
        started.elapsed() >= Duration::from_secs(throttled),
        "{throttled} throttled attempts in {:?}",
        started.elapsed()
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn a_service_that_keeps_failing_exhausts_the_budget_with_a_retryable_error() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.faults = EmulatorFaults {
        error_rate: 1.0,
        ..EmulatorFaults::default()
    };
    let handle = start(config).await;
    let metrics = RequestMetrics::default();
    let client = dli(&handle, dev_keys(), options(&metrics));
    let error = client.job_detail(1).await.unwrap_err();
    match &error {
        CloudError::Service {
            status,
            error_code,
            context,
            ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(error_code.as_deref(), Some("DLI.0999"));
            assert_eq!(context.attempts, 5);
        }
        other => panic!("expected the injected 500, got {other:?}"),
    }
    assert!(
        error.is_retryable(),
        "the daemon's loop may try again later"
    );
    assert!(error.to_string().contains("after 5 attempts"), "{error}");
    assert_eq!(count(&stats(&handle).await, "ShowFlinkJob"), 5);

    // A create is never resent blindly: after each transient failure the client looks the
    // name up first (the lookups fail too here, so the first of them ends the call).
    let mut job_config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    job_config.sql_body = Some("select 1".into());
    let create = client
        .create_sql_job("never", &job_config)
        .await
        .unwrap_err();
    assert!(create.is_retryable(), "{create}");
    let counted = stats(&handle).await;
    assert_eq!(count(&counted, "CreateFlinkSqlJob"), 1, "{counted:?}");
    assert_eq!(count(&counted, "ListFlinkJobs"), 5, "{counted:?}");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_failing_token_request_is_retried_once_per_budget_not_once_per_attempt() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::for_tests(temp.path().to_path_buf());
    config.faults = EmulatorFaults {
        error_rate: 1.0,
        ..EmulatorFaults::default()
    };
    let handle = start(config).await;
    let metrics = RequestMetrics::default();
    let user = Credentials::Password {
        user: DEV_USER_NAME.into(),
        password: Secret::new(DEV_USER_PASSWORD),
        domain: DEV_DOMAIN_NAME.into(),
    };
    let client = dli(
        &handle,
        user,
        ClientOptions {
            iam_endpoint: Some(url(&handle.iam_url())),
            ..options(&metrics)
        },
    );
    let error = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    match &error {
        CloudError::Service {
            status, context, ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(context.service, "iam", "{error}");
            assert_eq!(context.attempts, 5, "{error}");
        }
        other => panic!("expected IAM's injected 500, got {other:?}"),
    }
    assert!(error.is_retryable());
    let counted = stats(&handle).await;
    // The IAM client's own retries are the whole budget: 5 token requests, not 5 × 5.
    assert_eq!(count(&counted, "IamCreateToken"), 5, "{counted:?}");
    assert_eq!(count(&counted, "ListFlinkJobs"), 0, "{counted:?}");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_project_the_key_may_not_use_does_not_hold_back_its_other_projects() {
    let temp = tempfile::tempdir().unwrap();
    let handle = start(EmulatorConfig::for_tests(temp.path().to_path_buf())).await;
    let metrics = RequestMetrics::default();
    // A target configured with the wrong project id, sharing its key with a correct one.
    let wrong_project = DliClient::new(
        url(&handle.dli_url()),
        "99999999999999999999999999999999",
        dev_keys(),
        options(&metrics),
    )
    .unwrap();
    let refused = wrong_project
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
    assert_eq!(refused.error_code(), Some("APIG.0302"), "{refused}");
    assert!(!refused.is_retryable());
    assert_eq!(metrics.total("dli", "list_jobs"), 1, "not retried");
    // The key itself is fine: the correct target keeps working.
    let right_project = dli(&handle, dev_keys(), options(&metrics));
    assert!(
        right_project
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    handle.shutdown().await;
}
