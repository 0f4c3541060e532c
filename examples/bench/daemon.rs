//! The real daemon binary (`dli-gitops run`) against the test bed: commit-to-converged latency
//! for one changed job (directory source; git source woken by a signed webhook), and the
//! daemon at rest (CPU and RSS from `/proc/<pid>/`).
//!
//! Convergence is read from the daemon's own status API: the target is `Synced` at a new
//! revision and that revision is the applied one. The status is polled every 5 ms, so each
//! latency figure includes up to 5 ms of polling granularity.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::env::TestBed;
use super::report::{Report, Row, format_duration_ms, format_mib, median, percentile};
use super::{ours, procfs, workload};

pub const API_TOKEN: &str = "bench-api-token";
const WEBHOOK_SECRET: &str = "bench-webhook-secret";
const STATUS_POLL: Duration = Duration::from_millis(5);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(600);

/// The daemon binary next to this example (`target/<profile>/dli-gitops`).
pub fn binary() -> Result<PathBuf, String> {
    let executable = std::env::current_exe()
        .map_err(|error| format!("finding this benchmark's executable: {error}"))?;
    let profile_dir = executable
        .parent()
        .and_then(Path::parent)
        .ok_or("this benchmark does not run from target/<profile>/examples/")?;
    let binary = profile_dir.join("dli-gitops");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "the daemon binary {} is missing; build it with the same profile first \
             (`cargo build --release --bin dli-gitops` for `--release` runs)",
            binary.display()
        ))
    }
}

