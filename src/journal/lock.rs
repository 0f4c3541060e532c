//! The exclusive lock on a state directory, so two daemons never write one journal.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::error::JournalError;

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

const SELF_HELD_RETRIES: u32 = 50;
const SELF_HELD_RETRY_DELAY: Duration = Duration::from_millis(10);

/// Holds the state directory locked for as long as it lives: an OS lock (`flock`, released by
/// the kernel when the process dies, so a crashed daemon never leaves a stale lock) on the
/// directory itself, and one on `state_dir/lock`, which also records the holder's pid for the
/// error another process gets.
///
/// The directory lock is the one that counts: the lock file can be deleted by anyone with
/// write access to the directory, and a second process would then lock a new file of the same
/// name. The directory cannot be unlinked while it holds a journal, so two processes never
/// both hold it. The lock file's lock is kept for older builds, which lock only that file.
#[derive(Debug)]
pub(crate) struct DirectoryLock {
    // Never read: holding the open, locked descriptors is the lock.
    _directory: File,
    _file: File,
}

impl DirectoryLock {
    /// Takes the lock at once or fails, naming the holder's pid when the lock file records it.
    pub fn acquire(state_dir: &Path) -> Result<DirectoryLock, JournalError> {
        let path = state_dir.join(LOCK_FILE);
        let directory = File::open(state_dir)
            .map_err(|source| JournalError::io("open the state directory", state_dir, source))?;
        lock_or_explain(&directory, state_dir, state_dir, &path)?;
        let mut file = super::files::private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| JournalError::io("open the lock file", &path, source))?;
        lock_or_explain(&file, &path, state_dir, &path)?;
        // The pid is informational (for the error above); failing to record it is harmless.
        let record_pid = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "pid={}", std::process::id()));
        if let Err(error) = record_pid {
            tracing::warn!(lock_file = %path.display(), %error, "Could not record the pid in the lock file.");
        }
        Ok(DirectoryLock {
            _directory: directory,
            _file: file,
        })
    }
}

/// Locks `handle` (the directory or the lock file, `what` for errors), or fails with the
/// holder's pid as `lock_path` records it.
fn lock_or_explain(
    handle: &File,
    what: &Path,
    state_dir: &Path,
    lock_path: &Path,
) -> Result<(), JournalError> {
    let mut attempts = 0;
    loop {
        match handle.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {
                let holder_pid = read_holder_pid(lock_path);
                // Our own pid means a lock this process just released may still be held by
                // a child forked in that instant (the descriptor lives until its exec).
                // That clears within milliseconds; another process's lock fails at once.
                if holder_pid == Some(std::process::id()) && attempts < SELF_HELD_RETRIES {
                    attempts += 1;
                    std::thread::sleep(SELF_HELD_RETRY_DELAY);
                    continue;
                }
                return Err(JournalError::Locked {
                    state_dir: state_dir.to_path_buf(),
                    lock_path: lock_path.to_path_buf(),
                    holder_pid,
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(JournalError::io("lock", what, source));
            }
        }
    }
}

/// The pid the lock file records; `None` when it is missing (deleted), unreadable or empty.
fn read_holder_pid(lock_path: &Path) -> Option<u32> {
    let mut contents = String::new();
    File::open(lock_path)
        .and_then(|mut file| file.read_to_string(&mut contents))
        .ok()
        .and_then(|_| parse_pid(&contents))
}

fn parse_pid(contents: &str) -> Option<u32> {
    contents
        .lines()
        .find_map(|line| line.strip_prefix("pid="))
        .and_then(|pid| pid.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_with_the_holder_pid_and_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirectoryLock::acquire(dir.path()).unwrap();
        match DirectoryLock::acquire(dir.path()) {
            Err(JournalError::Locked {
                holder_pid,
                lock_path,
                ..
            }) => {
                assert_eq!(holder_pid, Some(std::process::id()));
                assert_eq!(lock_path, dir.path().join(LOCK_FILE));
            }
            other => panic!("expected a lock conflict, got {other:?}"),
        }
        drop(first);
        DirectoryLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn deleting_the_lock_file_does_not_release_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = DirectoryLock::acquire(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        match DirectoryLock::acquire(dir.path()) {
            Err(JournalError::Locked { holder_pid, .. }) => {
                // The pid lived in the deleted file.
                assert_eq!(holder_pid, None);
            }
            other => panic!("expected a lock conflict, got {other:?}"),
        }
    }
}
