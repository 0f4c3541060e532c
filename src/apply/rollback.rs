//! `rollback`: re-import the backups one apply took before it overwrote or deleted jobs.
//!
//! A running Flink job is stopped with a savepoint first, the backup zip is imported over it
//! (`is_cover: true`), the savepoint is imported back and the job started again from it; a job
//! that was not running stays stopped. DLF backups are imported with `OVERWRITE`. Every job is
//! one journaled action (`rollback`); one failure does not stop the others. Unless git is
//! reverted too, the next apply converges the jobs back to git.

use serde::Serialize;
use serde_json::json;

use super::execute::{action_id, new_pass_id, start_settled, wait_for_job};
use super::ledger::{
    ActionEffects, BackupSet, DLF_KEY_PREFIX, IntentEntry, Ledger, OutcomeEntry, RecordedFailure,
};
use super::live::{LiveService, ServiceFailure};
use super::observe::{ObserveScope, observe_with};
use super::{ApplyError, ApplyOptions};
use crate::model::ObservedJobs;

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackReport {
    pub target: String,
    /// The plan whose backups were re-imported.
    pub plan_id: Option<String>,
    /// The journal seqs the chosen backups were recorded at.
    pub first_seq: u64,
    pub last_seq: u64,
    pub jobs: Vec<RolledBackJob>,
}

impl RollbackReport {
    pub fn render_text(&self) -> String {
        let mut text = format!(
            "Rollback of target `{}` to the backups of plan {} (journal seq {}..={}):\n",
            self.target,
            self.plan_id.as_deref().unwrap_or("(unknown)"),
            self.first_seq,
            self.last_seq
        );
        for job in &self.jobs {
            match &job.error {
                None => text.push_str(&format!(
                    "  done    {} from {}\n",
                    job.job,
                    job.zips.join(", ")
                )),
                Some(error) => text.push_str(&format!("  FAILED  {}: {error}\n", job.job)),
            }
        }
        let failed = self.jobs.iter().filter(|job| job.error.is_some()).count();
        text.push_str(&format!(
            "Rollback complete: {} job(s), {} failed. Revert git too, or the next apply converges them back.\n",
            self.jobs.len(),
            failed
        ));
        text
    }
}

/// One job's rollback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolledBackJob {
    /// The journal key (`name`, or `dlf:name`).
    pub job: String,
    pub zips: Vec<String>,
    pub error: Option<String>,
}

/// Chooses the backups of one apply: the set whose journal records span `to`, else the first
/// set recorded after `to`; without `to`, the latest set.
pub fn choose_backup_set(sets: &[BackupSet], to: Option<u64>) -> Option<&BackupSet> {
    match to {
        None => sets.last(),
        Some(seq) => sets
            .iter()
            .find(|set| set.first_seq <= seq && seq <= set.last_seq)
            .or_else(|| sets.iter().find(|set| set.first_seq > seq)),
    }
}

pub(crate) async fn rollback_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    to: Option<u64>,
    options: &ApplyOptions,
) -> Result<RollbackReport, ApplyError> {
    let sets = ledger.backup_sets();
    let set = choose_backup_set(&sets, to).cloned().ok_or_else(|| ApplyError::Rollback {
        target: ledger.target().to_string(),
        problem: match to {
            Some(seq) => format!(
                "the journal holds no backups at or after seq {seq} ({} backup set(s) in all); see `dli-gitops journal show`",
                sets.len()
            ),
            None => "the journal holds no backups for this target; backups are taken when an apply overwrites or deletes a live job".to_string(),
        },
    })?;
    let scope = ObserveScope {
        dlf: set
            .jobs
            .iter()
            .any(|(job, _)| job.starts_with(DLF_KEY_PREFIX)),
        refresh: set.jobs.iter().map(|(job, _)| job.clone()).collect(),
    };
    let (observed, _) = observe_with(live, ledger, &scope).await?;
    let plan_id = set
        .plan_id
        .clone()
        .unwrap_or_else(|| "rollback".to_string());
    let mut jobs = Vec::new();
    let pass_id = new_pass_id();
    for (index, (job, zips)) in set.jobs.iter().enumerate() {
        let action_id = action_id(&plan_id, &pass_id, index);
        ledger
            .intent(IntentEntry {
                action_id: action_id.clone(),
                job: job.clone(),
                action: "rollback".to_string(),
                plan_id: set.plan_id.clone(),
                detail: json!({"zips": zips}),
            })
            .await?;
        let result = match job.strip_prefix(DLF_KEY_PREFIX) {
            Some(_) => rollback_dlf(live, zips, options).await,
            None => rollback_flink(live, &observed, job, zips, options).await,
        };
        let (ok, error, effects) = match result {
            Ok(effects) => (true, None, effects),
            Err(failure) => (
                false,
                Some(RecordedFailure {
                    code: failure.code.clone(),
                    message: failure.message.clone(),
                    request_id: failure.request_id.clone(),
                }),
                ActionEffects::default(),
            ),
        };
        ledger
            .outcome(OutcomeEntry {
                action_id,
                job: job.clone(),
                ok,
                error: error.clone(),
                effects,
                plan_id: set.plan_id.clone(),
            })
            .await?;
        jobs.push(RolledBackJob {
            job: job.clone(),
            zips: zips.clone(),
            error: error.map(|error| error.message),
        });
    }
    Ok(RollbackReport {
        target: ledger.target().to_string(),
        plan_id: set.plan_id.clone(),
        first_seq: set.first_seq,
        last_seq: set.last_seq,
        jobs,
    })
}

