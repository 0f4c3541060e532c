//! Integration tests for the daemon config and the sources: real git repositories made with
//! git2 in temp dirs and fetched through `GitSource`, webhook vectors for every provider, a
//! watched directory, and the config example plus a corpus of broken configs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dli_gitops::config::{
    Config, ConfigError, Credentials, Endpoint, GitSourceConfig, SecretRef, Service,
    StorageLocation,
};
use dli_gitops::desired::snapshot::{MAX_FILE_BYTES, RepoFile};
use dli_gitops::source::webhook::Provider;
use dli_gitops::source::{
    DirSource, GitSource, SourceError, WebhookError, WebhookEvent, verify_and_parse,
};
use git2::{IndexAddOption, Repository, RepositoryInitOptions, Signature};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

// ---------------------------------------------------------------------------------------------
// git

struct WorkRepo {
    repository: Repository,
    dir: PathBuf,
}

impl WorkRepo {
    fn new(dir: &Path) -> WorkRepo {
        let mut options = RepositoryInitOptions::new();
        options.initial_head("main");
        let repository = Repository::init_opts(dir, &options).expect("init work repository");
        WorkRepo {
            repository,
            dir: dir.to_path_buf(),
        }
    }

    fn write(&self, path: &str, contents: &[u8]) {
        let full = self.dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
    }

    fn commit(&self, message: &str) -> String {
        let mut index = self.repository.index().unwrap();
        index
            .add_all(["*"].iter(), IndexAddOption::DEFAULT, None)
            .unwrap();
        index
            .update_all(["*"].iter(), None)
            .expect("stage deletions");
        index.write().unwrap();
        let tree_id = index.write_tree().unwrap();
        let tree = self.repository.find_tree(tree_id).unwrap();
        let signature = Signature::now("Test", "test@example.com").unwrap();
        let parent = self
            .repository
            .head()
            .ok()
            .and_then(|head| head.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repository
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap()
            .to_string()
    }
}

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

// ---------------------------------------------------------------------------------------------
// webhooks

const SECRET: &[u8] = b"s3cret-webhook-key";

fn hmac_hex(body: &[u8], secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

const GITHUB_PUSH: &str = r#"{
  "ref": "refs/heads/main",
  "before": "1111111111111111111111111111111111111111",
  "after": "2222222222222222222222222222222222222222",
  "repository": {
    "full_name": "data/jobs",
    "html_url": "https://github.com/data/jobs",
    "clone_url": "https://github.com/data/jobs.git",
    "ssh_url": "git@github.com:data/jobs.git"
  }
}"#;

const GITLAB_PUSH: &str = r#"{
  "object_kind": "push",
  "ref": "refs/tags/v1.2.0",
  "after": "3333333333333333333333333333333333333333",
  "checkout_sha": "3333333333333333333333333333333333333333",
  "project": {
    "web_url": "https://gitlab.example.com/data/jobs",
    "git_ssh_url": "git@gitlab.example.com:data/jobs.git",
    "git_http_url": "https://gitlab.example.com/data/jobs.git"
  }
}"#;

const GITEA_PUSH: &str = r#"{
  "ref": "refs/heads/release",
  "after": "4444444444444444444444444444444444444444",
  "repository": {
    "html_url": "https://gitea.example.com/data/jobs",
    "clone_url": "https://gitea.example.com/data/jobs.git",
    "ssh_url": "ssh://git@gitea.example.com:2222/data/jobs.git"
  }
}"#;

