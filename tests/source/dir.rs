//! The directory source: named pipes, digests and debounced bursts, the same revision as
//! `validate`.

use super::*;

// ---------------------------------------------------------------------------------------------
// watched directory

/// A named pipe in a watched directory is recorded as what it is and never opened (reading a
/// pipe would block the snapshot forever), so `spec` can report it instead of "missing".
#[test]
fn dir_source_records_a_named_pipe_without_opening_it() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("jobs");
    std::fs::create_dir_all(root.join("flink")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("flink/pipe.sql"))
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    let snapshot = DirSource::new(&root).snapshot().unwrap();
    assert_eq!(
        snapshot.files.get("flink/pipe.sql"),
        Some(&RepoFile::NotRegular {
            kind: "a named pipe".into()
        })
    );
}

#[tokio::test]
async fn dir_source_digests_contents_and_debounces_bursts() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("jobs");
    std::fs::create_dir_all(root.join("flink")).unwrap();
    std::fs::write(root.join("flink/a.yaml"), b"kind: FlinkSqlJob\n").unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    std::os::unix::fs::symlink("flink/a.yaml", root.join("link.yaml")).unwrap();
    let source = DirSource::new(&root);

    let first = source.snapshot().unwrap();
    assert!(first.revision.starts_with("sha256:"), "{}", first.revision);
    assert_eq!(
        first.files.keys().collect::<Vec<_>>(),
        ["flink/a.yaml", "link.yaml"]
    );
    assert_eq!(
        first.files["link.yaml"],
        RepoFile::Symlink {
            target: "flink/a.yaml".into()
        }
    );
    assert_eq!(
        source.snapshot().unwrap().revision,
        first.revision,
        "stable digest"
    );

    let debounce = Duration::from_millis(300);
    let mut changes = source.watch(debounce).unwrap();
    // A burst of editor-like writes, closer together than the debounce.
    for round in 0..10 {
        std::fs::write(
            root.join("flink/a.yaml"),
            format!("kind: FlinkSqlJob\n# {round}\n"),
        )
        .unwrap();
        std::fs::write(root.join(format!("flink/.a.yaml.swp{round}")), b"swap").unwrap();
        std::fs::remove_file(root.join(format!("flink/.a.yaml.swp{round}"))).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change notification after the burst")
        .expect("watcher alive");
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), changes.recv())
            .await
            .is_err(),
        "one burst gives one notification"
    );
    let second = source.snapshot().unwrap();
    assert_ne!(second.revision, first.revision);
    let polled = dli_gitops::source::Source::Dir {
        source: source.clone(),
        debounce,
    };
    assert_eq!(polled.poll(Some(&second.revision)).unwrap(), None);
    assert_eq!(
        polled.poll(Some(&first.revision)).unwrap(),
        Some(second.clone())
    );

    // Reading the directory does not count as a change.
    let _ = source.snapshot().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(800), changes.recv())
            .await
            .is_err(),
        "reads are not changes"
    );

    // Changes inside .git are not changes to the jobs.
    std::fs::write(root.join(".git/HEAD"), b"ref: refs/heads/other\n").unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(800), changes.recv())
            .await
            .is_err(),
        ".git changes are ignored"
    );

    // A later, separate edit is a new notification.
    std::fs::write(root.join("flink/b.yaml"), b"kind: FlinkJarJob\n").unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a second notification")
        .expect("watcher alive");

    let error = DirSource::new(&temp.path().join("missing"))
        .snapshot()
        .unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
}

/// `validate --format json` and the daemon's directory source read a directory with the same
/// reader, so they report the same revision for it (nested files, a symlink, an oversized
/// file and a `.git` directory included).
#[test]
fn validate_and_the_directory_source_report_the_same_revision() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("jobs");
    std::fs::create_dir_all(root.join("flink")).unwrap();
    std::fs::create_dir_all(root.join("environments")).unwrap();
    std::fs::create_dir_all(root.join("flink/.git")).unwrap();
    std::fs::write(root.join("flink/.git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    std::fs::write(root.join("environments/dev.yaml"), b"variables: {}\n").unwrap();
    std::fs::write(
        root.join("flink/clicks.yaml"),
        b"kind: FlinkSqlJob\nname: clicks\nqueue_name: q1\nsql_file: clicks.sql\n",
    )
    .unwrap();
    std::fs::write(root.join("flink/clicks.sql"), b"SELECT 1").unwrap();
    std::os::unix::fs::symlink("clicks.sql", root.join("flink/alias.sql")).unwrap();
    let big = std::fs::File::create(root.join("big.bin")).unwrap();
    big.set_len(MAX_FILE_BYTES + 1).unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["validate", "--format", "json", "--env", "dev", "--repo"])
        .arg(&root)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {output:?}"));
    let validated = json["revision"]
        .as_str()
        .expect("validate reports a revision");
    let watched = DirSource::new(&root).snapshot().unwrap().revision;
    assert!(watched.starts_with("sha256:"), "{watched}");
    assert_eq!(validated, watched);

    // An edit changes both alike.
    std::fs::write(root.join("flink/clicks.sql"), b"SELECT 2").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["validate", "--format", "json", "--repo"])
        .arg(&root)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let edited = DirSource::new(&root).snapshot().unwrap().revision;
    assert_ne!(edited, watched);
    assert_eq!(json["revision"].as_str(), Some(edited.as_str()));
}
