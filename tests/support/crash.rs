//! What the SIGKILL crash loops share: a replayable seed, the number of runs, and the journal
//! checks after the last run.

use std::path::Path;
use std::process::Command;

use super::BINARY;

/// A random seed, or `RELIABILITY_CRASH_SEED` when set, printed with how to replay it, and an
/// RNG seeded with it.
pub fn crash_seed(test: &str) -> (u64, rand::rngs::StdRng) {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("RELIABILITY_CRASH_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("{test} seed {seed} (RELIABILITY_CRASH_SEED={seed} replays it)");
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

/// `RELIABILITY_CRASH_RUNS` when set, else `default`; at least 1.
pub fn crash_runs(default: usize) -> usize {
    std::env::var("RELIABILITY_CRASH_RUNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// What is wrong with the journal in `state_dir`: `journal verify` fails, or an intent has no
/// outcome. Empty when it is sound.
pub fn journal_violations(state_dir: &Path) -> Vec<String> {
    let output = Command::new(BINARY)
        .args(["journal", "verify", "--state-dir"])
        .arg(state_dir)
        .output()
        .expect("journal verify runs");
    let mut problems = Vec::new();
    if !output.status.success() {
        problems.push(format!(
            "journal verify failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let records =
        dli_gitops::journal::read_records(state_dir, &dli_gitops::journal::RecordFilter::default())
            .expect("read the journal");
    let mut open_intents = std::collections::BTreeMap::new();
    for record in &records {
        match &record.body {
            dli_gitops::journal::RecordBody::Intent(intent) => {
                open_intents.insert(
                    intent.action_id.clone(),
                    (record.seq, intent.job.clone(), intent.action.clone()),
                );
            }
            dli_gitops::journal::RecordBody::Outcome(outcome) => {
                open_intents.remove(&outcome.action_id);
            }
            _ => {}
        }
    }
    for (action_id, (seq, job, action)) in open_intents {
        problems.push(format!(
            "intent {action_id} (seq {seq}, {action} {job}) has no outcome"
        ));
    }
    problems
}
