//! SIGKILL crash loops for the state-safety paths: automatic rollback of a failed upgrade, and
//! garbage collection.
//!
//! The real binary runs as the emulator (its own process, so it outlives every kill) and as the
//! `apply` command, which is killed at random moments while it rolls a failed upgrade back.
//! After each round one last `apply` finishes the work, and: the job runs its previous (good)
//! definition, the rollback run resumed from the savepoint the upgrade stopped the job with
//! (nothing lost), the revision stays held (no loop into the bad version), `journal verify`
//! passes and every intent has an outcome. `RELIABILITY_CRASH_SEED` replays a seed,
//! `RELIABILITY_CRASH_RUNS` lengthens the loop.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dli_gitops::cloud::{ClientOptions, Credentials, DliClient, ListJobsQuery, Secret};
use serde_json::Value;
use url::Url;

use support::crash::{crash_runs, crash_seed};
use support::emulator::start_emulator;
use support::http::free_port;

const BINARY: &str = env!("CARGO_BIN_EXE_dli-gitops");
const ACCESS_KEY: &str = "STATESAFETYACCESSKEY";
const SECRET_KEY: &str = "state-safety-secret-key-0123456789";
const PROJECT_ID: &str = "5a5b5c5d5e5f60616263646566676869";

/// A child process, killed on drop so a failed assertion leaks nothing.
struct Process {
    child: Option<Child>,
}

impl Process {
    fn kill_hard(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
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

/// The emulator as its own process, with fast transitions.
struct Emulator {
    _process: support::daemon::Process,
    endpoints: Value,
}

impl Emulator {
    fn start(dir: &Path) -> Emulator {
        let (process, endpoints) = start_emulator(
            dir,
            &format!(
                "delays: {{submit_ms: 20, cancel_ms: 20, savepoint_ms: 20, dlf_task_ms: 20}}\n\
                 credentials:\n  - {{access_key: {ACCESS_KEY}, secret_key: {SECRET_KEY}, project_id: {PROJECT_ID}}}\n\
                 auth: {{lockout_failures: 0}}\n"
            ),
        );
        Emulator {
            _process: process,
            endpoints,
        }
    }

    fn url(&self, service: &str) -> String {
        self.endpoints[service]
            .as_str()
            .expect("endpoint")
            .to_string()
    }

    fn client(&self) -> DliClient {
        DliClient::new(
            Url::parse(&self.url("dli")).expect("url"),
            PROJECT_ID,
            Credentials::AkSk {
                access_key: ACCESS_KEY.into(),
                secret_key: Secret::new(SECRET_KEY),
                security_token: None,
            },
            ClientOptions {
                requests_per_second: 0.0,
                ..ClientOptions::default()
            },
        )
        .expect("client")
    }

    fn runs(&self, job_id: i64) -> Vec<Value> {
        let url = format!(
            "{}/_emulator/v1/{PROJECT_ID}/jobs/{job_id}/runs",
            self.url("dli")
        );
        let body: Value = block_on(async {
            reqwest::get(url)
                .await
                .expect("runs")
                .json()
                .await
                .expect("runs json")
        });
        body["runs"].as_array().cloned().unwrap_or_default()
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A target `dev` over a directory of jobs, with automatic rollback on.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
    /// The daemon's HTTP port (`listen`).
    port: u16,
}

impl Setup {
    fn new(dir: &Path, emulator: &Emulator) -> Setup {
        let port = free_port();
        std::fs::create_dir_all(dir.join("repo/environments")).expect("repo");
        std::fs::write(dir.join("repo/environments/dev.yaml"), "variables: {}\n").expect("env");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "state_dir: ./state\n\
                 listen: 127.0.0.1:{port}\n\
                 sources:\n  jobs:\n    path: repo\n\
                 targets:\n  - name: dev\n    source: jobs\n    environment: dev\n    region: cn-north-4\n    project_id: {PROJECT_ID}\n\
                 \x20   endpoints: {{dli: {dli}, dlf: {dli}, obs: {s3}, iam: {dli}}}\n\
                 \x20   credentials: {{access_key_env: SAFETY_AK, secret_key_env: SAFETY_SK}}\n\
                 \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
                 \x20   policy: {{rollback_on_failure: {{enabled: true, within: 10m}}}}\n\
                 \x20   retention: {{savepoints: {{keep: 1, max_age: 0s}}, backups: {{keep: 1}}}}\n\
                 \x20   timeouts: {{job_transition: 30s, savepoint: 30s, request: 10s}}\n",
                dli = emulator.url("dli"),
                s3 = emulator.url("s3"),
                port = port,
            ),
        )
        .expect("config");
        Setup {
            dir: dir.to_path_buf(),
            config,
            port,
        }
    }

    fn job(&self, sql: &str) {
        let path = self.dir.join("repo/flink/orders.yaml");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            path,
            format!(
                "kind: FlinkSqlJob\nname: orders\nqueue_name: dev_flink\nsql_body: {}\n",
                serde_json::to_string(sql).expect("json")
            ),
        )
        .expect("job file");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .args(["--target", "dev"])
            .current_dir(&self.dir)
            .env("SAFETY_AK", ACCESS_KEY)
            .env("SAFETY_SK", SECRET_KEY)
            .env("RUST_LOG", "info");
        command
    }

