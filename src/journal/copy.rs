//! A private copy of a state directory's journal, for read-only commands (`plan`) beside a
//! running daemon: the daemon keeps its lock, and nothing in its directory is touched. The
//! copy holds the snapshot and the journal as they are on disk now; opening it cuts a torn tail
//! and lists pending intents in the copy only, never in the daemon's files.
//!
//! # Design and invariants
//!
//! `Journal::open_copy`: read-only commands (`plan`) open a private temporary copy of
//! `snapshot.json` and `journal.jsonl` (torn tails are cut, pending intents listed, in the copy
//! only), never the lock; `JournalCopy::held`/`holder_pid` say whether a daemon holds the original
//! (a shared flock on the directory, taken and dropped at once; nothing is written there), and
//! `plan` then refuses an `embedded` target, whose emulator state belongs to the daemon

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{JOURNAL_FILE, Paths, SNAPSHOT_FILE, make_private_directory};
use super::lock::LOCK_FILE;
use super::{Journal, JournalError, JournalOptions};

/// The copy's directory; removed when dropped.
#[derive(Debug)]
pub struct JournalCopy {
    directory: PathBuf,
    /// Another process (a running daemon) holds the original state directory.
    pub held: bool,
    /// That process's pid, when its lock file records it.
    pub holder_pid: Option<u32>,
}

impl Drop for JournalCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.directory);
    }
}

impl Journal {
    /// Opens a private copy of the journal in `state_dir` without taking its lock or writing
    /// anything there (a `state_dir` that does not exist is not created). Keep the returned
    /// [`JournalCopy`] alive as long as the journal.
    pub fn open_copy(state_dir: &Path) -> Result<(Journal, JournalCopy), JournalError> {
        // Whether a daemon holds the directory: a shared look at its lock (the flock on the
        // directory itself), taken and dropped at once; nothing is written there.
        let (held, holder_pid) = match fs::File::open(state_dir) {
            Ok(handle) => match handle.try_lock_shared() {
                Ok(()) => (false, None),
                Err(fs::TryLockError::WouldBlock) => {
                    let pid = fs::read_to_string(state_dir.join(LOCK_FILE))
                        .ok()
                        .and_then(|text| text.trim().strip_prefix("pid=")?.parse().ok());
                    (true, pid)
                }
                Err(fs::TryLockError::Error(_)) => (false, None),
            },
            Err(_) => (false, None),
        };
        let directory = std::env::temp_dir().join(format!(
            "dli-gitops-journal-copy-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        fs::create_dir_all(&directory).map_err(|source| {
            JournalError::io("create a private journal copy", &directory, source)
        })?;
        make_private_directory(&directory)?;
        let copy = JournalCopy {
            directory,
            held,
            holder_pid,
        };
        let original = Paths::new(state_dir);
        for (from, name) in [
            (&original.snapshot, SNAPSHOT_FILE),
            (&original.journal, JOURNAL_FILE),
        ] {
            match fs::read(from) {
                Ok(bytes) => fs::write(copy.directory.join(name), bytes).map_err(|source| {
                    JournalError::io("write a private journal copy", &copy.directory, source)
                })?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(JournalError::io("read", from, source)),
            }
        }
        let (journal, _recovery) = Journal::open(&copy.directory, JournalOptions::default())?;
        Ok((journal, copy))
    }
}