#[test]
fn github_push_is_verified_and_matched() {
    let body = GITHUB_PUSH.as_bytes();
    let valid = headers(&[
        ("x-github-event", "push".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(body, SECRET)),
        ),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&valid, body, SECRET).unwrap() else {
        panic!("expected a push");
    };
    assert_eq!(push.provider, Provider::GitHub);
    assert_eq!(push.git_ref, "refs/heads/main");
    assert_eq!(
        push.after.as_deref(),
        Some("2222222222222222222222222222222222222222")
    );
    assert!(push.matches("https://github.com/data/jobs.git", "main"));
    assert!(push.matches("git@github.com:Data/Jobs.git", "refs/heads/main"));
    assert!(push.matches("ssh://git@GitHub.com/data/jobs", "main"));
    assert!(
        !push.matches("https://github.com/data/other.git", "main"),
        "wrong repo"
    );
    assert!(
        !push.matches("https://github.com/data/jobs.git", "release"),
        "wrong branch"
    );
    assert!(
        !push.matches("https://github.com/data/jobs.git", "refs/tags/main"),
        "a tag, not the branch"
    );

    let wrong = headers(&[
        ("x-github-event", "push".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(body, b"other")),
        ),
    ]);
    let error = verify_and_parse(&wrong, body, SECRET).unwrap_err();
    assert!(
        matches!(error, WebhookError::BadSignature { .. }) && error.is_unauthorized(),
        "{error:?}"
    );

    let missing = headers(&[("x-github-event", "push".into())]);
    let error = verify_and_parse(&missing, body, SECRET).unwrap_err();
    assert!(matches!(error, WebhookError::MissingSignature { .. }) && error.is_unauthorized());
    assert!(error.to_string().contains("X-Hub-Signature-256"), "{error}");

    let not_hex = headers(&[
        ("x-github-event", "push".into()),
        ("x-hub-signature-256", "sha256=zz".into()),
    ]);
    assert!(matches!(
        verify_and_parse(&not_hex, body, SECRET).unwrap_err(),
        WebhookError::MalformedSignature { .. }
    ));

    // A tampered body no longer matches its signature.
    let tampered = GITHUB_PUSH.replace("main", "evil");
    let error = verify_and_parse(&valid, tampered.as_bytes(), SECRET).unwrap_err();
    assert!(matches!(error, WebhookError::BadSignature { .. }));

    let ping_body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let ping = headers(&[
        ("x-github-event", "ping".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(ping_body, SECRET)),
        ),
    ]);
    assert_eq!(
        verify_and_parse(&ping, ping_body, SECRET).unwrap(),
        WebhookEvent::Ping {
            provider: Provider::GitHub
        }
    );
}