    /// `apply --auto-approve` in the background, its output to `log`.
    fn spawn_apply(&self, log: &str) -> Process {
        let child = self
            .command(&["apply", "--auto-approve"])
            .stdout(std::fs::File::create(self.dir.join(log)).expect("log"))
            .stderr(std::fs::File::create(self.dir.join(format!("{log}.err"))).expect("log"))
            .spawn()
            .expect("spawn apply");
        Process { child: Some(child) }
    }

    /// Runs a command to its end (at most two minutes); its exit code and output.
    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.dir.join("last.out");
        let mut child = self
            .command(args)
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(self.dir.join("last.err")).expect("err"))
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?} did not finish within two minutes");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&out).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.join("last.err")).unwrap_or_default();
        (status.code(), text)
    }

    /// `apply` until `plan --detailed-exitcode` finds nothing to do.
    fn converge(&self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..10 {
            let (_, applied) = self.run(&["apply", "--auto-approve"]);
            let (code, plan) = self.run(&["plan", "--detailed-exitcode"]);
            if code == Some(0) {
                return Ok(());
            }
            last = format!("{applied}\n{plan}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// `journal verify` passes and every intent has an outcome.
    fn journal_violations(&self) -> Vec<String> {
        support::crash::journal_violations(&self.dir.join("state"))
    }
}

/// Keeps the directory and names the seed when anything failed.
fn fail_keeping_evidence(temp: tempfile::TempDir, seed: u64, failures: &[String]) {
    if !failures.is_empty() {
        let kept = temp.keep();
        panic!(
            "seed {seed} (state kept in {}):\n{}",
            kept.display(),
            failures.join("\n")
        );
    }
}

/// The live job: (id, status, sql body).
fn live_orders(emulator: &Emulator) -> Option<(i64, String, Option<String>)> {
    let client = emulator.client();
    let listed = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list");
    let job = listed.iter().find(|job| job.name == "orders")?;
    let detail = block_on(client.job_detail(job.id)).expect("detail");
    Some((
        job.id,
        detail.status.as_str().to_string(),
        detail.config.sql_body.clone(),
    ))
}

/// Each round: a good definition converges, a bad one is upgraded to (its runs fail 150 ms
/// after they start), then `apply` is killed at random moments while it rolls the failure back,
/// and one last convergence finishes the work. After every round the job runs the good
/// definition, resumed from the savepoint the upgrade stopped it with, and is held (a plan has
/// nothing to do). At the end the journal verifies and every intent has its outcome.
#[test]
fn automatic_rollback_killed_at_random_moments_loses_nothing_and_never_loops() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("automatic rollback crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = Emulator::start(dir);
    let setup = Setup::new(dir, &emulator);
    let rounds = crash_runs(6);
    let mut failures = Vec::new();
    let mut kills = 0;
    for round in 0..rounds {
        let good = format!("SELECT {round} AS good;");
        setup.job(&good);
        if let Err(last) = setup.converge() {
            failures.push(format!(
                "round {round}: the good definition did not converge:\n{last}"
            ));
            break;
        }
        let (id, _, _) = live_orders(&emulator).expect("orders is live");
        let runs_before = emulator.runs(id).len();
        setup.job(&format!(
            "-- dli-emulator:fail-after-ms=150\nSELECT {round} AS bad;"
        ));
        let (_, upgrade) = setup.run(&["apply", "--auto-approve"]);
        std::thread::sleep(Duration::from_millis(250));
        // The failed upgrade is rolled back by `apply`, killed at random moments.
        for attempt in 0..rng.gen_range(1..=3) {
            let process = setup.spawn_apply(&format!("apply-{round}-{attempt}.log"));
            std::thread::sleep(Duration::from_millis(rng.gen_range(10..700)));
            process.kill_hard();
            kills += 1;
        }
        if let Err(last) = setup.converge() {
            failures.push(format!(
                "round {round}: no convergence after the kills:\n{upgrade}\n{last}"
            ));
            break;
        }
        let Some((_, status, sql)) = live_orders(&emulator) else {
            failures.push(format!("round {round}: orders is gone"));
            break;
        };
        if status != "job_running" || sql.as_deref() != Some(good.as_str()) {
            failures.push(format!(
                "round {round}: orders is {status} with {sql:?}; it should run {good:?}"
            ));
        }
        let runs = emulator.runs(id);
        let new_runs = &runs[runs_before.min(runs.len())..];
        // The upgraded (bad) run resumed from the stop savepoint (or our copy of it); every
        // run after it resumed from that same savepoint.
        match new_runs.first() {
            None => failures.push(format!("round {round}: the upgrade never ran the job")),
            Some(upgraded) => {
                let state = upgraded["restored_from"].as_str();
                if state.is_none() {
                    failures.push(format!("round {round}: the upgrade started without state"));
                }
                for later in &new_runs[1..] {
                    if later["restored_from"].as_str() != state {
                        failures.push(format!(
                            "round {round}: run {} resumed from {} instead of the upgrade's savepoint {state:?}",
                            later["run_number"], later["restored_from"]
                        ));
                    }
                }
            }
        }
    }
    failures.extend(setup.journal_violations());
    let records = dli_gitops::journal::read_records(
        &dir.join("state"),
        &dli_gitops::journal::RecordFilter::default(),
    )
    .expect("read the journal");
    let (mut rollbacks, mut taken_over, mut interrupted) = (0, 0, 0);
    for record in &records {
        match &record.body {
            dli_gitops::journal::RecordBody::Intent(intent) if intent.action == "auto_rollback" => {
                rollbacks += 1;
                if intent.detail["taken_over"] == Value::Bool(true) {
                    taken_over += 1;
                }
            }
            dli_gitops::journal::RecordBody::Outcome(outcome)
                if outcome
                    .error
                    .as_ref()
                    .is_some_and(|error| error.code.as_deref() == Some("INTERRUPTED")) =>
            {
                interrupted += 1;
            }
            _ => {}
        }
    }
    eprintln!(
        "automatic rollback crash test: {rounds} rounds, {kills} SIGKILLs; {rollbacks} auto_rollback intents ({taken_over} taking over an interrupted one), {interrupted} intents resolved as INTERRUPTED"
    );
    fail_keeping_evidence(temp, seed, &failures);
}

/// A job upgraded eight times leaves copies and backups; `gc` is killed at random moments while
/// it deletes them, then runs to its end. Checks: each path was deleted (journaled) at most
/// once, everything deleted is gone and everything kept is still there (the copy the job
/// resumes from among it), the job still upgrades from its kept savepoint, `journal verify`
/// passes and every intent has an outcome.
#[test]
fn garbage_collection_killed_at_random_moments_deletes_nothing_twice_and_loses_nothing() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("garbage collection crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = Emulator::start(dir);
    let setup = Setup::new(dir, &emulator);
    let mut failures = Vec::new();
    for version in 0..9 {
        setup.job(&format!("SELECT {version} AS v;"));
        if let Err(last) = setup.converge() {
            panic!("seed {seed}: version {version} did not converge:\n{last}");
        }
    }
    let state_dir = dir.join("state");
    let catalog_before: Vec<String> = {
        let state = dli_gitops::journal::read_state(&state_dir).expect("journal state");
        dli_gitops::savepoints::catalog(&state, Some("dev"), None)
            .into_iter()
            .map(|entry| entry.path().to_string())
            .collect()
    };
    let kills = crash_runs(12);
    let mut cut_short = 0;
    for run in 0..kills {
        let process = {
            let child = setup
                .command(&["gc"])
                .stdout(std::fs::File::create(dir.join(format!("gc-{run}.log"))).expect("log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn gc");
            Process { child: Some(child) }
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..250)));
        process.kill_hard();
        // A deletion the kill cut short (its intent open) is finished by the next run.
        if let Ok(state) = dli_gitops::journal::read_state(&state_dir) {
            cut_short += state
                .pending_intents("dev")
                .iter()
                .filter(|intent| intent.action == dli_gitops::gc::GC_ACTION)
                .count();
        }
    }
    let (code, last) = setup.run(&["gc"]);
    if code != Some(0) {
        failures.push(format!("the last gc exited {code:?}:\n{last}"));
    }
    let records = dli_gitops::journal::read_records(
        &state_dir,
        &dli_gitops::journal::RecordFilter::default(),
    )
    .expect("read the journal");
    let mut deletions: std::collections::BTreeMap<String, usize> = Default::default();
    for record in &records {
        if let dli_gitops::journal::RecordBody::Outcome(outcome) = &record.body {
            for path in &outcome.effects.gc_deleted {
                *deletions.entry(path.clone()).or_default() += 1;
            }
        }
    }
    for (path, count) in &deletions {
        if *count > 1 {
            failures.push(format!("{path} was journaled as deleted {count} times"));
        }
    }
    let on_disk = |path: &str| {
        let rest = path.trim_start_matches("obs://");
        dir.join("emulator-data/obs").join(rest)
    };
    let state = dli_gitops::journal::read_state(&state_dir).expect("journal state");
    let kept: Vec<String> = dli_gitops::savepoints::catalog(&state, Some("dev"), None)
        .into_iter()
        .map(|entry| entry.path().to_string())
        .collect();
    for path in &catalog_before {
        let metadata = on_disk(&format!("{path}_metadata"));
        let is_kept = kept.contains(path);
        let is_deleted = deletions.contains_key(path);
        if is_kept == is_deleted {
            failures.push(format!(
                "{path}: kept in the catalog {is_kept}, journaled as deleted {is_deleted}"
            ));
        }
        if is_kept && !metadata.exists() {
            failures.push(format!("{path} is kept but its _metadata is gone"));
        }
        if is_deleted && metadata.exists() {
            failures.push(format!(
                "{path} was deleted but its _metadata is still there"
            ));
        }
    }
    let resume = state.targets["dev"].jobs["orders"].savepoint_path.clone();
    if !resume.as_deref().is_some_and(|resume| {
        kept.iter()
            .any(|path| dli_gitops::savepoints::same_directory(path, resume))
    }) {
        failures.push(format!(
            "the copy the job resumes from ({resume:?}) is not kept: {kept:?}"
        ));
    }
    // The job still upgrades, resuming from state.
    setup.job("SELECT 100 AS v;");
    if let Err(last) = setup.converge() {
        failures.push(format!("an upgrade after gc did not converge:\n{last}"));
    }
    failures.extend(setup.journal_violations());
    eprintln!(
        "garbage collection crash test: {kills} SIGKILLs; {} copies before, {} kept, {} paths deleted, {cut_short} deletions cut short by a kill",
        catalog_before.len(),
        kept.len(),
        deletions.len()
    );
    fail_keeping_evidence(temp, seed, &failures);
}

/// The daemon, end to end: a bad upgrade is rolled back by itself, the status API shows the job
/// Degraded and OutOfSync with the revision it was rolled back from, the revision is not
/// recorded as applied, and a SIGKILL and restart keep all of that (it is journaled).
#[test]
fn the_daemon_rolls_a_bad_upgrade_back_and_reports_it_degraded_across_a_restart() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = Emulator::start(dir);
    let setup = Setup::new(dir, &emulator);
    setup.job("SELECT 1 AS good;");
    let daemon = |tag: &str| {
        let child = Command::new(BINARY)
            .args(["run", "--config"])
            .arg(&setup.config)
            .current_dir(dir)
            .env("SAFETY_AK", ACCESS_KEY)
            .env("SAFETY_SK", SECRET_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("daemon-{tag}.log"))).expect("log"))
            .spawn()
            .expect("spawn the daemon");
        Process { child: Some(child) }
    };
    let status = || -> Option<Value> {
        block_on(async {
            let answer = reqwest::get(format!(
                "http://127.0.0.1:{}/api/v1/targets/dev",
                setup.port
            ))
            .await
            .ok()?;
            answer.json::<Value>().await.ok()
        })
    };
    let wait = |what: &str, check: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(value) = status()
                && check(&value)
            {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}\n{}",
                status(),
                std::fs::read_to_string(dir.join("daemon-1.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let first = daemon("1");
    let synced = wait("the good revision", &|value| {
        value["sync"]["status"] == "Synced" && value["health"]["status"] == "Healthy"
    });
    let good_revision = synced["sync"]["applied_revision"].clone();
    // The job fails well after the upgrade's pass has seen it running, so that pass journals
    // the bad revision as applied first; the rollback must put the good one back.
    setup.job("-- dli-emulator:fail-after-ms=1500\nSELECT 2 AS bad;");
    let degraded = |value: &Value| {
        value["jobs"].as_array().is_some_and(|jobs| {
            jobs.iter().any(|job| {
                job["name"] == "orders"
                    && job["health"]["status"] == "Degraded"
                    && job["sync_status"] == "OutOfSync"
                    && job["health"]["message"].as_str().is_some_and(|message| {
                        message.contains("rolled back automatically from revision")
                    })
            })
        })
    };
    let seen = wait("the automatic rollback", &degraded);
    assert_eq!(seen["health"]["status"], "Degraded", "{seen:#}");
    assert_eq!(
        seen["sync"]["applied_revision"], good_revision,
        "the bad revision is not recorded as applied: {seen:#}"
    );
    let (_, status_now, sql) = live_orders(&emulator).expect("orders is live");
    assert_eq!(status_now, "job_running");
    assert_eq!(sql.as_deref(), Some("SELECT 1 AS good;"));
    first.kill_hard();
    let _second = daemon("2");
    let again = wait("the same status after a restart", &degraded);
    assert_eq!(again["sync"]["applied_revision"], good_revision);
    let (_, status_now, sql) = live_orders(&emulator).expect("orders is live");
    assert_eq!(
        status_now, "job_running",
        "no loop back into the bad version"
    );
    assert_eq!(sql.as_deref(), Some("SELECT 1 AS good;"));
}
