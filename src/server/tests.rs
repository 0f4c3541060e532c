//! The server over a real loopback socket: health, readiness, webhooks (signed, unsigned,
//! foreign repository, ping, local repository), and the status client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use super::test_support::{TestClient, answer};
use super::*;
use crate::status::test_support::dev_target;

const SECRET: &str = "webhook-secret";

struct Harness {
    client: TestClient,
    state: Arc<ServerState>,
    fetch_now: Arc<Notify>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Harness {
    async fn start(webhook_url: &str) -> Harness {
        Harness::start_with(webhook_url, ServerLimits::default()).await
    }

    async fn start_with(webhook_url: &str, limits: ServerLimits) -> Harness {
        let board = Arc::new(StatusBoard::default());
        board.add_target(dev_target());
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
            controls: Arc::new(crate::status::control::Controls::new(
                crate::status::control::system_clock(),
                None,
                crate::config::Suspend::Off,
            )),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, receiver) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_limits(
            listener,
            state.clone(),
            limits,
            async move {
                let _ = receiver.await;
            },
        ));
        Harness {
            client: TestClient::new(address),
            state,
            fetch_now,
            shutdown: Some(shutdown),
            task,
        }
    }

    async fn hook(&self, headers: &[(&str, String)], body: &str) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .http
            .post(self.client.url("/api/v1/hooks/git"))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        answer(request.send().await.unwrap()).await
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

/// The headers of a GitHub delivery of `event` signed with the route's secret.
fn github_headers(event: &str, body: &str) -> [(&'static str, String); 2] {
    [
        ("x-github-event", event.into()),
        ("x-hub-signature-256", github_signature(body, SECRET)),
    ]
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
    assert_eq!(harness.client.get_status("/healthz").await, 200);
    let response = harness.client.get("/readyz").await;
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["waiting_for"][0], "dev");
    harness
        .state
        .board
        .update_target("dev", |status| status.ready = true);
    assert_eq!(harness.client.get_status("/readyz").await, 200);
    assert_eq!(harness.client.get_status("/no/such/page").await, 404);
    let response = harness.client.get("/metrics").await;
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

    let (code, answer) = harness.hook(&github_headers("push", &body), &body).await;
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
        let (code, answer) = harness.hook(&github_headers("push", &body), &body).await;
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
    let (code, _) = harness.hook(&github_headers("ping", ping), ping).await;
    assert_eq!(code, 200);
    let garbage = "{not json";
    let (code, _) = harness
        .hook(&github_headers("push", garbage), garbage)
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
    let (code, _) = harness.hook(&github_headers("push", &body), &body).await;
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
        server: format!("http://{}", harness.client.address),
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

// ---- hardening: timeouts, the connection cap, headers, page size ---------------------------

fn quick_limits(max_connections: usize) -> ServerLimits {
    ServerLimits {
        max_connections,
        header_read_timeout: Duration::from_millis(400),
        request_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(2),
    }
}

/// Reads until the server closes the connection; how long that took, or `None` if it stayed
/// open for `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 4096];
    let outcome = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    outcome.ok().map(|()| started.elapsed())
}

