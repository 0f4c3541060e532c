//! IAM token auth: one token reused; a wrong secret key fails fast without a lockout.

use super::*;

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
