//! The end-to-end test bed: an in-process emulator behind byte-counting proxies, a job
//! repository on disk, and the live side seeded with the same jobs. Every figure of the
//! end-to-end sections is read from here: API calls from the emulator's own counters
//! (`GET /_emulator/v1/stats`), bytes from the proxies, restarts from the emulator's run records.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use super::{proxy::CountingProxy, workload};
use dli_gitops::cloud::{
    ClientOptions, Credentials, DliClient, ListJobsQuery, Secret, parse_endpoint,
};
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, EmulatorDelays,
    EmulatorHandle,
};
use dli_gitops::model::{DesiredJobs, JobKind};

/// How the emulator behaves while measuring.
#[derive(Debug, Clone, Copy)]
pub struct ServiceProfile {
    pub latency_ms: u64,
    pub delays: EmulatorDelays,
}

/// A seeded emulator behind counting proxies.
pub struct TestBed {
    pub directory: tempfile::TempDir,
    pub repo: PathBuf,
    pub jobs: usize,
    pub desired: DesiredJobs,
    pub profile: ServiceProfile,
    /// The seeded jobs' ids (stable: imports over a job keep its id).
    pub job_ids: Vec<i64>,
    emulator: Option<EmulatorHandle>,
    pub api_proxy: CountingProxy,
    pub s3_proxy: CountingProxy,
    api_upstream: Arc<Mutex<SocketAddr>>,
    s3_upstream: Arc<Mutex<SocketAddr>>,
    http: reqwest::Client,
}

/// Counters at one moment; subtract two to get what happened in between.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Cloud API calls by operation (the emulator's names, e.g. `ListFlinkJobs`).
    pub calls: BTreeMap<String, u64>,
    pub bytes: u64,
    /// The latest run number of every job, by job id.
    pub runs: BTreeMap<i64, u64>,
    pub at: Option<Instant>,
}

/// What happened between two [`Counters`].
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub calls: BTreeMap<String, u64>,
    pub bytes: u64,
    /// Jobs that started a new run (a stop and start of a running job, or a first start).
    pub restarts: u64,
    pub wall: Duration,
}

impl Delta {
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    pub fn calls_of(&self, operation: &str) -> u64 {
        self.calls.get(operation).copied().unwrap_or(0)
    }

