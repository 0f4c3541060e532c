//! Starting without history: the journal knows none of a target's jobs (it was lost or
//! deleted, or the target was renamed), yet jobs of this installation (the managed-by tag) are
//! live. They are adopted like any live job; what must not happen is a one-shot step running a
//! second time. A `restore` in git applies once per key, and the journal is what remembers that
//! it ran: without it the planner would import the restore savepoint again over a running job
//! and throw away everything the job built since. So each such live job's `restore` is
//! journaled as already applied (an outcome with a note), before the first executing pass.

use chrono::Utc;

use crate::journal::{Effects, Journal, JournalError, Outcome, RecordBody};
use crate::model::{DesiredJobs, ObservedJobs, Ownership};

/// When the journal knows none of `target`'s jobs: journals every live Flink job of `target`
/// that carries this installation's managed-by tag (`instance`) as adopted, and its `restore` (if git has one) as applied. Returns the jobs whose
/// restore it marked.
pub async fn adopt_without_history(
    journal: &Journal,
    target: &str,
    instance: &str,
    desired: &DesiredJobs,
    observed: &ObservedJobs,
) -> Result<Vec<String>, JournalError> {
    if journal.state().knows_jobs_of(target) {
        return Ok(Vec::new());
    }
    let mut marked = Vec::new();
    // Every live managed job is recorded as adopted (so the journal has history from now on and
    // a later restart does not decide this again); its restore, if git has one, as applied.
    for live in observed
        .flink
        .iter()
        .filter(|job| job.ownership(instance) == Ownership::Ours)
    {
        let restore = desired
            .flink
            .iter()
            .find(|job| job.name == live.name)
            .and_then(|job| job.lifecycle.restore.as_ref());
        let note = match restore {
            Some(_) => {
                "adopted: the journal had no history of this target while the job was live with \
                 the managed-by tag; its restore may have run before, so it is not replayed"
            }
            None => {
                "adopted: the journal had no history of this target while the job was live with \
                 the managed-by tag"
            }
        };
        let record = RecordBody::Outcome(Outcome {
            action_id: format!(
                "adopted-without-history-{}-{}",
                live.name,
                Utc::now().timestamp_millis()
            ),
            job: live.name.clone(),
            ok: true,
            error: None,
            effects: Effects {
                live_id: Some(live.id.to_string()),
                managed: Some(true),
                restore_key: restore.map(|restore| restore.key()),
                ..Effects::default()
            },
            plan_id: None,
            extra: [(
                "note".to_string(),
                serde_json::Value::String(note.to_string()),
            )]
            .into_iter()
            .collect(),
        });
        journal.append_async(target, record).await?;
        if restore.is_some() {
            marked.push(live.name.clone());
        }
    }
    let managed = observed
        .flink
        .iter()
        .filter(|job| job.ownership(instance) == Ownership::Ours)
        .count();
    if managed > 0 {
        tracing::warn!(
            target_name = target,
            live_managed_jobs = managed,
            restores_not_replayed = %marked.join(", "),
            "The journal has no history of this target, but jobs with the managed-by tag are live (journal lost or deleted, or the target renamed): they are adopted, and a `restore` in git for any of them is recorded as done instead of being replayed."
        );
    }
    Ok(marked)
}

/// Warns about targets the journal holds records of but the config does not name (renamed or
/// removed). A renamed target starts without the history of its old name: which jobs it
/// manages, which restores already ran, the savepoints its stops took.
pub fn warn_about_unknown_targets(
    config: &crate::config::Config,
    state: &crate::journal::JournalState,
) {
    let configured: Vec<&str> = config
        .targets
        .iter()
        .map(|target| target.name.as_str())
        .collect();
    let unknown = state.targets_not_in(&configured);
    for target in &unknown {
        tracing::warn!(
            journal_target = %target.name,
            jobs = target.jobs,
            pending_intents = target.pending_intents,
            applied_restores = target.applied_restores,
            configured = %configured.join(", "),
            "The journal holds records of a target the config does not name (renamed or removed?). Its history does not follow a rename: under a new name, jobs it already runs are adopted, and a job whose `restore` already ran there could be restored again, discarding the state it built since. If the target was renamed, remove the `restore` from those jobs in git before the new name applies, or rename the target back."
        );
    }
    if !unknown.is_empty() {
        for target in config
            .targets
            .iter()
            .filter(|target| !state.knows_jobs_of(&target.name))
        {
            tracing::warn!(
                target_name = %target.name,
                "This target has no history in the journal while the journal holds targets the config does not name: if it is one of them renamed, see the warning above."
            );
        }
    }
}
