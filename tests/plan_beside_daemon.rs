//! `plan` works beside a running daemon: it reads a private copy of the journal, never takes
//! the state directory's lock, and writes nothing there. An unknown target creates nothing on
//! disk.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use support::daemon::{GitDaemonSetup, wait_for};
use support::http::{get, target_status};
use support::{ACCESS_KEY, BINARY, SECRET_KEY};

const EMULATOR_CONFIG: &str =
    "delays: {submit_ms: 100, cancel_ms: 100, savepoint_ms: 100, dlf_task_ms: 100}\n";

fn job_yaml(cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: clicks\nqueue_name: dev_flink\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\ncu_number: {cu_number}\nparallel_number: 1\n\
         desired_state: running\n"
    )
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn plan_runs_beside_a_daemon_holding_the_state_directory_and_touches_nothing_there() {
    let setup = GitDaemonSetup::new(
        &[("flink/clicks.yaml", &job_yaml(2))],
        EMULATOR_CONFIG,
        "PLAN",
        "    policy: {auto_sync: false, resync_interval: 10s}\n",
    );
    let (dir, address, first, config) = (&setup.dir, &setup.address, &setup.first, &setup.config);

    // Unknown target, no daemon yet, no state directory: an error, and nothing on disk.
    let state = dir.path().join("state");
    let output = Command::new(BINARY)
        .args(["plan", "--config"])
        .arg(&config)
        .args(["--target", "nope"])
        .env("PLAN_AK", ACCESS_KEY)
        .env("PLAN_SK", SECRET_KEY)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        !state.exists(),
        "plan with an unknown target created {}",
        state.display()
    );

    let mut daemon = setup.start_daemon();
    // auto_sync is off: the daemon observes and reports the revision OutOfSync.
    wait_for("the daemon to report the revision", &mut daemon, || {
        target_status(&address).is_some_and(|status| {
            status["sync"]["revision"] == first.as_str() && status["ready"] == true
        })
    });
    let before = listing(&state);
    let journal_before = std::fs::read(state.join("journal.jsonl")).unwrap_or_default();

    let output = Command::new(BINARY)
        .args(["plan", "--config"])
        .arg(&config)
        .args(["--target", "dev", "--json"])
        .env_remove("RUST_LOG")
        .env("PLAN_AK", ACCESS_KEY)
        .env("PLAN_SK", SECRET_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "plan beside the daemon failed: {stderr}\n{stdout}"
    );
    // A one-shot command logs warnings only by default: no info line on stderr.
    assert!(
        !stderr.contains("INFO"),
        "plan logged at info by default:\n{stderr}"
    );
    let plan: Value = serde_json::from_str(stdout.trim()).expect("plan --json prints JSON");
    assert_eq!(plan["summary"]["create"], 1, "{plan:#}");

    // The daemon still holds its directory, and plan wrote nothing there.
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited"
    );
    assert_eq!(listing(&state), before, "plan changed the state directory");
    let journal_after = std::fs::read(state.join("journal.jsonl")).unwrap_or_default();
    assert!(
        journal_after.starts_with(&journal_before),
        "plan rewrote the daemon's journal"
    );
    let text = String::from_utf8_lossy(&journal_after);
    assert!(
        !text.contains("\"kind\":\"intent\""),
        "plan journaled an intent"
    );
    // `-v` brings the info lines back.
    let verbose = Command::new(BINARY)
        .args(["-v", "plan", "--config"])
        .arg(&config)
        .args(["--target", "dev"])
        .env_remove("RUST_LOG")
        .env("PLAN_AK", ACCESS_KEY)
        .env("PLAN_SK", SECRET_KEY)
        .output()
        .unwrap();
    assert!(verbose.status.success());
    assert!(
        String::from_utf8_lossy(&verbose.stderr).contains("INFO"),
        "-v shows info lines"
    );
    let (code, _) = get(&address, "/healthz").unwrap();
    assert_eq!(code, 200);
}
