//! The end-to-end benchmark harness: scale of parse/validate/plan, reconcile cost on
//! the emulator, dli-gitops side by side with two baselines, commit-to-converged latency, the
//! daemon at rest, and journal appends. Prints one table; BENCHMARKS.md keeps the figures.
//!
//! Run: `cargo build --release --bin dli-gitops && cargo run --release --example bench --
//! [--jobs N] [--latency-ms L] [--quick]`.

mod baselines;
mod compare;
mod daemon;
mod env;
mod journal;
mod journal_memory;
mod multi;
mod ours;
mod procfs;
mod proxy;
mod report;
mod scale;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use dli_gitops::emulator::EmulatorDelays;
use report::Report;

/// Every section the harness knows, in the order it runs them.
const SECTIONS: &[&str] = &[
    "scale",
    "compare",
    "daemon",
    "journal",
    "multi",
    "journal-memory",
];

#[derive(Debug, Parser)]
#[command(about = "dli-gitops end-to-end benchmarks")]
struct Arguments {
    /// Live jobs for the end-to-end sections (default 1000; 100 with --quick). The scale
    /// section always runs 1,000 and 10,000.
    #[arg(long)]
    jobs: Option<usize>,
    /// Latency the emulator adds to every cloud API call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Client-side rate limit of every tool (dli-gitops and both baselines), requests per
    /// second; the product's default is 10.
    #[arg(long, default_value_t = 10.0)]
    requests_per_second: f64,
    /// Requests allowed back to back before the rate limit applies (the product's default: 20).
    #[arg(long, default_value_t = 20)]
    burst: u32,
    /// Emulator status delays (submit, cancel, savepoint) in milliseconds; default: the
    /// emulator's realistic ones (1500, 1000, 1000).
    #[arg(long)]
    transition_ms: Option<u64>,
    /// Commit-to-converged repetitions per source (default 20; 3 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// The at-rest window in seconds (default 60; 10 with --quick).
    #[arg(long)]
    rest_seconds: Option<u64>,
    /// A short run: 100 jobs, one sample per figure, fewer repetitions.
    #[arg(long)]
    quick: bool,
    /// Accounts (targets) of the `multi` section, one daemon for all.
    #[arg(long, default_value_t = 50)]
    accounts: usize,
    /// Jobs per account in the `multi` section.
    #[arg(long, default_value_t = 200)]
    jobs_per_account: usize,
    /// Run only these sections (comma-separated): scale, compare, daemon, journal, multi,
    /// journal-memory (`multi`, one daemon for many accounts, and `journal-memory`, the
    /// journal's in-memory state at 10,000 jobs, run only when named).
    #[arg(long, value_delimiter = ',')]
    sections: Vec<String>,
    /// Exit non-zero when a count-based goal is missed (API calls, restarts; never timings).
    #[arg(long)]
    check: bool,
    /// Keep the test bed's directory (repository, emulator data, state, daemon logs) and print
    /// where it is.
    #[arg(long)]
    keep_files: bool,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Internal: run one measurement in this process and print it as JSON.
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: the repository a child measures.
    #[arg(long, hide = true)]
    repo: Option<PathBuf>,
}

fn main() {
    let arguments = Arguments::parse();
    if let Err(problem) = run(arguments) {
        eprintln!("bench: {problem}");
        std::process::exit(1);
    }
}

