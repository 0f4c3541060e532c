//! Drift policy per job, against the in-process emulator: `drift: revert | report` over the
//! target's `self_heal`, `ignore_differences` fields that may change in the console, and the
//! `drift_detected` journal record (journaled once per drift, with the fields that drifted).
//! The console is played by the DLI API itself (stop, update, start, as a person would).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dli_gitops::apply::ApplyReport;
use dli_gitops::cloud::{
    ClientOptions, Credentials, DliClient, ListJobsQuery, Secret, parse_endpoint,
};
use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, EmulatorConfig};
use dli_gitops::model::DriftMode;
use dli_gitops::plan::{ActionClass, JobAction};
use serde_json::Value;

use support::target::{Harness, PRUNE};

impl Harness {
    async fn start() -> Harness {
        Harness::over_emulator(EmulatorConfig::for_tests(PathBuf::new()), PRUNE).await
    }

    fn automatic(&mut self, self_heal: Option<bool>) {
        self.context.as_mut().unwrap().policy.self_heal = self_heal;
    }

    fn sql_job(&self, name: &str, sql: &str, fields: &str) {
        let path = self.dir.path().join(format!("repo/flink/{name}.yaml"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            format!(
                "kind: FlinkSqlJob\nname: {name}\nqueue_name: q1\nsql_body: \"{sql}\"\ncu_number: 2\n{fields}"
            ),
        )
        .unwrap();
    }

    async fn pass(&self) -> ApplyReport {
        let report = self.reconcile(false).await;
        assert!(
            report.failures().next().is_none(),
            "{}\n{}",
            report.plan.render_text(),
            report.render_text()
        );
        report
    }

    fn dli(&self) -> DliClient {
        DliClient::new(
            parse_endpoint(&self.emulator.as_ref().unwrap().dli_url()).unwrap(),
            DEV_PROJECT_ID,
            Credentials::AkSk {
                access_key: DEV_ACCESS_KEY.into(),
                secret_key: Secret::new(DEV_SECRET_KEY.to_string()),
                security_token: None,
            },
            ClientOptions::default(),
        )
        .unwrap()
    }

    async fn job_id(&self, name: &str) -> i64 {
        let listed = self
            .dli()
            .list_jobs(&ListJobsQuery {
                name: Some(name.into()),
                ..ListJobsQuery::default()
            })
            .await
            .unwrap();
        listed.first().expect("the job is live").id
    }

    /// Someone changes `cu_number` in the console: stop, update, start.
    async fn console_cu_number(&self, name: &str, cu_number: i32) {
        let dli = self.dli();
        let id = self.job_id(name).await;
        dli.stop_jobs(&[id], false).await.unwrap();
        self.wait(id, |status| status.is_stopped()).await;
        let mut detail = dli.job_detail(id).await.unwrap();
        detail.config.cu_number = cu_number;
        dli.update_sql_job(id, &detail.config).await.unwrap();
        dli.run_jobs(&[id], false).await.unwrap();
        self.wait(id, |status| status.is_running()).await;
    }

    async fn wait(&self, id: i64, done: impl Fn(&dli_gitops::model::FlinkJobStatus) -> bool) {
        let dli = self.dli();
        for _ in 0..400 {
            if done(&dli.job_detail(id).await.unwrap().status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} did not get there");
    }

    async fn cu_number(&self, name: &str) -> i32 {
        let id = self.job_id(name).await;
        self.dli().job_detail(id).await.unwrap().config.cu_number
    }

    /// Every `drift_detected` record in the journal file.
    fn drift_records(&self) -> Vec<Value> {
        journal_records(&self.dir.path().join("state"))
            .into_iter()
            .filter(|record| record["kind"] == "drift_detected")
            .collect()
    }
}

fn journal_records(state_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(state_dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a journal line is JSON"))
        .collect()
}

fn action<'a>(report: &'a ApplyReport, name: &str) -> &'a JobAction {
    report
        .plan
        .actions
        .iter()
        .find(|action| action.name == name)
        .unwrap_or_else(|| panic!("{name} is planned"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reverted_reported_or_ignored_per_job_and_field() {
    let mut harness = Harness::start().await;
    harness.sql_job("reported", "SELECT 1;", "drift: report\n");
    harness.sql_job("reverted", "SELECT 2;", "drift: revert\n");
    harness.sql_job("ignored", "SELECT 3;", "ignore_differences: [cu_number]\n");
    harness.sql_job("plain", "SELECT 4;", "");
    harness.pass().await;
    for name in ["reported", "reverted", "ignored", "plain"] {
        harness.console_cu_number(name, 3).await;
    }

    // An automatic pass with self_heal off.
    harness.automatic(Some(false));
    let report = harness.pass().await;
    let reported = action(&report, "reported");
    let drift = reported.drift.as_ref().expect("drift on reported");
    assert_eq!(drift.fields, vec!["cu_number".to_string()]);
    assert_eq!(drift.mode, DriftMode::Report);
    assert!(reported.on_hold.is_some());
    let reverted = action(&report, "reverted");
    assert_eq!(reverted.drift.as_ref().unwrap().mode, DriftMode::Revert);
    assert!(reverted.on_hold.is_none());
    let ignored = action(&report, "ignored");
    assert_eq!(
        ignored.class,
        ActionClass::None,
        "{}",
        report.plan.render_text()
    );
    assert!(ignored.drift.is_none());
    assert_eq!(ignored.ignored, vec!["cu_number".to_string()]);
    let plain = action(&report, "plain");
    assert_eq!(
        plain.drift.as_ref().unwrap().mode,
        DriftMode::Report,
        "self_heal off: reported"
    );
    let text = report.plan.render_text();
    assert!(text.contains("drift: cu_number (report)"), "{text}");
    assert!(text.contains("drift: cu_number (revert)"), "{text}");
    assert!(
        report
            .results
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            == vec!["reverted"],
        "only the reverted job is acted on: {}",
        report.render_text()
    );
    assert_eq!(harness.cu_number("reported").await, 3);
    assert_eq!(harness.cu_number("reverted").await, 2);
    assert_eq!(harness.cu_number("ignored").await, 3);
    assert_eq!(harness.cu_number("plain").await, 3);

    // Journaled once each, with the fields and what was done.
    let records = harness.drift_records();
    let summary: Vec<(String, String, Value)> = records
        .iter()
        .map(|record| {
            (
                record["job"].as_str().unwrap().to_string(),
                record["mode"].as_str().unwrap().to_string(),
                record["fields"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "plain".into(),
                "report".into(),
                serde_json::json!(["cu_number"])
            ),
            (
                "reported".into(),
                "report".into(),
                serde_json::json!(["cu_number"])
            ),
            (
                "reverted".into(),
                "revert".into(),
                serde_json::json!(["cu_number"])
            ),
        ]
    );
    // The same drift is not journaled again on the next pass.
    let again = harness.pass().await;
    assert!(action(&again, "reported").drift.is_some());
    assert_eq!(harness.drift_records().len(), 3);
    assert!(
        action(&again, "reverted").drift.is_none(),
        "reverted stays reverted"
    );

    // self_heal on: the plain job is reverted, `drift: report` still wins for its job.
    harness.automatic(Some(true));
    let healing = harness.pass().await;
    assert_eq!(
        action(&healing, "plain").drift.as_ref().unwrap().mode,
        DriftMode::Revert
    );
    assert_eq!(harness.cu_number("plain").await, 2);
    assert_eq!(harness.cu_number("reported").await, 3);
    let records = harness.drift_records();
    assert_eq!(records.len(), 4, "the new decision on plain is journaled");
    assert_eq!(records[3]["job"], "plain");
    assert_eq!(records[3]["mode"], "revert");

    // A manual sync puts git back everywhere but on ignored fields.
    harness.automatic(None);
    harness.pass().await;
    assert_eq!(harness.cu_number("reported").await, 2);
    assert_eq!(harness.cu_number("ignored").await, 3);

    // A change in git is no drift; an update keeps the ignored field's live value.
    harness.sql_job("ignored", "SELECT 33;", "ignore_differences: [cu_number]\n");
    harness.automatic(Some(false));
    let upgrade = harness.pass().await;
    let changed = action(&upgrade, "ignored");
    assert_eq!(changed.class, ActionClass::Upgrade);
    assert!(changed.drift.is_none());
    assert_eq!(changed.config.as_ref().unwrap().cu_number, 3);
    assert_eq!(harness.cu_number("ignored").await, 3);
    let after = harness.pass().await;
    assert!(after.plan.is_empty(), "{}", after.plan.render_text());
    harness.stop().await;
}

#[test]
fn validate_refuses_unknown_ignore_differences_fields_at_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let write = |relative: &str, content: &str| {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    write(
        "flink/a.yaml",
        "kind: FlinkSqlJob\nname: a\nsql_body: \"SELECT 1;\"\nignore_differences:\n  - cu_numbr\n  - entrypoint\ndrift: sometimes\n",
    );
    let snapshot = dli_gitops::desired::read_directory(dir.path()).unwrap();
    let problems: Vec<String> = match dli_gitops::desired::resolve(&snapshot, None) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics.0.iter().map(ToString::to_string).collect(),
    };
    let text = problems.join("\n");
    assert!(
        text.contains(
            "flink/a.yaml:5:5: `cu_numbr` in ignore_differences is not a field of FlinkSqlJob"
        ) && text.contains("cu_number"),
        "{text}"
    );
    // A field of the other Flink type is not one of this job's.
    assert!(
        text.contains("flink/a.yaml:6:5: `entrypoint` in ignore_differences"),
        "{text}"
    );
    assert!(
        text.contains("flink/a.yaml:7:"),
        "drift takes revert or report: {text}"
    );

    write(
        "flink/a.yaml",
        "kind: FlinkSqlJob\nname: a\nsql_body: \"SELECT 1;\"\nignore_differences: [cu_number, tags]\ndrift: report\n",
    );
    let snapshot = dli_gitops::desired::read_directory(dir.path()).unwrap();
    let jobs = dli_gitops::desired::resolve(&snapshot, None).expect("valid");
    assert_eq!(jobs.flink[0].policy.drift, Some(DriftMode::Report));
    assert_eq!(
        jobs.flink[0].policy.ignore_differences,
        vec!["cu_number".to_string(), "tags".to_string()]
    );
}

/// The daemon itself, with `self_heal: false`: a job that says `drift: revert` is put back by an
/// automatic pass on the applied revision, its neighbour with `drift: report` is left as the
/// console made it, and both drifts are in the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reverts_drift_on_a_revert_job_with_self_heal_off() {
    let harness = Harness::start().await;
    harness.sql_job("kept", "SELECT 1;", "drift: report\n");
    harness.sql_job("healed", "SELECT 2;", "drift: revert\n");
    let dir = harness.dir.path();
    let emulator = harness.emulator.as_ref().unwrap();
    let (api, s3) = (emulator.dli_url(), emulator.s3_url());
    let config = dir.join("daemon.yaml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir: daemon-state
listen: 127.0.0.1:0
sources:
  jobs:
    path: repo
targets:
  - name: dev
    source: jobs
    environment: dev
    region: cn-north-4
    project_id: {DEV_PROJECT_ID}
    endpoints: {{dli: "{api}", dlf: "{api}", iam: "{api}", obs: "{s3}"}}
    credentials: {{access_key_file: ak, secret_key_file: sk}}
    staging: obs://dli-gitops-staging/dev/
    backups: obs://dli-gitops-backups/dev/
    policy: {{auto_sync: true, self_heal: false, resync_interval: 10s}}
"#
        ),
    )
    .unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let wait_for = |what: &'static str| {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
    };
    loop {
        let listed = harness
            .dli()
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap();
        if listed.len() == 2 && listed.iter().all(|job| job.status.is_running()) {
            break;
        }
        wait_for("the daemon creates and starts both jobs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The pass journals its outcomes right after the starts: then the console edits are drift.
    tokio::time::sleep(Duration::from_millis(500)).await;
    harness.console_cu_number("kept", 3).await;
    harness.console_cu_number("healed", 3).await;
    while harness.cu_number("healed").await != 2 {
        wait_for("the daemon reverts the revert job");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(harness.cu_number("kept").await, 3, "reported only");
    let records: Vec<Value> = journal_records(&dir.join("daemon-state"))
        .into_iter()
        .filter(|record| record["kind"] == "drift_detected")
        .collect();
    let modes: Vec<(String, String)> = records
        .iter()
        .map(|record| {
            (
                record["job"].as_str().unwrap().to_string(),
                record["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        modes.contains(&("healed".into(), "revert".into()))
            && modes.contains(&("kept".into(), "report".into())),
        "{records:?}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    harness.stop().await;
}
