//! System-level reliability and security tests: TLS verification in the cloud client, secrets
//! kept out of every output of a real run, bearer tokens on mutating endpoints, project
//! isolation in the emulator, convergence under injected service faults, and crash consistency
//! under SIGKILL.

#[path = "../support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dli_gitops::cloud::{
    ClientOptions, CloudError, Credentials, DliClient, ListJobsQuery, RetryPolicy, Secret,
    TransportFailure,
};
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, EmulatorCredential,
    EmulatorHandle,
};
use dli_gitops::model::{FlinkJobConfig, JobKind};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use support::BINARY;
use support::crash::{crash_runs, crash_seed};
use support::http::{free_port, http, http_bytes};

/// Client options for loopback tests: short timeouts, two quick attempts, no rate limit.
fn quick_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 2,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        },
        requests_per_second: 0.0,
        ..ClientOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Whole-system harness: the real binary as the emulator (its own process) and as the daemon,
// a real git repository, blocking HTTP over loopback.

/// A child process, killed on drop so a failed assertion leaks nothing.
struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn spawn(mut command: Command, log: PathBuf) -> Process {
        let child = command
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn dli-gitops");
        Process {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// SIGKILL: no handler runs, nothing is flushed.
    fn kill_hard(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "no exit within 60 s of SIGTERM; log:\n{}",
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The emulator as its own process, so it outlives every daemon the tests kill.
struct EmulatorProcess {
    process: Process,
    endpoints: Value,
}

impl EmulatorProcess {
    fn start(dir: &Path, config_yaml: &str) -> EmulatorProcess {
        EmulatorProcess::start_on(dir, config_yaml, 0, 0)
    }

    /// Starts on fixed ports (0: any), so a restarted emulator keeps its endpoints.
    fn start_on(dir: &Path, config_yaml: &str, api_port: u16, s3_port: u16) -> EmulatorProcess {
        let config = dir.join("emulator.yaml");
        std::fs::write(&config, config_yaml).expect("emulator config");
        let mut command = Command::new(BINARY);
        command
            .args([
                "emulator",
                "--listen",
                &format!("127.0.0.1:{api_port}"),
                "--s3-listen",
                &format!("127.0.0.1:{s3_port}"),
            ])
            .arg("--data")
            .arg(dir.join("emulator-data"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped());
        let mut process = Process::spawn(command, dir.join("emulator.log"));
        let stdout = process
            .child
            .as_mut()
            .and_then(|child| child.stdout.take())
            .expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the emulator prints its endpoints");
        let endpoints: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("endpoints line {line:?}; log:\n{}", process.log()));
        EmulatorProcess { process, endpoints }
    }

    fn port(&self, service: &str) -> u16 {
        Url::parse(&self.url(service))
            .ok()
            .and_then(|url| url.port())
            .expect("a port")
    }

    /// SIGTERM: the emulator persists its state and exits.
    fn stop(self) {
        assert!(
            self.process.terminate().success(),
            "the emulator did not exit cleanly"
        );
    }

    fn url(&self, service: &str) -> String {
        self.endpoints[service]
            .as_str()
            .unwrap_or_else(|| panic!("no {service} in {}", self.endpoints))
            .to_string()
    }

    fn client(&self, access_key: &str, secret_key: &str, project_id: &str) -> DliClient {
        DliClient::new(
            Url::parse(&self.url("dli")).expect("url"),
            project_id,
            Credentials::AkSk {
                access_key: access_key.into(),
                secret_key: Secret::new(secret_key),
                security_token: None,
            },
            // The checks read through whatever faults the test injected: enough attempts that a
            // run of injected 500s never fails a check (0.35^15 per call at the fault mix).
            ClientOptions {
                requests_per_second: 0.0,
                retry: RetryPolicy {
                    max_attempts: 15,
                    base_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(200),
                    ..ClientOptions::default().retry
                },
                ..ClientOptions::default()
            },
        )
        .expect("client")
    }

    fn stats_total(&self) -> u64 {
        let (code, body) = http(
            "GET",
            &format!("{}/_emulator/v1/stats", self.url("dli")),
            &[],
            "",
        )
        .expect("stats");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("stats json")["total"]
            .as_u64()
            .expect("total")
    }

    fn runs(&self, project_id: &str, job_id: i64) -> Value {
        let (code, body) = http(
            "GET",
            &format!(
                "{}/_emulator/v1/{project_id}/jobs/{job_id}/runs",
                self.url("dli")
            ),
            &[],
            "",
        )
        .expect("runs");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("runs json")
    }
}

struct JobsRepo {
    path: PathBuf,
    repository: git2::Repository,
}

impl JobsRepo {
    fn init(path: &Path) -> JobsRepo {
        JobsRepo {
            path: path.to_path_buf(),
            repository: support::git::init_main(path),
        }
    }

    /// Replaces the whole tree with `files` and commits it on main.
    fn commit_tree(&self, message: &str, files: &[(String, String)]) -> String {
        for entry in std::fs::read_dir(&self.path).expect("read repo") {
            let entry = entry.expect("entry");
            if entry.file_name() != ".git" {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).expect("clear dir");
                } else {
                    std::fs::remove_file(&path).expect("clear file");
                }
            }
        }
        for (path, content) in files {
            let full = self.path.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, content).expect("write");
        }
        support::git::commit_work_tree(&self.repository, message)
    }
}