fn run(arguments: Arguments) -> Result<(), String> {
    if !procfs::available() {
        return Err("this harness reads /proc for memory and CPU figures; run it on Linux".into());
    }
    if let Some(child) = &arguments.child {
        return match child.as_str() {
            "scale" => {
                let repo = arguments
                    .repo
                    .as_deref()
                    .ok_or("--child scale needs --repo")?;
                scale::child(repo, arguments.jobs.unwrap_or(1000))
            }
            "journal-memory" => journal_memory::child(
                arguments
                    .repo
                    .as_deref()
                    .ok_or("--child journal-memory needs --repo")?,
            ),
            other => Err(format!("unknown child measurement {other:?}")),
        };
    }
    for section in &arguments.sections {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(format!(
                "unknown section {section:?}; sections: {}",
                SECTIONS.join(", ")
            ));
        }
    }
    if !(arguments.requests_per_second.is_finite() && arguments.requests_per_second > 0.0)
        || arguments.burst == 0
    {
        return Err("--requests-per-second must be positive and --burst at least 1".into());
    }
    let wanted = |section: &str| {
        (arguments.sections.is_empty() && section != "multi")
            || arguments.sections.iter().any(|name| name == section)
    };
    let quick = arguments.quick;
    let jobs = arguments.jobs.unwrap_or(if quick { 100 } else { 1000 });
    if jobs < 100 {
        return Err("--jobs must be at least 100 (the cycles edit jobs up to index 99)".into());
    }
    let runs = arguments.runs.unwrap_or(if quick { 3 } else { 20 }).max(1);
    let rest_window =
        Duration::from_secs(
            arguments
                .rest_seconds
                .unwrap_or(if quick { 10 } else { 60 }),
        );
    let delays = match arguments.transition_ms {
        Some(milliseconds) => EmulatorDelays {
            submit_ms: milliseconds,
            cancel_ms: milliseconds,
            savepoint_ms: milliseconds,
            dlf_task_ms: milliseconds,
        },
        None => EmulatorDelays::default(),
    };
    let build = if cfg!(debug_assertions) {
        "debug build (figures are not representative; use --release)"
    } else {
        "release build"
    };
    println!("dli-gitops benchmark harness, {build}");
    println!("machine: {}", procfs::machine());
    println!(
        "jobs: {jobs}, emulator latency: {} ms per call, transitions: submit {} ms / cancel {} ms / savepoint {} ms, \
         rate limit: {} req/s (burst {}), quick: {quick}",
        arguments.latency_ms,
        delays.submit_ms,
        delays.cancel_ms,
        delays.savepoint_ms,
        arguments.requests_per_second,
        arguments.burst
    );
    let started = Instant::now();
    let mut report = Report::default();
    if wanted("scale") {
        println!("== scale");
        let child_runs = if quick { 1 } else { 3 };
        if let Err(problem) = scale::run(&[1_000, 10_000], child_runs, &mut report) {
            report.not_measured("scale", problem);
        }
    }
    if wanted("compare") || wanted("daemon") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("starting the async runtime: {error}"))?;
        runtime.block_on(async {
            println!("== seeding {jobs} jobs into the emulator");
            let profile = env::ServiceProfile {
                latency_ms: arguments.latency_ms,
                delays,
            };
            let bed = match env::TestBed::start(jobs, profile).await {
                Ok(bed) => bed,
                Err(problem) => {
                    report.not_measured("compare, daemon", format!("setting up: {problem}"));
                    return;
                }
            };
            let target_extra = format!(
                "rate_limit: {{requests_per_second: {}, burst: {}}}",
                arguments.requests_per_second, arguments.burst
            );
            // The compare section leaves a journal with every job's detail cached; without it
            // the daemon's first pass reads every job once.
            if wanted("compare") {
                println!("== compare");
                if let Err(problem) = compare::run(
                    &bed,
                    arguments.requests_per_second,
                    arguments.burst,
                    &target_extra,
                    &mut report,
                )
                .await
                {
                    report.not_measured("compare", problem);
                }
            }
            if wanted("daemon") {
                println!("== daemon");
                if let Err(problem) = daemon::run(
                    &bed,
                    runs,
                    rest_window,
                    &target_extra,
                    daemon::RateLimit {
                        requests_per_second: arguments.requests_per_second,
                        burst: arguments.burst,
                    },
                    &mut report,
                )
                .await
                {
                    report.not_measured("daemon", problem);
                }
            }
            if let Some(kept) = bed.shutdown(arguments.keep_files).await {
                println!("kept the test bed in {}", kept.display());
            }
        });
    }
    if wanted("multi") {
        println!("== multi: one daemon, {} accounts", arguments.accounts);
        let scenario = multi::Scenario {
            accounts: arguments.accounts.max(1),
            jobs_per_account: arguments.jobs_per_account.max(10),
            latency_ms: arguments.latency_ms,
            delays,
            rest_window,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("starting the async runtime: {error}"))?;
        if let Err(problem) =
            runtime.block_on(multi::run(scenario, arguments.keep_files, &mut report))
        {
            report.not_measured("multi", problem);
        }
    }
    // Only when asked for by name: it writes a 10,000-job journal (`--jobs` sets the count).
    if arguments
        .sections
        .iter()
        .any(|name| name == "journal-memory")
    {
        let jobs = arguments.jobs.unwrap_or(10_000);
        println!("== journal-memory: {jobs} jobs");
        if let Err(problem) = journal_memory::run(jobs, &mut report) {
            report.not_measured("journal-memory", problem);
        }
    }
    if wanted("journal") {
        println!("== journal");
        let seconds = if quick { 1.0 } else { 3.0 };
        if let Err(problem) = journal::run(seconds, &mut report) {
            report.not_measured("journal", problem);
        }
    }
    println!();
    println!("{}", report.to_markdown());
    println!(
        "harness wall time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &arguments.markdown {
        std::fs::write(path, report.to_markdown())
            .map_err(|error| format!("writing {}: {error}", path.display()))?;
    }
    if !report.not_measured.is_empty() {
        return Err(format!(
            "{} section(s) could not be measured (see the table)",
            report.not_measured.len()
        ));
    }
    let missed = report.missed_goals();
    if arguments.check && !missed.is_empty() {
        return Err(format!("count-based goals missed: {}", missed.join("; ")));
    }
    Ok(())
}
