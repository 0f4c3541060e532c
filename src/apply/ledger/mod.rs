//! The journal as the executor sees it: announce an action, record how it ended, cache
//! observations, and read back what the planner needs (`JournalView`). Backed by
//! [`crate::journal::Journal`] for one target.

pub(crate) mod journal;

use serde::{Deserialize, Serialize};

use crate::apply::ApplyError;
use crate::model::JobKind;
use crate::plan::JournalView;

/// The journal key of a job: Flink jobs by name, DLF jobs by `dlf:<name>` (the two kinds are
/// separate namespaces on the service; the journal has one).
pub fn journal_key(kind: JobKind, name: &str) -> String {
    match kind {
        JobKind::Dlf => format!("{DLF_KEY_PREFIX}{name}"),
        JobKind::FlinkSql | JobKind::FlinkJar => name.to_string(),
    }
}

/// Prefix of DLF jobs' journal keys.
pub const DLF_KEY_PREFIX: &str = "dlf:";

/// An action about to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentEntry {
    pub action_id: String,
    /// [`journal_key`].
    pub job: String,
    /// The action class (`create`, `upgrade`, ...), or `rollback`, `adopt`, `resolve`.
    pub action: String,
    pub plan_id: Option<String>,
    /// What a later pass needs to resolve the intent after a crash: kind, live id, steps.
    pub detail: serde_json::Value,
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutcomeEntry {
    pub action_id: String,
    pub job: String,
    pub ok: bool,
    pub error: Option<RecordedFailure>,
    pub effects: ActionEffects,
    pub plan_id: Option<String>,
}

/// A failure as the service reported it (already free of secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFailure {
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

/// What an action changed, for the journal's memory of the job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionEffects {
    pub live_id: Option<i64>,
    /// The savepoint captured at stop or imported.
    pub savepoint_path: Option<String>,
    pub backup_zips: Vec<String>,
    /// The desired digest now live (DLF: the definition imported).
    pub spec_digest: Option<String>,
    pub restore_key: Option<String>,
    pub deleted: bool,
    pub managed: Option<bool>,
    /// The applied definition said `prune: false`.
    pub protected: Option<bool>,
    /// What the service reported as warnings while the action succeeded (a DLF import task
    /// that ended `WARNING`); journaled with the outcome as `effects.warnings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Automatic rollback's memory of the job, replaced whole (`{}` forgets it); see
    /// `auto_rollback::Memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<serde_json::Value>,
}

/// The last observation of a job, as cached in the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedObservation {
    pub live_id: Option<i64>,
    pub update_time: Option<i64>,
    pub status: Option<String>,
    /// The normalised detail (an `ObservedFlinkJob`, or a DLF definition).
    pub snapshot: serde_json::Value,
}

/// A fresh observation worth recording (its `update_time` or status changed).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationEntry {
    pub job: String,
    pub live_id: Option<i64>,
    pub update_time: Option<i64>,
    pub status: Option<String>,
    pub snapshot: serde_json::Value,
}

/// An intent without an outcome, found when a pass starts.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAction {
    pub action_id: String,
    pub job: String,
    pub action: String,
    pub plan_id: Option<String>,
    pub detail: serde_json::Value,
    pub seq: u64,
}

/// Backups one apply took, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupSet {
    pub plan_id: Option<String>,
    pub first_seq: u64,
    pub last_seq: u64,
    /// (journal key, zip paths), in the order they were taken.
    pub jobs: Vec<(String, Vec<String>)>,
}

/// The journal operations of one target.
#[allow(async_fn_in_trait)]
pub trait Ledger {
    /// The target's name (for messages).
    fn target(&self) -> &str;
    /// What the planner needs to know.
    fn view(&self) -> JournalView;
    /// The cached observation of a job, by [`journal_key`].
    fn cached(&self, job: &str) -> Option<CachedObservation>;
    /// The live id the journal last recorded for a job (from an outcome or an observation),
    /// by [`journal_key`].
    fn known_live_id(&self, job: &str) -> Option<i64>;
    /// The savepoint the journal of `target` last recorded for `job` (promotion restores).
    fn savepoint_in_target(&self, target: &str, job: &str) -> Option<String>;
    /// Intents of this target without an outcome, oldest first.
    fn pending(&self) -> Vec<PendingAction>;
    /// The backups taken per apply, oldest first.
    fn backup_sets(&self) -> Vec<BackupSet>;

    /// Appends and fsyncs an intent before the action starts.
    async fn intent(&self, entry: IntentEntry) -> Result<u64, ApplyError>;
    async fn outcome(&self, entry: OutcomeEntry) -> Result<u64, ApplyError>;
    async fn observed(&self, entry: ObservationEntry) -> Result<u64, ApplyError>;
    /// The revision the target last converged on (what a savepoint taken now belongs to).
    fn applied_revision(&self) -> Option<String> {
        None
    }
    /// Journals a savepoint catalog entry (a verified copy under our prefix); returns its seq,
    /// the catalog id.
    async fn savepoint(&self, entry: crate::journal::SavepointRecord) -> Result<u64, ApplyError>;
    /// The target converged on `revision`.
    async fn revision_applied(
        &self,
        revision: &str,
        plan_id: &str,
        summary: &str,
    ) -> Result<u64, ApplyError>;
    /// Drift on a job: journaled (`drift_detected`) when it differs from the drift last
    /// journaled for the job; `Ok(None)` when it was already. A ledger without a journal
    /// journals nothing.
    async fn drift_detected(&self, _entry: DriftEntry) -> Result<Option<u64>, ApplyError> {
        Ok(None)
    }
}

/// Drift a pass found on one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftEntry {
    /// [`journal_key`].
    pub job: String,
    pub fields: Vec<String>,
    /// `revert` or `report`.
    pub mode: String,
    pub plan_id: String,
}

/// What one step of an action achieved, journaled the moment it succeeded as its own
/// intent/outcome pair `<part_of>-<part>` (`detail.part_of` names the action, so a shutting-down
/// daemon still lets it through): a stop savepoint, a restore, a job found gone. A crash before
/// the action's own outcome then neither loses the effect nor repeats the step.
pub(crate) struct OneShot<'a> {
    /// The action this step belongs to (or, outside an action, a fresh id).
    pub part_of: &'a str,
    pub job: &'a str,
    /// `stop_savepoint`, `restore`, ...: the intent's `action`; the id's suffix with `-`.
    pub part: &'a str,
    pub plan_id: Option<&'a str>,
    pub live_id: Option<i64>,
    pub effects: ActionEffects,
}

pub(crate) async fn record_one_shot<J: Ledger>(
    ledger: &J,
    step: OneShot<'_>,
) -> Result<(), ApplyError> {
    let action_id = format!("{}-{}", step.part_of, step.part.replace('_', "-"));
    ledger
        .intent(IntentEntry {
            action_id: action_id.clone(),
            job: step.job.to_string(),
            action: step.part.to_string(),
            plan_id: step.plan_id.map(str::to_string),
            detail: serde_json::json!({ "live_id": step.live_id, "part_of": step.part_of }),
        })
        .await?;
    ledger
        .outcome(OutcomeEntry {
            action_id,
            job: step.job.to_string(),
            ok: true,
            error: None,
            effects: step.effects,
            plan_id: step.plan_id.map(str::to_string),
        })
        .await?;
    Ok(())
}
