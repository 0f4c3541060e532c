//! A plain local directory as a source: read into a [`RepoSnapshot`] by
//! `desired::read_directory` (whose revision is a digest of the contents), and watched with `notify` so that a burst of editor writes becomes one event.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::SourceError;
use crate::desired::SpecIoError;
use crate::desired::snapshot::RepoSnapshot;

/// A directory of job files.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: &Path) -> DirSource {
        DirSource {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every file under the directory with `desired::read_directory`, the one reader
    /// `validate` uses too, so both give a directory the same revision (`sha256:<hex>` over
    /// paths, kinds and contents). Symlinks are recorded, not followed; files over
    /// `MAX_FILE_BYTES` are recorded as oversized without being read (their modification time
    /// goes into the revision, so editing one is noticed); `.git` is skipped at every depth, as
    /// `watch` ignores it; the walk stops at `MAX_SNAPSHOT_FILES` / `MAX_SNAPSHOT_BYTES`.
    /// Blocking.
    pub fn snapshot(&self) -> Result<RepoSnapshot, SourceError> {
        crate::desired::read_directory(&self.root).map_err(source_error)
    }

    /// Watches the directory recursively and sends `()` once the tree has been quiet for
    /// `debounce` after a change (or, under a continuous stream of writes, at least every
    /// 20 × `debounce`). At most one notification is ever pending. The watcher stops when the
    /// receiver is dropped.
    pub fn watch(&self, debounce: Duration) -> Result<mpsc::Receiver<()>, SourceError> {
        let (raw_sender, raw_receiver) = std_mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = raw_sender.send(event);
        })
        .map_err(|source| SourceError::Watch {
            path: self.root.clone(),
            source,
        })?;
        watcher
            .watch(&self.root, RecursiveMode::Recursive)
            .map_err(|source| SourceError::Watch {
                path: self.root.clone(),
                source,
            })?;
        let (sender, receiver) = mpsc::channel(1);
        let root = self.root.clone();
        std::thread::Builder::new()
            .name("dli-gitops-dir-watch".to_string())
            .spawn(move || debounce_loop(watcher, raw_receiver, sender, debounce, &root))
            .map_err(|source| SourceError::Io {
                path: self.root.clone(),
                action: "starting the directory watcher thread",
                source,
            })?;
        Ok(receiver)
    }
}

fn debounce_loop(
    watcher: notify::RecommendedWatcher,
    raw_receiver: std_mpsc::Receiver<notify::Result<notify::Event>>,
    sender: mpsc::Sender<()>,
    debounce: Duration,
    root: &Path,
) {
    // Keeps the OS watch alive for as long as this thread runs.
    let _watcher = watcher;
    let poll = Duration::from_millis(250);
    let longest_burst = debounce.saturating_mul(20);
    let mut quiet_deadline: Option<Instant> = None;
    let mut burst_started: Option<Instant> = None;
    loop {
        let wait = quiet_deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(poll)
            .min(poll);
        match raw_receiver.recv_timeout(wait) {
            Ok(Ok(event)) => {
                if is_relevant(&event, root) {
                    quiet_deadline = Some(Instant::now() + debounce);
                    burst_started.get_or_insert_with(Instant::now);
                }
            }
            Ok(Err(error)) => {
                // Events may have been lost (e.g. queue overflow): a rescan is the safe answer.
                tracing::warn!(path = %root.display(), error = %error, "Directory watch error; rescanning.");
                quiet_deadline = Some(Instant::now() + debounce);
                burst_started.get_or_insert_with(Instant::now);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let quiet = quiet_deadline.is_some_and(|deadline| now >= deadline);
        let too_long = burst_started.is_some_and(|started| now >= started + longest_burst);
        if quiet || too_long {
            quiet_deadline = None;
            burst_started = None;
            match sender.try_send(()) {
                Ok(()) => tracing::debug!(path = %root.display(), "Source directory changed."),
                Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => return,
            }
        }
        if sender.is_closed() {
            return;
        }
    }
}

/// Changes to contents count; reads and `.git` internals do not.
fn is_relevant(event: &notify::Event, root: &Path) -> bool {
    let kind_counts = match event.kind {
        EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)) => {
            true
        }
        EventKind::Access(_) => false,
        _ => true,
    };
    kind_counts
        && (event.paths.is_empty()
            || event.paths.iter().any(|path| {
                !path
                    .strip_prefix(root)
                    .unwrap_or(path)
                    .components()
                    .any(|component| component.as_os_str() == ".git")
            }))
}

/// The directory reader's error as a source error (the texts and retry rules sources use).
fn source_error(error: SpecIoError) -> SourceError {
    let io = |path: PathBuf, action: &'static str, source: std::io::Error| SourceError::Io {
        path,
        action,
        source,
    };
    let working_directory = || "working directory".to_string();
    match error {
        SpecIoError::OpenRoot { path, error } => io(path, "opening the source directory", error),
        SpecIoError::ReadDirectory { path, error } => io(path, "listing a source directory", error),
        SpecIoError::ReadEntry {
            path,
            action,
            error,
        } => io(path, action, error),
        SpecIoError::NotADirectory { path } => SourceError::NotADirectory { path },
        SpecIoError::NonUtf8Name { path } => SourceError::NonUtf8Path {
            revision: working_directory(),
            path: path.display().to_string(),
        },
        SpecIoError::TooLarge { limit } => SourceError::SnapshotTooLarge {
            revision: working_directory(),
            limit,
        },
    }
}
