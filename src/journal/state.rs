//! The journal's reduced state: a pure fold over records, shared by replay and live appends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use super::record::{Observed, Outcome, Record, RecordBody, RecordedError, SavepointRecord};

/// How many backups and promotions each target keeps in the state (older ones stay in the
/// archived journal segments). A constant, so the reducer stays a pure function of the records.
pub const HISTORY_LIMIT: usize = 256;

/// How many savepoint catalog entries each target keeps in the state (oldest dropped first).
/// Larger than [`HISTORY_LIMIT`]: retention needs to see every copy it may delete.
pub const SAVEPOINT_CATALOG_LIMIT: usize = 4096;

/// Everything the journal knows, compacted. `snapshot.json` is this value serialised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalState {
    /// The last record folded in (0 when none).
    pub last_seq: u64,
    pub targets: BTreeMap<String, TargetState>,
}

/// One target's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<AppliedRevision>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobState>,
    /// Intents without an outcome yet, by action id.
    #[serde(default)]
    pub pending: BTreeMap<String, PendingIntent>,
    /// The latest backups, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub backups: Vec<BackupEntry>,
    /// The latest promotions into this target, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub promotions: Vec<PromotionEntry>,
    /// The savepoint catalog: copies under dli-gitops's prefix, oldest first, at most
    /// [`SAVEPOINT_CATALOG_LIMIT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub savepoints: Vec<SavepointEntry>,
}

/// A savepoint catalog entry: the record's fields with its seq (the catalog id) and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavepointEntry {
    pub seq: u64,
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub record: SavepointRecord,
}

/// A target the journal has records of but the config does not name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownTarget {
    pub name: String,
    /// Jobs the journal remembers for it.
    pub jobs: usize,
    /// Intents without an outcome.
    pub pending_intents: usize,
    /// Jobs whose `restore` was applied (a one-shot step that must not run again).
    pub applied_restores: usize,
}

/// The revision a target last converged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedRevision {
    pub revision: String,
    pub plan_id: Option<String>,
    pub summary: String,
    pub seq: u64,
    pub time: DateTime<Utc>,
}

/// What the journal remembers about one job in one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Digest of the desired spec last applied successfully.
    pub spec_digest: Option<String>,
    pub live_id: Option<String>,
    /// Created or adopted by dli-gitops (prune only touches these).
    pub managed: bool,
    /// The last applied definition said `prune: false`: never pruned.
    #[serde(default)]
    pub protected: bool,
    pub observed: Option<ObservedEntry>,
    /// The savepoint last captured or imported.
    pub savepoint_path: Option<String>,
    /// The `restore` key last applied, so a restore runs once per path/nonce.
    pub restore_key: Option<String>,
    pub last_outcome: Option<LastOutcome>,
    /// Automatic rollback's memory of the job (`apply::auto_rollback`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<Value>,
    /// The drift last journaled (`drift_detected`), until the job's next successful action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftMark>,
}

/// Drift journaled for a job: the fields and what the pass did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftMark {
    pub fields: Vec<String>,
    pub mode: String,
    pub seq: u64,
    pub time: DateTime<Utc>,
}

/// The cached observation of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedEntry {
    pub update_time: Option<i64>,
    pub status: Option<String>,
    /// The normalised detail, kept as its JSON text and parsed only when read
    /// ([`CompactJson::to_value`]): a few KiB per job instead of a tree of maps and strings.
    pub config: CompactJson,
    pub seq: u64,
    pub time: DateTime<Utc>,
}

/// A JSON value held as its compact text (what `serde_json` writes for the value), so that a
/// state with thousands of cached observations does not keep thousands of JSON trees. It
/// serialises as the value itself: `snapshot.json` reads and writes exactly as before.
#[derive(Clone)]
pub struct CompactJson(Box<RawValue>);

impl CompactJson {
    pub fn from_value(value: &Value) -> Self {
        // Serialising a `Value` cannot fail (its map keys are strings).
        Self(serde_json::value::to_raw_value(value).expect("a JSON value serialises"))
    }

