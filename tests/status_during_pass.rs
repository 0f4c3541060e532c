//! Status tells the truth during a pass: the real daemon upgrades a job while the emulator
//! (its own process) holds the stop call open (`faults.late`), and the API is polled meanwhile.
//! While the new revision is not applied the target is never `Synced`; the job being stopped
//! shows `Progressing` with its step; afterwards the job shows its last savepoint and backups,
//! in the API, in `dli-gitops status` and on the status page.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::daemon::{GitDaemonSetup, wait_for};
use support::http::{get, target_status};
use support::jobs::clicks_savepoint_job;
use support::{BINARY, TIMEOUT};

/// The upgrade's stop call is held 4 s by the emulator before it takes effect.
const EMULATOR_CONFIG: &str = "delays: {submit_ms: 100, cancel_ms: 300, savepoint_ms: 300, dlf_task_ms: 100}\n\
faults:\n  late: [{operation: BatchStopFlinkJobs, delay_ms: 4000}]\n";

fn clicks(status: &Value) -> Option<&Value> {
    status["jobs"]
        .as_array()?
        .iter()
        .find(|job| job["name"] == "clicks")
}

#[test]
fn a_job_being_upgraded_is_progressing_with_its_step_and_the_target_is_never_synced_early() {
    let setup = GitDaemonSetup::new(
        &[("flink/clicks.yaml", &clicks_savepoint_job(2))],
        EMULATOR_CONFIG,
        "STATUS",
        "    policy: {auto_sync: true, resync_interval: 10s}\n    timeouts: {job_transition: 60s, savepoint: 60s, request: 20s}\n",
    );
    let (address, first) = (&setup.address, &setup.first);
    let mut daemon = setup.start_daemon();
    wait_for("the first commit to converge", &mut daemon, || {
        target_status(&address).is_some_and(|status| {
            status["sync"]["status"] == "Synced"
                && status["sync"]["applied_revision"] == first.as_str()
                && status["health"]["status"] == "Healthy"
        })
    });

    let second = setup.commit(&[("flink/clicks.yaml", &clicks_savepoint_job(4))]);
    let mut seen_step = None;
    let mut seen_text = None;
    let mut early_synced = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the second commit did not converge; daemon log:\n{}",
            daemon.log()
        );
        let Some(status) = target_status(&address) else {
            continue;
        };
        let revision = status["sync"]["revision"].as_str().unwrap_or("");
        let applied = status["sync"]["applied_revision"].as_str().unwrap_or("");
        if revision == second && applied != second && status["sync"]["status"] == "Synced" {
            early_synced.push(status.clone());
        }
        if let Some(job) = clicks(&status)
            && job["health"]["status"] == "Progressing"
            && job["step"]
                .as_str()
                .is_some_and(|step| step.contains("stopping with a savepoint"))
            && seen_step.is_none()
        {
            assert_eq!(job["sync_status"], "OutOfSync", "{job:#}");
            assert_eq!(status["sync"]["status"], "OutOfSync", "{status:#}");
            assert_eq!(status["health"]["status"], "Progressing", "{status:#}");
            seen_step = Some(job.clone());
            // The CLI shows the same step while it is in flight.
            let output = Command::new(BINARY)
                .args(["status", "--server", &format!("http://{address}")])
                .output()
                .unwrap();
            seen_text = Some(String::from_utf8_lossy(&output.stdout).to_string());
        }
        if applied == second && status["sync"]["status"] == "Synced" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        early_synced.is_empty(),
        "the target showed Synced before the new revision was applied: {:#}",
        early_synced[0]
    );
    let step = seen_step.unwrap_or_else(|| {
        panic!(
            "never saw the job Progressing in its stop step; log:\n{}",
            daemon.log()
        )
    });
    assert!(
        step["step"].as_str().unwrap().starts_with("upgrade: step "),
        "{step:#}"
    );
    let text = seen_text.unwrap();
    assert!(
        text.contains("Progressing") && text.contains("stopping with a savepoint"),
        "dli-gitops status during the pass:\n{text}"
    );

    // After the upgrade: the savepoint it went through and the backup it took are shown.
    let status = target_status(&address).unwrap();
    let job = clicks(&status).unwrap();
    assert_eq!(job["health"]["status"], "Healthy", "{job:#}");
    let savepoint = job["savepoint"]
        .as_str()
        .unwrap_or_else(|| panic!("no savepoint: {job:#}"));
    assert!(savepoint.starts_with("obs://"), "{savepoint}");
    let backups = job["backups"].as_array().cloned().unwrap_or_default();
    assert!(!backups.is_empty(), "no backups: {job:#}");
    let output = Command::new(BINARY)
        .args(["status", "--server", &format!("http://{address}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&format!("savepoint: {savepoint}")), "{text}");
    assert!(text.contains("backup: obs://"), "{text}");
    let (_, page) = get(&address, "/").unwrap();
    assert!(page.contains(savepoint), "the page shows the savepoint");
}
