//! Parse + validate + plan at 1,000 and 10,000 jobs. Each size runs in a child process of its
//! own (this binary with `--child scale`), so its peak RSS (`VmHWM`) is that size's alone; the
//! repository is written to disk by the parent first, so generating it costs the child nothing.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::report::{Report, Row, format_duration_ms, format_mib, median};
use super::{procfs, workload};
use dli_gitops::plan::{self, PlanPolicy};

/// What one child run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleSample {
    pub jobs: usize,
    pub files: usize,
    /// Reading the directory into a snapshot (file system, content digest).
    pub read_ms: f64,
    /// Parsing every file, filling variables, overrides, validation, normalisation, digests.
    pub resolve_ms: f64,
    /// Planning against a live twin where every job is equal (the steady state).
    pub plan_ms: f64,
    /// Planning against a live twin where one job in a hundred drifted.
    pub plan_drift_ms: f64,
    pub plan_drift_changes: usize,
    /// Planning against an empty target (every job a create).
    #[serde(default)]
    pub plan_create_ms: f64,
    /// `VmHWM` after parse, validate and the no-change and drift plans, before the
    /// empty-target plan (whose 10,000 create actions hold a copy of every config).
    #[serde(default)]
    pub peak_before_create_kib: u64,
    /// `VmHWM` before reading anything, and at the end.
    pub start_peak_rss_kib: u64,
    pub peak_rss_kib: u64,
    /// `VmHWM` after reading, after resolving, after the steady-state plan (where memory goes).
    pub peak_after_read_kib: u64,
    pub peak_after_resolve_kib: u64,
    pub peak_after_plan_kib: u64,
}

/// The child's side: measure one repository and print one JSON line.
pub fn child(repo: &Path, jobs: usize) -> Result<(), String> {
    let start_memory = procfs::memory("self")?;
    let started = Instant::now();
    let snapshot = dli_gitops::desired::read_directory(repo).map_err(|error| error.to_string())?;
    let read_ms = started.elapsed().as_secs_f64() * 1000.0;
    let peak_after_read_kib = procfs::memory("self")?.peak_rss_kib;
    let started = Instant::now();
    let desired = dli_gitops::desired::resolve(&snapshot, Some(workload::ENVIRONMENT)).map_err(
        |diagnostics| format!("the generated repository does not resolve:\n{diagnostics}"),
    )?;
    let resolve_ms = started.elapsed().as_secs_f64() * 1000.0;
    let peak_after_resolve_kib = procfs::memory("self")?.peak_rss_kib;
    // The files are not needed once the jobs are built (a daemon drops its checkout's bytes too).
    let files = snapshot.files.len();
    drop(snapshot);
    if desired.flink.len() != jobs {
        return Err(format!(
            "resolved {} jobs, expected {jobs}",
            desired.flink.len()
        ));
    }
    let view = workload::managed_view(&desired);
    let policy = PlanPolicy::default();
    let observed = workload::live_twin(&desired);
    let started = Instant::now();
    let steady = plan::plan(&desired, &observed, &view, &policy);
    let plan_ms = started.elapsed().as_secs_f64() * 1000.0;
    let peak_after_plan_kib = procfs::memory("self")?.peak_rss_kib;
    if !steady.is_empty() {
        return Err(format!(
            "the steady-state plan has {} changes; expected none",
            steady.changes().count()
        ));
    }
    drop(observed);
    let drifted = workload::live_with_drift(&desired);
    let started = Instant::now();
    let drift = plan::plan(&desired, &drifted, &view, &policy);
    let plan_drift_ms = started.elapsed().as_secs_f64() * 1000.0;
    drop(drifted);
    let peak_before_create_kib = procfs::memory("self")?.peak_rss_kib;
    // An empty target: every job a create.
    let empty = dli_gitops::model::ObservedJobs::default();
    let nothing = dli_gitops::plan::JournalView::default();
    let started = Instant::now();
    let creates = plan::plan(&desired, &empty, &nothing, &policy);
    let plan_create_ms = started.elapsed().as_secs_f64() * 1000.0;
    if creates.changes().count() != jobs {
        return Err(format!(
            "the empty-target plan has {} changes; expected {jobs}",
            creates.changes().count()
        ));
    }
    let sample = ScaleSample {
        plan_create_ms,
        peak_before_create_kib,
        jobs,
        files,
        read_ms,
        resolve_ms,
        plan_ms,
        plan_drift_ms,
        plan_drift_changes: drift.changes().count(),
        start_peak_rss_kib: start_memory.peak_rss_kib,
        peak_rss_kib: procfs::memory("self")?.peak_rss_kib,
        peak_after_read_kib,
        peak_after_resolve_kib,
        peak_after_plan_kib,
    };
    println!(
        "{}",
        serde_json::to_string(&sample).map_err(|error| error.to_string())?
    );
    Ok(())
}

