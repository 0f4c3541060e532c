//! The daemon's Prometheus metrics (`prometheus-client`), rendered at `/metrics` in the
//! OpenMetrics text format. Every metric is named `dli_gitops_*`; labels are bounded (targets,
//! sources, statuses, services and operations come from config and code, never from requests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{HealthStatus, JobStatus, SyncStatus};
use crate::cloud::RequestMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetResultLabels {
    pub target: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub target: String,
    pub sync_status: String,
    pub health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceResultLabels {
    pub source: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: String,
    pub result: String,
}

/// Promotion: `by` is `auto` or `manual`; `result` is `promoted`, `refused`, or
/// `failed_upstream` (a revision marked as never to be promoted).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PromotionLabels {
    pub target: String,
    pub by: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JournalKindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiRequestLabels {
    target: String,
    service: String,
    operation: String,
    status: String,
}

type ReconcileHistogram = Family<TargetLabels, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports. Cheap to share behind an `Arc`.
pub struct DaemonMetrics {
    registry: Registry,
    reconcile_duration: ReconcileHistogram,
    sync_results: Family<TargetResultLabels, Counter>,
    jobs: Family<JobLabels, Gauge>,
    git_fetches: Family<SourceResultLabels, Counter>,
    webhook_requests: Family<WebhookLabels, Counter>,
    promotions: Family<PromotionLabels, Counter>,
    external: Arc<ExternalCounters>,
}

impl std::fmt::Debug for DaemonMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonMetrics").finish_non_exhaustive()
    }
}

fn reconcile_histogram() -> Histogram {
    // 50 ms .. ~20 min: a no-change pass is a list call; an upgrade waits for savepoints.
    Histogram::new(exponential_buckets(0.05, 2.5, 12))
}

/// Reads the journal's appended-record counts by kind.
pub type JournalCounts = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// Counters kept elsewhere (the cloud clients, the journal), read at scrape time.
#[derive(Default)]
struct ExternalCounters {
    api: Mutex<Vec<(String, RequestMetrics)>>,
    journal_records: Mutex<Option<JournalCounts>>,
}

impl std::fmt::Debug for ExternalCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalCounters").finish_non_exhaustive()
    }
}

/// The registry owns its collectors; this handle shares the counters with `DaemonMetrics`.
#[derive(Debug)]
struct ExternalCollector(Arc<ExternalCounters>);

impl Collector for ExternalCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let api = self.0.api.lock().unwrap_or_else(|p| p.into_inner());
        let family = Family::<ApiRequestLabels, Counter>::default();
        for (target, metrics) in api.iter() {
            for count in metrics.snapshot() {
                family
                    .get_or_create(&ApiRequestLabels {
                        target: target.clone(),
                        service: count.service.to_string(),
                        operation: count.operation.to_string(),
                        status: count.outcome.clone(),
                    })
                    .inc_by(count.count);
            }
        }
        drop(api);
        let metric_encoder = encoder.encode_descriptor(
            "dli_gitops_api_requests",
            "HTTP attempts to the cloud services, by target, service, operation and HTTP status (or timeout, connect, io)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric_encoder)?;

        let journal = self
            .0
            .journal_records
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(read) = journal.as_ref() {
            let family = Family::<JournalKindLabels, Counter>::default();
            for (kind, count) in read() {
                family
                    .get_or_create(&JournalKindLabels {
                        kind: kind.to_string(),
                    })
                    .inc_by(count);
            }
            let metric_encoder = encoder.encode_descriptor(
                "dli_gitops_journal_records",
                "Records appended to the state journal since the daemon started, by kind (intent, outcome, observed, revision_applied, promotion, backup, unknown)",
                None,
                family.metric_type(),
            )?;
            family.encode(metric_encoder)?;
        }
        Ok(())
    }
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics::new()
    }
}

