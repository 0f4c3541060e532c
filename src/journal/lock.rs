//! The exclusive lock on a state directory, so two daemons never write one journal.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::error::JournalError;

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

const SELF_HELD_RETRIES: u32 = 50;
const SELF_HELD_RETRY_DELAY: Duration = Duration::from_millis(10);

/// Holds `state_dir/lock` locked (an OS file lock, released by the kernel when the process
/// dies, so a crashed daemon never leaves a stale lock) for as long as it lives.
#[derive(Debug)]
pub(crate) struct DirectoryLock {
    // Never read: holding the open, locked file is the lock.
    _file: File,
}

impl DirectoryLock {
    /// Takes the lock at once or fails, naming the holder's pid when the file records it.
    pub fn acquire(state_dir: &Path) -> Result<DirectoryLock, JournalError> {
        let path = state_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| JournalError::io("open the lock file", &path, source))?;
        let mut attempts = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut contents = String::new();
                    let holder_pid = file
                        .seek(SeekFrom::Start(0))
                        .and_then(|_| file.read_to_string(&mut contents))
                        .ok()
                        .and_then(|_| parse_pid(&contents));
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
                        lock_path: path,
                        holder_pid,
                    });
                }
                Err(TryLockError::Error(source)) => {
                    return Err(JournalError::io("lock", &path, source));
                }
            }
        }
        // The pid is informational (for the error above); failing to record it is harmless.
        let record_pid = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "pid={}", std::process::id()));
        if let Err(error) = record_pid {
            tracing::warn!(lock_file = %path.display(), %error, "Could not record the pid in the lock file.");
        }
        Ok(DirectoryLock { _file: file })
    }
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
}
