//! A damaged end or middle of the file, compaction with its snapshots and archives, and newer
//! formats on disk.

use super::*;

#[test]
fn truncated_last_line_is_cut_reported_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    for index in 0..3 {
        journal
            .append("dev", intent(&format!("a{index}"), "j"))
            .unwrap();
    }
    drop(journal);
    let path = journal_path(dir.path());
    let intact = fs::read(&path).unwrap();
    let mut torn = intact.clone();
    torn.extend_from_slice(br#"{"v":1,"seq":4,"time":"2026-01-01T00:00:00.000Z","targ"#);
    fs::write(&path, &torn).unwrap();

    let (journal, report) = Journal::open(dir.path(), options()).unwrap();
    assert_eq!(report.replayed_records, 3);
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(report.dropped[0].line, 4);
    assert_eq!(report.dropped_bytes, (torn.len() - intact.len()) as u64);
    assert!(
        report
            .to_string()
            .contains("dropped a torn tail of 1 line(s)"),
        "{report}"
    );
    let saved = report.dropped_saved_to.clone().unwrap();
    assert_eq!(fs::read(&saved).unwrap(), &torn[intact.len()..]);
    assert_eq!(fs::read(&path).unwrap(), intact);
    assert_eq!(journal.append("dev", intent("a3", "j")).unwrap(), 4);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok() && report.warnings.is_empty(), "{report}");
}

#[test]
fn flipped_byte_in_the_middle_is_a_hard_error_with_the_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    for index in 0..5 {
        journal
            .append("dev", intent(&format!("a{index}"), "j"))
            .unwrap();
    }
    drop(journal);
    let path = journal_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let third_line = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1;
    bytes[third_line + 25] ^= 0x20;
    fs::write(&path, &bytes).unwrap();

    let error = Journal::open(dir.path(), options()).unwrap_err();
    match &error {
        JournalError::CorruptRecord { line, .. } => assert_eq!(*line, 3),
        other => panic!("expected a corrupt record, got {other:?}"),
    }
    assert!(error.to_string().contains("journal.jsonl:3:"), "{error}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a failed open must not modify the journal"
    );
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems[0].contains("journal.jsonl:3: checksum mismatch"),
        "{report}"
    );
}

#[test]
fn compaction_snapshots_archives_and_keeps_history_for_show() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        compact_after_records: 10,
        archive_segments_kept: 2,
        ..options()
    };
    let (journal, _) = Journal::open(dir.path(), options.clone()).unwrap();
    for index in 0..35 {
        let body = if index % 2 == 0 {
            intent(&format!("a{index}"), "j")
        } else {
            outcome(&format!("a{}", index - 1), "j", index % 3 != 0)
        };
        journal.append("dev", body).unwrap();
    }
    assert_eq!(journal.stats().compactions, 3);
    let state = journal.state();
    drop(journal);
    let archive = dir.path().join(dli_gitops::journal::ARCHIVE_DIR);
    let mut segments: Vec<String> = fs::read_dir(&archive)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    segments.sort();
    assert_eq!(
        segments,
        [
            "journal-00000000000000000011-00000000000000000020.jsonl",
            "journal-00000000000000000021-00000000000000000030.jsonl"
        ]
    );
    let (journal, report) = Journal::open(dir.path(), options).unwrap();
    assert_eq!(report.snapshot_seq, Some(30));
    assert_eq!(report.replayed_records, 5);
    assert_eq!(journal.state(), state);
    let seqs: Vec<u64> = all_records(dir.path()).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (11..=35).collect::<Vec<_>>());
    let since: Vec<u64> = journal
        .records(&RecordFilter {
            since: Some(28),
            kinds: vec!["outcome".into()],
            ..RecordFilter::default()
        })
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(since, [28, 30, 32, 34]);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.archived_segments, report.last_seq), (2, Some(35)));
}

