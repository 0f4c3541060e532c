//! Change windows with time zones: the pure window logic across daylight-saving changes, the
//! config checks, and one daemon (the real loop and HTTP server, in-process, a fake service
//! behind the reconciler interface, a clock set to just before Europe/Berlin's spring-forward)
//! that holds syncs inside a deny window, stops a pass in flight when a window opens, and lets
//! one break-glass sync through, journaled.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use dli_gitops::config::{Config, CronSchedule, WindowKind};
use dli_gitops::daemon::{PassError, PassReport, PassRequest, TargetReconciler, serve};
use dli_gitops::journal::{Journal, JournalOptions, RecordBody, RecordFilter};
use dli_gitops::promotion::{ChangeWindow, WindowBlock};
use dli_gitops::status::control::{Clock, Controls, window_status};

use support::inproc::parts;

const TOKEN: &str = "windows-test-token";

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

fn window(kind: WindowKind, schedule: &str, zone: &str, minutes: u64) -> ChangeWindow {
    ChangeWindow {
        kind,
        schedule: CronSchedule::parse_in(schedule, Some(zone)).unwrap(),
        duration: Duration::from_secs(minutes * 60),
    }
}

// ---- the pure logic ------------------------------------------------------------------------

#[test]
fn a_deny_window_in_berlin_follows_the_local_clock_across_spring_forward() {
    // 03:00 local, one hour. CET (UTC+1) until 2026-03-29 01:00 UTC, then CEST (UTC+2).
    let windows = [window(WindowKind::Deny, "0 3 * * *", "Europe/Berlin", 60)];

    // The day before: 03:00 CET = 02:00 UTC.
    let saturday = window_status(&windows, at(2026, 3, 28, 2, 30, 0));
    assert!(matches!(saturday.blocked, Some(WindowBlock::Deny { .. })));
    assert_eq!(saturday.unblocks_at, Some(at(2026, 3, 28, 3, 0, 0)));

    // The change day: 03:00 CEST = 01:00 UTC (a fixed UTC+1 would say 02:00, UTC 03:00).
    let before = window_status(&windows, at(2026, 3, 29, 0, 30, 0));
    assert_eq!(before.blocked, None);
    assert_eq!(before.blocks_at, Some(at(2026, 3, 29, 1, 0, 0)));
    assert_eq!(
        before.next.as_ref().map(|next| next.opens_at),
        Some(at(2026, 3, 29, 1, 0, 0))
    );
    let inside = window_status(&windows, at(2026, 3, 29, 1, 30, 0));
    assert!(inside.blocked.is_some());
    assert_eq!(inside.unblocks_at, Some(at(2026, 3, 29, 2, 0, 0)));
    assert_eq!(inside.open.len(), 1);
    assert_eq!(inside.open[0].closes_at, at(2026, 3, 29, 2, 0, 0));
    assert!(
        window_status(&windows, at(2026, 3, 29, 2, 30, 0))
            .blocked
            .is_none()
    );
}

#[test]
fn a_window_in_the_repeated_hour_of_fall_back_opens_twice_and_a_skipped_one_not_at_all() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:30 local happens twice.
    let windows = [window(WindowKind::Deny, "30 2 * * *", "Europe/Berlin", 20)];
    assert!(
        window_status(&windows, at(2026, 10, 25, 0, 40, 0))
            .blocked
            .is_some()
    );
    let between = window_status(&windows, at(2026, 10, 25, 1, 5, 0));
    assert!(between.blocked.is_none());
    assert_eq!(between.blocks_at, Some(at(2026, 10, 25, 1, 30, 0)));
    assert!(
        window_status(&windows, at(2026, 10, 25, 1, 40, 0))
            .blocked
            .is_some()
    );
    // 2026-03-29: 02:30 local does not exist; the next opening is the day after.
    let spring = window_status(&windows, at(2026, 3, 29, 0, 0, 0));
    assert_eq!(
        spring.next.map(|next| next.opens_at),
        Some(at(2026, 3, 30, 0, 30, 0))
    );
}

