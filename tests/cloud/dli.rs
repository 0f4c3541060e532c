//! The DLI client against the scripted server: paging, wire quirks, retries, throttling,
//! create/update semantics, batch calls, path formats, the rate limit.

use super::*;

fn listed(id: i64) -> Value {
    json!({"job_id": id, "name": format!("job-{id}"), "status": "job_running", "update_time": 1711647009620_i64 + id,
           "job_type": "flink_opensource_sql_job", "queue_name": "q"})
}

// ---------------------------------------------------------------------------------------------
// DLI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_jobs_pages_with_limit_100_until_done() {
    let page = |ids: std::ops::Range<i64>, total: i64, stringly: bool| {
        let jobs: Vec<Value> = ids
            .map(|id| {
                let mut job = listed(id);
                if stringly {
                    job["job_id"] = json!(id.to_string());
                    job["update_time"] = json!((1711647009620_i64 + id).to_string());
                }
                job
            })
            .collect();
        json_reply(
            200,
            json!({"is_success": if stringly { json!("true") } else { json!(true) }, "message": "",
                               "job_list": {"total_count": total, "jobs": jobs}}),
        )
    };
    let server = ScriptServer::start(vec![
        step("GET", jobs_path(), page(0..100, 237, false)),
        step("GET", jobs_path(), page(100..200, 237, true)),
        step("GET", jobs_path(), page(200..237, 237, false)),
    ])
    .await;
    let client = dli(&server, fast_options());
    let listing = client
        .list_jobs_paged(&ListJobsQuery::default())
        .await
        .unwrap();
    assert_eq!(listing.pages, 3);
    assert_eq!(listing.jobs.len(), 237);
    assert_eq!(listing.jobs[150].id, 150);
    assert_eq!(listing.jobs[150].update_time, 1711647009770);
    assert_eq!(listing.jobs[150].queue_name.as_deref(), Some("q"));
    server.assert_done();
    let requests = server.requests();
    let offsets: Vec<&str> = requests
        .iter()
        .map(|r| r.query_value("offset").unwrap())
        .collect();
    assert_eq!(offsets, vec!["0", "100", "200"]);
    for request in &requests {
        assert_eq!(request.query_value("limit"), Some("100"));
        assert_eq!(
            request.signed_headers,
            vec!["host", "x-project-id", "x-sdk-date"]
        );
        assert_eq!(request.header("x-project-id"), Some(PROJECT));
    }
}

#[tokio::test]
async fn list_by_name_keeps_exact_matches_and_encodes_special_characters() {
    let name = "clicks & views/é+1";
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(200, json!({"is_success": "true", "job_list": {"total_count": 2, "jobs": [
            {"job_id": 1, "name": name, "status": "job_init", "update_time": 1},
            {"job_id": 2, "name": format!("{name}-copy"), "status": "job_init", "update_time": 1}]}})),
    )])
    .await;
    let client = dli(&server, fast_options());
    let jobs = client
        .list_jobs(&ListJobsQuery {
            name: Some(name.into()),
            ..ListJobsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, 1);
    server.assert_done();
    assert_eq!(server.requests()[0].query_value("name"), Some(name));
}

