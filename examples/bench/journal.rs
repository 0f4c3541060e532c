//! Journal appends per second, with and without group commit: concurrent writers append
//! intent records of a typical size, each append returning only after its record is fsync'd.
//! (`benches/journal_append.rs` sweeps thread counts; this is the harness's one-line figure.)

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Map, json};

use super::report::{Report, Row};
use dli_gitops::journal::{Intent, Journal, JournalOptions, RecordBody};

/// Concurrent writers: about as many jobs as one pass acts on at once.
const WRITERS: usize = 16;

pub fn run(seconds: f64, report: &mut Report) -> Result<(), String> {
    let directory = tempfile::tempdir()
        .map_err(|error| format!("creating a temporary state directory: {error}"))?;
    for group_commit in [true, false] {
        let state_dir = directory
            .path()
            .join(if group_commit { "group" } else { "single" });
        std::fs::create_dir_all(&state_dir)
            .map_err(|error| format!("creating {}: {error}", state_dir.display()))?;
        let options = JournalOptions {
            group_commit,
            compact_after_records: u64::MAX,
            compact_after_bytes: u64::MAX,
            ..JournalOptions::default()
        };
        let (journal, _) = Journal::open(&state_dir, options)
            .map_err(|error| format!("opening the journal: {error}"))?;
        let barrier = Arc::new(Barrier::new(WRITERS + 1));
        let duration = Duration::from_secs_f64(seconds);
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let journal = journal.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || -> Result<(), String> {
                    barrier.wait();
                    let deadline = Instant::now() + duration;
                    let mut index = 0u64;
                    while Instant::now() < deadline {
                        journal
                            .append("bench", intent(writer, index))
                            .map_err(|error| format!("appending: {error}"))?;
                        index += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        for writer in writers {
            writer
                .join()
                .map_err(|_| "a journal writer thread panicked".to_string())??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let stats = journal.stats();
        report.push(Row::new(
            "journal",
            if group_commit {
                "appends/s, group commit"
            } else {
                "appends/s, one fsync each"
            },
            format!("{:.0}", stats.appended_records as f64 / elapsed),
            "",
            format!(
                "{WRITERS} writers, {seconds} s, {:.1} records per fsync, ~300-byte intents",
                stats.appended_records as f64 / stats.commits.max(1) as f64
            ),
        ));
    }
    Ok(())
}

/// An intent record of typical size.
fn intent(writer: usize, index: u64) -> RecordBody {
    RecordBody::Intent(Intent {
        action_id: format!("bench-{writer}-{index}"),
        job: format!("clickstream-agg-{writer}"),
        action: "upgrade".into(),
        plan_id: Some("plan-0123456789abcdef".into()),
        detail: json!({
            "savepoint_dir": format!("obs://dli-gitops-checkpoints/prod/clickstream-agg-{writer}/"),
            "from_live_id": 4711,
        }),
        extra: Map::new(),
    })
}