#[test]
fn allow_windows_in_new_york_hold_syncs_until_the_next_business_morning() {
    // 09:00-17:00 America/New_York, Monday to Friday.
    let windows = [window(
        WindowKind::Allow,
        "0 9 * * mon-fri",
        "America/New_York",
        8 * 60,
    )];
    // Saturday 2026-03-07 noon local (EST, UTC-5); Monday 2026-03-09 is after the US change
    // (2026-03-08), so 09:00 EDT = 13:00 UTC.
    let weekend = window_status(&windows, at(2026, 3, 7, 17, 0, 0));
    assert!(matches!(
        weekend.blocked,
        Some(WindowBlock::OutsideAllow { .. })
    ));
    assert_eq!(weekend.unblocks_at, Some(at(2026, 3, 9, 13, 0, 0)));
    let monday = window_status(&windows, at(2026, 3, 9, 14, 0, 0));
    assert!(monday.blocked.is_none());
    assert_eq!(monday.blocks_at, Some(at(2026, 3, 9, 21, 0, 0)));
}

// ---- config checks ---------------------------------------------------------------------------

fn config_text(dir: &Path, windows: &str, extra_top: &str) -> String {
    format!(
        r#"state_dir: {state}
listen: 127.0.0.1:0
api_token_env: WINDOWS_TEST_TOKEN
{extra_top}
sources:
  jobs:
    path: {jobs}
targets:
  - name: dev
    source: jobs
    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}
    policy: {{auto_sync: true, self_heal: true, resync_interval: 1h}}
    windows:
{windows}
"#,
        state = dir.join("state").display(),
        jobs = dir.join("jobs").display(),
    )
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_unknown_time_zone_is_refused_at_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_text(
            dir.path(),
            "      - {kind: deny, schedule: \"0 3 * * *\", duration: 1h, timezone: Europe/Berln}",
            "",
        ),
    );
    let error = Config::load(&path).expect_err("an unknown zone is refused");
    let text = format!("{error:#}");
    let problems = match &error {
        dli_gitops::config::ConfigError::Invalid { problems, .. } => problems.clone(),
        other => panic!("not a validation error: {other:?}"),
    };
    assert!(
        problems.iter().any(
            |problem| problem.yaml_path == "targets[0].windows[0].timezone"
                && problem.message.contains("Europe/Berln")
        ),
        "{text}: {problems:?}"
    );
}

// ---- the daemon ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Pass {
    execute: bool,
    /// The pass's stop fired while it was applying.
    stopped: bool,
    at: DateTime<Utc>,
}

/// Applies by waiting (up to `hold`) for the pass's stop, like an action that takes time.
struct SlowService {
    passes: Mutex<Vec<Pass>>,
    hold: Duration,
    clock: Clock,
}

impl TargetReconciler for SlowService {
    fn pass<'a>(
        &'a self,
        request: PassRequest<'a>,
    ) -> BoxFuture<'a, Result<PassReport, PassError>> {
        Box::pin(async move {
            let mut stopped = false;
            if request.execute {
                tokio::select! {
                    _ = request.stop.wait() => stopped = true,
                    _ = tokio::time::sleep(self.hold) => {}
                }
            }
            self.passes.lock().unwrap().push(Pass {
                execute: request.execute,
                stopped,
                at: (self.clock)(),
            });
            Ok(PassReport {
                executed: request.execute,
                interrupted: stopped,
                ..PassReport::default()
            })
        })
    }
    fn applied_revision(&self) -> Option<String> {
        None
    }
    fn record_applied<'a>(
        &'a self,
        _revision: &'a str,
        _plan_id: Option<&'a str>,
        _summary: &'a str,
    ) -> BoxFuture<'a, Result<(), PassError>> {
        Box::pin(async { Ok(()) })
    }
    fn request_metrics(&self) -> Option<dli_gitops::cloud::RequestMetrics> {
        None
    }
}

