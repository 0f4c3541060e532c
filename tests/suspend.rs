//! Suspend: `suspend: {until}` in the config, and `suspend`/`resume` at run time through the
//! API (and the CLI, the real binary, which goes through the API). The daemon loop and HTTP
//! server run in-process over a fake service that records whether each pass may change things.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use dli_gitops::config::{Config, Suspend};
use dli_gitops::daemon::{PassError, PassReport, PassRequest, TargetReconciler};
use dli_gitops::journal::{RecordBody, RecordFilter};
use dli_gitops::status::control::{Controls, system_clock};

use support::BINARY;
use support::inproc::{Running, open_journal, parts, wait_for};

const TOKEN: &str = "suspend-test-token";

#[derive(Default)]
struct Service {
    /// `execute` of every pass.
    passes: Mutex<Vec<bool>>,
}

impl Service {
    fn passes(&self) -> Vec<bool> {
        self.passes.lock().unwrap().clone()
    }
}

impl TargetReconciler for Service {
    fn pass<'a>(
        &'a self,
        request: PassRequest<'a>,
    ) -> BoxFuture<'a, Result<PassReport, PassError>> {
        Box::pin(async move {
            self.passes.lock().unwrap().push(request.execute);
            Ok(PassReport {
                executed: request.execute,
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

fn write_config(dir: &Path, port: u16, target_suspend: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let text = format!(
        r#"state_dir: {dir}/state
listen: 127.0.0.1:{port}
api_token_env: SUSPEND_TEST_TOKEN
sources:
  jobs:
    path: {dir}/jobs
targets:
  - name: dev
    source: jobs
    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}
    policy: {{auto_sync: false, self_heal: false, resync_interval: 1h}}
{target_suspend}
"#,
        dir = dir.display(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(config: &Config, listener: TcpListener, service: Arc<Service>) -> Running {
    let journal = open_journal(config).await;
    let controls =
        Arc::new(Controls::from_config(config, Some(journal.clone()), system_clock()).unwrap());
    let parts = parts(config, service, controls, TOKEN);
    Running::serve(parts, listener, journal)
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn status(&self) -> Value {
        reqwest::get(format!("{}/api/v1/targets/dev", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Runs the CLI; returns (exit success, stdout, stderr).
fn cli(args: &[&str], config: &Path) -> (bool, String, String) {
    let output = Command::new(BINARY)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SUSPEND_TEST_TOKEN", TOKEN)
        .env("USER", "carol")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_through_the_api_and_the_cli_are_journaled_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = write_config(dir.path(), port, "");
    let config = Config::load(&path).unwrap();
    let service = Arc::new(Service::default());
    let daemon = start(&config, listener, service.clone()).await;
    wait_for("the first pass", || service.passes().len() == 1).await;

    // A manual sync applies.
    let (code, _) = daemon.post("/api/v1/targets/dev/sync", json!({})).await;
    assert_eq!(code, 202);
    wait_for("the manual pass", || service.passes() == [false, true]).await;

    // Suspend until a time: status shows it, a sync is refused, and the journal says who.
    let (code, body) = daemon
        .post(
            "/api/v1/targets/dev/suspend",
            json!({"until": "2099-01-01T00:00:00Z", "reason": "freeze for the audit", "by": "bob"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let status = daemon.status().await;
    assert_eq!(status["policy"]["suspended"], true, "{status:#}");
    assert_eq!(
        status["controls"]["suspended_until"],
        "2099-01-01T00:00:00Z"
    );
    assert_eq!(status["controls"]["suspended_by"][0], "api:bob");
    let (code, body) = daemon.post("/api/v1/targets/dev/sync", json!({})).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("suspended"));
    let page = reqwest::get(format!("{}/", daemon.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("suspended by api:bob until 2099-01-01"),
        "{page}"
    );
    // Bad input is refused, with what to write instead.
    let (code, body) = daemon
        .post("/api/v1/targets/dev/suspend", json!({"until": "tomorrow"}))
        .await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("RFC 3339"));
    let (code, _) = daemon
        .post(
            "/api/v1/targets/nope/suspend",
            json!({"until": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(code, 404);
    let unauthorized = reqwest::Client::new()
        .post(format!("{}/api/v1/targets/dev/resume", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);

    // A restart keeps the run-time suspend (read back from the journal).
    daemon.stop().await;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let service = Arc::new(Service::default());
    let daemon = start(&config, listener, service.clone()).await;
    wait_for("the first pass after the restart", || {
        !service.passes().is_empty()
    })
    .await;
    let status = daemon.status().await;
    assert_eq!(status["controls"]["suspended"], true, "{status:#}");
    assert_eq!(
        status["controls"]["runtime_suspend"]["reason"],
        "freeze for the audit"
    );

    // The CLI resumes through the API; then a sync applies again.
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || cli(&["resume", "dev", "--reason", "audit done"], &path)
    })
    .await
    .unwrap();
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("\"suspended\": false"), "{stdout}");
    let (code, _) = daemon.post("/api/v1/targets/dev/sync", json!({})).await;
    assert_eq!(code, 202);
    wait_for("a pass that applies", || service.passes().contains(&true)).await;
    // And suspends again, until resumed.
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || cli(&["suspend", "dev"], &path)
    })
    .await
    .unwrap();
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(daemon.status().await["controls"]["suspended"], true);
    // Break-glass from the CLI needs a reason, and does not pass a suspend.
    let (no_reason, with_reason) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            (
                cli(&["sync", "dev", "--override-window"], &path),
                cli(
                    &["sync", "dev", "--override-window", "--reason", "hotfix"],
                    &path,
                ),
            )
        }
    })
    .await
    .unwrap();
    assert!(
        !no_reason.0 && no_reason.2.contains("--reason"),
        "{no_reason:?}"
    );
    assert!(
        !with_reason.0 && with_reason.2.contains("suspended"),
        "{with_reason:?}"
    );

    let records = daemon
        .journal
        .records(&RecordFilter {
            kinds: vec!["control".into()],
            ..RecordFilter::default()
        })
        .unwrap();
    let actions: Vec<(String, String)> = records
        .iter()
        .filter_map(|record| match &record.body {
            RecordBody::Unknown(fields) => Some((
                fields["action"].as_str().unwrap_or("").to_string(),
                fields["by"].as_str().unwrap_or("").to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("suspend".to_string(), "api:bob".to_string()),
            ("resume".to_string(), "api:cli.carol".to_string()),
            ("suspend".to_string(), "api:cli.carol".to_string()),
        ]
    );
    daemon.stop().await;

    // `journal show` and `journal verify` know these records.
    let state_dir = config.state_dir.clone();
    let (show, verify) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let output = Command::new(BINARY)
                .args(args)
                .arg("--state-dir")
                .arg(&state_dir)
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8_lossy(&output.stdout).to_string()
        };
        (run(&["journal", "show"]), run(&["journal", "verify"]))
    })
    .await
    .unwrap();
    assert!(show.contains("suspend by api:bob"), "{show}");
    assert!(show.contains("freeze for the audit"), "{show}");
    assert!(!verify.contains("unknown to this build"), "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_suspend_until_a_time_ends_on_its_own_and_resume_cannot_lift_it() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let until = chrono::Utc::now() + chrono::Duration::seconds(3);
    let path = write_config(
        dir.path(),
        port,
        &format!(
            "    suspend: {{until: \"{}\"}}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    );
    let config = Config::load(&path).unwrap();
    assert!(matches!(config.targets[0].suspend, Suspend::Until(_)));
    let mut auto = config.clone();
    auto.targets[0].policy.auto_sync = true;
    let service = Arc::new(Service::default());
    let daemon = start(&auto, listener, service.clone()).await;
    wait_for("the first pass", || !service.passes().is_empty()).await;
    assert!(!service.passes()[0], "suspended by the config");
    let (code, body) = daemon.post("/api/v1/targets/dev/resume", json!({})).await;
    assert_eq!(code, 200);
    assert_eq!(body["suspended"], true, "{body}");
    assert!(body["message"].as_str().unwrap().contains("config"));
    // The loop wakes when the suspend ends and applies.
    wait_for("the pass after the suspend ended", || {
        service.passes().contains(&true)
    })
    .await;
    assert_eq!(daemon.status().await["controls"]["suspended"], false);
    daemon.stop().await;

    // A bad time in the config is refused where it is.
    let bad = write_config(dir.path(), port, "    suspend: {until: next-week}");
    let error = Config::load(&bad).expect_err("refused");
    let text = format!("{error:#}");
    assert!(text.contains("RFC 3339"), "{text}");
}
