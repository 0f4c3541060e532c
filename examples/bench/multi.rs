//! One daemon, many accounts: the `multi` section. `--accounts` emulated accounts (default 50),
//! each a target with its own AK/SK, project, git repository and the product's default client
//! rate limit (10 req/s, burst 20), with `--jobs-per-account` jobs each (default 200), all in
//! one `dli-gitops run`. One in-process emulator hosts every account (one credential and one
//! project each; the emulator keeps projects apart as DLI does).
//!
//! Phases, in order, each read from the daemon's status API, the emulator's call counters and
//! `/proc/<daemon pid>/`:
//! 1. converge from empty (no job exists, empty state directory): every job created and running;
//! 2. a no-change resync of every target at once (a manual sync of each): wall time, calls,
//!    CPU per target pass;
//! 3. commit → converged for one job of the first account while every other account applies a
//!    commit that changes all of its jobs (a hot field: one update per job);
//! 4. at rest: CPU, RSS, OS threads, file descriptors;
//! 5. the journal after all that: size on disk, recovery time, compaction time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::{API_TOKEN, DaemonProcess, commit_all};
use super::report::{
    Report, Row, format_bytes, format_duration_ms, format_mib, median, percentile,
};
use super::{procfs, workload};
use dli_gitops::emulator::{
    Emulator, EmulatorConfig, EmulatorCredential, EmulatorDelays, EmulatorHandle,
};

const SECTION: &str = "one daemon, many accounts";
const STATUS_POLL: Duration = Duration::from_millis(250);
const PHASE_TIMEOUT: Duration = Duration::from_secs(1800);

/// What the section is asked to run.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub accounts: usize,
    pub jobs_per_account: usize,
    pub latency_ms: u64,
    pub delays: EmulatorDelays,
    pub rest_window: Duration,
}

fn account_name(index: usize) -> String {
    format!("account-{index:02}")
}

fn access_key(index: usize) -> String {
    format!("BENCHACCOUNT{index:04}AK")
}

fn secret_key(index: usize) -> String {
    format!("bench-account-{index:04}-secret-key")
}

/// 32 hex digits, distinct per account.
fn project_id(index: usize) -> String {
    format!("{:032x}", 0xbe0c_0000_0000u64 + index as u64)
}

/// Process figures of the daemon at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct ProcessSample {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: &str) -> Result<ProcessSample, String> {
    let memory = procfs::memory(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|error| format!("reading /proc/{pid}/status: {error}"))?;
    let threads = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count() as u64)
        .unwrap_or(0);
    Ok(ProcessSample {
        rss_kib: memory.rss_kib,
        threads,
        fds,
    })
}

#[derive(Debug, Default)]
struct Peaks {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

impl Peaks {
    fn add(&mut self, sample: ProcessSample) {
        self.rss_kib = self.rss_kib.max(sample.rss_kib);
        self.threads = self.threads.max(sample.threads);
        self.fds = self.fds.max(sample.fds);
    }
}

/// The daemon's HTTP API as the harness polls it; each call's latency is kept (the status
/// board and the HTTP server under load).
struct Api {
    base: String,
    http: reqwest::Client,
    latencies_ms: Vec<f64>,
}

impl Api {
    async fn targets(&mut self) -> Option<Vec<Value>> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}/api/v1/targets", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        self.latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        body["targets"].as_array().cloned()
    }

    async fn sync(&self, target: &str) -> Result<(), String> {
        let response = self
            .http
            .post(format!("{}/api/v1/targets/{target}/sync", self.base))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .map_err(|error| format!("asking for a sync of {target}: {error}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "the sync of {target} was refused: {}",
                response.status()
            ))
        }
    }

    async fn metrics(&self) -> String {
        match self.http.get(format!("{}/metrics", self.base)).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// Synced at a revision that is the applied one (and, with `not`, another than that).
fn converged(target: &Value, not: Option<&str>) -> bool {
    let sync = &target["sync"];
    let applied = sync["applied_revision"].as_str();
    sync["status"] == "Synced"
        && applied.is_some()
        && applied == sync["revision"].as_str()
        && (not.is_none() || applied != not)
}

fn target_name(target: &Value) -> String {
    target["name"].as_str().unwrap_or_default().to_string()
}

/// The emulator, every account's repository, and the daemon config.
struct Bed {
    directory: tempfile::TempDir,
    emulator: Option<EmulatorHandle>,
    http: reqwest::Client,
    repos: Vec<PathBuf>,
    gits: Vec<git2::Repository>,
}

impl Bed {
    async fn calls(&self) -> Result<u64, String> {
        let url = format!(
            "{}/_emulator/v1/stats",
            self.emulator.as_ref().ok_or("no emulator")?.dli_url()
        );
        let stats: Value = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("reading the emulator's stats: {error}"))?
            .json()
            .await
            .map_err(|error| format!("reading the emulator's stats: {error}"))?;
        stats["total"]
            .as_u64()
            .ok_or_else(|| format!("the emulator's stats have no total: {stats}"))
    }
}

