//! One task per configured source: poll (git) or watch (directory), publish each new revision
//! once, and wake every target that reads the source. However many targets use a source, it is
//! fetched once per cycle.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use super::reconciler::SnapshotSource;
use crate::desired::snapshot::RepoSnapshot;
use crate::pass::Stop;
use crate::status::{DaemonMetrics, ErrorInfo, StatusBoard, Trigger, TriggerKind};

/// How often a watched directory is re-read when its watcher could not be started.
const UNWATCHED_POLL_INTERVAL: Duration = Duration::from_secs(10);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(300);

/// What targets read from their source.
#[derive(Debug, Clone, Default)]
pub struct SourceState {
    /// The newest snapshot (whatever its validity: each target validates for its environment).
    pub snapshot: Option<Arc<RepoSnapshot>>,
    /// The last poll failed (the previous snapshot, if any, is still served).
    pub error: Option<ErrorInfo>,
    /// At least one poll finished (successfully or not).
    pub polled: bool,
}

pub(crate) struct SourceDriver {
    pub name: String,
    pub source: Arc<dyn SnapshotSource>,
    pub state: watch::Sender<SourceState>,
    /// The triggers of the targets that read this source.
    pub targets: Vec<Arc<Trigger>>,
    /// Set by the webhook endpoint: fetch now.
    pub fetch_now: Arc<Notify>,
    pub board: Arc<StatusBoard>,
    pub metrics: Arc<DaemonMetrics>,
    pub stop: Stop,
}

impl SourceDriver {
    pub async fn run(self) {
        let span = tracing::info_span!("source", source = %self.name);
        async move {
            let mut watcher = match self.source.watch() {
                Ok(watcher) => watcher,
                Err(error) => {
                    tracing::warn!(
                        error = %error,
                        interval_s = UNWATCHED_POLL_INTERVAL.as_secs(),
                        "Watching the source failed; polling it instead."
                    );
                    None
                }
            };
            let watched = watcher.is_some();
            let mut cause = TriggerKind::Revision;
            let mut failures: u32 = 0;
            loop {
                let ok = self.poll_once(cause).await;
                failures = if ok { 0 } else { failures + 1 };
                let delay = if failures > 0 {
                    Some(failure_backoff(failures, self.source.next_poll_in()))
                } else if watched {
                    None
                } else {
                    Some(
                        self.source
                            .next_poll_in()
                            .unwrap_or(UNWATCHED_POLL_INTERVAL),
                    )
                };
                cause = tokio::select! {
                    biased;
                    _ = self.stop.wait() => break,
                    _ = self.fetch_now.notified() => TriggerKind::Webhook,
                    Some(()) = next_notice(&mut watcher) => TriggerKind::Revision,
                    _ = sleep_or_forever(delay) => TriggerKind::Revision,
                };
            }
            tracing::debug!("Source loop stopped.");
        }
        .instrument(span)
        .await
    }

    /// One poll; publishes a new snapshot and wakes the targets. Returns false on failure.
    async fn poll_once(&self, cause: TriggerKind) -> bool {
        let last_revision = self
            .state
            .borrow()
            .snapshot
            .as_ref()
            .map(|snapshot| snapshot.revision.clone());
        let source = self.source.clone();
        let last = last_revision.clone();
        let polled = tokio::task::spawn_blocking(move || source.poll(last.as_deref())).await;
        let now = Utc::now();
        let polled = match polled {
            Ok(result) => result,
            Err(join_error) => Err(super::reconciler::SourceFailure {
                message: format!("polling the source failed unexpectedly: {join_error}"),
                retryable: true,
            }),
        };
        match polled {
            Ok(Some(snapshot)) => {
                self.metrics.count_fetch(&self.name, "succeeded");
                tracing::info!(
                    revision = %snapshot.revision,
                    previous = last_revision.as_deref().unwrap_or("-"),
                    files = snapshot.files.len(),
                    "Source has a new revision."
                );
                let revision = snapshot.revision.clone();
                self.state.send_modify(|state| {
                    state.snapshot = Some(Arc::new(snapshot));
                    state.error = None;
                    state.polled = true;
                });
                self.board.update_source(&self.name, |status| {
                    status.revision = Some(revision);
                    status.last_poll = Some(now);
                    status.last_change = Some(now);
                    status.last_error = None;
                });
                for trigger in &self.targets {
                    trigger.fire(cause);
                }
                true
            }
            Ok(None) => {
                self.metrics.count_fetch(&self.name, "succeeded");
                tracing::debug!("Source unchanged.");
                self.state.send_if_modified(|state| {
                    let changed = state.error.is_some() || !state.polled;
                    state.error = None;
                    state.polled = true;
                    changed
                });
                self.board.update_source(&self.name, |status| {
                    status.last_poll = Some(now);
                    status.last_error = None;
                });
                true
            }
            Err(failure) => {
                self.metrics.count_fetch(&self.name, "failed");
                tracing::warn!(
                    error = %failure.message,
                    retryable = failure.retryable,
                    "Polling the source failed; the last revision stays in use."
                );
                let error = ErrorInfo {
                    code: None,
                    message: format!("source `{}`: {}", self.name, failure.message),
                    time: Some(now),
                };
                self.state.send_modify(|state| {
                    state.error = Some(error.clone());
                    state.polled = true;
                });
                self.board.update_source(&self.name, |status| {
                    status.last_poll = Some(now);
                    status.last_error = Some(error);
                });
                false
            }
        }
    }
}

async fn next_notice(watcher: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match watcher {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_or_forever(delay: Option<Duration>) {
    match delay {
        Some(delay) => tokio::time::sleep(delay).await,
        None => std::future::pending().await,
    }
}

/// Backoff after failed polls: 5 s doubling, never longer than 5 minutes, and never longer
/// than the poll interval would be.
fn failure_backoff(failures: u32, poll_interval: Option<Duration>) -> Duration {
    let exponent = failures.saturating_sub(1).min(10);
    let backoff = (Duration::from_secs(5) * 2u32.pow(exponent)).min(MAX_FAILURE_BACKOFF);
    match poll_interval {
        Some(interval) => backoff.min(interval.max(Duration::from_secs(1))),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_backoff_grows_and_respects_the_poll_interval() {
        assert_eq!(failure_backoff(1, None), Duration::from_secs(5));
        assert_eq!(failure_backoff(3, None), Duration::from_secs(20));
        assert_eq!(failure_backoff(20, None), MAX_FAILURE_BACKOFF);
        assert_eq!(
            failure_backoff(5, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }
}
