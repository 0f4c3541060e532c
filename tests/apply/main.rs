//! End-to-end tests of observe → plan → apply against the in-process emulator (near-zero
//! delays): every action class, savepoints carried across re-imports, prune and its guard,
//! DLF imports with task polling, a permanent service error on one job, rollback, export,
//! apply-twice-is-noop (counted by the emulator's own call statistics), and a bounded random
//! loop asserting that apply then plan gives an empty plan.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use dli_gitops::apply::{self, ApplyOptions, ApplyReport, TargetContext};
use dli_gitops::config::Config;
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, TargetedFault,
};
use dli_gitops::plan::ActionClass;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use support::target::Harness;

/// Operations that change something on the service.
const MUTATING_OPERATIONS: &[&str] = &[
    "CreateFlinkSqlJob",
    "UpdateFlinkSqlJob",
    "CreateFlinkJarJob",
    "UpdateFlinkJarJob",
    "BatchRunFlinkJobs",
    "BatchStopFlinkJobs",
    "DeleteFlinkJob",
    "BatchDeleteFlinkJobs",
    "ExportFlinkJobs",
    "ImportFlinkJobs",
    "ExecuteFlinkJobSavepoint",
    "ImportFlinkJobSavepoint",
    "CreateFlinkJobTags",
    "DeleteFlinkJobTags",
    "DlfImportJob",
    "DlfExportJob",
    "DlfExportJobList",
    "DlfDeleteJob",
    "DlfStartJob",
    "DlfStopJob",
];

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(EmulatorConfig::for_tests(PathBuf::new()), "prune: true").await
    }

    async fn start_with(emulator_config: EmulatorConfig, policy: &str) -> Harness {
        Harness::start_with_timeouts(emulator_config, policy, "").await
    }

    /// `timeouts` adds entries to the target's `timeouts:` map (e.g. `request: 1s, `).
    async fn start_with_timeouts(
        emulator_config: EmulatorConfig,
        policy: &str,
        timeouts: &str,
    ) -> Harness {
        Harness::start_full(emulator_config, policy, timeouts, "").await
    }

    /// `top_level` adds lines at the top of the config (e.g. `instance: blue\n`).
    async fn start_full(
        emulator_config: EmulatorConfig,
        policy: &str,
        timeouts: &str,
        top_level: &str,
    ) -> Harness {
        Harness::over_emulator_with(
            emulator_config,
            top_level,
            &format!("    policy: {{{policy}}}\n"),
            timeouts,
        )
        .await
    }

    fn context_mut(&mut self) -> &mut TargetContext {
        self.context.as_mut().expect("context")
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.repo().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn remove(&self, relative: &str) {
        std::fs::remove_file(self.repo().join(relative)).unwrap();
    }

    /// A DLF job file and its definition (`definition` is the `.job` JSON, named inside).
    fn dlf_job(&self, definition: &str) {
        let name = serde_json::from_str::<Value>(definition).expect("a .job is JSON")["name"]
            .as_str()
            .expect("the .job names its job")
            .to_string();
        self.write(
            &format!("dlf/{name}.yaml"),
            &format!("kind: DlfJob\nname: {name}\ndefinition_file: {name}.job\n"),
        );
        self.write(&format!("dlf/{name}.job"), definition);
    }

    fn sql_job(&self, name: &str, fields: &str) {
        self.write(
            &format!("flink/{name}.yaml"),
            // An exclusive-cluster SQL job (the default run mode) needs its queue.
            &format!(
                "kind: FlinkSqlJob\nname: {name}\nsql_body: \"SELECT 1 AS v;\"\n{}{fields}",
                if fields.contains("queue_name:") {
                    ""
                } else {
                    "queue_name: q1\n"
                }
            ),
        );
    }

    async fn plan(&self) -> ApplyReport {
        self.reconcile(true).await
    }

    async fn assert_in_sync(&self) {
        let report = self.plan().await;
        assert!(
            report.plan.is_empty(),
            "plan after apply is empty, got:\n{}",
            report.plan.render_text()
        );
    }

    async fn runs(&self, job_id: i64) -> Value {
        let url = format!(
            "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{job_id}/runs",
            self.emulator().dli_url()
        );
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn is_live(&self, name: &str) -> bool {
        let (observed, _) = apply::observe(self.context()).await.expect("observe");
        observed.flink.iter().any(|job| job.name == name)
    }

    /// Writes a savepoint folder straight into the emulator's OBS, as a previous run would.
    fn savepoint(&self, key: &str) -> String {
        let path = self
            .dir
            .path()
            .join("emulator/obs/dli-gitops-savepoints")
            .join(key)
            .join("_metadata");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"format":"test-savepoint"}"#).unwrap();
        format!("obs://dli-gitops-savepoints/{key}/")
    }
}

fn mutating(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    MUTATING_OPERATIONS
        .iter()
        .filter_map(|operation| {
            let delta = after.get(*operation).copied().unwrap_or(0)
                - before.get(*operation).copied().unwrap_or(0);
            (delta > 0).then(|| (operation.to_string(), delta))
        })
        .collect()
}

fn class_of(report: &ApplyReport, name: &str) -> ActionClass {
    report
        .plan
        .actions
        .iter()
        .find(|action| action.name == name)
        .map(|action| action.class)
        .unwrap_or(ActionClass::None)
}

async fn converge(context: &TargetContext) -> ApplyReport {
    let (desired, _) = dli_gitops::pass::desired_for(&context, None).await.unwrap();
    let report = apply::reconcile_once(context, &desired, &context.options)
        .await
        .unwrap();
    assert!(
        report.converged(),
        "{}\n{}",
        report.plan.render_text(),
        report.render_text()
    );
    report
}

mod commands_and_costs;
mod dlf;
mod lifecycle;
mod scope;
