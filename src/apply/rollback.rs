//! `rollback`: re-import the backups one apply took before it overwrote or deleted jobs.
//!
//! Backups are genuine DLI exports, kept as opaque bytes: the only zips dli-gitops ever imports.
//! Before anything is stopped, every backup of the set is checked to still be on OBS. A running
//! Flink job is then stopped with a savepoint, the savepoint is journaled at once (its own
//! `stop_savepoint` record, as an upgrade does), the backup zip is imported over the job
//! (`is_cover: true`), the savepoint is imported back and the job started again from it; a job
//! that was not running stays stopped. DLF backups are imported with `OVERWRITE`. Every job is
//! one journaled action (`rollback`) whose intent says whether the job was running; a rerun
//! after an interruption finds that intent still open and restarts, from the journaled stop
//! savepoint, a job the interrupted run had stopped. One failure does not stop the others.
//! Unless git is reverted too, the next apply converges the jobs back to git.

use serde::Serialize;
use serde_json::json;

use super::execute::{action_id, new_pass_id, start_settled, wait_for_job};
use super::ledger::{
    ActionEffects, BackupSet, DLF_KEY_PREFIX, IntentEntry, Ledger, OneShot, OutcomeEntry,
    PendingAction, RecordedFailure, record_one_shot,
};
use super::live::{LiveService, ServiceFailure};
use super::observe::{ObserveScope, observe_with};
use super::{ApplyError, ApplyOptions};
use crate::model::ObservedFlinkJob;
use crate::plan::JournalView;

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

/// The first line of a rollback's report (and of its preview): the target, and the plan and
/// journal range whose backups it imports.
pub fn rollback_heading(
    target: &str,
    plan_id: Option<&str>,
    first_seq: u64,
    last_seq: u64,
) -> String {
    format!(
        "Rollback of target `{target}` to the backups of plan {} (journal seq {first_seq}..={last_seq}):\n",
        plan_id.unwrap_or("(unknown)"),
    )
}

impl RollbackReport {
    pub fn render_text(&self) -> String {
        // Data from git or the service is escaped for the terminal (control, bidi).
        crate::terminal::escape(&self.render_text_unescaped()).into_owned()
    }

