//! Promotion between environments against real emulators: carrying Flink state between two
//! accounts (two emulators, so two separate OBS stores), and the promote command.

use std::path::Path;
use std::time::Duration;

use dli_gitops::cloud::{
    ClientOptions, CloudClients, Credentials, ListJobsQuery, ObjectStore, Secret, ServiceEndpoints,
};
use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
use dli_gitops::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use dli_gitops::model::{FlinkJobConfig, JobKind};
use dli_gitops::promotion::{CarryEnds, CarryError, carry_savepoint};

const UPSTREAM_STAGING: &str = "obs://dli-gitops-staging/dev/";
const DOWNSTREAM_STAGING: &str = "obs://dli-gitops-staging/prod/";

async fn emulator(dir: &Path) -> EmulatorHandle {
    Emulator::start(EmulatorConfig::for_tests(dir.to_path_buf()))
        .await
        .expect("the emulator starts")
}

fn clients(emulator: &EmulatorHandle) -> CloudClients {
    let api = url::Url::parse(&emulator.dli_url()).unwrap();
    let endpoints = ServiceEndpoints {
        dli: api.clone(),
        dlf: api.clone(),
        iam: api,
        obs: url::Url::parse(&emulator.s3_url()).unwrap(),
    };
    let credentials = Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.to_string(),
        secret_key: Secret::new(DEV_SECRET_KEY),
        security_token: None,
    };
    CloudClients::new(
        &endpoints,
        "cn-north-4",
        DEV_PROJECT_ID,
        credentials,
        ClientOptions::default(),
        None,
    )
    .unwrap()
}

fn sql_job() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("flink_queue".into());
    config.sql_body = Some("INSERT INTO sink SELECT * FROM source;".into());
    config
}

