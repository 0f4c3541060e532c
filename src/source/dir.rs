//! A plain local directory as a source: read into a [`RepoSnapshot`] whose revision is a digest
//! of the contents, and watched with `notify` so that a burst of editor writes becomes one event.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILES, SourceError};
use crate::desired::snapshot::{MAX_FILE_BYTES, RepoFile, RepoSnapshot};

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

    /// Reads every file under the directory (`.git` directories excluded). Symlinks are recorded,
    /// not followed; files over [`MAX_FILE_BYTES`] are recorded as oversized without being read.
    /// The revision is `sha256:<hex>` over paths, kinds and contents, so it changes exactly when
    /// the snapshot does. Blocking.
    //
    // Not `desired::read_directory`, on purpose: the daemon must stay bounded on any directory it
    // is pointed at, so this walk stops at `MAX_SNAPSHOT_FILES` / `MAX_SNAPSHOT_BYTES` before
    // reading more (the spec walker reads everything, which is right for a one-shot CLI);
    // it skips `.git` at every depth, as `watch` ignores it; and an oversized file's mtime goes
    // into the revision, so editing it is noticed although its content is never read.
    pub fn snapshot(&self) -> Result<RepoSnapshot, SourceError> {
        let metadata = std::fs::metadata(&self.root).map_err(|source| SourceError::Io {
            path: self.root.clone(),
            action: "opening the source directory",
            source,
        })?;
        if !metadata.is_dir() {
            return Err(SourceError::NotADirectory {
                path: self.root.clone(),
            });
        }
        let mut snapshot = RepoSnapshot::default();
        let mut total_bytes = 0u64;
        let mut oversized_stamps = Vec::new();
        walk(
            &self.root,
            "",
            &mut snapshot,
            &mut total_bytes,
            &mut oversized_stamps,
        )?;
        snapshot.revision = digest(&snapshot, &oversized_stamps);
        Ok(snapshot)
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

fn walk(
    directory: &Path,
    prefix: &str,
    snapshot: &mut RepoSnapshot,
    total_bytes: &mut u64,
    oversized_stamps: &mut Vec<(String, Option<std::time::SystemTime>)>,
) -> Result<(), SourceError> {
    let entries = std::fs::read_dir(directory).map_err(|source| SourceError::Io {
        path: directory.to_path_buf(),
        action: "listing a source directory",
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| SourceError::Io {
            path: directory.to_path_buf(),
            action: "listing a source directory",
            source,
        })?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(SourceError::NonUtf8Path {
                revision: "working directory".to_string(),
                path: path.display().to_string(),
            });
        };
        let relative = format!("{prefix}{name}");
        let metadata = std::fs::symlink_metadata(&path).map_err(|source| SourceError::Io {
            path: path.clone(),
            action: "reading file metadata",
            source,
        })?;
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            if name != ".git" {
                walk(
                    &path,
                    &format!("{relative}/"),
                    snapshot,
                    total_bytes,
                    oversized_stamps,
                )?;
            }
            continue;
        }
        let file = if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|source| SourceError::Io {
                path: path.clone(),
                action: "reading a symlink",
                source,
            })?;
            RepoFile::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if file_type.is_file() {
            let size = metadata.len();
            if size > MAX_FILE_BYTES {
                oversized_stamps.push((relative.clone(), metadata.modified().ok()));
                RepoFile::Oversized { size }
            } else {
                *total_bytes += size;
                if *total_bytes > MAX_SNAPSHOT_BYTES {
                    return Err(SourceError::SnapshotTooLarge {
                        revision: "working directory".to_string(),
                        limit: format!("{MAX_SNAPSHOT_BYTES} bytes"),
                    });
                }
                RepoFile::Data(std::fs::read(&path).map_err(|source| SourceError::Io {
                    path: path.clone(),
                    action: "reading a source file",
                    source,
                })?)
            }
        } else {
            // Sockets, fifos and devices are not job files: recorded, never opened, so a
            // reference to one is reported as what it is rather than as missing.
            RepoFile::NotRegular {
                kind: crate::desired::snapshot::special_file_kind(&file_type).to_string(),
            }
        };
        snapshot.files.insert(relative, file);
        if snapshot.files.len() > MAX_SNAPSHOT_FILES {
            return Err(SourceError::SnapshotTooLarge {
                revision: "working directory".to_string(),
                limit: format!("{MAX_SNAPSHOT_FILES} files"),
            });
        }
    }
    Ok(())
}

fn digest(
    snapshot: &RepoSnapshot,
    oversized_stamps: &[(String, Option<std::time::SystemTime>)],
) -> String {
    let mut hasher = Sha256::new();
    for (path, file) in &snapshot.files {
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        match file {
            RepoFile::Data(bytes) => {
                hasher.update(b"D");
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
            RepoFile::Symlink { target } => {
                hasher.update(b"L");
                hasher.update((target.len() as u64).to_le_bytes());
                hasher.update(target.as_bytes());
            }
            RepoFile::Oversized { size } => {
                // Not read, so its modification time stands in for its contents.
                hasher.update(b"O");
                hasher.update(size.to_le_bytes());
                let stamp = oversized_stamps
                    .iter()
                    .find(|(stamped, _)| stamped == path)
                    .and_then(|(_, modified)| *modified)
                    .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|since| since.as_nanos())
                    .unwrap_or(0);
                hasher.update(stamp.to_le_bytes());
            }
            RepoFile::NotRegular { kind } => {
                hasher.update(b"S");
                hasher.update((kind.len() as u64).to_le_bytes());
                hasher.update(kind.as_bytes());
            }
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