    fn render_text_unescaped(&self) -> String {
        let mut text = rollback_heading(
            &self.target,
            self.plan_id.as_deref(),
            self.first_seq,
            self.last_seq,
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

/// Chooses the backups of one apply: the set whose journal records span `to`; without `to`,
/// the latest set. A `to` that names no set chooses none (never another set silently).
pub fn choose_backup_set(sets: &[BackupSet], to: Option<u64>) -> Option<&BackupSet> {
    match to {
        None => sets.last(),
        Some(seq) => sets
            .iter()
            .find(|set| set.first_seq <= seq && seq <= set.last_seq),
    }
}

/// The backup sets as a person reads them: one line per apply, newest last, with its jobs.
pub fn render_backup_sets(target: &str, sets: &[BackupSet]) -> String {
    if sets.is_empty() {
        return format!(
            "Target `{target}` has no backups: backups are taken when an apply overwrites or deletes a live job.\n"
        );
    }
    let mut text = format!(
        "Backups of target `{target}` (roll back to one with `--to SEQ`, any seq of its range):\n"
    );
    for set in sets {
        text.push_str(&format!(
            "  seq {}..={}  plan {}\n",
            set.first_seq,
            set.last_seq,
            set.plan_id
                .as_deref()
                .map(|id| &id[..id.len().min(12)])
                .unwrap_or("(unknown)")
        ));
        for (job, zips) in &set.jobs {
            text.push_str(&format!("      {job}: {}\n", zips.join(", ")));
        }
    }
    text
}

/// The set `rollback` would re-import, or why there is none (with the list of those there are).
pub fn backup_set_for<J: Ledger>(ledger: &J, to: Option<u64>) -> Result<BackupSet, ApplyError> {
    let sets = ledger.backup_sets();
    choose_backup_set(&sets, to)
        .cloned()
        .ok_or_else(|| ApplyError::Rollback {
            target: ledger.target().to_string(),
            problem: match to {
                Some(seq) if !sets.is_empty() => format!(
                    "no apply's backups span journal seq {seq}; choose one of these:\n{}",
                    render_backup_sets(ledger.target(), &sets).trim_end()
                ),
                Some(seq) => format!(
                    "no apply's backups span journal seq {seq}: the journal holds no backups for this target"
                ),
                None => "the journal holds no backups for this target; backups are taken when an apply overwrites or deletes a live job".to_string(),
            },
        })
}

pub(crate) async fn rollback_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    to: Option<u64>,
    options: &ApplyOptions,
) -> Result<RollbackReport, ApplyError> {
    let set = backup_set_for(ledger, to)?;
    let scope = ObserveScope {
        dlf: set
            .jobs
            .iter()
            .any(|(job, _)| job.starts_with(DLF_KEY_PREFIX)),
        refresh: set.jobs.iter().map(|(job, _)| job.clone()).collect(),
    };
    check_backups_exist(live, ledger, &set).await?;
    let (observed, _) = observe_with(live, ledger, &scope).await?;
    let view = ledger.view();
    // Rollback intents a crash left open: the job they stopped must run again.
    let interrupted: Vec<_> = ledger
        .pending()
        .into_iter()
        .filter(|pending| pending.action == "rollback")
        .collect();
    let plan_id = set
        .plan_id
        .clone()
        .unwrap_or_else(|| "rollback".to_string());
    let mut jobs = Vec::new();
    let pass_id = new_pass_id();
    for (index, (job, zips)) in set.jobs.iter().enumerate() {
        let action_id = action_id(&plan_id, &pass_id, index);
        let earlier: Vec<_> = interrupted.iter().filter(|p| &p.job == job).collect();
        let current = observed.flink.iter().find(|live_job| &live_job.name == job);
        // A scheduled DLF job takes no import until its schedule is stopped (as for Flink's
        // `was_running`, a schedule this rollback or an interrupted one stopped starts again).
        let dlf_scheduled = job.strip_prefix(DLF_KEY_PREFIX).is_some_and(|name| {
            observed
                .dlf
                .iter()
                .any(|live_job| live_job.name == name && live_job.is_scheduled())
        });
        let resume = FlinkRollbackStart::of(current, dlf_scheduled, &earlier, &view, job);
        ledger
            .intent(IntentEntry {
                action_id: action_id.clone(),
                job: job.clone(),
                action: "rollback".to_string(),
                plan_id: set.plan_id.clone(),
                detail: json!({"zips": zips, "was_running": resume.was_running}),
            })
            .await?;
        take_over_interrupted(ledger, &earlier, job, &action_id).await?;
        let result = match job.strip_prefix(DLF_KEY_PREFIX) {
            Some(name) => {
                rollback_dlf(live, name, dlf_scheduled, resume.was_running, zips, options)
                    .await
                    .map_err(RollbackFailure::Service)
            }
            None => {
                let journal = RollbackJournal {
                    ledger,
                    action_id: &action_id,
                    plan_id: set.plan_id.as_deref(),
                    job,
                };
                rollback_flink(live, &journal, current, &resume, zips, options).await
            }
        };
        let (ok, error, effects) = match result {
            Ok(effects) => (true, None, effects),
            Err(RollbackFailure::Service(failure)) => (
                false,
                Some(RecordedFailure {
                    code: failure.code.clone(),
                    message: failure.message.clone(),
                    request_id: failure.request_id.clone(),
                }),
                ActionEffects::default(),
            ),
            Err(RollbackFailure::Journal(error)) => return Err(error),
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
/// Every precondition first: nothing is stopped unless every backup of the set is still
/// where the journal says.
async fn check_backups_exist<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    set: &BackupSet,
) -> Result<(), ApplyError> {
    let mut missing = Vec::new();
    for (_, zips) in &set.jobs {
        for zip in zips {
            match live.backup_exists(zip).await {
                Ok(true) => {}
                Ok(false) => missing.push(format!("{zip} (not found)")),
                Err(failure) => missing.push(format!("{zip} ({failure})")),
            }
        }
    }
    if !missing.is_empty() {
        return Err(ApplyError::Rollback {
            target: ledger.target().to_string(),
            problem: format!(
                "the backups of this set are not all on OBS any more, so nothing was stopped or imported: {}; choose another set with `--to SEQ` (see `dli-gitops journal show`)",
                missing.join(", ")
            ),
        });
    }
    Ok(())
}

/// Closes the rollback intents a crash left open for `job`: rollback action `action_id`
/// takes them over.
async fn take_over_interrupted<J: Ledger>(
    ledger: &J,
    earlier: &[&PendingAction],
    job: &str,
    action_id: &str,
) -> Result<(), ApplyError> {
    for pending in earlier {
        ledger
            .outcome(OutcomeEntry {
                action_id: pending.action_id.clone(),
                job: job.to_string(),
                ok: false,
                error: Some(RecordedFailure {
                    code: Some("INTERRUPTED".to_string()),
                    message: format!(
                        "the rollback was interrupted; rollback action {action_id} takes it over"
                    ),
                    request_id: None,
                }),
                effects: ActionEffects::default(),
                plan_id: pending.plan_id.clone(),
            })
            .await?;
    }
    Ok(())
}

/// What a Flink job's rollback must restore besides the definition.
struct FlinkRollbackStart {
    /// The job ran before the rollback (or before an interrupted rollback stopped it).
    was_running: bool,
    /// The stop savepoint an interrupted rollback journaled, for a job it left stopped.
    journaled_savepoint: Option<String>,
}

impl FlinkRollbackStart {
    /// How `job` starts again after its rollback: it runs now (or its DLF schedule does), or
    /// an interrupted rollback (`earlier`) stopped it; and which savepoint it resumes from.
    fn of(
        current: Option<&ObservedFlinkJob>,
        dlf_scheduled: bool,
        earlier: &[&PendingAction],
        view: &JournalView,
        job: &str,
    ) -> FlinkRollbackStart {
        FlinkRollbackStart {
            was_running: current.is_some_and(|live_job| live_job.status.is_running())
                || dlf_scheduled
                || earlier
                    .iter()
                    .any(|p| p.detail["was_running"].as_bool() == Some(true)),
            // The savepoint a stopped job holds is the newest: the interrupted run's stop took
            // it (and may have died before journaling it), or its savepoint import put it
            // back. Only a job the import detached falls back to the journaled stop savepoint.
            journaled_savepoint: current
                .filter(|live_job| live_job.status.is_stopped())
                .and_then(|live_job| live_job.savepoint_path.clone())
                .or_else(|| {
                    view.flink
                        .get(job)
                        .and_then(|entry| entry.last_savepoint.clone())
                })
                .filter(|_| !earlier.is_empty()),
        }
    }
}

/// Where a rollback journals the savepoint it took at stop.
struct RollbackJournal<'a, J> {
    ledger: &'a J,
    action_id: &'a str,
    plan_id: Option<&'a str>,
    job: &'a str,
}

impl<J: Ledger> RollbackJournal<'_, J> {
    /// Makes the stop savepoint durable before the backup is imported over the job (the import
    /// detaches the job from it): its own intent/outcome pair, so a crash after the import still
    /// finds it in the journal.
    async fn stop_savepoint(&self, live_id: i64, path: &str) -> Result<(), ApplyError> {
        record_one_shot(
            self.ledger,
            OneShot {
                part_of: self.action_id,
                job: self.job,
                part: "stop_savepoint",
                plan_id: self.plan_id,
                live_id: Some(live_id),
                effects: ActionEffects {
                    savepoint_path: Some(path.to_string()),
                    ..ActionEffects::default()
                },
            },
        )
        .await
    }
}

async fn rollback_flink<L: LiveService, J: Ledger>(
    live: &L,
    journal: &RollbackJournal<'_, J>,
    current: Option<&ObservedFlinkJob>,
    start: &FlinkRollbackStart,
    zips: &[String],
    options: &ApplyOptions,
) -> Result<ActionEffects, RollbackFailure> {
    let running_now = current.is_some_and(|job| job.status.is_running());
    let mut savepoint = None;
    if let Some(job) = current.filter(|_| running_now) {
        savepoint = Some(stop_for_rollback(live, journal, job, options).await?);
    } else if let Some(job) = current.filter(|job| job.status.is_transitional()) {
        return Err(ServiceFailure::local(format!(
            "job {} is {}; roll back once it has settled",
            job.id, job.status
        ))
        .into());
    } else if start.was_running {
        // An interrupted rollback stopped this job; resume from the savepoint it took. Journaled
        // again before the import detaches the job from it: the interrupted run may have died
        // before journaling it, and this one may die too.
        savepoint = start.journaled_savepoint.clone();
        if let (Some(path), Some(job)) = (&savepoint, current) {
            journal.stop_savepoint(job.id, path).await?;
        }
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
    if start.was_running {
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
            ))
            .into());
        }
    }
    Ok(ActionEffects {
        live_id: Some(job_id),
        savepoint_path: savepoint,
        managed: Some(true),
        ..ActionEffects::default()
    })
}

