//! `plan` works beside a running daemon: it reads a private copy of the journal, never takes
//! the state directory's lock, and writes nothing there. An unknown target creates nothing on
//! disk.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_dli-gitops");
const ACCESS_KEY: &str = "DLIGITOPSDEVACCESSKEY";
const SECRET_KEY: &str = "dli-gitops-dev-secret-key-not-for-production";
const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const TIMEOUT: Duration = Duration::from_secs(120);
const EMULATOR_CONFIG: &str =
    "delays: {submit_ms: 100, cancel_ms: 100, savepoint_ms: 100, dlf_task_ms: 100}\n";

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
    std::fs::write(&config, EMULATOR_CONFIG).unwrap();
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

fn job_yaml(cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: clicks\nqueue_name: dev_flink\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\ncu_number: {cu_number}\nparallel_number: 1\n\
         desired_state: running\n"
    )
}

fn target(address: &str) -> Option<Value> {
    let (code, body) = get(address, "/api/v1/targets/dev").ok()?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn plan_runs_beside_a_daemon_holding_the_state_directory_and_touches_nothing_there() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("jobs-repo");
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head("main");
    let repository = git2::Repository::init_opts(&repo_path, &options).unwrap();
    let first = commit(
        &repository,
        &[
            ("flink/clicks.yaml", &job_yaml(2)),
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
             \x20   credentials: {{access_key_env: PLAN_AK, secret_key_env: PLAN_SK}}\n\
             \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
             \x20   policy: {{auto_sync: false, resync_interval: 10s}}\n",
            repo = repo_path.display(),
            dli = url("dli"),
            s3 = url("s3"),
        ),
    )
    .unwrap();

    // Unknown target, no daemon yet, no state directory: an error, and nothing on disk.
    let state = dir.path().join("state");
    let output = Command::new(BINARY)
        .args(["plan", "--config"])
        .arg(&config)
        .args(["--target", "nope"])
        .env("PLAN_AK", ACCESS_KEY)
        .env("PLAN_SK", SECRET_KEY)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        !state.exists(),
        "plan with an unknown target created {}",
        state.display()
    );

    let log = dir.path().join("daemon.log");
    let mut daemon = Process {
        child: Command::new(BINARY)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("PLAN_AK", ACCESS_KEY)
            .env("PLAN_SK", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts"),
        log,
    };
    // auto_sync is off: the daemon observes and reports the revision OutOfSync.
    wait_for("the daemon to report the revision", &mut daemon, || {
        target(&address).is_some_and(|status| {
            status["sync"]["revision"] == first.as_str() && status["ready"] == true
        })
    });
    let before = listing(&state);
    let journal_before = std::fs::read(state.join("journal.jsonl")).unwrap_or_default();

    let output = Command::new(BINARY)
        .args(["plan", "--config"])
        .arg(&config)
        .args(["--target", "dev", "--json"])
        .env_remove("RUST_LOG")
        .env("PLAN_AK", ACCESS_KEY)
        .env("PLAN_SK", SECRET_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "plan beside the daemon failed: {stderr}\n{stdout}"
    );
    // A one-shot command logs warnings only by default: no info line on stderr.
    assert!(
        !stderr.contains("INFO"),
        "plan logged at info by default:\n{stderr}"
    );
    let plan: Value = serde_json::from_str(stdout.trim()).expect("plan --json prints JSON");
    assert_eq!(plan["summary"]["create"], 1, "{plan:#}");

    // The daemon still holds its directory, and plan wrote nothing there.
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited"
    );
    assert_eq!(listing(&state), before, "plan changed the state directory");
    let journal_after = std::fs::read(state.join("journal.jsonl")).unwrap_or_default();
    assert!(
        journal_after.starts_with(&journal_before),
        "plan rewrote the daemon's journal"
    );
    let text = String::from_utf8_lossy(&journal_after);
    assert!(
        !text.contains("\"kind\":\"intent\""),
        "plan journaled an intent"
    );
    // `-v` brings the info lines back.
    let verbose = Command::new(BINARY)
        .args(["-v", "plan", "--config"])
        .arg(&config)
        .args(["--target", "dev"])
        .env_remove("RUST_LOG")
        .env("PLAN_AK", ACCESS_KEY)
        .env("PLAN_SK", SECRET_KEY)
        .output()
        .unwrap();
    assert!(verbose.status.success());
    assert!(
        String::from_utf8_lossy(&verbose.stderr).contains("INFO"),
        "-v shows info lines"
    );
    let (code, _) = get(&address, "/healthz").unwrap();
    assert_eq!(code, 200);
}