#[tokio::test]
async fn job_detail_normalises_the_wire_quirks() {
    let detail = json!({"is_success": "true", "message": "", "job_detail": {
        "job_id": "42", "name": "clickstream-agg", "desc": "", "job_type": "flink_opensource_sql_job",
        "status": "job_running", "update_time": 1711647009620_i64, "sql_body": "select 1", "run_mode": "exclusive_cluster",
        "queue_name": "q1", "savepoint_path": "obs://b/sp/",
        "job_config": {"checkpoint_enabled": "true", "checkpoint_mode": "exactly_once", "checkpoint_interval": 60,
            "cu_number": 4, "parallel_number": 2, "smn_topic": "", "obs_bucket": "",
            "runtime_config": "[{\"key\":\"table.exec.state.ttl\",\"value\":\"1h\"}]",
            "tags": [{"key": "managed-by", "value": "dli-gitops"}, {"key": "team", "value": "growth"}]}}});
    let untagged = json!({"is_success": true, "job_detail": {"job_id": 43, "name": "plain", "status": "job_init", "update_time": 1}});
    let server = ScriptServer::start(vec![
        step("GET", format!("{}/42", jobs_path()), json_reply(200, detail)),
        step("GET", format!("{}/43", jobs_path()), json_reply(200, untagged.clone())),
        step("GET", format!("/v3/{PROJECT}/dli_flink_job/43/tags"), json_reply(200, json!({"tags": [{"key": "managed-by", "value": "dli-gitops"}], "count": 1}))),
        step("GET", format!("{}/43", jobs_path()), json_reply(200, untagged)),
        step("GET", format!("/v3/{PROJECT}/dli_flink_job/43/tags"), json_reply(404, json!({"error_code": "APIG.0101", "error_msg": "The API does not exist or has not been published in the environment"}))),
    ])
    .await;
    let client = dli(&server, fast_options());
    let job = client.job_detail(42).await.unwrap();
    assert_eq!(job.id, 42);
    assert_eq!(job.update_time, 1711647009620);
    assert_eq!(job.savepoint_path.as_deref(), Some("obs://b/sp/"));
    assert!(job.status.is_running());
    assert!(job.is_managed());
    assert_eq!(
        job.config.tags.get("team").map(String::as_str),
        Some("growth")
    );
    assert_eq!(job.config.checkpoint_mode, CheckpointMode::ExactlyOnce);
    assert_eq!(job.config.smn_topic, None);
    assert_eq!(
        job.config
            .runtime_config
            .get("table.exec.state.ttl")
            .map(String::as_str),
        Some("1h")
    );
    let tagged = client.job_detail(43).await.unwrap();
    assert!(tagged.is_managed());
    // A service without the tag API (404 without a job error code) reads as untagged.
    let untagged = client.job_detail(43).await.unwrap();
    assert!(untagged.config.tags.is_empty());
    server.assert_done();
}

#[tokio::test]
async fn missing_job_is_a_typed_not_found_with_the_request_id() {
    let server = ScriptServer::start(vec![step(
        "GET",
        format!("{}/7", jobs_path()),
        json_reply_with(
            400,
            json!({"error_code": "DLI.16001", "error_msg": "The job does not exist"}),
            &[("X-Request-Id", "rid-123")],
        ),
    )])
    .await;
    let client = dli(&server, fast_options());
    let error = client.job_detail(7).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(error.error_code(), Some("DLI.16001"));
    assert_eq!(error.status(), Some(400));
    let text = error.to_string();
    for part in [
        "dli job_detail",
        "job 7",
        "HTTP 400",
        "DLI.16001",
        "The job does not exist",
        "rid-123",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    assert_eq!(
        server.requests().len(),
        1,
        "a permanent error is not retried"
    );
    server.assert_done();
}

#[tokio::test]
async fn transient_5xx_are_retried_with_backoff_and_counted() {
    let detail = json!({"is_success": "true", "job_detail": {"job_id": 1, "name": "a", "status": "job_init", "update_time": 1, "tags": []}});
    let server = ScriptServer::start(vec![
        step(
            "GET",
            format!("{}/1", jobs_path()),
            json_reply(503, json!({"error_code": "DLI.0999", "error_msg": "busy"})),
        ),
        step(
            "GET",
            format!("{}/1", jobs_path()),
            Reply::Status {
                status: 502,
                headers: vec![],
                body: b"<html>Bad Gateway</html>".to_vec(),
            },
        ),
        step("GET", format!("{}/1", jobs_path()), json_reply(200, detail)),
    ])
    .await;
    let metrics = RequestMetrics::default();
    let client = dli(
        &server,
        ClientOptions {
            metrics: metrics.clone(),
            ..fast_options()
        },
    );
    assert_eq!(client.job_detail(1).await.unwrap().name, "a");
    server.assert_done();
    assert_eq!(metrics.count("dli", "job_detail", "503"), 1);
    assert_eq!(metrics.count("dli", "job_detail", "502"), 1);
    assert_eq!(metrics.count("dli", "job_detail", "200"), 1);
}

#[tokio::test]
async fn persistent_5xx_give_up_after_max_attempts_with_a_retryable_error() {
    let failing = || {
        step(
            "GET",
            jobs_path(),
            json_reply(500, json!({"code": "DLI.0999", "message": "server error"})),
        )
    };
    let server = ScriptServer::start(vec![failing(), failing(), failing()]).await;
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let error = dli(&server, options)
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    assert!(error.to_string().contains("after 3 attempts"), "{error}");
    server.assert_done();
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let ok = json_reply(
        200,
        json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}}),
    );
    let server = ScriptServer::start(vec![
        step(
            "GET",
            jobs_path(),
            json_reply_with(
                429,
                json!({"error_code": "APIG.0308", "error_msg": "The request is throttled"}),
                &[("Retry-After", "1")],
            ),
        ),
        step("GET", jobs_path(), ok),
    ])
    .await;
    let started = Instant::now();
    let jobs = dli(&server, fast_options())
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap();
    assert!(jobs.is_empty());
    // The backoff alone is at most 20 ms here; only Retry-After explains a wait of a second.
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
    server.assert_done();
}

