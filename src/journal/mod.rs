//! The append-only JSON state journal: crash-safe appends with group commit, snapshots,
//! recovery on open, and the exclusive lock on the state directory.
//!
//! Files in the state directory (format in ARCHITECTURE.md, "journal"):
//! `journal.jsonl` (one checksummed record per line), `snapshot.json` (the reduced
//! [`JournalState`] up to a seq), `journal-archive/` (journal segments retired by compaction,
//! kept for `journal show`), `lock`.
//!
//! The journal does not know what a secret is: callers must never put credentials, tokens or
//! unredacted service errors in a record.

mod copy;
mod error;
mod files;
mod history;
mod lock;
mod record;
mod scan;
mod state;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use chrono::Utc;

pub use error::JournalError;
pub use files::{ARCHIVE_DIR, JOURNAL_FILE, SNAPSHOT_FILE};
pub use history::{
    RecordFilter, ShowOptions, VerifyReport, read_records, read_state, show, verify, verify_command,
};
pub use lock::LOCK_FILE;
pub use record::{
    Backup, DriftDetected, Effects, FORMAT_VERSION, Intent, KNOWN_KINDS, MAX_RECORD_BYTES,
    Observed, Outcome, Promotion, Record, RecordBody, RecordedError, RevisionApplied,
    SavepointRecord,
};
pub use scan::DroppedLine;
pub use state::{
    AppliedRevision, BackupEntry, CompactJson, DriftMark, HISTORY_LIMIT, JobState, JournalState,
    LastOutcome, ObservedEntry, PendingIntent, PromotionEntry, SAVEPOINT_CATALOG_LIMIT,
    SavepointEntry, TargetState, UnknownTarget,
};

use files::{Paths, open_journal_for_append, read_or_empty, read_snapshot, sync_directory};
use lock::DirectoryLock;
use writer::{Poison, Queue, RotateError, Waiting, Writer, prune_archive, rotate_journal};

/// How the journal writes and when it compacts.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Let concurrent appends share one write and one fsync. Off: one fsync per record.
    pub group_commit: bool,
    /// The most records one group commit writes.
    pub max_batch_records: usize,
    /// Compact once this many records were appended since the last snapshot.
    pub compact_after_records: u64,
    /// Compact once `journal.jsonl` is this large.
    pub compact_after_bytes: u64,
    /// Retired journal segments kept in `journal-archive/` for `journal show` (0 keeps none).
    pub archive_segments_kept: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            group_commit: true,
            max_batch_records: 4096,
            compact_after_records: 20_000,
            compact_after_bytes: 64 * 1024 * 1024,
            archive_segments_kept: 32,
        }
    }
}

/// What `Journal::open` found and did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecoveryReport {
    /// The seq the snapshot covered, when there was one.
    pub snapshot_seq: Option<u64>,
    /// Records replayed over the snapshot.
    pub replayed_records: usize,
    /// Records in `journal.jsonl` already included in the snapshot (a compaction was cut short).
    pub skipped_records: usize,
    /// Lines cut from the end of `journal.jsonl` (a torn write), in order.
    pub dropped: Vec<DroppedLine>,
    pub dropped_bytes: u64,
    /// Where the cut bytes were saved, for the operator to inspect.
    pub dropped_saved_to: Option<PathBuf>,
    /// The interrupted compaction was completed (the journal was archived).
    pub finished_interrupted_compaction: bool,
    /// The last seq in the state; the next append gets this + 1.
    pub last_seq: u64,
    /// Intents without an outcome, all targets.
    pub pending_intents: usize,
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionReport {
    /// The snapshot now covers records up to this seq.
    pub snapshot_seq: u64,
    /// Where the retired journal segment went (None when the journal was empty or not kept).
    pub archived_segment: Option<PathBuf>,
    /// Old segments deleted to honour `archive_segments_kept`.
    pub deleted_segments: usize,
}

/// The record kinds [`Journal::appended_by_kind`] counts (a bounded label set for metrics).
pub const RECORD_KINDS: [&str; 9] = [
    "intent",
    "outcome",
    "observed",
    "revision_applied",
    "promotion",
    "backup",
    "savepoint",
    "drift_detected",
    "unknown",
];

/// The index of a record's kind in [`RECORD_KINDS`].
fn kind_index(body: &RecordBody) -> usize {
    match body {
        RecordBody::Intent(_) => 0,
        RecordBody::Outcome(_) => 1,
        RecordBody::Observed(_) => 2,
        RecordBody::RevisionApplied(_) => 3,
        RecordBody::Promotion(_) => 4,
        RecordBody::Backup(_) => 5,
        RecordBody::Savepoint(_) => 6,
        RecordBody::DriftDetected(_) => 7,
        RecordBody::Unknown(_) => 8,
    }
}