/// Stops a running job with a savepoint before its backup is imported, and journals the
/// savepoint (the catalog's copy of it when it could be copied) that the job resumes from.
async fn stop_for_rollback<L: LiveService, J: Ledger>(
    live: &L,
    journal: &RollbackJournal<'_, J>,
    job: &ObservedFlinkJob,
    options: &ApplyOptions,
) -> Result<String, RollbackFailure> {
    live.stop_flink_job(job.id, true).await?;
    let stopped = wait_for_job(
        live,
        job.id,
        options.transition_timeout + options.savepoint_timeout,
        options.poll_interval,
        |job| job.status.is_stopped(),
    )
    .await?;
    let mut savepoint = stopped.savepoint_path;
    // The service deletes its stop savepoint when the job restarts: copied into the
    // catalog first, and the copy is what the journal keeps and the job resumes from.
    if let Some(path) = savepoint.clone() {
        let kept = super::execute::keep_savepoint(
            live,
            journal.ledger,
            super::execute::KeptSavepoint {
                action_id: journal.action_id,
                job: journal.job,
                name: journal.job,
                live_id: Some(job.id),
                source: &path,
                origin: crate::savepoints::Origin::Stop,
            },
        )
        .await?;
        match kept {
            Ok((copy, _)) => savepoint = Some(copy),
            Err(error) => tracing::warn!(
                job = journal.job,
                savepoint = %path,
                error = %error.message,
                "The rollback's stop savepoint could not be copied into the catalog; the job resumes from the service's own, which the service deletes at this restart."
            ),
        }
    }
    match savepoint {
        Some(path) => {
            journal.stop_savepoint(job.id, &path).await?;
            Ok(path)
        }
        None => {
            Err(ServiceFailure::local(format!(
                "job {} stopped ({}) but reports no savepoint; the backup is not imported over it so that its state is not lost",
                job.id, stopped.status
            ))
            .into())
        }
    }
}