/// One request on `stream`, keeping it open; the status code.
async fn request_keep_alive(stream: &mut tokio::net::TcpStream, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|value| value.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let harness =
        Harness::start_with("https://git.example.com/data/jobs.git", quick_limits(64)).await;
    let started = std::time::Instant::now();
    // Connected, sends nothing.
    let mut silent = tokio::net::TcpStream::connect(harness.client.address)
        .await
        .unwrap();
    // Sends half a request head and stalls (slowloris).
    let mut slow = tokio::net::TcpStream::connect(harness.client.address)
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    // One request, then idle on keep-alive.
    let mut kept = tokio::net::TcpStream::connect(harness.client.address)
        .await
        .unwrap();
    assert_eq!(request_keep_alive(&mut kept, "/healthz").await, 200);
    for (what, stream) in [
        ("a silent connection", &mut silent),
        ("a half-sent request head", &mut slow),
        ("an idle keep-alive connection", &mut kept),
    ] {
        closed_within(stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what} stayed open"));
        let open_for = started.elapsed();
        assert!(
            open_for >= Duration::from_millis(350),
            "{what} was closed before its timeout ({open_for:?})"
        );
    }
    harness.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_give_way_and_healthz_answers() {
    let harness = Harness::start_with(
        "https://git.example.com/data/jobs.git",
        ServerLimits {
            header_read_timeout: Duration::from_secs(60),
            ..quick_limits(8)
        },
    )
    .await;
    // Far more idle connections than the cap; none sends anything, none times out meanwhile.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(
            tokio::net::TcpStream::connect(harness.client.address)
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let response = tokio::time::timeout(Duration::from_secs(5), harness.client.get("/healthz"))
            .await
            .expect("/healthz answered in time");
        assert_eq!(response.status().as_u16(), 200);
    }
    // The oldest idle connections were closed to make room; the server never held more than
    // the cap (plus the one being admitted).
    let mut closed = 0;
    for stream in &mut idle {
        if closed_within(stream, Duration::from_millis(50))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 40 - 8,
        "only {closed} of 40 idle connections were closed"
    );
    harness.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let harness = Harness::start("https://git.example.com/data/jobs.git").await;
    for path in ["/", "/healthz", "/api/v1/targets", "/nowhere"] {
        let response = harness.client.get(path).await;
        let headers = response.headers();
        let csp = headers
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"))
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    // The one inline stylesheet is allowed by its hash, and only it.
    let page = harness.client.get("/").await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let body = page.text().await.unwrap();
    let style = body
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .expect("a style element");
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style.as_bytes()));
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    assert!(!body.contains("<script"), "no scripts on the page");
    harness.stop().await;
}

fn many_jobs(count: usize) -> Vec<crate::status::JobStatus> {
    use crate::status::{ErrorInfo, HealthInfo, HealthStatus, JobStatus, SyncStatus};
    (0..count)
        .map(|index| {
            let broken = index % 1000 == 999;
            JobStatus {
                kind: crate::model::JobKind::FlinkSql,
                name: format!("clickstream-aggregation-for-region-{index:05}"),
                sync_status: if broken {
                    SyncStatus::OutOfSync
                } else {
                    SyncStatus::Synced
                },
                health: HealthInfo {
                    status: if broken {
                        HealthStatus::Degraded
                    } else {
                        HealthStatus::Healthy
                    },
                    message: Some("job_running".into()),
                },
                live_status: Some("job_running".into()),
                live_id: Some(index as i64),
                action: broken.then(|| "upgrade".to_string()),
                reason: broken.then(|| "cu_number: 2 → 4".to_string()),
                last_error: broken.then(|| ErrorInfo {
                    code: Some("DLI.0001".into()),
                    message: "a parameter is wrong ".repeat(10),
                    time: None,
                }),
                step: None,
                savepoint: Some(format!(
                    "obs://dli-gitops-savepoints/jobs/savepoint/{index}/2026-12-04_17-36-14/"
                )),
                backups: vec![format!(
                    "obs://dli-gitops-backups/dev/plan-0123456789ab/job-{index}.zip"
                )],
            }
        })
        .collect()
}

#[tokio::test]
async fn the_status_page_stays_small_with_five_thousand_jobs() {
    let harness = Harness::start("https://git.example.com/data/jobs.git").await;
    harness.state.board.update_target("dev", |target| {
        target.set_jobs(many_jobs(5000), true);
        target.last_plan = Some(crate::status::PlanView {
            id: "plan-1".into(),
            summary: Default::default(),
            warnings: Vec::new(),
            text: "~ update clickstream-aggregation-for-region-00001\n".repeat(5000),
            revision: None,
            time: chrono::Utc::now(),
        });
    });
    let page = harness.client.get_text("/").await;
    assert!(
        page.len() < 128 * 1024,
        "the page is {} bytes with 5,000 jobs",
        page.len()
    );
    assert!(page.contains("5000 jobs"), "the page summarises the count");
    // The jobs that need a look come first.
    let first_row = page
        .find("clickstream-aggregation-for-region-")
        .map(|at| &page[at..at + 40])
        .unwrap();
    assert!(first_row.contains("00999"), "first job shown: {first_row}");
    assert!(page.contains("page 1 of 50"), "pagination is offered");
    // The last page is one link away and shows the last jobs.
    let last = harness.client.get_text("/?target=dev&page=50").await;
    assert!(last.len() < 128 * 1024);
    assert!(last.contains("clickstream-aggregation-for-region-04998"));
    assert!(!last.contains("clickstream-aggregation-for-region-00000<"));
    harness.stop().await;
}
