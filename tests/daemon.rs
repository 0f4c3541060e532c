//! End to end: the real `dli-gitops` binary runs the daemon against the emulator (its own
//! process) with a real git repository made in a temp directory. Each test drives it only
//! through git commits, HTTP, signals, and the emulator's API, as a user would.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dli_gitops::cloud::{ClientOptions, Credentials, DliClient, ListJobsQuery, Secret};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const BINARY: &str = env!("CARGO_BIN_EXE_dli-gitops");
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
    _process: Process,
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
        let config = dir.join("emulator.yaml");
        std::fs::write(&config, format!("delays: {delays}\n")).unwrap();
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
        let process = Process {
            child: Some(child),
            log,
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the emulator prints its endpoints");
        let endpoints: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("endpoints line {line:?}; log:\n{}", process.log()));
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

/// One blocking HTTP/1.1 request over a fresh connection (reqwest's blocking client would pull
/// in another feature; this is enough for loopback tests).
fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    out
}

// ---- the job repository ------------------------------------------------------------------

struct Repo {
    path: PathBuf,
    repository: git2::Repository,
}

impl Repo {
    fn init(path: &Path) -> Repo {
        let mut options = git2::RepositoryInitOptions::new();
        options.initial_head("main");
        let repository = git2::Repository::init_opts(path, &options).unwrap();
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
        let mut index = self.repository.index().unwrap();
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"].iter(), None).unwrap();
        index.write().unwrap();
        let tree = self
            .repository
            .find_tree(index.write_tree().unwrap())
            .unwrap();
        let signature = git2::Signature::now("e2e", "e2e@example.com").unwrap();
        let parent = self
            .repository
            .head()
            .ok()
            .and_then(|head| head.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let id = self
            .repository
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap();
        id.to_string()
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

/// Changes a job's `cu_number` through the DLI API, as someone in the console would: a running
/// job takes only hot fields, so it is stopped, updated and started again.
fn change_behind_the_daemons_back(emulator: &Emulator, name: &str, cu_number: i32) -> i64 {
    runtime().block_on(async {
        let dli = emulator.dli();
        let listed = dli
            .list_jobs(&ListJobsQuery {
                name: Some(name.into()),
                ..ListJobsQuery::default()
            })
            .await
            .unwrap();
        let id = listed.first().expect("the job is live").id;
        let running = dli.job_detail(id).await.unwrap().status.is_running();
        if running {
            dli.stop_jobs(&[id], false).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut detail = dli.job_detail(id).await.unwrap();
        while !detail.status.is_stopped() {
            assert!(
                Instant::now() < deadline,
                "the job did not stop: {}",
                detail.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            detail = dli.job_detail(id).await.unwrap();
        }
        detail.config.cu_number = cu_number;
        dli.update_sql_job(id, &detail.config).await.unwrap();
        if running {
            dli.run_jobs(&[id], false).await.unwrap();
            while !dli.job_detail(id).await.unwrap().status.is_running() {
                assert!(Instant::now() < deadline, "the job did not start again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        id
    })
}

fn live_cu_number(emulator: &Emulator, name: &str) -> i32 {
    runtime().block_on(async {
        let dli = emulator.dli();
        let listed = dli
            .list_jobs(&ListJobsQuery {
                name: Some(name.into()),
                ..ListJobsQuery::default()
            })
            .await
            .unwrap();
        let id = listed.first().expect("the job is live").id;
        dli.job_detail(id).await.unwrap().config.cu_number
    })
}

/// Every live job's status word.
fn live_statuses(emulator: &Emulator) -> Vec<String> {
    runtime().block_on(async {
        emulator
            .dli()
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|job| job.status.as_str().to_string())
            .collect()
    })
}

fn github_signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn commits_converge_upgrade_with_the_savepoint_and_an_invalid_commit_is_refused() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "first job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "a");

    // A commit converges.
    let status = daemon.wait_for("the first commit to converge", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    assert_eq!(job(&status, "clicks")["sync_status"], "Synced");
    let job_id = job(&status, "clicks")["live_id"].as_i64().unwrap();

    // A second commit upgrades the running job, carrying its state in a savepoint.
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&job_yaml("clicks", 4)))],
    );
    let status = daemon.wait_for("the upgrade to converge", |status| {
        synced_at(status, &second) && job(status, "clicks")["live_status"] == "job_running"
    });
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 4);
    let live_id = job(&status, "clicks")["live_id"].as_i64().unwrap();
    assert_eq!(live_id, job_id, "an import with is_cover keeps the job id");
    let runs = setup.emulator.runs(live_id);
    let runs = runs["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("{runs:#}"));
    assert!(runs.len() >= 2, "{runs:#?}");
    let last = runs.last().unwrap();
    assert_eq!(last["resume_savepoint"], true, "{last:#}");
    assert!(
        last["restored_from"]
            .as_str()
            .is_some_and(|path| path.contains("savepoint")),
        "the upgraded job did not resume from a savepoint: {last:#}"
    );
    let plan = status["last_plan"]["text"].as_str().unwrap_or("");
    assert!(!plan.is_empty());

    // An invalid commit is refused; the previous revision stays.
    let broken = setup.repo.commit(
        "typo",
        &[(
            "flink/clicks.yaml",
            Some(&job_yaml("clicks", 8).replace("cu_number", "cu_nmber")),
        )],
    );
    let status = daemon.wait_for("the invalid commit to be refused", |status| {
        status["rejected_revision"]["revision"] == broken
    });
    assert_eq!(status["sync"]["revision"], second);
    assert_eq!(status["sync"]["applied_revision"], second);
    let errors = status["rejected_revision"]["errors"].to_string();
    assert!(errors.contains("flink/clicks.yaml"), "{errors}");
    assert!(errors.contains("cu_nmber"), "{errors}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 4);

    // The CLI, the page and the metrics say the same.
    let output = Command::new(BINARY)
        .args(["status", "--server", &daemon.base])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("TARGET dev  sync=Synced  health=Healthy"),
        "{text}"
    );
    assert!(text.contains("does not validate"), "{text}");
    assert!(text.contains("clicks"), "{text}");
    let (code, page) = ureq_get(&format!("{}/", daemon.base)).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("cu_nmber"));
    let (_, metrics) = ureq_get(&format!("{}/metrics", daemon.base)).unwrap();
    for family in [
        "dli_gitops_reconcile_duration_seconds_count{target=\"dev\"}",
        "dli_gitops_sync_total{target=\"dev\",result=\"succeeded\"}",
        "dli_gitops_sync_total{target=\"dev\",result=\"invalid_revision\"} 1",
        "dli_gitops_jobs{target=\"dev\",sync_status=\"Synced\",health=\"Healthy\"} 1",
        "dli_gitops_git_fetches_total{source=\"jobs\",result=\"succeeded\"}",
        "dli_gitops_api_requests_total{target=\"dev\",service=\"dli\",operation=\"list_jobs\",status=\"200\"}",
        "dli_gitops_journal_records_total{kind=\"intent\"}",
        "dli_gitops_journal_records_total{kind=\"outcome\"}",
    ] {
        assert!(metrics.contains(family), "missing {family} in:\n{metrics}");
    }
    assert!(daemon.stop().success());
}

#[test]
fn drift_is_reported_without_self_heal_and_corrected_with_it() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "report");
    daemon.wait_for("convergence", |status| synced_at(status, &first));

    change_behind_the_daemons_back(&setup.emulator, "clicks", 6);
    let status = daemon.wait_for("the drift to be reported", |status| {
        status["sync"]["status"] == "OutOfSync"
    });
    assert_eq!(job(&status, "clicks")["sync_status"], "OutOfSync");
    assert_eq!(job(&status, "clicks")["action"], "upgrade");
    // Several resyncs later it is still reported, not corrected.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 6);
    assert_eq!(daemon.target()["sync"]["status"], "OutOfSync");
    assert!(daemon.stop().success());

    let daemon = setup.start_daemon(true, "1s", "heal");
    daemon.wait_for("self-heal", |status| synced_at(status, &first));
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 2);
    assert!(daemon.stop().success());
}

