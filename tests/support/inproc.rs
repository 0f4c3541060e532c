//! The daemon loop and HTTP server in-process (`dli_gitops::daemon::serve`) over a fake source
//! with one revision and a test's own reconciler, on a loopback port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use dli_gitops::config::Config;
use dli_gitops::daemon::{
    DaemonError, DaemonParts, SnapshotSource, SourceFailure, SourceParts, TargetParts,
    TargetReconciler, serve, target_spec,
};
use dli_gitops::desired::snapshot::RepoSnapshot;
use dli_gitops::journal::{Journal, JournalOptions};
use dli_gitops::model::DesiredJobs;
use dli_gitops::status::control::Controls;

/// A source that has revision `r1` (no files) and never changes.
pub struct OneRevision;

impl SnapshotSource for OneRevision {
    fn poll(&self, last_revision: Option<&str>) -> Result<Option<RepoSnapshot>, SourceFailure> {
        if last_revision == Some("r1") {
            return Ok(None);
        }
        Ok(Some(RepoSnapshot {
            revision: "r1".into(),
            files: Default::default(),
        }))
    }
    fn next_poll_in(&self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
    fn watch(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, SourceFailure> {
        Ok(None)
    }
    fn kind(&self) -> &'static str {
        "dir"
    }
    fn location(&self) -> String {
        "memory".into()
    }
    fn webhook_match(&self) -> Option<(String, String)> {
        None
    }
}

/// Opens the journal in `config.state_dir`, waiting up to 10 s for a previous run (its delivery
/// tasks may hold it a moment longer) to let it go.
pub async fn open_journal(config: &Config) -> Journal {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Journal::open(&config.state_dir, JournalOptions::default()) {
            Ok((journal, _)) => break journal,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the journal stays locked: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The daemon's parts for `config`'s first target over `reconciler`: source `jobs` is
/// [`OneRevision`] resolving to no jobs, the API takes `token`, progress every 200 ms.
pub fn parts(
    config: &Config,
    reconciler: Arc<dyn TargetReconciler>,
    controls: Arc<Controls>,
    token: &str,
) -> DaemonParts {
    let mut parts: DaemonParts = dli_gitops::daemon::base_parts(config).unwrap();
    parts.sources = vec![SourceParts {
        name: "jobs".into(),
        source: Arc::new(OneRevision),
        webhook_secret: None,
    }];
    parts.resolver = Arc::new(|_: &RepoSnapshot, _: &str| Ok(DesiredJobs::default()));
    parts.targets = vec![TargetParts {
        spec: target_spec(&config.targets[0]),
        reconciler,
    }];
    parts.api_token = Some(token.as_bytes().to_vec());
    parts.controls = Some(controls);
    parts.progress_interval = Duration::from_millis(200);
    parts
}

/// A daemon served in-process: its base URL, and how to stop it.
pub struct Running {
    pub base: String,
    pub shutdown: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<(), DaemonError>>,
    pub journal: Journal,
}

impl Running {
    /// Serves `parts` on `listener` until [`Running::stop`].
    pub fn serve(parts: DaemonParts, listener: TcpListener, journal: Journal) -> Running {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, on_shutdown) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(parts, listener, async move {
            let _ = on_shutdown.await;
        }));
        Running {
            base,
            shutdown,
            task,
            journal,
        }
    }

    /// Shuts the daemon down (it must stop within 15 s, cleanly), then lets the journal go.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops")
            .unwrap()
            .unwrap();
        drop(self.journal);
    }
}

/// Polls `check` every 50 ms until it holds; fails after 30 s.
pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
