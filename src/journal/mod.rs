//! The append-only JSON state journal: crash-safe appends with group commit, snapshots,
//! recovery on open, and the exclusive lock on the state directory.
//!
//! Files in the state directory (format below):
//! `journal.jsonl` (one checksummed record per line), `snapshot.json` (the reduced
//! [`JournalState`] up to a seq), `journal-archive/` (journal segments retired by compaction,
//! kept for `journal show`), `lock`.
//!
//! The journal does not know what a secret is: callers must never put credentials, tokens or
//! unredacted service errors in a record.
//!
//! # Design and invariants
//!
//! The daemon's memory: an append-only JSON log, a compacted snapshot, recovery, and the lock.
//! Only this module knows the on-disk format below.
//!
//! Code map: `record.rs` (record kinds, line encoding, checksum), `state.rs` (the reducer
//! `JournalState::apply`), `scan.rs` (line checks, the torn-tail rule), `writer.rs` (group commit,
//! compaction, rotation), `files.rs` (paths, snapshot, durable writes), `lock.rs`, `history.rs`
//! (read-only `show`/`verify`), `error.rs`, `mod.rs` (the `Journal` handle, `open`).
//!
//! Public API: `Journal::open(state_dir, JournalOptions) -> (Journal, RecoveryReport)`,
//! `append(target, RecordBody) -> seq` (returns after fsync), `append_async`, `state()`,
//! `state_guard()`, `pending_intents(target)`, `records(&RecordFilter)`, `compact()`, `stats()`;
//! read-only without a `Journal`: `read_records`, `read_state` (snapshot + journal, no lock), `verify`, `show`, `verify_command`.
//!
//! **`state_dir/journal.jsonl`**: UTF-8, one record per line, `\n`-terminated. A record is a JSON
//! object whose members are, in order: `v` (format version, 1), `seq` (1, 2, 3, ... with no gap,
//! continuing across compactions), `time` (RFC 3339 UTC, milliseconds), `target`, `kind`
//! (`intent`, `outcome`, `observed`, `revision_applied`, `promotion`, `backup`, `drift_detected`, `savepoint`, ...), the payload fields
//! of that kind, and last `crc32c`. Unknown payload fields and unknown kinds are kept on read and
//! written back unchanged; a `v` above the build's `FORMAT_VERSION` is refused.
//!
//! **Checksum rule**: `crc32c` is 8 lowercase hex digits of CRC32C (Castagnoli) over the line's bytes
//! with the 23-byte suffix `,"crc32c":"xxxxxxxx"}` replaced by `}` — the record exactly as written
//! without its checksum member. No re-serialisation is involved. `snapshot.json` uses the same rule.
//!
//! **Writing**: appends are queued; one thread at a time (the leader) takes every queued record (up
//! to `max_batch_records`), assigns seqs, writes them with one `write` and one `fdatasync`, folds
//! them into the state, and wakes their callers (group commit). A failed write cuts the file back to
//! its last acknowledged length; a failed fsync (or a failed cut) poisons the handle: appends are
//! refused until a restart re-reads the file (after a failed fsync the page cache cannot be trusted).
//! Before each batch is written (and before a compaction) the leader checks that the open file is
//! still `state_dir/journal.jsonl`: `fstat` of the descriptor against `stat` of the path, same device
//! and inode, link count > 0 (`Inner::check_journal_identity`). A journal moved, deleted or replaced
//! under the process fails the batch with `JournalError::Displaced` ("… was moved or deleted …; stop
//! the daemon, put the journal back …, and restart") and poisons the handle the same way, since
//! records written to an unlinked file would be lost at the next start. An action whose intent
//! cannot be journaled does not run, so the daemon stops acting on every target until restarted.
//!
//! **`snapshot.json`**: one line `{"v":1,"written_at":...,"state":<JournalState>,"crc32c":...}`;
//! `state.last_seq` is the last record it includes. Written to `snapshot.tmp`, fsync'd, renamed,
//! directory fsync'd.
//!
//! **In memory**, each job's cached observation (`ObservedEntry.config`) is a `CompactJson`: the
//! value's compact JSON text (`serde_json`'s `RawValue`), parsed only when read
//! (`JournalLedger::cached`/`view`), not a `serde_json::Value` tree. It reads and writes as the
//! value itself, so `snapshot.json` and the records are byte-for-byte what a value tree wrote;
//! text read with other spacing or key order is brought to the canonical compact form. At 10,000
//! jobs the state's heap is 23 MiB instead of 84 MiB (`bench --sections journal-memory`).
//! The snapshot is read without first building a JSON tree of the whole file (a version probe,
//! then the state straight into its types) and written from the state borrowed. On open, the
//! replayed records are folded in and then dropped together (dropping each one as it is folded in
//! leaves the heap fragmented between the state's allocations: 78 MiB resident after
//! `malloc_trim` instead of 37 MiB). Pending intents keep `detail` as a value: they last only
//! until their outcome.
//!
//! **Compaction** (every `compact_after_records` records or `compact_after_bytes`, or `compact()`),
//! appends wait meanwhile: write the snapshot; create an empty `journal.jsonl.new` and fsync it; rename
//! `journal.jsonl` to `journal-archive/journal-<first seq>-<last seq>.jsonl` (20-digit zero-padded);
//! rename the new file into place; fsync both directories; delete the oldest archived segments
//! beyond `archive_segments_kept`. The archive is history for `journal show`, never state.
//!
//! **Recovery on open**: take the lock; drop leftover `snapshot.tmp`/`journal.jsonl.new`; load the
//! snapshot (missing: empty state; damaged or newer: error); scan `journal.jsonl`. A line is bad if
//! it has no newline, fails its checksum, or does not decode. Only the final line can be torn (a
//! crash tears only the last append): a bad final line is a torn tail, saved to
//! `journal.dropped-<time>.bin`, cut (fsync), reported in `RecoveryReport`. A bad line with any line
//! after it (intact or not) is `CorruptRecord` with its line number; a seq step other than +1 is
//! `SequenceBreak`; a journal starting after `snapshot.last_seq + 1` is `MissingRecords`. Records at
//! or below the snapshot's seq are skipped; if all are (a compaction cut short after the snapshot),
//! the journal is archived to finish it.
//!
//! **Lock**: two OS locks (`File::try_lock`, i.e. `flock`, released by the kernel when the process
//! dies): first on the state directory itself (opened read-only), then on `state_dir/lock`, which
//! holds `pid=<n>` for the error message. The directory lock is the one that counts: the lock file
//! can be deleted (and a new one of the same name locked by a second process), the directory cannot
//! be unlinked while it holds the journal. The file lock is kept for older builds, which lock only
//! the file. A lock held by another pid fails at once (naming the pid the lock file records, if it
//! still exists); one recorded with our own pid is retried for up to 0.5 s (a child forked at that
//! instant briefly holds a copy of the descriptor).
//!
//! **Targets without history**: `JournalState::targets_not_in(configured)` lists targets the
//! journal has records of but the config does not name (renamed or removed); the daemon
//! (`wiring::warn_about_unknown_targets`) and `apply` warn about each at start.
//! `JournalState::knows_jobs_of(target)` is true once an action on one of the target's jobs was
//! journaled (observations alone do not count); when it is false — a new target, a lost journal,
//! a renamed target — `pass::adopt_without_history` runs before the first executing pass (daemon)
//! or before the plan is shown (`apply`), once per process and target: every live job with this
//! installation's managed-by tag (`instance`) gets an outcome record (managed, live id, a note), and when its desired job has a
//! `restore`, that restore marked applied, so the planner adopts the job instead of importing the
//! restore savepoint a second time over state the job has built since. From then on the journal has
//! history of the target, so a later restart never decides this again (a restore added to git
//! later runs normally).
//!
//! Permissions: `Journal::open` makes the state directory 0700 (when this user owns it; else it
//! warns) and every file the journal writes (journal, snapshot, lock, archived segments, a saved
//! torn tail) is created 0600, whatever the umask: the journal holds SQL bodies, which often carry
//! connector passwords.
//!
//! Invariants: the state is a pure fold of records (`JournalState::apply`), shared by replay and live
//! appends; an append that returned `Ok(seq)` is on disk and survives any later crash; nothing
//! acknowledged is ever dropped silently; `show`/`verify` never write and take no lock; records
//! never hold secrets (callers' duty: the journal cannot tell).

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
    Observed, Outcome, Promotion, RECORD_KINDS, Record, RecordBody, RecordedError, RevisionApplied,
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