/// A clock that starts at `start` and runs at real speed.
fn clock_from(start: DateTime<Utc>) -> Clock {
    let origin = Instant::now();
    Arc::new(move || start + chrono::Duration::from_std(origin.elapsed()).unwrap())
}

async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_berlin_deny_window_stops_a_pass_in_flight_holds_syncs_and_break_glass_passes_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_text(
            dir.path(),
            "      - {kind: deny, schedule: \"0 3 * * *\", duration: 1h, timezone: Europe/Berlin}",
            "",
        ),
    );
    let config = Config::load(&path).unwrap();
    // Three seconds before 03:00 CEST on the spring-forward day (00:59:57 UTC). Read as UTC
    // the window would open at 03:00 UTC, read as a fixed UTC+1 at 02:00 UTC.
    let clock = clock_from(at(2026, 3, 29, 0, 59, 57));
    let (journal, _) = Journal::open(&dir.path().join("state"), JournalOptions::default()).unwrap();
    let controls =
        Arc::new(Controls::from_config(&config, Some(journal.clone()), clock.clone()).unwrap());
    let service = Arc::new(SlowService {
        passes: Mutex::new(Vec::new()),
        hold: Duration::from_secs(6),
        clock: clock.clone(),
    });
    let parts = parts(&config, service.clone(), controls.clone(), TOKEN);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, on_shutdown) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(serve(parts, listener, async move {
        let _ = on_shutdown.await;
    }));
    let http = reqwest::Client::new();

    // 1. The first pass starts before the window and applies; the window opens 3 s in, and
    //    the pass stops after the action in flight instead of running its 6 s.
    let first = wait_until("the first pass", || {
        service.passes.lock().unwrap().first().cloned()
    })
    .await;
    assert!(first.execute, "{first:?}");
    assert!(
        first.stopped,
        "the opening window stops the pass: {first:?}"
    );
    assert!(
        first.at >= at(2026, 3, 29, 1, 0, 0) && first.at < at(2026, 3, 29, 1, 0, 10),
        "stopped when 03:00 CEST (01:00 UTC) came: {first:?}"
    );

    // 2. Status shows the open window and when syncs resume.
    let target: Value = http
        .get(format!("{base}/api/v1/targets/dev"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let windows = &target["controls"]["windows"];
    assert_eq!(windows["blocked"]["kind"], "deny", "{target:#}");
    assert_eq!(windows["unblocks_at"], "2026-03-29T02:00:00Z", "{target:#}");
    assert_eq!(windows["open"][0]["closes_at"], "2026-03-29T02:00:00Z");
    assert!(
        target["operation"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("change window opened"),
        "{target:#}"
    );

    // 3. A manual sync inside the window is queued and waits: the pass only reports.
    let response = http
        .post(format!("{base}/api/v1/targets/dev/sync"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("waits"),
        "{body}"
    );
    let held = wait_until("the held pass", || {
        let passes = service.passes.lock().unwrap();
        (passes.len() >= 2).then(|| passes[1].clone())
    })
    .await;
    assert!(
        !held.execute,
        "inside the deny window nothing is applied: {held:?}"
    );

    // 4. Break-glass without a reason is refused; with one it runs once, journaled.
    let refused = http
        .post(format!("{base}/api/v1/targets/dev/sync"))
        .bearer_auth(TOKEN)
        .json(&json!({"override_window": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let unauthorized = http
        .post(format!("{base}/api/v1/targets/dev/sync"))
        .json(&json!({"override_window": true, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    let count_before = service.passes.lock().unwrap().len();
    let response = http
        .post(format!("{base}/api/v1/targets/dev/sync"))
        .bearer_auth(TOKEN)
        .json(&json!({"override_window": true, "reason": "hotfix for incident 7", "by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let forced = wait_until("the break-glass pass", || {
        let passes = service.passes.lock().unwrap();
        passes[count_before..]
            .iter()
            .find(|pass| pass.execute)
            .cloned()
    })
    .await;
    assert!(
        !forced.stopped,
        "break-glass passes the window for the whole pass"
    );

    // 5. Once: the next manual sync waits again.
    let count_before = service.passes.lock().unwrap().len();
    http.post(format!("{base}/api/v1/targets/dev/sync"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let again = wait_until("the next pass", || {
        let passes = service.passes.lock().unwrap();
        (passes.len() > count_before).then(|| passes[count_before].clone())
    })
    .await;
    assert!(!again.execute, "the override was used once: {again:?}");

    // 6. The journal holds who and why, and that the override was used.
    let records = journal
        .records(&RecordFilter {
            kinds: vec!["control".into()],
            ..RecordFilter::default()
        })
        .unwrap();
    let actions: Vec<Value> = records
        .iter()
        .filter_map(|record| match &record.body {
            RecordBody::Unknown(fields) => Some(Value::Object(fields.clone())),
            _ => None,
        })
        .collect();
    let requested = actions
        .iter()
        .find(|fields| fields["action"] == "window_override")
        .unwrap_or_else(|| panic!("{actions:?}"));
    assert_eq!(requested["by"], "api:alice");
    assert_eq!(requested["reason"], "hotfix for incident 7");
    assert!(
        requested["window"]
            .as_str()
            .unwrap()
            .contains("Europe/Berlin")
    );
    assert!(
        actions
            .iter()
            .any(|fields| fields["action"] == "window_override_used" && fields["by"] == "api:alice"),
        "{actions:?}"
    );

    let _ = shutdown.send(());
    tokio::time::timeout(Duration::from_secs(15), daemon)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();
}

/// The real binary: `run` builds the controls and the notifier from the config (embedded
/// emulator, an always-open deny window, a webhook sink), and the status says why it waits.
#[test]
fn the_daemon_binary_holds_a_target_in_a_deny_window_and_says_until_when() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir.path().join("jobs/environments")).unwrap();
    std::fs::write(
        dir.path().join("jobs/environments/dev.yaml"),
        "variables: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("hmac"), "k").unwrap();
    let config = format!(
        r#"state_dir: {dir}/state
listen: 127.0.0.1:{port}
sources:
  jobs:
    path: {dir}/jobs
targets:
  - name: dev
    source: jobs
    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}
    policy: {{auto_sync: true, self_heal: true, resync_interval: 1h}}
    windows:
      - {{kind: deny, schedule: "* * * * *", duration: 2h, timezone: Asia/Shanghai}}
notifications:
  - name: hook
    events: [sync_failed]
    webhook: {{url: "http://127.0.0.1:9/hook", secret_file: {dir}/hmac}}
"#,
        dir = dir.path().display()
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let answer = (|| -> Option<Value> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            use std::io::Write;
            write!(
                stream,
                "GET /api/v1/targets/dev HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).ok()?;
            let body = text.split_once("\r\n\r\n")?.1;
            let start = body.find('{')?;
            let end = body.rfind('}')?;
            serde_json::from_str(&body[start..=end]).ok()
        })();
        if let Some(status) = answer
            && status["operation"]["phase"] == "Succeeded"
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no finished pass; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        status["controls"]["windows"]["blocked"]["kind"], "deny",
        "{status:#}"
    );
    // A deny window that opens every minute never closes: no time syncs resume.
    assert!(
        status["controls"]["windows"]["unblocks_at"].is_null(),
        "{status:#}"
    );
    let message = status["operation"]["message"].as_str().unwrap();
    assert!(message.contains("waiting: deny window"), "{message}");
    assert!(message.contains("Asia/Shanghai"), "{message}");
    assert_eq!(status["operation"]["mode"], "report");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Notifications on."), "{text}");
    assert!(!text.contains("\"k\""), "the HMAC key is never logged");
}