#[tokio::test]
async fn retry_after_beyond_the_limit_fails_fast_and_stays_retryable() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply_with(
            429,
            json!({"error_code": "APIG.0308", "error_msg": "throttled"}),
            &[("Retry-After", "3600")],
        ),
    )])
    .await;
    let error = dli(&server, fast_options())
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    server.assert_done();
}

#[tokio::test]
async fn timeouts_and_dropped_connections_are_retried() {
    let ok = || {
        json_reply(
            200,
            json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}}),
        )
    };
    let server = ScriptServer::start(vec![
        step(
            "GET",
            jobs_path(),
            Reply::Delay(Duration::from_secs(6), Box::new(ok())),
        ),
        step("GET", jobs_path(), Reply::Drop),
        step("GET", jobs_path(), ok()),
    ])
    .await;
    let metrics = RequestMetrics::default();
    let options = ClientOptions {
        request_timeout: Duration::from_millis(1000),
        metrics: metrics.clone(),
        ..fast_options()
    };
    dli(&server, options)
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap();
    server.assert_done();
    assert_eq!(metrics.count("dli", "list_jobs", "timeout"), 1);
    assert_eq!(metrics.count("dli", "list_jobs", "io"), 1);
    assert_eq!(metrics.count("dli", "list_jobs", "200"), 1);
}

#[tokio::test]
async fn refused_connection_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let client = DliClient::new(url, PROJECT, aksk(), options).unwrap();
    let error = client.job_detail(1).await.unwrap_err();
    assert!(matches!(error, CloudError::Transport { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("could not connect"), "{error}");
}

#[tokio::test]
async fn apig_0301_stops_at_once_and_holds_back_further_requests() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(401, json!({"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information: verify aksk signature fail", "request_id": "r1"})),
    )])
    .await;
    let client = dli(&server, fast_options());
    let error = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_auth_failure());
    assert!(!error.is_retryable());
    // The next calls are refused locally: the key is never locked out by our own retries.
    for _ in 0..5 {
        let held = client.job_detail(1).await.unwrap_err();
        assert!(matches!(held, CloudError::AuthBackoff { .. }), "{held:?}");
        assert!(held.is_auth_failure());
        assert!(held.to_string().contains("APIG.0301"), "{held}");
    }
    // So is a fresh client with the same key (a daemon rebuilding its clients every cycle).
    let rebuilt = dli(&server, fast_options());
    let held = rebuilt
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(held, CloudError::AuthBackoff { .. }), "{held:?}");
    assert_eq!(server.requests().len(), 1);
    server.assert_done();
    // A corrected secret key is a different identity and may try at once.
    let fixed = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new("corrected-secret"),
        security_token: None,
    };
    let corrected = DliClient::new(server.url.clone(), PROJECT, fixed, fast_options()).unwrap();
    let answered = corrected
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert_eq!(
        answered.error_code(),
        Some("TEST.UNEXPECTED"),
        "{answered:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

fn sql_config() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.sql_body = Some("insert into sink select * from source".into());
    config.queue_name = Some("q".into());
    config.checkpoint_mode = CheckpointMode::AtLeastOnce;
    config
        .runtime_config
        .insert("table.exec.state.ttl".into(), "1h".into());
    config.tags.insert("managed-by".into(), "dli-gitops".into());
    config
}

