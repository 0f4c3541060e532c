//! What the journal's in-memory state costs: a journal for N jobs (each with an intent, an
//! outcome and a cached observation whose config is the job's real normalised detail, as the
//! daemon journals them) is written, then opened in a child process of its own (this binary
//! with `--child journal-memory`), once by replaying `journal.jsonl` and once from
//! `snapshot.json`. The child reports its resident set before and after opening, after
//! returning free pages to the kernel as the daemon does after each pass.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::procfs;
use super::report::{Report, Row};
use super::workload;
use dli_gitops::journal::{
    Effects, Intent, Journal, JournalOptions, Observed, Outcome, RecordBody,
};

const TARGET: &str = "prod";
const WRITERS: usize = 16;

/// The child's figures, printed as one JSON line.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Figures {
    rss_before_kib: u64,
    rss_opened_kib: u64,
    rss_trimmed_kib: u64,
    peak_kib: u64,
    /// What the allocator reports in use after opening (jemalloc's `stats.allocated`), when it can tell.
    heap_in_use_kib: Option<u64>,
    jobs: usize,
}

fn options() -> JournalOptions {
    JournalOptions {
        compact_after_records: u64::MAX,
        compact_after_bytes: u64::MAX,
        ..JournalOptions::default()
    }
}

/// The child's side: open the journal in `state_dir`, print the figures.
pub fn child(state_dir: &Path) -> Result<(), String> {
    dli_gitops::memory::configure_allocator();
    let before = procfs::memory("self")?;
    let (journal, _) = Journal::open(state_dir, options())
        .map_err(|error| format!("opening the journal: {error}"))?;
    let opened = procfs::memory("self")?;
    let heap = dli_gitops::memory::release_after_pass();
    let trimmed = procfs::memory("self")?;
    let jobs = journal
        .state_guard()
        .targets
        .get(TARGET)
        .map_or(0, |target| target.jobs.len());
    let figures = Figures {
        rss_before_kib: before.rss_kib,
        rss_opened_kib: opened.rss_kib,
        rss_trimmed_kib: trimmed.rss_kib,
        peak_kib: trimmed.peak_rss_kib,
        heap_in_use_kib: heap.map(|stats| stats.in_use / 1024),
        jobs,
    };
    println!(
        "{}",
        serde_json::to_string(&figures).map_err(|error| error.to_string())?
    );
    Ok(())
}

/// The records for job `index`: intent, outcome, observation.
fn records(index: usize, snapshot: Value) -> [RecordBody; 3] {
    let name = workload::job_name(index);
    let action_id = format!("p0000-{index}-create");
    [
        RecordBody::Intent(Intent {
            action_id: action_id.clone(),
            job: name.clone(),
            action: "create".into(),
            plan_id: Some("plan-0123456789abcdef".into()),
            detail: serde_json::json!({ "savepoint_dir": format!("obs://dli-gitops-checkpoints/prod/{name}/") }),
            extra: Map::new(),
        }),
        RecordBody::Outcome(Outcome {
            action_id,
            job: name.clone(),
            ok: true,
            error: None,
            effects: Effects {
                live_id: Some((100_000 + index).to_string()),
                spec_digest: Some(format!("sha256:{index:064x}")),
                managed: Some(true),
                ..Effects::default()
            },
            plan_id: Some("plan-0123456789abcdef".into()),
            extra: Map::new(),
        }),
        RecordBody::Observed(Observed {
            job: name,
            live_id: Some((100_000 + index).to_string()),
            update_time: Some(1_711_647_009_620),
            config: snapshot,
            status: Some("job_running".into()),
            managed: None,
            extra: Map::new(),
        }),
    ]
}

fn write_journal(state_dir: &Path, jobs: usize) -> Result<(), String> {
    let desired = workload::desired_jobs(jobs);
    let live = workload::live_twin(&desired);
    let snapshots: Arc<Vec<Value>> = Arc::new(
        live.flink
            .iter()
            .map(|job| serde_json::to_value(job).map_err(|error| error.to_string()))
            .collect::<Result<_, _>>()?,
    );
    std::fs::create_dir_all(state_dir)
        .map_err(|error| format!("creating {}: {error}", state_dir.display()))?;
    let (journal, _) = Journal::open(state_dir, options())
        .map_err(|error| format!("opening the journal: {error}"))?;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let journal = journal.clone();
            let snapshots = Arc::clone(&snapshots);
            std::thread::spawn(move || -> Result<(), String> {
                for index in (writer..snapshots.len()).step_by(WRITERS) {
                    for body in records(index, snapshots[index].clone()) {
                        journal
                            .append(TARGET, body)
                            .map_err(|error| format!("appending: {error}"))?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer
            .join()
            .map_err(|_| "a journal writer thread panicked".to_string())??;
    }
    Ok(())
}

fn open_in_child(state_dir: &Path) -> Result<Figures, String> {
    let executable =
        std::env::current_exe().map_err(|error| format!("finding this executable: {error}"))?;
    let output = Command::new(&executable)
        .args(["--child", "journal-memory", "--repo"])
        .arg(state_dir)
        .output()
        .map_err(|error| format!("running the journal-memory child: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "the journal-memory child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|error| format!("reading the journal-memory child's output {line:?}: {error}"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The parent's side.
pub fn run(jobs: usize, report: &mut Report) -> Result<(), String> {
    let directory = tempfile::tempdir()
        .map_err(|error| format!("creating a temporary state directory: {error}"))?;
    let state_dir = directory.path().join("state");
    write_journal(&state_dir, jobs)?;
    let journal_bytes = std::fs::metadata(state_dir.join(dli_gitops::journal::JOURNAL_FILE))
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let replayed = open_in_child(&state_dir)?;
    {
        let (journal, _) = Journal::open(&state_dir, options())
            .map_err(|error| format!("opening the journal: {error}"))?;
        journal
            .compact()
            .map_err(|error| format!("compacting: {error}"))?;
    }
    let snapshot_bytes = std::fs::metadata(state_dir.join(dli_gitops::journal::SNAPSHOT_FILE))
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let from_snapshot = open_in_child(&state_dir)?;
    for (how, figures, bytes) in [
        ("replaying journal.jsonl", &replayed, journal_bytes),
        ("from snapshot.json", &from_snapshot, snapshot_bytes),
    ] {
        if figures.jobs != jobs {
            return Err(format!(
                "the child saw {} jobs, {jobs} were written",
                figures.jobs
            ));
        }
        report.push(Row::new(
            "journal-memory",
            &format!("RSS growth opening a {jobs}-job journal, {how}"),
            mib(figures.rss_trimmed_kib.saturating_sub(figures.rss_before_kib)),
            "",
            format!(
                "{} file; {} right after opening, {} at peak, {} after malloc_trim (process total {}; heap in use {})",
                mib(bytes / 1024),
                mib(figures.rss_opened_kib.saturating_sub(figures.rss_before_kib)),
                mib(figures.peak_kib.saturating_sub(figures.rss_before_kib)),
                mib(figures.rss_trimmed_kib.saturating_sub(figures.rss_before_kib)),
                mib(figures.rss_trimmed_kib),
                figures
                    .heap_in_use_kib
                    .map_or_else(|| "unknown".to_string(), mib),
            ),
        ));
    }
    Ok(())
}
