//! Notifications end to end: the daemon loop and HTTP server in-process over a fake service
//! whose passes fail or succeed on demand; a local receiver on a loopback port 0 for the
//! webhook and the Slack sink; the emulator (the real binary, its own process) for SMN. Each
//! sink must get exactly one message per transition across daemon restarts on one journal.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::net::TcpListener;

use dli_gitops::config::Config;
use dli_gitops::daemon::{ActionOutcome, PassError, PassReport, PassRequest, TargetReconciler};
use dli_gitops::journal::{Journal, JournalOptions, RecordBody, RecordFilter};
use dli_gitops::model::{DesiredJobs, JobKind, ObservedJobs};
use dli_gitops::notify::{Notifier, RetryPolicy, sign_body};
use dli_gitops::plan::{ActionClass, JournalView, PlanPolicy};
use dli_gitops::status::ErrorInfo;
use dli_gitops::status::control::{Controls, system_clock};

use support::inproc::{Running, open_journal, parts, wait_for};
use support::{ACCESS_KEY, PROJECT, SECRET_KEY};

const HMAC_KEY: &str = "notify-hmac-key-never-in-a-message";
const TOKEN: &str = "notify-test-token";

// ---- the receiver --------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Receiver {
    received: Mutex<Vec<Received>>,
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
}

