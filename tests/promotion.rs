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
        let (config_path, [older, r1, r2]) =
            write_config(dir.path(), listener.local_addr().unwrap());
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
}

// ---------------------------------------------------------------------------------------------
// End to end: a git repository, two accounts (two emulators: separate DLI, DLF and OBS), one
// journal, driven through the library the way the daemon drives it: reconcile dev, feed the
// pipeline what dev looks like, let the gate promote, reconcile prod at the promoted revision
// with prod's environment.

mod pipeline_end_to_end {
    use std::path::Path;
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use dli_gitops::apply::{self, ApplyOptions, ApplyReport, TargetContext};
    use dli_gitops::config::Config;
    use dli_gitops::desired::snapshot::RepoSnapshot;
    use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
    use dli_gitops::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
    use dli_gitops::journal::{Journal, JournalOptions};
    use dli_gitops::pass::carry_for_target;
    use dli_gitops::plan::ActionClass;
    use dli_gitops::promotion::{
        GateDecision, HoldReason, ManualRequest, Pipeline, PromotionEvent, UpstreamCondition,
        UpstreamSample, followed_revision,
    };
    use dli_gitops::source::Source;
    use serde_json::Value;

    pub const DEV_ENV: &str = "variables: {flink_queue: dev_flink}\ndlf:\n  params: {env: dev}\n";
    pub const PROD_ENV: &str = "variables: {flink_queue: prod_flink}\noverrides:\n  clicks: {cu_number: 4, parallel_number: 2, restore: {from_target: dev}}\ndlf:\n  params: {env: prod}\n  resources: [{name: dev_dws, type: DWS_CONNECTION, replace: prod_dws}]\n  target_status: SUBMITTED\n";
    pub const NIGHTLY_YAML: &str = "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\n";
    pub const NIGHTLY_JOB: &str = r#"{
  "name": "nightly",
  "processType": "BATCH",
  "params": [{"name": "env", "value": "none", "type": "variable"}],
  "nodes": [
    {"name": "load", "type": "DWSSQL", "location": {"x": 10, "y": 40},
     "properties": [{"name": "statement", "value": "SELECT 1"}, {"name": "connectionName", "value": "dev_dws"}]}
  ],
  "schedule": {"type": "EXECUTE_ONCE"}
}"#;

    pub fn clicks(sql: &str, broken: bool) -> String {
        if broken {
            // Another SQL job type (no update carries it, so the job is created again) on an
            // exclusive cluster without a queue: DLI refuses to start it (DLI.13024). Leaving
            // `queue_name` out of an existing job alone would keep the queue the service has.
            format!(
                "kind: FlinkSqlJob\nname: clicks\njob_type: flink_sql_job\nsql_body: \"{sql}\"\nrun_mode: exclusive_cluster\ncu_number: 2\ndesired_state: running\nupgrade_mode: savepoint\n"
            )
        } else {
            format!(
                "kind: FlinkSqlJob\nname: clicks\nqueue_name: ${{flink_queue}}\nsql_body: \"{sql}\"\ncu_number: 2\ndesired_state: running\nupgrade_mode: savepoint\n"
            )
        }
    }

    /// Commits the files into the repository at `dir` and returns the commit id.
    pub fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
        // The branch is named explicitly: a machine's `init.defaultBranch` must not matter.
        let repository = git2::Repository::open(dir)
            .or_else(|_| {
                git2::Repository::init_opts(
                    dir,
                    git2::RepositoryInitOptions::new().initial_head("master"),
                )
            })
            .unwrap();
        for (path, content) in files {
            let full = dir.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        let mut index = repository.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repository.find_tree(index.write_tree().unwrap()).unwrap();
        let signature = git2::Signature::now("test", "test@example.com").unwrap();
        let parent = repository
            .head()
            .ok()
            .and_then(|head| head.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repository
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap()
            .to_string()
    }

    struct World {
        _dir: tempfile::TempDir,
        config: Config,
        journal: Journal,
        dev: TargetContext,
        prod: TargetContext,
        dev_emulator: EmulatorHandle,
        prod_emulator: EmulatorHandle,
        source: Source,
        repo: std::path::PathBuf,
        pipeline: Pipeline,
        /// The test's clock for the gate (no sleeping through `after`).
        now: DateTime<Utc>,
    }

    impl World {
        async fn start() -> World {
            let dir = tempfile::tempdir().unwrap();
            let dev_emulator =
                Emulator::start(EmulatorConfig::for_tests(dir.path().join("dev-cloud")))
                    .await
                    .unwrap();
            let prod_emulator =
                Emulator::start(EmulatorConfig::for_tests(dir.path().join("prod-cloud")))
                    .await
                    .unwrap();
            let repo = dir.path().join("repo");
            std::fs::create_dir_all(&repo).unwrap();
            std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
            std::fs::write(dir.path().join("sk"), DEV_SECRET_KEY).unwrap();
            let target = |name: &str, cloud: &EmulatorHandle, extra: &str| {
                format!(
                    "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n    rate_limit: {{requests_per_second: 100000, burst: 100000}}\n{extra}",
                    api = cloud.dli_url(),
                    s3 = cloud.s3_url()
                )
            };
            let config_path = dir.path().join("dli-gitops.yaml");
            std::fs::write(
                &config_path,
                format!(
                    "state_dir: state\nsources:\n  jobs:\n    git: {{url: \"{repo}\", branch: master}}\ntargets:\n{}{}",
                    target("dev", &dev_emulator, ""),
                    target(
                        "prod",
                        &prod_emulator,
                        "    promote_from: dev\n    promotion: {auto: true, after: 2m}\n"
                    ),
                    repo = repo.display()
                ),
            )
            .unwrap();
            let config = Config::load(&config_path).expect("config loads");
            let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
            let mut dev = TargetContext::with_shared(&config, "dev", journal.clone(), None)
                .await
                .unwrap();
            let mut prod = TargetContext::with_shared(&config, "prod", journal.clone(), None)
                .await
                .unwrap();
            for context in [&mut dev, &mut prod] {
                context.options.poll_interval = Duration::from_millis(5);
            }
            let source = Source::from_config(&config.sources["jobs"], &config.state_dir).unwrap();
            let pipeline = Pipeline::from_config(&config).unwrap();
            World {
                _dir: dir,
                config,
                journal,
                dev,
                prod,
                dev_emulator,
                prod_emulator,
                source,
                repo,
                pipeline,
                now: Utc::now(),
            }
        }

        /// The repository at `revision` (older commits included), as the daemon reads it.
        fn snapshot(&self, revision: &str) -> RepoSnapshot {
            dli_gitops::promotion::snapshot_at(&self.source, revision).unwrap()
        }

        /// One pass of `target` at `revision` with its environment, as the daemon runs it.
        async fn pass(&self, target: &str, revision: &str) -> ApplyReport {
            let context = if target == "dev" {
                &self.dev
            } else {
                &self.prod
            };
            let snapshot = self.snapshot(revision);
            let desired = dli_gitops::desired::resolve(&snapshot, Some(target))
                .unwrap_or_else(|problems| panic!("{target} resolves: {problems:?}"));
            let carried = carry_for_target(&self.config, &self.journal, context, &desired)
                .await
                .unwrap();
            let options = ApplyOptions {
                revision: Some(revision.to_string()),
                carried_savepoints: carried,
                ..context.options.clone()
            };
            apply::reconcile_once(context, &desired, &options)
                .await
                .unwrap()
        }

        /// What dev looks like after a pass, in the gate's terms.
        async fn sample(&self, revision: &str, report: &ApplyReport) -> UpstreamSample {
            let condition = match report.failures().next() {
                Some(failed) => UpstreamCondition::Failed(format!(
                    "{}: {}",
                    failed.name,
                    failed
                        .error
                        .as_ref()
                        .map(|error| error.message.clone())
                        .unwrap_or_default()
                )),
                None => {
                    let (observed, _) = apply::observe(&self.dev).await.unwrap();
                    if observed.flink.iter().all(|job| job.status.is_running()) {
                        UpstreamCondition::Healthy
                    } else {
                        UpstreamCondition::Progressing
                    }
                }
            };
            UpstreamSample {
                revision: Some(revision.to_string()),
                converged: report.converged(),
                condition,
                time: self.now,
            }
        }

        async fn dev_pass(&mut self, revision: &str) -> Vec<PromotionEvent> {
            let report = self.pass("dev", revision).await;
            let sample = self.sample(revision, &report).await;
            self.pipeline
                .observe(&self.journal, "dev", &sample)
                .unwrap()
        }

        fn advance(&mut self, by: chrono::Duration) -> Vec<PromotionEvent> {
            self.now += by;
            self.pipeline.evaluate(&self.journal, self.now).unwrap()
        }

        fn followed(&self) -> Option<String> {
            followed_revision(&self.journal.state(), "prod")
        }

        async fn prod_clicks(&self) -> dli_gitops::model::ObservedFlinkJob {
            let (observed, _) = apply::observe(&self.prod).await.unwrap();
            observed
                .flink
                .into_iter()
                .find(|job| job.name == "clicks")
                .expect("clicks is live in prod")
        }

        async fn stop(self) {
            self.dev.shutdown().await;
            self.prod.shutdown().await;
            self.dev_emulator.shutdown().await;
            self.prod_emulator.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_flows_from_dev_to_prod_and_a_failing_one_stops_at_dev() {
        let mut world = World::start().await;
        let base = [
            ("environments/dev.yaml", DEV_ENV),
            ("environments/prod.yaml", PROD_ENV),
            ("dlf/nightly.yaml", NIGHTLY_YAML),
            ("dlf/nightly.job", NIGHTLY_JOB),
        ];
        let first_clicks = clicks("SELECT 1", false);
        let mut files = base.to_vec();
        files.push(("flink/clicks.yaml", &first_clicks));
        let c1 = commit(&world.repo, &files, "clicks and nightly");

        // C1 reaches dev and converges; prod has nothing promoted yet, and `plan`/`apply` on
        // prod say so instead of applying the branch head.
        assert!(world.dev_pass(&c1).await.is_empty());
        assert_eq!(world.followed(), None);
        let nothing = dli_gitops::pass::desired_for(&world.prod, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            nothing.contains("nothing has been promoted to `prod` yet"),
            "{nothing}"
        );
        // Healthy, but not for `after` yet.
        assert!(world.advance(chrono::Duration::minutes(1)).is_empty());
        let view = world
            .pipeline
            .view(&world.config, &world.journal.state(), world.now);
        assert!(
            matches!(
                &view.targets[1].gate.as_ref().unwrap().decision,
                GateDecision::Hold {
                    reason: HoldReason::NotHealthyLongEnough { .. },
                    ..
                }
            ),
            "{view:?}"
        );
        // Still Healthy a minute later: promoted automatically.
        world.dev_pass(&c1).await;
        let promoted = world.advance(chrono::Duration::minutes(1));
        assert!(
            matches!(&promoted[..], [PromotionEvent::Promoted { to, revision, by, .. }] if to == "prod" && *revision == c1 && by == "auto"),
            "{promoted:?}"
        );
        assert_eq!(world.followed().as_deref(), Some(c1.as_str()));

        // Prod converges on C1 with prod's environment, starting from dev's state.
        let prod_report = world.pass("prod", &c1).await;
        assert!(prod_report.converged(), "{}", prod_report.render_text());
        let live = world.prod_clicks().await;
        assert!(live.status.is_running());
        assert_eq!(live.config.queue_name.as_deref(), Some("prod_flink"));
        assert_eq!(live.config.cu_number, 4);
        assert_eq!(live.config.parallel_number, 2);
        let runs: Value = reqwest::get(format!(
            "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{}/runs",
            world.prod_emulator.dli_url(),
            live.id
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let restored_from = runs["runs"][0]["restored_from"]
            .as_str()
            .unwrap_or_default();
        assert!(
            restored_from
                .starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/"),
            "prod started from the carried copy of dev's state: {runs}"
        );
        // The carried copy is in prod's savepoint catalog, verified against dev's savepoint.
        let catalog = dli_gitops::savepoints::catalog(&world.journal.state(), Some("prod"), None);
        let entry = catalog
            .iter()
            .find(|entry| entry.entry.record.origin == "carried")
            .unwrap_or_else(|| panic!("a carried entry: {catalog:#?}"));
        assert_eq!(entry.path(), restored_from);
        assert!(entry.entry.record.verified, "{entry:#?}");
        let nightly = world
            .prod
            .live
            .clients
            .dlf
            .job_detail("nightly")
            .await
            .unwrap();
        let text = nightly.to_string();
        assert!(
            text.contains("prod_dws") && !text.contains("dev_dws"),
            "{nightly}"
        );
        let dev_nightly = world
            .dev
            .live
            .clients
            .dlf
            .job_detail("nightly")
            .await
            .unwrap();
        assert!(dev_nightly.to_string().contains("dev_dws"), "{dev_nightly}");

        // C2 (good) follows the same way; prod upgrades in place of C1.
        let second_clicks = clicks("SELECT 2", false);
        let c2 = commit(
            &world.repo,
            &[("flink/clicks.yaml", &second_clicks)],
            "clicks v2",
        );
        world.dev_pass(&c2).await;
        world.advance(chrono::Duration::minutes(2));
        assert_eq!(world.followed().as_deref(), Some(c2.as_str()));
        let upgraded = world.pass("prod", &c2).await;
        assert!(upgraded.converged(), "{}", upgraded.render_text());
        assert!(
            upgraded
                .plan
                .actions
                .iter()
                .any(|action| action.name == "clicks" && action.class == ActionClass::Upgrade),
            "{}",
            upgraded.plan.render_text()
        );
        assert_eq!(
            world.prod_clicks().await.config.sql_body.as_deref(),
            Some("SELECT 2")
        );

        // C3 fails in dev: marked, never promoted, however long we wait.
        let broken_clicks = clicks("SELECT 3", true);
        let c3 = commit(
            &world.repo,
            &[("flink/clicks.yaml", &broken_clicks)],
            "broken",
        );
        let marked = world.dev_pass(&c3).await;
        assert!(
            matches!(&marked[..], [PromotionEvent::MarkedFailed { revision, reason, .. }] if *revision == c3 && reason.contains("DLI.13024")),
            "{marked:?}"
        );
        assert!(world.advance(chrono::Duration::hours(5)).is_empty());
        assert_eq!(world.followed().as_deref(), Some(c2.as_str()));
        let refused = world.pipeline.promote_manually(
            &world.journal,
            &world.config,
            "prod",
            &ManualRequest {
                revision: Some(c3.clone()),
                by: "cli:alice".into(),
            },
            world.now,
        );
        assert!(refused.is_err(), "a failed revision is refused by hand too");

        // A person rolls prod back to C1, an older revision: it sticks (the gate does not
        // re-promote C2), and prod converges on it.
        let report = world
            .pipeline
            .promote_manually(
                &world.journal,
                &world.config,
                "prod",
                &ManualRequest {
                    revision: Some(c1.clone()),
                    by: "cli:alice".into(),
                },
                world.now,
            )
            .unwrap();
        assert_eq!(report.revision, c1);
        assert_eq!(world.followed().as_deref(), Some(c1.as_str()));
        // `plan`/`apply --target prod` read the promoted (older) revision, not the head (C3).
        let (_, planned_revision) = dli_gitops::pass::desired_for(&world.prod, None)
            .await
            .unwrap();
        assert_eq!(planned_revision, c1);
        let rolled_back = world.pass("prod", &c1).await;
        assert!(rolled_back.converged(), "{}", rolled_back.render_text());
        let live = world.prod_clicks().await;
        assert_eq!(live.config.sql_body.as_deref(), Some("SELECT 1"));
        assert_eq!(live.config.cu_number, 4);
        assert!(world.advance(chrono::Duration::hours(1)).is_empty());
        assert_eq!(world.followed().as_deref(), Some(c1.as_str()));
        world.stop().await;
    }
}

/// The daemon runs passes on spawned tasks: carrying state must be `Send` too. Checked when this
/// file compiles; never called.
#[allow(dead_code)]
fn carrying_state_is_send(
    config: &dli_gitops::config::Config,
    journal: &dli_gitops::journal::Journal,
    context: &dli_gitops::apply::TargetContext,
    desired: &dli_gitops::model::DesiredJobs,
) {
    fn spawnable<T: Send>(_: T) {}
    spawnable(dli_gitops::pass::carry_for_target(
        config, journal, context, desired,
    ));
}

// ---------------------------------------------------------------------------------------------
// The real daemon (`dli-gitops run`, a child process) over a git repository and two emulated
// accounts: it promotes dev's healthy revision to prod by itself and stops a failing one.

mod daemon_pipeline {
    use std::time::{Duration, Instant};

    use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
    use dli_gitops::emulator::{Emulator, EmulatorConfig};
    use serde_json::Value;

    use super::pipeline_end_to_end::{
        DEV_ENV, NIGHTLY_JOB, NIGHTLY_YAML, PROD_ENV, clicks, commit,
    };

    const TOKEN: &str = "pipeline-e2e-token";
    const TOKEN_ENV: &str = "DLI_GITOPS_PIPELINE_E2E_TOKEN";
    /// Generous: two CPU cores are shared by many builds while this runs.
    const TIMEOUT: Duration = Duration::from_secs(120);

    async fn get(http: &reqwest::Client, url: &str) -> Value {
        http.get(url).send().await.unwrap().json().await.unwrap()
    }

    async fn wait_for(
        http: &reqwest::Client,
        base: &str,
        log: &std::path::Path,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            // Connection refused until the daemon listens.
            let pipeline = match http.get(format!("{base}/api/v1/pipeline")).send().await {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            if check(&pipeline) {
                return pipeline;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {pipeline:#}\nlog:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_daemon_promotes_a_healthy_revision_and_holds_a_failing_one() {
        let dir = tempfile::tempdir().unwrap();
        let dev_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("dev-cloud")))
            .await
            .unwrap();
        let prod_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("prod-cloud")))
            .await
            .unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let first = clicks("SELECT 1", false);
        let c1 = commit(
            &repo,
            &[
                ("environments/dev.yaml", DEV_ENV),
                ("environments/prod.yaml", PROD_ENV),
                ("dlf/nightly.yaml", NIGHTLY_YAML),
                ("dlf/nightly.job", NIGHTLY_JOB),
                ("flink/clicks.yaml", &first),
            ],
            "clicks and nightly",
        );
        std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
        std::fs::write(dir.path().join("sk"), DEV_SECRET_KEY).unwrap();
        let listen = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let target = |name: &str, cloud: &dli_gitops::emulator::EmulatorHandle, extra: &str| {
            format!(
                "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n    policy: {{resync_interval: 10s}}\n{extra}",
                api = cloud.dli_url(),
                s3 = cloud.s3_url()
            )
        };
        let config_path = dir.path().join("dli-gitops.yaml");
        std::fs::write(
            &config_path,
            format!(
                "state_dir: state\nlisten: {listen}\napi_token_env: {TOKEN_ENV}\nsources:\n  jobs:\n    git: {{url: \"{repo}\", branch: master, poll_interval: 1s}}\ntargets:\n{}{}",
                target("dev", &dev_cloud, ""),
                target(
                    "prod",
                    &prod_cloud,
                    "    promote_from: dev\n    promotion: {auto: true, after: 1s}\n"
                ),
                repo = repo.display()
            ),
        )
        .unwrap();
        let log_path = dir.path().join("daemon.log");
        let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env(TOKEN_ENV, TOKEN)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log_path).unwrap())
            .stderr(std::fs::File::create(dir.path().join("daemon.err")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = dir.path().join("daemon.err");
        let http = reqwest::Client::new();
        let base = format!("http://{listen}");

        // C1: dev converges, stays Healthy for `after`, and the daemon promotes it to prod,
        // which converges on it with its own environment and dev's carried state.
        let pipeline = wait_for(&http, &base, &log, "C1 live in prod", |pipeline| {
            pipeline["targets"][1]["applied_revision"] == c1.as_str()
        })
        .await;
        assert_eq!(pipeline["targets"][0]["applied_revision"], c1.as_str());
        assert_eq!(pipeline["targets"][1]["promoted_revision"], c1.as_str());
        assert_eq!(
            pipeline["targets"][1]["recent_promotions"][0]["by"], "auto",
            "{pipeline:#}"
        );
        let prod = super::clients(&prod_cloud);
        let listed = prod
            .dli
            .list_jobs(&dli_gitops::cloud::ListJobsQuery::default())
            .await
            .unwrap();
        let live = prod
            .dli
            .job_detail(listed.iter().find(|job| job.name == "clicks").unwrap().id)
            .await
            .unwrap();
        assert_eq!(live.config.queue_name.as_deref(), Some("prod_flink"));
        assert_eq!(live.config.cu_number, 4);
        let nightly = prod.dlf.job_detail("nightly").await.unwrap().to_string();
        assert!(
            nightly.contains("prod_dws") && !nightly.contains("dev_dws"),
            "{nightly}"
        );

        // C3 fails in dev: marked, and prod stays on C1.
        let broken = clicks("SELECT 3", true);
        let c3 = commit(&repo, &[("flink/clicks.yaml", &broken)], "broken");
        wait_for(
            &http,
            &base,
            &log,
            "C3 marked failed for prod",
            |pipeline| {
                pipeline["targets"][1]["recent_promotions"]
                    .as_array()
                    .is_some_and(|entries| {
                        entries.iter().any(|entry| {
                            entry["revision"] == c3.as_str()
                                && entry["ok"] == false
                                && entry["rule"] == "upstream-failed"
                        })
                    })
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pipeline = get(&http, &format!("{base}/api/v1/pipeline")).await;
        assert_eq!(pipeline["targets"][1]["promoted_revision"], c1.as_str());
        assert_eq!(pipeline["targets"][1]["applied_revision"], c1.as_str());

        // By hand: the failed revision is refused; the API needs the token.
        let refused = http
            .post(format!("{base}/api/v1/targets/prod/promote"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"revision": c3, "by": "alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 409);
        // A revision the repository does not have: 404 with the reason, nothing journaled.
        let unknown = http
            .post(format!("{base}/api/v1/targets/prod/promote"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"revision": "0123456789abcdef0123456789abcdef01234567", "by": "alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status().as_u16(), 404);
        let body: Value = unknown.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|error| error.contains("is not in source `jobs`")),
            "{body}"
        );
        let anonymous = http
            .post(format!("{base}/api/v1/targets/prod/promote"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);

        // `dli-gitops promote` finds the daemon holding the journal and goes through its API.
        let promoted = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .args(["promote", "--json", "--by", "alice", "--config"])
            .arg(&config_path)
            .args(["prod", "--revision", &c1])
            .env(TOKEN_ENV, TOKEN)
            .output()
            .await
            .unwrap();
        assert!(
            promoted.status.success(),
            "{}",
            String::from_utf8_lossy(&promoted.stderr)
        );
        let report: Value = serde_json::from_slice(&promoted.stdout).unwrap();
        assert_eq!(report["via"], "daemon");
        assert_eq!(report["by"], "api:cli:alice");

        let page = http
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("<h2>Pipeline</h2>") && page.contains(&c1[..12]),
            "{page}"
        );
        assert!(page.contains("failed upstream"), "{page}");

        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            r#"dli_gitops_promotions_total{target="prod",by="auto",result="promoted"} 1"#,
            r#"dli_gitops_promotions_total{target="prod",by="auto",result="failed_upstream"} 1"#,
            r#"dli_gitops_promotions_total{target="prod",by="manual",result="refused"} 2"#,
            r#"dli_gitops_promotions_total{target="prod",by="manual",result="promoted"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} not in\n{metrics}");
        }

        let stopped = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(daemon.id().unwrap().to_string())
            .status()
            .unwrap();
        assert!(stopped.success());
        let status = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
            .await
            .expect("the daemon stops on SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
        dev_cloud.shutdown().await;
        prod_cloud.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The target-level `restore: {from_target, on_missing_savepoint}` defaults.

mod target_restore_defaults {
    use dli_gitops::apply::{self, ApplyOptions, TargetContext};
    use dli_gitops::config::Config;
    use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
    use dli_gitops::emulator::{Emulator, EmulatorConfig};
    use dli_gitops::journal::{Journal, JournalOptions};
    use dli_gitops::pass::carry_for_target;
    use dli_gitops::promotion::RestoreError;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_with_nothing_upstream_fails_or_starts_stateless_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let dev_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("dev-cloud")))
            .await
            .unwrap();
        let prod_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("prod-cloud")))
            .await
            .unwrap();
        let jobs = dir.path().join("jobs");
        std::fs::create_dir_all(jobs.join("flink")).unwrap();
        std::fs::create_dir_all(jobs.join("environments")).unwrap();
        for environment in ["dev", "prod"] {
            std::fs::write(
                jobs.join(format!("environments/{environment}.yaml")),
                "variables: {}
",
            )
            .unwrap();
        }
        std::fs::write(
            jobs.join("flink/fresh.yaml"),
            "kind: FlinkSqlJob\nname: fresh\nqueue_name: q1\nsql_body: \"SELECT 1\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
        std::fs::write(dir.path().join("sk"), DEV_SECRET_KEY).unwrap();
        let write_config = |missing: &str| {
            let target = |name: &str, cloud: &dli_gitops::emulator::EmulatorHandle, extra: &str| {
                format!(
                    "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n{extra}",
                    api = cloud.dli_url(),
                    s3 = cloud.s3_url()
                )
            };
            let path = dir.path().join(format!("config-{missing}.yaml"));
            std::fs::write(
                &path,
                format!(
                    "state_dir: state-{missing}\nsources:\n  jobs: {{path: jobs}}\ntargets:\n{}{}",
                    target("dev", &dev_cloud, ""),
                    target(
                        "prod",
                        &prod_cloud,
                        &format!(
                            "    restore: {{from_target: dev, on_missing_savepoint: {missing}}}\n"
                        )
                    ),
                ),
            )
            .unwrap();
            Config::load(&path).unwrap()
        };

        // The default (`fail`): nothing to carry is an error that names the job and the fix.
        let config = write_config("fail");
        let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
        let prod = TargetContext::with_shared(&config, "prod", journal.clone(), None)
            .await
            .unwrap();
        let (desired, _) = dli_gitops::pass::desired_for(&prod, None).await.unwrap();
        assert!(
            desired.flink[0]
                .lifecycle
                .restore
                .as_ref()
                .is_some_and(|restore| restore.from_target.as_deref() == Some("dev")),
            "the target's default applies to a job without a restore of its own"
        );
        let error = carry_for_target(&config, &journal, &prod, &desired)
            .await
            .unwrap_err();
        assert!(matches!(error, RestoreError::Carry { .. }), "{error}");
        assert!(
            dli_gitops::promotion::error_text(&error).contains("the job is not live there"),
            "{error}"
        );
        prod.shutdown().await;
        drop(journal);

        // `stateless`: the job starts empty, and the restore counts as done.
        let config = write_config("stateless");
        let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
        let mut prod = TargetContext::with_shared(&config, "prod", journal.clone(), None)
            .await
            .unwrap();
        prod.options.poll_interval = std::time::Duration::from_millis(5);
        let (desired, _) = dli_gitops::pass::desired_for(&prod, None).await.unwrap();
        let carried = carry_for_target(&config, &journal, &prod, &desired)
            .await
            .unwrap();
        assert!(carried.is_empty());
        let report = apply::reconcile_once(
            &prod,
            &desired,
            &ApplyOptions {
                carried_savepoints: carried,
                ..prod.options.clone()
            },
        )
        .await
        .unwrap();
        assert!(report.converged(), "{}", report.render_text());
        let again = apply::reconcile_once(
            &prod,
            &desired,
            &ApplyOptions {
                dry_run: true,
                ..prod.options.clone()
            },
        )
        .await
        .unwrap();
        assert!(again.plan.is_empty(), "{}", again.plan.render_text());
        prod.shutdown().await;
        dev_cloud.shutdown().await;
        prod_cloud.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The commands a person runs, as child processes: `apply` dev, `promote` prod (refused for a
// revision that is not in the source or does not validate for prod, nothing journaled), then
// `apply` prod, which must apply the plan it showed although carrying dev's state journals
// records of its own (a restore started without state).

mod cli_promote_then_apply {
    use std::path::Path;
    use std::process::Output;

    use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
    use dli_gitops::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
    use serde_json::Value;

    use super::pipeline_end_to_end::commit;

    const DEV_ENV: &str =
        "variables: {flink_queue: dev_flink}\noverrides:\n  idle: {desired_state: stopped}\n";
    const PROD_ENV: &str =
        "variables: {flink_queue: prod_flink}\noverrides:\n  clicks: {cu_number: 4}\n";
    const CLICKS: &str = "kind: FlinkSqlJob\nname: clicks\nqueue_name: ${flink_queue}\nsql_body: \"SELECT 1\"\ncu_number: 2\ndesired_state: running\nupgrade_mode: savepoint\n";
    const IDLE: &str = "kind: FlinkSqlJob\nname: idle\nqueue_name: ${flink_queue}\nsql_body: \"SELECT 2\"\ncu_number: 2\ndesired_state: running\n";

    async fn run(config: &Path, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .await
            .unwrap()
    }

    fn text(output: &Output) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Two accounts (dev and prod emulators, prod started from `prod_config`), a repository
    /// with `clicks` and `idle` (returned with its first commit) and a config where prod is
    /// promoted from dev by hand and restores from dev's state.
    async fn two_clouds(
        dir: &Path,
        prod_config: EmulatorConfig,
    ) -> (
        EmulatorHandle,
        EmulatorHandle,
        std::path::PathBuf,
        String,
        std::path::PathBuf,
    ) {
        let dev_cloud = Emulator::start(EmulatorConfig::for_tests(dir.join("dev-cloud")))
            .await
            .unwrap();
        let prod_cloud = Emulator::start(prod_config).await.unwrap();
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let c1 = commit(
            &repo,
            &[
                ("environments/dev.yaml", DEV_ENV),
                ("environments/prod.yaml", PROD_ENV),
                ("flink/clicks.yaml", CLICKS),
                ("flink/idle.yaml", IDLE),
            ],
            "clicks and idle",
        );
        std::fs::write(dir.join("ak"), DEV_ACCESS_KEY).unwrap();
        std::fs::write(dir.join("sk"), DEV_SECRET_KEY).unwrap();
        let target = |name: &str, cloud: &EmulatorHandle, extra: &str| {
            format!(
                "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n{extra}",
                api = cloud.dli_url(),
                s3 = cloud.s3_url()
            )
        };
        let config = dir.join("dli-gitops.yaml");
        std::fs::write(
            &config,
            format!(
                "state_dir: state\nsources:\n  jobs:\n    git: {{url: \"{repo}\", branch: master}}\ntargets:\n{}{}",
                target("dev", &dev_cloud, ""),
                target(
                    "prod",
                    &prod_cloud,
                    "    promote_from: dev\n    promotion: {auto: false}\n    restore: {from_target: dev, on_missing_savepoint: stateless}\n"
                ),
                repo = repo.display()
            ),
        )
        .unwrap();
        (dev_cloud, prod_cloud, repo, c1, config)
    }

    async fn promotions(state_dir: &Path) -> Vec<Value> {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .args([
                "journal",
                "show",
                "--json",
                "--target",
                "prod",
                "--state-dir",
            ])
            .arg(state_dir)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|record| record["kind"] == "promotion")
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn promote_refuses_what_prod_cannot_read_and_the_first_apply_applies_the_plan_shown() {
        let dir = tempfile::tempdir().unwrap();
        let prod_config = EmulatorConfig::for_tests(dir.path().join("prod-cloud"));
        let (dev_cloud, prod_cloud, repo, c1, config) = two_clouds(dir.path(), prod_config).await;
        let state_dir = dir.path().join("state");

        let dev = run(&config, &["apply", "--auto-approve", "--target", "dev"]).await;
        assert!(dev.status.success(), "{}", text(&dev));

        // A commit id the repository does not have: refused, nothing journaled.
        let missing = "0123456789abcdef0123456789abcdef01234567";
        let refused = run(&config, &["promote", "prod", "--revision", missing]).await;
        assert!(!refused.status.success(), "{}", text(&refused));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("refused") && stderr.contains("is not in source `jobs`"),
            "{}",
            text(&refused)
        );
        // A commit that does not validate for prod (an override of a job that does not exist):
        // refused with the problem, nothing journaled.
        let broken = commit(
            &repo,
            &[(
                "environments/prod.yaml",
                "variables: {flink_queue: prod_flink}\noverrides:\n  clickz: {cu_number: 4}\n",
            )],
            "prod override of a job that does not exist",
        );
        let refused = run(&config, &["promote", "prod", "--revision", &broken]).await;
        assert!(!refused.status.success(), "{}", text(&refused));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("does not validate for environment `prod`")
                && stderr.contains("clickz"),
            "{}",
            text(&refused)
        );
        assert!(promotions(&state_dir).await.is_empty());

        // dev's converged revision (C1) is promoted.
        let promoted = run(&config, &["promote", "prod"]).await;
        assert!(promoted.status.success(), "{}", text(&promoted));
        let recorded = promotions(&state_dir).await;
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0]["revision"], c1.as_str());

        // The first apply after the promotion applies the plan it showed: carrying dev's state
        // (and journaling that `idle`, stopped without a savepoint in dev, starts empty) happens
        // before the plan is shown.
        let applied = run(&config, &["apply", "--auto-approve", "--target", "prod"]).await;
        assert!(applied.status.success(), "{}", text(&applied));
        let stdout = String::from_utf8_lossy(&applied.stdout);
        assert!(
            stdout.contains("2 succeeded, 0 failed"),
            "{}",
            text(&applied)
        );
        let again = run(
            &config,
            &["plan", "--detailed-exitcode", "--target", "prod"],
        )
        .await;
        assert_eq!(again.status.code(), Some(0), "{}", text(&again));

        // prod's clicks started from dev's carried state; idle started empty.
        let prod = super::clients(&prod_cloud);
        let listed = prod
            .dli
            .list_jobs(&dli_gitops::cloud::ListJobsQuery::default())
            .await
            .unwrap();
        let clicks = listed.iter().find(|job| job.name == "clicks").unwrap();
        assert!(clicks.status.is_running(), "{listed:?}");
        let runs: Value = reqwest::get(format!(
            "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{}/runs",
            prod_cloud.dli_url(),
            clicks.id
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert!(
            runs["runs"][0]["restored_from"]
                .as_str()
                .unwrap_or_default()
                .starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/"),
            "{runs}"
        );
        let idle = listed.iter().find(|job| job.name == "idle").unwrap();
        assert!(idle.status.is_running(), "{listed:?}");
        dev_cloud.shutdown().await;
        prod_cloud.shutdown().await;
    }

    /// `apply prod` killed at random moments, again and again, right after a promotion that
    /// carries dev's state: the carried savepoint is restored exactly once (a restore applied
    /// again after a crash would start a second run from it), both jobs end running, and the
    /// journal verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apply_killed_after_a_promotion_restores_the_carried_savepoint_once() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = std::env::var("RELIABILITY_CRASH_SEED")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| rand::thread_rng().r#gen());
        eprintln!("promotion crash test seed {seed} (RELIABILITY_CRASH_SEED={seed} replays it)");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut slow = EmulatorConfig::for_tests(dir.path().join("prod-cloud"));
        slow.delays.submit_ms = 150;
        slow.delays.cancel_ms = 150;
        slow.delays.savepoint_ms = 150;
        let (dev_cloud, prod_cloud, _, _, config) = two_clouds(dir.path(), slow).await;
        let dev = run(&config, &["apply", "--auto-approve", "--target", "dev"]).await;
        assert!(dev.status.success(), "{}", text(&dev));
        let promoted = run(&config, &["promote", "prod"]).await;
        assert!(promoted.status.success(), "{}", text(&promoted));

        let kills = 12;
        for _ in 0..kills {
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
                .args(["apply", "--auto-approve", "--target", "prod", "--config"])
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(rng.gen_range(30..1500))).await;
            let _ = child.kill().await;
        }
        let mut converged = false;
        let mut last = String::new();
        for _ in 0..15 {
            let applied = run(&config, &["apply", "--auto-approve", "--target", "prod"]).await;
            last = text(&applied);
            let plan = run(
                &config,
                &["plan", "--detailed-exitcode", "--target", "prod"],
            )
            .await;
            if plan.status.code() == Some(0) {
                converged = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        assert!(converged, "seed {seed}: prod did not converge:\n{last}");

        let prod = super::clients(&prod_cloud);
        let listed = prod
            .dli
            .list_jobs(&dli_gitops::cloud::ListJobsQuery::default())
            .await
            .unwrap();
        for name in ["clicks", "idle"] {
            let job = listed.iter().find(|job| job.name == name).unwrap();
            assert!(job.status.is_running(), "seed {seed}: {listed:?}");
        }
        let clicks = listed.iter().find(|job| job.name == "clicks").unwrap();
        let runs: Value = reqwest::get(format!(
            "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{}/runs",
            prod_cloud.dli_url(),
            clicks.id
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let carried = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|run| {
                run["restored_from"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/")
            })
            .count();
        assert_eq!(
            carried, 1,
            "seed {seed}: the carried savepoint restored {carried} times: {runs}"
        );
        let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .args(["journal", "verify", "--state-dir"])
            .arg(dir.path().join("state"))
            .output()
            .await
            .unwrap();
        assert!(verify.status.success(), "{}", text(&verify));
        eprintln!(
            "promotion crash test: {kills} SIGKILLs of apply prod; runs of clicks: {}",
            runs["runs"].as_array().unwrap().len()
        );
        dev_cloud.shutdown().await;
        prod_cloud.shutdown().await;
    }
}
