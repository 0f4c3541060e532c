//! Fairness between targets, end to end: the real `dli-gitops` binary runs one daemon over
//! several accounts, each in its own emulator process, with a daemon-wide cap of two concurrent
//! actions (`max_concurrent_actions: 2`). One account answers every call with an error (100%
//! injected faults), one is slow (every call delayed), three are healthy. The healthy accounts
//! must converge while the failing one is still failing and before the slow one is done: one
//! account's trouble never holds up another's jobs.
//!
//! Nothing asserts a wall-clock threshold: the assertions are on order and counts (which
//! targets are Synced while which are not, how many jobs each account holds), with a generous
//! deadline only to end a hung run.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dli_gitops::cloud::{ClientOptions, Credentials, DliClient, ListJobsQuery, Secret};
use serde_json::Value;

use support::BINARY;
use support::daemon::Process;
use support::emulator::start_emulator;

/// Only to end a run that hangs; the shared CI cores are slow.
const DEADLINE: Duration = Duration::from_secs(240);
const HEALTHY: [&str; 3] = ["healthy-a", "healthy-b", "healthy-c"];
const JOBS_PER_TARGET: usize = 5;
const SLOW_JOBS: usize = 6;

/// One account: its AK/SK and project.
struct Account {
    target: String,
    access_key: String,
    secret_key: String,
    project: String,
}

impl Account {
    fn new(index: usize, target: &str) -> Account {
        Account {
            target: target.to_string(),
            access_key: format!("FAIRNESSACCOUNT{index:02}AK"),
            secret_key: format!("fairness-account-{index:02}-secret"),
            project: format!("{:032x}", 0xfa1e_0000u64 + index as u64),
        }
    }
}

struct Emulator {
    /// Kept so the process lives as long as the handle (killed on drop).
    _process: Process,
    endpoints: Value,
}

impl Emulator {
    /// An emulator process for `accounts`, with `faults` (the config's flow YAML).
    fn start(dir: &Path, name: &str, accounts: &[&Account], faults: &str) -> Emulator {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = format!(
            "delays: {{submit_ms: 0, cancel_ms: 0, savepoint_ms: 0, dlf_task_ms: 0}}\n\
             faults: {faults}\n\
             auth: {{lockout_failures: 0}}\n\
             credentials:\n"
        );
        for account in accounts {
            config.push_str(&format!(
                "  - {{access_key: {}, secret_key: {}, project_id: {}}}\n",
                account.access_key, account.secret_key, account.project
            ));
        }
        let (process, endpoints) = start_emulator(&dir, &config);
        Emulator {
            _process: process,
            endpoints,
        }
    }

    fn url(&self, service: &str) -> String {
        self.endpoints[service].as_str().unwrap().to_string()
    }

    /// The statuses of `account`'s Flink jobs, read through the DLI API with its credentials.
    async fn jobs(&self, account: &Account) -> Vec<String> {
        let client = DliClient::new(
            url::Url::parse(&self.url("dli")).unwrap(),
            &account.project,
            Credentials::AkSk {
                access_key: account.access_key.clone(),
                secret_key: Secret::new(account.secret_key.clone()),
                security_token: None,
            },
            ClientOptions::default(),
        )
        .unwrap();
        client
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap_or_else(|error| panic!("listing the jobs of {}: {error}", account.target))
            .into_iter()
            .map(|job| job.status.as_str().to_string())
            .collect()
    }

    async fn calls(&self, http: &reqwest::Client) -> u64 {
        let url = format!("{}/_emulator/v1/stats", self.url("dli"));
        match http.get(&url).send().await {
            Ok(response) => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|stats| stats["total"].as_u64())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }
}

fn job_yaml(name: &str) -> String {
    format!(
        "kind: FlinkSqlJob\nname: {name}\nqueue_name: ${{flink_queue}}\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\ncu_number: 2\n\
         parallel_number: 1\ndesired_state: running\n"
    )
}