#[test]
fn a_signed_webhook_fetches_at_once_and_an_unsigned_one_is_rejected() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    // Polling once an hour: only the webhook can bring the next commit in time.
    let daemon = setup.start_daemon(false, "1h", "hook");
    daemon.wait_for("convergence", |status| synced_at(status, &first));
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&job_yaml("clicks", 3)))],
    );
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "after": second,
        "repository": {"clone_url": setup.repo.path.display().to_string()},
    })
    .to_string();
    let hook = format!("{}/api/v1/hooks/git", daemon.base);

    let (code, answer) = http("POST", &hook, &[("X-GitHub-Event", "push".into())], &body).unwrap();
    assert_eq!(code, 401, "{answer}");
    let (code, _) = http(
        "POST",
        &hook,
        &[
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", "sha256=00".into()),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.target()["sync"]["revision"], first);

    let (code, answer) = http(
        "POST",
        &hook,
        &[
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", github_signature(&body)),
            ("Content-Type", "application/json".into()),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(code, 202, "{answer}");
    daemon.wait_for("the pushed commit to converge", |status| {
        synced_at(status, &second)
    });
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 3);

    // A manual sync needs the token.
    let sync = format!("{}/api/v1/targets/dev/sync", daemon.base);
    let (code, _) = http("POST", &sync, &[], "").unwrap();
    assert_eq!(code, 401);
    let (code, _) = http(
        "POST",
        &sync,
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        "",
    )
    .unwrap();
    assert_eq!(code, 202);
    let (_, metrics) = ureq_get(&format!("{}/metrics", daemon.base)).unwrap();
    assert!(
        metrics.contains(
            "dli_gitops_webhook_requests_total{provider=\"github\",result=\"rejected\"} 2"
        )
    );
    assert!(
        metrics.contains(
            "dli_gitops_webhook_requests_total{provider=\"github\",result=\"accepted\"} 1"
        )
    );
    assert!(daemon.stop().success());
}

/// Positions of JSON log lines whose message is `message`.
fn log_positions(log: &str, message: &str) -> Vec<usize> {
    log.lines()
        .enumerate()
        .filter(|(_, line)| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|record| record["fields"]["message"] == message)
        })
        .map(|(index, _)| index)
        .collect()
}