/// Refuses a journal whose first record is past the snapshot's next seq: records in between
/// are missing (a journal without its snapshot, or from another state directory).
fn check_no_gap(
    paths: &Paths,
    recovered: &scan::Recovered,
    last_seq: u64,
    snapshot_seq: Option<u64>,
) -> Result<(), JournalError> {
    if let Some(first) = recovered.records.first()
        && first.seq > last_seq + 1
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
            missing_from: last_seq + 1,
            missing_to: first.seq - 1,
        });
    }
    Ok(())
}

/// Cuts a torn tail (lines no acknowledged append wrote whole) from the journal, saving the
/// cut bytes next to it first; returns where they were saved, if there was a tail.
fn save_torn_tail(
    state_dir: &Path,
    paths: &Paths,
    bytes: &[u8],
    recovered: &scan::Recovered,
) -> Result<Option<PathBuf>, JournalError> {
    if recovered.dropped.is_empty() {
        return Ok(None);
    }
    let dropped_bytes = bytes.len() as u64 - recovered.valid_length;
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
    Ok(Some(saved))
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
        check_no_gap(&paths, &recovered, state.last_seq, snapshot_seq)?;

        let dropped_bytes = bytes.len() as u64 - recovered.valid_length;
        let dropped_saved_to = save_torn_tail(state_dir, &paths, &bytes, &recovered)?;

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
        let journal = Journal::from_parts(paths, options, lock, writer, state);
        Ok((journal, report))
    }

    /// The journal over its opened parts: the lock, the writer and the recovered state.
    fn from_parts(
        paths: Paths,
        options: JournalOptions,
        lock: DirectoryLock,
        writer: Writer,
        state: JournalState,
    ) -> Journal {
        Journal {
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
        }
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
            .map_err(|source| JournalError::Task {
                target: target.to_string(),
                source,
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
