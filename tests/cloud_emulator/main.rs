//! The cloud client against the in-process emulator over real HTTP on loopback: every typed DLI
//! call, DLF import with system-task polling, `ObjectStore` over the emulator's S3 endpoint, IAM
//! token auth, refused credentials, and the emulator's fault injection. Call counts come from
//! the emulator's own `/_emulator/v1/stats` and are compared with the client's metrics, so a
//! hidden retry on either side shows up. Each test starts its own emulator and shuts it down.

#[path = "../support/mod.rs"]
mod support;

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
    support::target::emulator_stats(handle).await
}

fn count(stats: &BTreeMap<String, u64>, operation: &str) -> u64 {
    stats.get(operation).copied().unwrap_or(0)
}

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

mod auth;
mod dlf;
mod dli;
mod faults;
