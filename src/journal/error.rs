//! Errors of the journal: each says what was being done, to which file, and what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong opening, appending to, compacting or reading a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "state directory {state_dir} is locked by another dli-gitops process{holder} \
         (lock file {lock_path}); if it is the daemon, stop it first, or let it do the work          (`dli-gitops status`, `POST /api/v1/targets/<target>/sync`, `dli-gitops promote`);          `journal show`, `journal verify` and `doctor` work beside it; otherwise give this          process another state_dir",
        holder = HolderPid(*holder_pid)
    )]
    Locked {
        state_dir: PathBuf,
        lock_path: PathBuf,
        holder_pid: Option<u32>,
    },

    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{path}:{line}: corrupt record in the middle of the journal ({reason}); more lines \
         follow it and a crash tears only the last line, so this is damage, not a torn write: \
         restore the file from a backup, or inspect it with `dli-gitops journal verify`"
    )]
    CorruptRecord {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error(
        "{path}:{line}: sequence break, expected seq {expected} but found {found}; records \
         are missing or duplicated: restore the file from a backup"
    )]
    SequenceBreak {
        path: PathBuf,
        line: usize,
        expected: u64,
        found: u64,
    },

    #[error(
        "{path}{location}: written in format v{found}, newer than this build reads \
         (v{supported}); upgrade dli-gitops before using this state directory",
        location = LineSuffix(*line)
    )]
    NewerFormat {
        path: PathBuf,
        line: Option<usize>,
        found: u64,
        supported: u32,
    },

    #[error(
        "snapshot {path} is unreadable ({reason}); restore it from a backup, or move it away \
         if the journal still starts at seq 1"
    )]
    CorruptSnapshot { path: PathBuf, reason: String },

    #[error(
        "{journal} starts at seq {journal_first_seq}, but {snapshot_description}; records \
         {missing_from}..{missing_to} are lost: restore snapshot.json from a backup"
    )]
    MissingRecords {
        journal: PathBuf,
        journal_first_seq: u64,
        snapshot_description: String,
        missing_from: u64,
        missing_to: u64,
    },

    #[error("cannot append {records} record(s) to {path}; they were not written")]
    Append {
        path: PathBuf,
        records: usize,
        #[source]
        source: Arc<io::Error>,
    },

    #[error(
        "journal {path} stopped accepting appends after a failed {reason}; the records on disk \
         are intact up to the last acknowledged append: restart to recover from the file"
    )]
    Poisoned { path: PathBuf, reason: String },

    #[error(
        "the journal file {path} was moved or deleted while this process held it open \
         ({found}); records appended now would not be in the journal, so no further record is \
         written and no action is started: stop the daemon, put the journal back at {path} \
         (or restore it from a backup), and restart"
    )]
    Displaced { path: PathBuf, found: String },

    #[error("record for target {target:?} is {bytes} bytes encoded, over the {limit}-byte limit")]
    RecordTooLarge {
        target: String,
        bytes: usize,
        limit: usize,
    },

    #[error("invalid record for target {target:?}: {reason}")]
    InvalidRecord { target: String, reason: String },

    #[error("cannot encode a record for target {target:?}")]
    Encode {
        target: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("the blocking append task for target {target:?} did not finish: {source}")]
    Task {
        target: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

struct HolderPid(Option<u32>);

impl fmt::Display for HolderPid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pid) => write!(formatter, " (pid {pid})"),
            None => Ok(()),
        }
    }
}

struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(formatter, ":{line}"),
            None => Ok(()),
        }
    }
}

impl JournalError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        JournalError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