async fn start_bed(scenario: &Scenario) -> Result<Bed, String> {
    let directory =
        tempfile::tempdir().map_err(|error| format!("creating a temporary directory: {error}"))?;
    let mut config = EmulatorConfig::for_tests(directory.path().join("emulator"));
    config.delays = scenario.delays;
    config.faults.latency_ms = scenario.latency_ms;
    config.auth.lockout_failures = 0;
    config.credentials = (0..scenario.accounts)
        .map(|index| EmulatorCredential {
            access_key: access_key(index),
            secret_key: secret_key(index),
            project_id: project_id(index),
        })
        .collect();
    config.users.clear();
    let emulator = Emulator::start(config)
        .await
        .map_err(|error| format!("starting the emulator: {error}"))?;
    let mut repos = Vec::new();
    let mut gits = Vec::new();
    for index in 0..scenario.accounts {
        let repo = directory.path().join("repos").join(account_name(index));
        std::fs::create_dir_all(&repo)
            .map_err(|error| format!("creating {}: {error}", repo.display()))?;
        workload::write_repository(&repo, scenario.jobs_per_account)
            .map_err(|error| format!("writing {}: {error}", repo.display()))?;
        let git = git2::Repository::init(&repo)
            .map_err(|error| format!("creating a git repository in {}: {error}", repo.display()))?;
        commit_all(&git, "benchmark: initial")?;
        repos.push(repo);
        gits.push(git);
    }
    Ok(Bed {
        directory,
        emulator: Some(emulator),
        http: reqwest::Client::new(),
        repos,
        gits,
    })
}

fn write_config(bed: &Bed, scenario: &Scenario, listen: &str) -> Result<PathBuf, String> {
    let directory = bed.directory.path().join("daemon");
    std::fs::create_dir_all(directory.join("keys"))
        .map_err(|error| format!("creating {}: {error}", directory.display()))?;
    let emulator = bed.emulator.as_ref().ok_or("no emulator")?;
    let api = emulator.dli_url();
    let s3 = emulator.s3_url();
    let mut sources = String::new();
    let mut targets = String::new();
    for index in 0..scenario.accounts {
        let name = account_name(index);
        let keys = directory.join("keys");
        let write = |file: String, text: String| {
            std::fs::write(keys.join(&file), text)
                .map_err(|error| format!("writing key file {file}: {error}"))
        };
        write(format!("{name}.ak"), access_key(index))?;
        write(format!("{name}.sk"), secret_key(index))?;
        sources.push_str(&format!(
            "  {name}:\n    git: {{url: {}, branch: main, poll_interval: 1h, poll_jitter: 0}}\n    webhook_secret_env: BENCH_WEBHOOK_SECRET\n",
            bed.repos[index].display()
        ));
        // Every target keeps the product's defaults (rate limit 10 req/s, burst 20; retries;
        // timeouts; resync every 5 minutes).
        targets.push_str(&format!(
            r#"  - name: {name}
    source: {name}
    environment: {environment}
    region: cn-north-4
    project_id: {project}
    endpoints: {{dli: "{api}", dlf: "{api}", iam: "{api}", obs: "{s3}"}}
    credentials: {{access_key_file: keys/{name}.ak, secret_key_file: keys/{name}.sk}}
    staging: obs://dli-gitops-staging/{name}/
    backups: obs://dli-gitops-backups/{name}/
    policy: {{auto_sync: true, self_heal: true, prune: false}}
"#,
            environment = workload::ENVIRONMENT,
            project = project_id(index),
        ));
    }
    let config = format!(
        "state_dir: state\nlisten: {listen}\napi_token_env: BENCH_API_TOKEN\nsources:\n{sources}targets:\n{targets}"
    );
    let path = directory.join("dli-gitops.yaml");
    std::fs::write(&path, config)
        .map_err(|error| format!("writing {}: {error}", path.display()))?;
    Ok(path)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}