/// A Flink rollback step failed on the service, or its savepoint could not be journaled (which
/// ends the whole rollback: nothing may run unannounced).
enum RollbackFailure {
    Service(ServiceFailure),
    Journal(ApplyError),
}

impl From<ServiceFailure> for RollbackFailure {
    fn from(failure: ServiceFailure) -> RollbackFailure {
        RollbackFailure::Service(failure)
    }
}

impl From<ApplyError> for RollbackFailure {
    fn from(error: ApplyError) -> RollbackFailure {
        RollbackFailure::Journal(error)
    }
}

/// Re-imports a DLF job's backups: its schedule stopped first when it is scheduled (DataArts
/// imports only over a stopped job, user manual dataartsstudio_01_0438), started again after
/// when it was scheduled before this rollback (or an interrupted one) began.
async fn rollback_dlf<L: LiveService>(
    live: &L,
    name: &str,
    scheduled: bool,
    was_scheduled: bool,
    paths: &[String],
    options: &ApplyOptions,
) -> Result<ActionEffects, ServiceFailure> {
    if scheduled {
        live.stop_dlf_schedule(name).await?;
    }
    for path in paths {
        let task_id = live.import_dlf_path(path).await?;
        live.wait_dlf_task(&task_id, options.import_task_timeout)
            .await?;
    }
    if was_scheduled {
        live.start_dlf_schedule(name).await?;
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
            choose_backup_set(&sets, Some(11))
                .unwrap()
                .plan_id
                .as_deref(),
            Some("b")
        );
        // A seq between or outside the sets names none: never another set silently.
        assert!(choose_backup_set(&sets, Some(6)).is_none());
        assert!(choose_backup_set(&sets, Some(1)).is_none());
        assert!(choose_backup_set(&sets, Some(21)).is_none());
        let listed = render_backup_sets("dev", &sets);
        assert!(listed.contains("seq 10..=12  plan b"), "{listed}");
        assert!(listed.contains("job: bucket/b.zip"), "{listed}");
        assert!(choose_backup_set(&[], None).is_none());
    }
}
