//! One target `dev` over the in-process emulator (or any DLI endpoint), opened as the library
//! opens it (`TargetContext`), with its jobs in a plain directory `repo/` of a temp directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dli_gitops::apply::{self, ApplyOptions, ApplyReport, TargetContext};
use dli_gitops::config::Config;
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, EmulatorHandle,
};
use dli_gitops::model::ObservedFlinkJob;
use serde_json::Value;

/// The target's `policy` line most tests use.
pub const PRUNE: &str = "    policy: {prune: true}\n";

/// Writes `repo/environments/dev.yaml`, the emulator's development AK/SK files and a config
/// file for one target `dev` whose DLI, DLF and IAM endpoints are `api` and whose OBS endpoint
/// is `obs`; `target_lines` (each indented four spaces, newline-terminated: `policy`,
/// `retention`, ...) go after the target's `backups`. Returns the config file's path.
pub fn write_target_config(dir: &Path, api: &str, obs: &str, target_lines: &str) -> PathBuf {
    write_target_config_with(dir, api, obs, "", target_lines, "")
}

/// As [`write_target_config`], with `top_level` lines (newline-terminated) before `state_dir`
/// and `timeouts` entries (each `key: value, `) ahead of the target's own timeouts.
pub fn write_target_config_with(
    dir: &Path,
    api: &str,
    obs: &str,
    top_level: &str,
    target_lines: &str,
    timeouts: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir.join("repo/environments")).unwrap();
    std::fs::write(dir.join("repo/environments/dev.yaml"), "variables: {}\n").unwrap();
    std::fs::write(dir.join("ak"), DEV_ACCESS_KEY).unwrap();
    std::fs::write(dir.join("sk"), DEV_SECRET_KEY).unwrap();
    let text = format!(
        r#"{top_level}state_dir: state
sources:
  jobs:
    path: repo
targets:
  - name: dev
    source: jobs
    environment: dev
    region: cn-north-4
    project_id: {DEV_PROJECT_ID}
    endpoints: {{dli: "{api}", dlf: "{api}", iam: "{api}", obs: "{obs}"}}
    credentials: {{access_key_file: ak, secret_key_file: sk}}
    staging: obs://dli-gitops-staging/dev/
    backups: obs://dli-gitops-backups/dev/
{target_lines}    rate_limit: {{requests_per_second: 100000, burst: 100000}}
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 50ms}}
    timeouts: {{{timeouts}job_transition: 20s, savepoint: 10s, import_task: 20s}}
"#
    );
    let path = dir.join("dli-gitops.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The emulator's per-operation call counts (`/_emulator/v1/stats`): every HTTP attempt that
/// reached it.
pub async fn emulator_stats(emulator: &EmulatorHandle) -> BTreeMap<String, u64> {
    let body: Value = reqwest::get(format!("{}/_emulator/v1/stats", emulator.dli_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(body["operations"].clone()).unwrap()
}

/// A temp directory, the in-process emulator and the target `dev` opened over it. Test files
/// add their own methods (job writers, passes) in their own `impl Harness` blocks.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub emulator: Option<EmulatorHandle>,
    pub context: Option<TargetContext>,
    pub http: reqwest::Client,
}

impl Harness {
    /// Starts the emulator with `emulator_config` (its data under the temp directory), writes
    /// the config (`target_lines` as in [`write_target_config`]) and opens `dev` with a 5 ms
    /// poll interval.
    pub async fn over_emulator(emulator_config: EmulatorConfig, target_lines: &str) -> Harness {
        Harness::over_emulator_with(emulator_config, "", target_lines, "").await
    }

    /// As [`Harness::over_emulator`], the config written by [`write_target_config_with`]
    /// (`top_level` lines, `target_lines`, extra `timeouts` entries).
    pub async fn over_emulator_with(
        mut emulator_config: EmulatorConfig,
        top_level: &str,
        target_lines: &str,
        timeouts: &str,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        emulator_config.data_dir = dir.path().join("emulator");
        let emulator = Emulator::start(emulator_config)
            .await
            .expect("emulator starts");
        let config_path = write_target_config_with(
            dir.path(),
            &emulator.dli_url(),
            &emulator.s3_url(),
            top_level,
            target_lines,
            timeouts,
        );
        let config = Config::load(&config_path).expect("config loads");
        let mut context = TargetContext::open(&config, "dev")
            .await
            .expect("target opens");
        context.options.poll_interval = Duration::from_millis(5);
        Harness {
            dir,
            emulator: Some(emulator),
            context: Some(context),
            http: reqwest::Client::new(),
        }
    }

    pub fn context(&self) -> &TargetContext {
        self.context.as_ref().expect("context")
    }

    pub fn emulator(&self) -> &EmulatorHandle {
        self.emulator.as_ref().expect("emulator")
    }

    /// Writes `repo/flink/<name>.yaml`: a Flink SQL job on queue `q1` running `sql`.
    pub fn flink_sql_job(&self, name: &str, sql: &str) {
        let path = self.dir.path().join(format!("repo/flink/{name}.yaml"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            format!(
                "kind: FlinkSqlJob\nname: {name}\nqueue_name: q1\nsql_body: {}\n",
                serde_json::to_string(sql).unwrap()
            ),
        )
        .unwrap();
    }

    /// One pass over the repository as it is now (`dry_run`: plan only), at its revision.
    pub async fn reconcile(&self, dry_run: bool) -> ApplyReport {
        let context = self.context();
        let (desired, revision) = dli_gitops::pass::desired_for(&context, None)
            .await
            .expect("repository resolves");
        let options = ApplyOptions {
            dry_run,
            revision: Some(revision),
            ..context.options.clone()
        };
        apply::reconcile_once(context, &desired, &options)
            .await
            .expect("the pass runs")
    }

    /// One pass that must converge (every action succeeds).
    pub async fn apply_converged(&self) -> ApplyReport {
        let report = self.reconcile(false).await;
        assert!(
            report.converged(),
            "every action succeeds:\n{}\n{}",
            report.plan.render_text(),
            report.render_text()
        );
        report
    }

    /// The live Flink job `name`, as a pass observes it.
    pub async fn flink_job(&self, name: &str) -> ObservedFlinkJob {
        let (observed, _) = apply::observe(self.context()).await.expect("observe");
        observed
            .flink
            .into_iter()
            .find(|job| job.name == name)
            .unwrap_or_else(|| panic!("job {name} is live"))
    }

    /// The emulator's per-operation call counts, as [`emulator_stats`].
    pub async fn stats(&self) -> BTreeMap<String, u64> {
        emulator_stats(self.emulator()).await
    }

    /// The emulator's run log of job `job_id` (`/_emulator/v1/{project}/jobs/{id}/runs`).
    pub async fn emulator_runs(&self, job_id: i64) -> Vec<Value> {
        let url = format!(
            "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{job_id}/runs",
            self.emulator().dli_url()
        );
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Shuts the target down, then the emulator.
    pub async fn stop(mut self) {
        if let Some(context) = self.context.take() {
            context.shutdown().await;
        }
        if let Some(emulator) = self.emulator.take() {
            emulator.shutdown().await;
        }
    }
}