#[test]
fn sigterm_during_an_apply_finishes_it_and_a_crash_is_resolved_on_the_next_start() {
    // Slow starts, so signals land while a pass is applying.
    let setup = Setup::new(4000);
    let first = setup.repo.commit(
        "two jobs",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("flink/views.yaml", Some(&job_yaml("views", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "before");
    daemon.wait_for("the apply to be under way", |status| {
        status["operation"]["phase"] == "Running" && status["operation"]["mode"] == "apply"
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let exit = daemon.stop();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(50));
    // The signal arrived during the pass, and the pass ran its actions to their outcome
    // before the process stopped.
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-before.log")).unwrap();
    let signal = log_positions(&log, "Signal received.");
    let finished = log_positions(&log, "Reconcile pass finished.");
    assert!(
        signal.len() == 1 && finished.last().is_some_and(|last| *last > signal[0]),
        "the signal did not land during the pass; log:\n{}",
        tail(&log, 30)
    );
    assert!(!log_positions(&log, "dli-gitops daemon stopped.").is_empty());

    // The journal is intact.
    let state_dir = setup.dir.path().join("state");
    let verify = |when: &str| {
        let output = Command::new(BINARY)
            .args(["journal", "verify", "--state-dir"])
            .arg(&state_dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "journal verify {when}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    verify("after SIGTERM");

    let daemon = setup.start_daemon(false, "1s", "after-term");
    daemon.wait_for("convergence after the restart", |status| {
        synced_at(status, &first)
            && job(status, "clicks")["live_status"] == "job_running"
            && job(status, "views")["live_status"] == "job_running"
    });

    // A crash in the middle of an upgrade leaves intents without outcomes; the next start
    // resolves them by observing, then converges.
    let second = setup.repo.commit(
        "more CUs",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 3))),
            ("flink/views.yaml", Some(&job_yaml("views", 3))),
        ],
    );
    daemon.wait_for("the upgrade to be under way", |status| {
        status["operation"]["phase"] == "Running"
            && status["operation"]["mode"] == "apply"
            && status["operation"]["revision"] == second
    });
    // Once a job has left job_running, its action's intent is in the journal.
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while live_statuses(&setup.emulator)
        .iter()
        .all(|status| status == "job_running")
    {
        assert!(Instant::now() < deadline, "the upgrade never stopped a job");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.kill();
    verify("after SIGKILL");
    let daemon = setup.start_daemon(false, "1s", "after-kill");
    let status = daemon.wait_for("convergence after the crash", |status| {
        synced_at(status, &second)
            && job(status, "clicks")["live_status"] == "job_running"
            && job(status, "views")["live_status"] == "job_running"
    });
    assert_eq!(status["jobs"].as_array().unwrap().len(), 2);
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-after-kill.log")).unwrap();
    assert!(
        !log_positions(
            &log,
            "Resolved an intent an interrupted pass left open; this pass re-plans from what is live."
        )
        .is_empty(),
        "no interrupted intent was resolved; log:\n{}",
        tail(&log, 40)
    );
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 3);
    assert_eq!(live_cu_number(&setup.emulator, "views"), 3);
    assert!(daemon.stop().success());
}

/// Reads, at a quiet moment (no pass running, none finishing in between), the number of passes
/// the daemon has finished (its `/metrics`) and the emulator's call counters.
fn quiet_counts(daemon: &Daemon, emulator: &Emulator) -> (u64, Value) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let before = daemon.target();
        let (_, stats) = get_json(&format!("{}/_emulator/v1/stats", emulator.url("dli")));
        let (_, metrics) = ureq_get(&format!("{}/metrics", daemon.base)).unwrap();
        let after = daemon.target();
        let passes = metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix("dli_gitops_reconcile_duration_seconds_count{target=\"dev\"} ")
            })
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if before["operation"]["phase"] != "Running" && before["operation"] == after["operation"] {
            return (passes, stats);
        }
        assert!(Instant::now() < deadline, "the daemon was never idle");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(stats: &Value, operation: &str) -> u64 {
    stats["operations"][operation].as_u64().unwrap_or(0)
}

