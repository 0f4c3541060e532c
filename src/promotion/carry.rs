//! Carrying Flink state across environments (`restore.from_target`): the upstream copy's
//! savepoint is copied from the upstream account's OBS into the downstream's staging prefix, so
//! the downstream job can import it with import-savepoint even when the two targets are
//! different accounts that cannot read each other's buckets.
//!
//! Which savepoint: a running upstream job gets a fresh savepoint (its state moves on, so an
//! older one would replay or lose data); a stopped one gives the savepoint the journal recorded
//! when dli-gitops stopped it, else the one the service reports for it.
//!
//! The copy is idempotent: the destination is derived from the source path, objects are copied
//! with `_metadata` last, and a destination that already holds `_metadata` is not copied again
//! when it matches the source now (`savepoints::verify`: keys, sizes, `_metadata` byte for byte).
//! The source path alone does not name one savepoint: the service names its stop savepoint
//! directories to the second (`jobs/savepoint/{job_id}/{yyyy-mm-dd_HH-mm-ss}/`, the huaweicloud
//! Terraform provider's `dli_flinksql_job`, `updateFlinkSqlJobWithStop`), so a second stop of the
//! upstream job in the same second writes a newer savepoint into a directory carried before. A
//! copy of another savepoint is never overwritten (the downstream catalog lists it, a downstream
//! job may hold it): the savepoint is carried under the next name, `<digest>-1/`, `-2/`, ...
//! (`carry_destination`).

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::cloud::{CloudError, DliClient, ListJobsQuery, ObjectStore, ObsOptions};
use crate::savepoints::{CARRIED_PREFIX, CopyError, Origin, directory, same_directory, verify};

/// The file that makes a directory a Flink savepoint; copied last.
pub const SAVEPOINT_METADATA: &str = "_metadata";
/// Where fresh upstream savepoints go, under the upstream's staging prefix.
pub const FRESH_PREFIX: &str = "promotion-savepoints";

/// Both ends of one carry. Borrowed from the targets' clients and config.
#[derive(Debug, Clone, Copy)]
pub struct CarryEnds<'a> {
    pub upstream_target: &'a str,
    pub upstream_dli: &'a DliClient,
    pub upstream_obs: &'a ObsOptions,
    /// `obs://bucket/prefix/` of the upstream target, for fresh savepoints.
    pub upstream_staging: &'a str,
    pub downstream_target: &'a str,
    pub downstream_obs: &'a ObsOptions,
    /// `obs://bucket/prefix/` of the downstream target.
    pub downstream_staging: &'a str,
    pub savepoint_timeout: Duration,
    pub poll_interval: Duration,
}

/// A savepoint now readable by the downstream target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CarriedSavepoint {
    /// The savepoint in the upstream account (`obs://bucket/dir/`).
    pub upstream_path: String,
    /// Its copy under the downstream's staging prefix: what import-savepoint is given.
    pub downstream_path: String,
    /// The savepoint was triggered for this carry (the upstream job was running).
    pub fresh: bool,
    /// Objects copied (0 when a complete copy matching the source was there already).
    pub objects_copied: usize,
    pub bytes_copied: u64,
}

/// Why a savepoint could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    #[error(
        "carrying the state of `{job}` from `{upstream}`: the job is not live there; deploy it upstream first, or restore from an explicit savepoint_path"
    )]
    UpstreamJobMissing { upstream: String, job: String },
    #[error(
        "carrying the state of `{job}` from `{upstream}`: the job is {status} there and no savepoint is known for it; stop it with a savepoint (or run it) upstream first, or restore from an explicit savepoint_path"
    )]
    NoSavepoint {
        upstream: String,
        job: String,
        status: crate::model::FlinkJobStatus,
    },
    #[error(
        "carrying the state of `{job}` from `{upstream}`: the savepoint triggered into {path} did not appear within {timeout:?}; the next pass tries again"
    )]
    SavepointTimeout {
        upstream: String,
        job: String,
        path: String,
        timeout: Duration,
    },
    #[error(
        "carrying the state of `{job}` from `{upstream}`: savepoint {path} holds no `_metadata` file, so it is not a complete savepoint"
    )]
    IncompleteSavepoint {
        upstream: String,
        job: String,
        path: String,
    },
    #[error("carrying the state of `{job}` from `{upstream}` to `{downstream}`: {what}")]
    Cloud {
        upstream: String,
        downstream: String,
        job: String,
        what: &'static str,
        #[source]
        source: CloudError,
    },
}

