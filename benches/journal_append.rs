//! Appends per second into the state journal, with and without group commit, at several
//! thread counts. Every append is fsync'd before it returns, so the figures are bound by the
//! disk's fsync latency; run with `cargo bench --profile dev --bench journal_append`
//! (optimisation changes little here) and `-- --seconds N` to lengthen each run.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use dli_gitops::journal::{Intent, Journal, JournalOptions, RecordBody};
use serde_json::{Map, json};

struct Measurement {
    appends: u64,
    commits: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let seconds: f64 = arguments
        .windows(2)
        .find(|pair| pair[0] == "--seconds")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(1.5);
    let base = std::env::var_os("JOURNAL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!(
        "journal append benchmark: {seconds}s per row, directory {}",
        base.display()
    );
    println!(
        "{:>7}  {:>12}  {:>12}  {:>15}  {:>12}  {:>12}",
        "threads", "group commit", "appends/s", "records/fsync", "p50 latency", "p99 latency"
    );
    for threads in [1usize, 4, 16, 64] {
        for group_commit in [false, true] {
            let dir = tempfile::tempdir_in(&base).expect("create a temporary state directory");
            let measurement = run(
                dir.path(),
                threads,
                group_commit,
                Duration::from_secs_f64(seconds),
            );
            let mut latencies = measurement.latencies;
            latencies.sort();
            let percentile = |fraction: f64| {
                let index = ((latencies.len() as f64 - 1.0) * fraction).round() as usize;
                latencies.get(index).copied().unwrap_or_default()
            };
            println!(
                "{:>7}  {:>12}  {:>12.0}  {:>15.1}  {:>10.2}ms  {:>10.2}ms",
                threads,
                if group_commit { "on" } else { "off" },
                measurement.appends as f64 / measurement.elapsed.as_secs_f64(),
                measurement.appends as f64 / measurement.commits.max(1) as f64,
                percentile(0.50).as_secs_f64() * 1000.0,
                percentile(0.99).as_secs_f64() * 1000.0,
            );
        }
    }
}

fn run(dir: &Path, threads: usize, group_commit: bool, duration: Duration) -> Measurement {
    let options = JournalOptions {
        group_commit,
        compact_after_records: u64::MAX,
        compact_after_bytes: u64::MAX,
        ..JournalOptions::default()
    };
    let (journal, _) = Journal::open(dir, options).expect("open the journal");
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let journal = journal.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let deadline = Instant::now() + duration;
                let mut latencies = Vec::new();
                let mut index = 0u64;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    journal
                        .append("bench", intent(thread, index))
                        .expect("append");
                    latencies.push(started.elapsed());
                    index += 1;
                }
                latencies
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.join().expect("appending thread"));
    }
    let elapsed = started.elapsed();
    let stats = journal.stats();
    Measurement {
        appends: stats.appended_records,
        commits: stats.commits,
        elapsed,
        latencies,
    }
}

/// A record of typical size (about 300 bytes encoded).
fn intent(thread: usize, index: u64) -> RecordBody {
    RecordBody::Intent(Intent {
        action_id: format!("bench-{thread}-{index}"),
        job: format!("clickstream-agg-{thread}"),
        action: "upgrade".into(),
        plan_id: Some("plan-0123456789abcdef".into()),
        detail: json!({
            "savepoint_dir": format!("obs://dli-gitops-checkpoints/prod/clickstream-agg-{thread}/"),
            "from_live_id": 4711,
        }),
        extra: Map::new(),
    })
}