async fn wait_for_status(clients: &CloudClients, job_id: i64, status: &str) {
    for _ in 0..200 {
        let job = clients.dli.job_detail(job_id).await.unwrap();
        if job.status.as_str() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {job_id} never became {status}");
}

fn ends<'a>(upstream: &'a CloudClients, downstream: &'a CloudClients) -> CarryEnds<'a> {
    CarryEnds {
        upstream_target: "dev",
        upstream_dli: &upstream.dli,
        upstream_obs: &upstream.obs,
        upstream_staging: UPSTREAM_STAGING,
        downstream_target: "prod",
        downstream_obs: &downstream.obs,
        downstream_staging: DOWNSTREAM_STAGING,
        savepoint_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn state_is_carried_between_accounts_that_share_nothing() {
    let dev_dir = tempfile::tempdir().unwrap();
    let prod_dir = tempfile::tempdir().unwrap();
    let dev_emulator = emulator(dev_dir.path()).await;
    let prod_emulator = emulator(prod_dir.path()).await;
    let dev = clients(&dev_emulator);
    let prod = clients(&prod_emulator);

    // Nothing upstream yet: a clear error, nothing copied.
    let missing = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, CarryError::UpstreamJobMissing { .. }),
        "{missing}"
    );

    let dev_id = dev.dli.create_sql_job("clicks", &sql_job()).await.unwrap();
    // A stopped job with no savepoint cannot give state.
    let no_state = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap_err();
    assert!(
        matches!(no_state, CarryError::NoSavepoint { .. }),
        "{no_state}"
    );

    dev.dli.run_jobs(&[dev_id], false).await.unwrap();
    wait_for_status(&dev, dev_id, "job_running").await;

    // Running upstream: a fresh savepoint, copied into prod's staging prefix.
    let carried = carry_savepoint(&ends(&dev, &prod), "clicks", None)
        .await
        .unwrap();
    assert!(carried.fresh);
    assert!(
        carried
            .upstream_path
            .starts_with("obs://dli-gitops-staging/dev/promotion-savepoints/clicks/"),
        "{carried:?}"
    );
    assert!(
        carried
            .downstream_path
            .starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/"),
        "{carried:?}"
    );
    assert_eq!(carried.objects_copied, 1);
    assert!(carried.bytes_copied > 0);
    let copy = ObjectStore::from_url(&carried.downstream_path, &prod.obs).unwrap();
    assert_eq!(copy.list("").await.unwrap(), vec!["_metadata".to_string()]);

    // Prod's account cannot see dev's savepoint, but imports the carried copy.
    let prod_id = prod.dli.create_sql_job("clicks", &sql_job()).await.unwrap();
    let foreign = prod
        .dli
        .import_savepoint(prod_id, &carried.upstream_path)
        .await
        .unwrap_err();
    assert!(foreign.to_string().contains("savepoint"), "{foreign}");
    prod.dli
        .import_savepoint(prod_id, &carried.downstream_path)
        .await
        .unwrap();
    prod.dli.run_jobs(&[prod_id], true).await.unwrap();
    wait_for_status(&prod, prod_id, "job_running").await;

    // Stopped upstream with a savepoint the journal recorded: that one is carried, once.
    dev.dli.stop_jobs(&[dev_id], true).await.unwrap();
    wait_for_status(&dev, dev_id, "job_cancel_success").await;
    let stop_savepoint = dev
        .dli
        .job_detail(dev_id)
        .await
        .unwrap()
        .savepoint_path
        .expect("a stop with a savepoint reports it");
    let first = carry_savepoint(&ends(&dev, &prod), "clicks", Some(&stop_savepoint))
        .await
        .unwrap();
    assert!(!first.fresh);
    assert_eq!(first.upstream_path, stop_savepoint);
    assert_eq!(first.objects_copied, 1);
    let again = carry_savepoint(&ends(&dev, &prod), "clicks", Some(&stop_savepoint))
        .await
        .unwrap();
    assert_eq!(again.downstream_path, first.downstream_path);
    assert_eq!(
        again.objects_copied, 0,
        "a complete copy is not copied again"
    );

    // The upstream job list is untouched by all this.
    let listed = dev.dli.list_jobs(&ListJobsQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    dev_emulator.shutdown().await;
    prod_emulator.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// `dli-gitops promote`: straight into the journal, or through a running daemon's API.

mod promote_command {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use dli_gitops::config::Config;
    use dli_gitops::journal::{
        Journal, JournalOptions, RecordBody, RecordFilter, RevisionApplied, read_records,
    };
    use dli_gitops::promotion::{
        Pipeline, PromoteBody, PromotionEndpoint, UpstreamCondition, UpstreamSample,
        followed_revision,
    };

    const R1: &str = "1111111111111111111111111111111111111111";
    const R2: &str = "2222222222222222222222222222222222222222";
    const TOKEN: &str = "promotion-test-token";
    const TOKEN_ENV: &str = "DLI_GITOPS_PROMOTION_TEST_TOKEN";

    fn write_config(dir: &std::path::Path, listen: std::net::SocketAddr) -> std::path::PathBuf {
        std::fs::create_dir_all(dir.join("jobs")).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            format!(
                r#"
state_dir: ./state
listen: {listen}
api_token_env: {TOKEN_ENV}
sources:
  jobs: {{path: ./jobs}}
targets:
  - {{name: dev, source: jobs, endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}}}
  - name: prod
    source: jobs
    promote_from: dev
    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}
    promotion: {{auto: false, after: 10m}}
"#
            ),
        )
        .unwrap();
        path
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
        let (status, json) = tokio::task::spawn_blocking(move || {
            endpoint.promote(&target, body, chrono::Utc::now())
        })
        .await
        .unwrap();
        (StatusCode::from_u16(status).unwrap(), axum::Json(json))
    }

    #[tokio::test]
    async fn promote_goes_through_the_daemon_when_it_holds_the_journal_and_straight_in_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config_path = write_config(dir.path(), listener.local_addr().unwrap());
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
        journal.append("dev", revision_applied(R1)).unwrap();
        let mut pipeline = Pipeline::from_config(&config).unwrap();
        // R2 degrades in dev: journaled as failed for prod.
        let marked = pipeline
            .observe(
                &journal,
                "dev",
                &UpstreamSample {
                    revision: Some(R2.into()),
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
        assert_eq!(report["revision"], R1);
        assert_eq!(report["by"], "api:cli:alice");
        assert_eq!(
            followed_revision(&journal.state(), "prod").as_deref(),
            Some(R1)
        );

        let (ok, _, stderr) = promote_cli(&config_path, &["--revision", R2], TOKEN).await;
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
            Some(R1)
        );

        // The daemon stops: promote writes the journal itself, and the next start follows it.
        stop_server.send(()).unwrap();
        server.await.unwrap();
        drop(endpoint);
        drop(journal);
        let older = "0000000000000000000000000000000000000001";
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
                (false, R2, "auto"),
                (true, R1, "api:cli:alice"),
                (false, R2, "api:cli:alice"),
                (true, older, "cli:alice"),
            ]
        );
    }
}