#[test]
fn gitlab_push_is_verified_by_token_and_matched() {
    let body = GITLAB_PUSH.as_bytes();
    let valid = headers(&[
        ("x-gitlab-event", "Tag Push Hook".into()),
        (
            "x-gitlab-token",
            String::from_utf8(SECRET.to_vec()).unwrap(),
        ),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&valid, body, SECRET).unwrap() else {
        panic!("expected a push");
    };
    assert_eq!(push.provider, Provider::GitLab);
    assert_eq!(push.git_ref, "refs/tags/v1.2.0");
    assert!(push.matches("https://gitlab.example.com/data/jobs.git", "v1.2.0"));
    assert!(push.matches("git@gitlab.example.com:data/jobs.git", "refs/tags/v1.2.0"));
    assert!(!push.matches("https://gitlab.example.com/data/jobs.git", "main"));
    assert!(!push.matches("https://gitlab.other.com/data/jobs.git", "v1.2.0"));

    let wrong = headers(&[
        ("x-gitlab-event", "Push Hook".into()),
        ("x-gitlab-token", "guess".into()),
    ]);
    assert!(matches!(
        verify_and_parse(&wrong, body, SECRET).unwrap_err(),
        WebhookError::BadSignature { .. }
    ));
    let missing = headers(&[("x-gitlab-event", "Push Hook".into())]);
    assert!(matches!(
        verify_and_parse(&missing, body, SECRET).unwrap_err(),
        WebhookError::MissingSignature { .. }
    ));
    let malformed = b"{\"ref\": ";
    let error = verify_and_parse(&valid, malformed, SECRET).unwrap_err();
    assert!(matches!(error, WebhookError::MalformedPayload { .. }) && !error.is_unauthorized());

    let other = headers(&[
        ("x-gitlab-event", "Merge Request Hook".into()),
        (
            "x-gitlab-token",
            String::from_utf8(SECRET.to_vec()).unwrap(),
        ),
    ]);
    assert!(matches!(
        verify_and_parse(&other, b"{}", SECRET).unwrap(),
        WebhookEvent::Other { .. }
    ));
}

#[test]
fn gitea_push_is_verified_and_matched() {
    let body = GITEA_PUSH.as_bytes();
    let valid = headers(&[
        ("x-gitea-event", "push".into()),
        // Gitea sends GitHub's headers too; its own take precedence.
        ("x-github-event", "push".into()),
        ("x-gitea-signature", hmac_hex(body, SECRET)),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&valid, body, SECRET).unwrap() else {
        panic!("expected a push");
    };
    assert_eq!(push.provider, Provider::Gitea);
    assert!(push.matches("ssh://git@gitea.example.com/data/jobs.git", "release"));
    assert!(push.matches("https://gitea.example.com/data/jobs", "release"));
    assert!(!push.matches("https://gitea.example.com/data/jobs", "main"));

    let wrong = headers(&[
        ("x-gitea-event", "push".into()),
        ("x-gitea-signature", hmac_hex(body, b"nope")),
    ]);
    assert!(matches!(
        verify_and_parse(&wrong, body, SECRET).unwrap_err(),
        WebhookError::BadSignature { .. }
    ));
    let missing = headers(&[("x-gitea-event", "push".into())]);
    assert!(matches!(
        verify_and_parse(&missing, body, SECRET).unwrap_err(),
        WebhookError::MissingSignature { .. }
    ));
    let not_json = b"ref=refs/heads/main";
    let signed = headers(&[
        ("x-gitea-event", "push".into()),
        ("x-gitea-signature", hmac_hex(not_json, SECRET)),
    ]);
    assert!(matches!(
        verify_and_parse(&signed, not_json, SECRET).unwrap_err(),
        WebhookError::MalformedPayload { .. }
    ));
    // A deleted branch has no commit to fetch.
    let deleted = GITEA_PUSH.replace("4444444444444444444444444444444444444444", &"0".repeat(40));
    let signed = headers(&[
        ("x-gitea-event", "push".into()),
        ("x-gitea-signature", hmac_hex(deleted.as_bytes(), SECRET)),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&signed, deleted.as_bytes(), SECRET).unwrap()
    else {
        panic!("expected a push");
    };
    assert_eq!(push.after, None);
}

#[test]
fn webhook_requests_without_provider_secret_or_within_limits_are_refused() {
    let body = GITHUB_PUSH.as_bytes();
    assert!(matches!(
        verify_and_parse(&HeaderMap::new(), body, SECRET).unwrap_err(),
        WebhookError::UnknownProvider
    ));
    let signed = headers(&[
        ("x-github-event", "push".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(body, b"")),
        ),
    ]);
    assert!(matches!(
        verify_and_parse(&signed, body, b"").unwrap_err(),
        WebhookError::NoSecret
    ));
    let huge = vec![b' '; dli_gitops::source::webhook::MAX_WEBHOOK_BODY_BYTES + 1];
    assert!(matches!(
        verify_and_parse(&signed, &huge, SECRET).unwrap_err(),
        WebhookError::TooLarge { .. }
    ));
}

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

// ---------------------------------------------------------------------------------------------
// config

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml")
}

fn load_text(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

#[test]
fn the_example_config_loads_with_an_embedded_target() {
    let config = Config::load(&example_path()).unwrap_or_else(|error| panic!("{error}"));
    let target = &config.targets[0];
    assert_eq!(target.name, "dev");
    assert!(target.is_embedded());
    assert_eq!(target.endpoint(Service::Dli), Endpoint::Embedded);
    assert_eq!(target.endpoint(Service::Iam), Endpoint::Embedded);
    assert_eq!(
        target.project_id(),
        Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    );
    let source = config.source_of(target).unwrap();
    assert_eq!(
        source.path.as_deref(),
        Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/jobs")
                .as_path()
        ),
        "relative paths resolve against the config file"
    );
    assert_eq!(source.debounce.get(), Duration::from_millis(500));
    assert_eq!(
        target.policy.resync_interval.get(),
        Duration::from_secs(300)
    );
    let credentials = Config::resolve_credentials(target).unwrap();
    let printed = format!("{credentials:?}");
    assert!(!printed.contains("dli-gitops-dev-secret-key"), "{printed}");
    assert!(matches!(credentials, Credentials::AkSk { .. }));
}

#[test]
fn the_commented_cloud_target_in_the_example_is_valid_too() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let begin = text.find("# --- begin cloud target example ---").unwrap();
    let end = text.find("# --- end cloud target example ---").unwrap();
    let uncommented: String = text[begin..end]
        .lines()
        .skip(1)
        .map(|line| line.strip_prefix('#').unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    let full = format!("{}{}", &text[..begin], uncommented);
    let temp = tempfile::tempdir().unwrap();
    let config = load_text(temp.path(), &full).unwrap_or_else(|error| panic!("{error}"));
    let prod = config.target("prod").expect("prod target");
    assert!(!prod.is_embedded());
    assert_eq!(
        prod.endpoint(Service::Dli),
        Endpoint::Url("https://dli.cn-north-4.myhuaweicloud.com".into())
    );
    assert_eq!(
        prod.endpoint(Service::Dlf),
        Endpoint::Url("https://dayu-dlf.cn-north-4.myhuaweicloud.com".into())
    );
    assert_eq!(prod.promote_from.as_deref(), Some("dev"));
    let promotion = prod.promotion();
    assert!(promotion.auto);
    assert_eq!(promotion.after.get(), Duration::from_secs(600));
    // The two promotion windows, then the target's own (they apply to promotions too).
    assert_eq!(promotion.windows.len(), 3);
    assert!(promotion.windows.iter().all(|window| window.cron().is_ok()));
    assert_eq!(prod.windows.len(), 1);
    assert_eq!(prod.windows[0].timezone.as_deref(), Some("Asia/Shanghai"));
    assert_eq!(
        prod.staging(),
        Some(StorageLocation::Obs {
            bucket: "dli-gitops-staging".into(),
            prefix: "prod/".into()
        })
    );
}

const MINIMAL: &str = "
sources:
  jobs: {path: jobs}
targets:
  - name: dev
    source: jobs
    endpoints: {dli: embedded, dlf: embedded, obs: embedded}
";

/// Loads `text` and returns the error's text, asserting that loading failed.
fn load_error(text: &str) -> String {
    let temp = tempfile::tempdir().unwrap();
    match load_text(temp.path(), text) {
        Ok(_) => panic!("expected this config to be refused:\n{text}"),
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("config.yaml"),
                "the file is named: {message}"
            );
            message
        }
    }
}

