//! The server over a real loopback socket: health, readiness, webhooks (signed, unsigned,
//! foreign repository, ping, local repository), and the status client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use super::*;
use crate::daemon::status::{PolicyView, TargetStatus};

const SECRET: &str = "webhook-secret";

struct Harness {
    address: SocketAddr,
    state: Arc<ServerState>,
    fetch_now: Arc<Notify>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    http: reqwest::Client,
}

impl Harness {
    async fn start(webhook_url: &str) -> Harness {
        let board = Arc::new(StatusBoard::default());
        board.add_target(TargetStatus::new(
            "dev",
            "jobs",
            "dev",
            PolicyView {
                auto_sync: true,
                self_heal: false,
                prune: false,
                resync_interval_seconds: 300,
                suspended: false,
                promote_from: None,
            },
        ));
        let fetch_now = Arc::new(Notify::new());
        let mut triggers = BTreeMap::new();
        triggers.insert("dev".to_string(), Arc::new(Trigger::new()));
        let state = Arc::new(ServerState {
            board,
            metrics: Arc::new(DaemonMetrics::new()),
            triggers,
            api_token: Some(b"token".to_vec()),
            webhooks: vec![WebhookRoute {
                source: "jobs".into(),
                url: webhook_url.into(),
                git_ref: "refs/heads/main".into(),
                secret: SECRET.as_bytes().to_vec(),
                fetch_now: fetch_now.clone(),
            }],
            suspended: false,
            promotion: None,
            controls: Arc::new(crate::daemon::control::Controls::new(
                crate::daemon::control::system_clock(),
                None,
                crate::config::Suspend::Off,
            )),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, receiver) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = receiver.await;
        }));
        Harness {
            address,
            state,
            fetch_now,
            shutdown: Some(shutdown),
            task,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn hook(&self, headers: &[(&str, String)], body: &str) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .post(self.url("/api/v1/hooks/git"))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn fetch_was_requested(&self) -> bool {
        tokio::time::timeout(Duration::from_millis(200), self.fetch_now.notified())
            .await
            .is_ok()
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the server drained")
            .unwrap()
            .unwrap();
    }
}

