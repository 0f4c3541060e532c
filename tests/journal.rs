//! Integration tests of the state journal through its public API and the `journal` CLI:
//! recovery from damage, compaction, the lock, a full disk, and SIGKILL crashes of a child
//! process (the child is this test binary re-run with an environment variable).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use dli_gitops::journal::{
    Backup, Effects, Intent, Journal, JournalError, JournalOptions, JournalState, Observed,
    Outcome, Promotion, Record, RecordBody, RecordFilter, RecordedError, RevisionApplied, verify,
};
use proptest::prelude::*;
use rand::Rng;
use serde_json::{Map, json};

const CHILD_DIR_ENV: &str = "DLI_GITOPS_JOURNAL_TEST_CHILD_DIR";
const CHILD_FSIZE_ENV: &str = "DLI_GITOPS_JOURNAL_TEST_CHILD_FSIZE";

fn intent(action_id: &str, job: &str) -> RecordBody {
    RecordBody::Intent(Intent {
        action_id: action_id.into(),
        job: job.into(),
        action: "upgrade".into(),
        plan_id: Some("plan-1".into()),
        detail: json!({"savepoint_dir": format!("obs://ckpt/{job}/")}),
        extra: Map::new(),
    })
}

fn outcome(action_id: &str, job: &str, ok: bool) -> RecordBody {
    RecordBody::Outcome(Outcome {
        action_id: action_id.into(),
        job: job.into(),
        ok,
        error: (!ok).then(|| RecordedError {
            code: Some("DLI.0005".into()),
            message: "queue busy".into(),
            request_id: Some("req-1".into()),
            extra: Map::new(),
        }),
        effects: Effects {
            live_id: ok.then(|| "4711".to_string()),
            savepoint_path: ok.then(|| format!("obs://ckpt/{job}/sp-1")),
            spec_digest: Some("digest-1".into()),
            managed: Some(true),
            ..Effects::default()
        },
        plan_id: None,
        extra: Map::new(),
    })
}

fn options() -> JournalOptions {
    JournalOptions {
        compact_after_records: u64::MAX,
        compact_after_bytes: u64::MAX,
        ..JournalOptions::default()
    }
}

fn open(dir: &Path) -> Journal {
    Journal::open(dir, options()).expect("open the journal").0
}

fn all_records(dir: &Path) -> Vec<Record> {
    dli_gitops::journal::read_records(dir, &RecordFilter::default()).expect("read records")
}

fn fold(records: &[Record]) -> JournalState {
    let mut state = JournalState::default();
    for record in records {
        state.apply(record);
    }
    state
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join(dli_gitops::journal::JOURNAL_FILE)
}

#[test]
fn appends_survive_reopen_and_state_matches_a_fold_of_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    assert_eq!(journal.append("dev", intent("a1", "job-a")).unwrap(), 1);
    assert_eq!(journal.append("dev", intent("a2", "job-b")).unwrap(), 2);
    assert_eq!(
        journal.append("dev", outcome("a1", "job-a", true)).unwrap(),
        3
    );
    let pending: Vec<String> = journal
        .pending_intents("dev")
        .into_iter()
        .map(|p| p.action_id)
        .collect();
    assert_eq!(pending, ["a2"]);
    let state_before = journal.state();
    drop(journal);

    let (journal, report) = Journal::open(dir.path(), options()).unwrap();
    assert_eq!(report.replayed_records, 3);
    assert_eq!(report.pending_intents, 1);
    assert!(report.dropped.is_empty());
    assert_eq!(journal.state(), state_before);
    assert_eq!(journal.state(), fold(&all_records(dir.path())));
    assert_eq!(journal.append("prod", intent("a3", "job-a")).unwrap(), 4);
    assert!(
        journal
            .append("", intent("a4", "job-a"))
            .unwrap_err()
            .to_string()
            .contains("target name is empty")
    );
}

