//! End to end: the real `dli-gitops` binary runs the daemon against the emulator (its own
//! process) with a real git repository made in a temp directory. Each test drives it only
//! through git commits, HTTP, signals, and the emulator's API, as a user would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dli_gitops::cloud::{ClientOptions, Credentials, DliClient, ListJobsQuery, Secret};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[path = "../support/mod.rs"]
mod support;

use support::BINARY;
use support::http::{free_port, http};
const ACCESS_KEY: &str = "DLIGITOPSDEVACCESSKEY";
const SECRET_KEY: &str = "dli-gitops-dev-secret-key-not-for-production";
const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const API_TOKEN: &str = "e2e-api-token";
const WEBHOOK_SECRET: &str = "e2e-webhook-secret";
/// Generous: two CPU cores are shared by many builds while these run.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);

// ---- processes ---------------------------------------------------------------------------

/// A child process killed on drop (a failed assertion must not leak processes).
struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait works") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the process did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

struct Emulator {
    _process: support::daemon::Process,
    endpoints: Value,
}

impl Emulator {
    fn start(dir: &Path, submit_ms: u64) -> Emulator {
        Emulator::start_with_delays(
            dir,
            &format!(
                "{{submit_ms: {submit_ms}, cancel_ms: 200, savepoint_ms: 200, dlf_task_ms: 100}}"
            ),
        )
    }

    /// `delays` is the emulator config's `delays:` value (flow YAML).
    fn start_with_delays(dir: &Path, delays: &str) -> Emulator {
        let (process, endpoints) =
            support::emulator::start_emulator(dir, &format!("delays: {delays}\n"));
        Emulator {
            _process: process,
            endpoints,
        }
    }

    fn url(&self, service: &str) -> String {
        self.endpoints[service].as_str().unwrap().to_string()
    }

    fn dli(&self) -> DliClient {
        DliClient::new(
            url::Url::parse(&self.url("dli")).unwrap(),
            PROJECT,
            Credentials::AkSk {
                access_key: ACCESS_KEY.into(),
                secret_key: Secret::new(SECRET_KEY.to_string()),
                security_token: None,
            },
            ClientOptions::default(),
        )
        .unwrap()
    }

    /// The runs of a job, from the emulator's introspection API.
    fn runs(&self, job_id: i64) -> Value {
        get_json(&format!(
            "{}/_emulator/v1/{PROJECT}/jobs/{job_id}/runs",
            self.url("dli")
        ))
        .1
    }
}

struct Daemon {
    process: Option<Process>,
    base: String,
}

impl Daemon {
    fn start(dir: &Path, config: &Path, tag: &str) -> Daemon {
        Daemon::start_with(
            dir,
            config,
            tag,
            &["--log-format", "json"],
            Some("info,dli_gitops=debug"),
        )
    }

