//! Promotion between environments against real emulators: carrying Flink state between two
//! accounts (two emulators, so two separate OBS stores), and the promote command.

#[path = "../support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use dli_gitops::cloud::{
    ClientOptions, CloudClients, Credentials, ListJobsQuery, ObjectStore, Secret, ServiceEndpoints,
};
use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
use dli_gitops::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use dli_gitops::model::{FlinkJobConfig, JobKind};
use dli_gitops::promotion::{CarryEnds, CarryError, carry_savepoint};

const UPSTREAM_STAGING: &str = "obs://dli-gitops-staging/dev/";
const DOWNSTREAM_STAGING: &str = "obs://dli-gitops-staging/prod/";

async fn emulator(dir: &Path) -> EmulatorHandle {
    Emulator::start(EmulatorConfig::for_tests(dir.to_path_buf()))
        .await
        .expect("the emulator starts")
}

fn clients(emulator: &EmulatorHandle) -> CloudClients {
    let api = url::Url::parse(&emulator.dli_url()).unwrap();
    let endpoints = ServiceEndpoints {
        dli: api.clone(),
        dlf: api.clone(),
        iam: api,
        obs: url::Url::parse(&emulator.s3_url()).unwrap(),
    };
    let credentials = Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.to_string(),
        secret_key: Secret::new(DEV_SECRET_KEY),
        security_token: None,
    };
    CloudClients::new(
        &endpoints,
        "cn-north-4",
        DEV_PROJECT_ID,
        credentials,
        ClientOptions::default(),
        None,
    )
    .unwrap()
}

fn sql_job() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("flink_queue".into());
    config.sql_body = Some("INSERT INTO sink SELECT * FROM source;".into());
    config
}

/// Stops `job_id` with a savepoint, waits until it is stopped and returns the savepoint the
/// job then holds.
async fn stop_with_savepoint(clients: &CloudClients, job_id: i64) -> String {
    clients.dli.stop_jobs(&[job_id], true).await.unwrap();
    wait_for_status(clients, job_id, "job_cancel_success").await;
    clients
        .dli
        .job_detail(job_id)
        .await
        .unwrap()
        .savepoint_path
        .expect("a stop with a savepoint reports it")
}

