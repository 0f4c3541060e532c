//! Automatic rollback of a failed upgrade, end to end against the in-process emulator: a job
//! upgraded to a definition that fails (the emulator's deterministic failure markers in the
//! SQL) is put back on its previous definition and resumes from the savepoint the upgrade
//! stopped it with (the emulator's run history shows it); the revision is marked failed so
//! later passes do not loop back into it; a commit that changes the job clears the mark; and
//! without `rollback_on_failure` nothing of this happens.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use dli_gitops::apply::{self, ApplyOptions, ApplyReport};
use dli_gitops::emulator::EmulatorConfig;
use dli_gitops::plan::ActionClass;
use serde_json::Value;

use support::target::Harness;

const GOOD_SQL: &str = "SELECT 1 AS v;";

impl Harness {
    /// `policy` is the body of the target's `policy: {...}`.
    async fn start(policy: &str) -> Harness {
        Harness::over_emulator(
            EmulatorConfig::for_tests(PathBuf::new()),
            &format!("    policy: {{{policy}}}\n"),
        )
        .await
    }

    async fn pass(&self) -> ApplyReport {
        let context = self.context();
        let (desired, revision) = dli_gitops::pass::desired_for(&context, None)
            .await
            .expect("repository resolves");
        let options = ApplyOptions {
            revision: Some(revision.clone()),
            source_revision: Some(revision),
            ..context.options.clone()
        };
        apply::reconcile_once(context, &desired, &options)
            .await
            .expect("the pass runs")
    }

