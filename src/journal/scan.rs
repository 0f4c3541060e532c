//! Reading journal files: split into lines, check each, and tell a torn tail from damage.

use std::path::Path;

use serde::Serialize;

use super::error::JournalError;
use super::record::{DecodeError, FORMAT_VERSION, Record, decode_line};

/// How many bytes of a dropped line the recovery report quotes.
const PREVIEW_BYTES: usize = 120;

/// One line of a journal file, checked.
#[derive(Debug)]
pub(crate) struct ScannedLine {
    /// 1-based line number.
    pub number: usize,
    /// Byte offset of the line's first byte.
    pub offset: u64,
    /// Length in bytes, newline included when present.
    pub length: u64,
    pub status: LineStatus,
}

#[derive(Debug)]
pub(crate) enum LineStatus {
    Good(Box<Record>),
    /// Intact, but written by a newer format version.
    Newer {
        found: u64,
    },
    Bad {
        reason: String,
    },
}

/// A line cut from the end of the journal on open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedLine {
    pub line: usize,
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
    /// The first bytes of the line, lossily decoded, for the operator to judge.
    pub preview: String,
}

/// The valid records of a journal file, and the torn tail after them, if any.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub records: Vec<Record>,
    /// Length of the file up to and including the last valid line.
    pub valid_length: u64,
    pub dropped: Vec<DroppedLine>,
}