/// Counters since open, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    pub appended_records: u64,
    /// Successful write + fsync rounds; with group commit, fewer than records.
    pub commits: u64,
    pub compactions: u64,
    pub failed_appends: u64,
}

/// A handle on an open journal. Cheap to clone; all clones share one writer and one lock.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Paths,
    options: JournalOptions,
    _lock: DirectoryLock,
    queue: Mutex<Queue>,
    queue_changed: Condvar,
    writer: Mutex<Writer>,
    state: RwLock<JournalState>,
    appended_records: AtomicU64,
    /// Appended records per kind, indexed like [`RECORD_KINDS`].
    appended_by_kind: [AtomicU64; RECORD_KINDS.len()],
    commits: AtomicU64,
    compactions: AtomicU64,
    failed_appends: AtomicU64,
}

impl fmt::Debug for Journal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Journal")
            .field("state_dir", &self.inner.paths.state_dir)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.snapshot_seq {
            Some(seq) => write!(formatter, "snapshot up to seq {seq}")?,
            None => write!(formatter, "no snapshot")?,
        }
        write!(
            formatter,
            ", {} record(s) replayed, last seq {}, {} pending intent(s)",
            self.replayed_records, self.last_seq, self.pending_intents
        )?;
        if self.skipped_records > 0 {
            write!(
                formatter,
                ", {} record(s) already in the snapshot",
                self.skipped_records
            )?;
        }
        if self.finished_interrupted_compaction {
            write!(formatter, ", finished an interrupted compaction")?;
        }
        if !self.dropped.is_empty() {
            write!(
                formatter,
                "; dropped a torn tail of {} line(s), {} byte(s), from line {}",
                self.dropped.len(),
                self.dropped_bytes,
                self.dropped[0].line
            )?;
            if let Some(path) = &self.dropped_saved_to {
                write!(formatter, " (saved to {})", path.display())?;
            }
        }
        Ok(())
    }
}

