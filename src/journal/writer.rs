//! The writer side of the journal: group commit, compaction and journal rotation.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::error::JournalError;
use super::files::{self, Paths, sync_directory};
use super::record::{
    FORMAT_VERSION, MAX_RECORD_BYTES, Record, RecordBody, decode_line, encode_line, now_millis,
};
use super::{CompactionReport, Inner};

/// Appends waiting for a leader to write them, and the results handed back.
pub(super) struct Queue {
    pub(super) waiting: VecDeque<Waiting>,
    pub(super) next_ticket: u64,
    pub(super) finished: HashMap<u64, Result<u64, JournalError>>,
    /// One thread at a time writes (the leader); the others wait for their ticket.
    pub(super) leader_active: bool,
    /// Set after a failure that leaves the file in an unknown state (a failed fsync), or once
    /// the open file is no longer `journal.jsonl`.
    pub(super) poisoned: Option<Poison>,
}

/// Why the journal refuses every further append until a restart.
#[derive(Debug, Clone)]
pub(super) enum Poison {
    /// A write, fsync, rotation or commit failed: the file's state is unknown.
    Failed(String),
    /// The open file is no longer `state_dir/journal.jsonl` (moved, deleted or replaced).
    Displaced(String),
}

pub(super) struct Waiting {
    pub(super) ticket: u64,
    pub(super) target: String,
    pub(super) body: RecordBody,
}

pub(super) struct Writer {
    pub(super) file: File,
    /// Length of the acknowledged content of `journal.jsonl`.
    pub(super) length: u64,
    pub(super) next_seq: u64,
    pub(super) first_seq_in_file: Option<u64>,
    pub(super) records_since_snapshot: u64,
    /// After a failed automatic compaction, wait for this many more records before retrying.
    pub(super) compaction_retry_at: Option<u64>,
}

pub(super) struct BatchOutcome {
    pub(super) results: Vec<(u64, Result<u64, JournalError>)>,
    pub(super) poisoned: Option<Poison>,
    pub(super) compaction_due: bool,
}

impl Inner {
    /// Writes one batch with one `write` and one fsync, then folds it into the state.
    pub(super) fn commit_batch(&self, batch: Vec<Waiting>) -> BatchOutcome {
        let mut writer = self.lock_writer();
        let mut encoded = encode_batch(batch, writer.next_seq);
        let mut results = std::mem::take(&mut encoded.refused);
        let mut poisoned = None;
        if !encoded.records.is_empty() {
            if let Err(found) = self.check_journal_identity(&writer.file) {
                tracing::error!(
                    journal = %self.paths.journal.display(),
                    found = %found,
                    records = encoded.records.len(),
                    "The journal file was moved or deleted under this process; appends are refused until a restart."
                );
                self.failed_appends
                    .fetch_add(encoded.records.len() as u64, Ordering::Relaxed);
                for ticket in encoded.tickets {
                    results.push((
                        ticket,
                        Err(self.poisoned_error(&Poison::Displaced(found.clone()))),
                    ));
                }
                return BatchOutcome {
                    results,
                    poisoned: Some(Poison::Displaced(found)),
                    compaction_due: false,
                };
            }
            let (failure, poison) = write_durably(&mut writer, &encoded.buffer);
            poisoned = poison;
            match failure {
                None => self.fold_written(&mut writer, encoded, &mut results),
                Some(error) => {
                    self.refuse_unwritten(error, poisoned.is_some(), encoded, &mut results)
                }
            }
        }
        let options = &self.options;
        let threshold_reached = writer.records_since_snapshot >= options.compact_after_records
            || writer.length >= options.compact_after_bytes;
        let retry_allowed = writer
            .compaction_retry_at
            .is_none_or(|at| writer.records_since_snapshot >= at);
        BatchOutcome {
            results,
            poisoned,
            compaction_due: threshold_reached && retry_allowed,
        }
    }