impl CarryError {
    /// Worth another attempt on the next pass (a transient service error or a slow savepoint).
    pub fn is_retryable(&self) -> bool {
        match self {
            CarryError::SavepointTimeout { .. } => true,
            CarryError::Cloud { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// A job whose `restore: {from_target}` has not been applied in the downstream target yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingCarry {
    pub job: String,
    pub from_target: String,
    /// The savepoint the upstream's journal last recorded for the job, if any.
    pub journal_savepoint: Option<String>,
}

/// The carries a pass of `downstream` needs: the same rule as the planner's pending restore
/// (a `from_target` restore whose key the downstream's journal has not recorded as applied),
/// so state is carried exactly when the plan will import it. An explicit `savepoint_path`
/// wins over `from_target` in the planner, so such jobs need no carry.
pub fn pending_carries(
    desired: &crate::model::DesiredJobs,
    state: &crate::journal::JournalState,
    downstream: &str,
) -> Vec<PendingCarry> {
    desired
        .flink
        .iter()
        .filter_map(|job| {
            let restore = job.lifecycle.restore.as_ref()?;
            if restore.savepoint_path.is_some() {
                return None;
            }
            let from_target = restore.from_target.clone()?;
            let applied = state
                .job(downstream, &job.name)
                .and_then(|entry| entry.restore_key.as_deref());
            if applied == Some(restore.key().as_str()) {
                return None;
            }
            Some(PendingCarry {
                journal_savepoint: state
                    .job(&from_target, &job.name)
                    .and_then(|entry| entry.savepoint_path.clone()),
                job: job.name.clone(),
                from_target,
            })
        })
        .collect()
}

/// Carries the state of `job` from the upstream to the downstream target.
/// `journal_savepoint` is the savepoint the upstream's journal last recorded for the job.
pub async fn carry_savepoint(
    ends: &CarryEnds<'_>,
    job: &str,
    journal_savepoint: Option<&str>,
) -> Result<CarriedSavepoint, CarryError> {
    let (upstream_path, fresh) = upstream_savepoint(ends, job, journal_savepoint).await?;
    let source = ObjectStore::from_url(&directory_url(&upstream_path), ends.upstream_obs)
        .map_err(cloud_error(ends, job, "opening the upstream savepoint"))?;
    let mut keys =
        source
            .list("")
            .await
            .map_err(cloud_error(ends, job, "listing the upstream savepoint"))?;
    if !keys.iter().any(|key| key == SAVEPOINT_METADATA) {
        return Err(CarryError::IncompleteSavepoint {
            upstream: ends.upstream_target.to_string(),
            job: job.to_string(),
            path: upstream_path,
        });
    }
    let (destination_url, destination, reused) =
        carry_destination(ends, job, &upstream_path, &source).await?;
    let mut carried = CarriedSavepoint {
        upstream_path: upstream_path.clone(),
        downstream_path: destination_url.clone(),
        fresh,
        objects_copied: 0,
        bytes_copied: 0,
    };
    if reused {
        tracing::info!(
            job = job,
            from = ends.upstream_target,
            to = ends.downstream_target,
            savepoint = %destination_url,
            "The upstream savepoint was carried before; reusing the copy."
        );
        return Ok(carried);
    }
    // `_metadata` last: a copy cut short is never mistaken for a complete savepoint.
    keys.sort_by_key(|key| key == SAVEPOINT_METADATA);
    for key in &keys {
        let bytes: Bytes = source.get(key).await.map_err(cloud_error(
            ends,
            job,
            "reading an upstream savepoint file",
        ))?;
        carried.bytes_copied += bytes.len() as u64;
        destination.put(key, bytes).await.map_err(cloud_error(
            ends,
            job,
            "writing a savepoint file downstream",
        ))?;
        carried.objects_copied += 1;
    }
    tracing::info!(
        job = job,
        from = ends.upstream_target,
        to = ends.downstream_target,
        upstream_savepoint = %carried.upstream_path,
        savepoint = %carried.downstream_path,
        objects = carried.objects_copied,
        bytes = carried.bytes_copied,
        fresh,
        "Carried a savepoint to the downstream target."
    );
    Ok(carried)
}

/// Where the copy of the savepoint now in `upstream_path` (opened as `source`) goes, and whether
/// a complete copy of it is already there (reused, not copied again).
///
/// The name derives from the source path, so a carry repeated after a crash or a failed import
/// finds its copy. The path is not enough: the service names its stop savepoint directories to
/// the second (`jobs/savepoint/{job_id}/{yyyy-mm-dd_HH-mm-ss}/`), so a second stop of the
/// upstream job in the same second writes a newer savepoint into the directory an earlier carry
/// copied. A complete copy (one with `_metadata`) is reused only when `verify` finds it equal to
/// the source now (keys, sizes, `_metadata` byte for byte); one of another savepoint is left as
/// it is (the downstream catalog may list it, a downstream job may hold or be importing it) and
/// the next name (`<digest>-1/`, `-2/`, ...) is tried, up to one without `_metadata`, which the
/// carry fills. The walk ends: each name it passes is a complete copy already written.
async fn carry_destination(
    ends: &CarryEnds<'_>,
    job: &str,
    upstream_path: &str,
    source: &ObjectStore,
) -> Result<(String, ObjectStore, bool), CarryError> {
    let base = format!(
        "{}{CARRIED_PREFIX}/{}/{job}/{}",
        directory_url(ends.downstream_staging),
        ends.upstream_target,
        short_digest(upstream_path)
    );
    let mut generation = 0u64;
    loop {
        let url = match generation {
            0 => format!("{base}/"),
            _ => format!("{base}-{generation}/"),
        };
        let destination = ObjectStore::from_url(&url, ends.downstream_obs).map_err(cloud_error(
            ends,
            job,
            "opening the downstream staging prefix",
        ))?;
        let already = destination.list("").await.map_err(cloud_error(
            ends,
            job,
            "listing the downstream copy",
        ))?;
        if !already.iter().any(|key| key == SAVEPOINT_METADATA) {
            return Ok((url, destination, false));
        }
        match verify(source, &destination).await {
            Ok(_) => return Ok((url, destination, true)),
            Err(error @ (CopyError::Mismatch { .. } | CopyError::Incomplete { .. })) => {
                tracing::info!(
                    job = job,
                    from = ends.upstream_target,
                    to = ends.downstream_target,
                    upstream_savepoint = upstream_path,
                    copy = %url,
                    error = %error,
                    "The copy carried before from this upstream directory is of another savepoint (the service wrote a newer one into the directory); it is kept, and the savepoint is carried under another name."
                );
            }
            Err(CopyError::Cloud { source, .. }) => {
                return Err(cloud_error(
                    ends,
                    job,
                    "comparing the downstream copy with the upstream savepoint",
                )(source));
            }
        }
        generation += 1;
    }
}

/// The upstream savepoint to carry, and whether it is fresh: a running upstream job takes a
/// new one; a stopped one gives the savepoint its journal recorded, or else the one it holds.
async fn upstream_savepoint(
    ends: &CarryEnds<'_>,
    job: &str,
    journal_savepoint: Option<&str>,
) -> Result<(String, bool), CarryError> {
    let listed = ends
        .upstream_dli
        .list_jobs(&ListJobsQuery {
            name: Some(job.to_string()),
            ..ListJobsQuery::default()
        })
        .await
        .map_err(cloud_error(ends, job, "listing the upstream job"))?;
    let Some(upstream_job) = listed.into_iter().find(|listed| listed.name == job) else {
        return Err(CarryError::UpstreamJobMissing {
            upstream: ends.upstream_target.to_string(),
            job: job.to_string(),
        });
    };
    let found = if upstream_job.status.is_running() {
        let path = trigger_fresh_savepoint(ends, upstream_job.id, job).await?;
        (path, true)
    } else {
        let known = match journal_savepoint {
            Some(path) => Some(path.to_string()),
            None => {
                ends.upstream_dli
                    .job_detail(upstream_job.id)
                    .await
                    .map_err(cloud_error(ends, job, "reading the upstream job"))?
                    .savepoint_path
            }
        };
        let Some(path) = known else {
            return Err(CarryError::NoSavepoint {
                upstream: ends.upstream_target.to_string(),
                job: job.to_string(),
                status: upstream_job.status.clone(),
            });
        };
        (path, false)
    };
    Ok(found)
}

/// The error of a cloud call made while carrying `job` (`what` was being done).
fn cloud_error<'a>(
    ends: &'a CarryEnds<'_>,
    job: &'a str,
    what: &'static str,
) -> impl FnOnce(CloudError) -> CarryError + 'a {
    move |source: CloudError| CarryError::Cloud {
        upstream: ends.upstream_target.to_string(),
        downstream: ends.downstream_target.to_string(),
        job: job.to_string(),
        what,
        source,
    }
}

/// Triggers a savepoint of the running upstream job into a new directory and waits for its
/// `_metadata` to appear.
async fn trigger_fresh_savepoint(
    ends: &CarryEnds<'_>,
    job_id: i64,
    job: &str,
) -> Result<String, CarryError> {
    let directory = format!(
        "{}{FRESH_PREFIX}/{job}/{}/",
        directory_url(ends.upstream_staging),
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ")
    );
    ends.upstream_dli
        .trigger_savepoint(job_id, &directory)
        .await
        .map_err(cloud_error(ends, job, "triggering a savepoint upstream"))?;
    let store = ObjectStore::from_url(&directory, ends.upstream_obs).map_err(cloud_error(
        ends,
        job,
        "opening the upstream savepoint",
    ))?;
    let started = Instant::now();
    loop {
        let keys = store.list("").await.map_err(cloud_error(
            ends,
            job,
            "waiting for the upstream savepoint",
        ))?;
        if keys.iter().any(|key| key == SAVEPOINT_METADATA) {
            return Ok(directory);
        }
        if started.elapsed() >= ends.savepoint_timeout {
            return Err(CarryError::SavepointTimeout {
                upstream: ends.upstream_target.to_string(),
                job: job.to_string(),
                path: directory,
                timeout: ends.savepoint_timeout,
            });
        }
        tokio::time::sleep(ends.poll_interval).await;
    }
}

/// `obs://bucket/dir` → `obs://bucket/dir/`.
fn directory_url(path: &str) -> String {
    let trimmed = path.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("obs://{trimmed}")
    };
    if with_scheme.ends_with('/') {
        with_scheme
    } else {
        format!("{with_scheme}/")
    }
}

