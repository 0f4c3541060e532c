//! Cold observation from listings: a pass with an empty journal reads every job's configuration
//! from `ListFlinkJobs` with `show_detail=true` and every job's tags from one bulk tag read
//! (`resource-instances/filter`), so it costs ⌈jobs/100⌉ list calls plus one tag call; a refused
//! bulk read falls back to per-job tag reads; a listing whose `job_config` is missing or
//! malformed for some jobs reads those jobs' details only and never plans from it; a pass that
//! acted is confirmed with one detail read per job it acted on. Counted by the emulator's own
//! call statistics, or by a scripted DLI server on loopback for the malformed listings.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use dli_gitops::apply::{self, ApplyOptions, LiveService, TargetContext};
use dli_gitops::cloud::signer::{self, SignableRequest};
use dli_gitops::config::Config;
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, EmulatorHandle,
};
use dli_gitops::model::{FlinkJobConfig, JobKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use support::target::{PRUNE, emulator_stats, write_target_config};

// ---------------------------------------------------------------------------------------------
// A target over the emulator (or any DLI endpoint)
// ---------------------------------------------------------------------------------------------

struct Harness {
    dir: tempfile::TempDir,
    emulator: Option<EmulatorHandle>,
    context: TargetContext,
}

impl Harness {
    async fn emulator(mut emulator_config: EmulatorConfig) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        emulator_config.data_dir = dir.path().join("emulator");
        let emulator = Emulator::start(emulator_config)
            .await
            .expect("emulator starts");
        let config_path =
            write_target_config(dir.path(), &emulator.dli_url(), &emulator.dli_url(), PRUNE);
        Harness::open(dir, Some(emulator), &config_path).await
    }

    async fn at(api: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = write_target_config(dir.path(), api, api, PRUNE);
        Harness::open(dir, None, &config_path).await
    }

    async fn open(
        dir: tempfile::TempDir,
        emulator: Option<EmulatorHandle>,
        config_path: &std::path::Path,
    ) -> Harness {
        let config = Config::load(config_path).expect("config loads");
        let mut context = TargetContext::open(&config, "dev")
            .await
            .expect("target opens");
        context.options.poll_interval = Duration::from_millis(5);
        Harness {
            dir,
            emulator,
            context,
        }
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.dir.path().join("repo").join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    async fn stats(&self) -> BTreeMap<String, u64> {
        emulator_stats(self.emulator.as_ref().expect("an emulator")).await
    }

    async fn pass(&self, dry_run: bool) -> apply::ApplyReport {
        let (desired, revision) = dli_gitops::pass::desired_for(&self.context, None)
            .await
            .expect("repository resolves");
        let options = ApplyOptions {
            dry_run,
            revision: Some(revision),
            ..self.context.options.clone()
        };
        apply::reconcile_once(&self.context, &desired, &options)
            .await
            .expect("the pass runs")
    }
}

/// Calls per operation between two stats snapshots (operations with none left out).
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(operation, count)| {
            (
                operation.clone(),
                count - before.get(operation).copied().unwrap_or(0),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

fn sql_config(cu_number: i32) -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.sql_body = Some("SELECT 1 AS v;".to_string());
    config.queue_name = Some("q1".to_string());
    config.cu_number = cu_number;
    config
        .tags
        .insert("managed-by".to_string(), "dli-gitops".to_string());
    config.tags.insert("team".to_string(), "data".to_string());
    config
}

/// Seeds `count` jobs through the emulator's API, returns their ids by name.
async fn seed(harness: &Harness, count: usize) -> BTreeMap<String, i64> {
    let mut ids = BTreeMap::new();
    for number in 0..count {
        let name = format!("job-{number:03}");
        let config = sql_config(2 + (number % 3) as i32 * 2);
        let id = harness
            .context
            .live
            .create_flink_job(&name, &config)
            .await
            .unwrap();
        ids.insert(name, id);
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// Against the emulator
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_observation_reads_configurations_from_the_listing_and_tags_in_bulk() {
    let harness = Harness::emulator(EmulatorConfig::for_tests(PathBuf::new())).await;
    let ids = seed(&harness, 250).await;

    let before = harness.stats().await;
    let (observed, report) = apply::observe(&harness.context).await.unwrap();
    let calls = delta(&before, &harness.stats().await);
    assert_eq!(observed.flink.len(), 250);
    assert_eq!(
        calls,
        BTreeMap::from([
            ("ListFlinkJobs".to_string(), 3),
            ("ListResourcesByTags".to_string(), 1),
        ]),
        "⌈250/100⌉ list pages and one bulk tag read, no detail or per-job tag read"
    );
    assert_eq!(
        (
            report.flink_list_calls,
            report.flink_detail_calls,
            report.flink_tag_calls,
            report.from_listing,
            report.flink_listing_fallbacks,
            report.recorded,
        ),
        (3, 0, 1, 250, 0, 250)
    );
    // What the listing gave is what a detail read gives, job by job (tags included).
    for name in ["job-000", "job-001", "job-002", "job-137", "job-249"] {
        let from_listing = observed.flink.iter().find(|job| job.name == name).unwrap();
        let detail = harness.context.live.flink_job(ids[name]).await.unwrap();
        assert_eq!(*from_listing, detail, "{name}");
        assert_eq!(
            from_listing.config.tags.get("team").map(String::as_str),
            Some("data")
        );
    }

    // The next pass is served from the journal: list pages only.
    let before = harness.stats().await;
    let (_, second) = apply::observe(&harness.context).await.unwrap();
    let calls = delta(&before, &harness.stats().await);
    assert_eq!(calls, BTreeMap::from([("ListFlinkJobs".to_string(), 3)]));
    assert_eq!((second.cached, second.flink_tag_calls), (250, 0));

    // Every job moved (a tag written outside dli-gitops): a plain listing shows more moved jobs
    // than a listing with configurations costs, so the pages are read again with them.
    let extra = BTreeMap::from([("owner".to_string(), "someone".to_string())]);
    for id in ids.values() {
        harness
            .context
            .live
            .update_flink_tags(*id, &extra, &[])
            .await
            .unwrap();
    }
    let before = harness.stats().await;
    let (observed, third) = apply::observe(&harness.context).await.unwrap();
    let calls = delta(&before, &harness.stats().await);
    assert_eq!(
        calls,
        BTreeMap::from([
            ("ListFlinkJobs".to_string(), 6),
            ("ListResourcesByTags".to_string(), 1),
        ]),
        "three plain pages, three with configurations, one bulk tag read; no detail"
    );
    assert_eq!((third.from_listing, third.flink_detail_calls), (250, 0));
    assert!(
        observed
            .flink
            .iter()
            .all(|job| job.config.tags.get("owner").map(String::as_str) == Some("someone"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bulk_tag_read_falls_back_to_reading_each_jobs_tags() {
    let mut emulator_config = EmulatorConfig::for_tests(PathBuf::new());
    emulator_config.faults.forbidden = vec!["ListResourcesByTags".to_string()];
    let harness = Harness::emulator(emulator_config).await;
    seed(&harness, 12).await;

    let before = harness.stats().await;
    let (observed, report) = apply::observe(&harness.context).await.unwrap();
    let calls = delta(&before, &harness.stats().await);
    assert_eq!(
        calls,
        BTreeMap::from([
            ("ListFlinkJobs".to_string(), 1),
            ("ListResourcesByTags".to_string(), 1),
            ("ListFlinkJobTags".to_string(), 12),
        ]),
        "one refused bulk read, then each job's tags; still no detail read"
    );
    assert_eq!((report.flink_detail_calls, report.flink_tag_calls), (0, 13));
    assert!(
        observed.flink.iter().all(|job| job.is_managed()
            && job.config.tags.get("team").map(String::as_str) == Some("data"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_acted_is_confirmed_with_one_read_per_job_it_acted_on() {
    let harness = Harness::emulator(EmulatorConfig::for_tests(PathBuf::new())).await;
    for number in 0..150 {
        harness.write(
            &format!("flink/job-{number:03}.yaml"),
            &format!(
                "kind: FlinkSqlJob\nname: job-{number:03}\nsql_body: \"SELECT 1 AS v;\"\nqueue_name: q1\nrestart_when_exception: false\n"
            ),
        );
    }
    let created = harness.pass(false).await;
    assert!(created.converged(), "{}", created.render_text());
    // One job's hot field changes.
    harness.write(
        "flink/job-042.yaml",
        "kind: FlinkSqlJob\nname: job-042\nsql_body: \"SELECT 1 AS v;\"\nqueue_name: q1\nrestart_when_exception: true\n",
    );
    let (desired, _) = dli_gitops::pass::desired_for(&harness.context, None)
        .await
        .unwrap();
    let options = ApplyOptions {
        dry_run: false,
        ..harness.context.options.clone()
    };
    let applied = apply::reconcile_once(&harness.context, &desired, &options)
        .await
        .unwrap();
    assert_eq!(applied.results.len(), 1, "{}", applied.plan.render_text());
    assert!(applied.converged());

    let before = harness.stats().await;
    let confirmed = apply::confirm_with(
        &harness.context.live,
        &harness.context.ledger,
        &desired,
        &harness.context.policy,
        &options,
        applied.observed.clone(),
        &applied.results,
    )
    .await
    .unwrap();
    let calls = delta(&before, &harness.stats().await);
    assert_eq!(
        calls,
        BTreeMap::from([
            ("ShowFlinkJob".to_string(), 1),
            ("ListFlinkJobTags".to_string(), 1),
        ]),
        "the changed job's detail (and its tags), no list page"
    );
    assert!(
        confirmed.plan.is_empty(),
        "{}",
        confirmed.plan.render_text()
    );
    assert_eq!(confirmed.observed.flink.len(), 150);
    let changed = confirmed
        .observed
        .flink
        .iter()
        .find(|job| job.name == "job-042")
        .unwrap();
    assert!(changed.config.restart_when_exception);

    // The next scheduled pass lists every page again and finds nothing to do, no detail read.
    let before = harness.stats().await;
    let next = harness.pass(true).await;
    let calls = delta(&before, &harness.stats().await);
    assert!(next.plan.is_empty(), "{}", next.plan.render_text());
    assert_eq!(calls, BTreeMap::from([("ListFlinkJobs".to_string(), 2)]));
}

/// A minimal signing client for the strictness checks.
async fn signed(
    emulator: &EmulatorHandle,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, Value) {
    let base = emulator.dli_url();
    let host = base.trim_start_matches("http://").to_string();
    let body = body.unwrap_or_default().as_bytes().to_vec();
    let date = chrono::Utc::now().format(signer::DATE_FORMAT).to_string();
    let headers = vec![
        (
            "Content-Type".to_string(),
            "application/json;charset=UTF-8".to_string(),
        ),
        ("Host".to_string(), host),
        ("X-Project-Id".to_string(), DEV_PROJECT_ID.to_string()),
        ("X-Sdk-Date".to_string(), date),
    ];
    let query_pairs: Vec<(String, String)> = query
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let authorization = signer::sign(
        DEV_ACCESS_KEY,
        DEV_SECRET_KEY,
        &SignableRequest {
            method: method.as_str(),
            path,
            query: &query_pairs,
            headers: &headers,
            body: &body,
        },
        &["content-type", "host", "x-project-id", "x-sdk-date"],
    )
    .unwrap();
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .query(query)
        .header("Authorization", authorization)
        .body(body);
    for (name, value) in &headers {
        if name != "Host" {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_answers_show_detail_and_the_tag_filter_as_documented() {
    let harness = Harness::emulator(EmulatorConfig::for_tests(PathBuf::new())).await;
    let ids = seed(&harness, 3).await;
    let emulator = harness.emulator.as_ref().unwrap();
    let jobs = format!("/v1.0/{DEV_PROJECT_ID}/streaming/jobs");
    let filter = format!("/v3/{DEV_PROJECT_ID}/dli_flink_job/resource-instances/filter");

    // `show_detail`: `job_config` only when asked; anything but true/false refused.
    let (status, plain) = signed(emulator, Method::GET, &jobs, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(plain["job_list"]["jobs"][0].get("job_config").is_none());
    let (_, detailed) = signed(
        emulator,
        Method::GET,
        &jobs,
        &[("show_detail", "true")],
        None,
    )
    .await;
    assert!(detailed["job_list"]["jobs"][0]["job_config"].is_object());
    let (status, refused) = signed(
        emulator,
        Method::GET,
        &jobs,
        &[("show_detail", "yes")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    // The filter: every job with its tags when nothing is filtered.
    let (status, all) = signed(emulator, Method::POST, &filter, &[], Some("{}")).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total_count"], 3);
    let first = &all["resources"][0];
    assert_eq!(first["resource_id"], ids["job-000"].to_string());
    assert_eq!(first["resource_name"], "job-000");
    assert!(
        first["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "team", "value": "data"}))
    );
    // Paged by limit/offset.
    let (_, page) = signed(
        emulator,
        Method::POST,
        &filter,
        &[("limit", "2"), ("offset", "2")],
        Some("{}"),
    )
    .await;
    assert_eq!(page["resources"].as_array().unwrap().len(), 1);
    assert_eq!(page["total_count"], 3);
    // A tag filter (values empty = any value), a name prefix.
    let (_, tagged) = signed(
        emulator,
        Method::POST,
        &filter,
        &[],
        Some(r#"{"tags": [{"key": "team", "values": []}], "matches": [{"key": "resource_name", "value": "job-00"}]}"#),
    )
    .await;
    assert_eq!(tagged["total_count"], 3);
    let (_, untagged) = signed(
        emulator,
        Method::POST,
        &filter,
        &[],
        Some(r#"{"without_any_tag": true}"#),
    )
    .await;
    assert_eq!(untagged["total_count"], 0);
    // What the documented service refuses.
    for (query, body) in [
        (vec![("limit", "0")], "{}"),
        (vec![("limit", "1001")], "{}"),
        (vec![("offset", "-1")], "{}"),
        (vec![("limit", "ten")], "{}"),
        (vec![], ""),
        (vec![], r#"{"tags": [{"key": "team"}]}"#),
        (vec![], r#"{"tags": [{"key": "", "values": []}]}"#),
        (
            vec![],
            r#"{"tags": [{"key": "a", "values": []}, {"key": "a", "values": []}]}"#,
        ),
        (
            vec![],
            r#"{"matches": [{"key": "resource_id", "value": "1"}]}"#,
        ),
        (vec![], r#"{"filter": {}}"#),
    ] {
        let (status, answer) = signed(emulator, Method::POST, &filter, &query, Some(body)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{query:?} {body}: {answer}"
        );
        assert_eq!(answer["error_code"], "DLI.0001", "{answer}");
    }
}

// ---------------------------------------------------------------------------------------------
// A DLI server whose listing lacks or garbles some jobs' `job_config`
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Scripted {
    /// Full job objects (as a detail carries them), by id.
    jobs: BTreeMap<i64, Value>,
    /// What the listing carries instead of the job's `job_config` (`Null`: left out).
    listing_config: BTreeMap<i64, Value>,
    lists: AtomicU32,
    /// Lists that asked for configurations (`show_detail=true`).
    detailed_lists: AtomicU32,
    details: AtomicU32,
    bulk_tags: AtomicU32,
    job_tags: AtomicU32,
}

const TAGS: &str = r#"[{"key": "managed-by", "value": "dli-gitops"}]"#;

async fn scripted_list(
    State(state): State<Arc<Scripted>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> axum::Json<Value> {
    state.lists.fetch_add(1, Ordering::SeqCst);
    let offset: usize = query
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let show_detail = query.get("show_detail").map(String::as_str) == Some("true");
    if show_detail {
        state.detailed_lists.fetch_add(1, Ordering::SeqCst);
    }
    let jobs: Vec<Value> = state
        .jobs
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(id, job)| {
            let mut entry = job.clone();
            let object = entry.as_object_mut().unwrap();
            match (show_detail, state.listing_config.get(id)) {
                (false, _) => {
                    object.remove("job_config");
                }
                (true, Some(Value::Null)) => {
                    object.remove("job_config");
                }
                (true, Some(replacement)) => {
                    object.insert("job_config".into(), replacement.clone());
                }
                (true, None) => {}
            }
            entry
        })
        .collect();
    axum::Json(json!({"is_success": "true", "message": "",
        "job_list": {"total_count": state.jobs.len(), "jobs": jobs}}))
}

async fn scripted_detail(
    State(state): State<Arc<Scripted>>,
    Path((_, id)): Path<(String, i64)>,
) -> axum::Json<Value> {
    state.details.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"is_success": "true", "message": "", "job_detail": state.jobs[&id]}))
}

async fn scripted_bulk_tags(State(state): State<Arc<Scripted>>) -> axum::Json<Value> {
    state.bulk_tags.fetch_add(1, Ordering::SeqCst);
    let tags: Value = serde_json::from_str(TAGS).unwrap();
    let resources: Vec<Value> = state
        .jobs
        .iter()
        .map(|(id, job)| json!({"resource_id": id.to_string(), "resource_name": job["name"], "resource_detail": null, "tags": tags}))
        .collect();
    axum::Json(json!({"resources": resources, "total_count": state.jobs.len()}))
}

async fn scripted_job_tags(State(state): State<Arc<Scripted>>) -> axum::Json<Value> {
    state.job_tags.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"tags": serde_json::from_str::<Value>(TAGS).unwrap()}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_with_missing_or_malformed_job_config_reads_only_those_jobs_details() {
    let mut scripted = Scripted::default();
    for id in 1..=6_i64 {
        scripted.jobs.insert(
            id,
            json!({
                "job_id": id, "name": format!("job-{id}"), "job_type": "flink_opensource_sql_job",
                "status": "job_running", "update_time": 1_711_647_009_620_i64 + id,
                "create_time": 1_711_647_000_000_i64, "run_mode": "exclusive_cluster",
                "queue_name": "q1", "sql_body": "SELECT 1 AS v;",
                "job_config": {"cu_number": 4, "manager_cu_number": 1, "parallel_number": 1,
                    "checkpoint_mode": "exactly_once", "checkpoint_interval": 10,
                    "restart_when_exception": false}
            }),
        );
    }
    // job-2: no job_config; job-3: not an object; job-4: a value that does not read.
    scripted.listing_config.insert(2, Value::Null);
    scripted.listing_config.insert(3, json!("cu_number=4"));
    scripted
        .listing_config
        .insert(4, json!({"cu_number": 4, "checkpoint_mode": "sometimes"}));
    let state = Arc::new(scripted);
    let app = axum::Router::new()
        .route("/v1.0/{pid}/streaming/jobs", get(scripted_list))
        .route("/v1.0/{pid}/streaming/jobs/{id}", get(scripted_detail))
        .route(
            "/v3/{pid}/dli_flink_job/resource-instances/filter",
            post(scripted_bulk_tags),
        )
        .route("/v3/{pid}/dli_flink_job/{id}/tags", get(scripted_job_tags))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let harness = Harness::at(&format!("http://{address}")).await;

    let (observed, report) = apply::observe(&harness.context).await.unwrap();
    assert_eq!(
        (
            state.lists.load(Ordering::SeqCst),
            state.details.load(Ordering::SeqCst),
            state.bulk_tags.load(Ordering::SeqCst),
            state.job_tags.load(Ordering::SeqCst),
        ),
        (1, 3, 1, 3),
        "one page, one bulk tag read, and the three jobs' details (with their tags: a detail \
         carries none)"
    );
    assert_eq!(
        (
            report.from_listing,
            report.flink_detail_calls,
            report.flink_listing_fallbacks
        ),
        (3, 3, 3)
    );
    // Never "no configuration": every job has its real cu_number.
    assert_eq!(observed.flink.len(), 6);
    for job in &observed.flink {
        assert_eq!(job.config.cu_number, 4, "{}", job.name);
        assert!(job.is_managed(), "{}", job.name);
    }

    assert_eq!(state.detailed_lists.load(Ordering::SeqCst), 1);

    // Warm: a plain listing (no configurations, half the bytes) and nothing read.
    let (observed, warm) = apply::observe(&harness.context).await.unwrap();
    assert_eq!(observed.flink.len(), 6);
    assert_eq!(
        (
            state.lists.load(Ordering::SeqCst),
            state.detailed_lists.load(Ordering::SeqCst),
            state.details.load(Ordering::SeqCst),
        ),
        (2, 1, 3)
    );
    assert_eq!((warm.cached, warm.flink_detail_calls), (6, 0));

    // And so nothing plans a change of cu_number from the listing.
    for id in 1..=6 {
        harness.write(
            &format!("flink/job-{id}.yaml"),
            &format!(
                "kind: FlinkSqlJob\nname: job-{id}\nsql_body: \"SELECT 1 AS v;\"\nqueue_name: q1\ncu_number: 4\n"
            ),
        );
    }
    let planned = harness.pass(true).await;
    for action in planned.plan.changes() {
        assert!(
            action.diffs.iter().all(|diff| diff.field != "cu_number"),
            "{}",
            planned.plan.render_text()
        );
    }
}
