//! Appends: reopened state equals a fold of the records, concurrent appends share fsyncs, records
//! that would not read back are refused, a second opener fails at once.

use super::*;

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
