//! The daemon's HTTP server under a crowd of idle connections and a low open-file limit: the
//! real `dli-gitops` binary runs with `RLIMIT_NOFILE` lowered in its own process (set between
//! fork and exec), against the emulator (its own process) and a git repository in a temp
//! directory. Hundreds of idle connections are opened and kept coming; `/healthz` must keep
//! answering, git polling must keep working (a new commit converges), and the git mirror must
//! never be taken for damaged and recreated.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_dli-gitops");
const ACCESS_KEY: &str = "DLIGITOPSDEVACCESSKEY";
const SECRET_KEY: &str = "dli-gitops-dev-secret-key-not-for-production";
const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const TIMEOUT: Duration = Duration::from_secs(120);
/// The daemon's open-file limit: its server's default cap is a quarter of it (32).
const DAEMON_OPEN_FILES: u64 = 128;

/// A child process killed on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_emulator(dir: &Path) -> (Process, Value) {
    let config = dir.join("emulator.yaml");
    std::fs::write(
        &config,
        "delays: {submit_ms: 100, cancel_ms: 100, savepoint_ms: 100, dlf_task_ms: 100}\n",
    )
    .unwrap();
    let log = dir.join("emulator.log");
    let mut child = Command::new(BINARY)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(dir.join("emulator-data"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the emulator starts");
    let stdout = child.stdout.take().unwrap();
    let process = Process { child, log };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let endpoints: Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("endpoints line {line:?}; log:\n{}", process.log()));
    (process, endpoints)
}

/// One blocking HTTP/1.1 GET over a fresh connection: status and body.
fn get(address: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    Ok((code, body.to_string()))
}

fn commit(repository: &git2::Repository, files: &[(&str, &str)]) -> String {
    let root = repository.workdir().unwrap();
    for (path, content) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    let mut index = repository.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repository.find_tree(index.write_tree().unwrap()).unwrap();
    let signature = git2::Signature::now("test", "test@example.com").unwrap();
    let parent = repository
        .head()
        .ok()
        .and_then(|head| head.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repository
        .commit(
            Some("HEAD"),
            &signature,
            &signature,
            "jobs",
            &tree,
            &parents,
        )
        .unwrap()
        .to_string()
}

fn job_yaml(description: &str) -> String {
    format!(
        "kind: FlinkSqlJob\nname: clicks\ndesc: {description}\nqueue_name: dev_flink\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\ncu_number: 2\nparallel_number: 1\n\
         desired_state: running\n"
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, daemon: &mut Process, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            panic!("the daemon exited ({status}); log:\n{}", daemon.log());
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; daemon log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn applied_revision(address: &str) -> Option<String> {
    let (code, body) = get(address, "/api/v1/targets/dev").ok()?;
    if code != 200 {
        return None;
    }
    let status: Value = serde_json::from_str(&body).ok()?;
    (status["sync"]["status"] == "Synced")
        .then(|| {
            status["sync"]["applied_revision"]
                .as_str()
                .map(str::to_string)
        })
        .flatten()
}

/// Lowers the soft and hard open-file limit of the child between fork and exec.
fn with_open_file_limit(command: &mut Command, limit: u64) {
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let value = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &value) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn healthz_and_git_polling_survive_a_crowd_of_idle_connections_under_a_low_fd_limit() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("jobs-repo");
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head("main");
    let repository = git2::Repository::init_opts(&repo_path, &options).unwrap();
    let first = commit(
        &repository,
        &[
            ("flink/clicks.yaml", &job_yaml("first")),
            ("environments/dev.yaml", "variables: {}\n"),
        ],
    );
    let (_emulator, endpoints) = start_emulator(dir.path());
    let url = |service: &str| endpoints[service].as_str().unwrap().to_string();
    let address = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: ./state\nlisten: {address}\n\
             sources:\n  jobs:\n    git: {{url: {repo}, branch: main, poll_interval: 1s, poll_jitter: 0}}\n\
             targets:\n  - name: dev\n    source: jobs\n    region: cn-north-4\n    project_id: {PROJECT}\n\
             \x20   endpoints: {{dli: {dli}, dlf: {dli}, obs: {s3}, iam: {dli}}}\n\
             \x20   credentials: {{access_key_env: HARDENING_AK, secret_key_env: HARDENING_SK}}\n\
             \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
             \x20   policy: {{auto_sync: true, resync_interval: 10s}}\n",
            repo = repo_path.display(),
            dli = url("dli"),
            s3 = url("s3"),
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut command = Command::new(BINARY);
    command
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("HARDENING_AK", ACCESS_KEY)
        .env("HARDENING_SK", SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    with_open_file_limit(&mut command, DAEMON_OPEN_FILES);
    let mut daemon = Process {
        child: command.spawn().expect("the daemon starts"),
        log,
    };
    wait_for("the first commit to converge", &mut daemon, || {
        applied_revision(&address).as_deref() == Some(first.as_str())
    });

    // The crowd: 600 idle connections at once (far beyond the daemon's 128 descriptors), then
    // a steady stream of new idle ones for as long as the test runs.
    let mut crowd: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(&address).expect("connect"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(crowd.len()));
    let attacker = {
        let (stop, opened, address) = (stop.clone(), opened.clone(), address.clone());
        std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(stream) = TcpStream::connect(&address) {
                    held.push_back(stream);
                    opened.fetch_add(1, Ordering::SeqCst);
                }
                if held.len() > 300 {
                    held.pop_front();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let answer = get(&address, "/healthz");
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            answer.as_ref().map(|(code, _)| *code),
            Ok(200),
            "/healthz under {} idle connections: {answer:?}; daemon log:\n{}",
            opened.load(Ordering::SeqCst),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        slowest < Duration::from_secs(5),
        "/healthz took {slowest:?}"
    );

    // Git polling still works: a new commit is fetched and converged while the crowd stays.
    let second = commit(&repository, &[("flink/clicks.yaml", &job_yaml("second"))]);
    wait_for(
        "the second commit to converge under the crowd",
        &mut daemon,
        || applied_revision(&address).as_deref() == Some(second.as_str()),
    );

    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();
    // The server closed idle connections to make room: most of the first 600 are closed.
    let mut closed = 0;
    for stream in &mut crowd {
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(stream.read(&mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 500,
        "only {closed} of 600 idle connections were closed"
    );
    let log = daemon.log();
    assert!(
        !log.contains("recreating it"),
        "a git mirror was recreated under descriptor pressure:\n{log}"
    );
}
