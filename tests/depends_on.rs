//! `depends_on` between the jobs of one target, against the in-process emulator: the emulator's
//! run log (`/_emulator/v1/{project}/jobs/{id}/runs`) shows upstream jobs started first and
//! stopped last; an upstream upgrade leaves its settled dependents running; a dependent of a
//! Degraded job is held (plan and report say why) until its dependency is healthy; `validate`
//! refuses cycles, unknown names and ambiguous names at their `file:line`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dli_gitops::apply;
use dli_gitops::emulator::{EmulatorConfig, EmulatorDelays};
use dli_gitops::model::{
    DesiredFlinkJob, DesiredJobs, FlinkJobConfig, FlinkJobStatus, JobKind, JobPolicy, Lifecycle,
    ObservedFlinkJob, ObservedJobs, SourceLocation,
};
use dli_gitops::plan::{ActionClass, JournalView, PlanPolicy};
use serde_json::Value;

use support::target::{Harness, PRUNE};

impl Harness {
    /// Short but non-zero delays, so that every start and stop has its own instant.
    async fn start() -> Harness {
        let mut emulator_config = EmulatorConfig::for_tests(PathBuf::new());
        emulator_config.delays = EmulatorDelays {
            submit_ms: 40,
            cancel_ms: 40,
            savepoint_ms: 40,
            ..EmulatorDelays::zero()
        };
        let mut harness = Harness::over_emulator(emulator_config, PRUNE).await;
        // One action at a time would order them by plan order alone: the default parallelism
        // shows that the order comes from depends_on.
        harness.context.as_mut().unwrap().options.parallel_actions = 4;
        harness
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.dir.path().join("repo").join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn sql_job(&self, name: &str, sql: &str, fields: &str) {
        self.write(
            &format!("flink/{name}.yaml"),
            &format!(
                "kind: FlinkSqlJob\nname: {name}\nqueue_name: q1\nsql_body: \"{sql}\"\n{fields}"
            ),
        );
    }

    async fn live(&self) -> BTreeMap<String, ObservedFlinkJob> {
        let (observed, _) = apply::observe(self.context()).await.expect("observe");
        observed
            .flink
            .into_iter()
            .map(|job| (job.name.clone(), job))
            .collect()
    }

    /// The emulator's run log of a job.
    async fn runs(&self, name: &str) -> Vec<Value> {
        let live = self.live().await;
        let id = live
            .get(name)
            .unwrap_or_else(|| panic!("{name} is live"))
            .id;
        self.emulator_runs(id).await
    }
}

fn at(run: &Value, field: &str) -> i64 {
    run[field]
        .as_i64()
        .unwrap_or_else(|| panic!("run has {field}: {run}"))
}

/// Upstream `z-source` → `m-enrich` → `a-sink`: names sorted against the dependencies, so plan
/// order (by name) alone would start the sink first.
fn pipeline(harness: &Harness, state: &str, source_sql: &str) {
    harness.sql_job("z-source", source_sql, &format!("desired_state: {state}\n"));
    harness.sql_job(
        "m-enrich",
        "SELECT 2 AS v;",
        &format!("desired_state: {state}\ndepends_on: [z-source]\n"),
    );
    harness.sql_job(
        "a-sink",
        "SELECT 3 AS v;",
        &format!("desired_state: {state}\ndepends_on:\n  - m-enrich\n"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_jobs_start_first_and_stop_last_in_the_emulators_run_log() {
    let harness = Harness::start().await;
    pipeline(&harness, "running", "SELECT 1 AS v;");

    let preview = harness.reconcile(true).await;
    let expected_order = vec![
        vec!["z-source".to_string()],
        vec!["m-enrich".to_string()],
        vec!["a-sink".to_string()],
    ];
    assert_eq!(preview.plan.order(), expected_order);
    let text = preview.plan.render_text();
    assert!(
        text.contains("Order (depends_on):\n  1. z-source\n  2. m-enrich\n  3. a-sink\n"),
        "{text}"
    );
    assert!(text.contains("after: z-source"), "{text}");
    let json: Value = serde_json::from_str(&preview.plan.render_json()).unwrap();
    assert_eq!(
        json["order"],
        serde_json::json!([["z-source"], ["m-enrich"], ["a-sink"]])
    );
    let enrich = json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|action| action["name"] == "m-enrich")
        .unwrap();
    assert_eq!(enrich["after"], serde_json::json!(["z-source"]));

    harness.apply_converged().await;
    let source = harness.runs("z-source").await;
    let enrich = harness.runs("m-enrich").await;
    let sink = harness.runs("a-sink").await;
    assert!(
        at(&source[0], "started_at") < at(&enrich[0], "started_at")
            && at(&enrich[0], "started_at") < at(&sink[0], "started_at"),
        "upstream starts first: {source:?} {enrich:?} {sink:?}"
    );

    // Stopping the pipeline: downstream first.
    pipeline(&harness, "stopped", "SELECT 1 AS v;");
    let report = harness.apply_converged().await;
    assert_eq!(
        report.plan.order(),
        vec![
            vec!["a-sink".to_string()],
            vec!["m-enrich".to_string()],
            vec!["z-source".to_string()],
        ]
    );
    let source = harness.runs("z-source").await;
    let enrich = harness.runs("m-enrich").await;
    let sink = harness.runs("a-sink").await;
    assert!(
        at(&sink[0], "stopped_at") < at(&enrich[0], "stopped_at")
            && at(&enrich[0], "stopped_at") < at(&source[0], "stopped_at"),
        "upstream stops last: {source:?} {enrich:?} {sink:?}"
    );

    // And up again: upstream first, each from its stop savepoint.
    pipeline(&harness, "running", "SELECT 1 AS v;");
    harness.apply_converged().await;
    let source = harness.runs("z-source").await;
    let enrich = harness.runs("m-enrich").await;
    let sink = harness.runs("a-sink").await;
    assert!(
        at(&source[1], "started_at") < at(&enrich[1], "started_at")
            && at(&enrich[1], "started_at") < at(&sink[1], "started_at"),
        "upstream starts first again: {source:?} {enrich:?} {sink:?}"
    );

    // An upgrade of the upstream job alone: its settled dependents keep running (Kafka keeps
    // what it writes meanwhile), they are not stopped around it.
    pipeline(&harness, "running", "SELECT 10 AS v;");
    let report = harness.apply_converged().await;
    let upgrade = report
        .plan
        .actions
        .iter()
        .find(|action| action.name == "z-source")
        .unwrap();
    assert_eq!(upgrade.class, ActionClass::Upgrade);
    assert!(upgrade.on_hold.is_none(), "{}", report.plan.render_text());
    let source = harness.runs("z-source").await;
    let enrich = harness.runs("m-enrich").await;
    let sink = harness.runs("a-sink").await;
    assert_eq!(source.len(), 3, "the upstream job restarted: {source:?}");
    assert_eq!(
        enrich.len(),
        2,
        "the dependent was not restarted: {enrich:?}"
    );
    assert_eq!(sink.len(), 2, "{sink:?}");
    assert!(enrich[1]["stopped_at"].is_null() && sink[1]["stopped_at"].is_null());
    let live = harness.live().await;
    assert!(live["m-enrich"].status.is_running() && live["a-sink"].status.is_running());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_of_a_degraded_job_is_held_until_its_dependency_is_healthy() {
    let harness = Harness::start().await;
    // The emulator fails every run of a job whose SQL holds this marker (`emulator::faults`).
    let failing = "SELECT 1 AS v; -- dli-emulator:fail-on-start";
    harness.sql_job("up", failing, "");
    harness.sql_job("down", "SELECT 2 AS v;", "depends_on: [up]\n");

    // First pass: `up` is created, its start fails; `down` waits for it and is not started.
    let first = harness.reconcile(false).await;
    assert!(!first.converged());
    let down = first
        .results
        .iter()
        .find(|result| result.name == "down")
        .expect("down has a result");
    let error = down.error.as_ref().expect("down did not run");
    assert_eq!(error.code.as_deref(), Some("DEPENDENCY_NOT_READY"));
    assert!(error.message.contains("`up`"), "{}", error.message);
    assert_eq!(down.steps_done, 0);
    assert!(!harness.live().await.contains_key("down"));

    // Next pass: `up` is Degraded (job_submit_fail), so `down` is held, and says why.
    let held = harness.reconcile(false).await;
    let action = held
        .plan
        .actions
        .iter()
        .find(|action| action.name == "down")
        .unwrap();
    assert_eq!(action.class, ActionClass::Create);
    let why = action.on_hold.as_deref().expect("down is on hold");
    assert!(why.contains("`up` is Degraded"), "{why}");
    assert!(action.reason.starts_with("held: "), "{}", action.reason);
    assert_eq!(held.plan.summary().held, 1);
    let text = held.plan.render_text();
    assert!(text.contains("create FlinkSqlJob down [on hold]"), "{text}");
    assert!(text.contains("1 on hold"), "{text}");
    assert!(held.results.iter().all(|result| result.name != "down"));
    assert!(!harness.live().await.contains_key("down"));

    // `up` fixed: it is upgraded first; `down` goes once `up` is no longer Degraded.
    harness.sql_job("up", "SELECT 1 AS v;", "");
    let fixed = harness.reconcile(false).await;
    assert!(
        fixed
            .plan
            .actions
            .iter()
            .any(|action| action.name == "down" && action.on_hold.is_some()),
        "a pass plans from what it observed: up was still Degraded\n{}",
        fixed.plan.render_text()
    );
    harness.apply_converged().await;
    let live = harness.live().await;
    assert!(live["up"].status.is_running() && live["down"].status.is_running());
    let report = harness.reconcile(true).await;
    assert!(report.plan.is_empty(), "{}", report.plan.render_text());
    harness.stop().await;
}

fn desired(name: &str, depends_on: &[&str]) -> DesiredFlinkJob {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.sql_body = Some(format!("SELECT '{name}';"));
    config.queue_name = Some("q1".into());
    DesiredFlinkJob {
        name: name.into(),
        config,
        lifecycle: Lifecycle::default(),
        source: SourceLocation::default(),
        digest: format!("digest-{name}"),
        policy: JobPolicy {
            depends_on: depends_on.iter().map(|name| name.to_string()).collect(),
            ..JobPolicy::default()
        },
    }
}

fn live(job: &DesiredFlinkJob, id: i64, status: &str) -> ObservedFlinkJob {
    let mut config = job.config.clone();
    config.tags.insert("managed-by".into(), "dli-gitops".into());
    ObservedFlinkJob {
        id,
        name: job.name.clone(),
        status: FlinkJobStatus::new(status),
        update_time: 1,
        config,
        savepoint_path: None,
        status_desc: None,
    }
}

/// The planner's rule, on chosen statuses: an upstream upgrade is held while a dependent is
/// moving, and runs after the dependents' own actions otherwise.
#[test]
fn an_upstream_upgrade_waits_for_its_dependents_to_settle() {
    let up = desired("up", &[]);
    let down = desired("down", &["up"]);
    let mut changed_up = up.clone();
    changed_up.config.sql_body = Some("SELECT 'new';".into());
    changed_up.digest = "digest-up-2".into();
    let jobs = DesiredJobs {
        flink: vec![down.clone(), changed_up.clone()],
        dlf: Vec::new(),
    };
    let policy = PlanPolicy {
        prune: true,
        ..PlanPolicy::default()
    };

    // The dependent is starting: the upgrade waits.
    let observed = ObservedJobs {
        flink: vec![
            live(&up, 1, "job_running"),
            live(&down, 2, "job_submitting"),
        ],
        dlf: Vec::new(),
    };
    let plan = dli_gitops::plan::plan(&jobs, &observed, &JournalView::default(), &policy);
    let upgrade = plan.actions.iter().find(|a| a.name == "up").unwrap();
    assert_eq!(upgrade.class, ActionClass::Upgrade);
    let why = upgrade.on_hold.as_deref().expect("held");
    assert!(why.contains("dependent `down` is job_submitting"), "{why}");

    // Settled: the upgrade goes, and the dependent is left running (no action for it).
    let observed = ObservedJobs {
        flink: vec![live(&up, 1, "job_running"), live(&down, 2, "job_running")],
        dlf: Vec::new(),
    };
    let plan = dli_gitops::plan::plan(&jobs, &observed, &JournalView::default(), &policy);
    let upgrade = plan.actions.iter().find(|a| a.name == "up").unwrap();
    assert!(upgrade.on_hold.is_none());
    let dependent = plan.actions.iter().find(|a| a.name == "down").unwrap();
    assert_eq!(dependent.class, ActionClass::None);

    // Both change: the dependent's upgrade first, the upstream's after it.
    let mut changed_down = down.clone();
    changed_down.config.sql_body = Some("SELECT 'down 2';".into());
    changed_down.digest = "digest-down-2".into();
    let both = DesiredJobs {
        flink: vec![changed_down, changed_up],
        dlf: Vec::new(),
    };
    let plan = dli_gitops::plan::plan(&both, &observed, &JournalView::default(), &policy);
    let upgrade = plan.actions.iter().find(|a| a.name == "up").unwrap();
    assert_eq!(upgrade.after, vec!["down".to_string()]);
    assert_eq!(
        plan.order(),
        vec![vec!["down".to_string()], vec!["up".to_string()]]
    );

    // A dependency that is missing (not live, not created by this plan) holds its dependent.
    let only_down = DesiredJobs {
        flink: vec![down.clone()],
        dlf: Vec::new(),
    };
    let plan = dli_gitops::plan::plan(
        &only_down,
        &ObservedJobs::default(),
        &JournalView::default(),
        &policy,
    );
    let held = &plan.actions[0];
    assert!(
        held.on_hold
            .as_deref()
            .is_some_and(|why| why.contains("`up` is missing")),
        "{:?}",
        held.on_hold
    );
}

fn snapshot(dir: &Path) -> dli_gitops::desired::snapshot::RepoSnapshot {
    dli_gitops::desired::read_directory(dir).expect("repository reads")
}

fn write(root: &Path, relative: &str, content: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn problems(root: &Path) -> Vec<String> {
    match dli_gitops::desired::resolve(&snapshot(root), None) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn validate_refuses_cycles_unknown_and_ambiguous_names_at_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let job = |name: &str, extra: &str| {
        format!("kind: FlinkSqlJob\nname: {name}\nsql_body: \"SELECT 1;\"\n{extra}")
    };
    write(root, "flink/a.yaml", &job("a", "depends_on: [b]\n"));
    write(root, "flink/b.yaml", &job("b", "depends_on:\n  - c\n"));
    write(root, "flink/c.yaml", &job("c", "depends_on:\n  - a\n"));
    write(root, "flink/d.yaml", &job("d", "depends_on: [nope, d]\n"));
    write(root, "flink/e.yaml", &job("e", "depends_on: [shared]\n"));
    write(root, "flink/shared.yaml", &job("shared", ""));
    write(
        root,
        "dlf/shared.yaml",
        "kind: DlfJob\nname: shared\ndefinition_file: shared.job\n",
    );
    write(
        root,
        "dlf/shared.job",
        r#"{"name": "shared", "nodes": [{"name": "n", "type": "Dummy"}], "schedule": {"type": "EXECUTE_ONCE"}, "processType": "BATCH"}"#,
    );
    let found = problems(root);
    let text = found.join("\n");
    // The cycle is reported once, at the item that closes it.
    let cycles: Vec<&String> = found
        .iter()
        .filter(|p| p.contains("dependency cycle"))
        .collect();
    assert_eq!(cycles.len(), 1, "{text}");
    assert!(
        cycles[0].starts_with("flink/c.yaml:5:") && cycles[0].contains("a -> b -> c -> a"),
        "{text}"
    );
    assert!(
        text.contains("flink/d.yaml:4:14: `nope` in depends_on is not a job of this target"),
        "{text}"
    );
    assert!(
        text.contains("flink/d.yaml:4:20: `d` depends on itself"),
        "{text}"
    );
    assert!(
        text.contains(
            "flink/e.yaml:4:14: `shared` in depends_on names both a Flink job and a DLF job"
        ),
        "{text}"
    );

    // Fixed: prefixes pick the kind; a DLF job may depend on a Flink job and back.
    write(root, "flink/c.yaml", &job("c", ""));
    write(root, "flink/d.yaml", &job("d", "depends_on: [c]\n"));
    write(
        root,
        "flink/e.yaml",
        &job("e", "depends_on: [\"dlf:shared\", \"flink:shared\"]\n"),
    );
    let resolved = dli_gitops::desired::resolve(&snapshot(root), None).expect("valid now");
    let e = resolved.flink.iter().find(|job| job.name == "e").unwrap();
    assert_eq!(
        e.policy.depends_on,
        vec!["dlf:shared".to_string(), "shared".to_string()]
    );
    // depends_on is no part of the digest: adding it restarts nothing.
    let d = resolved.flink.iter().find(|job| job.name == "d").unwrap();
    write(root, "flink/d.yaml", &job("d", ""));
    let without = dli_gitops::desired::resolve(&snapshot(root), None).unwrap();
    let d_without = without.flink.iter().find(|job| job.name == "d").unwrap();
    assert_eq!(d.digest, d_without.digest);

    // The command says the same, with the location.
    write(root, "flink/d.yaml", &job("d", "depends_on: [missing]\n"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["validate", "--repo"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("flink/d.yaml:4:14") && stdout.contains("`missing` in depends_on"),
        "{stdout}"
    );
}

#[test]
fn the_schema_shows_the_new_fields() {
    let schema = dli_gitops::desired::schema();
    let text = schema.to_string();
    for field in ["depends_on", "drift", "ignore_differences"] {
        assert!(
            text.contains(&format!("\"{field}\"")),
            "{field} in the schema"
        );
    }
    let _ = PathBuf::new();
}

/// Across kinds: a DLF job that loads what a Flink job writes is imported after the Flink job is
/// created and started, and a DLF job is held while its Flink dependency is Degraded.
#[test]
fn a_dlf_job_waits_for_the_flink_job_it_depends_on() {
    let writer = desired("writer", &[]);
    let loader = dli_gitops::model::DesiredDlfJob {
        name: "loader".into(),
        definition: serde_json::json!({"name": "loader", "nodes": [{"name": "n", "type": "Dummy"}], "schedule": {"type": "EXECUTE_ONCE"}, "processType": "BATCH"}),
        scripts: Default::default(),
        import: Default::default(),
        prune: true,
        desired_state: None,
        source: SourceLocation::default(),
        digest: "digest-loader".into(),
        policy: JobPolicy {
            depends_on: vec!["writer".into()],
            ..JobPolicy::default()
        },
    };
    let jobs = DesiredJobs {
        flink: vec![writer.clone()],
        dlf: vec![loader],
    };
    let policy = PlanPolicy::default();
    let plan = dli_gitops::plan::plan(
        &jobs,
        &ObservedJobs::default(),
        &JournalView::default(),
        &policy,
    );
    assert_eq!(
        plan.order(),
        vec![vec!["writer".to_string()], vec!["dlf:loader".to_string()]]
    );

    let observed = ObservedJobs {
        flink: vec![live(&writer, 1, "job_running_exception")],
        dlf: Vec::new(),
    };
    let plan = dli_gitops::plan::plan(&jobs, &observed, &JournalView::default(), &policy);
    let loader = plan
        .actions
        .iter()
        .find(|action| action.name == "loader")
        .unwrap();
    assert!(
        loader
            .on_hold
            .as_deref()
            .is_some_and(|why| why.contains("`writer` is Degraded (job_running_exception)")),
        "{}",
        plan.render_text()
    );
}