    /// The value, parsed from the text.
    pub fn to_value(&self) -> Value {
        // The text was written by `serde_json` from a value, so it parses back.
        serde_json::from_str(self.0.get()).expect("compact JSON text parses")
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl From<&Value> for CompactJson {
    fn from(value: &Value) -> Self {
        Self::from_value(value)
    }
}

impl PartialEq for CompactJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for CompactJson {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Serialize for CompactJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CompactJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a `Value`, so the text is the canonical compact form whatever the input's
        // spacing or key order (and `from_value` deserialisers work too).
        Ok(Self::from_value(&Value::deserialize(deserializer)?))
    }
}

/// The last action that ended for a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastOutcome {
    pub action_id: String,
    /// The action class, taken from the matching intent (None when the intent was not seen).
    pub action: Option<String>,
    pub ok: bool,
    pub error: Option<RecordedError>,
    pub seq: u64,
    pub time: DateTime<Utc>,
}

/// An intent whose outcome has not been written: the applier must resolve it by observing
/// the live job before doing anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingIntent {
    pub action_id: String,
    pub job: String,
    pub action: String,
    pub plan_id: Option<String>,
    pub detail: Value,
    pub seq: u64,
    pub time: DateTime<Utc>,
}

/// Backup zips taken for a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub plan_id: Option<String>,
    /// The action that took the backup (from its outcome), which names the apply it ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    pub job: String,
    pub zip_paths: Vec<String>,
    pub seq: u64,
    pub time: DateTime<Utc>,
}

/// A promotion attempt into a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionEntry {
    pub from: String,
    pub revision: String,
    pub by: String,
    pub rule: String,
    pub ok: bool,
    pub message: Option<String>,
    pub seq: u64,
    pub time: DateTime<Utc>,
}

/// Folds an outcome in: its intent is answered, backups and collected savepoints are noted,
/// and the job takes the outcome's effects (or is forgotten once deleted).
fn apply_outcome(target: &mut TargetState, outcome: &Outcome, seq: u64, time: DateTime<Utc>) {
    let intent = target.pending.remove(&outcome.action_id);
    let effects = &outcome.effects;
    if !effects.backup_zips.is_empty() {
        push_bounded(
            &mut target.backups,
            BackupEntry {
                plan_id: outcome
                    .plan_id
                    .clone()
                    .or_else(|| intent.as_ref().and_then(|i| i.plan_id.clone())),
                action_id: Some(outcome.action_id.clone()),
                job: outcome.job.clone(),
                zip_paths: effects.backup_zips.clone(),
                seq,
                time,
            },
        );
    }
    if outcome.ok && !effects.gc_deleted.is_empty() {
        forget_collected(target, &effects.gc_deleted);
    }
    if effects.deleted && outcome.ok {
        target.jobs.remove(&outcome.job);
        return;
    }
    let job = target.jobs.entry(outcome.job.clone()).or_default();
    if let Some(live_id) = &effects.live_id {
        job.live_id = Some(live_id.clone());
    }
    if let Some(path) = &effects.savepoint_path {
        job.savepoint_path = Some(path.clone());
    }
    if let Some(digest) = &effects.spec_digest {
        job.spec_digest = Some(digest.clone());
    }
    if let Some(key) = &effects.restore_key {
        job.restore_key = Some(key.clone());
    }
    if let Some(managed) = effects.managed {
        job.managed = managed;
    }
    if let Some(protected) = effects.protected {
        job.protected = protected;
    }
    if outcome.ok && effects.spec_digest.is_some() {
        // The job is where git wants it again (reverted, or git changed).
        job.drift = None;
    }
    if let Some(memory) = &effects.auto_rollback {
        job.auto_rollback = memory
            .as_object()
            .is_some_and(|fields| !fields.is_empty())
            .then(|| memory.clone());
    }
    job.last_outcome = Some(LastOutcome {
        action_id: outcome.action_id.clone(),
        action: intent.map(|intent| intent.action),
        ok: outcome.ok,
        error: outcome.error.clone(),
        seq,
        time,
    });
}

/// Folds an observation in: the live id, whether the job is managed, and what was seen.
fn apply_observed(target: &mut TargetState, observed: &Observed, seq: u64, time: DateTime<Utc>) {
    let job = target.jobs.entry(observed.job.clone()).or_default();
    if let Some(live_id) = &observed.live_id {
        job.live_id = Some(live_id.clone());
    }
    if let Some(managed) = observed.managed {
        job.managed = managed;
    }
    job.observed = Some(ObservedEntry {
        update_time: observed.update_time,
        status: observed.status.clone(),
        config: CompactJson::from_value(&observed.config),
        seq,
        time,
    });
}