#[test]
fn minimal_config_loads() {
    let temp = tempfile::tempdir().unwrap();
    let config = load_text(temp.path(), MINIMAL).unwrap();
    assert_eq!(config.state_dir, temp.path().join("./state"));
    assert!(config.targets[0].policy.auto_sync);
    assert_eq!(config.targets[0].environment_name(), "dev");
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    let message = load_error(&format!("{MINIMAL}    policy: {{auto_synk: true}}\n"));
    assert!(message.contains("targets[0].policy"), "{message}");
    assert!(message.contains("auto_synk"), "{message}");
    assert!(message.contains("did you mean `auto_sync`?"), "{message}");
    assert!(message.contains(":8:"), "the line is given: {message}");

    let message = load_error(&MINIMAL.replace("sources:", "sourcse:"));
    assert!(message.contains("did you mean `sources`?"), "{message}");

    let message = load_error(&format!("{MINIMAL}    apply_strategy: imports\n"));
    assert!(message.contains("did you mean `import`?"), "{message}");
}

#[test]
fn inline_secrets_are_refused_everywhere() {
    let message = load_error(&format!(
        "{MINIMAL}    credentials: {{access_key_env: AK, secret_key: abc123}}\n  - name: other\n    source: jobs\n    endpoints: {{dli: embedded}}\n    credentials: {{password: hunter2, user_env: U}}\n"
    ));
    assert!(
        message.contains("targets[0].credentials.secret_key"),
        "{message}"
    );
    assert!(message.contains("secret_key_env"), "{message}");
    assert!(message.contains("secret_key_file"), "{message}");
    assert!(
        message.contains("targets[1].credentials.password"),
        "{message}"
    );
    assert!(
        !message.contains("abc123") && !message.contains("hunter2"),
        "secrets are never echoed: {message}"
    );

    let message = load_error(
        "sources:\n  jobs:\n    git: {url: https://git.example.com/a.git, token: ghp_abc}\n    webhook_secret: xyz\ntargets: []\n",
    );
    assert!(message.contains("sources.jobs.git.token"), "{message}");
    assert!(message.contains("sources.jobs.webhook_secret"), "{message}");
    assert!(!message.contains("ghp_abc"), "{message}");
}

