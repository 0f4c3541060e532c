//! The daemon-wide cap on concurrent actions (`max_concurrent_actions`), shared fairly between
//! targets.
//!
//! Every action of every target takes a slot before its intent is journaled and gives it back
//! when its outcome is written (or when its pass is dropped: a pass past its target's
//! `sync_timeout` deadline, shutdown). While slots are free, anyone gets one. When they are
//! all taken, a freed slot goes to the waiting target that holds the fewest slots (max-min
//! fairness), the earliest waiter among equals. So a target with a long queue of actions — or
//! a slow account whose actions hold their slots for long — never holds more than its share
//! while others wait: a target with one action waits at most for the next slot to free, not
//! for another target's queue to drain. Each target's own `parallel_actions` still bounds it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// The slots. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct ActionSlots {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    /// Slots held (granted, not yet released) per target.
    held: BTreeMap<String, usize>,
    /// Waiters by arrival ticket.
    waiting: BTreeMap<u64, Waiter>,
    next_ticket: u64,
    /// Slots granted in total, per target (for tests and metrics).
    granted: BTreeMap<String, u64>,
    /// The most slots ever in use at once.
    peak: usize,
}

#[derive(Debug)]
struct Waiter {
    target: String,
    wake: oneshot::Sender<()>,
}

/// A held slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct ActionSlot {
    slots: Arc<ActionSlots>,
    target: String,
}

impl Drop for ActionSlot {
    fn drop(&mut self) {
        self.slots.release(&self.target);
    }
}

/// Counters for status and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStats {
    pub capacity: usize,
    pub in_use: usize,
    pub waiting: usize,
    pub peak: usize,
    pub granted: BTreeMap<String, u64>,
}

impl ActionSlots {
    pub fn new(capacity: usize) -> Arc<ActionSlots> {
        Arc::new(ActionSlots {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> SlotStats {
        let state = self.lock();
        SlotStats {
            capacity: self.capacity,
            in_use: state.in_use,
            waiting: state.waiting.len(),
            peak: state.peak,
            granted: state.granted.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot for one action of `target`. Cancel-safe: dropping the future before it
    /// resolves leaves no slot taken.
    pub async fn acquire(self: &Arc<Self>, target: &str) -> ActionSlot {
        loop {
            let (ticket, receiver) = {
                let mut state = self.lock();
                if state.in_use < self.capacity && state.waiting.is_empty() {
                    grant(&mut state, target);
                    return ActionSlot {
                        slots: self.clone(),
                        target: target.to_string(),
                    };
                }
                let (wake, receiver) = oneshot::channel();
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                state.waiting.insert(
                    ticket,
                    Waiter {
                        target: target.to_string(),
                        wake,
                    },
                );
                // Slots may be free while others wait (a waiter whose pass was dropped): hand
                // them out now.
                self.dispatch(&mut state);
                (ticket, receiver)
            };
            let mut guard = WaitGuard {
                slots: self,
                ticket,
                target,
                done: false,
            };
            // The sender stays in the waiting list until it is used, so the channel closes
            // without a message only if the list itself went away; ask again then.
            let granted = receiver.await.is_ok();
            guard.done = true;
            if granted {
                return ActionSlot {
                    slots: self.clone(),
                    target: target.to_string(),
                };
            }
            self.lock().waiting.remove(&ticket);
        }
    }

    fn release(&self, target: &str) {
        let mut state = self.lock();
        state.in_use = state.in_use.saturating_sub(1);
        if let Some(count) = state.held.get_mut(target) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.held.remove(target);
            }
        }
        self.dispatch(&mut state);
    }

    /// Grants free slots to waiters, fewest held first, then by arrival.
    fn dispatch(&self, state: &mut State) {
        while state.in_use < self.capacity && !state.waiting.is_empty() {
            let Some(ticket) = state
                .waiting
                .iter()
                .min_by_key(|(ticket, waiter)| {
                    (
                        state.held.get(&waiter.target).copied().unwrap_or(0),
                        **ticket,
                    )
                })
                .map(|(ticket, _)| *ticket)
            else {
                break;
            };
            let Some(waiter) = state.waiting.remove(&ticket) else {
                break;
            };
            grant(state, &waiter.target);
            if waiter.wake.send(()).is_err() {
                // The waiter went away between its removal check and now: take the slot back.
                state.in_use -= 1;
                if let Some(count) = state.held.get_mut(&waiter.target) {
                    *count -= 1;
                    if *count == 0 {
                        state.held.remove(&waiter.target);
                    }
                }
                if let Some(count) = state.granted.get_mut(&waiter.target) {
                    *count -= 1;
                }
            }
        }
    }
}

fn grant(state: &mut State, target: &str) {
    state.in_use += 1;
    state.peak = state.peak.max(state.in_use);
    *state.held.entry(target.to_string()).or_default() += 1;
    *state.granted.entry(target.to_string()).or_default() += 1;
}

/// Removes a waiter whose future is dropped; a slot granted to it in the meantime is given
/// back.
struct WaitGuard<'a> {
    slots: &'a Arc<ActionSlots>,
    ticket: u64,
    target: &'a str,
    done: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.slots.lock();
        if state.waiting.remove(&self.ticket).is_none() {
            // Already granted (the wake-up was sent but never received): give it back.
            drop(state);
            self.slots.release(self.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn free_slots_are_granted_at_once_and_the_cap_holds() {
        let slots = ActionSlots::new(2);
        let a = slots.acquire("a").await;
        let b = slots.acquire("a").await;
        assert_eq!(slots.stats().in_use, 2);
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("b").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a third slot was granted over the cap"
        );
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the freed slot is granted")
            .unwrap();
        assert_eq!(slots.stats().in_use, 2);
        drop((b, c));
        assert_eq!(slots.stats().in_use, 0);
        assert_eq!(slots.stats().peak, 2);
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_target_holding_fewest() {
        let slots = ActionSlots::new(2);
        // `busy` holds both slots and queues two more before `quiet` asks for one.
        let held = [slots.acquire("busy").await, slots.acquire("busy").await];
        let (sender, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for target in ["busy", "busy", "quiet"] {
            let slots = slots.clone();
            let sender = sender.clone();
            tasks.push(tokio::spawn(async move {
                let slot = slots.acquire(target).await;
                sender.send(target).unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(slot);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        let mut granted = Vec::new();
        while let Ok(target) = order.try_recv() {
            granted.push(target);
        }
        // Both slots free at once: `quiet` (holding none) is served although it came last.
        assert_eq!(granted.len(), 3);
        assert!(
            granted[..2].contains(&"quiet"),
            "the quiet target waited behind the busy one's queue: {granted:?}"
        );
        assert_eq!(slots.stats().in_use, 0);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_no_slot_taken() {
        let slots = ActionSlots::new(1);
        let held = slots.acquire("a").await;
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("b").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        assert_eq!(slots.stats().in_use, 0);
        assert_eq!(slots.stats().waiting, 0);
        let _again = tokio::time::timeout(Duration::from_secs(5), slots.acquire("c"))
            .await
            .expect("the slot is free again");
    }
}