/// Polls until `done(targets)` holds; samples the daemon meanwhile. Returns when each target
/// first satisfied `each` (relative to `started`).
async fn wait_for(
    api: &mut Api,
    pid: &str,
    peaks: &mut Peaks,
    started: Instant,
    what: &str,
    each: impl Fn(&Value) -> bool,
) -> Result<BTreeMap<String, Duration>, String> {
    let mut first_seen: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        peaks.add(sample(pid)?);
        if let Some(targets) = api.targets().await {
            for target in &targets {
                if each(target) {
                    first_seen
                        .entry(target_name(target))
                        .or_insert_with(|| started.elapsed());
                }
            }
            if !targets.is_empty() && first_seen.len() == targets.len() {
                return Ok(first_seen);
            }
        }
        if started.elapsed() > PHASE_TIMEOUT {
            return Err(format!(
                "{what}: only {} target(s) got there within {PHASE_TIMEOUT:?}",
                first_seen.len()
            ));
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}

fn spread(times: &BTreeMap<String, Duration>) -> String {
    let values: Vec<f64> = times.values().map(Duration::as_secs_f64).collect();
    format!(
        "first {:.1} s, median {:.1} s, last {:.1} s",
        values.iter().cloned().fold(f64::INFINITY, f64::min),
        median(values.clone()),
        values.iter().cloned().fold(0.0, f64::max)
    )
}

fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn directory_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

pub async fn run(scenario: Scenario, keep: bool, report: &mut Report) -> Result<(), String> {
    let accounts = scenario.accounts;
    let jobs = scenario.jobs_per_account;
    let total_jobs = accounts * jobs;
    println!("   setting up {accounts} accounts × {jobs} jobs");
    let bed = start_bed(&scenario).await?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let config = write_config(&bed, &scenario, &listen)?;
    let daemon_dir = bed.directory.path().join("daemon");
    let calls_start = bed.calls().await?;

    // 1. Converge from empty.
    println!("   phase 1: converge from empty");
    let started = Instant::now();
    let daemon = DaemonProcess::start(&config, &daemon_dir.join("daemon.log"))?;
    let pid = daemon.pid();
    let mut api = Api {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
        latencies_ms: Vec::new(),
    };
    let mut busy_peaks = Peaks::default();
    let cpu_start = procfs::cpu_time(&pid)?;
    let converged_at = wait_for(
        &mut api,
        &pid,
        &mut busy_peaks,
        started,
        "converging from empty",
        |target| converged(target, None),
    )
    .await?;
    let converge_wall = started.elapsed();
    let converge_cpu = procfs::cpu_time(&pid)?.saturating_sub(cpu_start);
    let converge_calls = bed.calls().await?.saturating_sub(calls_start);
    let revisions: BTreeMap<String, String> = api
        .targets()
        .await
        .unwrap_or_default()
        .iter()
        .map(|target| {
            (
                target_name(target),
                target["sync"]["applied_revision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let status_latency_busy = std::mem::take(&mut api.latencies_ms);
    report.push(Row::new(
        SECTION,
        "converge from empty",
        format!("{:.1} s", converge_wall.as_secs_f64()),
        "",
        format!(
            "{total_jobs} jobs created and started in {accounts} accounts from an empty state directory \
             (daemon start → every target Synced); per target: {}; {converge_calls} API calls; \
             daemon CPU {:.1} s",
            spread(&converged_at),
            converge_cpu.as_secs_f64()
        ),
    ));

    // 2. A no-change resync of every target at once.
    println!("   phase 2: no-change resync of every target");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls_before = bed.calls().await?;
    let cpu_before = procfs::cpu_time(&pid)?;
    let previous_finish: BTreeMap<String, String> = api
        .targets()
        .await
        .unwrap_or_default()
        .iter()
        .map(|target| {
            (
                target_name(target),
                target["operation"]["finished_at"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let started = Instant::now();
    for index in 0..accounts {
        api.sync(&account_name(index)).await?;
    }
    let mut peaks = Peaks::default();
    let resynced = wait_for(
        &mut api,
        &pid,
        &mut peaks,
        started,
        "the no-change resync",
        |target| {
            let finished = target["operation"]["finished_at"].as_str().unwrap_or("");
            !finished.is_empty()
                && previous_finish
                    .get(&target_name(target))
                    .map(String::as_str)
                    != Some(finished)
                && target["operation"]["phase"] == "Succeeded"
        },
    )
    .await?;
    let resync_wall = started.elapsed();
    let resync_cpu = procfs::cpu_time(&pid)?.saturating_sub(cpu_before);
    let resync_calls = bed.calls().await?.saturating_sub(calls_before);
    let pass_durations: Vec<f64> = api
        .targets()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|target| {
            let operation = &target["operation"];
            let start =
                chrono::DateTime::parse_from_rfc3339(operation["started_at"].as_str()?).ok()?;
            let end =
                chrono::DateTime::parse_from_rfc3339(operation["finished_at"].as_str()?).ok()?;
            Some((end - start).num_milliseconds() as f64)
        })
        .collect();
    report.push(Row::new(
        SECTION,
        "no-change resync of every target",
        format!("{:.1} s", resync_wall.as_secs_f64()),
        "< 60 s at the default rate limit",
        format!(
            "{accounts} manual syncs at once, each a full pass (read git, observe, plan, nothing to do); \
             every target done: {}; {resync_calls} API calls (goal ⌈{jobs}/100⌉ = {} per target)",
            spread(&resynced),
            jobs.div_ceil(100)
        ),
    ));
    report.push(Row::new(
        SECTION,
        "no-change pass cost per target",
        format!(
            "{} p50 / {} p95 wall; {:.0} ms CPU",
            format_duration_ms(percentile(pass_durations.clone(), 0.5)),
            format_duration_ms(percentile(pass_durations, 0.95)),
            resync_cpu.as_secs_f64() * 1000.0 / accounts as f64
        ),
        "",
        format!(
            "pass start → end from each target's status, all {accounts} passes concurrent on the shared cores; \
             CPU = the daemon's utime+stime over the resync ÷ {accounts}; {:.1} API calls per target",
            resync_calls as f64 / accounts as f64
        ),
    ));

    // 3. Commit → converged for one job of account 0 while every other account applies a commit
    // that changes all of its jobs.
    println!("   phase 3: one change while the other accounts are busy");
    let daemon_ref = &daemon;
    let calls_before = bed.calls().await?;
    let busy_started = Instant::now();
    for index in 1..accounts {
        for job in 0..jobs {
            let path = bed.repos[index].join(workload::job_file(job));
            std::fs::write(&path, workload::job_yaml(job, 1, 0))
                .map_err(|error| format!("editing {}: {error}", path.display()))?;
        }
        let commit = commit_all(&bed.gits[index], "benchmark: every job's hot field")?;
        daemon_ref
            .webhook(&push_body(&bed.repos[index], &commit))
            .await?;
    }
    // Let the others get going (their passes are under way, their actions queued).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let job = 7usize;
    let path = bed.repos[0].join(workload::job_file(job));
    let one_started = Instant::now();
    std::fs::write(&path, workload::job_yaml(job, 1, 0))
        .map_err(|error| format!("editing {}: {error}", path.display()))?;
    let commit = commit_all(&bed.gits[0], "benchmark: one job")?;
    daemon_ref
        .webhook(&push_body(&bed.repos[0], &commit))
        .await?;
    let first = account_name(0);
    let first_revision = revisions.get(&first).cloned();
    let mut one_peaks = Peaks::default();
    let others_busy;
    loop {
        one_peaks.add(sample(&pid)?);
        if let Some(targets) = api.targets().await {
            let done = targets
                .iter()
                .find(|target| target_name(target) == first)
                .is_some_and(|target| converged(target, first_revision.as_deref()));
            if done {
                others_busy = targets
                    .iter()
                    .filter(|target| target_name(target) != first)
                    .filter(|target| {
                        !converged(
                            target,
                            revisions.get(&target_name(target)).map(String::as_str),
                        )
                    })
                    .count();
                break;
            }
        }
        if one_started.elapsed() > PHASE_TIMEOUT {
            return Err("the one change did not converge".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let one_latency = one_started.elapsed();
    let mut busy_all = Peaks::default();
    let others = wait_for(
        &mut api,
        &pid,
        &mut busy_all,
        busy_started,
        "the busy accounts",
        |target| {
            converged(
                target,
                revisions.get(&target_name(target)).map(String::as_str),
            )
        },
    )
    .await?;
    let busy_wall = busy_started.elapsed();
    let busy_calls = bed.calls().await?.saturating_sub(calls_before);
    busy_peaks.add(sample(&pid)?);
    for other in [&one_peaks, &busy_all, &peaks] {
        busy_peaks.rss_kib = busy_peaks.rss_kib.max(other.rss_kib);
        busy_peaks.threads = busy_peaks.threads.max(other.threads);
        busy_peaks.fds = busy_peaks.fds.max(other.fds);
    }
    report.push(Row::new(
        SECTION,
        "commit → converged, one job, others busy",
        format!("{:.2} s", one_latency.as_secs_f64()),
        "",
        format!(
            "a hot-field change to one job of {first} (git push → signed webhook → Synced), sent 2 s after \
             the other {} accounts each received a commit changing all {jobs} of their jobs; {others_busy} of them \
             were still applying when it converged",
            accounts - 1
        ),
    ));
    report.push(Row::new(
        SECTION,
        "busy accounts converged",
        format!("{:.1} s", busy_wall.as_secs_f64()),
        "",
        format!(
            "{} updates ({} accounts × {jobs}) at each account's 10 req/s; per target: {}; {busy_calls} API calls",
            (accounts - 1) * jobs,
            accounts - 1,
            spread(&others)
        ),
    ));

    // 4. At rest.
    println!("   phase 4: at rest ({} s)", scenario.rest_window.as_secs());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_before = procfs::cpu_time(&pid)?;
    let calls_before = bed.calls().await?;
    let window = Instant::now();
    let mut rest = Peaks::default();
    let mut last = ProcessSample::default();
    while window.elapsed() < scenario.rest_window {
        last = sample(&pid)?;
        rest.add(last);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rest_cpu = procfs::cpu_time(&pid)?.saturating_sub(cpu_before);
    let rest_calls = bed.calls().await?.saturating_sub(calls_before);
    let memory = procfs::memory(&pid)?;
    let metrics = api.metrics().await;
    let intents = metric_sum(
        &metrics,
        "dli_gitops_journal_records_total{kind=\"intent\"}",
    );
    let records = metric_sum(&metrics, "dli_gitops_journal_records_total");
    let status_latency_rest = {
        let mut latencies = Vec::new();
        for _ in 0..50 {
            api.targets().await;
        }
        latencies.append(&mut api.latencies_ms);
        latencies
    };
    report.push(Row::new(
        SECTION,
        "at rest: CPU",
        format!(
            "{:.2}%",
            rest_cpu.as_secs_f64() / scenario.rest_window.as_secs_f64() * 100.0
        ),
        "near zero",
        format!(
            "{:.2} s of CPU over {} s; {rest_calls} API calls in the window",
            rest_cpu.as_secs_f64(),
            scenario.rest_window.as_secs()
        ),
    ));
    report.push(Row::new(
        SECTION,
        "at rest: RSS",
        format_mib(rest.rss_kib.max(memory.rss_kib)),
        "< 150 MiB",
        format!(
            "largest VmRSS in the window; peak while busy {}; VmHWM since start {}",
            format_mib(busy_peaks.rss_kib),
            format_mib(memory.peak_rss_kib)
        ),
    ));
    report.push(Row::new(
        SECTION,
        "at rest: RSS by kind",
        format_mib(memory.rss_anon_kib),
        "",
        format!(
            "anonymous (heap, stacks) {}, file-backed (the binary and libraries) {}; allocator after the last pass: {}",
            format_mib(memory.rss_anon_kib),
            format_mib(memory.rss_file_kib),
            daemon
                .last_heap_line()
                .unwrap_or_else(|| "no heap line in the log".to_string())
        ),
    ));
    report.push(Row::new(
        SECTION,
        "OS threads",
        format!("{} at rest", last.threads),
        "",
        format!(
            "peak {} while busy (`Threads:` in /proc/<pid>/status)",
            busy_peaks.threads
        ),
    ));
    report.push(Row::new(
        SECTION,
        "file descriptors",
        format!("{} at rest", last.fds),
        "",
        format!(
            "peak {} while busy (entries of /proc/<pid>/fd)",
            busy_peaks.fds
        ),
    ));
    report.push(Row::new(
        SECTION,
        "status API (GET /api/v1/targets)",
        format!(
            "{} p50 / {} p99 busy; {} p50 at rest",
            format_duration_ms(percentile(status_latency_busy.clone(), 0.5)),
            format_duration_ms(percentile(status_latency_busy.clone(), 0.99)),
            format_duration_ms(percentile(status_latency_rest, 0.5)),
        ),
        "",
        format!(
            "{} polls while converging from empty, every {} ms, {accounts} targets in each answer",
            status_latency_busy.len(),
            STATUS_POLL.as_millis()
        ),
    ));
    daemon.stop();

    // 5. The journal.
    println!("   phase 5: the journal");
    let state_dir = daemon_dir.join("state");
    let journal_file = state_dir.join("journal.jsonl");
    let live_bytes = std::fs::metadata(&journal_file)
        .map(|meta| meta.len())
        .unwrap_or(0);
    let snapshot_bytes = std::fs::metadata(state_dir.join("snapshot.json"))
        .map(|meta| meta.len())
        .unwrap_or(0);
    let archive_bytes = directory_size(&state_dir.join("journal-archive"));
    let open_dir = state_dir.clone();
    let (open_time, compaction, after_live, after_snapshot, last_seq) =
        tokio::task::spawn_blocking(move || -> Result<_, String> {
            let opening = Instant::now();
            let (journal, _recovery) = dli_gitops::journal::Journal::open(
                &open_dir,
                dli_gitops::journal::JournalOptions::default(),
            )
            .map_err(|error| format!("opening the journal: {error}"))?;
            let open_time = opening.elapsed();
            let last_seq = journal.state_guard().last_seq;
            let compacting = Instant::now();
            journal
                .compact()
                .map_err(|error| format!("compacting the journal: {error}"))?;
            let compaction = compacting.elapsed();
            let live = std::fs::metadata(open_dir.join("journal.jsonl"))
                .map(|meta| meta.len())
                .unwrap_or(0);
            let snapshot = std::fs::metadata(open_dir.join("snapshot.json"))
                .map(|meta| meta.len())
                .unwrap_or(0);
            Ok((open_time, compaction, live, snapshot, last_seq))
        })
        .await
        .map_err(|error| format!("the journal task: {error}"))??;
    report.push(Row::new(
        SECTION,
        "journal size",
        format_bytes(live_bytes + snapshot_bytes),
        "",
        format!(
            "journal.jsonl {} + snapshot.json {} (+ {} of retired segments kept for `journal show`) after \
             {intents:.0} actions ({records:.0} records this run, last seq {last_seq}) on {total_jobs} jobs",
            format_bytes(live_bytes),
            format_bytes(snapshot_bytes),
            format_bytes(archive_bytes)
        ),
    ));
    report.push(Row::new(
        SECTION,
        "journal recovery and compaction",
        format!(
            "open {} / compact {}",
            format_duration_ms(open_time.as_secs_f64() * 1000.0),
            format_duration_ms(compaction.as_secs_f64() * 1000.0)
        ),
        "",
        format!(
            "Journal::open (snapshot + replay) and one compact() of that state; snapshot afterwards {}, journal.jsonl {}",
            format_bytes(after_snapshot),
            format_bytes(after_live)
        ),
    ));

    let mut bed = bed;
    if let Some(handle) = bed.emulator.take() {
        handle.shutdown().await;
    }
    if keep {
        let kept = bed.directory.keep();
        println!("kept the multi-account test bed in {}", kept.display());
    }
    Ok(())
}

fn push_body(repo: &Path, commit: &str) -> String {
    serde_json::json!({
        "ref": "refs/heads/main",
        "after": commit,
        "repository": {"clone_url": repo.display().to_string()},
    })
    .to_string()
}
