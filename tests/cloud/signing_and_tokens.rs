//! Request signing (against the official SDK's vectors), temporary credentials and token auth.

use super::*;

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

#[test]
fn signer_matches_the_official_python_sdk_vectors() {
    let table: Value = serde_json::from_str(include_str!("../signer_vectors.json")).unwrap();
    let vectors = table["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 15, "the vector table is too small");
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let pairs = |v: &Value| -> Vec<(String, String)> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_string(),
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let query = pairs(&vector["query"]);
        let headers = pairs(&vector["headers"]);
        let expected = vector["authorization"].as_str().unwrap();
        let signed = Authorization::parse(expected).unwrap().signed_headers;
        let signed: Vec<&str> = signed.iter().map(String::as_str).collect();
        let request = SignableRequest {
            method: vector["method"].as_str().unwrap(),
            path: vector["path"].as_str().unwrap(),
            query: &query,
            headers: &headers,
            body: vector["body"].as_str().unwrap().as_bytes(),
        };
        let ours = signer::sign(
            vector["access_key"].as_str().unwrap(),
            vector["secret_key"].as_str().unwrap(),
            &request,
            &signed,
        )
        .unwrap();
        assert_eq!(ours, expected, "vector {name:?}");
        let parsed = Authorization::parse(&ours).unwrap();
        signer::verify(&parsed, vector["secret_key"].as_str().unwrap(), &request).unwrap();
    }
}

#[tokio::test]
async fn temporary_credentials_send_and_sign_the_security_token() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(200, json!({"is_success": "true", "job_list": {"jobs": []}})),
    )])
    .await;
    let credentials = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new(SECRET_KEY),
        security_token: Some(Secret::new(TOKEN_SECRET)),
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, fast_options()).unwrap();
    client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    server.assert_done();
    let request = &server.requests()[0];
    assert_eq!(request.header("x-security-token"), Some(TOKEN_SECRET));
    assert_eq!(
        request.signed_headers,
        vec!["host", "x-project-id", "x-sdk-date", "x-security-token"]
    );
}

// ---------------------------------------------------------------------------------------------
// Token auth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn password_auth_caches_the_token_and_renews_it_once_when_refused() {
    let token_reply = |token: &str| {
        let expires = (chrono::Utc::now() + chrono::Duration::hours(24)).to_rfc3339();
        json_reply_with(
            201,
            json!({"token": {"expires_at": expires, "methods": ["password"]}}),
            &[("X-Subject-Token", token)],
        )
    };
    let ok = || json_reply(200, json!({"is_success": "true", "job_list": {"jobs": []}}));
    let server = ScriptServer::start(vec![
        step("POST", "/v3/auth/tokens", token_reply("token-one")),
        step("GET", jobs_path(), ok()),
        step("GET", jobs_path(), ok()),
        step("GET", jobs_path(), json_reply(401, json!({"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information: token expires"}))),
        step("POST", "/v3/auth/tokens", token_reply("token-two")),
        step("GET", jobs_path(), ok()),
    ])
    .await;
    let credentials = Credentials::Password {
        user: "alice".into(),
        password: Secret::new("hunter2-DO-NOT-LEAK"),
        domain: "acme".into(),
    };
    let options = ClientOptions {
        iam_endpoint: Some(server.url.clone()),
        ..fast_options()
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, options).unwrap();
    for _ in 0..3 {
        client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    }
    server.assert_done();
    let requests = server.requests();
    let auth = requests[0].json();
    assert_eq!(
        auth["auth"]["identity"]["password"]["user"]["name"],
        json!("alice")
    );
    assert_eq!(
        auth["auth"]["identity"]["password"]["user"]["domain"]["name"],
        json!("acme")
    );
    assert_eq!(auth["auth"]["scope"]["project"]["id"], json!(PROJECT));
    assert_eq!(requests[1].header("x-auth-token"), Some("token-one"));
    assert_eq!(requests[2].header("x-auth-token"), Some("token-one"));
    assert_eq!(requests[5].header("x-auth-token"), Some("token-two"));
    assert!(requests[1].header("authorization").is_none());
}

#[tokio::test]
async fn the_token_is_renewed_before_it_expires() {
    // The token lives one hour and the client renews an hour early: every call needs a new one.
    let token_reply = |token: &str| {
        let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        json_reply_with(
            201,
            json!({"token": {"expires_at": expires}}),
            &[("X-Subject-Token", token)],
        )
    };
    let ok = || json_reply(200, json!({"is_success": "true", "job_list": {"jobs": []}}));
    let server = ScriptServer::start(vec![
        step("POST", "/v3/auth/tokens", token_reply("token-one")),
        step("GET", jobs_path(), ok()),
        step("POST", "/v3/auth/tokens", token_reply("token-two")),
        step("GET", jobs_path(), ok()),
    ])
    .await;
    let credentials = Credentials::Password {
        user: "bob".into(),
        password: Secret::new("pw"),
        domain: "acme".into(),
    };
    let options = ClientOptions {
        iam_endpoint: Some(server.url.clone()),
        token_renew_before: Duration::from_secs(3600),
        ..fast_options()
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, options).unwrap();
    client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    client.list_jobs(&ListJobsQuery::default()).await.unwrap();
    server.assert_done();
    assert_eq!(
        server.requests()[3].header("x-auth-token"),
        Some("token-two")
    );
}

#[tokio::test]
async fn a_refused_password_is_not_retried() {
    let server = ScriptServer::start(vec![step(
        "POST",
        "/v3/auth/tokens",
        json_reply(401, json!({"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}})),
    )])
    .await;
    let credentials = Credentials::Password {
        user: "alice".into(),
        password: Secret::new("wrong-DO-NOT-LEAK"),
        domain: "acme".into(),
    };
    let options = ClientOptions {
        iam_endpoint: Some(server.url.clone()),
        ..fast_options()
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, options).unwrap();
    let error = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .unwrap_err();
    assert!(error.is_auth_failure(), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("The username or password is wrong"),
        "{error}"
    );
    assert!(error.to_string().contains("iam issue_token"), "{error}");
    assert!(!format!("{error} {error:?}").contains("wrong-DO-NOT-LEAK"));
    assert_eq!(server.requests().len(), 1);
    server.assert_done();
}

#[tokio::test]
async fn password_auth_without_an_iam_endpoint_is_a_clear_configuration_error() {
    let server = ScriptServer::start(vec![]).await;
    let credentials = Credentials::Password {
        user: "alice".into(),
        password: Secret::new("pw"),
        domain: "acme".into(),
    };
    let client = DliClient::new(server.url.clone(), PROJECT, credentials, fast_options()).unwrap();
    let error = client.job_detail(1).await.unwrap_err();
    assert!(error.to_string().contains("iam_endpoint"), "{error}");
    assert!(server.requests().is_empty());
}