#[test]
fn bad_durations_endpoints_and_locations_are_all_reported_at_once() {
    let message = load_error(&format!(
        "{MINIMAL}    policy: {{resync_interval: five minutes, sync_timeout: 60}}\n    staging: s3://bucket/dev/\n    backups: obs://bucket/no-trailing-slash\n  - name: prod\n    source: jobs\n    endpoints: {{dli: dli.example.com, dlf: embedded}}\n"
    ));
    for expected in [
        "targets[0].policy.resync_interval: `five minutes` is not a duration",
        "targets[0].policy.sync_timeout: `60` is not a duration",
        "add a unit, e.g. `60s`",
        "targets[0].staging: `s3://bucket/dev/` is neither",
        "targets[0].backups",
        "targets[1].endpoints.dli: `dli.example.com` is neither `embedded` nor an http(s):// URL",
        "5 problems",
    ] {
        assert!(
            message.contains(expected),
            "expected `{expected}` in:\n{message}"
        );
    }
}

#[test]
fn unknown_sources_and_targets_are_reported_with_suggestions() {
    let message = load_error(&MINIMAL.replace("    source: jobs", "    source: jbos"));
    assert!(
        message.contains("targets[0].source: unknown source `jbos`; did you mean `jobs`?"),
        "{message}"
    );
    let message = load_error(&format!(
        "{MINIMAL}  - name: prod\n    source: jobs\n    endpoints: {{dli: embedded}}\n    promote_from: deve\n    restore: {{from_target: staging}}\n"
    ));
    assert!(
        message.contains("targets[1].promote_from: unknown target `deve`; did you mean `dev`?"),
        "{message}"
    );
    assert!(
        message.contains("targets[1].restore.from_target: unknown target `staging`"),
        "{message}"
    );
}

#[test]
fn promotion_cycles_and_duplicates_are_refused() {
    let message = load_error(
        "sources:\n  jobs: {path: jobs}\ntargets:\n\
         - {name: dev, source: jobs, endpoints: {dli: embedded}, promote_from: prod}\n\
         - {name: staging, source: jobs, endpoints: {dli: embedded}, promote_from: dev}\n\
         - {name: prod, source: jobs, endpoints: {dli: embedded}, promote_from: staging}\n\
         - {name: prod, source: jobs, endpoints: {dli: embedded}}\n\
         - {name: solo, source: jobs, endpoints: {dli: embedded}, promote_from: solo}\n",
    );
    assert!(
        message.contains("promotion cycle: dev <- prod <- staging <- dev"),
        "{message}"
    );
    assert_eq!(
        message.matches("promotion cycle").count(),
        1,
        "reported once: {message}"
    );
    assert!(
        message.contains("duplicate target name `prod`"),
        "{message}"
    );
    assert!(
        message.contains("target `solo` cannot follow itself"),
        "{message}"
    );
}

