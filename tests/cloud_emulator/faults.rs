//! Injected faults within the retry budget, exhausted budgets, token retries and projects a key
//! may not use.

use super::*;

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
