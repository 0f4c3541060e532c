//! File-system plumbing: paths in the state directory, durable writes, the snapshot file.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::JournalError;
use super::record::{FORMAT_VERSION, seal, verify_seal};
use super::state::JournalState;

pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const SNAPSHOT_FILE: &str = "snapshot.json";
pub const ARCHIVE_DIR: &str = "journal-archive";

/// The files of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub state_dir: PathBuf,
    pub journal: PathBuf,
    pub snapshot: PathBuf,
    pub archive_dir: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Paths {
        Paths {
            state_dir: state_dir.to_path_buf(),
            journal: state_dir.join(JOURNAL_FILE),
            snapshot: state_dir.join(SNAPSHOT_FILE),
            archive_dir: state_dir.join(ARCHIVE_DIR),
        }
    }

    /// `journal-archive/journal-<first seq>-<last seq>.jsonl`, zero-padded so names sort.
    pub fn archive_segment(&self, first_seq: u64, last_seq: u64) -> PathBuf {
        self.archive_dir
            .join(format!("journal-{first_seq:020}-{last_seq:020}.jsonl"))
    }

    /// Archived segments with their seq ranges, oldest first. A missing directory is empty.
    pub fn archive_segments(&self) -> Result<Vec<(u64, u64, PathBuf)>, JournalError> {
        let entries = match fs::read_dir(&self.archive_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(JournalError::io("list", &self.archive_dir, source));
            }
        };
        let mut segments = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|source| JournalError::io("list", &self.archive_dir, source))?;
            let name = entry.file_name();
            let Some(range) = name
                .to_str()
                .and_then(|name| name.strip_prefix("journal-"))
                .and_then(|name| name.strip_suffix(".jsonl"))
            else {
                continue;
            };
            let Some((first, last)) = range.split_once('-') else {
                continue;
            };
            if let (Ok(first), Ok(last)) = (first.parse(), last.parse()) {
                segments.push((first, last, entry.path()));
            }
        }
        segments.sort();
        Ok(segments)
    }
}

/// `snapshot.json`: the reduced state, its version, and a checksum over the rest.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub v: u32,
    pub written_at: DateTime<Utc>,
    pub state: JournalState,
}

/// Reads the snapshot. Missing is `Ok(None)`; damaged or newer is an error, never a silent reset.
pub(crate) fn read_snapshot(path: &Path) -> Result<Option<JournalState>, JournalError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(JournalError::io("read the snapshot", path, source)),
    };
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let corrupt = |reason: String| JournalError::CorruptSnapshot {
        path: path.to_path_buf(),
        reason,
    };
    verify_seal(trimmed).map_err(corrupt)?;
    // The version first, skipping the rest (no JSON tree of the whole state is built: the state
    // is read straight into its compact form below).
    #[derive(Deserialize)]
    struct VersionProbe {
        #[serde(default)]
        v: serde_json::Value,
    }
    let probe: VersionProbe =
        serde_json::from_slice(trimmed).map_err(|error| corrupt(format!("not JSON: {error}")))?;
    let version = probe.v.as_u64().unwrap_or(0);
    if version > u64::from(FORMAT_VERSION) {
        return Err(JournalError::NewerFormat {
            path: path.to_path_buf(),
            line: None,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let snapshot: SnapshotFile =
        serde_json::from_slice(trimmed).map_err(|error| corrupt(format!("{error}")))?;
    Ok(Some(snapshot.state))
}

/// The snapshot file's line for `state` (sealed, newline-terminated). Encoded straight from
/// the state (borrowed, under the caller's read guard), not from a copy of it.
pub(crate) fn encode_snapshot(state: &JournalState) -> Result<Vec<u8>, JournalError> {
    // Borrowed, so writing a snapshot does not copy the state first.
    #[derive(Serialize)]
    struct SnapshotRef<'a> {
        v: u32,
        written_at: DateTime<Utc>,
        state: &'a JournalState,
    }
    let snapshot = SnapshotRef {
        v: FORMAT_VERSION,
        written_at: Utc::now(),
        state,
    };
    let encoded = serde_json::to_vec(&snapshot).map_err(|source| JournalError::Encode {
        target: "(snapshot)".into(),
        source,
    })?;
    let mut sealed = seal(encoded);
    sealed.push(b'\n');
    Ok(sealed)
}

/// Writes an encoded snapshot ([`encode_snapshot`]) atomically: temp file, fsync, rename,
/// directory fsync.
pub(crate) fn write_encoded_snapshot(paths: &Paths, encoded: &[u8]) -> Result<(), JournalError> {
    write_atomically(&paths.snapshot, encoded)?;
    sync_directory(&paths.state_dir)
}

/// Files of the state directory are readable by their owner only, whatever the umask: the
/// journal holds SQL bodies, which often carry connector passwords.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;
/// The state directory itself: owner only.
pub(crate) const PRIVATE_DIRECTORY_MODE: u32 = 0o700;

/// Options that create a file private to its owner (mode 0600 on unix, whatever the umask).
pub(crate) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    options
}

/// Makes the state directory private to its owner (mode 0700), whoever created it and
/// whatever the umask was.
pub(crate) fn make_private_directory(directory: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match fs::set_permissions(
            directory,
            fs::Permissions::from_mode(PRIVATE_DIRECTORY_MODE),
        ) {
            Ok(()) => {}
            // A directory we do not own (a volume mounted with a group, say): its owner set
            // the mode; the files we create are still 0600.
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(
                    directory = %directory.display(),
                    "The state directory belongs to another user, so its mode was left alone; make it accessible to this user only."
                );
            }
            Err(source) => {
                return Err(JournalError::io(
                    "make private (mode 0700)",
                    directory,
                    source,
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = directory;
    Ok(())
}

/// Replaces `path` with `contents` so a crash leaves either the old or the new file.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), JournalError> {
    let temporary = path.with_extension("tmp");
    let mut file = private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(|source| JournalError::io("create", &temporary, source))?;
    file.write_all(contents)
        .map_err(|source| JournalError::io("write", &temporary, source))?;
    file.sync_all()
        .map_err(|source| JournalError::io("fsync", &temporary, source))?;
    drop(file);
    fs::rename(&temporary, path)
        .map_err(|source| JournalError::io("rename into place", path, source))
}

/// Makes a create, rename or delete in `directory` durable.
pub(crate) fn sync_directory(directory: &Path) -> Result<(), JournalError> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| JournalError::io("fsync the directory", directory, source))
}

/// Opens the journal for appending, creating it (durably) when missing.
pub(crate) fn open_journal_for_append(paths: &Paths) -> Result<File, JournalError> {
    let existed = paths.journal.exists();
    let file = private_file_options()
        .append(true)
        .create(true)
        .open(&paths.journal)
        .map_err(|source| JournalError::io("open for appending", &paths.journal, source))?;
    if !existed {
        sync_directory(&paths.state_dir)?;
    }
    Ok(file)
}

/// Reads a whole file; missing is empty.
pub(crate) fn read_or_empty(path: &Path) -> Result<Vec<u8>, JournalError> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(JournalError::io("read", path, source)),
    }
}
