//! [`Ledger`] over the append-only [`Journal`] for one target: the mapping between the
//! executor's entries and the journal's records, and the `JournalView` the planner reads.

use serde_json::Map;

use super::{
    ActionEffects, BackupSet, CachedObservation, DLF_KEY_PREFIX, DriftEntry, IntentEntry, Ledger,
    ObservationEntry, OutcomeEntry, PendingAction,
};
use crate::apply::ApplyError;
use crate::journal::{
    Effects, Intent, Journal, JournalError, Observed, Outcome, RecordBody, RecordedError,
    RevisionApplied,
};
use crate::plan::{JournalDlfJob, JournalFlinkJob, JournalView};

/// The journal of one target.
#[derive(Debug, Clone)]
pub struct JournalLedger {
    pub journal: Journal,
    pub target: String,
}

impl JournalLedger {
    pub fn new(journal: Journal, target: &str) -> JournalLedger {
        JournalLedger {
            journal,
            target: target.to_string(),
        }
    }

    async fn append(&self, what: &'static str, body: RecordBody) -> Result<u64, ApplyError> {
        self.journal
            .append_async(&self.target, body)
            .await
            .map_err(|source: JournalError| ApplyError::Journal {
                target: self.target.clone(),
                what,
                source: Box::new(source),
            })
    }
}

fn parse_id(text: &Option<String>) -> Option<i64> {
    text.as_deref().and_then(|id| id.trim().parse().ok())
}

fn effects_of(effects: &ActionEffects) -> Effects {
    Effects {
        live_id: effects.live_id.map(|id| id.to_string()),
        savepoint_path: effects.savepoint_path.clone(),
        backup_zips: effects.backup_zips.clone(),
        spec_digest: effects.spec_digest.clone(),
        restore_key: effects.restore_key.clone(),
        deleted: effects.deleted,
        managed: effects.managed,
        protected: effects.protected,
        auto_rollback: effects.auto_rollback.clone(),
        gc_deleted: Vec::new(),
        // The journal keeps payload fields it does not model; warnings ride there.
        extra: if effects.warnings.is_empty() {
            Map::new()
        } else {
            Map::from_iter([(
                "warnings".to_string(),
                serde_json::Value::from(effects.warnings.clone()),
            )])
        },
    }
}

impl Ledger for JournalLedger {
    fn target(&self) -> &str {
        &self.target
    }

    fn view(&self) -> JournalView {
        let state = self.journal.state_guard();
        let mut view = JournalView::default();
        let Some(target) = state.targets.get(&self.target) else {
            return view;
        };
        for entry in target
            .savepoints
            .iter()
            .filter(|entry| entry.record.verified)
        {
            view.savepoint_catalog
                .entry(entry.record.job.clone())
                .or_default()
                .push(crate::plan::CatalogSavepoint {
                    seq: entry.seq,
                    path: entry.record.path.clone(),
                    source_path: entry.record.source_path.clone(),
                });
        }
        for (key, job) in &target.jobs {
            match key.strip_prefix(DLF_KEY_PREFIX) {
                Some(name) => {
                    let cached = job.observed.as_ref().map(|observed| {
                        crate::apply::observe::DlfCacheEntry::from_snapshot(
                            observed.config.to_value(),
                        )
                    });
                    let cached = cached.unwrap_or_default();
                    view.dlf.insert(
                        name.to_string(),
                        JournalDlfJob {
                            managed: job.managed,
                            protected: job.protected,
                            imported_digest: job.spec_digest.clone(),
                            live_digest: cached.live_digest,
                            equivalent_digests: cached.equivalent_digests,
                            restart_schedule: cached.restart_schedule,
                        },
                    );
                }
                None => {
                    view.flink.insert(
                        key.clone(),
                        JournalFlinkJob {
                            managed: job.managed,
                            protected: job.protected,
                            applied_restore_key: job.restore_key.clone(),
                            last_savepoint: job.savepoint_path.clone(),
                            applied_digest: job.spec_digest.clone(),
                        },
                    );
                    if let Some(memory) = &job.auto_rollback {
                        view.auto_rollback.insert(key.clone(), memory.clone());
                    }
                }
            }
        }
        view
    }

    fn cached(&self, job: &str) -> Option<CachedObservation> {
        let state = self.journal.state_guard();
        let entry = state.job(&self.target, job)?;
        let observed = entry.observed.as_ref()?;
        Some(CachedObservation {
            live_id: parse_id(&entry.live_id),
            update_time: observed.update_time,
            status: observed.status.clone(),
            snapshot: observed.config.to_value(),
        })
    }

    fn known_live_id(&self, job: &str) -> Option<i64> {
        let state = self.journal.state_guard();
        parse_id(&state.job(&self.target, job)?.live_id)
    }