#[tokio::test]
async fn create_is_not_resent_when_the_job_already_exists() {
    let create_path = format!("/v1.0/{PROJECT}/streaming/sql-jobs");
    let server = ScriptServer::start(vec![
        step(
            "POST",
            create_path.clone(),
            json_reply(
                503,
                json!({"error_code": "DLI.0999", "error_msg": "gateway timeout"}),
            ),
        ),
        step(
            "GET",
            jobs_path(),
            json_reply(
                200,
                json!({"is_success": "true", "job_list": {"total_count": 1, "jobs": [
            {"job_id": "77", "name": "clickstream-agg", "status": "job_init", "update_time": 1}]}}),
            ),
        ),
    ])
    .await;
    let id = dli(&server, fast_options())
        .create_sql_job("clickstream-agg", &sql_config())
        .await
        .unwrap();
    assert_eq!(id, 77);
    server.assert_done();
    let requests = server.requests();
    assert_eq!(requests[1].query_value("name"), Some("clickstream-agg"));
    let body = requests[0].json();
    assert_eq!(body["checkpoint_mode"], json!(2));
    assert_eq!(
        body["runtime_config"],
        json!("[{\"key\":\"table.exec.state.ttl\",\"value\":\"1h\"}]")
    );
    assert_eq!(
        body["tags"],
        json!([{"key": "managed-by", "value": "dli-gitops"}])
    );
    assert_eq!(
        requests[0].signed_headers,
        vec!["content-type", "host", "x-project-id", "x-sdk-date"]
    );
}

#[tokio::test]
async fn create_is_resent_only_after_checking_the_job_is_absent() {
    let create_path = format!("/v1.0/{PROJECT}/streaming/flink-jobs");
    let empty = json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}});
    let server = ScriptServer::start(vec![
        step("POST", create_path.clone(), Reply::Drop),
        step("GET", jobs_path(), json_reply(200, empty)),
        step("POST", create_path.clone(), json_reply(200, json!({"is_success": "true", "message": "ok", "job": {"job_id": 88, "status_name": "job_init"}}))),
    ])
    .await;
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
    config.entrypoint = Some("obs://bucket/app.jar".into());
    config.main_class = Some("com.example.Main".into());
    let id = dli(&server, fast_options())
        .create_jar_job("fraud-detector", &config)
        .await
        .unwrap();
    assert_eq!(id, 88);
    server.assert_done();
    assert_eq!(
        server.requests()[2].json()["entrypoint"],
        json!("obs://bucket/app.jar")
    );
}

#[tokio::test]
async fn update_reports_is_success_false_as_a_rejection() {
    let server = ScriptServer::start(vec![step(
        "PUT",
        format!("/v1.0/{PROJECT}/streaming/sql-jobs/5"),
        json_reply(
            200,
            json!({"is_success": "false", "message": "The job is running and cannot be modified"}),
        ),
    )])
    .await;
    let error = dli(&server, fast_options())
        .update_sql_job(5, &sql_config())
        .await
        .unwrap_err();
    assert!(matches!(error, CloudError::Rejected { .. }), "{error:?}");
    assert!(error.to_string().contains("cannot be modified"));
    assert!(
        server.requests()[0].json().get("tags").is_none(),
        "update bodies carry no tags"
    );
    server.assert_done();
}

#[tokio::test]
async fn batch_calls_surface_per_job_failures() {
    let server = ScriptServer::start(vec![
        step(
            "POST",
            format!("{}/run", jobs_path()),
            json_reply(
                200,
                json!([
            {"is_success": "true", "message": "delivered"},
            {"is_success": "false", "message": "queue busy"}]),
            ),
        ),
        step(
            "POST",
            format!("{}/stop", jobs_path()),
            json_reply(200, json!([{"is_success": true, "message": "ok"}])),
        ),
        step(
            "POST",
            format!("{}/run", jobs_path()),
            json_reply(
                400,
                json!([{"error_code": "DLI.13024", "error_msg": "No job-running queue selected"}]),
            ),
        ),
        step(
            "POST",
            format!("{}/delete", jobs_path()),
            json_reply(200, json!([{"is_success": "true"}, {"is_success": "true"}])),
        ),
        step(
            "DELETE",
            format!("{}/9", jobs_path()),
            json_reply(200, json!({"is_success": "true", "message": "deleted"})),
        ),
    ])
    .await;
    let client = dli(&server, fast_options());
    match client.run_jobs(&[1, 2], true).await.unwrap_err() {
        CloudError::BatchFailed {
            failures, total, ..
        } => {
            assert_eq!(total, 2);
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].job_id, 2);
            assert_eq!(failures[0].message, "queue busy");
        }
        other => panic!("expected a batch failure, got {other:?}"),
    }
    client.stop_jobs(&[3], true).await.unwrap();
    let error = client.run_jobs(&[4], false).await.unwrap_err();
    assert_eq!(error.error_code(), Some("DLI.13024"));
    client.delete_jobs(&[5, 6]).await.unwrap();
    client.delete_job(9).await.unwrap();
    client.run_jobs(&[], false).await.unwrap();
    server.assert_done();
    let requests = server.requests();
    assert_eq!(
        requests[0].json(),
        json!({"job_ids": [1, 2], "resume_savepoint": true})
    );
    assert_eq!(
        requests[1].json(),
        json!({"job_ids": [3], "trigger_savepoint": true})
    );
}