    /// Starts `dli-gitops <global_args> run --config CONFIG`, with `RUST_LOG` set or removed.
    fn start_with(
        dir: &Path,
        config: &Path,
        tag: &str,
        global_args: &[&str],
        rust_log: Option<&str>,
    ) -> Daemon {
        let log = dir.join(format!("daemon-{tag}.log"));
        let mut command = Command::new(BINARY);
        command
            .args(global_args)
            .args(["run", "--config"])
            .arg(config);
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let child = command
            .env("E2E_AK", ACCESS_KEY)
            .env("E2E_SK", SECRET_KEY)
            .env("E2E_API_TOKEN", API_TOKEN)
            .env("E2E_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        let config_text = std::fs::read_to_string(config).unwrap();
        let listen = config_text
            .lines()
            .find_map(|line| line.strip_prefix("listen: "))
            .expect("listen in config")
            .trim()
            .to_string();
        let mut daemon = Daemon {
            process: Some(Process {
                child: Some(child),
                log,
            }),
            base: format!("http://{listen}"),
        };
        daemon.wait_ready();
        daemon
    }

    fn process(&self) -> &Process {
        self.process.as_ref().unwrap()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            if let Ok(response) = ureq_get(&format!("{}/readyz", self.base))
                && response.0 == 200
            {
                return;
            }
            let process = self.process.as_mut().unwrap();
            if let Some(status) = process.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited ({status}); log:\n{}", process.log());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon was not ready in time; log:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn target(&self) -> Value {
        let (code, body) = get_json(&format!("{}/api/v1/targets/dev", self.base));
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Waits until the target's status satisfies `check`, and returns it.
    fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let status = self.target();
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {status:#}\nlog:\n{}",
                tail(&self.process().log(), 60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL: a crash, as far as the daemon can tell.
    fn kill(mut self) {
        let mut process = self.process.take().unwrap();
        let mut child = process.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn stop(mut self) -> ExitStatus {
        self.process
            .take()
            .unwrap()
            .terminate(Duration::from_secs(60))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- HTTP without an async runtime ---------------------------------------------------------

fn ureq_get(url: &str) -> Result<(u16, String), String> {
    http("GET", url, &[], "")
}

fn get_json(url: &str) -> (u16, Value) {
    let (code, body) = http("GET", url, &[], "").unwrap_or_else(|error| panic!("{url}: {error}"));
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{url} answered {body:?}")),
    )
}

// ---- the job repository ------------------------------------------------------------------

struct Repo {
    path: PathBuf,
    repository: git2::Repository,
}

impl Repo {
    fn init(path: &Path) -> Repo {
        let repository = support::git::init_main(path);
        Repo {
            path: path.to_path_buf(),
            repository,
        }
    }

    /// Writes `files` (path → content; `None` deletes) and commits them on main.
    fn commit(&self, message: &str, files: &[(&str, Option<&str>)]) -> String {
        for (path, content) in files {
            let full = self.path.join(path);
            match content {
                Some(content) => {
                    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                    std::fs::write(&full, content).unwrap();
                }
                None => {
                    let _ = std::fs::remove_file(&full);
                }
            }
        }
        support::git::commit_work_tree(&self.repository, message)
    }
}

fn job_yaml(name: &str, cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: {name}\ndesc: e2e job\nqueue_name: ${{flink_queue}}\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\nrun_mode: exclusive_cluster\n\
         cu_number: {cu_number}\nparallel_number: 1\ncheckpoint_enabled: true\n\
         checkpoint_interval: 60\ndesired_state: running\nupgrade_mode: savepoint\n"
    )
}

const ENVIRONMENT: &str = "variables: {flink_queue: dev_flink}\n";

// ---- config --------------------------------------------------------------------------------

struct Setup {
    dir: tempfile::TempDir,
    repo: Repo,
    emulator: Emulator,
    port: u16,
}

impl Setup {
    fn new(submit_ms: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("jobs-repo"));
        let emulator = Emulator::start(dir.path(), submit_ms);
        Setup {
            repo,
            emulator,
            port: free_port(),
            dir,
        }
    }

    fn config(&self, self_heal: bool, poll_interval: &str) -> PathBuf {
        self.config_with(self_heal, poll_interval, "10s", "")
    }

    /// The config with a given resync interval and extra top-level lines (e.g. `logging:`).
    fn config_with(
        &self,
        self_heal: bool,
        poll_interval: &str,
        resync: &str,
        extra: &str,
    ) -> PathBuf {
        let path = self.dir.path().join("config.yaml");
        let text = format!(
            "state_dir: ./state\n\
             listen: 127.0.0.1:{port}\n\
             api_token_env: E2E_API_TOKEN\n\
             sources:\n  jobs:\n    git: {{url: {repo}, branch: main, poll_interval: {poll_interval}, poll_jitter: 0}}\n    webhook_secret_env: E2E_WEBHOOK_SECRET\n\
             targets:\n  - name: dev\n    source: jobs\n    environment: dev\n    region: cn-north-4\n    project_id: {PROJECT}\n\
             \x20   endpoints: {{dli: {dli}, dlf: {dlf}, obs: {obs}, iam: {iam}}}\n\
             \x20   credentials: {{access_key_env: E2E_AK, secret_key_env: E2E_SK}}\n\
             \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
             \x20   policy: {{auto_sync: true, self_heal: {self_heal}, prune: false, resync_interval: {resync}}}\n\
             \x20   timeouts: {{job_transition: 60s, savepoint: 60s, request: 20s}}\n\
             {extra}",
            port = self.port,
            repo = self.repo.path.display(),
            dli = self.emulator.url("dli"),
            dlf = self.emulator.url("dlf"),
            obs = self.emulator.url("s3"),
            iam = self.emulator.url("iam"),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn start_daemon(&self, self_heal: bool, poll_interval: &str, tag: &str) -> Daemon {
        let config = self.config(self_heal, poll_interval);
        Daemon::start(self.dir.path(), &config, tag)
    }
}

fn job<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|job| job["name"] == name))
        .unwrap_or_else(|| panic!("no job {name} in {status:#}"))
}

fn synced_at(status: &Value, revision: &str) -> bool {
    status["sync"]["status"] == "Synced"
        && status["sync"]["applied_revision"] == revision
        && status["health"]["status"] == "Healthy"
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The id of the live job `name` (it must exist).
async fn live_job_id(dli: &DliClient, name: &str) -> i64 {
    let listed = dli
        .list_jobs(&ListJobsQuery {
            name: Some(name.into()),
            ..ListJobsQuery::default()
        })
        .await
        .unwrap();
    listed.first().expect("the job is live").id
}

fn live_cu_number(emulator: &Emulator, name: &str) -> i32 {
    runtime().block_on(async {
        let dli = emulator.dli();
        let id = live_job_id(&dli, name).await;
        dli.job_detail(id).await.unwrap().config.cu_number
    })
}

mod shutdown;
mod sync;