#[test]
fn concurrent_appends_get_unique_contiguous_seqs_and_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let threads = 32;
    let per_thread = 40;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let journal = journal.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..per_thread)
                    .map(|index| {
                        let id = format!("t{thread}-{index}");
                        (journal.append("dev", intent(&id, "job")).unwrap(), id)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    for handle in handles {
        for (seq, id) in handle.join().unwrap() {
            assert!(
                acknowledged.insert(seq, id).is_none(),
                "seq {seq} given twice"
            );
        }
    }
    let total = (threads * per_thread) as u64;
    assert_eq!(
        acknowledged.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let stats = journal.stats();
    assert_eq!(stats.appended_records, total);
    assert!(
        stats.commits < total,
        "32 threads appending at once should share fsyncs, got {} commits for {total} records",
        stats.commits
    );
    for record in all_records(dir.path()) {
        let RecordBody::Intent(intent) = &record.body else {
            panic!("unexpected record {record:?}");
        };
        assert_eq!(acknowledged[&record.seq], intent.action_id);
    }
}

#[test]
fn appends_are_counted_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.append("dev", intent("a-1", "clicks")).unwrap();
    journal
        .append("dev", outcome("a-1", "clicks", true))
        .unwrap();
    journal.append("dev", intent("a-2", "views")).unwrap();
    // A refused record is not counted.
    assert!(journal.append("", intent("a-3", "views")).is_err());
    let counts: BTreeMap<&str, u64> = journal.appended_by_kind().into_iter().collect();
    assert_eq!(counts.len(), dli_gitops::journal::RECORD_KINDS.len());
    assert_eq!(counts["intent"], 2);
    assert_eq!(counts["outcome"], 1);
    assert_eq!(counts["observed"], 0);
    assert_eq!(
        counts.values().sum::<u64>(),
        journal.stats().appended_records
    );
}

#[test]
fn without_group_commit_every_record_has_its_own_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        group_commit: false,
        ..options()
    };
    let (journal, _) = Journal::open(dir.path(), options).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|thread| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                for index in 0..10 {
                    journal
                        .append("dev", intent(&format!("{thread}-{index}"), "j"))
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let stats = journal.stats();
    assert_eq!((stats.appended_records, stats.commits), (40, 40));
}

#[tokio::test]
async fn append_async_commits_from_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let seq = journal
        .append_async("dev", intent("async-1", "job"))
        .await
        .unwrap();
    assert_eq!(seq, 1);
    assert_eq!(journal.pending_intents("dev").len(), 1);
}

#[test]
fn records_that_would_not_read_back_are_refused_and_the_journal_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let mut clashing = Map::new();
    clashing.insert("seq".into(), json!(999));
    let RecordBody::Intent(mut body) = intent("a1", "j") else {
        unreachable!()
    };
    body.extra = clashing;
    let error = journal.append("dev", RecordBody::Intent(body)).unwrap_err();
    assert!(
        matches!(error, JournalError::InvalidRecord { .. }),
        "{error:?}"
    );
    let mut no_kind = Map::new();
    no_kind.insert("job".into(), json!("j"));
    let error = journal
        .append("dev", RecordBody::Unknown(no_kind))
        .unwrap_err();
    assert!(error.to_string().contains("would not read back"), "{error}");
    let huge = RecordBody::Intent(Intent {
        detail: json!("x".repeat(dli_gitops::journal::MAX_RECORD_BYTES)),
        ..match intent("a2", "j") {
            RecordBody::Intent(intent) => intent,
            _ => unreachable!(),
        }
    });
    let error = journal.append("dev", huge).unwrap_err();
    assert!(
        matches!(error, JournalError::RecordTooLarge { .. }),
        "{error:?}"
    );
    let mut future_kind = Map::new();
    future_kind.insert("kind".into(), json!("drift_alert"));
    future_kind.insert("job".into(), json!("j"));
    assert_eq!(
        journal
            .append("dev", RecordBody::Unknown(future_kind))
            .unwrap(),
        1
    );
    assert_eq!(journal.append("dev", intent("a3", "j")).unwrap(), 2);
    drop(journal);
    let (_, report) = Journal::open(dir.path(), options()).unwrap();
    assert_eq!(report.last_seq, 2);
    assert!(verify(dir.path()).unwrap().warnings[0].contains("drift_alert"));
}