impl DaemonMetrics {
    pub fn new() -> DaemonMetrics {
        let mut registry = Registry::default();
        let reconcile_duration: ReconcileHistogram =
            Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "dli_gitops_reconcile_duration_seconds",
            "Time one reconcile pass took (observe, plan, apply), by target",
            reconcile_duration.clone(),
        );
        let sync_results = Family::<TargetResultLabels, Counter>::default();
        registry.register(
            "dli_gitops_sync",
            "Reconcile passes by target and result: succeeded (in sync, or applied), failed (an action or the pass failed), out_of_sync (report only), progressing, interrupted, invalid_revision",
            sync_results.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "dli_gitops_jobs",
            "Jobs per target by sync status and health",
            jobs.clone(),
        );
        let git_fetches = Family::<SourceResultLabels, Counter>::default();
        registry.register(
            "dli_gitops_git_fetches",
            "Source polls (git fetches, directory reads) by source and result (succeeded, failed)",
            git_fetches.clone(),
        );
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "dli_gitops_webhook_requests",
            "Requests to POST /api/v1/hooks/git by provider and result (accepted, ignored, rejected)",
            webhook_requests.clone(),
        );
        let promotions = Family::<PromotionLabels, Counter>::default();
        registry.register(
            "dli_gitops_promotions",
            "Promotions into a target by who (auto, manual) and result (promoted, refused, failed_upstream)",
            promotions.clone(),
        );
        let external = Arc::new(ExternalCounters::default());
        registry.register_collector(Box::new(ExternalCollector(external.clone())));
        DaemonMetrics {
            registry,
            reconcile_duration,
            sync_results,
            jobs,
            git_fetches,
            webhook_requests,
            promotions,
            external,
        }
    }

    /// Counts one promotion event.
    pub fn count_promotion(&self, target: &str, by: &str, result: &str) {
        self.promotions
            .get_or_create(&PromotionLabels {
                target: target.to_string(),
                by: by.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Records one pass: its duration, and its result mapped onto the `sync` counter
    /// (`synced`/`applied` count as `succeeded`, `error` as `failed`).
    pub fn observe_reconcile(&self, target: &str, result: &str, duration: Duration) {
        self.reconcile_duration
            .get_or_create(&TargetLabels {
                target: target.to_string(),
            })
            .observe(duration.as_secs_f64());
        let result = match result {
            "synced" | "applied" => "succeeded",
            "error" => "failed",
            other => other,
        };
        self.count_sync_result(target, result);
    }

    pub fn count_sync_result(&self, target: &str, result: &str) {
        self.sync_results
            .get_or_create(&TargetResultLabels {
                target: target.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Sets the job gauges of one target; every combination is written, so a status that
    /// empties goes to zero instead of keeping a stale count.
    pub fn set_jobs(&self, target: &str, jobs: &[JobStatus]) {
        for sync in SyncStatus::ALL {
            for health in HealthStatus::ALL {
                let count = jobs
                    .iter()
                    .filter(|job| job.sync_status == sync && job.health.status == health)
                    .count();
                self.jobs
                    .get_or_create(&JobLabels {
                        target: target.to_string(),
                        sync_status: sync.as_str().to_string(),
                        health: health.as_str().to_string(),
                    })
                    .set(count as i64);
            }
        }
    }

    pub fn count_fetch(&self, source: &str, result: &str) {
        self.git_fetches
            .get_or_create(&SourceResultLabels {
                source: source.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn count_webhook(&self, provider: &str, result: &str) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                provider: provider.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Exports a target's API request counters.
    pub fn add_request_metrics(&self, target: &str, metrics: RequestMetrics) {
        self.external
            .api
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((target.to_string(), metrics));
    }

    /// Exports the journal's appended-record counts by kind.
    pub fn set_journal_records(&self, read: JournalCounts) {
        *self
            .external
            .journal_records
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(read);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a collector.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "Encoding metrics failed.");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::test_support::synced_job;

    #[test]
    fn renders_every_family_with_its_labels() {
        let metrics = DaemonMetrics::new();
        metrics.observe_reconcile("dev", "synced", Duration::from_millis(120));
        metrics.count_fetch("jobs", "succeeded");
        metrics.count_webhook("github", "accepted");
        let requests = RequestMetrics::default();
        requests.record("dli", "list_jobs", "200");
        requests.record("dli", "list_jobs", "200");
        metrics.add_request_metrics("dev", requests);
        metrics.set_journal_records(Box::new(|| {
            vec![("intent", 42), ("outcome", 41), ("backup", 0)]
        }));
        metrics.set_jobs("dev", &[synced_job("clicks", HealthStatus::Healthy)]);
        let text = metrics.render();
        for expected in [
            "dli_gitops_reconcile_duration_seconds_count{target=\"dev\"} 1",
            "dli_gitops_sync_total{target=\"dev\",result=\"succeeded\"} 1",
            "dli_gitops_jobs{target=\"dev\",sync_status=\"Synced\",health=\"Healthy\"} 1",
            "dli_gitops_jobs{target=\"dev\",sync_status=\"OutOfSync\",health=\"Healthy\"} 0",
            "dli_gitops_git_fetches_total{source=\"jobs\",result=\"succeeded\"} 1",
            "dli_gitops_webhook_requests_total{provider=\"github\",result=\"accepted\"} 1",
            "dli_gitops_api_requests_total{target=\"dev\",service=\"dli\",operation=\"list_jobs\",status=\"200\"} 2",
            "dli_gitops_journal_records_total{kind=\"intent\"} 42",
            "dli_gitops_journal_records_total{kind=\"outcome\"} 41",
            "dli_gitops_journal_records_total{kind=\"backup\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
