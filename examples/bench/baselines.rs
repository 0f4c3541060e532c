//! The two baselines dli-gitops is compared with, written as a capable user would write them,
//! with the same `cloud` client, the same client options (rate limit included) and the same
//! emulator:
//!
//! * **full sync** — what a user would script: list, export everything (a backup), stop every
//!   running job, write every job from git with the documented update call (create for a job
//!   new in git; ten at a time — DLI imports only zips it exported itself, so a script cannot
//!   bundle git's jobs into an import), start them again. It stops
//!   without savepoints, as such scripts do; keeping state would add a detail and a savepoint
//!   import per job, so the figures here are its cheapest form.
//! * **per-resource refresh** — what a Terraform-style tool does: one detail call per job per
//!   cycle from its state file (no listing), a field-by-field diff (ours, after normalisation,
//!   which is generous: a real provider also diffs formatting), then stop / update / run for
//!   every changed job, ten at a time (Terraform's default parallelism).
//!
//! Both wait until the jobs they started run, as dli-gitops does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use dli_gitops::cloud::{DliClient, ListJobsQuery};
use dli_gitops::model::{DesiredJobs, JobKind, RunState};

/// Batch calls carry at most this many job ids (as the DLI console does).
const BATCH: usize = 100;
/// Terraform's default `-parallelism`.
const PARALLELISM: usize = 10;
/// Longest wait for jobs to reach a status.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Pause between two looks at moving jobs.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// One full-sync cycle against `desired`.
pub async fn full_sync_cycle(
    client: &DliClient,
    desired: &DesiredJobs,
    cycle: u32,
) -> Result<(), String> {
    let listed = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .map_err(|error| format!("full sync: listing jobs: {error}"))?;
    client
        .export_jobs(
            &format!("dli-gitops-backups/full-sync/cycle-{cycle}/"),
            None,
        )
        .await
        .map_err(|error| format!("full sync: exporting every job: {error}"))?;
    let running: Vec<i64> = listed
        .iter()
        .filter(|job| job.status.is_running())
        .map(|job| job.id)
        .collect();
    for chunk in running.chunks(BATCH) {
        client
            .stop_jobs(chunk, false)
            .await
            .map_err(|error| format!("full sync: stopping jobs: {error}"))?;
    }
    wait_all(client, |job| {
        !job.status.is_running() && !job.status.is_transitional()
    })
    .await?;
    // Every job from git, written with the documented calls: update the live one, create a new
    // one; ten at a time.
    let mut ids_by_name: BTreeMap<String, i64> = listed
        .iter()
        .map(|job| (job.name.clone(), job.id))
        .collect();
    let ids_known = &ids_by_name;
    let written: Vec<Result<(String, i64), String>> =
        futures::stream::iter(desired.flink.iter().map(|job| async move {
            let name = job.name.clone();
            let jar = job.config.kind() == JobKind::FlinkJar;
            let id = match ids_known.get(&name) {
                Some(&id) => {
                    let updated = if jar {
                        client.update_jar_job(id, &job.config).await
                    } else {
                        client.update_sql_job(id, &job.config).await
                    };
                    updated.map_err(|error| format!("full sync: updating {name}: {error}"))?;
                    id
                }
                None => {
                    let created = if jar {
                        client.create_jar_job(&name, &job.config).await
                    } else {
                        client.create_sql_job(&name, &job.config).await
                    };
                    created.map_err(|error| format!("full sync: creating {name}: {error}"))?
                }
            };
            Ok((name, id))
        }))
        .buffered(PARALLELISM)
        .collect()
        .await;
    for result in written {
        let (name, id) = result?;
        ids_by_name.insert(name, id);
    }
    let to_start: Vec<i64> = desired
        .flink
        .iter()
        .filter(|job| job.lifecycle.desired_state == RunState::Running)
        .filter_map(|job| ids_by_name.get(&job.name).copied())
        .collect();
    for chunk in to_start.chunks(BATCH) {
        client
            .run_jobs(chunk, false)
            .await
            .map_err(|error| format!("full sync: starting jobs: {error}"))?;
    }
    wait_all(client, |job| {
        !job.status.is_transitional() && job.status.as_str() != "job_init"
    })
    .await
}

/// The Terraform-style tool's state file: job name → id.
pub type ResourceState = BTreeMap<String, i64>;

/// One per-resource refresh cycle: detail every job, change those that differ. Returns how
/// many jobs it changed.
pub async fn per_resource_cycle(
    client: &DliClient,
    state: &ResourceState,
    desired: &DesiredJobs,
) -> Result<usize, String> {
    let refreshed: Vec<Result<(String, dli_gitops::model::ObservedFlinkJob), String>> =
        futures::stream::iter(desired.flink.iter().map(|job| async move {
            let id = *state
                .get(&job.name)
                .ok_or_else(|| format!("per-resource: job {} is not in the state", job.name))?;
            let observed = client
                .job_detail(id)
                .await
                .map_err(|error| format!("per-resource: refreshing job {}: {error}", job.name))?;
            Ok((job.name.clone(), observed))
        }))
        .buffered(PARALLELISM)
        .collect()
        .await;
    let mut observed = BTreeMap::new();
    for result in refreshed {
        let (name, job) = result?;
        observed.insert(name, job);
    }
    let changed: Vec<_> = desired
        .flink
        .iter()
        .filter(|job| {
            observed
                .get(&job.name)
                .is_some_and(|live| !job.config.field_diffs(&live.config).is_empty())
        })
        .collect();
    let observed = &observed;
    let results: Vec<Result<(), String>> =
        futures::stream::iter(changed.iter().map(|job| async move {
            let live = &observed[&job.name];
            let id = live.id;
            if live.status.is_running() {
                client
                    .stop_jobs(&[id], false)
                    .await
                    .map_err(|error| format!("per-resource: stopping {}: {error}", job.name))?;
                wait_one(client, id, |status| status.is_stopped()).await?;
            }
            let updated = match job.kind() {
                JobKind::FlinkJar => client.update_jar_job(id, &job.config).await,
                _ => client.update_sql_job(id, &job.config).await,
            };
            updated.map_err(|error| format!("per-resource: updating {}: {error}", job.name))?;
            if job.lifecycle.desired_state == RunState::Running {
                client
                    .run_jobs(&[id], false)
                    .await
                    .map_err(|error| format!("per-resource: starting {}: {error}", job.name))?;
                wait_one(client, id, |status| status.is_running()).await?;
            }
            Ok(())
        }))
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(changed.len())
}

/// Lists until every job satisfies `settled`.
async fn wait_all(
    client: &DliClient,
    settled: impl Fn(&dli_gitops::cloud::ListedFlinkJob) -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let listed = client
            .list_jobs(&ListJobsQuery::default())
            .await
            .map_err(|error| format!("waiting for jobs to settle: {error}"))?;
        if listed.iter().all(&settled) {
            return Ok(());
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            return Err(format!("jobs did not settle within {SETTLE_TIMEOUT:?}"));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Reads one job's detail until its status satisfies `settled`.
async fn wait_one(
    client: &DliClient,
    id: i64,
    settled: impl Fn(&dli_gitops::model::FlinkJobStatus) -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let job = client
            .job_detail(id)
            .await
            .map_err(|error| format!("waiting for job {id}: {error}"))?;
        if settled(&job.status) {
            return Ok(());
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            return Err(format!(
                "job {id} did not settle within {SETTLE_TIMEOUT:?} (status {})",
                job.status
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