#[test]
fn a_second_opener_fails_at_once_naming_the_lock_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let error = Journal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(error, JournalError::Locked { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().join("lock").display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    drop(journal);
    open(dir.path());
}

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

#[test]
fn cli_show_and_verify_work_while_the_journal_is_held_open() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal
        .append("dev", intent("a1", "clickstream-agg"))
        .unwrap();
    journal
        .append("dev", outcome("a1", "clickstream-agg", true))
        .unwrap();
    journal
        .append("prod", intent("a2", "fraud-detector"))
        .unwrap();
    let binary = env!("CARGO_BIN_EXE_dli-gitops");
    let run = |args: &[&str]| {
        let output = Command::new(binary)
            .args(["journal"])
            .args(args)
            .args(["--state-dir", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };

    let (code, stdout, stderr) = run(&["show"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("SEQ  TIME"), "{stdout}");
    assert!(
        lines[1].contains("intent")
            && lines[1].contains("upgrade [a1]")
            && lines[1].ends_with("ok (seq 2)"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("outcome") && lines[2].contains("ok live_id=4711"),
        "{stdout}"
    );
    assert!(
        lines[3].contains("fraud-detector") && lines[3].ends_with("no outcome yet"),
        "{stdout}"
    );

    let (code, stdout, _) = run(&["show", "--target", "prod", "--json"]);
    assert_eq!(code, Some(0));
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["seq"], 3);
    assert_eq!(records[0]["kind"], "intent");

    let (code, stdout, _) = run(&["show", "--since", "3"]);
    assert_eq!((code, stdout.lines().count()), (Some(0), 2));

    let (code, stdout, stderr) = run(&["verify"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("ok: no snapshot, 3 journal record(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 pending intent(s)"), "{stdout}");
    drop(journal);

    let path = journal_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    let (code, stdout, _) = run(&["verify"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("journal.jsonl:1:") && stdout.contains("FAILED"),
        "{stdout}"
    );
    let (code, _, stderr) = run(&["show"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("journal.jsonl:1: corrupt record"),
        "{stderr}"
    );
}

#[test]
#[ignore = "permission bits bind only a non-root user (root ignores them); run with --ignored as a non-root user"]
fn read_only_state_directory_gives_a_clear_error_and_loses_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let journal = open(&state_dir);
    journal.append("dev", intent("a1", "j")).unwrap();
    drop(journal);
    let set_mode = |mode: u32| {
        for entry in fs::read_dir(&state_dir).unwrap() {
            let path = entry.unwrap().path();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o666)).unwrap();
        }
        fs::set_permissions(&state_dir, fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(0o555);
    let probe = state_dir.join("probe");
    if fs::write(&probe, b"x").is_ok() {
        // Root (CAP_DAC_OVERRIDE) ignores permission bits, so there is nothing to observe;
        // the full-disk test below covers write failures with a limit that binds root too.
        let _ = fs::remove_file(&probe);
        set_mode(0o755);
        panic!(
            "this process ignores permission bits (root): run this test as a non-root user; the full-disk test covers write failures for root"
        );
    }
    let error = Journal::open(&state_dir, options()).unwrap_err();
    let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(
        message.contains(&state_dir.display().to_string()),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("permission denied"),
        "{message}"
    );
    assert_eq!(all_records(&state_dir).len(), 1);
    assert!(verify(&state_dir).unwrap().is_ok());
    set_mode(0o755);
    assert_eq!(
        open(&state_dir).append("dev", intent("a2", "j")).unwrap(),
        2
    );
}

/// Runs this test binary again as a child that appends records until killed (or until the
/// file-size limit stops it), printing `ack <seq> <action id>` after each append returned.
#[test]
fn deleting_the_lock_file_lets_no_second_writer_in_this_process_or_another() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.append("dev", intent("a1", "job-a")).unwrap();
    fs::remove_file(dir.path().join(dli_gitops::journal::LOCK_FILE)).unwrap();

    // A second open in this process: refused (the directory itself is locked).
    let error = Journal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(error, JournalError::Locked { .. }), "{error:?}");

    // A second process: `dli-gitops plan` opens the journal before anything else and is
    // refused too, saying who to stop.
    let config = dir.path().join("config.yaml");
    fs::create_dir_all(dir.path().join("jobs")).unwrap();
    fs::write(
        &config,
        format!(
            "state_dir: {}\nsources:\n  jobs: {{path: jobs}}\ntargets:\n  - name: dev\n    source: jobs\n    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["plan", "--config"])
        .arg(&config)
        .args(["--target", "dev"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is locked by another dli-gitops process"),
        "{stderr}"
    );
    assert!(
        !dir.path().join(dli_gitops::journal::LOCK_FILE).exists(),
        "the refused process made no lock file of its own"
    );

    // The holder goes on; once it is gone, the next open takes over and sees every record.
    journal.append("dev", outcome("a1", "job-a", true)).unwrap();
    drop(journal);
    let reopened = open(dir.path());
    assert_eq!(reopened.state().last_seq, 2);
    let contents = fs::read_to_string(dir.path().join(dli_gitops::journal::LOCK_FILE)).unwrap();
    assert_eq!(contents.trim(), format!("pid={}", std::process::id()));
}

/// The ways an operator can pull the journal away from a running writer.
enum Displace {
    Delete,
    Rename,
    /// Moved away and a copy put in its place (a different inode at the same path).
    Replace,
}

#[test]
fn an_append_to_a_moved_deleted_or_replaced_journal_is_refused_and_stays_refused() {
    for how in [Displace::Delete, Displace::Rename, Displace::Replace] {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        journal.append("dev", intent("a1", "job-a")).unwrap();
        let path = journal_path(dir.path());
        let aside = dir.path().join("journal.aside");
        let expected = match how {
            Displace::Delete => {
                fs::remove_file(&path).unwrap();
                "was deleted"
            }
            Displace::Rename => {
                fs::rename(&path, &aside).unwrap();
                "no file is at"
            }
            Displace::Replace => {
                fs::rename(&path, &aside).unwrap();
                fs::copy(&aside, &path).unwrap();
                "is now another file"
            }
        };
        let error = journal
            .append("dev", outcome("a1", "job-a", true))
            .unwrap_err();
        assert!(matches!(error, JournalError::Displaced { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(expected) && message.contains("stop the daemon"),
            "{message}"
        );
        // Every later append and a compaction are refused the same way, even once the file
        // is back: this process no longer knows what the file holds.
        if aside.exists() {
            fs::rename(&aside, &path).unwrap();
        }
        assert!(matches!(
            journal.append("dev", outcome("a1", "job-a", true)),
            Err(JournalError::Displaced { .. })
        ));
        assert!(matches!(
            journal.compact(),
            Err(JournalError::Displaced { .. })
        ));
        assert_eq!(journal.stats().appended_records, 1);
        assert_eq!(journal.state().last_seq, 1);
        drop(journal);
        // Restarted over the restored file, nothing acknowledged was lost.
        if !matches!(how, Displace::Delete) {
            let reopened = open(dir.path());
            assert_eq!(reopened.state().last_seq, 1);
            assert_eq!(reopened.pending_intents("dev").len(), 1);
        }
    }
}

fn spawn_child(state_dir: &Path, file_size_limit: Option<u64>) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "crash_writer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(limit) = file_size_limit {
        command.env(CHILD_FSIZE_ENV, limit.to_string());
    }
    command.spawn().unwrap()
}

fn child_options() -> JournalOptions {
    JournalOptions {
        // Small, so kills also land inside compactions.
        compact_after_records: 40,
        archive_segments_kept: 100_000,
        ..JournalOptions::default()
    }
}

/// The child's work: 4 threads append intents and outcomes, acknowledging each on stdout.
/// Without the environment variable it runs a bounded round in-process and checks it.
#[test]
fn crash_writer_child() {
    let Some(state_dir) = std::env::var_os(CHILD_DIR_ENV).map(PathBuf::from) else {
        let dir = tempfile::tempdir().unwrap();
        let acknowledged = write_until(dir.path(), child_options(), Some(120), |_| {});
        assert_eq!(acknowledged, 120);
        let (journal, report) = Journal::open(dir.path(), child_options()).unwrap();
        assert_eq!(report.last_seq, 120);
        assert_eq!(journal.state(), fold(&all_records(dir.path())));
        return;
    };
    let mut options = child_options();
    if let Some(limit) = std::env::var_os(CHILD_FSIZE_ENV) {
        let limit: u64 = limit.to_str().unwrap().parse().unwrap();
        options.compact_after_records = u64::MAX;
        options.compact_after_bytes = u64::MAX;
        // SAFETY: plain libc calls on this process's own limits and signal disposition,
        // made before any journal file is open.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
        }
    }
    write_until(&state_dir, options, None, |line| println!("{line}"));
}

fn write_until(
    state_dir: &Path,
    options: JournalOptions,
    limit: Option<u64>,
    report: impl Fn(String) + Send + Sync + Copy + 'static,
) -> u64 {
    let (journal, recovery) = Journal::open(state_dir, options).unwrap();
    report(format!("opened {}", recovery.last_seq));
    let handles: Vec<_> = (0..4)
        .map(|thread| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                let mut acknowledged = 0u64;
                for index in 0.. {
                    if limit.is_some_and(|limit| acknowledged * 4 >= limit) {
                        break;
                    }
                    let action_id = format!("p{}-t{thread}-{index}", std::process::id());
                    let body = if index % 2 == 0 {
                        intent(&action_id, &format!("job-{thread}"))
                    } else {
                        outcome(&action_id, &format!("job-{thread}"), true)
                    };
                    match journal.append("dev", body) {
                        Ok(seq) => {
                            acknowledged += 1;
                            report(format!("ack {seq} {action_id}"));
                        }
                        Err(error) => {
                            let mut text = error.to_string();
                            let mut source = std::error::Error::source(&error);
                            while let Some(cause) = source {
                                text.push_str(&format!(": {cause}"));
                                source = cause.source();
                            }
                            report(format!("err {text}"));
                            break;
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .sum()
}

/// Reads the child's stdout on a thread so the parent can kill it at any moment.
fn collect_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[test]
fn sigkill_at_random_moments_never_loses_an_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    let kills = 40;
    let (mut torn_tails, mut finished_compactions) = (0, 0);
    for round in 0..kills {
        let mut child = spawn_child(dir.path(), None);
        let lines = collect_lines(&mut child);
        // The test harness prints its own text first, on the same line as ours.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let opened = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("opened ") => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        if !opened {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("round {round}: the child did not open the journal");
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..40)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        for line in lines.iter() {
            if let Some(ack) = line.strip_prefix("ack ") {
                let (seq, action_id) = ack.split_once(' ').unwrap();
                let seq: u64 = seq.parse().unwrap();
                assert!(
                    acknowledged.insert(seq, action_id.to_string()).is_none(),
                    "round {round}: seq {seq} acknowledged twice"
                );
            }
        }

        if rng.gen_bool(0.5) {
            // Records in the snapshot were fsync'd before it was written: durable too.
            let snapshot_seq = fs::read(dir.path().join("snapshot.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .and_then(|snapshot| snapshot["state"]["last_seq"].as_u64());
            let durable = acknowledged.keys().last().copied().max(snapshot_seq);
            simulate_power_loss(&journal_path(dir.path()), durable, &mut rng);
        }

        let (journal, report) = Journal::open(dir.path(), child_options())
            .unwrap_or_else(|error| panic!("round {round}: the journal does not open: {error}"));
        torn_tails += usize::from(!report.dropped.is_empty());
        finished_compactions += usize::from(report.finished_interrupted_compaction);
        let records: BTreeMap<u64, Record> = all_records(dir.path())
            .into_iter()
            .map(|record| (record.seq, record))
            .collect();
        for (seq, action_id) in &acknowledged {
            let record = records.get(seq).unwrap_or_else(|| {
                panic!("round {round}: acknowledged seq {seq} is lost ({report})")
            });
            let found = match &record.body {
                RecordBody::Intent(intent) => &intent.action_id,
                RecordBody::Outcome(outcome) => &outcome.action_id,
                other => panic!("unexpected record {other:?}"),
            };
            assert_eq!(
                found, action_id,
                "round {round}: seq {seq} holds another record"
            );
        }
        assert_eq!(
            records.keys().copied().collect::<Vec<_>>(),
            (1..=report.last_seq).collect::<Vec<_>>(),
            "round {round}: the history has gaps"
        );
        assert_eq!(
            journal.state(),
            fold(&records.into_values().collect::<Vec<_>>())
        );
        drop(journal);
        let verified = verify(dir.path()).unwrap();
        assert!(verified.is_ok(), "round {round}: {verified}");
    }
    eprintln!(
        "{kills} kills: {} acknowledged records, {torn_tails} torn tails cut, \
         {finished_compactions} interrupted compactions finished",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() > kills,
        "the children should have acknowledged appends, got {}",
        acknowledged.len()
    );
}

/// What a power cut can leave that a SIGKILL cannot: the end of the file that no fsync
/// covered only partly on disk. Cuts at a random point after the last durable record, or,
/// when there is nothing after it, leaves half of a new line.
fn simulate_power_loss(path: &Path, last_durable: Option<u64>, rng: &mut impl Rng) {
    let Ok(mut bytes) = fs::read(path) else {
        return;
    };
    let mut acknowledged_end = 0;
    let mut offset = 0;
    for line in bytes.split_inclusive(|byte| *byte == b'\n') {
        offset += line.len();
        let seq = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|value| value["seq"].as_u64());
        if seq.is_some_and(|seq| Some(seq) <= last_durable) {
            acknowledged_end = offset;
        }
    }
    if acknowledged_end < bytes.len() {
        bytes.truncate(rng.gen_range(acknowledged_end + 1..=bytes.len()));
    } else {
        bytes.extend_from_slice(br#"{"v":1,"seq":424242,"time":"2026-11-22T23:59:59.999Z","tar"#);
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn full_disk_fails_the_append_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Some records first, so the limit bites in the middle of a later batch.
    let journal = open(dir.path());
    for index in 0..5 {
        journal
            .append("dev", intent(&format!("pre-{index}"), "j"))
            .unwrap();
    }
    drop(journal);
    let size_before = fs::metadata(journal_path(dir.path())).unwrap().len();
    let mut child = spawn_child(dir.path(), Some(size_before + 20_000));
    let lines: Vec<String> = collect_lines(&mut child).iter().collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {lines:?}");
    let acknowledged: Vec<u64> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("ack "))
        .map(|ack| ack.split_once(' ').unwrap().0.parse().unwrap())
        .collect();
    let errors: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with("err "))
        .collect();
    assert!(!acknowledged.is_empty() && !errors.is_empty(), "{lines:?}");
    for error in &errors {
        assert!(error.contains("journal.jsonl"), "{error}");
        assert!(
            error.contains("File too large") || error.contains("stopped accepting appends"),
            "{error}"
        );
    }
    let report = verify(dir.path()).unwrap();
    assert!(
        report.is_ok() && report.warnings.is_empty(),
        "the failed write was not cut: {report}"
    );
    let (journal, recovery) = Journal::open(dir.path(), options()).unwrap();
    assert!(recovery.dropped.is_empty());
    let seqs: Vec<u64> = all_records(dir.path()).iter().map(|r| r.seq).collect();
    for seq in &acknowledged {
        assert!(seqs.contains(seq), "acknowledged seq {seq} is lost");
    }
    let last = *seqs.last().unwrap();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert_eq!(
        journal.append("dev", intent("after", "j")).unwrap(),
        last + 1
    );
}

fn arbitrary_body() -> impl Strategy<Value = RecordBody> {
    let id = "[a-c][0-9]";
    let job = prop::sample::select(vec!["job-a", "job-b", "job-ü\n\"x\""]);
    prop_oneof![
        (id, job.clone()).prop_map(|(id, job)| intent(&id, job)),
        (id, job.clone(), any::<bool>()).prop_map(|(id, job, ok)| outcome(&id, job, ok)),
        (job.clone(), any::<Option<i64>>(), ".{0,20}").prop_map(|(job, update_time, status)| {
            RecordBody::Observed(Observed {
                job: job.into(),
                live_id: Some("1".into()),
                update_time,
                config: json!({"status": status}),
                status: Some(status),
                managed: None,
                extra: Map::new(),
            })
        }),
        (job, any::<bool>()).prop_map(|(job, deleted)| RecordBody::Outcome(Outcome {
            action_id: "d".into(),
            job: job.into(),
            ok: true,
            error: None,
            effects: Effects {
                deleted,
                backup_zips: vec!["obs://b/x.zip".into()],
                ..Effects::default()
            },
            plan_id: Some("p".into()),
            extra: Map::new(),
        })),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Append(String, Box<RecordBody>),
    Compact,
    Reopen,
}

fn arbitrary_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (prop::sample::select(vec!["dev", "prod"]), arbitrary_body())
            .prop_map(|(target, body)| Step::Append(target.to_string(), Box::new(body))),
        1 => Just(Step::Compact),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever mix of appends, compactions and reopens: the state equals a fold over every
    /// record appended, the history keeps every record, and verify passes.
    #[test]
    fn replay_and_compaction_preserve_state_and_history(steps in prop::collection::vec(arbitrary_step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let options = JournalOptions { compact_after_records: 7, archive_segments_kept: 1000, ..options() };
        let (mut journal, _) = Journal::open(dir.path(), options.clone()).unwrap();
        let mut expected = JournalState::default();
        let mut appended = Vec::new();
        for step in steps {
            match step {
                Step::Append(target, body) => {
                    let seq = journal.append(&target, (*body).clone()).unwrap();
                    appended.push((seq, target, *body));
                }
                Step::Compact => { journal.compact().unwrap(); }
                Step::Reopen => {
                    drop(journal);
                    journal = Journal::open(dir.path(), options.clone()).unwrap().0;
                }
            }
        }
        let records = all_records(dir.path());
        prop_assert_eq!(records.len(), appended.len());
        for (record, (seq, target, body)) in records.iter().zip(&appended) {
            prop_assert_eq!(record.seq, *seq);
            prop_assert_eq!(&record.target, target);
            prop_assert_eq!(&record.body, body);
            expected.apply(record);
        }
        prop_assert_eq!(journal.state(), expected.clone());
        drop(journal);
        let (journal, _) = Journal::open(dir.path(), options).unwrap();
        prop_assert_eq!(journal.state(), expected);
        prop_assert!(verify(dir.path()).unwrap().is_ok());
    }
}

/// The journal holds SQL bodies, which often carry connector passwords: under the usual umask
/// (022) the state directory is 0700 and every file the journal writes is 0600.
#[cfg(unix)]
#[test]
fn the_state_directory_and_its_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("state");
    // SAFETY: umask only changes the process's file-creation mask; it is restored below.
    let previous = unsafe { libc::umask(0o022) };
    let journal = open(&dir);
    journal.append("dev", intent("a-1", "orders")).unwrap();
    journal.compact().unwrap();
    journal.append("dev", intent("a-2", "orders")).unwrap();
    drop(journal);
    unsafe { libc::umask(previous) };

    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the state directory");
    let mut checked = 0;
    let mut pending = vec![dir.clone()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 4,
        "journal, snapshot, lock and an archived segment: {checked}"
    );
}