/// 16 hex digits of the source path's SHA-256: a stable, collision-safe directory name.
fn short_digest(path: &str) -> String {
    let digest = Sha256::digest(directory_url(path).as_bytes());
    hex::encode(&digest[..8])
}

/// Journals a savepoint carried from another target (promotion) as a catalog entry of
/// `target`, once per copy. The copy is verified against its upstream source (keys, sizes,
/// `_metadata`); a copy that cannot be verified is listed with `verified: false`.
pub async fn record_carried(
    journal: &crate::journal::Journal,
    target: &str,
    job: &str,
    carried: &CarriedSavepoint,
    ends: &CarryEnds<'_>,
) -> Result<(), crate::journal::JournalError> {
    let already = journal
        .state_guard()
        .targets
        .get(target)
        .is_some_and(|state| {
            state.savepoints.iter().any(|entry| {
                entry.record.job == job
                    && same_directory(&entry.record.path, &carried.downstream_path)
            })
        });
    if already {
        return Ok(());
    }
    let verified = match (
        ObjectStore::from_url(&directory(&carried.upstream_path), ends.upstream_obs),
        ObjectStore::from_url(&directory(&carried.downstream_path), ends.downstream_obs),
    ) {
        (Ok(source), Ok(copy)) => verify(&source, &copy).await.map_err(|error| {
            tracing::warn!(target_name = target, job, error = %error, "A carried savepoint could not be verified.");
        }),
        _ => Err(()),
    };
    let size = verified.unwrap_or_default();
    journal
        .append_async(
            target,
            crate::journal::RecordBody::Savepoint(crate::journal::SavepointRecord {
                job: job.to_string(),
                path: directory(&carried.downstream_path),
                origin: Origin::Carried.as_str().to_string(),
                source_path: Some(directory(&carried.upstream_path)),
                revision: None,
                spec_digest: None,
                action_id: None,
                live_id: None,
                objects: size.objects,
                size_bytes: size.bytes,
                verified: verified.is_ok(),
                extra: [(
                    "from_target".to_string(),
                    serde_json::Value::String(ends.upstream_target.to_string()),
                )]
                .into_iter()
                .collect(),
            }),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Effects, Journal, JournalOptions, Outcome, RecordBody};
    use crate::model::{DesiredJobs, Restore};

    fn desired_with(restores: &[(&str, Option<Restore>)]) -> DesiredJobs {
        use crate::desired::snapshot::{RepoFile, RepoSnapshot};
        let snapshot = RepoSnapshot {
            revision: "test".into(),
            files: restores
                .iter()
                .map(|(name, _)| {
                    (
                        format!("flink/{name}.yaml"),
                        RepoFile::Data(
                            format!(
                                "kind: FlinkSqlJob\nname: {name}\nqueue_name: q\nsql_body: SELECT 1\n"
                            )
                            .into_bytes(),
                        ),
                    )
                })
                .collect(),
        };
        let mut desired = crate::desired::resolve(&snapshot, None).expect("the test jobs resolve");
        for job in &mut desired.flink {
            job.lifecycle.restore = restores
                .iter()
                .find(|(name, _)| *name == job.name)
                .and_then(|(_, restore)| restore.clone());
        }
        desired
    }

    #[test]
    fn a_from_target_restore_is_carried_until_its_key_is_applied() {
        let from_dev = Restore {
            from_target: Some("dev".into()),
            ..Restore::default()
        };
        let explicit = Restore {
            savepoint_path: Some("obs://b/sp/".into()),
            from_target: Some("dev".into()),
            ..Restore::default()
        };
        let desired = desired_with(&[
            ("clicks", Some(from_dev.clone())),
            ("orders", Some(explicit)),
            ("plain", None),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let outcome = |job: &str, effects: Effects| {
            RecordBody::Outcome(Outcome {
                action_id: format!("a-{job}"),
                job: job.into(),
                ok: true,
                error: None,
                effects,
                plan_id: None,
                extra: Default::default(),
            })
        };
        journal
            .append(
                "dev",
                outcome(
                    "clicks",
                    Effects {
                        savepoint_path: Some("obs://dev/sp1/".into()),
                        ..Effects::default()
                    },
                ),
            )
            .unwrap();
        assert_eq!(
            pending_carries(&desired, &journal.state(), "prod"),
            vec![PendingCarry {
                job: "clicks".into(),
                from_target: "dev".into(),
                journal_savepoint: Some("obs://dev/sp1/".into()),
            }]
        );
        journal
            .append(
                "prod",
                outcome(
                    "clicks",
                    Effects {
                        restore_key: Some(from_dev.key()),
                        ..Effects::default()
                    },
                ),
            )
            .unwrap();
        assert!(pending_carries(&desired, &journal.state(), "prod").is_empty());
    }

    #[test]
    fn destination_names_are_stable_per_source() {
        assert_eq!(directory_url("bucket/dir"), "obs://bucket/dir/");
        assert_eq!(directory_url("obs://bucket/dir/"), "obs://bucket/dir/");
        assert_eq!(short_digest("obs://b/d"), short_digest("b/d/"));
        assert_ne!(short_digest("obs://b/d1"), short_digest("obs://b/d2"));
        assert_eq!(short_digest("obs://b/d").len(), 16);
    }
}