/// A directory of jobs for one target.
fn write_jobs(root: &Path, prefix: &str, count: usize) {
    std::fs::create_dir_all(root.join("flink")).unwrap();
    std::fs::create_dir_all(root.join("environments")).unwrap();
    std::fs::write(
        root.join("environments/fair.yaml"),
        "variables: {flink_queue: dev_flink}\n",
    )
    .unwrap();
    for index in 0..count {
        let name = format!("{prefix}-{index}");
        std::fs::write(root.join(format!("flink/{name}.yaml")), job_yaml(&name)).unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn target_block(account: &Account, emulator: &Emulator, index: usize) -> String {
    format!(
        "  - name: {name}\n    source: {name}\n    environment: fair\n    region: cn-north-4\n    project_id: {project}\n\
         \x20   endpoints: {{dli: {dli}, dlf: {dli}, obs: {s3}, iam: {dli}}}\n\
         \x20   credentials: {{access_key_env: FAIR_AK_{index}, secret_key_env: FAIR_SK_{index}}}\n\
         \x20   staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n\
         \x20   policy: {{auto_sync: true, self_heal: true, prune: false, resync_interval: 1h}}\n\
         \x20   retry: {{max_attempts: 2, initial_backoff: 200ms, max_backoff: 1s}}\n\
         \x20   rate_limit: {{requests_per_second: 1000, burst: 1000}}\n\
         \x20   timeouts: {{job_transition: 60s, request: 20s}}\n",
        name = account.target,
        project = account.project,
        dli = emulator.url("dli"),
        s3 = emulator.url("s3"),
    )
}

fn targets_synced(targets: &[Value]) -> Vec<String> {
    targets
        .iter()
        .filter(|target| {
            let sync = &target["sync"];
            sync["status"] == "Synced"
                && sync["applied_revision"].is_string()
                && sync["applied_revision"] == sync["revision"]
        })
        .map(|target| target["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_failing_or_slow_account_never_holds_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut accounts: Vec<Account> = HEALTHY
        .iter()
        .enumerate()
        .map(|(index, name)| Account::new(index, name))
        .collect();
    accounts.push(Account::new(3, "failing"));
    accounts.push(Account::new(4, "slow"));
    let healthy_refs: Vec<&Account> = accounts[..3].iter().collect();
    let healthy = Emulator::start(dir.path(), "healthy", &healthy_refs, "{}");
    // Every cloud call of this account fails (HTTP 500): its observation never succeeds.
    let failing = Emulator::start(dir.path(), "failing", &[&accounts[3]], "{error_rate: 1.0}");
    // Every call of this account takes a second: its actions hold their slots long.
    let slow = Emulator::start(dir.path(), "slow", &[&accounts[4]], "{latency_ms: 1000}");
    let emulator_of = |index: usize| match index {
        3 => &failing,
        4 => &slow,
        _ => &healthy,
    };

    let mut sources = String::new();
    let mut targets = String::new();
    for (index, account) in accounts.iter().enumerate() {
        let repo = dir.path().join("repos").join(&account.target);
        let count = if account.target == "slow" {
            SLOW_JOBS
        } else {
            JOBS_PER_TARGET
        };
        write_jobs(&repo, &account.target, count);
        sources.push_str(&format!(
            "  {}:\n    path: {}\n    debounce: 100ms\n",
            account.target,
            repo.display()
        ));
        targets.push_str(&target_block(account, emulator_of(index), index));
    }
    let port = free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: ./state\nlisten: 127.0.0.1:{port}\n\
             # Two actions at once for the whole daemon: five targets compete for them.\n\
             max_concurrent_actions: 2\n\
             sources:\n{sources}targets:\n{targets}"
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut command = Command::new(BINARY);
    command
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (index, account) in accounts.iter().enumerate() {
        command
            .env(format!("FAIR_AK_{index}"), &account.access_key)
            .env(format!("FAIR_SK_{index}"), &account.secret_key);
    }
    let daemon = Process {
        child: command.spawn().expect("the daemon starts"),
        log,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let started = Instant::now();
        // Wait until every healthy target is Synced on its revision.
        let (synced, statuses) = loop {
            let answer = http
                .get(format!("http://127.0.0.1:{port}/api/v1/targets"))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if let Ok(response) = answer
                && let Ok(body) = response.json::<Value>().await
            {
                let statuses = body["targets"].as_array().cloned().unwrap_or_default();
                let synced = targets_synced(&statuses);
                if HEALTHY.iter().all(|name| synced.iter().any(|s| s == name)) {
                    break (synced, statuses);
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the healthy accounts did not converge within {DEADLINE:?}; daemon log:\n{}",
                tail(&daemon.log(), 60)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };

        // The failing account is still failing: not Synced, an error reported, nothing created.
        assert!(
            !synced.iter().any(|name| name == "failing"),
            "the failing account cannot be Synced: {synced:?}"
        );
        let failing_status = statuses
            .iter()
            .find(|target| target["name"] == "failing")
            .expect("the failing target is listed");
        assert!(
            failing_status["last_error"].is_object()
                || failing_status["operation"]["phase"] == "Running",
            "the failing account shows its error or is still retrying: {failing_status:#}"
        );
        assert!(
            failing.calls(&http).await > 0,
            "the failing account was called (its passes ran and failed)"
        );

        // The slow account, which started at the same moment, is not done yet: its actions hold
        // their slots about a hundred times longer than a healthy account's, and it got no
        // more than its share of them.
        assert!(
            !synced.iter().any(|name| name == "slow"),
            "the slow account converged before the healthy ones: {synced:?}"
        );
        for name in HEALTHY {
            let status = statuses
                .iter()
                .find(|target| target["name"] == name)
                .expect("listed");
            assert!(
                status["last_error"].is_null(),
                "{name} had an error: {status:#}"
            );
        }

        // Every healthy account holds exactly its jobs, all running.
        for account in &accounts[..3] {
            let jobs = healthy.jobs(account).await;
            assert_eq!(
                jobs.len(),
                JOBS_PER_TARGET,
                "{} holds its {JOBS_PER_TARGET} jobs: {jobs:?}",
                account.target
            );
            assert!(
                jobs.iter().all(|status| status == "job_running"),
                "{}: {jobs:?}",
                account.target
            );
        }

        // The slow account gets there too, in time: the cap throttles, it does not starve.
        loop {
            let running = slow
                .jobs(&accounts[4])
                .await
                .iter()
                .filter(|status| *status == "job_running")
                .count();
            if running == SLOW_JOBS {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the slow account did not converge within {DEADLINE:?} ({running} of {SLOW_JOBS} running); daemon log:\n{}",
                tail(&daemon.log(), 60)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And the failing account is still failing, however long the others took.
        let answer: Value = http
            .get(format!("http://127.0.0.1:{port}/api/v1/targets/failing"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_ne!(answer["sync"]["status"], "Synced", "{answer:#}");
        assert!(answer["last_error"].is_object(), "{answer:#}");
    });
    drop(daemon);
    drop((healthy, failing, slow));
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
