//! What the emulator refuses: bad input with the service's error shapes, authentication,
//! tokens and project isolation, hostile input, repeated bad signatures.

use super::*;

const OTHER_ACCESS_KEY: &str = "OTHERACCESSKEY";
const OTHER_SECRET_KEY: &str = "other-secret";
const OTHER_PROJECT_ID: &str = "99999999999999999999999999999999";

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