#[tokio::test]
async fn export_import_and_savepoints_use_the_documented_path_formats() {
    let server = ScriptServer::start(vec![
        step("POST", format!("{}/export", jobs_path()), json_reply(200, json!({"is_success": "true", "zip_file": ["bkt/backups/a_1582677879475.zip"]}))),
        step("POST", format!("{}/import", jobs_path()), json_reply(200, json!({"is_success": true, "job_mapping": [
            {"old_job_id": "100", "new_job_id": "200", "remark": "imported"}, {"old_job_id": 101, "new_job_id": -1, "remark": "name exists"}]}))),
        step("POST", format!("{}/200/import-savepoint", jobs_path()), json_reply(200, json!({"is_success": true, "message": ""}))),
        step("POST", format!("{}/200/savepoint", jobs_path()), json_reply(200, json!({"is_success": "true", "message": ""}))),
        step("POST", format!("{}/export", jobs_path()), json_reply(200, json!({"is_success": "true", "zip_file": []}))),
    ])
    .await;
    let client = dli(&server, fast_options());
    assert_eq!(
        client
            .export_jobs("obs://bkt/backups", Some(&[100]))
            .await
            .unwrap(),
        vec!["bkt/backups/a_1582677879475.zip"]
    );
    let mapping = client
        .import_jobs("obs://bkt/staging/bundle.zip", true)
        .await
        .unwrap();
    assert_eq!(
        (mapping[0].old_job_id, mapping[0].new_job_id),
        (Some(100), 200)
    );
    assert_eq!(mapping[1].new_job_id, -1);
    client.import_savepoint(200, "bkt/sp/200/").await.unwrap();
    client
        .trigger_savepoint(200, "obs://bkt/sp/")
        .await
        .unwrap();
    assert!(
        client
            .export_jobs("bkt/all", None)
            .await
            .unwrap()
            .is_empty()
    );
    server.assert_done();
    let requests = server.requests();
    assert_eq!(
        requests[0].json(),
        json!({"obs_dir": "bkt/backups", "is_selected": true, "job_selected": [100]})
    );
    assert_eq!(
        requests[1].json(),
        json!({"zip_file": "bkt/staging/bundle.zip", "is_cover": true})
    );
    assert_eq!(
        requests[2].json(),
        json!({"job_id": 200, "savepoint_path": "obs://bkt/sp/200/"})
    );
    assert_eq!(
        requests[3].json(),
        json!({"action": "TRIGGER", "savepoint_path": "bkt/sp/"})
    );
    assert_eq!(
        requests[4].json(),
        json!({"obs_dir": "bkt/all", "is_selected": false})
    );
}

#[tokio::test]
async fn the_rate_limit_spaces_requests() {
    let ok = || {
        step(
            "GET",
            jobs_path(),
            json_reply(
                200,
                json!({"is_success": "true", "job_list": {"total_count": 0, "jobs": []}}),
            ),
        )
    };
    let server = ScriptServer::start((0..11).map(|_| ok()).collect()).await;
    let options = ClientOptions {
        requests_per_second: 20.0,
        burst: 1,
        ..fast_options()
    };
    let client = dli(&server, options);
    let started = Instant::now();
    for _ in 0..11 {
        client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    }
    // Ten requests after the first at 20/s: at least half a second (a lower bound only).
    assert!(
        started.elapsed() >= Duration::from_millis(480),
        "{:?}",
        started.elapsed()
    );
    server.assert_done();
}