impl Journal {
    /// Opens (or creates) the journal in `state_dir`: takes the lock, loads the snapshot,
    /// replays the journal, cuts a torn tail (saving the cut bytes next to it), and finishes
    /// a compaction that a crash interrupted.
    pub fn open(
        state_dir: &Path,
        options: JournalOptions,
    ) -> Result<(Journal, RecoveryReport), JournalError> {
        fs::create_dir_all(state_dir)
            .map_err(|source| JournalError::io("create the state directory", state_dir, source))?;
        let lock = DirectoryLock::acquire(state_dir)?;
        files::make_private_directory(state_dir)?;
        let paths = Paths::new(state_dir);
        remove_leftover(&paths.snapshot.with_extension("tmp"));
        remove_leftover(&paths.journal.with_extension("jsonl.new"));

        let snapshot = read_snapshot(&paths.snapshot)?;
        let snapshot_seq = snapshot.as_ref().map(|state| state.last_seq);
        let mut state = snapshot.unwrap_or_default();

        let bytes = read_or_empty(&paths.journal)?;
        let recovered = scan::recover(&paths.journal, &bytes, scan::scan_lines(&bytes))?;
        if let Some(first) = recovered.records.first()
            && first.seq > state.last_seq + 1
        {
            return Err(JournalError::MissingRecords {
                journal: paths.journal.clone(),
                journal_first_seq: first.seq,
                snapshot_description: match snapshot_seq {
                    Some(seq) => {
                        format!("{} only covers up to seq {seq}", paths.snapshot.display())
                    }
                    None => format!("{} is missing", paths.snapshot.display()),
                },
                missing_from: state.last_seq + 1,
                missing_to: first.seq - 1,
            });
        }

        let mut dropped_saved_to = None;
        let dropped_bytes = bytes.len() as u64 - recovered.valid_length;
        if !recovered.dropped.is_empty() {
            let saved = state_dir.join(format!(
                "journal.dropped-{}.bin",
                Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
            ));
            files::write_atomically(&saved, &bytes[recovered.valid_length as usize..])?;
            cut_journal(&paths.journal, recovered.valid_length)?;
            sync_directory(state_dir)?;
            tracing::warn!(
                journal = %paths.journal.display(),
                first_line = recovered.dropped[0].line,
                lines = recovered.dropped.len(),
                bytes = dropped_bytes,
                saved_to = %saved.display(),
                reason = %recovered.dropped[0].reason,
                "Cut a torn tail from the journal; no acknowledged record was in it."
            );
            dropped_saved_to = Some(saved);
        }

        // The records stay until all are folded in, then go at once: freeing them one by one
        // between the state's allocations fragments the heap (measured: 78 MiB resident after
        // `malloc_trim` instead of 37 MiB for a 10,000-job journal).
        drop(bytes);
        let first_record_seq = recovered.records.first().map(|record| record.seq);
        let last_record_seq = recovered.records.last().map(|record| record.seq);
        let mut replayed_records = 0;
        let mut skipped_records = 0;
        for record in &recovered.records {
            if state.apply(record) {
                replayed_records += 1;
            } else {
                skipped_records += 1;
            }
        }

        drop(recovered.records);
        let finished_interrupted_compaction = skipped_records > 0 && replayed_records == 0;
        let (file, length, first_seq_in_file) = if finished_interrupted_compaction {
            let first = first_record_seq.unwrap_or_default();
            let last = last_record_seq.unwrap_or_default();
            let file = rotate_journal(&paths, first, last).map_err(RotateError::into_inner)?;
            prune_archive(&paths, options.archive_segments_kept);
            (file, 0, None)
        } else {
            (
                open_journal_for_append(&paths)?,
                recovered.valid_length,
                first_record_seq,
            )
        };

        let report = RecoveryReport {
            snapshot_seq,
            replayed_records,
            skipped_records,
            dropped: recovered.dropped,
            dropped_bytes,
            dropped_saved_to,
            finished_interrupted_compaction,
            last_seq: state.last_seq,
            pending_intents: state.pending_intent_count(),
        };
        tracing::info!(state_dir = %state_dir.display(), report = %report, "Opened the journal.");

        let writer = Writer {
            file,
            length,
            next_seq: state.last_seq + 1,
            first_seq_in_file,
            records_since_snapshot: replayed_records as u64,
            compaction_retry_at: None,
        };
        let journal = Journal {
            inner: Arc::new(Inner {
                paths,
                options,
                _lock: lock,
                queue: Mutex::new(Queue {
                    waiting: VecDeque::new(),
                    next_ticket: 0,
                    finished: HashMap::new(),
                    leader_active: false,
                    poisoned: None,
                }),
                queue_changed: Condvar::new(),
                writer: Mutex::new(writer),
                state: RwLock::new(state),
                appended_records: AtomicU64::new(0),
                appended_by_kind: Default::default(),
                commits: AtomicU64::new(0),
                compactions: AtomicU64::new(0),
                failed_appends: AtomicU64::new(0),
            }),
        };
        Ok((journal, report))
    }

    /// Appends a record and returns its seq once it is fsync'd. Concurrent appends share one
    /// write and one fsync (group commit). On `Err` the record is not in the journal (except
    /// after a failed fsync, where it may be; the journal then refuses further appends).
    pub fn append(&self, target: &str, body: RecordBody) -> Result<u64, JournalError> {
        if target.is_empty() {
            return Err(JournalError::InvalidRecord {
                target: target.into(),
                reason: "the target name is empty".into(),
            });
        }
        let inner = &*self.inner;
        let mut queue = inner.lock_queue();
        if let Some(reason) = &queue.poisoned {
            return Err(inner.poisoned_error(reason));
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push_back(Waiting {
            ticket,
            target: target.to_string(),
            body,
        });
        loop {
            if let Some(result) = queue.finished.remove(&ticket) {
                return result;
            }
            if let Some(reason) = &queue.poisoned {
                // Every waiter gets a result when the queue is poisoned; this is the safety net.
                let error = inner.poisoned_error(reason);
                queue.waiting.retain(|waiting| waiting.ticket != ticket);
                return Err(error);
            }
            if !queue.leader_active {
                queue.leader_active = true;
                let take = if inner.options.group_commit {
                    queue
                        .waiting
                        .len()
                        .min(inner.options.max_batch_records.max(1))
                } else {
                    1
                };
                let batch: Vec<Waiting> = queue.waiting.drain(..take).collect();
                drop(queue);
                let tickets: Vec<u64> = batch.iter().map(|waiting| waiting.ticket).collect();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    inner.commit_batch(batch)
                }))
                .unwrap_or_else(|_| inner.panicked_batch(&tickets));
                queue = inner.lock_queue();
                queue.finished.extend(outcome.results);
                if let Some(reason) = outcome.poisoned {
                    let stranded: Vec<u64> = queue.waiting.drain(..).map(|w| w.ticket).collect();
                    for stranded_ticket in stranded {
                        let error = inner.poisoned_error(&reason);
                        queue.finished.insert(stranded_ticket, Err(error));
                    }
                    queue.poisoned = Some(reason);
                }
                if outcome.compaction_due && queue.poisoned.is_none() {
                    // Let the appenders of this batch return while the leader compacts.
                    inner.queue_changed.notify_all();
                    drop(queue);
                    inner.compact_automatically();
                    queue = inner.lock_queue();
                }
                queue.leader_active = false;
                inner.queue_changed.notify_all();
                continue;
            }
            queue = inner
                .queue_changed
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// [`Journal::append`] for async callers: the fsync runs on tokio's blocking pool.
    pub async fn append_async(&self, target: &str, body: RecordBody) -> Result<u64, JournalError> {
        let journal = self.clone();
        let owned_target = target.to_string();
        tokio::task::spawn_blocking(move || journal.append(&owned_target, body))
            .await
            .map_err(|error| JournalError::Task {
                target: target.to_string(),
                reason: error.to_string(),
            })?
    }

