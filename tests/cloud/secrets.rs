//! Secrets never appear in errors or debug output.

use super::*;

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug_output() {
    let server = ScriptServer::start(vec![step(
        "GET",
        jobs_path(),
        json_reply(
            401,
            json!({"error_code": "APIG.0301", "error_msg": "verify aksk signature fail"}),
        ),
    )])
    .await;
    let credentials = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new(SECRET_KEY),
        security_token: Some(Secret::new(TOKEN_SECRET)),
    };
    let client = DliClient::new(
        server.url.clone(),
        PROJECT,
        credentials.clone(),
        fast_options(),
    )
    .unwrap();
    let mut errors: Vec<CloudError> = Vec::new();
    errors.push(
        client
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap_err(),
    );
    errors.push(client.job_detail(1).await.unwrap_err());
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        url
    };
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 1,
            ..fast_options().retry
        },
        ..fast_options()
    };
    errors.push(
        DliClient::new(
            closed.clone(),
            PROJECT,
            credentials.clone(),
            options.clone(),
        )
        .unwrap()
        .job_detail(1)
        .await
        .unwrap_err(),
    );
    errors.push(
        DlfClient::new(closed, PROJECT, credentials.clone(), options, None)
            .unwrap()
            .system_task("t")
            .await
            .unwrap_err(),
    );
    errors.push(
        ObjectStore::from_url(
            "obs://bucket/x",
            &ObsOptions {
                credentials: Some(credentials.clone()),
                ..ObsOptions::default()
            },
        )
        .unwrap_err(),
    );
    let password = Credentials::Password {
        user: "u".into(),
        password: Secret::new(SECRET_KEY),
        domain: "d".into(),
    };
    errors.push(
        ObjectStore::from_url(
            "obs://bucket/x",
            &ObsOptions {
                credentials: Some(password.clone()),
                endpoint: Some(closed_url()),
                ..ObsOptions::default()
            },
        )
        .unwrap_err(),
    );
    assert_eq!(errors.len(), 6);
    for error in &errors {
        for text in [format!("{error}"), format!("{error:?}"), error_chain(error)] {
            assert!(!text.contains(SECRET_KEY), "secret in {text}");
            assert!(!text.contains(TOKEN_SECRET), "token in {text}");
        }
    }
    for text in [
        format!("{client:?}"),
        format!("{credentials:?}"),
        format!("{password:?}"),
        format!("{:?}", fast_options()),
    ] {
        assert!(
            !text.contains(SECRET_KEY) && !text.contains(TOKEN_SECRET),
            "secret in {text}"
        );
    }
}

fn closed_url() -> Url {
    Url::parse("http://127.0.0.1:9").unwrap()
}