    /// Waits until the job's live status is `status`.
    async fn wait_status(&self, name: &str, status: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let live = self.flink_job(name).await;
            if live.status.as_str() == status {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {name} never became {status}: it is {}",
                live.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
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

const ON: &str = "rollback_on_failure: {enabled: true, within: 10m}";

/// The savepoint the upgrade stopped the job with, as the upgrade imported it: the service's
/// stop savepoint, or dli-gitops's verified copy of it under its own prefix (DLI deletes its
/// own savepoints when the job restarts).
fn stop_savepoint_of(runs: &[Value]) -> String {
    let taken = runs[0]["stop_savepoint"]
        .as_str()
        .expect("the upgrade stopped the first run with a savepoint");
    let imported = runs[1]["restored_from"]
        .as_str()
        .expect("the upgraded run resumed from a savepoint");
    assert!(
        imported == taken || imported.trim_end_matches('/').ends_with("-stop"),
        "the upgrade resumed from its stop savepoint ({taken}) or our copy of it, not {imported}"
    );
    imported.to_string()
}

/// The job runs `GOOD_SQL`, then is upgraded to `bad_sql`; returns the job id and the savepoint
/// the upgrade stopped it with.
async fn upgrade_to(harness: &Harness, bad_sql: &str) -> (i64, String) {
    harness.flink_sql_job("orders", GOOD_SQL);
    let created = harness.pass().await;
    assert!(created.converged(), "{}", created.render_text());
    let id = harness.flink_job("orders").await.id;
    harness.flink_sql_job("orders", bad_sql);
    let upgraded = harness.pass().await;
    assert_eq!(class_of(&upgraded, "orders"), ActionClass::Upgrade);
    let runs = harness.emulator_runs(id).await;
    (id, stop_savepoint_of(&runs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_upgrade_rolls_back_to_the_old_definition_and_its_state_and_does_not_loop() {
    let harness = Harness::start(ON).await;
    let bad = "-- dli-emulator:fail-after-ms=300\nSELECT 2 AS v;";
    let (id, stop_savepoint) = upgrade_to(&harness, bad).await;
    harness.wait_status("orders", "job_running_exception").await;

    let report = harness.pass().await;
    assert_eq!(
        report.auto_rollbacks.len(),
        1,
        "one automatic rollback: {:?}",
        report.auto_rollbacks
    );
    assert!(report.auto_rollbacks[0].ok, "{:?}", report.auto_rollbacks);
    let live = harness.flink_job("orders").await;
    assert!(live.status.is_running(), "{}", live.status);
    assert_eq!(live.config.sql_body.as_deref(), Some(GOOD_SQL));
    // Run 1 (good) stopped with the savepoint, run 2 (bad) failed, run 3 is the good definition
    // resumed from the upgrade's stop savepoint.
    let runs = harness.emulator_runs(id).await;
    assert_eq!(runs.len(), 3, "{runs:#?}");
    assert_eq!(runs[2]["resume_savepoint"], Value::Bool(true));
    assert_eq!(
        runs[2]["restored_from"].as_str(),
        Some(stop_savepoint.as_str()),
        "the rollback resumes from the savepoint the upgrade stopped the job with"
    );
    // The journal holds the whole story: intent and outcome of the rollback and the mark.
    assert_eq!(report.held.len(), 1, "{:?}", report.held);
    assert!(
        report.held[0].note.contains("rolled back"),
        "{:?}",
        report.held
    );
    assert_eq!(class_of(&report, "orders"), ActionClass::None);
    assert!(
        report.plan.warnings.iter().any(|w| w.contains("held")),
        "{:?}",
        report.plan.warnings
    );
    let text = journal_text(&harness);
    assert!(text.contains("\"action\":\"auto_rollback\""), "{text}");
    assert!(text.contains("\"action\":\"revision_failed\""), "{text}");
    assert!(
        harness
            .context()
            .ledger
            .journal
            .pending_intents("dev")
            .is_empty()
    );

    // No loop: later passes leave the job on the good definition.
    for _ in 0..2 {
        let again = harness.pass().await;
        assert!(again.auto_rollbacks.is_empty());
        assert!(again.results.is_empty(), "{}", again.render_text());
        assert_eq!(again.held.len(), 1);
    }
    assert_eq!(harness.emulator_runs(id).await.len(), 3);
    assert_eq!(
        harness.flink_job("orders").await.config.sql_body.as_deref(),
        Some(GOOD_SQL)
    );

    // A commit that changes the job clears the mark and is applied.
    let fixed = "SELECT 3 AS v;";
    harness.flink_sql_job("orders", fixed);
    let next = harness.pass().await;
    assert_eq!(class_of(&next, "orders"), ActionClass::Upgrade);
    assert!(next.converged(), "{}", next.render_text());
    assert!(next.held.is_empty());
    let live = harness.flink_job("orders").await;
    assert!(live.status.is_running());
    assert_eq!(live.config.sql_body.as_deref(), Some(fixed));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_that_fails_to_start_rolls_back_on_the_next_pass() {
    let harness = Harness::start(ON).await;
    let bad = "-- dli-emulator:fail-on-start\nSELECT 2 AS v;";
    harness.flink_sql_job("orders", GOOD_SQL);
    assert!(harness.pass().await.converged());
    let id = harness.flink_job("orders").await.id;
    harness.flink_sql_job("orders", bad);
    let upgraded = harness.pass().await;
    assert!(!upgraded.converged(), "the start fails");
    assert_eq!(
        harness.flink_job("orders").await.status.as_str(),
        "job_submit_fail"
    );

    let report = harness.pass().await;
    assert_eq!(report.auto_rollbacks.len(), 1, "{}", report.render_text());
    assert!(report.auto_rollbacks[0].ok, "{:?}", report.auto_rollbacks);
    let live = harness.flink_job("orders").await;
    assert!(live.status.is_running());
    assert_eq!(live.config.sql_body.as_deref(), Some(GOOD_SQL));
    let runs = harness.emulator_runs(id).await;
    let stop_savepoint = stop_savepoint_of(&runs);
    assert_eq!(runs.len(), 3, "{runs:#?}");
    assert_eq!(
        runs[2]["restored_from"].as_str(),
        Some(stop_savepoint.as_str())
    );
    assert!(harness.pass().await.results.is_empty(), "held, no loop");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rollback_on_failure_a_failed_upgrade_is_left_alone() {
    let harness = Harness::start("prune: false").await;
    let bad = "-- dli-emulator:fail-after-ms=200\nSELECT 2 AS v;";
    let (id, _) = upgrade_to(&harness, bad).await;
    harness.wait_status("orders", "job_running_exception").await;
    let report = harness.pass().await;
    assert!(report.auto_rollbacks.is_empty());
    assert!(report.held.is_empty());
    // The planner starts the failed job again on git's (bad) definition, as before.
    assert_eq!(class_of(&report, "orders"), ActionClass::Start);
    let live = harness.flink_job("orders").await;
    assert_eq!(live.config.sql_body.as_deref(), Some(bad));
    assert!(harness.emulator_runs(id).await.len() >= 3);
    let journal = &harness.context().ledger.journal;
    let records = journal.records(&Default::default()).unwrap();
    assert!(
        !records.iter().any(|record| serde_json::to_string(record)
            .unwrap()
            .contains("auto_rollback")),
        "nothing about automatic rollback is journaled"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_window_is_not_rolled_back() {
    let harness = Harness::start("rollback_on_failure: {enabled: true, within: 1s}").await;
    let bad = "-- dli-emulator:fail-after-ms=1500\nSELECT 2 AS v;";
    upgrade_to(&harness, bad).await;
    harness.wait_status("orders", "job_running_exception").await;
    let report = harness.pass().await;
    assert!(
        report.auto_rollbacks.is_empty(),
        "{:?}",
        report.auto_rollbacks
    );
    assert!(report.held.is_empty());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_opts_in_through_an_environment_override() {
    // The target leaves automatic rollback off; the environment turns it on for `orders`.
    let harness = Harness::start("prune: false").await;
    std::fs::write(
        harness.dir.path().join("repo/environments/dev.yaml"),
        "variables: {}\noverrides:\n  orders: {rollback_on_failure: {enabled: true, within: 5m}}\n",
    )
    .unwrap();
    let bad = "-- dli-emulator:fail-after-ms=200\nSELECT 2 AS v;";
    upgrade_to(&harness, bad).await;
    harness.wait_status("orders", "job_running_exception").await;
    let report = harness.pass().await;
    assert_eq!(report.auto_rollbacks.len(), 1, "{}", report.render_text());
    assert_eq!(
        harness.flink_job("orders").await.config.sql_body.as_deref(),
        Some(GOOD_SQL)
    );
    // A bad value is refused where it is written.
    std::fs::write(
        harness.dir.path().join("repo/environments/dev.yaml"),
        "variables: {}\noverrides:\n  orders: {rollback_on_failure: {enabled: maybe, whithin: 5m}}\n",
    )
    .unwrap();
    let problems = match dli_gitops::pass::desired_for(&harness.context(), None).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("a bad rollback_on_failure is refused"),
    };
    assert!(problems.contains("environments/dev.yaml:3"), "{problems}");
    assert!(problems.contains("expected true or false"), "{problems}");
    assert!(problems.contains("unknown key `whithin`"), "{problems}");
    harness.stop().await;
}

/// The journal's records as JSON lines.
fn journal_text(harness: &Harness) -> String {
    let records = harness
        .context()
        .ledger
        .journal
        .records(&Default::default())
        .unwrap();
    records
        .iter()
        .map(|record| serde_json::to_string(record).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// An upgrade is guarded as soon as its outcome is journaled, not when the whole pass ends: a
/// pass cut short (a crash) while another action is still out still leaves the upgrade
/// watched, and the next pass rolls it back when it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_is_guarded_even_when_the_pass_dies_after_it() {
    let mut emulator = EmulatorConfig::for_tests(PathBuf::new());
    // The second job's create is held 20 s: the pass is still out when we cut it.
    emulator
        .faults
        .late
        .push(dli_gitops::emulator::TargetedFault {
            operation: "CreateFlinkSqlJob".into(),
            skip: 1,
            times: 1,
            delay_ms: 20_000,
        });
    let harness = Harness::over_emulator(emulator, &format!("    policy: {{{ON}}}\n")).await;
    harness.flink_sql_job("orders", GOOD_SQL);
    let created = harness.pass().await;
    assert!(created.converged(), "{}", created.render_text());
    let id = harness.flink_job("orders").await.id;

    harness.flink_sql_job(
        "orders",
        "-- dli-emulator:fail-after-ms=1500\nSELECT 2 AS v;",
    );
    harness.flink_sql_job("zz-later", GOOD_SQL);
    let guarded = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let text = journal_text(&harness);
            if text.contains("\"action\":\"rollback_guard\"") {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // Whichever ends first: the pass (it cannot, while the create is held) or the guard seen.
    // The pass's future is then dropped mid-flight, as a crash would cut it.
    let seen = tokio::select! {
        report = harness.pass() => panic!("the pass ended while a create was held 20 s: {}", report.render_text()),
        seen = guarded => seen,
    };
    assert!(
        seen,
        "the upgrade was not guarded while the pass went on:\n{}",
        journal_text(&harness)
    );

    harness.wait_status("orders", "job_running_exception").await;
    let report = harness.pass().await;
    assert_eq!(
        report.auto_rollbacks.len(),
        1,
        "the next pass rolls the guarded upgrade back: {}",
        report.render_text()
    );
    assert!(report.auto_rollbacks[0].ok, "{:?}", report.auto_rollbacks);
    let live = harness.flink_job("orders").await;
    assert!(live.status.is_running(), "{}", live.status);
    assert_eq!(live.config.sql_body.as_deref(), Some(GOOD_SQL));
    assert_eq!(harness.emulator_runs(id).await.len(), 3);
    harness.stop().await;
}