    /// `ListFlinkJobs 10, ShowFlinkJob 1000, ...` (non-zero operations only).
    pub fn describe_calls(&self) -> String {
        let parts: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(operation, count)| format!("{operation} {count}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

impl TestBed {
    /// Starts the emulator with no latency and no delays, seeds `jobs` running jobs that match
    /// the generated repository (created and started through the DLI API, tagged as managed),
    /// then restarts it with `profile` on the same data.
    pub async fn start(jobs: usize, profile: ServiceProfile) -> Result<TestBed, String> {
        let directory = tempfile::tempdir()
            .map_err(|error| format!("creating a temporary directory: {error}"))?;
        let repo = directory.path().join("repo");
        std::fs::create_dir_all(&repo)
            .map_err(|error| format!("creating {}: {error}", repo.display()))?;
        workload::write_repository(&repo, jobs)
            .map_err(|error| format!("writing the repository: {error}"))?;
        let snapshot =
            dli_gitops::desired::read_directory(&repo).map_err(|error| error.to_string())?;
        let desired = dli_gitops::desired::resolve(&snapshot, Some(workload::ENVIRONMENT))
            .map_err(|diagnostics| {
                format!("the generated repository does not resolve:\n{diagnostics}")
            })?;

        let data_dir = directory.path().join("emulator");
        let seeding = start_emulator(&data_dir, 0, EmulatorDelays::zero()).await?;
        let api_upstream = Arc::new(Mutex::new(seeding.api_address()));
        let s3_upstream = Arc::new(Mutex::new(seeding.s3_address()));
        let api_proxy = CountingProxy::start(Arc::clone(&api_upstream))
            .await
            .map_err(|error| format!("starting the API proxy: {error}"))?;
        let s3_proxy = CountingProxy::start(Arc::clone(&s3_upstream))
            .await
            .map_err(|error| format!("starting the S3 proxy: {error}"))?;
        let mut bed = TestBed {
            directory,
            repo,
            jobs,
            desired,
            profile,
            job_ids: Vec::new(),
            emulator: Some(seeding),
            api_proxy,
            s3_proxy,
            api_upstream,
            s3_upstream,
            http: reqwest::Client::new(),
        };
        bed.seed().await?;
        bed.restart_emulator(profile).await?;
        Ok(bed)
    }

    /// Restarts the emulator on the same data with another profile; the proxies follow it.
    pub async fn restart_emulator(&mut self, profile: ServiceProfile) -> Result<(), String> {
        if let Some(handle) = self.emulator.take() {
            handle.shutdown().await;
        }
        let handle = start_emulator(
            &self.directory.path().join("emulator"),
            profile.latency_ms,
            profile.delays,
        )
        .await?;
        *lock(&self.api_upstream) = handle.api_address();
        *lock(&self.s3_upstream) = handle.s3_address();
        self.emulator = Some(handle);
        self.profile = profile;
        Ok(())
    }

    /// Creates every desired job through the DLI API with a fast client, then starts them.
    async fn seed(&mut self) -> Result<(), String> {
        let client = self.dli_client(ClientOptions {
            requests_per_second: 10_000.0,
            burst: 10_000,
            ..ClientOptions::default()
        })?;
        let client = &client;
        let created: Vec<Result<i64, String>> =
            futures::stream::iter(self.desired.flink.iter().map(|job| async move {
                let result = match job.kind() {
                    JobKind::FlinkJar => client.create_jar_job(&job.name, &job.config).await,
                    _ => client.create_sql_job(&job.name, &job.config).await,
                };
                result.map_err(|error| format!("seeding job {}: {error}", job.name))
            }))
            // `buffered` keeps the order, so `job_ids[i]` is `desired.flink[i]`'s id.
            .buffered(16)
            .collect()
            .await;
        let ids = created.into_iter().collect::<Result<Vec<i64>, String>>()?;
        self.job_ids = ids.clone();
        for chunk in ids.chunks(100) {
            client
                .run_jobs(chunk, false)
                .await
                .map_err(|error| format!("starting the seeded jobs: {error}"))?;
        }
        let running = client
            .list_jobs(&ListJobsQuery::default())
            .await
            .map_err(|error| format!("listing the seeded jobs: {error}"))?
            .into_iter()
            .filter(|job| job.status.is_running())
            .count();
        if running != self.jobs {
            return Err(format!(
                "seeded {} jobs but {running} are running",
                self.jobs
            ));
        }
        Ok(())
    }

    /// A DLI client through the counting proxy.
    pub fn dli_client(&self, options: ClientOptions) -> Result<DliClient, String> {
        let endpoint = parse_endpoint(&self.api_proxy.url()).map_err(|error| error.to_string())?;
        DliClient::new(endpoint, DEV_PROJECT_ID, credentials(), options)
            .map_err(|error| format!("building the DLI client: {error}"))
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// Reads every counter. The emulator's own API is called directly, not through the proxies,
    /// and the emulator does not count those calls, so reading counters changes none of them.
    pub async fn counters(&self) -> Result<Counters, String> {
        let at = Instant::now();
        let bytes = self.api_proxy.total_bytes() + self.s3_proxy.total_bytes();
        let direct = self.direct_url()?;
        let stats: Value = self
            .http
            .get(format!("{direct}/_emulator/v1/stats"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("reading the emulator's stats: {error}"))?
            .json()
            .await
            .map_err(|error| format!("reading the emulator's stats: {error}"))?;
        let calls = stats
            .get("operations")
            .and_then(Value::as_object)
            .map(|operations| {
                operations
                    .iter()
                    .map(|(name, count)| (name.clone(), count.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let runs = self.run_numbers(&direct).await?;
        Ok(Counters {
            calls,
            bytes,
            runs,
            at: Some(at),
        })
    }

    /// What happened between `before` and `after`.
    pub fn delta(before: &Counters, after: &Counters) -> Delta {
        let mut calls = BTreeMap::new();
        for (operation, count) in &after.calls {
            let earlier = before.calls.get(operation).copied().unwrap_or(0);
            if *count > earlier {
                calls.insert(operation.clone(), count - earlier);
            }
        }
        let restarts = after
            .runs
            .iter()
            .filter(|(id, runs)| before.runs.get(id).copied().unwrap_or(0) < **runs)
            .count() as u64;
        Delta {
            calls,
            bytes: after.bytes.saturating_sub(before.bytes),
            restarts,
            wall: match (before.at, after.at) {
                (Some(start), Some(end)) => end.saturating_duration_since(start),
                _ => Duration::ZERO,
            },
        }
    }

    /// Cloud API calls served so far, all operations (the emulator's stats only).
    pub async fn calls(&self) -> Result<u64, String> {
        let direct = self.direct_url()?;
        let stats: Value = self
            .http
            .get(format!("{direct}/_emulator/v1/stats"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("reading the emulator's stats: {error}"))?
            .json()
            .await
            .map_err(|error| format!("reading the emulator's stats: {error}"))?;
        stats
            .get("total")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("the emulator's stats have no total: {stats}"))
    }

    fn direct_url(&self) -> Result<String, String> {
        self.emulator
            .as_ref()
            .map(EmulatorHandle::dli_url)
            .ok_or_else(|| "the emulator is not running".to_string())
    }

    /// The newest run number of every seeded job, from the emulator's introspection API.
    async fn run_numbers(&self, direct: &str) -> Result<BTreeMap<i64, u64>, String> {
        let http = &self.http;
        let results: Vec<Result<(i64, u64), String>> =
            futures::stream::iter(self.job_ids.iter().map(|&id| {
                let url = format!("{direct}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{id}/runs");
                async move {
                    let body: Value = http
                        .get(&url)
                        .send()
                        .await
                        .and_then(reqwest::Response::error_for_status)
                        .map_err(|error| format!("reading the runs of job {id}: {error}"))?
                        .json()
                        .await
                        .map_err(|error| format!("reading the runs of job {id}: {error}"))?;
                    let newest = body
                        .get("runs")
                        .and_then(Value::as_array)
                        .and_then(|runs| runs.last())
                        .and_then(|run| run.get("run_number"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    Ok((id, newest))
                }
            }))
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Stops the emulator and the proxies; with `keep`, leaves the directory (repository,
    /// emulator data, dli-gitops state, daemon logs) on disk and returns its path.
    pub async fn shutdown(mut self, keep: bool) -> Option<PathBuf> {
        if let Some(handle) = self.emulator.take() {
            handle.shutdown().await;
        }
        self.api_proxy.stop().await;
        self.s3_proxy.stop().await;
        keep.then(|| self.directory.keep())
    }
}

/// Measures `work`: calls, bytes and restarts between counter reads, wall time of `work` alone.
pub async fn measure<T, F>(bed: &TestBed, work: F) -> Result<(T, Delta), String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let before = bed.counters().await?;
    let started = Instant::now();
    let value = work.await?;
    let wall = started.elapsed();
    let after = bed.counters().await?;
    let mut delta = TestBed::delta(&before, &after);
    delta.wall = wall;
    Ok((value, delta))
}

async fn start_emulator(
    data_dir: &Path,
    latency_ms: u64,
    delays: EmulatorDelays,
) -> Result<EmulatorHandle, String> {
    let mut config = EmulatorConfig::for_tests(data_dir.to_path_buf());
    config.delays = delays;
    config.faults.latency_ms = latency_ms;
    // The benchmark sends well-signed requests only; a lockout would be a harness bug.
    config.auth.lockout_failures = 0;
    Emulator::start(config)
        .await
        .map_err(|error| format!("starting the emulator: {error}"))
}

pub fn credentials() -> Credentials {
    Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.to_string(),
        secret_key: Secret::new(DEV_SECRET_KEY),
        security_token: None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
