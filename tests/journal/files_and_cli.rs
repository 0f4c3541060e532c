//! The journal's files under the CLI and the file system: show and verify beside a writer, a
//! read-only directory, a deleted lock file, a moved or replaced journal, private permissions.

use super::*;

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