/// Splits `bytes` into lines and checks each. A final segment without a newline is a line too.
pub(crate) fn scan_lines(bytes: &[u8]) -> Vec<ScannedLine> {
    let mut lines = Vec::new();
    let mut offset = 0usize;
    let mut number = 0usize;
    while offset < bytes.len() {
        number += 1;
        let rest = &bytes[offset..];
        let (content, has_newline) = match rest.iter().position(|byte| *byte == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        let status = if !has_newline {
            // The append that wrote it never returned: every append writes its newline
            // before its fsync.
            LineStatus::Bad {
                reason: "no newline at the end (an append interrupted mid-write)".into(),
            }
        } else {
            match decode_line(content) {
                Ok(record) => LineStatus::Good(Box::new(record)),
                Err(DecodeError::Newer { found }) => LineStatus::Newer { found },
                Err(DecodeError::Invalid(reason)) => LineStatus::Bad { reason },
            }
        };
        let length = content.len() + usize::from(has_newline);
        lines.push(ScannedLine {
            number,
            offset: offset as u64,
            length: length as u64,
            status,
        });
        offset += length;
    }
    lines
}

/// Applies the recovery rule to a scanned file: only the final line may be torn (dropped and
/// reported), because a crash tears only the last append and every append ends its batch with
/// a newline before its fsync. A bad line with any line after it, intact or not, is damage (an
/// error with its line number): cutting it would cut records that were fsync'd and
/// acknowledged. A newer-format line anywhere is refused; sequence numbers must step by one.
pub(crate) fn recover(
    path: &Path,
    bytes: &[u8],
    lines: Vec<ScannedLine>,
) -> Result<Recovered, JournalError> {
    let final_index = lines.len().saturating_sub(1);
    let mut records = Vec::new();
    let mut dropped = Vec::new();
    let mut valid_length = 0u64;
    for (index, line) in lines.into_iter().enumerate() {
        let followed = index < final_index;
        match line.status {
            LineStatus::Newer { found } => {
                return Err(JournalError::NewerFormat {
                    path: path.to_path_buf(),
                    line: Some(line.number),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            LineStatus::Bad { reason } if followed => {
                return Err(JournalError::CorruptRecord {
                    path: path.to_path_buf(),
                    line: line.number,
                    reason,
                });
            }
            LineStatus::Bad { reason } => {
                let start = line.offset as usize;
                let end = (start + line.length as usize).min(bytes.len());
                let preview_end = end.min(start + PREVIEW_BYTES);
                dropped.push(DroppedLine {
                    line: line.number,
                    offset: line.offset,
                    bytes: line.length,
                    reason,
                    preview: String::from_utf8_lossy(&bytes[start..preview_end])
                        .trim_end()
                        .to_string(),
                });
            }
            LineStatus::Good(record) => {
                if let Some(previous) = records.last().map(|record: &Record| record.seq)
                    && record.seq != previous + 1
                {
                    return Err(JournalError::SequenceBreak {
                        path: path.to_path_buf(),
                        line: line.number,
                        expected: previous + 1,
                        found: record.seq,
                    });
                }
                valid_length = line.offset + line.length;
                records.push(*record);
            }
        }
    }
    Ok(Recovered {
        records,
        valid_length,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{RecordBody, encode_line, seal};
    use chrono::DateTime;
    use serde_json::Map;

    fn line(seq: u64) -> Vec<u8> {
        let mut fields = Map::new();
        fields.insert("kind".into(), "note_for_test".into());
        let record = Record {
            v: FORMAT_VERSION,
            seq,
            time: DateTime::from_timestamp_millis(1_790_000_000_000).unwrap(),
            target: "dev".into(),
            body: RecordBody::Unknown(fields),
        };
        let mut line = encode_line(&record).unwrap();
        line.push(b'\n');
        line
    }

    fn file(seqs: &[u64]) -> Vec<u8> {
        seqs.iter().flat_map(|seq| line(*seq)).collect()
    }

    fn run(bytes: &[u8]) -> Result<Recovered, JournalError> {
        recover(Path::new("j.jsonl"), bytes, scan_lines(bytes))
    }

    #[test]
    fn clean_file_recovers_everything() {
        let bytes = file(&[1, 2, 3]);
        let recovered = run(&bytes).unwrap();
        assert_eq!(recovered.records.len(), 3);
        assert_eq!(recovered.valid_length, bytes.len() as u64);
        assert!(recovered.dropped.is_empty());
    }

    #[test]
    fn truncated_last_line_is_dropped_and_reported() {
        let mut bytes = file(&[1, 2]);
        let whole = bytes.len();
        bytes.extend_from_slice(&line(3)[..40]);
        let recovered = run(&bytes).unwrap();
        assert_eq!(recovered.records.len(), 2);
        assert_eq!(recovered.valid_length, whole as u64);
        assert_eq!(recovered.dropped.len(), 1);
        assert_eq!(recovered.dropped[0].line, 3);
        assert_eq!(recovered.dropped[0].bytes, 40);
    }

    #[test]
    fn complete_line_without_newline_is_still_torn() {
        let mut bytes = file(&[1]);
        let mut last = line(2);
        last.pop();
        bytes.extend_from_slice(&last);
        let recovered = run(&bytes).unwrap();
        assert_eq!(recovered.records.len(), 1);
        assert_eq!(recovered.dropped.len(), 1);
    }

    #[test]
    fn flipped_byte_in_the_middle_is_an_error_with_its_line() {
        let mut bytes = file(&[1, 2, 3]);
        let second_line_start = line(1).len();
        bytes[second_line_start + 30] ^= 0x01;
        match run(&bytes) {
            Err(JournalError::CorruptRecord { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a corrupt record error, got {other:?}"),
        }
    }

    #[test]
    fn sequence_gap_is_an_error() {
        let bytes = file(&[1, 2, 4]);
        match run(&bytes) {
            Err(JournalError::SequenceBreak {
                line,
                expected,
                found,
                ..
            }) => assert_eq!((line, expected, found), (3, 3, 4)),
            other => panic!("expected a sequence break, got {other:?}"),
        }
    }

    #[test]
    fn newer_format_line_is_refused_even_at_the_tail() {
        let mut bytes = file(&[1]);
        let newer = br#"{"v":9,"seq":2,"time":"2026-01-01T00:00:00.000Z","target":"t","kind":"x"}"#;
        bytes.extend_from_slice(&seal(newer.to_vec()));
        bytes.push(b'\n');
        assert!(matches!(
            run(&bytes),
            Err(JournalError::NewerFormat {
                line: Some(2),
                found: 9,
                ..
            })
        ));
    }

    /// Several bad lines after the last intact one are damage, not a torn write: a crash
    /// tears only the final line. The error names the first bad line.
    #[test]
    fn garbage_tail_of_several_lines_is_damage_with_its_line() {
        let mut bytes = file(&[1, 2]);
        bytes.extend_from_slice(b"\0\0\0\n{\"v\":1,\"seq\n\0\0");
        match run(&bytes) {
            Err(JournalError::CorruptRecord { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a corrupt record error, got {other:?}"),
        }
    }

    /// Bit flips in each of the last two lines (the case that used to cut two acknowledged
    /// records): the first is refused with its line number.
    #[test]
    fn damage_in_the_last_two_lines_is_refused_not_cut() {
        let mut bytes = file(&[1, 2, 3, 4]);
        let third_line_start = line(1).len() * 2;
        bytes[third_line_start + 30] ^= 0x01;
        bytes[third_line_start + line(3).len() + 30] ^= 0x01;
        match run(&bytes) {
            Err(JournalError::CorruptRecord { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a corrupt record error, got {other:?}"),
        }
    }

    /// A damaged final line that still ends in a newline is a torn tail (a crash can persist
    /// the page holding the newline and lose an earlier one of the same append).
    #[test]
    fn damaged_final_line_with_its_newline_is_a_torn_tail() {
        let mut bytes = file(&[1, 2, 3]);
        let third_line_start = line(1).len() * 2;
        bytes[third_line_start + 30] ^= 0x01;
        let recovered = run(&bytes).unwrap();
        assert_eq!(recovered.records.len(), 2);
        assert_eq!(recovered.dropped.len(), 1);
        assert_eq!(recovered.dropped[0].line, 3);
    }
}