    fn savepoint_in_target(&self, target: &str, job: &str) -> Option<String> {
        let state = self.journal.state_guard();
        state.job(target, job)?.savepoint_path.clone()
    }

    fn pending(&self) -> Vec<PendingAction> {
        self.journal
            .pending_intents(&self.target)
            .into_iter()
            .map(|intent| PendingAction {
                action_id: intent.action_id,
                job: intent.job,
                action: intent.action,
                plan_id: intent.plan_id,
                detail: intent.detail,
                seq: intent.seq,
            })
            .collect()
    }

    fn backup_sets(&self) -> Vec<BackupSet> {
        let state = self.journal.state_guard();
        let Some(target) = state.targets.get(&self.target) else {
            return Vec::new();
        };
        // One set per apply: the plan id alone is not enough, since applying an equal plan
        // again (after a rollback, say) gives it the same id; the pass in the action id is.
        let mut sets: Vec<BackupSet> = Vec::new();
        let mut last_pass: Option<&str> = None;
        for entry in &target.backups {
            let pass = entry
                .action_id
                .as_deref()
                .and_then(crate::apply::execute::pass_of);
            let same_apply = pass == last_pass;
            last_pass = pass;
            match sets.last_mut() {
                Some(set) if set.plan_id == entry.plan_id && same_apply => {
                    set.last_seq = entry.seq;
                    set.jobs.push((entry.job.clone(), entry.zip_paths.clone()));
                }
                _ => sets.push(BackupSet {
                    plan_id: entry.plan_id.clone(),
                    first_seq: entry.seq,
                    last_seq: entry.seq,
                    jobs: vec![(entry.job.clone(), entry.zip_paths.clone())],
                }),
            }
        }
        sets
    }

    async fn intent(&self, entry: IntentEntry) -> Result<u64, ApplyError> {
        self.append(
            "appending an intent",
            RecordBody::Intent(Intent {
                action_id: entry.action_id,
                job: entry.job,
                action: entry.action,
                plan_id: entry.plan_id,
                detail: entry.detail,
                extra: Map::new(),
            }),
        )
        .await
    }

    async fn outcome(&self, entry: OutcomeEntry) -> Result<u64, ApplyError> {
        self.append(
            "appending an outcome",
            RecordBody::Outcome(Outcome {
                action_id: entry.action_id,
                job: entry.job,
                ok: entry.ok,
                error: entry.error.map(|error| RecordedError {
                    code: error.code,
                    message: error.message,
                    request_id: error.request_id,
                    extra: Map::new(),
                }),
                effects: effects_of(&entry.effects),
                plan_id: entry.plan_id,
                extra: Map::new(),
            }),
        )
        .await
    }

    async fn observed(&self, entry: ObservationEntry) -> Result<u64, ApplyError> {
        self.append(
            "appending an observation",
            RecordBody::Observed(Observed {
                job: entry.job,
                live_id: entry.live_id.map(|id| id.to_string()),
                update_time: entry.update_time,
                config: entry.snapshot,
                status: entry.status,
                managed: None,
                extra: Map::new(),
            }),
        )
        .await
    }

    fn applied_revision(&self) -> Option<String> {
        let state = self.journal.state_guard();
        let target = state.targets.get(&self.target)?;
        target
            .applied_revision
            .as_ref()
            .map(|applied| applied.revision.clone())
    }

    async fn savepoint(&self, entry: crate::journal::SavepointRecord) -> Result<u64, ApplyError> {
        self.append("appending a savepoint", RecordBody::Savepoint(entry))
            .await
    }

    async fn revision_applied(
        &self,
        revision: &str,
        plan_id: &str,
        summary: &str,
    ) -> Result<u64, ApplyError> {
        self.append(
            "appending the applied revision",
            RecordBody::RevisionApplied(RevisionApplied {
                revision: revision.to_string(),
                plan_id: Some(plan_id.to_string()),
                summary: summary.to_string(),
                extra: Map::new(),
            }),
        )
        .await
    }

    async fn drift_detected(&self, entry: DriftEntry) -> Result<Option<u64>, ApplyError> {
        let known = {
            let state = self.journal.state_guard();
            state
                .job(&self.target, &entry.job)
                .and_then(|job| job.drift.as_ref())
                .is_some_and(|mark| mark.fields == entry.fields && mark.mode == entry.mode)
        };
        if known {
            return Ok(None);
        }
        self.append(
            "appending the drift found",
            RecordBody::DriftDetected(crate::journal::DriftDetected {
                job: entry.job,
                fields: entry.fields,
                mode: entry.mode,
                plan_id: Some(entry.plan_id),
                extra: Map::new(),
            }),
        )
        .await
        .map(Some)
    }
}
