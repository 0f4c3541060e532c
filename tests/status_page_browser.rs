//! The status page in a real headless browser (Debian's `chromium`): during an upgrade whose
//! stop the emulator holds open (`faults.late`), the page renders (a screenshot of the expected
//! size with content, no Content-Security-Policy violation in the browser's console) and its DOM
//! shows the job `Progressing` with its step. Ignored where chromium is absent; `.ci/run`
//! installs it and runs this with `--ignored`.

mod support;

use std::path::Path;
use std::process::Command;

use support::daemon::{GitDaemonSetup, wait_for};
use support::http::target_status;
use support::jobs::clicks_savepoint_job;

/// The upgrade's stop call is held 25 s: long enough for two browser runs.
const EMULATOR_CONFIG: &str = "delays: {submit_ms: 100, cancel_ms: 300, savepoint_ms: 300, dlf_task_ms: 100}\n\
faults:\n  late: [{operation: BatchStopFlinkJobs, delay_ms: 25000}]\n";

/// Runs headless chromium with a fresh profile; returns (stdout, stderr).
fn chromium(profile: &Path, args: &[&str]) -> (String, String) {
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs (apt-get install chromium)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// A PNG's width and height, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[test]
#[ignore = "needs headless chromium (Debian package `chromium`); .ci/run installs it and runs this with --ignored"]
fn the_status_page_renders_in_a_real_browser_and_shows_an_upgrade_progressing() {
    let setup = GitDaemonSetup::new(
        &[("flink/clicks.yaml", &clicks_savepoint_job(2))],
        EMULATOR_CONFIG,
        "BROWSER",
        "    policy: {auto_sync: true, resync_interval: 10s}\n    timeouts: {job_transition: 90s, savepoint: 90s, request: 60s}\n",
    );
    let (dir, address, first) = (&setup.dir, &setup.address, &setup.first);
    let mut daemon = setup.start_daemon();
    wait_for("the first commit to converge", &mut daemon, || {
        target_status(&address).is_some_and(|status| {
            status["sync"]["status"] == "Synced"
                && status["sync"]["applied_revision"] == first.as_str()
        })
    });
    setup.commit(&[("flink/clicks.yaml", &clicks_savepoint_job(4))]);
    wait_for("the upgrade's stop step", &mut daemon, || {
        target_status(&address).is_some_and(|status| {
            status["jobs"].as_array().is_some_and(|jobs| {
                jobs.iter().any(|job| {
                    job["name"] == "clicks"
                        && job["health"]["status"] == "Progressing"
                        && job["step"]
                            .as_str()
                            .is_some_and(|step| step.contains("stopping with a savepoint"))
                })
            })
        })
    });

    let page = format!("http://{address}/");
    let (dom, console) = chromium(&dir.path().join("profile-dom"), &["--dump-dom", &page]);
    assert!(dom.contains("<h1>dli-gitops</h1>"), "the DOM:\n{dom}");
    let row = dom
        .split("<tr>")
        .find(|row| row.contains("<td>clicks</td>"))
        .unwrap_or_else(|| panic!("no row for clicks in the DOM:\n{dom}"));
    assert!(row.contains("Progressing"), "the job's row: {row}");
    assert!(
        row.contains("stopping with a savepoint"),
        "the job's row: {row}"
    );
    assert!(
        !console.contains("Content Security Policy"),
        "the browser refused part of the page under its CSP:\n{console}"
    );

    let shot = dir.path().join("status.png");
    let (_, console) = chromium(
        &dir.path().join("profile-shot"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            "--hide-scrollbars",
            &page,
        ],
    );
    let bytes = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&bytes), (1280, 900));
    // A blank page compresses to about a kilobyte; the rendered tables take far more.
    assert!(
        bytes.len() > 20_000,
        "the screenshot is only {} bytes",
        bytes.len()
    );
    assert!(!console.contains("Content Security Policy"), "{console}");
    if let Ok(keep) = std::env::var("DLI_GITOPS_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, Path::new(&keep).join("status-page-progressing.png"));
    }
}
