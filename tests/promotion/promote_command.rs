//! `dli-gitops promote`: straight into the journal, or through a running daemon's API.

use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dli_gitops::config::Config;
use dli_gitops::journal::{
    Journal, JournalOptions, RecordBody, RecordFilter, RevisionApplied, read_records,
};
use dli_gitops::promotion::{
    Pipeline, PromoteBody, PromotionEndpoint, UpstreamCondition, UpstreamSample, followed_revision,
};

const TOKEN: &str = "promotion-test-token";
const TOKEN_ENV: &str = "DLI_GITOPS_PROMOTION_TEST_TOKEN";

/// The config, over a git repository with three commits (oldest first): promotions are
/// checked against the source, so the revisions must exist and validate.
fn write_config(
    dir: &std::path::Path,
    listen: std::net::SocketAddr,
) -> (std::path::PathBuf, [String; 3]) {
    let repo = dir.join("jobs");
    std::fs::create_dir_all(&repo).unwrap();
    let commits = [1, 2, 3].map(|n| {
        let variables = format!("variables: {{generation: \"{n}\"}}\n");
        super::pipeline_end_to_end::commit(
            &repo,
            &[
                ("environments/dev.yaml", variables.as_str()),
                ("environments/prod.yaml", variables.as_str()),
            ],
            &format!("generation {n}"),
        )
    });
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
state_dir: ./state
listen: {listen}
api_token_env: {TOKEN_ENV}
sources:
  jobs: {{git: {{url: "{repo}", branch: master}}}}
targets:
  - {{name: dev, source: jobs, endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}}}
  - name: prod
    source: jobs
    promote_from: dev
    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}
    promotion: {{auto: false, after: 10m}}
"#,
            repo = repo.display()
        ),
    )
    .unwrap();
    (path, commits)
}

async fn promote_cli(
    config: &std::path::Path,
    args: &[&str],
    token: &str,
) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .arg("promote")
        .arg("--config")
        .arg(config)
        .arg("prod")
        .args(args)
        .env(TOKEN_ENV, token)
        .env("USER", "alice")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn promote_route(
    State(endpoint): State<PromotionEndpoint>,
    UrlPath(target): UrlPath<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<PromoteBody>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    // The daemon's server checks the token with `server::auth`; this stand-in does the same
    // check plainly and hands the request to the same library call.
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "wrong bearer token"})),
        );
    }
    let (status, json) =
        tokio::task::spawn_blocking(move || endpoint.promote(&target, body, chrono::Utc::now()))
            .await
            .unwrap();
    (StatusCode::from_u16(status).unwrap(), axum::Json(json))
}

#[tokio::test]
async fn promote_goes_through_the_daemon_when_it_holds_the_journal_and_straight_in_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (config_path, [older, r1, r2]) = write_config(dir.path(), listener.local_addr().unwrap());
    let (rev1, rev2) = (r1.as_str(), r2.as_str());
    let config = Config::load(&config_path).unwrap();
    let state_dir = config.state_dir.clone();

    // No daemon yet, dev never converged: nothing to promote by default.
    let (ok, _, stderr) = promote_cli(&config_path, &[], TOKEN).await;
    assert!(!ok);
    assert!(
        stderr.contains("`dev` has not converged on any revision yet; pass --revision"),
        "{stderr}"
    );

    // A "daemon": it holds the journal and serves the promote route.
    let (journal, _) = Journal::open(&state_dir, JournalOptions::default()).unwrap();
    let revision_applied = |revision: &str| {
        RecordBody::RevisionApplied(RevisionApplied {
            revision: revision.into(),
            plan_id: None,
            summary: String::new(),
            extra: Default::default(),
        })
    };
    journal.append("dev", revision_applied(rev1)).unwrap();
    let mut pipeline = Pipeline::from_config(&config).unwrap();
    // rev2 degrades in dev: journaled as failed for prod.
    let marked = pipeline
        .observe(
            &journal,
            "dev",
            &UpstreamSample {
                revision: Some(rev2.into()),
                converged: true,
                condition: UpstreamCondition::Degraded("job clicks is failing".into()),
                time: chrono::Utc::now(),
            },
        )
        .unwrap();
    assert_eq!(marked.len(), 1);
    let endpoint = PromotionEndpoint {
        config: Arc::new(config.clone()),
        journal: journal.clone(),
        pipeline: Arc::new(Mutex::new(pipeline)),
    };
    let app = axum::Router::new()
        .route("/api/v1/targets/{target}/promote", post(promote_route))
        .with_state(endpoint.clone());
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });

    let (ok, stdout, stderr) = promote_cli(&config_path, &["--json"], TOKEN).await;
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["via"], "daemon");
    assert_eq!(report["revision"], rev1);
    assert_eq!(report["by"], "api:cli:alice");
    assert_eq!(
        followed_revision(&journal.state(), "prod").as_deref(),
        Some(rev1)
    );

    let (ok, _, stderr) = promote_cli(&config_path, &["--revision", rev2], TOKEN).await;
    assert!(!ok);
    assert!(
        stderr.contains("answered 409") && stderr.contains("failed in `dev`"),
        "{stderr}"
    );
    let (ok, _, stderr) = promote_cli(&config_path, &[], "not-the-token").await;
    assert!(!ok);
    assert!(stderr.contains("answered 401"), "{stderr}");
    assert_eq!(
        endpoint.pipeline(chrono::Utc::now()).targets[1]
            .promoted_revision
            .as_deref(),
        Some(rev1)
    );

    // The daemon stops: promote writes the journal itself, and the next start follows it.
    stop_server.send(()).unwrap();
    server.await.unwrap();
    drop(endpoint);
    drop(journal);
    let older = older.as_str();
    let (ok, stdout, stderr) = promote_cli(&config_path, &["--revision", older], TOKEN).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("no daemon runs"), "{stdout}");
    let (journal, _) = Journal::open(&state_dir, JournalOptions::default()).unwrap();
    assert_eq!(
        followed_revision(&journal.state(), "prod").as_deref(),
        Some(older)
    );
    drop(journal);
    let promotions: Vec<_> = read_records(&state_dir, &RecordFilter::default())
        .unwrap()
        .into_iter()
        .filter_map(|record| match record.body {
            RecordBody::Promotion(promotion) => Some(promotion),
            _ => None,
        })
        .collect();
    let summary: Vec<(bool, &str, &str)> = promotions
        .iter()
        .map(|p| (p.ok, p.revision.as_str(), p.by.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (false, rev2, "auto"),
            (true, rev1, "api:cli:alice"),
            (false, rev2, "api:cli:alice"),
            (true, older, "cli:alice"),
        ]
    );
}