fn job_yaml(name: &str, cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: {name}\ndesc: reliability job\nqueue_name: ${{flink_queue}}\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\nrun_mode: exclusive_cluster\n\
         cu_number: {cu_number}\nparallel_number: 1\ncheckpoint_enabled: true\n\
         checkpoint_interval: 60\ndesired_state: running\nupgrade_mode: savepoint\n"
    )
}

const ENVIRONMENT_YAML: &str = "variables: {flink_queue: dev_flink}\n";

/// The daemon config for one target `dev` against `emulator`, reading `repo` over git.
struct DaemonSetup {
    dir: PathBuf,
    port: u16,
    config: PathBuf,
    env: Vec<(String, String)>,
}

struct DaemonOptions<'a> {
    project_id: &'a str,
    prune: bool,
    poll_interval: &'a str,
    extra_source: &'a str,
}

impl DaemonSetup {
    fn new(
        dir: &Path,
        repo: &JobsRepo,
        emulator: &EmulatorProcess,
        options: &DaemonOptions<'_>,
        env: Vec<(String, String)>,
    ) -> DaemonSetup {
        let port = free_port();
        let config = dir.join("config.yaml");
        let text = format!(
            "state_dir: ./state\n\
             listen: 127.0.0.1:{port}\n\
             api_token_env: REL_API_TOKEN\n\
             sources:\n  jobs:\n    git: {{url: {repo}, branch: main, poll_interval: {poll}, poll_jitter: 0{extra}}}\n    webhook_secret_env: REL_WEBHOOK_SECRET\n\
             targets:\n  - name: dev\n    source: jobs\n    environment: dev\n    region: cn-north-4\n    project_id: {project}\n\
             \x20   endpoints: {{dli: {dli}, dlf: {dlf}, obs: {obs}, iam: {iam}}}\n\
             \x20   credentials: {{access_key_env: REL_AK, secret_key_env: REL_SK}}\n\
             \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
             \x20   policy: {{auto_sync: true, self_heal: true, prune: {prune}, resync_interval: 10s}}\n\
             \x20   timeouts: {{job_transition: 60s, savepoint: 60s, request: 20s}}\n",
            repo = repo.path.display(),
            poll = options.poll_interval,
            extra = options.extra_source,
            project = options.project_id,
            prune = options.prune,
            dli = emulator.url("dli"),
            dlf = emulator.url("dlf"),
            obs = emulator.url("s3"),
            iam = emulator.url("iam"),
        );
        std::fs::write(&config, text).expect("write config");
        DaemonSetup {
            dir: dir.to_path_buf(),
            port,
            config,
            env,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn spawn(&self, tag: &str) -> Process {
        let command = self.command(&[
            "--log-format",
            "json",
            "run",
            "--config",
            self.config.to_str().expect("utf-8"),
        ]);
        Process::spawn(command, self.dir.join(format!("daemon-{tag}.log")))
    }

    fn target(&self) -> Option<Value> {
        let (code, body) = http(
            "GET",
            &format!("{}/api/v1/targets/dev", self.base()),
            &[],
            "",
        )
        .ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Waits until the target status satisfies `check`; returns it and the statuses seen.
    fn wait_for(
        &self,
        process: &mut Process,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            if let Some(status) = self.target() {
                if check(&status) {
                    return (status, seen);
                }
                seen.push(status);
            }
            if let Some(exit) = process.exited() {
                panic!(
                    "the daemon exited ({exit}) waiting for {what}; log:\n{}",
                    tail(&process.log(), 60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last status: {:#}\nlog:\n{}",
                seen.last().cloned().unwrap_or(Value::Null),
                tail(&process.log(), 60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn synced_at(status: &Value, revision: &str) -> bool {
    status["sync"]["status"] == "Synced"
        && status["sync"]["applied_revision"] == revision
        && status["health"]["status"] == "Healthy"
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the fault and crash tests

/// What git says, for `check_live_equals_git`.
struct Desired {
    jobs: Vec<(String, u32)>,
}

/// Live jobs equal git: the same names, each exactly once, running, with git's `cu_number`;
/// and every run of each job after its first restored from the savepoint its previous run was
/// stopped with (no savepoint lost). Returns every violation.
fn live_violations(
    emulator: &EmulatorProcess,
    access_key: &str,
    secret_key: &str,
    project_id: &str,
    desired: &Desired,
) -> Vec<String> {
    let client = emulator.client(access_key, secret_key, project_id);
    let listed = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list live jobs");
    let mut problems = Vec::new();
    let mut live_names: Vec<String> = listed.iter().map(|job| job.name.clone()).collect();
    live_names.sort();
    let mut deduplicated = live_names.clone();
    deduplicated.dedup();
    if deduplicated.len() != live_names.len() {
        problems.push(format!("duplicate live jobs: {live_names:?}"));
    }
    let mut wanted: Vec<String> = desired.jobs.iter().map(|(name, _)| name.clone()).collect();
    wanted.sort();
    if deduplicated != wanted {
        problems.push(format!("live jobs {deduplicated:?} but git has {wanted:?}"));
    }
    for (name, cu_number) in &desired.jobs {
        let Some(listed_job) = listed.iter().find(|job| &job.name == name) else {
            continue;
        };
        let detail = block_on(client.job_detail(listed_job.id)).expect("detail");
        if detail.status.as_str() != "job_running" {
            problems.push(format!(
                "{name} is {:?}, git wants it running",
                detail.status
            ));
        }
        if detail.config.cu_number != *cu_number as i32 {
            problems.push(format!(
                "{name} has cu_number {}, git says {cu_number}",
                detail.config.cu_number
            ));
        }
        let runs = emulator.runs(project_id, listed_job.id);
        let runs = runs["runs"].as_array().cloned().unwrap_or_default();
        problems.extend(savepoint_chain_breaks(name, &runs));
    }
    problems
}

/// Where a job's runs (the emulator's run records, oldest first) break the state chain: a run
/// stopped without a savepoint, or a run that did not resume from the stop savepoint of the
/// run before it. Compared by the `savepoint_id` inside `_metadata`, so a run that resumed
/// from a verified copy of the stop savepoint (the service deletes its own at the restart)
/// keeps the chain.
fn savepoint_chain_breaks(name: &str, runs: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for pair in runs.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        let stop_savepoint = previous["stop_savepoint"].as_str();
        let same_state = match (
            previous["stop_savepoint_id"].as_str(),
            next["restored_savepoint_id"].as_str(),
        ) {
            (Some(stopped), Some(restored)) => stopped == restored,
            _ => next["restored_from"].as_str() == stop_savepoint,
        };
        if stop_savepoint.is_none() {
            problems.push(format!(
                "{name}: run {} was stopped without a savepoint: {previous}",
                previous["run_number"]
            ));
        } else if !same_state {
            problems.push(format!(
                "{name}: run {} restored from {} instead of the stop savepoint {:?} of run {}",
                next["run_number"], next["restored_from"], stop_savepoint, previous["run_number"]
            ));
        }
    }
    problems
}

/// `journal verify` passes and every intent in the journal has an outcome.
fn journal_violations(setup: &DaemonSetup) -> Vec<String> {
    support::crash::journal_violations(&setup.dir.join("state"))
}

// ---------------------------------------------------------------------------------------------
// Secrets, bearer tokens and hostile webhooks against a running daemon

const LEAK_ACCESS_KEY: &str = "RELLEAKACCESSKEY0001";
const LEAK_SECRET_KEY: &str = "sk-LEAK-3f9a1c7e5b2d4086";
const LEAK_API_TOKEN: &str = "tok-LEAK-8c2e4a6f1b3d5079";
const LEAK_WEBHOOK_SECRET: &str = "wh-LEAK-5d7f9b1c3e2a4068";
const LEAK_GIT_TOKEN: &str = "git-LEAK-1a3c5e7b9d2f4608";
const LEAK_WRONG_SECRET_KEY: &str = "sk-WRONG-LEAK-77aa55cc";
const LEAK_PROJECT_ID: &str = "2a2b2c2d2e2f30313233343536373839";

fn leak_emulator_yaml(faults: &str) -> String {
    format!(
        "delays: {{submit_ms: 50, cancel_ms: 50, savepoint_ms: 50, dlf_task_ms: 50}}\n\
         credentials:\n  - {{access_key: {LEAK_ACCESS_KEY}, secret_key: {LEAK_SECRET_KEY}, project_id: {LEAK_PROJECT_ID}}}\n\
         auth: {{lockout_failures: 0}}\n{faults}"
    )
}

fn leak_env(secret_key: &str) -> Vec<(String, String)> {
    vec![
        ("REL_AK".into(), LEAK_ACCESS_KEY.into()),
        ("REL_SK".into(), secret_key.into()),
        ("REL_API_TOKEN".into(), LEAK_API_TOKEN.into()),
        ("REL_WEBHOOK_SECRET".into(), LEAK_WEBHOOK_SECRET.into()),
        ("REL_GIT_TOKEN".into(), LEAK_GIT_TOKEN.into()),
    ]
}

// ---------------------------------------------------------------------------------------------
// The same checks through the `plan` and `apply` commands (one reconcile pass each), which share
// the reconcile path with the daemon.

impl DaemonSetup {
    /// Runs a CLI command to completion (120 s deadline), with `env` over the setup's own.
    fn run_cli(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the CLI");
        let output = wait_with_deadline(child, Duration::from_secs(120), args);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn config_arg(&self) -> String {
        self.config.to_str().expect("utf-8 path").to_string()
    }

    /// `plan --detailed-exitcode`: 0 in sync, 2 changes pending, 1 error.
    fn plan_code(&self) -> (Option<i32>, String) {
        let config = self.config_arg();
        let (code, stdout, stderr) = self.run_cli(
            &[
                "plan",
                "--config",
                &config,
                "--target",
                "dev",
                "--detailed-exitcode",
            ],
            &[],
        );
        (code, format!("{stdout}{stderr}"))
    }

    /// Runs `apply --auto-approve` passes until `plan` finds nothing to do; returns the passes
    /// it took, or the last output when `max_passes` were not enough.
    fn apply_until_converged(&self, max_passes: usize) -> Result<usize, String> {
        let config = self.config_arg();
        let mut last = String::new();
        for pass in 1..=max_passes {
            let (_, stdout, stderr) = self.run_cli(
                &[
                    "apply",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ],
                &[],
            );
            last = format!("{stdout}{stderr}");
            let (code, plan) = self.plan_code();
            if code == Some(0) {
                return Ok(pass);
            }
            last.push_str(&plan);
            // Jobs move through their statuses between passes.
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(tail(&last, 40))
    }
}

fn wait_with_deadline(mut child: Child, deadline: Duration, what: &[&str]) -> std::process::Output {
    use std::io::Read;
    // Drain both pipes while waiting: a child that fills a pipe nobody reads blocks forever.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "dli-gitops {what:?} did not finish within {deadline:?}:\n{}",
                tail(&String::from_utf8_lossy(&stderr), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

mod crashes;
mod faults;
mod project_isolation;
mod secrets;
mod tls;
