//! The ledger a pass executes through once it may be stopped: the daemon's passes and the
//! `apply` command's. Once the stop signal is triggered no new action is announced; an action
//! already under way finishes and writes its own records. Each action may also hold one of the
//! daemon-wide action slots ([`super::fairness`]) from its intent to its outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::Stop;
use super::fairness::{ActionSlot, ActionSlots};
use crate::apply::{
    ApplyError, BackupSet, CachedObservation, IntentEntry, Ledger, ObservationEntry, OutcomeEntry,
    PendingAction,
};
use crate::plan::JournalView;

/// The target's ledger, except that once shutdown begins no new action is announced (and so
/// none starts); outcomes and observations are still written, and so are the records an
/// action already under way writes for its own steps (the savepoint its stop took): refusing
/// those would end the action between its stop and its start and leave the job down.
/// Also what the `apply` command executes through, so that its first Ctrl-C finishes the action
/// in flight instead of cutting it short.
pub struct StoppingLedger<'a, J> {
    inner: &'a J,
    stop: &'a Stop,
    refused: AtomicBool,
    /// An intent was announced in this pass (observation and planning are done).
    announced: AtomicBool,
    /// Action ids announced in this pass: their steps' own records are never refused.
    started: Mutex<BTreeSet<String>>,
    on_first_intent: &'a (dyn Fn() + Send + Sync),
    /// The daemon-wide action slots; each action holds one from its intent to its outcome.
    slots: Option<Arc<ActionSlots>>,
    /// Slots held, by action id.
    held: Mutex<BTreeMap<String, ActionSlot>>,
}

impl<'a, J> StoppingLedger<'a, J> {
    /// `inner`, refusing new actions once `stop` is triggered.
    pub fn new(inner: &'a J, stop: &'a Stop) -> StoppingLedger<'a, J> {
        StoppingLedger {
            inner,
            stop,
            refused: AtomicBool::new(false),
            announced: AtomicBool::new(false),
            started: Mutex::new(BTreeSet::new()),
            on_first_intent: &|| {},
            slots: None,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    /// Runs `call` once, when this pass announces its first intent (the daemon marks the target
    /// as applying).
    pub fn on_first_intent(mut self, call: &'a (dyn Fn() + Send + Sync)) -> StoppingLedger<'a, J> {
        self.on_first_intent = call;
        self
    }

    /// Every action of this pass takes one of `slots` before its intent is journaled and
    /// gives it back with its outcome (or when the pass is dropped).
    pub fn sharing(mut self, slots: Option<Arc<ActionSlots>>) -> StoppingLedger<'a, J> {
        self.slots = slots;
        self
    }

    fn refuse(&self, entry: &IntentEntry) -> ApplyError {
        self.refused.store(true, Ordering::SeqCst);
        tracing::info!(job = %entry.job, action = %entry.action, "Not starting an action: the daemon is shutting down.");
        ApplyError::Runtime {
            problem: format!(
                "not starting {} of {}: shutting down (SIGTERM or SIGINT)",
                entry.action, entry.job
            ),
        }
    }

    /// An action was not started because `stop` had been triggered.
    pub fn refused_any(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }

    /// The intent belongs to an action this pass already started: it names it in
    /// `detail.part_of`, or its id extends the action's id (`<action id>-<step>`).
    fn is_part_of_started(&self, entry: &IntentEntry) -> bool {
        let started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let named = entry
            .detail
            .get("part_of")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|parent| started.contains(parent));
        named
            || started.iter().any(|parent| {
                entry
                    .action_id
                    .strip_prefix(parent.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
    }
}

impl<J: Ledger> Ledger for StoppingLedger<'_, J> {
    fn target(&self) -> &str {
        self.inner.target()
    }
    fn view(&self) -> JournalView {
        self.inner.view()
    }
    fn cached(&self, job: &str) -> Option<CachedObservation> {
        self.inner.cached(job)
    }
    fn known_live_id(&self, job: &str) -> Option<i64> {
        self.inner.known_live_id(job)
    }
    fn savepoint_in_target(&self, target: &str, job: &str) -> Option<String> {
        self.inner.savepoint_in_target(target, job)
    }
    fn pending(&self) -> Vec<PendingAction> {
        self.inner.pending()
    }
    fn backup_sets(&self) -> Vec<BackupSet> {
        self.inner.backup_sets()
    }
    async fn intent(&self, entry: IntentEntry) -> Result<u64, ApplyError> {
        let part_of_started = self.is_part_of_started(&entry);
        if self.stop.is_stopping() && !part_of_started {
            return Err(self.refuse(&entry));
        }
        // A new action waits for a daemon-wide slot; a step of one already started has one.
        let slot = match &self.slots {
            Some(slots) if !part_of_started => {
                let slot = tokio::select! {
                    slot = slots.acquire(self.inner.target()) => slot,
                    _ = self.stop.wait() => return Err(self.refuse(&entry)),
                };
                Some(slot)
            }
            _ => None,
        };
        if !self.announced.swap(true, Ordering::SeqCst) {
            (self.on_first_intent)();
        }
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(entry.action_id.clone());
        let action_id = entry.action_id.clone();
        if let Some(slot) = slot {
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(action_id.clone(), slot);
        }
        let written = self.inner.intent(entry).await;
        if written.is_err() {
            // Not announced, so it does not run: its slot goes back at once.
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&action_id);
        }
        written
    }
    async fn outcome(&self, entry: OutcomeEntry) -> Result<u64, ApplyError> {
        let action_id = entry.action_id.clone();
        let written = self.inner.outcome(entry).await;
        let slot = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&action_id);
        drop(slot);
        written
    }
    async fn observed(&self, entry: ObservationEntry) -> Result<u64, ApplyError> {
        self.inner.observed(entry).await
    }
    fn applied_revision(&self) -> Option<String> {
        self.inner.applied_revision()
    }
    // A savepoint copy belongs to an action already under way: never refused at shutdown.
    async fn savepoint(&self, entry: crate::journal::SavepointRecord) -> Result<u64, ApplyError> {
        self.inner.savepoint(entry).await
    }
    async fn revision_applied(
        &self,
        revision: &str,
        plan_id: &str,
        summary: &str,
    ) -> Result<u64, ApplyError> {
        self.inner
            .revision_applied(revision, plan_id, summary)
            .await
    }

    async fn drift_detected(
        &self,
        entry: crate::apply::DriftEntry,
    ) -> Result<Option<u64>, ApplyError> {
        self.inner.drift_detected(entry).await
    }
}
