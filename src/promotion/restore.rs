//! The glue between carrying state and applying: before a pass of a target, carry the
//! savepoints its pending `restore: {from_target}` requests need into its own OBS, and hand
//! their paths to `apply` (`ApplyOptions::carried_savepoints`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::carry::{CarryEnds, CarryError, carry_savepoint, pending_carries};
use crate::apply::TargetContext;
use crate::config::{Config, MissingSavepoint, TargetConfig};
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
        source: Box<crate::apply::ApplyError>,
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

impl RestoreError {
    /// Worth another pass (a transient service error, a slow savepoint).
    pub fn is_retryable(&self) -> bool {
        match self {
            RestoreError::Carry { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// Carries every savepoint the next pass of `downstream` will import from another target, and
/// returns them by job name for `ApplyOptions::carried_savepoints`. Nothing pending: nothing is
/// built or called. The upstream target is built beside `downstream` over the same journal
/// and, when embedded, the same emulator.
pub async fn carry_for_target(
    config: &Config,
    journal: &Journal,
    downstream: &TargetContext,
    desired: &DesiredJobs,
) -> Result<BTreeMap<String, String>, RestoreError> {
    // Read under the guard: cloning the whole journal state on every pass of every target
    // costs O(all jobs of all targets) per pass.
    let pending = pending_carries(desired, &journal.state_guard(), &downstream.name);
    let mut carried = BTreeMap::new();
    if pending.is_empty() {
        return Ok(carried);
    }
    let mut upstreams: BTreeMap<String, TargetContext> = BTreeMap::new();
    for carry in pending {
        if !upstreams.contains_key(&carry.from_target) {
            let upstream = TargetContext::with_shared(
                config,
                &carry.from_target,
                journal.clone(),
                downstream.shared_emulator(),
            )
            .await
            .map_err(|source| RestoreError::Upstream {
                target: downstream.name.clone(),
                upstream: carry.from_target.clone(),
                source: Box::new(source),
            })?;
            upstreams.insert(carry.from_target.clone(), upstream);
        }
        let upstream = &upstreams[&carry.from_target];
        let staging_of = |context: &TargetContext| {
            context
                .live
                .staging
                .as_ref()
                .map(|store| store.url_of(""))
                .ok_or_else(|| RestoreError::NoStaging {
                    target: downstream.name.clone(),
                    upstream: carry.from_target.clone(),
                    which: context.name.clone(),
                })
        };
        let upstream_staging = staging_of(upstream)?;
        let downstream_staging = staging_of(downstream)?;
        let ends = CarryEnds {
            upstream_target: &carry.from_target,
            upstream_dli: &upstream.live.clients.dli,
            upstream_obs: &upstream.live.clients.obs,
            upstream_staging: &upstream_staging,
            downstream_target: &downstream.name,
            downstream_obs: &downstream.live.clients.obs,
            downstream_staging: &downstream_staging,
            savepoint_timeout: upstream.options.savepoint_timeout,
            poll_interval: upstream.options.poll_interval.min(Duration::from_secs(2)),
        };
        let savepoint = match carry_savepoint(&ends, &carry.job, carry.journal_savepoint.as_deref())
            .await
        {
            Ok(savepoint) => savepoint,
            Err(
                error @ (CarryError::NoSavepoint { .. } | CarryError::UpstreamJobMissing { .. }),
            ) if downstream.target.restore.on_missing_savepoint == MissingSavepoint::Stateless => {
                // `on_missing_savepoint: stateless`: the restore is done, with empty state.
                // Journaled as applied, so that a savepoint appearing upstream later never
                // restores over the running job.
                start_stateless(journal, downstream, &carry.job, desired, &error).await?;
                continue;
            }
            Err(source) => {
                return Err(RestoreError::Carry {
                    target: downstream.name.clone(),
                    source: Box::new(source),
                });
            }
        };
        // The savepoint catalog of the downstream target lists the carried copy (once).
        crate::savepoints::record_carried(journal, &downstream.name, &carry.job, &savepoint, &ends)
            .await
            .map_err(|source| RestoreError::Journal {
                target: downstream.name.clone(),
                job: carry.job.clone(),
                source,
            })?;
        carried.insert(carry.job.clone(), savepoint.downstream_path);
    }
    for (_, upstream) in upstreams {
        upstream.shutdown().await;
    }
    Ok(carried)
}

async fn start_stateless(
    journal: &Journal,
    downstream: &TargetContext,
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
        .append_async(&downstream.name, record)
        .await
        .map_err(|source| RestoreError::Journal {
            target: downstream.name.clone(),
            job: job.to_string(),
            source,
        })?;
    tracing::warn!(
        target = %downstream.name,
        job = job,
        reason = %why,
        "No upstream savepoint to carry; the job starts without state (on_missing_savepoint: stateless)."
    );
    Ok(())
}