async fn rollback_flink<L: LiveService>(
    live: &L,
    observed: &ObservedJobs,
    name: &str,
    zips: &[String],
    options: &ApplyOptions,
) -> Result<ActionEffects, ServiceFailure> {
    let current = observed.flink.iter().find(|job| job.name == name);
    let was_running = current.is_some_and(|job| job.status.is_running());
    let mut savepoint = None;
    if let Some(job) = current.filter(|_| was_running) {
        live.stop_flink_job(job.id, true).await?;
        let stopped = wait_for_job(
            live,
            job.id,
            options.transition_timeout + options.savepoint_timeout,
            options.poll_interval,
            |job| job.status.is_stopped(),
        )
        .await?;
        savepoint = stopped.savepoint_path;
    } else if let Some(job) = current.filter(|job| job.status.is_transitional()) {
        return Err(ServiceFailure::local(format!(
            "job {} is {}; roll back once it has settled",
            job.id, job.status
        )));
    }
    let mut live_id = current.map(|job| job.id);
    for zip in zips {
        let mapping = live.import_flink_zip(zip).await?;
        let entry = mapping
            .iter()
            .find(|entry| entry.new_job_id >= 0)
            .ok_or_else(|| {
                ServiceFailure::local(format!(
                    "importing {zip} imported no job{}",
                    mapping
                        .first()
                        .and_then(|entry| entry.remark.as_deref())
                        .map(|remark| format!(": {remark}"))
                        .unwrap_or_default()
                ))
            })?;
        live_id = Some(entry.new_job_id);
    }
    let job_id = live_id.ok_or_else(|| ServiceFailure::local("the backup names no zip file"))?;
    if let Some(path) = &savepoint {
        live.import_savepoint(job_id, path).await?;
    }
    if was_running {
        let before = live.flink_job(job_id).await?;
        live.run_flink_job(job_id, savepoint.is_some()).await?;
        let job = wait_for_job(
            live,
            job_id,
            options.transition_timeout,
            options.poll_interval,
            |job| start_settled(&before, job),
        )
        .await?;
        if !job.status.is_running() {
            return Err(ServiceFailure::local(format!(
                "job {job_id} did not start after the rollback: it is {}",
                job.status
            )));
        }
    }
    Ok(ActionEffects {
        live_id: Some(job_id),
        savepoint_path: savepoint,
        managed: Some(true),
        ..ActionEffects::default()
    })
}

async fn rollback_dlf<L: LiveService>(
    live: &L,
    paths: &[String],
    options: &ApplyOptions,
) -> Result<ActionEffects, ServiceFailure> {
    for path in paths {
        let task_id = live.import_dlf_path(path).await?;
        live.wait_dlf_task(&task_id, options.import_task_timeout)
            .await?;
    }
    Ok(ActionEffects {
        // The live definition is no longer the one git last imported: the next plan imports
        // git's again unless git is reverted.
        spec_digest: Some("rolled-back".to_string()),
        managed: Some(true),
        ..ActionEffects::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(plan: &str, first_seq: u64, last_seq: u64) -> BackupSet {
        BackupSet {
            plan_id: Some(plan.to_string()),
            first_seq,
            last_seq,
            jobs: vec![("job".to_string(), vec![format!("bucket/{plan}.zip")])],
        }
    }

    #[test]
    fn the_backup_set_is_chosen_by_seq() {
        let sets = vec![set("a", 3, 5), set("b", 10, 12), set("c", 20, 20)];
        assert_eq!(
            choose_backup_set(&sets, None).unwrap().plan_id.as_deref(),
            Some("c")
        );
        assert_eq!(
            choose_backup_set(&sets, Some(4))
                .unwrap()
                .plan_id
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            choose_backup_set(&sets, Some(6))
                .unwrap()
                .plan_id
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            choose_backup_set(&sets, Some(1))
                .unwrap()
                .plan_id
                .as_deref(),
            Some("a")
        );
        assert!(choose_backup_set(&sets, Some(21)).is_none());
        assert!(choose_backup_set(&[], None).is_none());
    }
}