async fn wait_for_status(clients: &CloudClients, job_id: i64, status: &str) {
    for _ in 0..200 {
        let job = clients.dli.job_detail(job_id).await.unwrap();
        if job.status.as_str() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {job_id} never became {status}");
}

fn ends<'a>(upstream: &'a CloudClients, downstream: &'a CloudClients) -> CarryEnds<'a> {
    CarryEnds {
        upstream_target: "dev",
        upstream_dli: &upstream.dli,
        upstream_obs: &upstream.obs,
        upstream_staging: UPSTREAM_STAGING,
        downstream_target: "prod",
        downstream_obs: &downstream.obs,
        downstream_staging: DOWNSTREAM_STAGING,
        savepoint_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn state_is_carried_between_accounts_that_share_nothing() {
    let dev_dir = tempfile::tempdir().unwrap();
    let prod_dir = tempfile::tempdir().unwrap();
    let dev_emulator = emulator(dev_dir.path()).await;
    let prod_emulator = emulator(prod_dir.path()).await;
    let dev = clients(&dev_emulator);
    let prod = clients(&prod_emulator);

    // Nothing upstream yet: a clear error, nothing copied.
    let missing = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, CarryError::UpstreamJobMissing { .. }),
        "{missing}"
    );

    let dev_id = dev.dli.create_sql_job("clicks", &sql_job()).await.unwrap();
    // A stopped job with no savepoint cannot give state.
    let no_state = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap_err();
    assert!(
        matches!(no_state, CarryError::NoSavepoint { .. }),
        "{no_state}"
    );

    dev.dli.run_jobs(&[dev_id], false).await.unwrap();
    wait_for_status(&dev, dev_id, "job_running").await;

    // Running upstream: a fresh savepoint, copied into prod's staging prefix.
    let carried = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap();
    assert!(carried.fresh);
    assert!(
        carried
            .upstream_path
            .starts_with("obs://dli-gitops-staging/dev/promotion-savepoints/clicks/"),
        "{carried:?}"
    );
    assert!(
        carried
            .downstream_path
            .starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/"),
        "{carried:?}"
    );
    assert_eq!(carried.objects_copied, 1);
    assert!(carried.bytes_copied > 0);
    let copy = ObjectStore::from_url(&carried.downstream_path, &prod.obs).unwrap();
    assert_eq!(copy.list("").await.unwrap(), vec!["_metadata".to_string()]);

    // Prod's account cannot see dev's savepoint, but imports the carried copy.
    let prod_id = prod.dli.create_sql_job("clicks", &sql_job()).await.unwrap();
    let foreign = prod
        .dli
        .import_savepoint(prod_id, &carried.upstream_path)
        .await
        .unwrap_err();
    assert!(foreign.to_string().contains("savepoint"), "{foreign}");
    prod.dli
        .import_savepoint(prod_id, &carried.downstream_path)
        .await
        .unwrap();
    prod.dli.run_jobs(&[prod_id], true).await.unwrap();
    wait_for_status(&prod, prod_id, "job_running").await;

    // Stopped upstream with a savepoint the journal recorded: that one is carried, once.
    let stop_savepoint = stop_with_savepoint(&dev, dev_id).await;
    let first = carry_savepoint(&ends(&dev, &prod), "clicks", Some(&stop_savepoint))
        .await
        .unwrap();
    assert!(!first.fresh);
    assert_eq!(first.upstream_path, stop_savepoint);
    assert_eq!(first.objects_copied, 1);
    let again = carry_savepoint(&ends(&dev, &prod), "clicks", Some(&stop_savepoint))
        .await
        .unwrap();
    assert_eq!(again.downstream_path, first.downstream_path);
    assert_eq!(
        again.objects_copied, 0,
        "a complete copy is not copied again"
    );

    // The upstream job list is untouched by all this.
    let listed = dev.dli.list_jobs(&ListJobsQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    dev_emulator.shutdown().await;
    prod_emulator.shutdown().await;
}

/// The `_metadata` bytes of the savepoint directory `path`.
async fn metadata_of(path: &str, obs: &dli_gitops::cloud::ObsOptions) -> bytes::Bytes {
    ObjectStore::from_url(path, obs)
        .unwrap()
        .get("_metadata")
        .await
        .unwrap_or_else(|error| panic!("the _metadata of {path}: {error}"))
}

/// The service names a stop savepoint's directory to the second
/// (`jobs/savepoint/{job_id}/{yyyy-mm-dd_HH-mm-ss}/`), so a second savepoint of the upstream job
/// in that second lands in a directory carried before. The copy is reused only while it matches
/// what the directory holds now; a copy of the older savepoint is kept, never carried again in
/// place of the newer one.
#[tokio::test]
async fn a_carried_copy_is_reused_only_while_the_upstream_directory_holds_the_same_savepoint() {
    let dev_dir = tempfile::tempdir().unwrap();
    let prod_dir = tempfile::tempdir().unwrap();
    let dev_emulator = emulator(dev_dir.path()).await;
    let prod_emulator = emulator(prod_dir.path()).await;
    let dev = clients(&dev_emulator);
    let prod = clients(&prod_emulator);
    let dev_id = dev.dli.create_sql_job("clicks", &sql_job()).await.unwrap();
    dev.dli.run_jobs(&[dev_id], false).await.unwrap();
    wait_for_status(&dev, dev_id, "job_running").await;
    let held = stop_with_savepoint(&dev, dev_id).await;
    assert!(held.contains("/jobs/savepoint/"), "{held}");

    // The upstream journal knows no savepoint: the one the stopped job holds is carried, and
    // carried again (a failed import downstream) it is reused while the directory is unchanged.
    let first = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap();
    assert_eq!(first.upstream_path, held);
    assert_eq!(first.objects_copied, 1);
    let older = metadata_of(&held, &dev.obs).await;
    assert_eq!(metadata_of(&first.downstream_path, &prod.obs).await, older);
    let again = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap();
    assert_eq!(again.downstream_path, first.downstream_path);
    assert_eq!(again.objects_copied, 0, "an unchanged copy is reused");

    // The job runs and a second savepoint lands in the same directory (as a second stop in the
    // same second does); the job stops holding it.
    dev.dli.run_jobs(&[dev_id], true).await.unwrap();
    wait_for_status(&dev, dev_id, "job_running").await;
    dev.dli.trigger_savepoint(dev_id, &held).await.unwrap();
    wait_for_status(&dev, dev_id, "job_running").await;
    dev.dli.stop_jobs(&[dev_id], false).await.unwrap();
    wait_for_status(&dev, dev_id, "job_cancel_success").await;
    assert_eq!(
        dev.dli.job_detail(dev_id).await.unwrap().savepoint_path,
        Some(held.clone())
    );
    let newer = metadata_of(&held, &dev.obs).await;
    assert_ne!(newer, older, "the directory holds a newer savepoint");

    // The newer savepoint is carried, under another name; the older copy stays as it was.
    let second = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap();
    assert_eq!(second.upstream_path, held);
    assert_ne!(
        second.downstream_path, first.downstream_path,
        "the copy of the older savepoint is not carried in place of the newer one"
    );
    assert_eq!(second.objects_copied, 1);
    assert_eq!(metadata_of(&second.downstream_path, &prod.obs).await, newer);
    assert_eq!(
        metadata_of(&first.downstream_path, &prod.obs).await,
        older,
        "the older copy is not overwritten"
    );
    // Carried again, the copy of the newer savepoint is found and reused.
    let third = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap();
    assert_eq!(third.downstream_path, second.downstream_path);
    assert_eq!(third.objects_copied, 0);
    dev_emulator.shutdown().await;
    prod_emulator.shutdown().await;
}

mod promote_command;

mod pipeline_end_to_end;

/// The daemon runs passes on spawned tasks: carrying state must be `Send` too. Checked when this
/// file compiles; never called.
#[allow(dead_code)]
fn carrying_state_is_send(
    config: &dli_gitops::config::Config,
    journal: &dli_gitops::journal::Journal,
    context: &dli_gitops::apply::TargetContext,
    desired: &dli_gitops::model::DesiredJobs,
) {
    fn spawnable<T: Send>(_: T) {}
    spawnable(dli_gitops::pass::carry_for_target(
        config, journal, context, desired,
    ));
}

mod daemon_pipeline;

mod target_restore_defaults;

mod cli_promote_then_apply;