impl Receiver {
    fn on(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn start_receiver(receiver: Arc<Receiver>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let receiver = receiver.clone();
            async move {
                if receiver
                    .fail_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                receiver.received.lock().unwrap().push(Received {
                    path: uri.path().to_string(),
                    headers,
                    body,
                });
                StatusCode::OK
            }
        },
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{address}")
}

// ---- the emulator --------------------------------------------------------------------------

struct Emulator {
    _process: support::daemon::Process,
    url: String,
}

fn start_emulator(dir: &Path) -> Emulator {
    let (process, endpoints) = support::emulator::start_emulator(dir, "{}\n");
    Emulator {
        _process: process,
        url: endpoints["dli"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .to_string(),
    }
}

// ---- the fake service ------------------------------------------------------------------------

/// Fails its executing passes while `failing` is set; reports `resolved` on its first pass.
struct Service {
    failing: Mutex<bool>,
    resolved: Mutex<Vec<String>>,
    passes: AtomicUsize,
}

impl Service {
    fn new(failing: bool, resolved: &[&str]) -> Arc<Service> {
        Arc::new(Service {
            failing: Mutex::new(failing),
            resolved: Mutex::new(resolved.iter().map(|s| s.to_string()).collect()),
            passes: AtomicUsize::new(0),
        })
    }
}

fn empty_plan() -> dli_gitops::plan::Plan {
    dli_gitops::plan::plan(
        &DesiredJobs::default(),
        &ObservedJobs::default(),
        &JournalView::default(),
        &PlanPolicy::default(),
    )
}

impl TargetReconciler for Service {
    fn pass<'a>(
        &'a self,
        request: PassRequest<'a>,
    ) -> BoxFuture<'a, Result<PassReport, PassError>> {
        Box::pin(async move {
            let failing = *self.failing.lock().unwrap();
            let outcomes = if failing && request.execute {
                vec![ActionOutcome {
                    kind: JobKind::FlinkSql,
                    name: "clicks".into(),
                    class: ActionClass::Upgrade,
                    error: Some(ErrorInfo {
                        code: Some("DLI.0001".into()),
                        message: "queue q is full".into(),
                        time: None,
                    }),
                }]
            } else {
                Vec::new()
            };
            let report = PassReport {
                plan: Some(empty_plan()),
                remaining: Some(empty_plan()),
                executed: request.execute,
                outcomes,
                resolved: std::mem::take(&mut *self.resolved.lock().unwrap()),
                ..PassReport::default()
            };
            self.passes.fetch_add(1, Ordering::SeqCst);
            Ok(report)
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

// ---- the daemon ------------------------------------------------------------------------------

fn write_config(dir: &Path, receiver: &str, emulator: &str, extra_sink: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    std::fs::write(dir.join("hmac-key"), format!("{HMAC_KEY}\n")).unwrap();
    std::fs::write(dir.join("ak"), ACCESS_KEY).unwrap();
    std::fs::write(dir.join("sk"), SECRET_KEY).unwrap();
    let text = format!(
        r#"state_dir: {dir}/state
listen: 127.0.0.1:0
sources:
  jobs:
    path: {dir}/jobs
targets:
  - name: dev
    source: jobs
    region: cn-north-4
    project_id: {PROJECT}
    endpoints: {{dli: {emulator}}}
    credentials: {{access_key_file: {dir}/ak, secret_key_file: {dir}/sk}}
    staging: file://{dir}/staging/
    backups: file://{dir}/backups/
    policy: {{auto_sync: true, self_heal: true, resync_interval: 1h}}
notifications:
  - name: hook
    events: [sync_failed, sync_recovered, started_after_crash]
    webhook: {{url: "{receiver}/hook", secret_file: {dir}/hmac-key}}
  - name: chat
    events: [sync_failed, sync_recovered]
    slack: {{url: "{receiver}/slack"}}
  - name: pager
    events: [sync_failed, sync_recovered]
    smn:
      target: dev
      topic_urn: "urn:smn:cn-north-4:{PROJECT}:dli-gitops"
      endpoint: {emulator}
{extra_sink}"#,
        dir = dir.display(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start_daemon(config: &Config, service: Arc<Service>, retry: RetryPolicy) -> Running {
    // The previous run's delivery tasks may hold the journal a moment longer.
    let journal = open_journal(config).await;
    let controls =
        Arc::new(Controls::from_config(config, Some(journal.clone()), system_clock()).unwrap());
    controls.set_notifier(Notifier::from_config(config, Some(journal.clone()), retry).unwrap());
    let parts = parts(config, service, controls, TOKEN);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Running::serve(parts, listener, journal)
}

impl Running {
    async fn sync(&self) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/targets/dev/sync", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
}

async fn passes_reach(service: &Service, count: usize) {
    wait_for(&format!("{count} passes"), || {
        service.passes.load(Ordering::SeqCst) >= count
    })
    .await;
}

/// The messages the emulator's SMN recorded (a blocking read, for `wait_for` checks).
fn smn_messages(emulator: &str) -> Vec<Value> {
    use std::io::{Read, Write};
    let address = emulator.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /_emulator/v1/smn/messages HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| {
        // Chunked: the JSON is between the first chunk size line and the terminator.
        let start = body.find('{').unwrap_or(0);
        let end = body.rfind('}').map_or(body.len(), |end| end + 1);
        serde_json::from_str(&body[start..end]).unwrap()
    });
    body["messages"].as_array().cloned().unwrap_or_default()
}

fn events(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["event"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_gets_one_message_per_transition_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Receiver::default());
    let receiver_url = start_receiver(receiver.clone()).await;
    let emulator = start_emulator(dir.path());
    let path = write_config(dir.path(), &receiver_url, &emulator.url, "");
    let config = Config::load(&path).unwrap();
    let fast = RetryPolicy {
        attempts: 5,
        first_delay: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
    };
    let emulator_url = emulator.url.clone();
    let smn = move || smn_messages(&emulator_url);

    // Run 1: the target fails, three passes in a row: one sync_failed per sink.
    let service = Service::new(true, &[]);
    let daemon = start_daemon(&config, service.clone(), fast).await;
    passes_reach(&service, 1).await;
    daemon.sync().await;
    passes_reach(&service, 2).await;
    daemon.sync().await;
    passes_reach(&service, 3).await;
    wait_for("the failure on every sink", || {
        receiver.on("/hook").len() == 1 && receiver.on("/slack").len() == 1 && smn().len() == 1
    })
    .await;
    daemon.stop().await;

    // Run 2, after a crash: the first pass resolves an open intent, still failing: no repeat
    // of sync_failed, one started_after_crash (webhook only). Then it recovers: one each.
    let service = Service::new(
        true,
        &["upgrade of clicks (found job 12 (job_cancel_success))"],
    );
    let daemon = start_daemon(&config, service.clone(), fast).await;
    passes_reach(&service, 1).await;
    daemon.sync().await;
    passes_reach(&service, 2).await;
    wait_for("the crash notice", || receiver.on("/hook").len() == 2).await;
    *service.failing.lock().unwrap() = false;
    daemon.sync().await;
    passes_reach(&service, 3).await;
    wait_for("the recovery on every sink", || {
        receiver.on("/hook").len() == 3 && receiver.on("/slack").len() == 2 && smn().len() == 2
    })
    .await;
    daemon.stop().await;

    // Run 3: still fine, nothing new.
    let service = Service::new(false, &[]);
    let daemon = start_daemon(&config, service.clone(), fast).await;
    passes_reach(&service, 1).await;
    daemon.sync().await;
    passes_reach(&service, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let journal = daemon.journal.clone();
    let sent = journal
        .records(&RecordFilter {
            kinds: vec!["notification_sent".into()],
            ..RecordFilter::default()
        })
        .unwrap();
    daemon.stop().await;

    let hook = receiver.on("/hook");
    assert_eq!(
        events(&hook),
        ["sync_failed", "started_after_crash", "sync_recovered"]
    );
    for delivery in &hook {
        let signature = delivery.headers["x-dli-gitops-signature"].to_str().unwrap();
        assert_eq!(signature, sign_body(HMAC_KEY.as_bytes(), &delivery.body));
        let text = String::from_utf8_lossy(&delivery.body);
        assert!(
            !text.contains(HMAC_KEY) && !text.contains(SECRET_KEY),
            "{text}"
        );
    }
    let first: Value = serde_json::from_slice(&hook[0].body).unwrap();
    assert_eq!(first["target"], "dev");
    assert!(
        first["summary"]
            .as_str()
            .unwrap()
            .contains("queue q is full"),
        "{first}"
    );
    let slack: Vec<String> = receiver
        .on("/slack")
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(slack.len(), 2);
    assert!(
        slack[0].contains("sync failed") && slack[1].contains("recovered"),
        "{slack:?}"
    );
    let published = smn();
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(
        published[0]["topic_urn"],
        format!("urn:smn:cn-north-4:{PROJECT}:dli-gitops")
    );
    assert!(
        published[0]["subject"]
            .as_str()
            .unwrap()
            .contains("sync_failed")
    );
    assert!(
        published[1]["subject"]
            .as_str()
            .unwrap()
            .contains("sync_recovered")
    );
    assert!(
        !published[0]["message"]
            .as_str()
            .unwrap()
            .contains(SECRET_KEY)
    );
    // Every delivery was journaled as sent.
    let ok = sent
        .iter()
        .filter(|record| match &record.body {
            RecordBody::Unknown(fields) => fields["ok"] == true,
            _ => false,
        })
        .count();
    assert_eq!(ok, 3 + 2 + 2, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_is_retried_then_dropped_and_never_blocks_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Receiver::default());
    // The first two attempts answer 500: the third lands.
    receiver.fail_first.store(2, Ordering::SeqCst);
    let receiver_url = start_receiver(receiver.clone()).await;
    // A sink nobody listens on: every attempt fails, then the message is dropped.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let emulator = start_emulator(dir.path());
    let extra = format!(
        "  - name: gone\n    events: [sync_failed]\n    webhook: {{url: \"http://{closed}/hook\", secret_file: {}/hmac-key}}\n",
        dir.path().display()
    );
    let path = write_config(dir.path(), &receiver_url, &emulator.url, &extra);
    let config = Config::load(&path).unwrap();
    let retry = RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(300),
        timeout: Duration::from_secs(2),
    };
    let service = Service::new(true, &[]);
    let daemon = start_daemon(&config, service.clone(), retry).await;
    passes_reach(&service, 1).await;
    // Passes go on while deliveries are retried.
    daemon.sync().await;
    passes_reach(&service, 2).await;
    wait_for("the retried delivery", || receiver.on("/hook").len() == 1).await;
    let journal = daemon.journal.clone();
    wait_for("the dropped delivery journaled", || {
        journal
            .records(&RecordFilter {
                kinds: vec!["notification_sent".into()],
                ..RecordFilter::default()
            })
            .unwrap()
            .iter()
            .any(|record| matches!(&record.body, RecordBody::Unknown(fields) if fields["sink"] == "gone" && fields["ok"] == false))
    })
    .await;
    daemon.stop().await;
    assert_eq!(events(&receiver.on("/hook")), ["sync_failed"]);
}

#[test]
fn unknown_events_and_non_http_sinks_are_refused_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        "  - name: bad\n    events: [sync_failed, sync_exploded]\n    slack: {url: \"ftp://chat.example.com/x\"}\n",
    );
    let error = Config::load(&path).expect_err("refused");
    let problems = match &error {
        dli_gitops::config::ConfigError::Invalid { problems, .. } => problems.clone(),
        other => panic!("{other:?}"),
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.yaml_path.as_str()).collect();
    assert!(
        paths.contains(&"notifications[3].events[1]"),
        "{problems:?}"
    );
    assert!(
        paths.contains(&"notifications[3].slack.url"),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.message.contains("sync_exploded")),
        "{problems:?}"
    );
}

fn sink_config(dir: &Path, receiver: &str, events: &str) -> Config {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    std::fs::write(dir.join("hmac-key"), HMAC_KEY).unwrap();
    let text = format!(
        r#"state_dir: {dir}/state
listen: 127.0.0.1:0
sources:
  jobs:
    path: {dir}/jobs
targets:
  - name: dev
    source: jobs
    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}
    policy: {{auto_sync: false, self_heal: false, resync_interval: 1h}}
notifications:
  - name: hook
    events: [{events}]
    policy_off_after: 24h
    webhook: {{url: "{receiver}/hook", secret_file: {dir}/hmac-key}}
"#,
        dir = dir.display(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_and_automatic_rollback_from_the_journal_are_announced_once() {
    use dli_gitops::journal::{DriftDetected, Effects, Intent, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Receiver::default());
    let url = start_receiver(receiver.clone()).await;
    let config = sink_config(
        dir.path(),
        &url,
        "drift_detected, drift_corrected, auto_rollback",
    );
    let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    let quiet = || dli_gitops::notify::PassSignals::default();
    journal
        .append(
            "dev",
            RecordBody::DriftDetected(DriftDetected {
                job: "clicks".into(),
                fields: vec!["cu_number".into()],
                mode: "report".into(),
                ..DriftDetected::default()
            }),
        )
        .unwrap();
    for _ in 0..3 {
        notifier
            .after_pass("dev", quiet(), chrono::Utc::now())
            .await;
    }
    wait_for("drift_detected", || receiver.on("/hook").len() == 1).await;
    // The job's next successful action clears the mark; an automatic rollback is an action.
    let action = |id: &str, action: &str| {
        (
            RecordBody::Intent(Intent {
                action_id: id.into(),
                job: "clicks".into(),
                action: action.into(),
                plan_id: None,
                detail: Value::Null,
                extra: Default::default(),
            }),
            RecordBody::Outcome(Outcome {
                action_id: id.into(),
                job: "clicks".into(),
                ok: true,
                error: None,
                // A successful action that put the git definition back clears the mark.
                effects: Effects {
                    spec_digest: Some("digest-2".into()),
                    ..Effects::default()
                },
                plan_id: None,
                extra: Default::default(),
            }),
        )
    };
    let (intent, outcome) = action("a-1", "auto_rollback");
    journal.append("dev", intent).unwrap();
    journal.append("dev", outcome).unwrap();
    drop(notifier);
    // A restart: nothing is repeated, the correction and the rollback go out once.
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        notifier
            .after_pass("dev", quiet(), chrono::Utc::now())
            .await;
    }
    wait_for("the correction and the rollback", || {
        receiver.on("/hook").len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = events(&receiver.on("/hook"));
    seen[1..].sort();
    assert_eq!(seen, ["drift_detected", "auto_rollback", "drift_corrected"]);
    let first: Value = serde_json::from_slice(&receiver.on("/hook")[0].body).unwrap();
    assert_eq!(first["details"]["fields"][0], "cu_number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_sync_left_off_is_announced_once_after_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Receiver::default());
    let url = start_receiver(receiver.clone()).await;
    let config = sink_config(dir.path(), &url, "auto_sync_off, self_heal_off");
    let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
    let off = || dli_gitops::notify::PassSignals {
        auto_sync_off: true,
        ..dli_gitops::notify::PassSignals::default()
    };
    let start = chrono::Utc::now();
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    notifier.after_pass("dev", off(), start).await;
    notifier
        .after_pass("dev", off(), start + chrono::Duration::hours(23))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.on("/hook").is_empty(), "not before 24h");
    drop(notifier);
    // The off-since time survives a restart.
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    for hours in [25, 26, 30] {
        notifier
            .after_pass("dev", off(), start + chrono::Duration::hours(hours))
            .await;
    }
    wait_for("auto_sync_off", || receiver.on("/hook").len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&receiver.on("/hook")), ["auto_sync_off"]);
    let body: Value = serde_json::from_slice(&receiver.on("/hook")[0].body).unwrap();
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("automatic sync has been off since")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_degraded_and_recovered_once_each_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Receiver::default());
    let url = start_receiver(receiver.clone()).await;
    let config = sink_config(dir.path(), &url, "health_degraded, health_recovered");
    let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
    let health = |degraded: Option<&str>| dli_gitops::notify::PassSignals {
        health_known: true,
        degraded: degraded.map(str::to_string),
        ..dli_gitops::notify::PassSignals::default()
    };
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    // Healthy from the start: nothing to say.
    notifier
        .after_pass("dev", health(None), chrono::Utc::now())
        .await;
    for _ in 0..3 {
        notifier
            .after_pass(
                "dev",
                health(Some("clicks: job_running_exception")),
                chrono::Utc::now(),
            )
            .await;
    }
    wait_for("health_degraded", || receiver.on("/hook").len() == 1).await;
    drop(notifier);
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    notifier
        .after_pass(
            "dev",
            health(Some("clicks: job_running_exception")),
            chrono::Utc::now(),
        )
        .await;
    notifier
        .after_pass("dev", health(None), chrono::Utc::now())
        .await;
    notifier
        .after_pass("dev", health(None), chrono::Utc::now())
        .await;
    wait_for("health_recovered", || receiver.on("/hook").len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events(&receiver.on("/hook")),
        ["health_degraded", "health_recovered"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_done_held_and_refused_are_announced_once_each() {
    use dli_gitops::promotion::PromotionEvent;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Receiver::default());
    let url = start_receiver(receiver.clone()).await;
    let config = sink_config(
        dir.path(),
        &url,
        "promotion_done, promotion_held, promotion_refused",
    );
    let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
    let promoted = PromotionEvent::Promoted {
        to: "dev".into(),
        from: "staging".into(),
        revision: "3f2a9c1b7d".into(),
        by: "auto".into(),
        rule: "auto after 10m healthy".into(),
        seq: 41,
    };
    let held = PromotionEvent::MarkedFailed {
        to: "dev".into(),
        from: "staging".into(),
        revision: "9e8d7c6b5a".into(),
        reason: "Degraded upstream".into(),
        seq: 42,
    };
    let refused = PromotionEvent::Refused {
        to: "dev".into(),
        reason: "a deny window is open".into(),
    };
    // A ready candidate held for a person: the gate says so on every run, the sinks hear it once.
    let waiting = PromotionEvent::Held {
        to: "dev".into(),
        from: "staging".into(),
        revision: "5b4a3c2d1e".into(),
        kind: "manual",
        reason: "ready; waiting for a manual promotion (promotion.auto is off)".into(),
    };
    let runtime = tokio::runtime::Handle::current();
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    notifier.promotion_event(&runtime, &promoted);
    wait_for("promotion_done", || receiver.on("/hook").len() == 1).await;
    notifier.promotion_event(&runtime, &held);
    wait_for("promotion_held", || receiver.on("/hook").len() == 2).await;
    notifier.promotion_event(&runtime, &refused);
    wait_for("promotion_refused", || receiver.on("/hook").len() == 3).await;
    notifier.promotion_event(&runtime, &waiting);
    wait_for("promotion_held (waiting)", || {
        receiver.on("/hook").len() == 4
    })
    .await;
    notifier.promotion_event(&runtime, &waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.on("/hook").len(),
        4,
        "held for a person is announced once"
    );
    // The same journaled promotions seen again (after a restart) are not announced again.
    drop(notifier);
    let notifier = Notifier::from_config(&config, Some(journal.clone()), fast())
        .unwrap()
        .unwrap();
    notifier.promotion_event(&runtime, &promoted);
    notifier.promotion_event(&runtime, &held);
    notifier.promotion_event(&runtime, &waiting);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events(&receiver.on("/hook")),
        [
            "promotion_done",
            "promotion_held",
            "promotion_refused",
            "promotion_held"
        ]
    );
    let done: Value = serde_json::from_slice(&receiver.on("/hook")[0].body).unwrap();
    assert_eq!(done["details"]["revision"], "3f2a9c1b7d");
}