/// A running `dli-gitops run`; killed (by its own pid) when dropped.
pub struct DaemonProcess {
    child: Child,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl DaemonProcess {
    pub fn start(config: &Path, log: &Path) -> Result<DaemonProcess, String> {
        let text = std::fs::read_to_string(config)
            .map_err(|error| format!("reading {}: {error}", config.display()))?;
        let listen = text
            .lines()
            .find_map(|line| line.strip_prefix("listen: "))
            .ok_or("the daemon config has no listen line")?
            .trim()
            .to_string();
        let child = Command::new(binary()?)
            .args(["run", "--config"])
            .arg(config)
            // The heap after each pass (`memory::release_after_pass`), for the at-rest figures.
            .env("RUST_LOG", "info,dli_gitops::memory=debug")
            .env("BENCH_API_TOKEN", API_TOKEN)
            .env("BENCH_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(log)
                    .map_err(|error| format!("creating {}: {error}", log.display()))?,
            )
            .spawn()
            .map_err(|error| format!("starting the daemon: {error}"))?;
        Ok(DaemonProcess {
            child,
            base: format!("http://{listen}"),
            log: log.to_path_buf(),
            http: reqwest::Client::new(),
        })
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The allocator's figures from the daemon's last "Heap after a pass." log line.
    pub fn last_heap_line(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text
            .lines()
            .rev()
            .find(|line| line.contains("Heap after a pass"))?;
        // Text logs write `name=123`, JSON logs `"name":123`.
        let value = |name: &str| -> Option<u64> {
            let start = [format!("{name}="), format!("\"{name}\":")]
                .iter()
                .find_map(|key| line.find(key.as_str()).map(|at| at + key.len()))?;
            let digits: String = line[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(format!(
            "in use {} KiB, resident beyond it {} KiB, returned to the kernel {} KiB",
            value("in_use_kib")?,
            value("free_kib")?,
            value("retained_kib")?
        ))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn target(&self) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/api/v1/targets/{}", self.base, ours::TARGET))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Waits until the target is `Synced` at a revision other than `previous` and that revision
    /// is applied; returns it and the moment it was seen.
    pub async fn wait_converged(
        &mut self,
        previous: Option<&str>,
    ) -> Result<(String, Instant), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the daemon exited ({status}); its log ends:\n{}",
                    self.log_tail()
                ));
            }
            if let Some(target) = self.target().await {
                let sync = &target["sync"];
                let applied = sync["applied_revision"].as_str();
                if sync["status"] == "Synced"
                    && applied.is_some()
                    && applied == sync["revision"].as_str()
                    && applied != previous
                {
                    return Ok((applied.unwrap_or_default().to_string(), Instant::now()));
                }
            }
            if started.elapsed() > CONVERGE_TIMEOUT {
                return Err(format!(
                    "the daemon did not converge within {CONVERGE_TIMEOUT:?}; its log ends:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    pub async fn webhook(&self, body: &str) -> Result<(), String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes())
            .map_err(|error| format!("webhook key: {error}"))?;
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let response = self
            .http
            .post(format!("{}/api/v1/hooks/git", self.base))
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", signature)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| format!("sending the webhook: {error}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the webhook was refused: {}", response.status()))
        }
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port for the daemon's listener.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}

/// Where each run's latency went.
struct LatencySample {
    total: Duration,
    calls: u64,
}

/// Commit-to-converged for the directory source and the git source with a webhook, then the
/// daemon at rest (on the git-source daemon, left running).
/// The daemon's client-side rate limit, to tell its pacing apart from the rest.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub requests_per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// How long a full token bucket takes to pace `calls` calls: the first `burst` go at once.
    fn pacing(self, calls: u64) -> Duration {
        let paced = calls.saturating_sub(u64::from(self.burst));
        Duration::from_secs_f64(paced as f64 / self.requests_per_second)
    }

    /// Long enough for an empty bucket to fill again.
    fn refill(self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.requests_per_second)
            + Duration::from_millis(200)
    }
}

pub async fn run(
    bed: &TestBed,
    runs: usize,
    rest_window: Duration,
    target_extra: &str,
    rate_limit: RateLimit,
    report: &mut Report,
) -> Result<(), String> {
    let directory = bed.directory.path().join("ours");
    std::fs::create_dir_all(&directory)
        .map_err(|error| format!("creating {}: {error}", directory.display()))?;
    let latency_ms = bed.profile.latency_ms;
    // Each run flips the hot field of a job nobody touched before (the compare section edits
    // jobs 12 to 44), so every edit is a real change and needs no restart.
    let untouched: Vec<usize> = (48..bed.jobs)
        .step_by(4)
        .chain([0, 4, 8])
        .filter(|index| *index < bed.jobs)
        .collect();
    if untouched.len() < 2 * runs {
        return Err(format!(
            "{runs} runs per source need {} untouched jobs; {} jobs have {}",
            2 * runs,
            bed.jobs,
            untouched.len()
        ));
    }

    // Directory source.
    let top = format!(
        "listen: 127.0.0.1:{}\napi_token_env: BENCH_API_TOKEN\n",
        free_port()?
    );
    let config = ours::write_config(&directory, bed.repo(), bed, &top, "", target_extra)?;
    let mut daemon = DaemonProcess::start(&config, &directory.join("daemon-dir.log"))?;
    let (mut revision, _) = daemon.wait_converged(None).await?;
    let mut samples = Vec::new();
    for &job in &untouched[..runs] {
        // One commit at a time, as people push: the daemon's token bucket is full again.
        tokio::time::sleep(rate_limit.refill()).await;
        let before = bed.calls().await?;
        let path = bed.repo().join(workload::job_file(job));
        let started = Instant::now();
        std::fs::write(&path, workload::job_yaml(job, 1, 0))
            .map_err(|error| format!("editing {}: {error}", path.display()))?;
        let (next, converged) = daemon.wait_converged(Some(&revision)).await?;
        let total = converged - started;
        revision = next;
        let calls = bed.calls().await?.saturating_sub(before);
        samples.push(LatencySample { total, calls });
    }
    daemon.stop();
    push_latency(
        report,
        "directory source",
        &samples,
        latency_ms,
        rate_limit,
        "file written → Synced; includes the watcher's debounce",
    );

    // Git source, woken by a webhook (polling once an hour, so only the webhook can wake it).
    let git = git2::Repository::init(bed.repo())
        .map_err(|error| format!("creating a git repository in the job repository: {error}"))?;
    commit_all(&git, "benchmark: initial")?;
    let source = format!(
        "    git: {{url: {}, branch: main, poll_interval: 1h, poll_jitter: 0}}\n    webhook_secret_env: BENCH_WEBHOOK_SECRET\n",
        bed.repo().display()
    );
    let top = format!(
        "listen: 127.0.0.1:{}\napi_token_env: BENCH_API_TOKEN\n",
        free_port()?
    );
    let config = ours::write_config(&directory, bed.repo(), bed, &top, &source, target_extra)?;
    let mut daemon = DaemonProcess::start(&config, &directory.join("daemon-git.log"))?;
    let (mut revision, _) = daemon.wait_converged(None).await?;
    let mut samples = Vec::new();
    for run in 0..runs {
        // One commit at a time, as people push: the daemon's token bucket is full again.
        tokio::time::sleep(rate_limit.refill()).await;
        let before = bed.calls().await?;
        let job = untouched[runs + run];
        let path = bed.repo().join(workload::job_file(job));
        let started = Instant::now();
        std::fs::write(&path, workload::job_yaml(job, 1, 0))
            .map_err(|error| format!("editing {}: {error}", path.display()))?;
        let commit = commit_all(&git, &format!("benchmark: change {run}"))?;
        let body = serde_json::json!({
            "ref": "refs/heads/main",
            "after": commit,
            "repository": {"clone_url": bed.repo().display().to_string()},
        })
        .to_string();
        daemon.webhook(&body).await?;
        let (next, converged) = daemon.wait_converged(Some(&revision)).await?;
        let total = converged - started;
        revision = next;
        let calls = bed.calls().await?.saturating_sub(before);
        samples.push(LatencySample { total, calls });
    }
    push_latency(
        report,
        "git source + webhook",
        &samples,
        latency_ms,
        rate_limit,
        "commit → webhook → fetch → Synced",
    );

    // At rest: the same daemon, converged, nothing changing.
    let pid = daemon.pid();
    let cpu_before = procfs::cpu_time(&pid)?;
    let calls_before = bed.calls().await?;
    let window_started = Instant::now();
    let mut largest_rss = 0;
    while window_started.elapsed() < rest_window {
        largest_rss = largest_rss.max(procfs::memory(&pid)?.rss_kib);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = window_started.elapsed();
    let cpu = procfs::cpu_time(&pid)?.saturating_sub(cpu_before);
    let memory = procfs::memory(&pid)?;
    let calls = bed.calls().await?.saturating_sub(calls_before);
    let heap = daemon.last_heap_line();
    daemon.stop();
    let section = format!("daemon at rest, {} jobs", bed.jobs);
    report.push(Row::new(
        &section,
        "CPU",
        format!("{:.2}%", cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0),
        "near zero",
        format!(
            "{:.2} s of CPU over {:.0} s (utime+stime of the daemon's pid); {calls} API calls in the window",
            cpu.as_secs_f64(),
            elapsed.as_secs_f64()
        ),
    ));
    report.push(Row::new(
        &section,
        "RSS",
        format_mib(largest_rss.max(memory.rss_kib)),
        "≤ 40 MiB",
        format!(
            "largest VmRSS sampled every 0.5 s; VmHWM since start {}",
            format_mib(memory.peak_rss_kib)
        ),
    ));
    report.push(Row::new(
        &section,
        "RSS by kind",
        format_mib(memory.rss_anon_kib),
        "",
        format!(
            "anonymous (heap, stacks) {}, file-backed (the binary and libraries) {}, shared {}; allocator after the last pass: {}",
            format_mib(memory.rss_anon_kib),
            format_mib(memory.rss_file_kib),
            format_mib(memory.rss_shmem_kib),
            heap.unwrap_or_else(|| "no heap line in the log".to_string())
        ),
    ));
    Ok(())
}

fn push_latency(
    report: &mut Report,
    source: &str,
    samples: &[LatencySample],
    latency_ms: u64,
    rate_limit: RateLimit,
    what: &str,
) {
    let totals: Vec<f64> = samples
        .iter()
        .map(|sample| sample.total.as_secs_f64() * 1000.0)
        .collect();
    let emulator: Vec<f64> = samples
        .iter()
        .map(|sample| (sample.calls * latency_ms) as f64)
        .collect();
    let pacing: Vec<f64> = samples
        .iter()
        .map(|sample| rate_limit.pacing(sample.calls).as_secs_f64() * 1000.0)
        .collect();
    let own: Vec<f64> = totals
        .iter()
        .zip(&emulator)
        .zip(&pacing)
        .map(|((total, emulator), pacing)| (total - emulator - pacing).max(0.0))
        .collect();
    let calls: Vec<f64> = samples.iter().map(|sample| sample.calls as f64).collect();
    let section = format!("commit → converged, {source}");
    report.push(Row::new(
        &section,
        "p50 / p95 total",
        format!(
            "{} / {}",
            format_duration_ms(percentile(totals.clone(), 0.50)),
            format_duration_ms(percentile(totals, 0.95))
        ),
        "",
        format!(
            "{} runs, one hot-field change among the jobs each; {what}",
            samples.len()
        ),
    ));
    report.push(Row::new(
        &section,
        "p50 / p95 emulator latency",
        format!(
            "{} / {}",
            format_duration_ms(percentile(emulator.clone(), 0.50)),
            format_duration_ms(percentile(emulator, 0.95))
        ),
        "",
        format!(
            "API calls in the interval × {latency_ms} ms (median {:.0} calls); no job transitions",
            median(calls)
        ),
    ));
    report.push(Row::new(
        &section,
        "p50 / p95 rate-limit pacing (upper bound)",
        format!(
            "{} / {}",
            format_duration_ms(percentile(pacing.clone(), 0.50)),
            format_duration_ms(percentile(pacing, 0.95))
        ),
        "",
        format!(
            "our client's token bucket ({} req/s, burst {}), full at the start of each run: calls beyond the burst ÷ rate, ignoring refills during the debounce and the latency",
            rate_limit.requests_per_second, rate_limit.burst
        ),
    ));
    report.push(Row::new(
        &section,
        "p50 / p95 own time (lower bound)",
        format!(
            "{} / {}",
            format_duration_ms(percentile(own.clone(), 0.50)),
            format_duration_ms(percentile(own, 0.95))
        ),
        "well under 1 s",
        "total − emulator latency − pacing bound; run with a high --requests-per-second to measure it without pacing",
    ));
}

/// Stages everything and commits on `main`; returns the commit id.
pub fn commit_all(repository: &git2::Repository, message: &str) -> Result<String, String> {
    let error = |what: &str, error: git2::Error| format!("git: {what}: {error}");
    let mut index = repository.index().map_err(|e| error("index", e))?;
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .map_err(|e| error("add", e))?;
    index.write().map_err(|e| error("write index", e))?;
    let tree_id = index.write_tree().map_err(|e| error("write tree", e))?;
    let tree = repository
        .find_tree(tree_id)
        .map_err(|e| error("find tree", e))?;
    let signature =
        git2::Signature::now("bench", "bench@example.com").map_err(|e| error("signature", e))?;
    let parent = repository
        .head()
        .ok()
        .and_then(|head| head.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repository
        .commit(
            Some("refs/heads/main"),
            &signature,
            &signature,
            message,
            &tree,
            &parents,
        )
        .map_err(|e| error("commit", e))?;
    if parent.is_none() {
        repository
            .set_head("refs/heads/main")
            .map_err(|e| error("set HEAD", e))?;
    }
    Ok(id.to_string())
}