/// The parent's side: for each size, write the repository, run `runs` children, report medians
/// (times) and the largest peak RSS.
pub fn run(sizes: &[usize], runs: usize, report: &mut Report) -> Result<(), String> {
    let executable = std::env::current_exe()
        .map_err(|error| format!("finding this benchmark's executable: {error}"))?;
    for &jobs in sizes {
        let directory = tempfile::tempdir()
            .map_err(|error| format!("creating a temporary repository directory: {error}"))?;
        workload::write_repository(directory.path(), jobs)
            .map_err(|error| format!("writing the {jobs}-job repository: {error}"))?;
        let mut samples = Vec::new();
        for _ in 0..runs {
            let output = Command::new(&executable)
                .args(["--child", "scale", "--jobs", &jobs.to_string(), "--repo"])
                .arg(directory.path())
                .output()
                .map_err(|error| format!("running the scale child for {jobs} jobs: {error}"))?;
            if !output.status.success() {
                return Err(format!(
                    "the scale child for {jobs} jobs failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            let line = stdout.lines().last().unwrap_or_default();
            let sample: ScaleSample = serde_json::from_str(line)
                .map_err(|error| format!("reading the scale child's output {line:?}: {error}"))?;
            samples.push(sample);
        }
        let times = |pick: fn(&ScaleSample) -> f64| median(samples.iter().map(pick).collect());
        let peak = samples
            .iter()
            .map(|sample| sample.peak_rss_kib)
            .max()
            .unwrap_or(0);
        let start_peak = samples
            .iter()
            .map(|sample| sample.start_peak_rss_kib)
            .max()
            .unwrap_or(0);
        let largest = |pick: fn(&ScaleSample) -> u64| samples.iter().map(pick).max().unwrap_or(0);
        let files = samples.first().map(|sample| sample.files).unwrap_or(0);
        let section = format!("scale {jobs} jobs");
        let of_runs = format!("median of {runs} child process(es)");
        report.push(Row::new(
            &section,
            "read directory",
            format_duration_ms(times(|sample| sample.read_ms)),
            "",
            format!("{files} files; {of_runs}"),
        ));
        report.push(Row::new(
            &section,
            "parse + validate",
            format_duration_ms(times(|sample| sample.resolve_ms)),
            if jobs >= 10_000 { "< 1 s" } else { "" },
            "desired::resolve for one environment",
        ));
        report.push(Row::new(
            &section,
            "plan, no change",
            format_duration_ms(times(|sample| sample.plan_ms)),
            if jobs >= 10_000 { "< 50 ms" } else { "" },
            "every job live, equal, managed",
        ));
        report.push(Row::new(
            &section,
            "plan, empty target",
            format_duration_ms(times(|sample| sample.plan_create_ms)),
            if jobs >= 10_000 { "< 100 ms" } else { "" },
            "every job a create",
        ));
        report.push(Row::new(
            &section,
            "plan, 1% drift",
            format_duration_ms(times(|sample| sample.plan_drift_ms)),
            "",
            format!(
                "{} changes planned",
                samples
                    .first()
                    .map(|sample| sample.plan_drift_changes)
                    .unwrap_or(0)
            ),
        ));
        report.push(Row::new(
            &section,
            "peak RSS",
            format_mib(largest(|sample| sample.peak_before_create_kib)),
            if jobs >= 10_000 { "≤ 80 MiB" } else { "" },
            format!(
                "VmHWM of the child through parse + validate + plan (no change, 1% drift): {} at start, {} after reading, {} after resolving, {} after planning (live twin held)",
                format_mib(start_peak),
                format_mib(largest(|sample| sample.peak_after_read_kib)),
                format_mib(largest(|sample| sample.peak_after_resolve_kib)),
                format_mib(largest(|sample| sample.peak_after_plan_kib)),
            ),
        ));
        report.push(Row::new(
            &section,
            "peak RSS with an empty-target plan",
            format_mib(peak),
            "",
            "VmHWM at the end: the plan of every job a create holds a copy of every config",
        ));
    }
    Ok(())
}
