//! Coalescing triggers: any number of reasons to reconcile a target, fired while it is busy or
//! idle, become exactly one next pass that knows all the reasons.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::TriggerKind;

/// The pending reasons to reconcile one target.
#[derive(Debug, Default)]
pub struct Trigger {
    pending: Mutex<BTreeSet<TriggerKind>>,
    notify: Notify,
}

impl Trigger {
    pub fn new() -> Trigger {
        Trigger::default()
    }

    /// Asks for a pass. Never blocks; repeated fires before the pass starts merge into one.
    pub fn fire(&self, kind: TriggerKind) {
        self.lock().insert(kind);
        // `notify_one` stores a permit when nobody waits, so a fire during a pass is not lost.
        self.notify.notify_one();
    }

    /// Waits until at least one reason is pending and takes them all.
    pub async fn wait(&self) -> BTreeSet<TriggerKind> {
        loop {
            let taken = self.take();
            if !taken.is_empty() {
                return taken;
            }
            self.notify.notified().await;
        }
    }

    /// Takes whatever is pending now (possibly nothing).
    pub fn take(&self) -> BTreeSet<TriggerKind> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<TriggerKind>> {
        // The set stays consistent even if a holder panicked: inserts and takes are atomic.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn fires_while_busy_coalesce_into_one_pass_with_every_reason() {
        let trigger = Arc::new(Trigger::new());
        trigger.fire(TriggerKind::Revision);
        trigger.fire(TriggerKind::Webhook);
        trigger.fire(TriggerKind::Revision);
        let first = trigger.wait().await;
        assert_eq!(
            first.into_iter().collect::<Vec<_>>(),
            vec![TriggerKind::Revision, TriggerKind::Webhook]
        );
        // Nothing pending: waiting must block until the next fire.
        let waited = tokio::time::timeout(Duration::from_millis(50), trigger.wait()).await;
        assert!(waited.is_err(), "a pass with no reason was started");

        let waiter = {
            let trigger = trigger.clone();
            tokio::spawn(async move { trigger.wait().await })
        };
        tokio::task::yield_now().await;
        trigger.fire(TriggerKind::Manual);
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .expect("the waiter did not panic");
        assert_eq!(
            second.into_iter().collect::<Vec<_>>(),
            vec![TriggerKind::Manual]
        );
    }

    #[tokio::test]
    async fn a_take_after_the_permit_was_stored_does_not_start_an_empty_pass() {
        let trigger = Trigger::new();
        trigger.fire(TriggerKind::Resync);
        assert_eq!(trigger.take().len(), 1);
        // The permit from that fire is still stored; wait must not return an empty set.
        let waited = tokio::time::timeout(Duration::from_millis(50), trigger.wait()).await;
        assert!(waited.is_err());
    }
}
