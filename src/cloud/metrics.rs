//! A dependency-free request counter registry: counts by service, operation and outcome.
//!
//! The daemon reads [`RequestMetrics::snapshot`] when it renders `/metrics` (or wires the counts
//! into `prometheus-client`); clients only ever increment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One counter's labels and value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestCount {
    /// `dli`, `dlf`, `iam`.
    pub service: &'static str,
    /// The client operation (`list_jobs`, `job_detail`, ...).
    pub operation: &'static str,
    /// The HTTP status (`200`, `429`, ...) or a transport outcome (`timeout`, `connect`, `io`).
    pub outcome: String,
    pub count: u64,
}

type CounterKey = (&'static str, &'static str, String);

/// Shared, cheaply cloned counter registry. Clones count into the same registry.
#[derive(Debug, Clone, Default)]
pub struct RequestMetrics {
    counters: Arc<Mutex<BTreeMap<CounterKey, u64>>>,
}

impl RequestMetrics {
    /// Counts one HTTP attempt.
    pub fn record(&self, service: &'static str, operation: &'static str, outcome: &str) {
        // A poisoned lock only means another thread panicked mid-increment; counts stay usable.
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counters
            .entry((service, operation, outcome.to_string()))
            .or_insert(0) += 1;
    }

    /// Every counter, sorted by labels.
    pub fn snapshot(&self) -> Vec<RequestCount> {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counters
            .iter()
            .map(|((service, operation, outcome), count)| RequestCount {
                service,
                operation,
                outcome: outcome.clone(),
                count: *count,
            })
            .collect()
    }

    /// The count for one label set (0 when never seen).
    pub fn count(&self, service: &str, operation: &str, outcome: &str) -> u64 {
        self.snapshot()
            .into_iter()
            .filter(|c| c.service == service && c.operation == operation && c.outcome == outcome)
            .map(|c| c.count)
            .sum()
    }

    /// Total attempts for one operation, whatever the outcome.
    pub fn total(&self, service: &str, operation: &str) -> u64 {
        self.snapshot()
            .into_iter()
            .filter(|c| c.service == service && c.operation == operation)
            .map(|c| c.count)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_registry() {
        let metrics = RequestMetrics::default();
        let clone = metrics.clone();
        metrics.record("dli", "list_jobs", "200");
        clone.record("dli", "list_jobs", "200");
        clone.record("dli", "list_jobs", "503");
        assert_eq!(metrics.count("dli", "list_jobs", "200"), 2);
        assert_eq!(metrics.total("dli", "list_jobs"), 3);
        assert_eq!(metrics.snapshot().len(), 2);
    }
}
