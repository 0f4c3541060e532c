//! Strict state and the savepoint catalog, end to end against the in-process emulator:
//! a savepoint that cannot be taken before a stop leaves the old job running; every savepoint
//! of a multi-upgrade history is in the catalog (journal, `savepoints list`); the emulator
//! deletes the service's own savepoints when a job restarts (dli_01_0461) while our copy stays,
//! and `restore: {from_catalog}` resumes from the copy; a catalogued copy is reused only while
//! the service's directory it was made from still holds the same savepoint (the service names
//! stop savepoints to the second, so a second one in the same second replaces the first).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dli_gitops::apply::ApplyReport;
use dli_gitops::emulator::EmulatorConfig;
use dli_gitops::plan::ActionClass;
use serde_json::Value;

use support::target::{Harness, PRUNE};

impl Harness {
    async fn start(emulator_config: EmulatorConfig) -> Harness {
        Harness::over_emulator(emulator_config, PRUNE).await
    }

    fn sql_job(&self, name: &str, fields: &str) {
        let path = self.dir.path().join(format!("repo/flink/{name}.yaml"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            format!(
                "kind: FlinkSqlJob\nname: {name}\nsql_body: \"SELECT 1 AS v;\"\nqueue_name: q1\n{fields}"
            ),
        )
        .unwrap();
    }

    async fn assert_in_sync(&self) {
        let report = self.reconcile(true).await;
        assert!(
            report.plan.is_empty(),
            "plan after apply is empty, got:\n{}",
            report.plan.render_text()
        );
    }

    /// The emulator's file for `_metadata` of the savepoint at `obs://bucket/dir/`.
    fn metadata_file(&self, path: &str) -> PathBuf {
        let key = path.trim_start_matches("obs://").trim_end_matches('/');
        self.dir
            .path()
            .join("emulator/obs")
            .join(key)
            .join("_metadata")
    }

    fn catalog(&self) -> Vec<dli_gitops::savepoints::CatalogEntry> {
        let state = self.context().ledger.journal.state();
        dli_gitops::savepoints::catalog(&state, Some("dev"), None)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

fn class_of(report: &ApplyReport, name: &str) -> ActionClass {
    report
        .plan
        .actions
        .iter()
        .find(|action| action.name == name)
        .unwrap_or_else(|| panic!("an action for {name}"))
        .class
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dli-gitops")
}

fn savepoints_list(state_dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(["savepoints", "list", "--state-dir"])
        .arg(state_dir)
        .args(extra)
        .output()
        .expect("dli-gitops runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_that_cannot_be_taken_before_the_stop_leaves_the_old_job_running() {
    let mut config = EmulatorConfig::for_tests(PathBuf::new());
    config.faults.forbidden = vec!["ExecuteFlinkJobSavepoint".to_string()];
    let harness = Harness::start(config).await;
    harness.sql_job("orders", "cu_number: 2\n");
    harness.apply_converged().await;
    let before = harness.flink_job("orders").await;
    let runs_before = harness.emulator_runs(before.id).await.len();

    harness.sql_job("orders", "cu_number: 4\n");
    let report = harness.reconcile(false).await;
    let result = report
        .results
        .iter()
        .find(|result| result.name == "orders")
        .expect("an action for orders");
    assert!(!result.ok, "the upgrade fails: {}", report.render_text());
    let message = &result.error.as_ref().expect("a reason").message;
    assert!(
        message.contains("keeps running its current version"),
        "the reason says the job was left alone: {message}"
    );
    let after = harness.flink_job("orders").await;
    assert!(after.status.is_running(), "still running: {}", after.status);
    assert_eq!(after.config.cu_number, 2, "still the old definition");
    assert_eq!(after.id, before.id);
    assert_eq!(
        harness.emulator_runs(after.id).await.len(),
        runs_before,
        "the job was neither stopped nor restarted"
    );
    assert!(harness.catalog().is_empty(), "nothing was catalogued");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_every_savepoint_of_a_multi_upgrade_history() {
    let harness = Harness::start(EmulatorConfig::for_tests(PathBuf::new())).await;
    harness.sql_job("clicks", "cu_number: 2\n");
    harness.apply_converged().await;
    let mut upgrades = Vec::new();
    for cu_number in [3, 4, 5] {
        harness.sql_job("clicks", &format!("cu_number: {cu_number}\n"));
        let report = harness.apply_converged().await;
        assert_eq!(class_of(&report, "clicks"), ActionClass::Upgrade);
        // The plan labels the change with its effect on state, in text and JSON.
        assert!(
            report
                .plan
                .render_text()
                .contains("state: restart with savepoint"),
            "{}",
            report.plan.render_text()
        );
        let json = serde_json::to_value(&report.plan).unwrap();
        assert_eq!(
            json["actions"][0]["state_effect"], "restart_with_savepoint",
            "{json:#}"
        );
        upgrades.push(report.results[0].action_id.clone());
    }
    harness.assert_in_sync().await;

    let catalog = harness.catalog();
    // Per upgrade: the savepoint triggered while it ran, and the one its stop took.
    assert_eq!(catalog.len(), 6, "{catalog:#?}");
    for (index, action_id) in upgrades.iter().enumerate() {
        let of_action: Vec<_> = catalog
            .iter()
            .filter(|entry| entry.entry.record.action_id.as_ref() == Some(action_id))
            .collect();
        let origins: Vec<&str> = of_action
            .iter()
            .map(|entry| entry.entry.record.origin.as_str())
            .collect();
        assert_eq!(origins, ["triggered", "stop"], "upgrade {index}");
        for entry in of_action {
            let record = &entry.entry.record;
            assert!(record.verified);
            assert_eq!(record.job, "clicks");
            assert!(record.size_bytes > 0 && record.objects >= 1);
            assert!(
                record
                    .path
                    .starts_with("obs://dli-gitops-backups/dev/dli-gitops/savepoints/dev/clicks/"),
                "{}",
                record.path
            );
            assert!(
                harness.metadata_file(&record.path).is_file(),
                "the copy {} is complete",
                record.path
            );
        }
    }
    // Each upgrade resumed from our copy of its stop savepoint: the emulator's run history
    // shows the path, and the state (`savepoint_id`) is the one the stop took.
    let live = harness.flink_job("clicks").await;
    let runs = harness.emulator_runs(live.id).await;
    assert_eq!(runs.len(), 4, "{runs:#?}");
    let stops: Vec<_> = catalog
        .iter()
        .filter(|entry| entry.entry.record.origin == "stop")
        .collect();
    for (pair, stop) in runs.windows(2).zip(&stops) {
        assert_eq!(pair[1]["restored_from"].as_str(), Some(stop.path()));
        assert_eq!(
            pair[1]["restored_savepoint_id"], pair[0]["stop_savepoint_id"],
            "{pair:#?}"
        );
    }

    // `savepoints list` reads the same catalog beside the open journal (no lock).
    let output = savepoints_list(&harness.state_dir(), &["--json", "--job", "clicks"]);
    assert!(output.status.success(), "{output:?}");
    let listed: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[0]["target"], "dev");
    assert_eq!(listed[0]["origin"], "triggered");
    assert_eq!(listed[5]["origin"], "stop");
    let text = savepoints_list(&harness.state_dir(), &["--target", "dev"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(text.contains("dli-gitops/savepoints/dev/clicks/"), "{text}");
    let none = savepoints_list(&harness.state_dir(), &["--target", "prod"]);
    assert_eq!(
        String::from_utf8(none.stdout).unwrap(),
        "No savepoints in the catalog.\n"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_deletes_the_services_savepoint_but_our_copy_stays_and_restores() {
    let harness = Harness::start(EmulatorConfig::for_tests(PathBuf::new())).await;
    harness.sql_job("ledger", "cu_number: 2\n");
    harness.apply_converged().await;
    harness.sql_job("ledger", "cu_number: 3\n");
    harness.apply_converged().await;

    let live = harness.flink_job("ledger").await;
    let runs = harness.emulator_runs(live.id).await;
    let service_stop = runs[0]["stop_savepoint"]
        .as_str()
        .expect("the stop took a savepoint")
        .to_string();
    assert!(
        !harness.metadata_file(&service_stop).exists(),
        "the service deleted its own stop savepoint when the job restarted"
    );
    let catalog = harness.catalog();
    let stop_copy = catalog
        .iter()
        .find(|entry| entry.entry.record.origin == "stop")
        .expect("the stop savepoint is catalogued")
        .clone();
    let triggered_source = catalog
        .iter()
        .find(|entry| entry.entry.record.origin == "triggered")
        .and_then(|entry| entry.entry.record.source_path.clone())
        .expect("the triggered savepoint is catalogued");
    assert!(
        !harness.metadata_file(&triggered_source).exists(),
        "the savepoint triggered before the stop is the service's too: deleted at the restart"
    );
    assert!(harness.metadata_file(stop_copy.path()).is_file());
    assert_eq!(
        stop_copy.entry.record.source_path.as_deref(),
        Some(service_stop.as_str())
    );

    // Restore from the catalog: the job resumes from our copy, by its seq.
    harness.sql_job(
        "ledger",
        &format!(
            "cu_number: 3\nrestore: {{from_catalog: {}}}\n",
            stop_copy.seq()
        ),
    );
    let restored = harness.apply_converged().await;
    assert_eq!(class_of(&restored, "ledger"), ActionClass::Restore);
    let runs = harness.emulator_runs(live.id).await;
    let last = runs.last().unwrap();
    assert_eq!(last["restored_from"].as_str(), Some(stop_copy.path()));
    assert_eq!(last["restored_savepoint_id"], runs[0]["stop_savepoint_id"]);
    // Applied once.
    harness.assert_in_sync().await;
    // Our copy outlives this restart too.
    assert!(harness.metadata_file(stop_copy.path()).is_file());

    // `latest`: the newest verified entry (taken by the restore's own stop).
    harness.sql_job(
        "ledger",
        "cu_number: 3\nrestore: {from_catalog: latest, nonce: 1}\n",
    );
    let latest = dli_gitops::savepoints::latest_verified(
        &harness.context().ledger.journal.state(),
        "dev",
        "ledger",
    )
    .expect("a latest entry");
    harness.apply_converged().await;
    let runs = harness.emulator_runs(live.id).await;
    let catalog = harness.catalog();
    let newest = catalog.last().unwrap();
    assert!(
        newest.seq() > latest.seq(),
        "the restore's stop was catalogued"
    );
    assert_eq!(
        runs.last().unwrap()["restored_from"].as_str(),
        Some(latest.path()),
        "latest = the newest entry when the plan was made"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}

#[test]
fn from_catalog_takes_latest_or_a_seq_and_nothing_else() {
    let problems = |restore: &str| -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flink/j.yaml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            format!(
                "kind: FlinkSqlJob\nname: j\nsql_body: \"SELECT 1;\"\nqueue_name: q1\nrestore: {restore}\n"
            ),
        )
        .unwrap();
        let snapshot = dli_gitops::desired::read_directory(dir.path()).expect("repository reads");
        match dli_gitops::desired::resolve(&snapshot, None) {
            Ok(desired) => {
                // What resolves renders back to the same restore.
                let restore = desired.flink[0].lifecycle.restore.clone().unwrap();
                assert!(restore.from_catalog.is_some(), "{restore:?}");
                assert!(restore.key().contains("#catalog:"), "{}", restore.key());
                Vec::new()
            }
            Err(diagnostics) => diagnostics.0.iter().map(ToString::to_string).collect(),
        }
    };
    assert_eq!(problems("{from_catalog: latest}"), Vec::<String>::new());
    assert_eq!(
        problems("{from_catalog: 42, nonce: 2}"),
        Vec::<String>::new()
    );
    for bad in [
        "{from_catalog: 0}",
        "{from_catalog: newest}",
        "{from_catalog: -3}",
    ] {
        let found = problems(bad);
        assert!(
            found
                .iter()
                .any(|problem| problem.contains("`restore.from_catalog` must be `latest`")),
            "{bad}: {found:?}"
        );
    }
    let both = problems("{from_catalog: latest, savepoint_path: \"obs://b/sp/\"}");
    assert!(
        both.iter()
            .any(|problem| problem.contains("cannot be combined")),
        "{both:?}"
    );
}

/// The daemon serves the catalog: `GET /api/v1/targets/{t}` carries `savepoints` and the status
/// page a Savepoints table, read from its journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_catalog_in_the_target_api_and_on_the_page() {
    let mut harness = Harness::start(EmulatorConfig::for_tests(PathBuf::new())).await;
    harness.sql_job("clicks", "cu_number: 2\n");
    harness.apply_converged().await;
    harness.sql_job("clicks", "cu_number: 3\n");
    harness.apply_converged().await;
    let expected = harness.catalog();
    assert_eq!(expected.len(), 2);
    // The journal's lock goes with the context; the daemon takes it.
    if let Some(context) = harness.context.take() {
        context.shutdown().await;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = harness.dir.path().join("dli-gitops.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("listen: 127.0.0.1:{port}\n{text}")).unwrap();
    let log = std::fs::File::create(harness.dir.path().join("daemon.log")).unwrap();
    let mut daemon = Command::new(binary())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the daemon starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status: Value = loop {
        let answer = harness
            .http
            .get(format!("{base}/api/v1/targets/dev"))
            .send()
            .await;
        if let Ok(response) = answer
            && response.status().is_success()
        {
            break response.json().await.unwrap();
        }
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon exited: {}",
            std::fs::read_to_string(harness.dir.path().join("daemon.log")).unwrap()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let page = harness
        .http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    let section = &status["savepoints"];
    assert_eq!(section["count"], 2, "{status:#}");
    assert_eq!(
        section["entries"][0]["seq"],
        expected[1].seq(),
        "newest first"
    );
    assert_eq!(section["entries"][0]["path"], expected[1].path());
    assert_eq!(section["entries"][0]["origin"], "stop");
    assert_eq!(section["entries"][0]["verified"], true);
    assert!(page.contains("<h2>Savepoints</h2>"), "{page}");
    assert!(page.contains(expected[0].path()), "{page}");
    harness.stop().await;
}

/// The `savepoint_id` in the `_metadata` the emulator wrote at `path`.
fn savepoint_id_in(harness: &Harness, path: &str) -> String {
    let bytes = std::fs::read(harness.metadata_file(path)).expect("the savepoint's _metadata");
    let metadata: Value = serde_json::from_slice(&bytes).expect("JSON _metadata");
    metadata["savepoint_id"]
        .as_str()
        .expect("a savepoint_id")
        .to_string()
}

/// The catalog's entries copied from the service's savepoint directory `source`.
fn copies_of(harness: &Harness, source: &str) -> Vec<dli_gitops::savepoints::CatalogEntry> {
    harness
        .catalog()
        .into_iter()
        .filter(|entry| entry.entry.record.source_path.as_deref() == Some(source))
        .collect()
}

/// The service names a stop savepoint's directory to the second
/// (`jobs/savepoint/{job_id}/{yyyy-mm-dd_HH-mm-ss}/`), so a second savepoint of the job in the
/// same second replaces the first in one directory. A catalogued copy made from that directory
/// is reused (a savepoint can be huge) only while the directory still holds the savepoint it
/// was copied from; a copy of the older one is never imported in place of the newer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_is_reused_only_while_its_directory_holds_the_savepoint_it_was_made_from() {
    let harness = Harness::start(EmulatorConfig::for_tests(PathBuf::new())).await;
    harness.sql_job("orders", "cu_number: 2\n");
    harness.apply_converged().await;
    let job_id = harness.flink_job("orders").await.id;

    // Stopped with a savepoint (copied at once), then started again: the start resumes from
    // the savepoint the job holds, whose catalogued copy is compared with it and reused.
    harness.sql_job("orders", "cu_number: 2\ndesired_state: stopped\n");
    harness.apply_converged().await;
    let held = harness
        .flink_job("orders")
        .await
        .savepoint_path
        .expect("the stop took a savepoint");
    let first = savepoint_id_in(&harness, &held);
    assert_eq!(copies_of(&harness, &held).len(), 1, "the stop's copy");
    harness.sql_job("orders", "cu_number: 2\n");
    harness.apply_converged().await;
    assert_eq!(
        copies_of(&harness, &held).len(),
        1,
        "the copy of the held savepoint was reused, not made again"
    );
    let runs = harness.emulator_runs(job_id).await;
    assert_eq!(
        runs.last().unwrap()["restored_savepoint_id"],
        first.as_str()
    );

    // A second savepoint of the job lands in the same directory (as a second stop in the same
    // second does), and the job stops without taking another: a pass that stopped it and died
    // before copying its savepoint leaves the job just so.
    let dli = &harness.context().live.clients.dli;
    dli.trigger_savepoint(job_id, &held)
        .await
        .expect("the trigger");
    assert_eq!(
        harness.flink_job("orders").await.savepoint_path,
        Some(held.clone())
    );
    dli.stop_jobs(&[job_id], false).await.expect("the stop");
    let second = savepoint_id_in(&harness, &held);
    assert_ne!(first, second, "the directory holds a newer savepoint");
    let stale = copies_of(&harness, &held).pop().expect("the older copy");

    // The definition changes, so the held savepoint is imported: not the older copy, but a
    // new copy of what the directory holds now.
    harness.sql_job("orders", "cu_number: 3\n");
    harness.apply_converged().await;
    let copies = copies_of(&harness, &held);
    assert_eq!(copies.len(), 2, "{copies:#?}");
    let fresh = copies.last().unwrap();
    assert_eq!(fresh.entry.record.origin, "held");
    assert_ne!(fresh.path(), stale.path());
    let runs = harness.emulator_runs(job_id).await;
    let last = runs.last().unwrap();
    assert_eq!(last["restored_from"].as_str(), Some(fresh.path()));
    assert_eq!(
        last["restored_savepoint_id"],
        second.as_str(),
        "the job resumed from the newer savepoint, not from the copy of the older one"
    );
    harness.assert_in_sync().await;
    harness.stop().await;
}
