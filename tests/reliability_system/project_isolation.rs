//! The emulator keeps projects apart.

use super::*;

const OTHER_ACCESS_KEY: &str = "RELIABILITYOTHERKEY1";
const OTHER_SECRET_KEY: &str = "reliability-other-account-secret-key";
const OTHER_PROJECT_ID: &str = "11111111111111111111111111111111";

fn emulator_client(
    handle: &EmulatorHandle,
    access_key: &str,
    secret_key: &str,
    project_id: &str,
) -> DliClient {
    let credentials = Credentials::AkSk {
        access_key: access_key.into(),
        secret_key: Secret::new(secret_key),
        security_token: None,
    };
    DliClient::new(
        Url::parse(&handle.dli_url()).expect("emulator url"),
        project_id,
        credentials,
        quick_options(),
    )
    .expect("client")
}

fn sql_config(body: &str) -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("q1".into());
    config.sql_body = Some(body.into());
    config
}

/// Two accounts in one emulator, through the real cloud client: every read and write the
/// other account aims at a job of this one, by id, is refused; a key used with the other
/// account's project is refused; and this account's job is exactly as it was.
#[tokio::test]
async fn emulator_refuses_every_cross_project_read_and_write() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut config = EmulatorConfig::for_tests(temp.path().join("data"));
    config.credentials.push(EmulatorCredential {
        access_key: OTHER_ACCESS_KEY.into(),
        secret_key: OTHER_SECRET_KEY.into(),
        project_id: OTHER_PROJECT_ID.into(),
    });
    let handle = Emulator::start(config).await.expect("emulator starts");
    let owner = emulator_client(&handle, DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_PROJECT_ID);
    let intruder = emulator_client(
        &handle,
        OTHER_ACCESS_KEY,
        OTHER_SECRET_KEY,
        OTHER_PROJECT_ID,
    );
    let job_id = owner
        .create_sql_job("private-job", &sql_config("SELECT 'owner';"))
        .await
        .expect("create");
    owner.run_jobs(&[job_id], false).await.expect("run");
    let before = owner.job_detail(job_id).await.expect("detail");

    let mut failures = Vec::new();
    let mut refused = |operation: &str, result: Result<(), CloudError>| {
        failures.extend(cross_project_failure(operation, result))
    };
    refused("job_detail", intruder.job_detail(job_id).await.map(|_| ()));
    refused("job_tags", intruder.job_tags(job_id).await.map(|_| ()));
    refused(
        "update_sql_job",
        intruder
            .update_sql_job(job_id, &sql_config("SELECT 'intruder';"))
            .await,
    );
    refused("stop_jobs", intruder.stop_jobs(&[job_id], false).await);
    refused("run_jobs", intruder.run_jobs(&[job_id], false).await);
    refused("delete_jobs", intruder.delete_jobs(&[job_id]).await);
    refused(
        "export_jobs",
        intruder
            .export_jobs("dli-gitops-backups/stolen/", Some(&[job_id]))
            .await
            .map(|_| ()),
    );
    refused(
        "trigger_savepoint",
        intruder
            .trigger_savepoint(job_id, "dli-gitops-savepoints/stolen/")
            .await,
    );
    refused(
        "import_savepoint",
        intruder
            .import_savepoint(job_id, "obs://dli-gitops-savepoints/stolen/")
            .await,
    );
    let listed = intruder
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect("the other account lists its own project");
    // A valid key for account B, signing requests to account A's project.
    let wrong_project =
        emulator_client(&handle, OTHER_ACCESS_KEY, OTHER_SECRET_KEY, DEV_PROJECT_ID);
    refused(
        "list_jobs with another project's id",
        wrong_project
            .list_jobs(&ListJobsQuery::default())
            .await
            .map(|_| ()),
    );
    refused(
        "job_detail with another project's id",
        wrong_project.job_detail(job_id).await.map(|_| ()),
    );

    if !listed.is_empty() {
        failures.push(format!("the other project lists {listed:?}"));
    }
    let after = owner.job_detail(job_id).await.expect("detail");
    if after != before {
        failures.push(format!(
            "the job changed:\nbefore {before:?}\nafter  {after:?}"
        ));
    }
    handle.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn cross_project_failure(operation: &str, result: Result<(), CloudError>) -> Option<String> {
    match result {
        Ok(()) => Some(format!("{operation}: allowed across projects")),
        Err(error) if error.is_retryable() => {
            Some(format!("{operation}: refused as retryable: {error}"))
        }
        Err(_) => None,
    }
}