impl JournalState {
    /// Folds one record in. Records at or below `last_seq` are already included and are
    /// skipped (returns false), which makes replay over a snapshot idempotent.
    pub fn apply(&mut self, record: &Record) -> bool {
        if record.seq <= self.last_seq {
            return false;
        }
        self.last_seq = record.seq;
        let seq = record.seq;
        let time = record.time;
        if let RecordBody::Unknown(_) = record.body {
            return true;
        }
        let target = self.targets.entry(record.target.clone()).or_default();
        match &record.body {
            RecordBody::Intent(intent) => {
                target.pending.insert(
                    intent.action_id.clone(),
                    PendingIntent {
                        action_id: intent.action_id.clone(),
                        job: intent.job.clone(),
                        action: intent.action.clone(),
                        plan_id: intent.plan_id.clone(),
                        detail: intent.detail.clone(),
                        seq,
                        time,
                    },
                );
            }
            RecordBody::Outcome(outcome) => apply_outcome(target, outcome, seq, time),
            RecordBody::Observed(observed) => apply_observed(target, observed, seq, time),
            RecordBody::RevisionApplied(applied) => {
                target.applied_revision = Some(AppliedRevision {
                    revision: applied.revision.clone(),
                    plan_id: applied.plan_id.clone(),
                    summary: applied.summary.clone(),
                    seq,
                    time,
                });
            }
            RecordBody::Promotion(promotion) => push_bounded(
                &mut target.promotions,
                PromotionEntry {
                    from: promotion.from.clone(),
                    revision: promotion.revision.clone(),
                    by: promotion.by.clone(),
                    rule: promotion.rule.clone(),
                    ok: promotion.ok,
                    message: promotion.message.clone(),
                    seq,
                    time,
                },
            ),
            RecordBody::Backup(backup) => push_bounded(
                &mut target.backups,
                BackupEntry {
                    plan_id: backup.plan_id.clone(),
                    action_id: None,
                    job: backup.job.clone(),
                    zip_paths: backup.zip_paths.clone(),
                    seq,
                    time,
                },
            ),
            RecordBody::Savepoint(savepoint) => {
                target.savepoints.push(SavepointEntry {
                    seq,
                    time,
                    record: savepoint.clone(),
                });
                if target.savepoints.len() > SAVEPOINT_CATALOG_LIMIT {
                    let excess = target.savepoints.len() - SAVEPOINT_CATALOG_LIMIT;
                    target.savepoints.drain(..excess);
                }
            }
            RecordBody::DriftDetected(drift) => {
                let job = target.jobs.entry(drift.job.clone()).or_default();
                job.drift = Some(DriftMark {
                    fields: drift.fields.clone(),
                    mode: drift.mode.clone(),
                    seq,
                    time,
                });
            }
            RecordBody::Unknown(_) => {}
        }
        true
    }

    /// Intents in `target` that have no outcome, oldest first.
    pub fn pending_intents(&self, target: &str) -> Vec<PendingIntent> {
        let mut pending: Vec<PendingIntent> = self
            .targets
            .get(target)
            .map(|state| state.pending.values().cloned().collect())
            .unwrap_or_default();
        pending.sort_by_key(|intent| intent.seq);
        pending
    }

    /// Intents without an outcome across all targets.
    /// Targets the journal holds records of that are not in `configured`: a target renamed or
    /// removed from the config. Their history (managed jobs, applied restores, savepoints) does
    /// not follow a rename. Sorted by name.
    pub fn targets_not_in(&self, configured: &[&str]) -> Vec<UnknownTarget> {
        self.targets
            .iter()
            .filter(|(name, _)| !configured.contains(&name.as_str()))
            .map(|(name, target)| UnknownTarget {
                name: name.clone(),
                jobs: target.jobs.len(),
                pending_intents: target.pending.len(),
                applied_restores: target
                    .jobs
                    .values()
                    .filter(|job| job.restore_key.is_some())
                    .count(),
            })
            .collect()
    }