#[test]
fn cloud_targets_need_region_project_credentials_and_prefixes() {
    let message = load_error(
        "sources:\n  jobs: {path: jobs}\ntargets:\n  - name: prod\n    source: jobs\n    project_id: not-a-project\n    credentials: {access_key_env: AK}\n    apply_strategy: import\n    promotion: {auto: true, windows: [{kind: deny, schedule: \"0 25 * * *\", duration: 1h}]}\n",
    );
    // `staging` is optional now that Flink jobs are written through the API (only DLF imports
    // and carried savepoints use it, and they say so when it is missing).
    assert!(!message.contains("targets[0].staging"), "{message}");
    for expected in [
        "targets[0].region: missing `region`",
        "targets[0].project_id: `not-a-project` is not a project id",
        "targets[0].credentials: AK/SK auth needs both",
        "targets[0].apply_strategy: `import` is no longer supported",
        "write `apply_strategy: api`",
        "targets[0].backups: missing `backups`",
        "targets[0].promotion: `promotion` needs `promote_from",
        "targets[0].promotion.windows[0].schedule: hour value 25 is outside 0-23",
    ] {
        assert!(
            message.contains(expected),
            "expected `{expected}` in:\n{message}"
        );
    }
}

#[test]
fn git_source_settings_are_checked() {
    let message = load_error(
        "sources:\n\
         \x20 a: {git: {url: 'git@github.com:data/jobs.git'}}\n\
         \x20 b: {git: {url: 'http://git.example.com/x.git', token_env: T, branch: main, tag: v1}}\n\
         \x20 c: {git: {url: 'https://git.example.com/x.git', path: ../up, poll_interval: 0s, poll_jitter: 2}}\n\
         \x20 d: {path: jobs, git: {url: /tmp/x}}\n\
         \x20 e: {path: jobs, webhook_secret_env: 'not a name'}\n\
         targets:\n  - {name: dev, source: a, endpoints: {dli: embedded}}\n",
    );
    for expected in [
        "sources.a.git.ssh: an ssh url needs",
        "sources.b.git.url: a token would be sent in clear text",
        "sources.b.git: set `branch` or `tag`, not both",
        "sources.c.git.path: subdirectory `../up`",
        "sources.c.git.poll_interval: `0s` is too short",
        "sources.c.git.poll_jitter",
        "sources.d: a source is either `git:` or `path:`",
        "sources.e.webhook_secret_env: the value (10 characters, not shown: it may be the secret itself) is not an environment variable name",
    ] {
        assert!(
            message.contains(expected),
            "expected `{expected}` in:\n{message}"
        );
    }
}

#[test]
fn syntax_errors_and_non_mappings_are_located() {
    let message = load_error("targets: [\n");
    assert!(message.contains("not valid YAML"), "{message}");
    let message = load_error("- a\n- b\n");
    assert!(message.contains("must be a YAML mapping"), "{message}");
    let temp = tempfile::tempdir().unwrap();
    let error = Config::load(&temp.path().join("absent.yaml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("absent.yaml"));
}

#[test]
fn secrets_resolve_from_files_and_environment_without_leaking() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("token");
    std::fs::write(&file, "tok-123\n").unwrap();
    assert_eq!(
        Config::resolve_secret(&SecretRef::File(file.clone())).unwrap(),
        "tok-123"
    );
    std::fs::write(&file, "").unwrap();
    let error = Config::resolve_secret(&SecretRef::File(file)).unwrap_err();
    assert!(matches!(error, ConfigError::SecretEmpty { .. }));
    let huge = temp.path().join("huge");
    std::fs::write(&huge, vec![b'a'; 100 * 1024]).unwrap();
    let error = Config::resolve_secret(&SecretRef::File(huge)).unwrap_err();
    assert!(
        matches!(error, ConfigError::SecretTooLarge { .. }),
        "{error:?}"
    );
    let error = Config::resolve_secret(&SecretRef::File(temp.path().join("nope"))).unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
    // PATH is set in every test environment; reading it proves the env path works.
    assert!(
        !Config::resolve_secret(&SecretRef::Env("PATH".into()))
            .unwrap()
            .is_empty()
    );
    let error = Config::resolve_secret(&SecretRef::Env(
        "DLI_GITOPS_TEST_VARIABLE_THAT_IS_NEVER_SET".into(),
    ))
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("DLI_GITOPS_TEST_VARIABLE_THAT_IS_NEVER_SET"),
        "{error}"
    );
    assert!(error.to_string().contains("not set"), "{error}");

    // Credentials read from files; Debug never shows them.
    let ak = temp.path().join("ak");
    let sk = temp.path().join("sk");
    std::fs::write(&ak, "AKVALUE").unwrap();
    std::fs::write(&sk, "SKVALUE").unwrap();
    let config = load_text(
        temp.path(),
        &format!(
            "sources:\n  jobs: {{path: jobs}}\ntargets:\n  - name: prod\n    source: jobs\n    region: cn-north-4\n    project_id: 0123456789abcdef0123456789abcdef\n    credentials: {{access_key_file: ak, secret_key_file: {}}}\n    staging: obs://staging-bucket/prod/\n    backups: obs://backup-bucket/prod/\n",
            sk.display()
        ),
    )
    .unwrap();
    let credentials = Config::resolve_credentials(&config.targets[0]).unwrap();
    assert_eq!(
        credentials,
        Credentials::AkSk {
            access_key: "AKVALUE".into(),
            secret_key: "SKVALUE".into(),
            security_token: None
        }
    );
    let printed = format!("{credentials:?} {config:?}");
    assert!(
        !printed.contains("AKVALUE") && !printed.contains("SKVALUE"),
        "{printed}"
    );
}

