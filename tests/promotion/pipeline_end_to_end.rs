//! End to end: a git repository, two accounts (two emulators: separate DLI, DLF and OBS), one
//! journal, driven through the library the way the daemon drives it: reconcile dev, feed the
//! pipeline what dev looks like, let the gate promote, reconcile prod at the promoted revision
//! with prod's environment.

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
    crate::support::git::commit_work_tree(&repository, message)
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
        let dev_emulator = Emulator::start(EmulatorConfig::for_tests(dir.path().join("dev-cloud")))
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
        restored_from.starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/"),
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