    /// The journal records an action on at least one job of `target` (an outcome, a managed
    /// mark, an applied spec or restore); observations alone do not count.
    pub fn knows_jobs_of(&self, target: &str) -> bool {
        self.targets.get(target).is_some_and(|state| {
            state.jobs.values().any(|job| {
                job.last_outcome.is_some()
                    || job.managed
                    || job.spec_digest.is_some()
                    || job.restore_key.is_some()
            })
        })
    }

    pub fn pending_intent_count(&self) -> usize {
        self.targets
            .values()
            .map(|target| target.pending.len())
            .sum()
    }

    /// One job's state.
    pub fn job(&self, target: &str, job: &str) -> Option<&JobState> {
        self.targets.get(target)?.jobs.get(job)
    }

    /// Whether an observation with this `update_time` is news, i.e. worth an `Observed` record.
    /// A steady state (same `update_time`) writes nothing.
    pub fn observation_changed(&self, target: &str, job: &str, update_time: Option<i64>) -> bool {
        match self.job(target, job).and_then(|job| job.observed.as_ref()) {
            Some(observed) => observed.update_time != update_time || update_time.is_none(),
            None => true,
        }
    }

    /// Backups taken under one plan id, oldest first.
    pub fn backups_for_plan(&self, target: &str, plan_id: &str) -> Vec<&BackupEntry> {
        self.targets
            .get(target)
            .map(|state| {
                state
                    .backups
                    .iter()
                    .filter(|entry| entry.plan_id.as_deref() == Some(plan_id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Garbage collection deleted `paths`: catalog entries and backup zips naming them go.
fn forget_collected(target: &mut TargetState, paths: &[String]) {
    let gone = |path: &str| {
        paths
            .iter()
            .any(|deleted| deleted.trim_end_matches('/') == path.trim_end_matches('/'))
    };
    target.savepoints.retain(|entry| !gone(&entry.record.path));
    for backup in &mut target.backups {
        backup.zip_paths.retain(|zip| !gone(zip));
    }
    target.backups.retain(|backup| !backup.zip_paths.is_empty());
}

fn push_bounded<T>(entries: &mut Vec<T>, entry: T) {
    entries.push(entry);
    if entries.len() > HISTORY_LIMIT {
        let excess = entries.len() - HISTORY_LIMIT;
        entries.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Effects, FORMAT_VERSION, Intent, Observed, Outcome};
    use serde_json::{Map, json};

    fn record(seq: u64, target: &str, body: RecordBody) -> Record {
        Record {
            v: FORMAT_VERSION,
            seq,
            time: DateTime::from_timestamp_millis(1_790_000_000_000 + seq as i64).unwrap(),
            target: target.into(),
            body,
        }
    }

    fn intent(action_id: &str, job: &str) -> RecordBody {
        RecordBody::Intent(Intent {
            action_id: action_id.into(),
            job: job.into(),
            action: "upgrade".into(),
            plan_id: Some("p1".into()),
            detail: json!({"savepoint_dir": "obs://b/sp"}),
            extra: Map::new(),
        })
    }

    fn outcome(action_id: &str, job: &str, effects: Effects) -> RecordBody {
        RecordBody::Outcome(Outcome {
            action_id: action_id.into(),
            job: job.into(),
            ok: true,
            error: None,
            effects,
            plan_id: None,
            extra: Map::new(),
        })
    }

    #[test]
    fn intent_is_pending_until_its_outcome() {
        let mut state = JournalState::default();
        assert!(state.apply(&record(1, "dev", intent("a1", "job-a"))));
        assert!(state.apply(&record(2, "dev", intent("a2", "job-b"))));
        let pending: Vec<String> = state
            .pending_intents("dev")
            .into_iter()
            .map(|intent| intent.action_id)
            .collect();
        assert_eq!(pending, ["a1", "a2"]);
        let effects = Effects {
            live_id: Some("101".into()),
            savepoint_path: Some("obs://b/sp/1".into()),
            backup_zips: vec!["obs://bk/a.zip".into()],
            spec_digest: Some("d1".into()),
            managed: Some(true),
            ..Effects::default()
        };
        state.apply(&record(3, "dev", outcome("a1", "job-a", effects)));
        assert_eq!(state.pending_intents("dev").len(), 1);
        let job = state.job("dev", "job-a").unwrap();
        assert_eq!(job.live_id.as_deref(), Some("101"));
        assert!(job.managed);
        assert_eq!(
            job.last_outcome.as_ref().unwrap().action.as_deref(),
            Some("upgrade")
        );
        assert_eq!(state.backups_for_plan("dev", "p1").len(), 1);
        assert!(state.pending_intents("prod").is_empty());
    }

    #[test]
    fn records_already_included_are_skipped() {
        let mut state = JournalState::default();
        state.apply(&record(5, "dev", intent("a1", "j")));
        let before = state.clone();
        assert!(!state.apply(&record(5, "dev", intent("a9", "j"))));
        assert!(!state.apply(&record(3, "dev", intent("a8", "j"))));
        assert_eq!(state, before);
    }

    #[test]
    fn deletion_forgets_the_job_and_observation_cache_detects_change() {
        let mut state = JournalState::default();
        let observed = RecordBody::Observed(Observed {
            job: "j".into(),
            live_id: Some("7".into()),
            update_time: Some(1000),
            config: json!({"cu_number": 2}),
            status: Some(crate::model::FlinkJobStatus::Running.to_string()),
            managed: Some(true),
            extra: Map::new(),
        });
        state.apply(&record(1, "dev", observed));
        assert!(!state.observation_changed("dev", "j", Some(1000)));
        assert!(state.observation_changed("dev", "j", Some(1001)));
        assert!(state.observation_changed("dev", "other", Some(1000)));
        let effects = Effects {
            deleted: true,
            ..Effects::default()
        };
        state.apply(&record(2, "dev", outcome("a", "j", effects)));
        assert!(state.job("dev", "j").is_none());
    }

    #[test]
    fn compact_observation_reads_and_writes_as_the_json_value() {
        let config = json!({
            "name": "clicks \"agg\" ✓",
            "cu_number": 4,
            "ratio": 0.1,
            "sql_body": "INSERT INTO sink\nSELECT * FROM source;",
            "runtime_config": {"z": "1", "a": null, "m": [1, 2.5, true]},
            "tags": {}
        });
        let compact = CompactJson::from_value(&config);
        assert_eq!(compact.to_value(), config);
        assert_eq!(
            serde_json::to_string(&compact).unwrap(),
            serde_json::to_string(&config).unwrap()
        );
        // Spacing and key order in the input do not matter: the text is the canonical form.
        let spaced: CompactJson =
            serde_json::from_str(&serde_json::to_string_pretty(&config).unwrap()).unwrap();
        assert_eq!(spaced, compact);
        let from_value: CompactJson = serde_json::from_value(config.clone()).unwrap();
        assert_eq!(from_value, compact);

        // A state with an observation writes the JSON the value tree wrote, and reads back.
        let mut state = JournalState::default();
        state.apply(&record(
            1,
            "dev",
            RecordBody::Observed(Observed {
                job: "j".into(),
                live_id: Some("7".into()),
                update_time: Some(1000),
                config: config.clone(),
                status: Some(crate::model::FlinkJobStatus::Running.to_string()),
                managed: Some(true),
                extra: Map::new(),
            }),
        ));
        let written = serde_json::to_value(&state).unwrap();
        assert_eq!(
            written["targets"]["dev"]["jobs"]["j"]["observed"]["config"],
            config
        );
        let text = serde_json::to_string(&state).unwrap();
        let read: JournalState = serde_json::from_str(&text).unwrap();
        assert_eq!(read, state);
        assert_eq!(serde_json::to_string(&read).unwrap(), text);
    }

    #[test]
    fn history_is_bounded() {
        let mut state = JournalState::default();
        for seq in 1..=(HISTORY_LIMIT as u64 + 10) {
            let body = RecordBody::Backup(crate::journal::record::Backup {
                plan_id: Some(format!("p{seq}")),
                job: "j".into(),
                zip_paths: vec![format!("obs://b/{seq}.zip")],
                extra: Map::new(),
            });
            state.apply(&record(seq, "dev", body));
        }
        let backups = &state.targets["dev"].backups;
        assert_eq!(backups.len(), HISTORY_LIMIT);
        assert_eq!(backups[0].seq, 11);
    }
}
