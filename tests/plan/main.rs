//! The planner through its public API: rendered plans as snapshots, and properties checked
//! against a small pure simulator of the live service (apply the plan, re-plan, nothing left).

use std::collections::BTreeMap;

use dli_gitops::model::{
    DesiredDlfJob, DesiredFlinkJob, DesiredJobs, FlinkJobConfig, FlinkJobStatus, JobKind,
    Lifecycle, MANAGED_TAG_KEY, MANAGED_TAG_VALUE, ObservedDlfJob, ObservedFlinkJob, ObservedJobs,
    Restore, RunState, SourceLocation, UpgradeMode,
};
use dli_gitops::plan::{
    ActionClass, JobAction, JournalDlfJob, JournalFlinkJob, JournalView, Plan, PlanPolicy,
    SavepointSource, Step, plan,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Builders

fn sql_job(name: &str, sql: &str) -> DesiredFlinkJob {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("flink_queue".into());
    config.sql_body = Some(sql.into());
    config.tags.insert("team".into(), "growth".into());
    DesiredFlinkJob {
        name: name.into(),
        config,
        lifecycle: Lifecycle {
            desired_state: RunState::Running,
            upgrade_mode: UpgradeMode::Savepoint,
            restore: None,
            prune: true,
        },
        source: SourceLocation {
            file: format!("flink/{name}.yaml"),
            line: 1,
        },
        digest: format!("sha256-{name}"),
        policy: Default::default(),
    }
}

fn jar_job(name: &str) -> DesiredFlinkJob {
    let mut job = sql_job(name, "");
    job.config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
    job.config.queue_name = Some("flink_queue".into());
    job.config.entrypoint = Some("obs://jars/fraud-detector-2.1.jar".into());
    job.config.main_class = Some("com.example.FraudDetector".into());
    job
}

fn live_of(desired: &DesiredFlinkJob, id: i64, status: &str) -> ObservedFlinkJob {
    let mut config = desired.config.clone();
    config
        .tags
        .insert(MANAGED_TAG_KEY.into(), MANAGED_TAG_VALUE.into());
    ObservedFlinkJob {
        id,
        name: desired.name.clone(),
        status: FlinkJobStatus::new(status),
        update_time: 1_711_647_009_620,
        config,
        savepoint_path: None,
        status_desc: None,
    }
}

fn dlf_job(name: &str, digest: &str) -> DesiredDlfJob {
    DesiredDlfJob {
        name: name.into(),
        definition: serde_json::json!({
            "name": name,
            "nodes": [{"name": "load", "type": "DWSSQL", "properties": [{"name": "scriptName", "value": "load_orders"}]}],
            "schedule": {"type": "CRON", "cron": {"expression": "0 0 2 * * ?"}}
        }),
        scripts: BTreeMap::new(),
        import: Default::default(),
        prune: true,
        desired_state: None,
        source: SourceLocation::default(),
        digest: digest.into(),
        policy: Default::default(),
    }
}

fn policy() -> PlanPolicy {
    PlanPolicy {
        prune: true,
        allow_empty_prune: false,
        backups: true,
        ..PlanPolicy::default()
    }
}

fn managed(view: &mut JournalView, name: &str) -> JournalFlinkJob {
    view.flink
        .entry(name.into())
        .or_insert_with(|| JournalFlinkJob {
            managed: true,
            ..JournalFlinkJob::default()
        })
        .clone()
}

/// One scenario per action class, as (desired, observed, view) contributions.
struct Scenario {
    desired: DesiredJobs,
    observed: ObservedJobs,
    view: JournalView,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario {
            desired: DesiredJobs::default(),
            observed: ObservedJobs::default(),
            view: JournalView::default(),
        }
    }

    fn plan(&self, policy: &PlanPolicy) -> Plan {
        plan(&self.desired, &self.observed, &self.view, policy)
    }

    fn create(&mut self) -> &mut Scenario {
        let job = sql_job(
            "clickstream-agg",
            "INSERT INTO clicks_per_minute\nSELECT page, COUNT(*)\nFROM clicks\nGROUP BY page, TUMBLE(ts, INTERVAL '1' MINUTE);\n",
        );
        let mut job = job;
        job.config.cu_number = 4;
        job.config.checkpoint_enabled = true;
        self.desired.flink.push(job);
        self
    }

    fn update(&mut self) -> &mut Scenario {
        let job = sql_job("alerts", "INSERT INTO alerts SELECT * FROM events;");
        let mut live = live_of(&job, 11, "job_running");
        live.config.smn_topic = Some("alerts-old".into());
        let mut job = job;
        job.config.smn_topic = Some("alerts-prod".into());
        managed(&mut self.view, "alerts");
        self.desired.flink.push(job);
        self.observed.flink.push(live);
        self
    }

    fn upgrade(&mut self) -> &mut Scenario {
        let old_sql = "INSERT INTO sessions\nSELECT user_id, COUNT(*)\nFROM clicks\nGROUP BY user_id, SESSION(ts, INTERVAL '30' MINUTE);\n";
        let new_sql = "INSERT INTO sessions\nSELECT user_id, COUNT(*), MAX(ts)\nFROM clicks\nGROUP BY user_id, SESSION(ts, INTERVAL '30' MINUTE);\n";
        let mut job = sql_job("sessionize", new_sql);
        job.config.cu_number = 8;
        let mut live = live_of(&sql_job("sessionize", old_sql), 12, "job_running");
        live.config.flink_version = Some("1.15".into());
        managed(&mut self.view, "sessionize");
        self.desired.flink.push(job);
        self.observed.flink.push(live);
        self
    }

    fn restore(&mut self) -> &mut Scenario {
        let mut job = jar_job("fraud-detector");
        job.lifecycle.restore = Some(Restore {
            savepoint_path: Some("obs://prod-ckpt/savepoints/fraud-detector/2026-11-01/".into()),
            nonce: Some(2),
            from_target: None,
            from_catalog: None,
        });
        let live = live_of(&job, 13, "job_running");
        let mut entry = managed(&mut self.view, "fraud-detector");
        entry.applied_restore_key = Some(
            Restore {
                savepoint_path: Some(
                    "obs://prod-ckpt/savepoints/fraud-detector/2026-11-01/".into(),
                ),
                nonce: Some(1),
                from_target: None,
                from_catalog: None,
            }
            .key(),
        );
        self.view.flink.insert("fraud-detector".into(), entry);
        self.desired.flink.push(job);
        self.observed.flink.push(live);
        self
    }

    fn start(&mut self) -> &mut Scenario {
        let job = sql_job("reports", "INSERT INTO reports SELECT * FROM orders;");
        let mut live = live_of(&job, 14, "job_cancel_success");
        live.savepoint_path = Some("obs://prod-ckpt/jobs/savepoint/14/2026-11-20_10-00-00/".into());
        managed(&mut self.view, "reports");
        self.desired.flink.push(job);
        self.observed.flink.push(live);
        self
    }

    fn stop(&mut self) -> &mut Scenario {
        let mut job = sql_job("backfill", "INSERT INTO history SELECT * FROM archive;");
        job.lifecycle.desired_state = RunState::Stopped;
        let live = live_of(&job, 15, "job_running");
        managed(&mut self.view, "backfill");
        self.desired.flink.push(job);
        self.observed.flink.push(live);
        self
    }

    fn prune(&mut self) -> &mut Scenario {
        let gone = sql_job("legacy-etl", "INSERT INTO old SELECT * FROM older;");
        self.observed.flink.push(live_of(&gone, 16, "job_running"));
        self
    }

    fn dlf_update(&mut self) -> &mut Scenario {
        let job = dlf_job("nightly-load", "sha256-new");
        let mut live_definition = job.definition.clone();
        live_definition["schedule"]["cron"]["expression"] = serde_json::json!("0 0 1 * * ?");
        self.observed.dlf.push(ObservedDlfJob {
            name: "nightly-load".into(),
            definition: live_definition,
            last_update: Some(1_711_647_009_620),
            status: None,
        });
        self.view.dlf.insert(
            "nightly-load".into(),
            JournalDlfJob {
                managed: true,
                protected: false,
                imported_digest: Some("sha256-old".into()),
                ..Default::default()
            },
        );
        self.desired.dlf.push(job);
        self
    }

    fn waiting(&mut self) -> &mut Scenario {
        let mut job = sql_job("enrich", "INSERT INTO enriched SELECT * FROM raw;");
        let live = live_of(&job, 17, "job_submitting");
        job.config.parallel_number = 4;
        managed(&mut self.view, "enrich");
        self.desired.flink.push(job);
        self.observed.flink.push(live);
        self
    }

    fn steady(&mut self) -> &mut Scenario {
        let job = sql_job("steady", "INSERT INTO a SELECT * FROM b;");
        let live = live_of(&job, 18, "job_running");
        managed(&mut self.view, "steady");
        self.desired.flink.push(job);
        self.observed.flink.push(live);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots of the rendered text

#[test]
fn render_every_class_in_one_plan() {
    let mut scenario = Scenario::new();
    scenario
        .create()
        .update()
        .upgrade()
        .restore()
        .start()
        .stop()
        .prune()
        .dlf_update()
        .waiting()
        .steady();
    let plan = scenario.plan(&policy());
    let classes: Vec<ActionClass> = plan.actions.iter().map(|action| action.class).collect();
    for class in [
        ActionClass::None,
        ActionClass::Create,
        ActionClass::UpdateInPlace,
        ActionClass::Upgrade,
        ActionClass::Restore,
        ActionClass::Start,
        ActionClass::Stop,
        ActionClass::Prune,
    ] {
        assert!(
            classes.contains(&class),
            "{class:?} missing from {classes:?}"
        );
    }
    insta::assert_snapshot!("all_classes", plan.render_text());
}

/// Adds one scenario's jobs.
type Builder = fn(&mut Scenario) -> &mut Scenario;

#[test]
fn render_each_class_alone() {
    let cases: [(&str, Builder, ActionClass); 9] = [
        ("create", Scenario::create, ActionClass::Create),
        ("update", Scenario::update, ActionClass::UpdateInPlace),
        ("upgrade", Scenario::upgrade, ActionClass::Upgrade),
        ("restore", Scenario::restore, ActionClass::Restore),
        ("start", Scenario::start, ActionClass::Start),
        ("stop", Scenario::stop, ActionClass::Stop),
        ("prune", Scenario::prune, ActionClass::Prune),
        (
            "dlf_update",
            Scenario::dlf_update,
            ActionClass::UpdateInPlace,
        ),
        ("waiting", Scenario::waiting, ActionClass::Upgrade),
    ];
    for (name, build, class) in cases {
        let mut scenario = Scenario::new();
        build(&mut scenario);
        // Prune needs something in git, or the empty-git guard refuses it.
        if name == "prune" {
            scenario.steady();
        }
        let plan = scenario.plan(&policy());
        assert!(
            plan.changes().all(|action| action.class == class),
            "{name}: {plan:#?}"
        );
        assert_eq!(plan.changes().count(), 1, "{name}");
        insta::assert_snapshot!(name, plan.render_text());
    }
}

#[test]
fn render_a_stateless_upgrade() {
    let mut scenario = Scenario::new();
    scenario.upgrade();
    scenario.desired.flink[0].lifecycle.upgrade_mode = UpgradeMode::Stateless;
    let stateless = scenario.plan(&policy());
    insta::assert_snapshot!("upgrade_stateless", stateless.render_text());
}

#[test]
fn render_no_changes_and_guard_warnings() {
    let mut scenario = Scenario::new();
    scenario.steady();
    let plan = scenario.plan(&policy());
    assert!(plan.is_empty());
    insta::assert_snapshot!("no_changes", plan.render_text());

    let mut empty_git = Scenario::new();
    empty_git.prune();
    let guarded = empty_git.plan(&policy());
    assert!(guarded.is_empty());
    insta::assert_snapshot!("empty_git_guard", guarded.render_text());
}

#[test]
fn json_plan_names_every_step_and_savepoint() {
    let mut scenario = Scenario::new();
    scenario.upgrade();
    let plan = scenario.plan(&policy());
    insta::assert_snapshot!("upgrade_json", plan.render_json());
}

mod properties;