    /// A copy of the reduced state.
    pub fn state(&self) -> JournalState {
        self.state_guard().clone()
    }

    /// Read access to the reduced state without copying it; appends wait while it is held.
    pub fn state_guard(&self) -> RwLockReadGuard<'_, JournalState> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Intents without an outcome in `target`, oldest first.
    pub fn pending_intents(&self, target: &str) -> Vec<PendingIntent> {
        self.state_guard().pending_intents(target)
    }

    /// Records from the archive and the live journal, filtered (what `journal show` prints).
    pub fn records(&self, filter: &RecordFilter) -> Result<Vec<Record>, JournalError> {
        read_records(&self.inner.paths.state_dir, filter)
    }

    /// Writes a snapshot of the state and retires the journal into the archive. Appends wait
    /// meanwhile. Also runs automatically per [`JournalOptions`].
    pub fn compact(&self) -> Result<CompactionReport, JournalError> {
        let inner = &*self.inner;
        let mut queue = inner.lock_queue();
        while queue.leader_active {
            queue = inner
                .queue_changed
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(reason) = &queue.poisoned {
            return Err(inner.poisoned_error(reason));
        }
        queue.leader_active = true;
        drop(queue);
        let result = {
            let mut writer = inner.lock_writer();
            inner.compact_locked(&mut writer)
        };
        let mut queue = inner.lock_queue();
        match &result {
            Err(JournalError::Poisoned { reason, .. }) => {
                queue.poisoned = Some(Poison::Failed(reason.clone()));
            }
            Err(JournalError::Displaced { found, .. }) => {
                queue.poisoned = Some(Poison::Displaced(found.clone()));
            }
            _ => {}
        }
        queue.leader_active = false;
        inner.queue_changed.notify_all();
        result
    }

    /// Counters since open.
    pub fn stats(&self) -> JournalStats {
        let inner = &*self.inner;
        JournalStats {
            appended_records: inner.appended_records.load(Ordering::Relaxed),
            commits: inner.commits.load(Ordering::Relaxed),
            compactions: inner.compactions.load(Ordering::Relaxed),
            failed_appends: inner.failed_appends.load(Ordering::Relaxed),
        }
    }

    /// Records appended since open, per kind, every kind listed (zeros included) in the
    /// order of [`RECORD_KINDS`]. Kinds this build does not know count as `unknown`.
    pub fn appended_by_kind(&self) -> Vec<(&'static str, u64)> {
        RECORD_KINDS
            .iter()
            .zip(&self.inner.appended_by_kind)
            .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
            .collect()
    }

    /// The state directory this journal lives in.
    pub fn state_dir(&self) -> &Path {
        &self.inner.paths.state_dir
    }
}

impl Inner {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poisoned_error(&self, poison: &Poison) -> JournalError {
        match poison {
            Poison::Failed(reason) => JournalError::Poisoned {
                path: self.paths.journal.clone(),
                reason: reason.clone(),
            },
            Poison::Displaced(found) => JournalError::Displaced {
                path: self.paths.journal.clone(),
                found: found.clone(),
            },
        }
    }
}

fn cut_journal(path: &Path, length: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| JournalError::io("open to cut the torn tail of", path, source))?;
    file.set_len(length)
        .and_then(|()| file.sync_all())
        .map_err(|source| JournalError::io("cut the torn tail of", path, source))
}

fn remove_leftover(path: &Path) {
    if path.exists()
        && let Err(error) = fs::remove_file(path)
    {
        tracing::warn!(file = %path.display(), %error, "Could not remove a leftover temporary file.");
    }
}