#[test]
fn a_pass_over_a_synced_target_costs_one_list_call() {
    let setup = Setup::new(300);
    let first = setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    // self_heal off: each resync (every 10 s, the shortest allowed) is a report-only pass.
    let config = setup.config_with(false, "1h", "10s", "");
    let daemon = Daemon::start(setup.dir.path(), &config, "calls");
    daemon.wait_for("convergence", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    let (passes_before, stats_before) = quiet_counts(&daemon, &setup.emulator);

    // A report-only pass (a resync), then a pass that may apply (a manual sync) with nothing to do.
    let deadline = Instant::now() + Duration::from_secs(40);
    while quiet_counts(&daemon, &setup.emulator).0 == passes_before {
        assert!(Instant::now() < deadline, "no resync pass ran");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/targets/dev/sync", daemon.base),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        "",
    )
    .unwrap();
    assert!(
        (200..300).contains(&code),
        "manual sync answered {code}: {body}"
    );
    daemon.wait_for("the manual sync to run", |status| {
        status["operation"]["mode"] == "apply"
            && status["operation"]["phase"] == "Succeeded"
            && status["operation"]["triggers"]
                .as_array()
                .is_some_and(|triggers| triggers.iter().any(|t| t == "manual"))
    });
    let (passes_after, stats_after) = quiet_counts(&daemon, &setup.emulator);

    let passes = passes_after - passes_before;
    assert!(passes >= 2, "only {passes} pass(es) ran");
    let lists = count(&stats_after, "ListFlinkJobs") - count(&stats_before, "ListFlinkJobs");
    assert_eq!(
        lists, passes,
        "{passes} passes over an unchanged target made {lists} list calls; before: {stats_before:#}, after: {stats_after:#}"
    );
    let total = stats_after["total"].as_u64().unwrap() - stats_before["total"].as_u64().unwrap();
    assert_eq!(
        total, passes,
        "an unchanged target costs one call per pass and nothing else; before: {stats_before:#}, after: {stats_after:#}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn the_configs_logging_block_applies_unless_the_flag_or_rust_log_say_otherwise() {
    let setup = Setup::new(300);
    setup.repo.commit(
        "job",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let config = setup.config_with(
        false,
        "1h",
        "1m",
        "logging: {format: json, level: \"warn,dli_gitops::daemon=debug\"}\n",
    );
    let is_json = |line: &str| serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object());

    // The config alone: JSON lines, its filter (debug events of the daemon, no info of others).
    let daemon = Daemon::start_with(setup.dir.path(), &config, "config", &[], None);
    daemon.wait_for("a pass to finish", |status| {
        status["operation"]["finished_at"].is_string()
    });
    let status = daemon.stop();
    assert!(status.success());
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-config.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|line| is_json(line)), "not JSON:\n{log}");
    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        events.iter().any(|event| event["level"] == "DEBUG"
            && event["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("dli_gitops::daemon"))),
        "the config's debug filter was not applied:\n{log}"
    );
    assert!(
        !events.iter().any(|event| event["level"] == "INFO"
            && !event["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("dli_gitops::daemon"))),
        "info events outside the daemon passed a `warn` filter:\n{log}"
    );

    // --log-format text and RUST_LOG win.
    let daemon = Daemon::start_with(
        setup.dir.path(),
        &config,
        "flag",
        &["--log-format", "text"],
        Some("info"),
    );
    assert!(daemon.stop().success());
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-flag.log")).unwrap();
    assert!(log.contains("Logging set up."), "{log}");
    assert!(
        log.lines().all(|line| !is_json(line)),
        "JSON despite --log-format text:\n{log}"
    );
    assert!(
        !log.contains("DEBUG"),
        "RUST_LOG=info did not win over the config:\n{log}"
    );
    assert!(log.contains(" INFO "), "{log}");
}

// ---- shutdown in the middle of an upgrade ------------------------------------------------------

/// The stop savepoint the journal recorded for `job` in its latest upgrade.
fn journaled_stop_savepoint(state_dir: &Path, job: &str) -> Option<String> {
    let output = Command::new(BINARY)
        .args(["journal", "show", "--json", "--state-dir"])
        .arg(state_dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| {
            record["kind"] == "outcome"
                && record["job"] == job
                && record["action_id"]
                    .as_str()
                    .is_some_and(|id| id.ends_with("-stop-savepoint"))
        })
        .filter_map(|record| {
            record["effects"]["savepoint_path"]
                .as_str()
                .map(str::to_string)
        })
        .next_back()
}

/// The live job `name`: its id, status word and `cu_number`.
fn live_job(emulator: &Emulator, name: &str) -> (i64, String, i32) {
    runtime().block_on(async {
        let dli = emulator.dli();
        let listed = dli
            .list_jobs(&ListJobsQuery {
                name: Some(name.into()),
                ..ListJobsQuery::default()
            })
            .await
            .unwrap();
        let job = listed.first().expect("the job is live");
        let detail = dli.job_detail(job.id).await.unwrap();
        (
            job.id,
            job.status.as_str().to_string(),
            detail.config.cu_number,
        )
    })
}

/// Waits until the upgrade has stopped running `name` (its stop is under way).
fn wait_until_stopping(emulator: &Emulator, name: &str) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while live_job(emulator, name).1 == "job_running" {
        assert!(
            Instant::now() < deadline,
            "the upgrade never stopped {name}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The job runs again with the new definition, resumed from the savepoint its stop took.
fn assert_upgraded_from_its_stop_savepoint(emulator: &Emulator, state_dir: &Path, cu_number: i32) {
    let (id, status, cu) = live_job(emulator, "clicks");
    assert_eq!(
        status, "job_running",
        "the job git wants running is running"
    );
    assert_eq!(cu, cu_number);
    journaled_stop_savepoint(state_dir, "clicks").expect("the stop savepoint is journaled");
    let runs = emulator.runs(id);
    let list = runs["runs"].as_array().cloned().unwrap_or_default();
    let (stopped, last) = match list.as_slice() {
        [.., stopped, last] => (stopped, last),
        _ => panic!("fewer than two runs: {runs:#}"),
    };
    // From our verified copy of it (the service deletes its own at the restart): same state.
    assert!(stopped["stop_savepoint_id"].is_string(), "{runs:#}");
    assert_eq!(
        last["restored_savepoint_id"], stopped["stop_savepoint_id"],
        "resumed from the stop savepoint: {runs:#}"
    );
}

/// `clicks`, upgraded with a savepoint, on a queue of its own.
fn upgrade_job_yaml(cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: clicks\nqueue_name: ${{flink_queue}}\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\nrun_mode: exclusive_cluster\n\
         cu_number: {cu_number}\nparallel_number: 1\ncheckpoint_enabled: true\n\
         checkpoint_interval: 60\ndesired_state: running\nupgrade_mode: savepoint\n"
    )
}

/// A setup whose emulator takes seconds to stop with a savepoint and to start, so a signal
/// lands between an upgrade's stop and its start; `clicks` is converged at cu_number 2.
fn slow_upgrade_setup() -> (Setup, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(&dir.path().join("jobs-repo"));
    let emulator = Emulator::start_with_delays(
        dir.path(),
        "{submit_ms: 2000, cancel_ms: 1000, savepoint_ms: 3000, dlf_task_ms: 100}",
    );
    let setup = Setup {
        repo,
        emulator,
        port: free_port(),
        dir,
    };
    let first = setup.repo.commit(
        "clicks",
        &[
            ("flink/clicks.yaml", Some(&upgrade_job_yaml(2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    (setup, first)
}

#[test]
fn sigterm_right_after_an_upgrade_stopped_a_job_finishes_the_upgrade_from_its_savepoint() {
    let (setup, first) = slow_upgrade_setup();
    let daemon = setup.start_daemon(false, "1s", "before");
    daemon.wait_for("clicks to run", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    wait_until_stopping(&setup.emulator, "clicks");
    // The stop (with its savepoint) is under way: shut down now.
    let started = Instant::now();
    let exit = daemon.stop();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(45));
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-before.log")).unwrap();
    assert!(
        !log_positions(
            &log,
            "Shutdown complete: every action in flight ran to its end and was journaled; no job was left stopped by this process."
        )
        .is_empty(),
        "{}",
        tail(&log, 30)
    );
    // Before the daemon exited, the upgrade updated the job, imported the savepoint the stop
    // took and started it: nothing waits for the next start.
    assert_upgraded_from_its_stop_savepoint(&setup.emulator, &setup.dir.path().join("state"), 3);
}

#[test]
fn ctrl_c_during_apply_finishes_the_upgrade_in_flight() {
    let (setup, _first) = slow_upgrade_setup();
    let config = setup.config(false, "1s");
    let apply = || {
        let mut command = Command::new(BINARY);
        command
            .args(["apply", "--auto-approve", "--target", "dev", "--config"])
            .arg(&config)
            .env("E2E_AK", ACCESS_KEY)
            .env("E2E_SK", SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let created = apply().output().unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    let child = apply().spawn().unwrap();
    let pid = child.id();
    wait_until_stopping(&setup.emulator, "clicks");
    // Ctrl-C once, while the job is stopping.
    assert!(
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Interrupted: finishing the actions in flight"),
        "{stderr}"
    );
    assert!(
        output.status.success() && stdout.contains("1 succeeded, 0 failed"),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status.code()
    );
    assert_upgraded_from_its_stop_savepoint(&setup.emulator, &setup.dir.path().join("state"), 3);
}

#[test]
fn an_upgrade_cut_off_by_the_shutdown_grace_is_finished_first_by_the_next_start() {
    let (setup, _first) = slow_upgrade_setup();
    // A grace period shorter than the stop: the upgrade cannot finish before the exit.
    let config = setup.config_with(false, "1s", "10s", "shutdown_grace: 1s\n");
    let daemon = Daemon::start(setup.dir.path(), &config, "short-grace");
    daemon.wait_for("clicks to run", |status| {
        status["jobs"].as_array().is_some_and(|jobs| {
            jobs.iter()
                .any(|job| job["name"] == "clicks" && job["live_status"] == "job_running")
        })
    });
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    wait_until_stopping(&setup.emulator, "clicks");
    let started = Instant::now();
    let exit = daemon.stop();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-short-grace.log")).unwrap();
    let incomplete = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| {
            record["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("Shutdown incomplete"))
        })
        .unwrap_or_else(|| panic!("no incomplete-shutdown line; log:\n{}", tail(&log, 30)));
    assert_eq!(incomplete["fields"]["targets"], "dev");
    assert_ne!(live_job(&setup.emulator, "clicks").1, "job_running");

    // The next start resolves the open intent first, says so, and finishes the upgrade from
    // the savepoint the stop took.
    let daemon = Daemon::start(setup.dir.path(), &config, "after-short-grace");
    daemon.wait_for("the upgrade to be finished", |status| {
        synced_at(status, &second) && job(status, "clicks")["live_status"] == "job_running"
    });
    let log =
        std::fs::read_to_string(setup.dir.path().join("daemon-after-short-grace.log")).unwrap();
    assert!(
        !log_positions(
            &log,
            "Resolved an intent an interrupted pass left open; this pass re-plans from what is live."
        )
        .is_empty(),
        "{}",
        tail(&log, 40)
    );
    assert!(
        !log_positions(
            &log,
            "This pass first resolved actions an interrupted earlier run (a shutdown past its grace period, a crash) left open; it plans from what is live and finishes them."
        )
        .is_empty(),
        "{}",
        tail(&log, 40)
    );
    let (id, _, cu) = live_job(&setup.emulator, "clicks");
    assert_eq!(cu, 3);
    let runs = setup.emulator.runs(id);
    let runs = runs["runs"].as_array().unwrap();
    let stopped = runs
        .iter()
        .rev()
        .find_map(|run| run["stop_savepoint_id"].as_str())
        .unwrap_or_else(|| panic!("no run was stopped with a savepoint: {runs:#?}"));
    assert_eq!(
        runs.last().unwrap()["restored_savepoint_id"].as_str(),
        Some(stopped),
        "{runs:#?}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn a_lost_journal_or_a_renamed_target_never_replays_a_restore() {
    let setup = Setup::new(0);
    let savepoint_dir = setup
        .dir
        .path()
        .join("emulator-data/obs/dli-gitops-savepoints/manual/clicks-1");
    std::fs::create_dir_all(&savepoint_dir).unwrap();
    std::fs::write(
        savepoint_dir.join("_metadata"),
        r#"{"format":"test-savepoint"}"#,
    )
    .unwrap();
    let savepoint = "obs://dli-gitops-savepoints/manual/clicks-1/";
    setup.repo.commit(
        "clicks, restored once from a savepoint",
        &[
            (
                "flink/clicks.yaml",
                Some(&format!(
                    "{}restore: {{savepoint_path: \"{savepoint}\", nonce: 1}}\n",
                    upgrade_job_yaml(2)
                )),
            ),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let config = setup.config(false, "1s");
    let run = |args: &[&str]| {
        let output = Command::new(BINARY)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("E2E_AK", ACCESS_KEY)
            .env("E2E_SK", SECRET_KEY)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = run(&["apply", "--auto-approve", "--target", "dev"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (id, status, _) = live_job(&setup.emulator, "clicks");
    assert_eq!(status, "job_running");
    let runs = |id| setup.emulator.runs(id)["runs"].as_array().unwrap().clone();
    let first = runs(id);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["restored_from"].as_str(), Some(savepoint));

    // The journal is lost (deleted by hand): the live job is adopted, its restore is not run
    // again.
    let state_dir = setup.dir.path().join("state");
    for file in ["journal.jsonl", "snapshot.json"] {
        let _ = std::fs::remove_file(state_dir.join(file));
    }
    let (code, stdout, stderr) = run(&["apply", "--auto-approve", "--target", "dev"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("recorded as done instead of being replayed"),
        "{stderr}"
    );
    assert!(!stdout.contains("restore clicks"), "{stdout}");
    assert_eq!(runs(id).len(), 1, "the restore ran again: {stdout}");
    let (code, stdout, stderr) = run(&["plan", "--detailed-exitcode", "--target", "dev"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // The target is renamed in the config: the journal's records of `dev` are reported, and
    // under its new name the restore is not run again either.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("- name: dev\n", "- name: dev2\n")).unwrap();
    let (code, stdout, stderr) = run(&["apply", "--auto-approve", "--target", "dev2"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("a target the config does not name") && stderr.contains("dev"),
        "{stderr}"
    );
    assert!(
        stderr.contains("recorded as done instead of being replayed"),
        "{stderr}"
    );
    assert_eq!(runs(id).len(), 1, "the restore ran again: {stdout}");
    let (_, status, _) = live_job(&setup.emulator, "clicks");
    assert_eq!(status, "job_running");
}

/// The process managers in `deploy/` wait longer than the daemon's shutdown grace, so the
/// daemon, not SIGKILL, decides when an action in flight is given up.
#[test]
fn deploy_grace_periods_outlast_the_shutdown_grace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let grace = dli_gitops::config::DEFAULT_SHUTDOWN_GRACE.as_secs();
    let value_after = |file: &str, key: &str| -> u64 {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with(key))
            .unwrap_or_else(|| panic!("{key} not in {file}"));
        line[key.len()..]
            .trim_start_matches([':', '=', ' '])
            .trim_end_matches('s')
            .parse()
            .unwrap_or_else(|_| panic!("{file}: {line}"))
    };
    let kubernetes = value_after(
        "deploy/kubernetes/deployment.yaml",
        "terminationGracePeriodSeconds",
    );
    let systemd = value_after("deploy/systemd/dli-gitops.service", "TimeoutStopSec");
    assert!(kubernetes >= grace + 10, "{kubernetes} s vs {grace} s");
    assert!(systemd >= grace + 10, "{systemd} s vs {grace} s");
    let example = dli_gitops::config::Config::load(&root.join("config.example.yaml")).unwrap();
    assert_eq!(example.shutdown_grace.get().as_secs(), grace);
    for (value, expected) in [("0s", "too short"), ("soon", "is not a duration")] {
        let text = format!(
            "shutdown_grace: {value}\nsources:\n  jobs: {{path: /tmp/jobs}}\ntargets:\n  - {{name: dev, source: jobs, endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}}}\n"
        );
        let config =
            dli_gitops::config::Config::from_yaml_str(&text, Path::new("config.yaml")).unwrap();
        let error = config
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            error.contains("shutdown_grace") && error.contains(expected),
            "{value}: {error}"
        );
    }
}

#[test]
fn a_journal_moved_away_under_the_daemon_stops_every_action_and_says_so() {
    let setup = Setup::new(0);
    let first = setup.repo.commit(
        "clicks",
        &[
            ("flink/clicks.yaml", Some(&upgrade_job_yaml(2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "displaced");
    daemon.wait_for("clicks to run", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    let state_dir = setup.dir.path().join("state");
    std::fs::rename(
        state_dir.join("journal.jsonl"),
        setup.dir.path().join("journal.moved"),
    )
    .unwrap();
    setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    let status = daemon.wait_for("the target to report the moved journal", |status| {
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("was moved or deleted"))
    });
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("stop the daemon"),
        "{status:#}"
    );
    // Nothing was done that the journal could not announce: the job still runs as before.
    std::thread::sleep(Duration::from_secs(3));
    let (_, live_status, cu) = live_job(&setup.emulator, "clicks");
    assert_eq!((live_status.as_str(), cu), ("job_running", 2));
    assert!(daemon.stop().success());
}

#[test]
fn a_second_signal_exits_at_once_and_the_next_start_finishes_the_upgrade() {
    let (setup, _first) = slow_upgrade_setup();
    let daemon = setup.start_daemon(false, "1s", "twice");
    daemon.wait_for("clicks to run", |status| {
        status["jobs"].as_array().is_some_and(|jobs| {
            jobs.iter()
                .any(|job| job["name"] == "clicks" && job["live_status"] == "job_running")
        })
    });
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    wait_until_stopping(&setup.emulator, "clicks");
    let mut daemon = daemon;
    let mut process = daemon.process.take().unwrap();
    process.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    process.signal("INT");
    let started = Instant::now();
    let child = process.child.as_mut().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second signal did not end the daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status}");
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-twice.log")).unwrap();
    assert!(
        log.contains("Second signal: exiting now"),
        "{}",
        tail(&log, 20)
    );

    let daemon = setup.start_daemon(false, "1s", "after-twice");
    daemon.wait_for("the upgrade to be finished", |status| {
        synced_at(status, &second) && job(status, "clicks")["live_status"] == "job_running"
    });
    let (_, _, cu) = live_job(&setup.emulator, "clicks");
    assert_eq!(cu, 3);
    assert!(daemon.stop().success());
}

/// The stand-in answers as the documented service does (service-filled fields, BATCH and
/// REAL_TIME DLF jobs): once converged over SQL (v1 and v2 resources), a Jar job with
/// `feature`, `flink_version` and `queue_name` unset, and DLF jobs of both types, `plan
/// --detailed-exitcode` exits 0 and a daemon with `self_heal` makes no mutating call over
/// twelve applying passes (an hour of passes at the default five-minute resync).
#[test]
fn a_converged_daemon_makes_no_mutating_call_for_an_hour_of_passes() {
    let setup = Setup::new(300);
    let dlf_job = |name: &str, process_type: &str| {
        format!(
            r#"{{"name": "{name}", "processType": "{process_type}", "nodes": [{{"name": "n", "type": "DWSSQL", "properties": [{{"name": "statement", "value": "SELECT 1"}}]}}], "schedule": {{"type": "CRON", "cron": {{"expression": "0 0 2 * * ?"}}}}}}"#
        )
    };
    let batch = dlf_job("nightly", "BATCH");
    let streaming = dlf_job("stream-load", "REAL_TIME");
    let jar = "kind: FlinkJarJob\nname: fraud\nentrypoint: obs://dli-gitops-staging/app.jar\nmain_class: com.example.Main\ncu_number: 2\ndesired_state: running\n";
    let v2 = "kind: FlinkSqlJob\nname: sessions\nqueue_name: ${flink_queue}\nsql_body: \"SELECT 2\"\nflink_version: \"1.15\"\nresource_config_version: v2\nresource_config: {max_slot: 2, parallel_number: 2, jobmanager_resource_spec: {cpu: 1, memory: 4G}, taskmanager_resource_spec: {cpu: 1, memory: 4G}}\ndesired_state: running\n";
    let revision = setup.repo.commit(
        "jobs of every kind",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("flink/fraud.yaml", Some(jar)),
            ("flink/sessions.yaml", Some(v2)),
            (
                "dlf/nightly.yaml",
                Some("kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\n"),
            ),
            ("dlf/nightly.job", Some(&batch)),
            (
                "dlf/stream-load.yaml",
                Some("kind: DlfJob\nname: stream-load\ndefinition_file: stream-load.job\n"),
            ),
            ("dlf/stream-load.job", Some(&streaming)),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let config = setup.config_with(true, "1h", "1h", "");
    let daemon = Daemon::start(setup.dir.path(), &config, "quiet-hour");
    daemon.wait_for("convergence over every kind of job", |status| {
        synced_at(status, &revision)
            && ["clicks", "fraud", "sessions"]
                .iter()
                .all(|name| job(status, name)["live_status"] == "job_running")
    });
    let (passes_before, stats_before) = quiet_counts(&daemon, &setup.emulator);
    let mut passes = 0;
    while passes < 12 {
        let (code, body) = http(
            "POST",
            &format!("{}/api/v1/targets/dev/sync", daemon.base),
            &[("Authorization", format!("Bearer {API_TOKEN}"))],
            "",
        )
        .unwrap();
        assert!(
            (200..300).contains(&code),
            "manual sync answered {code}: {body}"
        );
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let (done, _) = quiet_counts(&daemon, &setup.emulator);
            if done > passes_before + passes {
                passes = done - passes_before;
                break;
            }
            assert!(Instant::now() < deadline, "the manual sync never ran");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (_, stats_after) = quiet_counts(&daemon, &setup.emulator);
    let reads = ["List", "Show", "DlfList", "DlfShow", "Iam"];
    let mutating: Vec<(String, u64)> = stats_after["operations"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(operation, _)| !reads.iter().any(|read| operation.starts_with(read)))
        .filter_map(|(operation, count)| {
            let delta = count.as_u64().unwrap_or(0) - count_of(&stats_before, operation);
            (delta > 0).then(|| (operation.clone(), delta))
        })
        .collect();
    assert_eq!(
        mutating,
        Vec::<(String, u64)>::new(),
        "{passes} applying passes over a converged target changed something; before: {stats_before:#}, after: {stats_after:#}"
    );
    let dlf_lists = count_of(&stats_after, "DlfListJobs") - count_of(&stats_before, "DlfListJobs");
    assert_eq!(
        dlf_lists,
        2 * passes,
        "one DLF list per job type (BATCH, REAL_TIME) per pass"
    );
    assert!(daemon.stop().success());
    let plan = std::process::Command::new(BINARY)
        .args(["plan", "--detailed-exitcode", "--target", "dev", "--config"])
        .arg(&config)
        .env("E2E_AK", ACCESS_KEY)
        .env("E2E_SK", SECRET_KEY)
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after converging: {}{}",
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );
}

fn count_of(stats: &Value, operation: &str) -> u64 {
    stats["operations"][operation].as_u64().unwrap_or(0)
}
