//! The end-to-end benchmark harness (issue 10): scale of parse/validate/plan, reconcile cost on
//! the emulator, commit-to-converged latency, the daemon at rest, journal appends, and
//! dli-gitops side by side with two baselines. Prints one table; BENCHMARKS.md keeps the figures.
//!
//! Run: `cargo run --release --example bench -- [--jobs N] [--latency-ms L] [--quick]`.

mod baselines;
mod env;
mod journal;
mod procfs;
mod proxy;
mod report;
mod scale;
mod workload;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use report::Report;

/// Every section the harness knows, in the order it runs them.
const SECTIONS: &[&str] = &["scale", "journal"];

#[derive(Debug, Parser)]
#[command(about = "dli-gitops end-to-end benchmarks (issue 10)")]
struct Arguments {
    /// Live jobs for the end-to-end sections (the scale section always runs 1,000 and 10,000).
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Latency the emulator adds to every cloud API call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// A short run: one sample per figure, fewer repetitions, a 10-second rest window.
    #[arg(long)]
    quick: bool,
    /// Run only these sections (comma-separated): scale, journal.
    #[arg(long, value_delimiter = ',')]
    sections: Vec<String>,
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
                scale::child(repo, arguments.jobs)
            }
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
    let wanted = |section: &str| {
        arguments.sections.is_empty() || arguments.sections.iter().any(|name| name == section)
    };
    let build = if cfg!(debug_assertions) {
        "debug build (figures are not representative; use --release)"
    } else {
        "release build"
    };
    println!("dli-gitops benchmark harness, {build}");
    println!("machine: {}", procfs::machine());
    println!(
        "jobs: {}, emulator latency: {} ms per call, quick: {}",
        arguments.jobs, arguments.latency_ms, arguments.quick
    );
    let started = Instant::now();
    let mut report = Report::default();
    if wanted("scale") {
        let runs = if arguments.quick { 1 } else { 3 };
        if let Err(problem) = scale::run(&[1_000, 10_000], runs, &mut report) {
            report.not_measured("scale", problem);
        }
    }
    if wanted("journal") {
        let seconds = if arguments.quick { 1.0 } else { 3.0 };
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
    if report.not_measured.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} section(s) could not be measured (see the table)",
            report.not_measured.len()
        ))
    }
}