fn github_signature(body: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push_body(url: &str, git_ref: &str) -> String {
    serde_json::json!({
        "ref": git_ref,
        "after": "3f786850e387550fdab836ed7e6dc881de23001b",
        "repository": {"clone_url": url},
    })
    .to_string()
}

#[tokio::test]
async fn health_and_readiness_follow_the_first_observation() {
    let harness = Harness::start("https://git.example.com/data/jobs.git").await;
    let response = harness
        .http
        .get(harness.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = harness
        .http
        .get(harness.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["waiting_for"][0], "dev");
    harness
        .state
        .board
        .update_target("dev", |status| status.ready = true);
    let response = harness
        .http
        .get(harness.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = harness
        .http
        .get(harness.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = harness
        .http
        .get(harness.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_signed_push_for_the_source_fetches_at_once_and_an_unsigned_one_is_rejected() {
    let harness = Harness::start("https://git.example.com/data/jobs.git").await;
    let body = push_body("https://git.example.com/data/jobs.git", "refs/heads/main");

    let (code, answer) = harness
        .hook(&[("x-github-event", "push".into())], &body)
        .await;
    assert_eq!(code, 401, "{answer}");
    assert!(!harness.fetch_was_requested().await);

    let (code, _) = harness
        .hook(
            &[
                ("x-github-event", "push".into()),
                (
                    "x-hub-signature-256",
                    github_signature(&body, "not-the-secret"),
                ),
            ],
            &body,
        )
        .await;
    assert_eq!(code, 401);
    assert!(!harness.fetch_was_requested().await);

    let (code, answer) = harness
        .hook(
            &[
                ("x-github-event", "push".into()),
                ("x-hub-signature-256", github_signature(&body, SECRET)),
            ],
            &body,
        )
        .await;
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["sources"][0], "jobs");
    assert!(harness.fetch_was_requested().await);

    // GitLab: the token header.
    let (code, _) = harness
        .hook(
            &[
                ("x-gitlab-event", "Push Hook".into()),
                ("x-gitlab-token", SECRET.into()),
            ],
            &body,
        )
        .await;
    assert_eq!(code, 202);
    assert!(harness.fetch_was_requested().await);

    let metrics = harness.state.metrics.render();
    assert!(
        metrics.contains(
            "dli_gitops_webhook_requests_total{provider=\"github\",result=\"rejected\"} 2"
        )
    );
    assert!(
        metrics.contains(
            "dli_gitops_webhook_requests_total{provider=\"github\",result=\"accepted\"} 1"
        )
    );
    assert!(
        metrics.contains(
            "dli_gitops_webhook_requests_total{provider=\"gitlab\",result=\"accepted\"} 1"
        )
    );
    harness.stop().await;
}

#[tokio::test]
async fn verified_deliveries_for_other_branches_repositories_or_events_are_ignored() {
    let harness = Harness::start("https://git.example.com/data/jobs.git").await;
    for body in [
        push_body(
            "https://git.example.com/data/jobs.git",
            "refs/heads/feature",
        ),
        push_body("https://git.example.com/data/other.git", "refs/heads/main"),
    ] {
        let (code, answer) = harness
            .hook(
                &[
                    ("x-github-event", "push".into()),
                    ("x-hub-signature-256", github_signature(&body, SECRET)),
                ],
                &body,
            )
            .await;
        assert_eq!(code, 200, "{answer}");
        assert_eq!(answer["accepted"], false);
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("no configured source follows")
        );
        assert!(!harness.fetch_was_requested().await);
    }
    let ping = r#"{"zen":"Keep it logically awesome."}"#;
    let (code, _) = harness
        .hook(
            &[
                ("x-github-event", "ping".into()),
                ("x-hub-signature-256", github_signature(ping, SECRET)),
            ],
            ping,
        )
        .await;
    assert_eq!(code, 200);
    let garbage = "{not json";
    let (code, _) = harness
        .hook(
            &[
                ("x-github-event", "push".into()),
                ("x-hub-signature-256", github_signature(garbage, SECRET)),
            ],
            garbage,
        )
        .await;
    assert_eq!(
        code, 400,
        "a verified but malformed payload is a bad request"
    );
    let (code, _) = harness.hook(&[], &push_body("x", "refs/heads/main")).await;
    assert_eq!(code, 400, "no provider header");
    harness.stop().await;
}

#[tokio::test]
async fn a_local_repository_is_matched_by_its_exact_path() {
    let harness = Harness::start("/srv/git/jobs.git").await;
    let body = push_body("file:///srv/git/jobs", "refs/heads/main");
    let (code, answer) = harness
        .hook(
            &[
                ("x-gitea-event", "push".into()),
                (
                    "x-gitea-signature",
                    github_signature(&body, SECRET)
                        .trim_start_matches("sha256=")
                        .to_string(),
                ),
            ],
            &body,
        )
        .await;
    assert_eq!(code, 202, "{answer}");
    assert!(harness.fetch_was_requested().await);
    let body = push_body("/srv/git/other", "refs/heads/main");
    let (code, _) = harness
        .hook(
            &[
                ("x-github-event", "push".into()),
                ("x-hub-signature-256", github_signature(&body, SECRET)),
            ],
            &body,
        )
        .await;
    assert_eq!(code, 200);
    harness.stop().await;
}

#[tokio::test]
async fn the_status_client_prints_what_the_api_serves() {
    let harness = Harness::start("https://git.example.com/data/jobs.git").await;
    harness.state.board.update_target("dev", |status| {
        status.ready = true;
        status.sync.revision = Some("0123456789abcdef0123456789".into());
    });
    let options = StatusOptions {
        server: format!("http://{}", harness.address),
        target: None,
        json: false,
        timeout: Duration::from_secs(5),
    };
    let mut out = Vec::new();
    status_command(&options, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("TARGET dev  sync=Unknown  health=Unknown  revision=0123456789abcdef012"),
        "{text}"
    );
    assert!(text.contains("(no jobs)"));

    let mut out = Vec::new();
    status_command(
        &StatusOptions {
            json: true,
            target: Some("dev".into()),
            ..options.clone()
        },
        &mut out,
    )
    .await
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed["name"], "dev", "one target asked for: its object");
    let mut out = Vec::new();
    status_command(
        &StatusOptions {
            json: true,
            ..options.clone()
        },
        &mut out,
    )
    .await
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed[0]["name"], "dev", "every target: the list");

    let error = status_command(
        &StatusOptions {
            target: Some("prod".into()),
            ..options.clone()
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("404"), "{error}");
    assert!(
        error.to_string().contains("no target named `prod`"),
        "{error}"
    );
    harness.stop().await;

    let error = status_command(&options, &mut Vec::new()).await.unwrap_err();
    assert!(
        error.to_string().contains("is `dli-gitops run` running"),
        "{error}"
    );
}