// ---------------------------------------------------------------------------------------------
// git over ssh, against a real sshd on loopback

/// An `sshd` child process on a loopback port, killed on drop.
struct SshServer {
    child: std::process::Child,
    port: u16,
    host_public_key: String,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        // Let the per-connection sshd processes finish first, so that the listener reaps them
        // instead of leaving them to PID 1.
        let pid = self.child.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::fs::read_to_string(&children).is_ok_and(|list| !list.trim().is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_sshd() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

fn ssh_keygen(path: &Path) {
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed");
}

fn start_sshd(sshd: &Path, dir: &Path, authorized_public_key: &str) -> SshServer {
    ssh_keygen(&dir.join("host_key"));
    std::fs::write(dir.join("authorized_keys"), authorized_public_key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
         PidFile {dir}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    // OpenSSH refuses to start without its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let child = std::process::Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stderr(log)
        .spawn()
        .expect("sshd starts");
    let mut server = SshServer {
        child,
        port,
        host_public_key: std::fs::read_to_string(dir.join("host_key.pub")).unwrap(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "sshd exited with {status}: {}",
                std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sshd did not listen in 10s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn ssh_source(url: &str, key: &Path, known_hosts: &Path, state_dir: &Path) -> GitSource {
    let spec: GitSourceConfig = serde_yaml::from_str(&format!(
        "url: '{url}'\nbranch: main\nssh: {{key_file: '{}', known_hosts_file: '{}'}}\n",
        key.display(),
        known_hosts.display()
    ))
    .unwrap();
    GitSource::new(&spec, state_dir)
}

#[test]
#[ignore = "needs a local sshd and ssh-keygen (openssh-server, openssh-client); .ci/run installs them and runs it with --ignored"]
fn git_over_ssh_trusts_only_known_host_keys() {
    let Some(sshd) = find_sshd() else {
        panic!(
            "no sshd is installed (apt-get install openssh-server openssh-client); this test is ignored by default for that reason"
        );
    };
    let temp = tempfile::tempdir().unwrap();
    let work = WorkRepo::new(&temp.path().join("repo"));
    work.write("jobs/a.yaml", b"kind: FlinkSqlJob\n");
    let commit = work.commit("one");
    let server_dir = temp.path().join("sshd");
    std::fs::create_dir_all(&server_dir).unwrap();
    let client_key = temp.path().join("client_key");
    ssh_keygen(&client_key);
    let server = start_sshd(
        &sshd,
        &server_dir,
        &std::fs::read_to_string(temp.path().join("client_key.pub")).unwrap(),
    );
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_string());
    let url = format!(
        "ssh://{user}@127.0.0.1:{}{}",
        server.port,
        work.dir.display()
    );
    let state_dir = temp.path().join("state");

    // The server's real key, listed under [host]:port: trusted, fetched, readable.
    let known_hosts = temp.path().join("known_hosts");
    let host_key_fields: Vec<&str> = server.host_public_key.split_whitespace().collect();
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port, host_key_fields[0], host_key_fields[1]
        ),
    )
    .unwrap();
    let trusted = ssh_source(&url, &client_key, &known_hosts, &state_dir);
    let fetched = trusted.fetch().unwrap_or_else(|error| {
        panic!(
            "{error}: {:?}\nsshd log:\n{}",
            std::error::Error::source(&error),
            std::fs::read_to_string(server_dir.join("sshd.log")).unwrap_or_default()
        )
    });
    assert_eq!(fetched, commit);
    assert!(
        trusted
            .snapshot(&fetched, "jobs")
            .unwrap()
            .files
            .contains_key("a.yaml")
    );

    // A passphrase-protected client key, with the passphrase from a file.
    let locked_key = temp.path().join("locked_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&locked_key)
        .status()
        .unwrap();
    assert!(status.success());
    let mut authorized = std::fs::read_to_string(temp.path().join("client_key.pub")).unwrap();
    authorized.push_str(&std::fs::read_to_string(temp.path().join("locked_key.pub")).unwrap());
    std::fs::write(server_dir.join("authorized_keys"), authorized).unwrap();
    let passphrase_file = temp.path().join("passphrase");
    std::fs::write(&passphrase_file, "correct horse\n").unwrap();
    let spec: GitSourceConfig = serde_yaml::from_str(&format!(
        "url: '{url}'\nbranch: main\nssh: {{key_file: '{}', known_hosts_file: '{}', passphrase_file: '{}'}}\n",
        locked_key.display(),
        known_hosts.display(),
        passphrase_file.display()
    ))
    .unwrap();
    let locked = GitSource::new(&spec, &temp.path().join("state-locked"));
    assert_eq!(
        locked
            .fetch()
            .unwrap_or_else(|error| panic!("{error}: {:?}", std::error::Error::source(&error))),
        commit
    );

    // Not listed: refused, with the way to fix it.
    let empty_known_hosts = temp.path().join("known_hosts_empty");
    std::fs::write(&empty_known_hosts, "").unwrap();
    let error = ssh_source(
        &url,
        &client_key,
        &empty_known_hosts,
        &temp.path().join("state2"),
    )
    .fetch()
    .unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::HostKey {
                verdict: dli_gitops::source::HostKeyVerdict::Unknown,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("ssh-keyscan"), "{error}");

    // Listed with another key: refused as a possible interception.
    let other_key = temp.path().join("other_key");
    ssh_keygen(&other_key);
    let other_public = std::fs::read_to_string(temp.path().join("other_key.pub")).unwrap();
    let other_fields: Vec<&str> = other_public.split_whitespace().collect();
    let wrong_known_hosts = temp.path().join("known_hosts_wrong");
    std::fs::write(
        &wrong_known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port, other_fields[0], other_fields[1]
        ),
    )
    .unwrap();
    let error = ssh_source(
        &url,
        &client_key,
        &wrong_known_hosts,
        &temp.path().join("state3"),
    )
    .fetch()
    .unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::HostKey {
                verdict: dli_gitops::source::HostKeyVerdict::Mismatch,
                ..
            }
        ),
        "{error:?}"
    );

    // A trusted host with a key it does not authorise: an authentication error, no retry loop.
    let error = ssh_source(&url, &other_key, &known_hosts, &temp.path().join("state4"))
        .fetch()
        .unwrap_err();
    assert!(matches!(error, SourceError::Fetch { .. }), "{error:?}");
    assert!(
        !error.is_retryable(),
        "bad credentials are not retried: {error:?}"
    );
}
