//! Corrupted journals, reported by the CLI and never modified.

use super::*;

fn write_valid_journal(state_dir: &std::path::Path, records: usize) -> Vec<u8> {
    let (journal, _) = Journal::open(state_dir, JournalOptions::default()).expect("open");
    for index in 0..records {
        journal
            .append(
                "dev",
                RecordBody::Intent(Intent {
                    action_id: format!("action-{index}"),
                    job: format!("job-{index}"),
                    action: "create".into(),
                    plan_id: None,
                    detail: serde_json::Value::Null,
                    extra: serde_json::Map::new(),
                }),
            )
            .expect("append");
    }
    drop(journal);
    std::fs::read(state_dir.join(JOURNAL_FILE)).expect("journal bytes")
}

/// A damaged state directory: name, journal bytes, snapshot bytes, whether `verify` must fail,
/// and a fragment its report must contain.
type JournalCase<'a> = (&'a str, Vec<u8>, Option<Vec<u8>>, bool, &'a str);

/// Each damaged state directory: `journal verify` and `journal show` finish (no panic, no
/// hang), exit non-zero where there is damage, name the file (and the line where there is
/// one), and leave every file exactly as it was: inspection never repairs.
#[test]
fn corrupted_journals_are_reported_by_the_cli_and_never_modified() {
    let temp = tempfile::tempdir().expect("temp dir");
    let template = temp.path().join("template");
    let valid = write_valid_journal(&template, 6);
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            valid
                .iter()
                .enumerate()
                .filter(|(_, byte)| **byte == b'\n')
                .map(|(at, _)| at + 1),
        )
        .collect();
    let flip = |line: usize| {
        let mut bytes = valid.clone();
        bytes[line_starts[line - 1] + 12] ^= 0x04;
        bytes
    };
    let mut long_line = valid.clone();
    long_line.extend(std::iter::repeat_n(b'x', 9 * 1024 * 1024));
    long_line.push(b'\n');
    long_line.extend_from_slice(&valid[line_starts[5]..]);

    // (name, journal bytes, snapshot bytes, damaged, a fragment the report must contain)
    let cases: Vec<JournalCase<'_>> = vec![
        ("byte flipped in line 3", flip(3), None, true, ":3"),
        ("byte flipped in line 1", flip(1), None, true, ":1"),
        (
            "a record line 9 MiB long in the middle",
            long_line,
            None,
            true,
            "journal.jsonl",
        ),
        // A crash tears only the final line: garbage of many lines is damage from its first
        // line on, never a torn tail (RELIABILITY.md, finding 4).
        (
            "binary garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            None,
            true,
            ":1:",
        ),
        (
            "two garbage lines after intact records",
            [valid.clone(), b"\x00\x00garbage\n{\"v\":1}\n".to_vec()].concat(),
            None,
            true,
            ":7:",
        ),
        (
            "one garbage line after intact records",
            [valid.clone(), b"\x00\x00garbage\n".to_vec()].concat(),
            None,
            false,
            "torn tail",
        ),
        (
            "snapshot that is not JSON",
            valid.clone(),
            Some(b"{\"seq\": 3, ".to_vec()),
            true,
            "snapshot",
        ),
        (
            "snapshot ahead of a journal that starts later",
            valid[line_starts[3]..].to_vec(),
            Some(b"{}".to_vec()),
            true,
            "snapshot",
        ),
    ];
    let mut failures = Vec::new();
    for (index, (name, journal, snapshot, damaged, says)) in cases.into_iter().enumerate() {
        let state_dir = temp.path().join(format!("case-{index}"));
        std::fs::create_dir_all(&state_dir).expect("state dir");
        std::fs::write(state_dir.join(JOURNAL_FILE), &journal).expect("journal");
        if let Some(snapshot) = &snapshot {
            std::fs::write(state_dir.join(SNAPSHOT_FILE), snapshot).expect("snapshot");
        }
        let state_arg = state_dir.to_str().expect("utf-8");
        for command in [
            vec!["journal", "verify", "--state-dir", state_arg],
            vec!["journal", "show", "--state-dir", state_arg],
        ] {
            let (code, stdout, stderr) = run_binary(&command, Duration::from_secs(60));
            let all = format!("{stdout}{stderr}");
            if code == Some(101) || all.contains("panicked") {
                failures.push(format!("{name}: `{}` panicked:\n{all}", command[1]));
            }
            if code.is_none() {
                failures.push(format!("{name}: `{}` killed by a signal", command[1]));
            }
            if command[1] == "verify" && damaged && code == Some(0) {
                failures.push(format!("{name}: verify passed:\n{all}"));
            }
            if command[1] == "verify" && !all.contains(says) {
                failures.push(format!(
                    "{name}: verify's report does not say {says:?}:\n{all}"
                ));
            }
        }
        if std::fs::read(state_dir.join(JOURNAL_FILE)).ok().as_ref() != Some(&journal) {
            failures.push(format!("{name}: the journal file was modified"));
        }
        if let Some(snapshot) = &snapshot
            && std::fs::read(state_dir.join(SNAPSHOT_FILE)).ok().as_ref() != Some(snapshot)
        {
            failures.push(format!("{name}: the snapshot was modified"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
