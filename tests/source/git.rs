//! The git source: commits, branches, tags and subdirectories; unreachable repositories and
//! damaged mirrors; unknown ssh hosts; the https token.

use super::*;

fn git_config(url: &str, branch: Option<&str>, tag: Option<&str>) -> GitSourceConfig {
    let tag_line = tag.map(|t| format!("tag: {t}\n")).unwrap_or_default();
    let branch_line = branch.map(|b| format!("branch: {b}\n")).unwrap_or_default();
    serde_yaml::from_str(&format!("url: {url}\n{branch_line}{tag_line}")).unwrap()
}

#[test]
fn git_source_fetches_commits_branches_and_tags_and_snapshots_subdirectories() {
    let temp = tempfile::tempdir().unwrap();
    let work = WorkRepo::new(&temp.path().join("jobs-repo"));
    work.write("README.md", b"not a job\n");
    work.write(
        "jobs/flink/clickstream-agg.yaml",
        b"kind: FlinkSqlJob\nname: clickstream-agg\n",
    );
    work.write("jobs/flink/clickstream-agg.sql", b"SELECT 1;\n");
    work.write("jobs/big.bin", &vec![b'x'; MAX_FILE_BYTES as usize + 1]);
    std::os::unix::fs::symlink("flink/clickstream-agg.sql", work.dir.join("jobs/alias.sql"))
        .unwrap();
    let first = work.commit("first");

    // A release branch and an annotated tag at the first commit.
    let first_commit = work
        .repository
        .find_commit(git2::Oid::from_str(&first).unwrap())
        .unwrap();
    work.repository
        .branch("release", &first_commit, false)
        .unwrap();
    let signature = Signature::now("Test", "test@example.com").unwrap();
    work.repository
        .tag("v1", first_commit.as_object(), &signature, "v1", false)
        .unwrap();

    let state_dir = temp.path().join("state");
    let url = work.dir.display().to_string();
    let main = GitSource::new(&git_config(&url, Some("main"), None), &state_dir);
    assert!(main.mirror_dir().starts_with(state_dir.join("mirrors")));
    let fetched = main.fetch().expect("first fetch");
    assert_eq!(fetched, first);

    let snapshot = main.snapshot(&fetched, "jobs").expect("snapshot of jobs/");
    assert_eq!(snapshot.revision, first);
    let paths: Vec<&str> = snapshot.files.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "alias.sql",
            "big.bin",
            "flink/clickstream-agg.sql",
            "flink/clickstream-agg.yaml"
        ]
    );
    assert_eq!(
        snapshot.files["flink/clickstream-agg.sql"],
        RepoFile::Data(b"SELECT 1;\n".to_vec())
    );
    assert_eq!(
        snapshot.files["alias.sql"],
        RepoFile::Symlink {
            target: "flink/clickstream-agg.sql".to_string()
        }
    );
    assert_eq!(
        snapshot.files["big.bin"],
        RepoFile::Oversized {
            size: MAX_FILE_BYTES + 1
        }
    );
    let whole = main.snapshot(&fetched, ".").unwrap();
    assert!(whole.files.contains_key("README.md"));
    assert!(whole.files.contains_key("jobs/flink/clickstream-agg.yaml"));

    // Nothing new: the same commit, and the fetch itself is skipped (FETCH_HEAD untouched).
    let fetch_head = main.mirror_dir().join("FETCH_HEAD");
    let fetched_at = std::fs::metadata(&fetch_head).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(main.fetch().unwrap(), first);
    assert_eq!(
        std::fs::metadata(&fetch_head).unwrap().modified().unwrap(),
        fetched_at,
        "an unchanged ref costs a ref listing, not a fetch"
    );

    // A second commit on main is seen; the release branch and the tag stay put.
    work.write("jobs/flink/clickstream-agg.sql", b"SELECT 2;\n");
    std::fs::remove_file(work.dir.join("jobs/big.bin")).unwrap();
    let second = work.commit("second");
    assert_ne!(second, first);
    assert_eq!(main.fetch().unwrap(), second);
    let updated = main.snapshot(&second, "jobs/").unwrap();
    assert_eq!(
        updated.files["flink/clickstream-agg.sql"],
        RepoFile::Data(b"SELECT 2;\n".to_vec())
    );
    assert!(!updated.files.contains_key("big.bin"));
    // The older commit is still readable from the mirror.
    assert_eq!(
        main.snapshot(&first, "jobs").unwrap().files["flink/clickstream-agg.sql"],
        RepoFile::Data(b"SELECT 1;\n".to_vec())
    );

    let release = GitSource::new(&git_config(&url, Some("release"), None), &state_dir);
    assert_eq!(
        release.mirror_dir(),
        main.mirror_dir(),
        "one mirror per repository"
    );
    assert_eq!(release.fetch().unwrap(), first);
    let tagged = GitSource::new(&git_config(&url, None, Some("v1")), &state_dir);
    assert_eq!(
        tagged.fetch().unwrap(),
        first,
        "annotated tag peels to its commit"
    );

    // The daemon-facing wrapper: a snapshot only when the revision moved.
    let polled: dli_gitops::config::SourceConfig = serde_yaml::from_str(&format!(
        "git: {{url: '{url}', branch: main, path: jobs}}\n"
    ))
    .unwrap();
    let polled = dli_gitops::source::Source::from_config(&polled, &state_dir).unwrap();
    let latest = polled.poll(None).unwrap().expect("a first snapshot");
    assert_eq!(latest.revision, second);
    assert!(latest.files.contains_key("flink/clickstream-agg.sql"));
    assert_eq!(polled.poll(Some(&second)).unwrap(), None);

    // file:// urls work the same way.
    let file_url = format!("file://{}", work.dir.display());
    let via_file_url = GitSource::new(&git_config(&file_url, Some("main"), None), &state_dir);
    assert_eq!(via_file_url.fetch().unwrap(), second);

    // Clear errors for a missing branch, subdirectory and commit.
    let missing = GitSource::new(&git_config(&url, Some("nope"), None), &state_dir);
    let error = missing.fetch().unwrap_err();
    assert!(
        matches!(error, SourceError::RefNotFound { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("refs/heads/nope"), "{error}");
    let error = main.snapshot(&second, "no-such-dir").unwrap_err();
    assert!(
        matches!(error, SourceError::SubdirNotFound { .. }),
        "{error:?}"
    );
    let error = main.snapshot(&"0".repeat(40), ".").unwrap_err();
    assert!(
        matches!(error, SourceError::RevisionNotFound { .. }),
        "{error:?}"
    );
    let error = main.snapshot(&second, "README.md").unwrap_err();
    assert!(
        matches!(error, SourceError::SubdirNotFound { .. }),
        "{error:?}"
    );
}

#[test]
fn git_source_reports_unreachable_repositories_and_recovers_damaged_mirrors() {
    let temp = tempfile::tempdir().unwrap();
    let state_dir = temp.path().join("state");
    let absent = temp.path().join("does-not-exist");
    let source = GitSource::new(
        &git_config(&absent.display().to_string(), Some("main"), None),
        &state_dir,
    );
    let error = source.fetch().unwrap_err();
    assert!(matches!(error, SourceError::Fetch { .. }), "{error:?}");
    assert!(error.to_string().contains("does-not-exist"), "{error}");

    let work = WorkRepo::new(&temp.path().join("repo"));
    work.write("a.yaml", b"a: 1\n");
    let commit = work.commit("one");
    let source = GitSource::new(
        &git_config(&work.dir.display().to_string(), Some("main"), None),
        &state_dir,
    );
    // A mirror directory with garbage in it is rebuilt.
    std::fs::create_dir_all(source.mirror_dir()).unwrap();
    std::fs::write(source.mirror_dir().join("HEAD"), b"garbage").unwrap();
    assert_eq!(source.fetch().unwrap(), commit);
}

#[test]
fn git_source_refuses_ssh_hosts_that_are_not_known() {
    // No ssh server is needed: the host-key refusal happens before authentication, and an
    // unreachable host fails before either. What is checked end to end here is that an ssh
    // source without a readable known_hosts file is refused before any connection is made.
    let temp = tempfile::tempdir().unwrap();
    let spec: GitSourceConfig = serde_yaml::from_str(&format!(
        "url: git@git.example.invalid:data/jobs.git\nssh: {{key_file: {key}, known_hosts_file: {known}}}\n",
        key = temp.path().join("id_ed25519").display(),
        known = temp.path().join("known_hosts").display(),
    ))
    .unwrap();
    let source = GitSource::new(&spec, &temp.path().join("state"));
    let error = source.fetch().unwrap_err();
    assert!(
        error.to_string().contains("known_hosts"),
        "missing known_hosts must be reported: {error}"
    );
}

#[test]
fn git_source_sends_the_https_token_as_basic_auth_and_never_leaks_it() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};

    // A loopback git "server" that demands credentials and records what it gets. TLS is the
    // only part of the https path this leaves out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_sender, seen) = mpsc::channel::<Option<String>>();
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut authorization = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        authorization = Some(value.trim().to_string());
                    }
                }
                let _ = seen_sender.send(authorization);
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        })
    };

    let temp = tempfile::tempdir().unwrap();
    let token_file = temp.path().join("token");
    std::fs::write(&token_file, "tok-abc-123\n").unwrap();
    let spec: GitSourceConfig = serde_yaml::from_str(&format!(
        "url: http://{address}/data/jobs.git\nbranch: main\ntoken_file: {}\n",
        token_file.display()
    ))
    .unwrap();
    let error = GitSource::new(&spec, &temp.path().join("state"))
        .fetch()
        .unwrap_err();

    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(address);
    server.join().unwrap();

    let headers: Vec<Option<String>> = seen.try_iter().collect();
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("x-access-token:tok-abc-123")
    );
    assert!(
        headers
            .iter()
            .any(|h| h.as_deref() == Some(expected.as_str())),
        "the token was offered as basic auth: {headers:?}"
    );
    assert!(matches!(error, SourceError::Fetch { .. }), "{error:?}");
    let mut chain = error.to_string();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(inner) = cause {
        chain.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    assert!(!chain.contains("tok-abc-123"), "{chain}");
    assert!(!format!("{error:?}").contains("tok-abc-123"));
}
