//! SIGKILL at random moments, a power cut and a full disk: nothing acknowledged is lost.

use super::*;

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
