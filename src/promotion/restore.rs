//! The glue between carrying state and applying: before a pass of a target, carry the
//! savepoints its pending `restore: {from_target}` requests need into its own OBS, and hand
//! their paths to `apply` (`ApplyOptions::carried_savepoints`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::carry::{CarryEnds, CarryError, PendingCarry, carry_savepoint};
use crate::cloud::{DliClient, ObsOptions};
use crate::config::{MissingSavepoint, TargetConfig};
use crate::journal::{Effects, Journal, Outcome, RecordBody};
use crate::model::{DesiredJobs, Restore};

/// Applies the target's `restore: {from_target}` default: every Flink job without a `restore`
/// of its own starts from its copy's state in that target (once per job, like any restore).
/// The digest is recomputed, since the lifecycle is part of it.
pub fn apply_target_restore(desired: &mut DesiredJobs, target: &TargetConfig) {
    let Some(from_target) = &target.restore.from_target else {
        return;
    };
    for job in &mut desired.flink {
        if job.lifecycle.restore.is_none() {
            job.lifecycle.restore = Some(Restore {
                from_target: Some(from_target.clone()),
                ..Restore::default()
            });
            job.digest = crate::desired::flink_job_digest(&job.name, &job.config, &job.lifecycle);
        }
    }
}

/// Why the savepoints for a pass could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("carrying state into `{target}`: building the upstream target `{upstream}`")]
    Upstream {
        target: String,
        upstream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "carrying state into `{target}` from `{upstream}`: `{which}` has no staging location; set `staging: obs://bucket/prefix/` on it"
    )]
    NoStaging {
        target: String,
        upstream: String,
        which: String,
    },
    #[error("carrying state into `{target}`: journaling that `{job}` starts without state")]
    Journal {
        target: String,
        job: String,
        #[source]
        source: crate::journal::JournalError,
    },
    #[error("carrying state into `{target}`")]
    Carry {
        target: String,
        #[source]
        source: Box<CarryError>,
    },
}

/// What carrying needs of one target: its name, clients, staging location and timings.
/// Borrowed from the target's context by the caller (`pass::carry_for_target`).
#[derive(Debug, Clone)]
pub struct CarryTarget<'a> {
    pub name: &'a str,
    pub dli: &'a DliClient,
    pub obs: &'a ObsOptions,
    /// `obs://bucket/prefix/` of the target's staging location, when it has one.
    pub staging: Option<String>,
    pub savepoint_timeout: Duration,
    pub poll_interval: Duration,
}

/// Carries every savepoint in `pending` (see `pending_carries`) from its upstream target
/// (in `upstreams`, by name) into `downstream`, and returns them by job name for
/// `ApplyOptions::carried_savepoints`. With `on_missing_savepoint: stateless`, a job with
/// nothing upstream is journaled as restored without state instead.
pub async fn carry_pending(
    journal: &Journal,
    downstream: &CarryTarget<'_>,
    on_missing: MissingSavepoint,
    upstreams: &BTreeMap<String, CarryTarget<'_>>,
    desired: &DesiredJobs,
    pending: Vec<PendingCarry>,
) -> Result<BTreeMap<String, String>, RestoreError> {
    let mut carried = BTreeMap::new();
    for carry in pending {
        let Some(upstream) = upstreams.get(&carry.from_target) else {
            continue;
        };
        let staging_of = |end: &CarryTarget<'_>| {
            end.staging.clone().ok_or_else(|| RestoreError::NoStaging {
                target: downstream.name.to_string(),
                upstream: carry.from_target.clone(),
                which: end.name.to_string(),
            })
        };
        let upstream_staging = staging_of(upstream)?;
        let downstream_staging = staging_of(downstream)?;
        let ends = CarryEnds {
            upstream_target: &carry.from_target,
            upstream_dli: upstream.dli,
            upstream_obs: upstream.obs,
            upstream_staging: &upstream_staging,
            downstream_target: downstream.name,
            downstream_obs: downstream.obs,
            downstream_staging: &downstream_staging,
            savepoint_timeout: upstream.savepoint_timeout,
            poll_interval: upstream.poll_interval.min(Duration::from_secs(2)),
        };
        let savepoint = match carry_savepoint(&ends, &carry.job, carry.journal_savepoint.as_deref())
            .await
        {
            Ok(savepoint) => savepoint,
            Err(
                error @ (CarryError::NoSavepoint { .. } | CarryError::UpstreamJobMissing { .. }),
            ) if on_missing == MissingSavepoint::Stateless => {
                // `on_missing_savepoint: stateless`: the restore is done, with empty state.
                // Journaled as applied, so that a savepoint appearing upstream later never
                // restores over the running job.
                start_stateless(journal, downstream.name, &carry.job, desired, &error).await?;
                continue;
            }
            Err(source) => {
                return Err(RestoreError::Carry {
                    target: downstream.name.to_string(),
                    source: Box::new(source),
                });
            }
        };
        // The savepoint catalog of the downstream target lists the carried copy (once).
        super::carry::record_carried(journal, downstream.name, &carry.job, &savepoint, &ends)
            .await
            .map_err(|source| RestoreError::Journal {
                target: downstream.name.to_string(),
                job: carry.job.clone(),
                source,
            })?;
        carried.insert(carry.job.clone(), savepoint.downstream_path);
    }
    Ok(carried)
}

async fn start_stateless(
    journal: &Journal,
    downstream: &str,
    job: &str,
    desired: &DesiredJobs,
    why: &CarryError,
) -> Result<(), RestoreError> {
    let Some(restore_key) = desired
        .flink
        .iter()
        .find(|desired_job| desired_job.name == job)
        .and_then(|desired_job| desired_job.lifecycle.restore.as_ref())
        .map(Restore::key)
    else {
        return Ok(());
    };
    let record = RecordBody::Outcome(Outcome {
        action_id: format!(
            "promotion-stateless-{}",
            chrono::Utc::now().timestamp_millis()
        ),
        job: job.to_string(),
        ok: true,
        error: None,
        effects: Effects {
            restore_key: Some(restore_key),
            ..Effects::default()
        },
        plan_id: None,
        extra: [(
            "note".to_string(),
            serde_json::Value::String(format!(
                "on_missing_savepoint: stateless; starts without state: {why}"
            )),
        )]
        .into_iter()
        .collect(),
    });
    journal
        .append_async(downstream, record)
        .await
        .map_err(|source| RestoreError::Journal {
            target: downstream.to_string(),
            job: job.to_string(),
            source,
        })?;
    tracing::warn!(
        target = %downstream,
        job = job,
        reason = %why,
        "No upstream savepoint to carry; the job starts without state (on_missing_savepoint: stateless)."
    );
    Ok(())
}