#[test]
fn history_read_beside_a_compacting_writer_has_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        compact_after_records: 15,
        archive_segments_kept: 1000,
        ..options()
    };
    let (journal, _) = Journal::open(dir.path(), options).unwrap();
    let writer = {
        let journal = journal.clone();
        std::thread::spawn(move || {
            for index in 0..300 {
                journal
                    .append("dev", intent(&format!("a{index}"), "j"))
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let seqs: Vec<u64> = all_records(dir.path()).iter().map(|r| r.seq).collect();
        if let Some(last) = seqs.last() {
            assert_eq!(seqs, (1..=*last).collect::<Vec<_>>(), "a read saw a gap");
        }
        reads += 1;
    }
    writer.join().unwrap();
    assert_eq!(all_records(dir.path()).len(), 300);
    assert!(journal.stats().compactions >= 19);
}

#[test]
fn missing_snapshot_is_fine_from_seq_one_and_an_error_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.append("dev", intent("a1", "j")).unwrap();
    drop(journal);
    assert!(!dir.path().join("snapshot.json").exists());
    let (journal, report) = Journal::open(dir.path(), options()).unwrap();
    assert_eq!((report.snapshot_seq, report.replayed_records), (None, 1));
    journal.compact().unwrap();
    journal.append("dev", intent("a2", "j")).unwrap();
    drop(journal);

    fs::remove_file(dir.path().join("snapshot.json")).unwrap();
    let error = Journal::open(dir.path(), options()).unwrap_err();
    assert!(
        matches!(
            error,
            JournalError::MissingRecords {
                journal_first_seq: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("snapshot.json is missing"),
        "{error}"
    );
    assert!(!verify(dir.path()).unwrap().is_ok());
}

#[test]
fn snapshot_newer_than_the_journal_finishes_the_interrupted_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    for index in 0..4 {
        journal
            .append("dev", intent(&format!("a{index}"), "j"))
            .unwrap();
    }
    // A crash after the snapshot was renamed into place but before the journal was
    // archived leaves a journal whose records the snapshot already holds.
    let before_compaction = fs::read(journal_path(dir.path())).unwrap();
    journal.compact().unwrap();
    let state = journal.state();
    drop(journal);
    fs::write(journal_path(dir.path()), &before_compaction).unwrap();

    let (journal, report) = Journal::open(dir.path(), options()).unwrap();
    assert_eq!(report.snapshot_seq, Some(4));
    assert_eq!((report.replayed_records, report.skipped_records), (0, 4));
    assert!(report.finished_interrupted_compaction);
    assert_eq!(journal.state(), state);
    assert_eq!(fs::read(journal_path(dir.path())).unwrap(), b"");
    assert_eq!(journal.append("dev", intent("a4", "j")).unwrap(), 5);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
}

#[test]
fn newer_formats_on_disk_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.append("dev", intent("a1", "j")).unwrap();
    journal.compact().unwrap();
    drop(journal);
    let snapshot_path = dir.path().join("snapshot.json");
    let text = fs::read_to_string(&snapshot_path).unwrap();
    // Re-seal with v 99 using the documented rule: CRC32C over the object without the checksum.
    let body = text.trim_end();
    let without = &body[..body.rfind(",\"crc32c\"").unwrap()];
    let newer = without.replacen("{\"v\":1,", "{\"v\":99,", 1) + "}";
    let sealed = format!(
        "{},\"crc32c\":\"{:08x}\"}}\n",
        &newer[..newer.len() - 1],
        crc32c::crc32c(newer.as_bytes())
    );
    fs::write(&snapshot_path, sealed).unwrap();
    let error = Journal::open(dir.path(), options()).unwrap_err();
    assert!(
        matches!(
            error,
            JournalError::NewerFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade dli-gitops"), "{error}");
}

#[test]
fn every_record_kind_round_trips_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let bodies = vec![
        intent("a1", "job"),
        outcome("a1", "job", false),
        RecordBody::Observed(Observed {
            job: "job".into(),
            live_id: Some("4711".into()),
            update_time: Some(1_790_000_000_123),
            config: json!({"cu_number": 4, "sql_body": "SELECT 1"}),
            status: Some("job_running".into()),
            managed: Some(true),
            extra: Map::new(),
        }),
        RecordBody::RevisionApplied(RevisionApplied {
            revision: "0123456789abcdef".into(),
            plan_id: Some("plan-1".into()),
            summary: "1 upgraded".into(),
            extra: Map::new(),
        }),
        RecordBody::Promotion(Promotion {
            from: "dev".into(),
            to: "prod".into(),
            revision: "0123456789abcdef".into(),
            by: "alice".into(),
            rule: "manual".into(),
            ok: true,
            message: None,
            extra: Map::new(),
        }),
        RecordBody::Backup(Backup {
            plan_id: Some("plan-1".into()),
            job: "job".into(),
            zip_paths: vec!["obs://backups/dev/job.zip".into()],
            extra: Map::new(),
        }),
    ];
    for body in &bodies {
        journal.append("dev", body.clone()).unwrap();
    }
    let read: Vec<RecordBody> = all_records(dir.path())
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(read, bodies);
    let state = journal.state();
    let target = &state.targets["dev"];
    assert_eq!(
        target.applied_revision.as_ref().unwrap().revision,
        "0123456789abcdef"
    );
    assert_eq!(target.promotions[0].by, "alice");
    assert_eq!(target.backups.len(), 1);
}