    /// After a durable write: advances the writer, folds the records into the state, answers
    /// each ticket with its seq and counts the appends.
    fn fold_written(
        &self,
        writer: &mut Writer,
        encoded: EncodedBatch,
        results: &mut Vec<(u64, Result<u64, JournalError>)>,
    ) {
        let EncodedBatch {
            buffer,
            records,
            tickets,
            next_seq,
            ..
        } = encoded;
        let count = records.len() as u64;
        writer.length += buffer.len() as u64;
        writer.next_seq = next_seq;
        writer.first_seq_in_file.get_or_insert(records[0].seq);
        writer.records_since_snapshot += count;
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for record in &records {
                state.apply(record);
            }
        }
        for (ticket, record) in tickets.into_iter().zip(&records) {
            results.push((ticket, Ok(record.seq)));
        }
        self.appended_records.fetch_add(count, Ordering::Relaxed);
        for record in &records {
            self.appended_by_kind[super::kind_index(&record.body)].fetch_add(1, Ordering::Relaxed);
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// After a failed write or fsync: logs it and answers each ticket with the append error.
    fn refuse_unwritten(
        &self,
        error: std::io::Error,
        poisoned: bool,
        encoded: EncodedBatch,
        results: &mut Vec<(u64, Result<u64, JournalError>)>,
    ) {
        let records = encoded.records.len();
        tracing::error!(
            journal = %self.paths.journal.display(),
            records,
            %error,
            poisoned,
            "Could not append to the journal."
        );
        let shared = Arc::new(error);
        self.failed_appends
            .fetch_add(records as u64, Ordering::Relaxed);
        for ticket in encoded.tickets {
            results.push((
                ticket,
                Err(JournalError::Append {
                    path: self.paths.journal.clone(),
                    records,
                    source: Arc::clone(&shared),
                }),
            ));
        }
    }

    /// A bug panicked inside a commit: the file's state is unknown, so stop appending rather
    /// than leave every waiting thread blocked.
    pub(super) fn panicked_batch(&self, tickets: &[u64]) -> BatchOutcome {
        let reason = Poison::Failed("commit (internal panic)".to_string());
        tracing::error!(journal = %self.paths.journal.display(), "A journal commit panicked; appends are refused until a restart.");
        BatchOutcome {
            results: tickets
                .iter()
                .map(|ticket| (*ticket, Err(self.poisoned_error(&reason))))
                .collect(),
            poisoned: Some(reason),
            compaction_due: false,
        }
    }

    /// Checks that `file` (the open journal) is still `state_dir/journal.jsonl`: the path
    /// names the same device and inode, and the file still has a link. Otherwise says what was
    /// found. An operator who moves, deletes or replaces the journal under a running process
    /// would otherwise have every later record go to an unlinked file and be lost.
    #[cfg(unix)]
    pub(super) fn check_journal_identity(&self, file: &File) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let open = file
            .metadata()
            .map_err(|error| format!("cannot stat the open journal file: {error}"))?;
        if open.nlink() == 0 {
            return Err("the open file was deleted: it has no name left".to_string());
        }
        let named = match fs::metadata(&self.paths.journal) {
            Ok(named) => named,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "no file is at {} any more; the open file was moved elsewhere",
                    self.paths.journal.display()
                ));
            }
            Err(error) => {
                return Err(format!(
                    "cannot stat {}: {error}",
                    self.paths.journal.display()
                ));
            }
        };
        if (named.dev(), named.ino()) != (open.dev(), open.ino()) {
            return Err(format!(
                "{} is now another file (device {} inode {}; the open journal is device {} \
                 inode {})",
                self.paths.journal.display(),
                named.dev(),
                named.ino(),
                open.dev(),
                open.ino()
            ));
        }
        Ok(())
    }

    /// Without device and inode numbers only the path's existence can be checked.
    #[cfg(not(unix))]
    pub(super) fn check_journal_identity(&self, _file: &File) -> Result<(), String> {
        if self.paths.journal.exists() {
            Ok(())
        } else {
            Err(format!(
                "no file is at {} any more; the open file was moved elsewhere",
                self.paths.journal.display()
            ))
        }
    }

    /// Automatic compaction after a commit: a failure is logged, not returned, because the
    /// appends that triggered it are already durable.
    pub(super) fn compact_automatically(&self) {
        let mut writer = self.lock_writer();
        match self.compact_locked(&mut writer) {
            Ok(report) => {
                writer.compaction_retry_at = None;
                tracing::info!(
                    snapshot_seq = report.snapshot_seq,
                    archived = ?report.archived_segment,
                    "Compacted the journal."
                );
            }
            Err(error) => {
                let retry_at =
                    writer.records_since_snapshot + self.options.compact_after_records.max(1);
                writer.compaction_retry_at = Some(retry_at);
                tracing::warn!(
                    journal = %self.paths.journal.display(),
                    error = %error,
                    retry_after_records = retry_at,
                    "Could not compact the journal; appends continue and compaction will be retried."
                );
                match error {
                    JournalError::Poisoned { reason, .. } => {
                        drop(writer);
                        self.lock_queue().poisoned = Some(Poison::Failed(reason));
                    }
                    JournalError::Displaced { found, .. } => {
                        drop(writer);
                        self.lock_queue().poisoned = Some(Poison::Displaced(found));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Snapshot, then retire the journal file into the archive. The caller is the leader.
    pub(super) fn compact_locked(
        &self,
        writer: &mut Writer,
    ) -> Result<CompactionReport, JournalError> {
        // Rotating a file that is no longer ours would archive someone else's journal.
        if let Err(found) = self.check_journal_identity(&writer.file) {
            return Err(JournalError::Displaced {
                path: self.paths.journal.clone(),
                found,
            });
        }
        // Encoded under the read guard instead of from a copy of the state (a copy of 10,000
        // jobs is tens of MB): the leader holds the writer, so no commit changes the state
        // meanwhile anyway; readers are not blocked. Written and fsync'd after the guard.
        let (encoded, last_seq) = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            (files::encode_snapshot(&state)?, state.last_seq)
        };
        files::write_encoded_snapshot(&self.paths, &encoded)?;
        drop(encoded);
        let mut archived_segment = None;
        if let Some(first_seq) = writer.first_seq_in_file
            && writer.length > 0
        {
            let segment = self.paths.archive_segment(first_seq, last_seq);
            match rotate_journal(&self.paths, first_seq, last_seq) {
                Ok(file) => {
                    writer.file = file;
                    writer.length = 0;
                    writer.first_seq_in_file = None;
                    archived_segment = Some(segment);
                }
                Err(RotateError::Before(error)) => return Err(error),
                Err(RotateError::After(error)) => {
                    // The open file handle now points into the archive: appending through it
                    // would misplace records, so stop appends until a restart.
                    return Err(JournalError::Poisoned {
                        path: self.paths.journal.clone(),
                        reason: format!(
                            "journal rotation ({})",
                            crate::error_chain::error_chain(&error)
                        ),
                    });
                }
            }
        }
        writer.records_since_snapshot = 0;
        let deleted_segments = prune_archive(&self.paths, self.options.archive_segments_kept);
        self.compactions.fetch_add(1, Ordering::Relaxed);
        let archived_segment = archived_segment.filter(|segment| segment.exists());
        Ok(CompactionReport {
            snapshot_seq: last_seq,
            archived_segment,
            deleted_segments,
        })
    }
}

pub(super) enum RotateError {
    /// Nothing changed on disk.
    Before(JournalError),
    /// The journal was moved into the archive but no new journal is in place.
    After(JournalError),
}

impl RotateError {
    pub(super) fn into_inner(self) -> JournalError {
        match self {
            RotateError::Before(error) | RotateError::After(error) => error,
        }
    }
}

/// Moves `journal.jsonl` to the archive and puts an empty, durable journal in its place.
/// The empty file is made first so a failure after the move is the only dangerous one.
pub(super) fn rotate_journal(
    paths: &Paths,
    first_seq: u64,
    last_seq: u64,
) -> Result<File, RotateError> {
    let next = paths.journal.with_extension("jsonl.new");
    fs::create_dir_all(&paths.archive_dir)
        .map_err(|source| JournalError::io("create", &paths.archive_dir, source))
        .and_then(|()| {
            super::files::private_file_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&next)
                .and_then(|file| file.sync_all())
                .map_err(|source| JournalError::io("create", &next, source))
        })
        .map_err(RotateError::Before)?;
    let segment = paths.archive_segment(first_seq, last_seq);
    fs::rename(&paths.journal, &segment).map_err(|source| {
        RotateError::Before(JournalError::io("archive", &paths.journal, source))
    })?;
    let after = |error| RotateError::After(error);
    fs::rename(&next, &paths.journal).map_err(|source| {
        after(JournalError::io(
            "put a new journal at",
            &paths.journal,
            source,
        ))
    })?;
    sync_directory(&paths.archive_dir).map_err(after)?;
    sync_directory(&paths.state_dir).map_err(after)?;
    OpenOptions::new()
        .append(true)
        .open(&paths.journal)
        .map_err(|source| {
            after(JournalError::io(
                "open for appending",
                &paths.journal,
                source,
            ))
        })
}

/// Deletes the oldest archived segments beyond `keep`. Failures are logged: the archive is
/// history for people, not state.
pub(super) fn prune_archive(paths: &Paths, keep: usize) -> usize {
    let segments = match paths.archive_segments() {
        Ok(segments) => segments,
        Err(error) => {
            tracing::warn!(%error, "Could not list the journal archive.");
            return 0;
        }
    };
    let excess = segments.len().saturating_sub(keep);
    let mut deleted = 0;
    for (_, _, path) in segments.into_iter().take(excess) {
        match fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(error) => {
                tracing::warn!(segment = %path.display(), %error, "Could not delete an old journal segment.");
            }
        }
    }
    if deleted > 0
        && let Err(error) = sync_directory(&paths.archive_dir)
    {
        tracing::warn!(%error, "Could not fsync the journal archive directory.");
    }
    deleted
}

/// A batch encoded for one write: the lines, the records and tickets they carry, the seq after
/// them, and the appends refused before writing (too large, not readable back, not encodable).
struct EncodedBatch {
    buffer: Vec<u8>,
    records: Vec<Record>,
    tickets: Vec<u64>,
    next_seq: u64,
    refused: Vec<(u64, Result<u64, JournalError>)>,
}

/// Numbers the batch's records from `first_seq` and encodes each as one line; an append that
/// cannot be written is refused here and takes no seq.
fn encode_batch(batch: Vec<Waiting>, first_seq: u64) -> EncodedBatch {
    let mut encoded = EncodedBatch {
        buffer: Vec::new(),
        records: Vec::with_capacity(batch.len()),
        tickets: Vec::with_capacity(batch.len()),
        next_seq: first_seq,
        refused: Vec::with_capacity(batch.len()),
    };
    let time = now_millis();
    for waiting in batch {
        let record = Record {
            v: FORMAT_VERSION,
            seq: encoded.next_seq,
            time,
            target: waiting.target,
            body: waiting.body,
        };
        match encode_line(&record) {
            Ok(line) if line.len() > MAX_RECORD_BYTES => encoded.refused.push((
                waiting.ticket,
                Err(JournalError::RecordTooLarge {
                    target: record.target,
                    bytes: line.len(),
                    limit: MAX_RECORD_BYTES,
                }),
            )),
            // A line that would not read back as this record (an `extra` map repeating a
            // field the record already has, an unknown kind without `kind`) would break
            // the next open; refuse it here instead.
            Ok(line) if decode_line(&line).as_ref() != Ok(&record) => encoded.refused.push((
                waiting.ticket,
                Err(JournalError::InvalidRecord {
                    target: record.target,
                    reason: "it would not read back as written: an `extra` or unknown-kind \
                             map repeats a field the record already has, or lacks `kind`"
                        .into(),
                }),
            )),
            Ok(line) => {
                encoded.buffer.extend_from_slice(&line);
                encoded.buffer.push(b'\n');
                encoded.records.push(record);
                encoded.tickets.push(waiting.ticket);
                encoded.next_seq += 1;
            }
            Err(source) => encoded.refused.push((
                waiting.ticket,
                Err(JournalError::Encode {
                    target: record.target,
                    source,
                }),
            )),
        }
    }
    encoded
}

/// Writes the buffer with one `write` and one fsync. On failure returns the error, and the
/// poison when the file's state is unknown afterwards: a partial write that could not be cut,
/// or a failed fsync.
fn write_durably(writer: &mut Writer, buffer: &[u8]) -> (Option<std::io::Error>, Option<Poison>) {
    match writer.file.write_all(buffer) {
        Err(write_error) => {
            // Cut whatever part of the batch reached the file, so the next append
            // does not land after half a line.
            let durable_length = writer.length;
            let cut = writer
                .file
                .set_len(durable_length)
                .and_then(|()| writer.file.sync_data());
            let poison = cut.err().map(|cut_error| {
                Poison::Failed(format!(
                    "write ({write_error}) whose partial data could not be cut ({cut_error})"
                ))
            });
            (Some(write_error), poison)
        }
        Ok(()) => match writer.file.sync_data() {
            Ok(()) => (None, None),
            Err(sync_error) => {
                // After a failed fsync the page cache may have dropped the data:
                // nothing written later could be trusted (the "fsyncgate" lesson).
                let poison = Poison::Failed(format!("fsync ({sync_error})"));
                (Some(sync_error), Some(poison))
            }
        },
    }
}
