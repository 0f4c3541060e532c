//! Unit tests for the status derivation: sync and health per job and per target.

use std::collections::BTreeMap;

use super::test_support::{dev_target, synced_job};
use super::*;
use crate::model::{DesiredJobs, FlinkJobStatus, ObservedJobs};
use crate::plan::test_support::{desired_sql, live_of, managed_view};
use crate::plan::{self, JournalView, PlanPolicy};

fn statuses(
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    view: &JournalView,
    errors: &BTreeMap<JobKey, ErrorInfo>,
) -> Vec<JobStatus> {
    let plan = plan::plan(desired, observed, view, &PlanPolicy::default());
    job_statuses(&StatusInputs {
        desired: Some(desired),
        observed,
        plan: Some(&plan),
        errors,
    })
}

#[test]
fn a_converged_running_job_is_synced_and_healthy() {
    let job = desired_sql("clicks");
    let desired = DesiredJobs {
        flink: vec![job.clone()],
        dlf: vec![],
    };
    let observed = ObservedJobs {
        flink: vec![live_of(&job, 7, FlinkJobStatus::Running)],
        dlf: vec![],
    };
    let jobs = statuses(
        &desired,
        &observed,
        &managed_view(&["clicks"]),
        &BTreeMap::new(),
    );
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].sync_status, SyncStatus::Synced);
    assert_eq!(jobs[0].health.status, HealthStatus::Healthy);
    assert_eq!(jobs[0].live_id, Some(7));
    assert_eq!(jobs[0].action, None);

    let mut target = dev_target();
    target.set_jobs(jobs, true);
    assert_eq!(target.sync.status, SyncStatus::Synced);
    assert_eq!(target.health.status, HealthStatus::Healthy);
    assert_eq!(target.counts.total, 1);
    assert_eq!(target.counts.sync.get("Synced"), Some(&1));
}

#[test]
fn a_job_git_wants_stopped_is_stopped_on_purpose_and_the_gate_reads_healthy() {
    let mut kept = desired_sql("fraud-detector");
    kept.lifecycle.desired_state = crate::model::RunState::Stopped;
    let running = desired_sql("clicks");
    let desired = DesiredJobs {
        flink: vec![kept.clone(), running.clone()],
        dlf: vec![],
    };
    let observed = ObservedJobs {
        flink: vec![
            live_of(&kept, 7, FlinkJobStatus::CancelSuccess),
            live_of(&running, 8, FlinkJobStatus::Running),
        ],
        dlf: vec![],
    };
    let view = managed_view(&["fraud-detector", "clicks"]);
    let jobs = statuses(&desired, &observed, &view, &BTreeMap::new());
    let stopped = jobs
        .iter()
        .find(|job| job.name == "fraud-detector")
        .unwrap();
    assert_eq!(stopped.health.status, HealthStatus::Suspended);
    assert!(stopped_on_purpose(stopped), "{:?}", stopped.health);
    let mut target = dev_target();
    target.sync.revision = Some("rev".into());
    target.sync.applied_revision = Some("rev".into());
    target.set_jobs(jobs, true);
    assert_eq!(
        target.health.status,
        HealthStatus::Healthy,
        "{:?}",
        target.health
    );
    assert_eq!(
        crate::status::sample_of(&target).condition,
        crate::promotion::gate::UpstreamCondition::Healthy
    );

    // Stopped while git wants it running: Suspended, and the gate says so once, in a sentence.
    let observed = ObservedJobs {
        flink: vec![
            live_of(&kept, 7, FlinkJobStatus::CancelSuccess),
            live_of(&running, 8, FlinkJobStatus::CancelSuccess),
        ],
        dlf: vec![],
    };
    let jobs = statuses(&desired, &observed, &view, &BTreeMap::new());
    target.set_jobs(jobs, true);
    assert_eq!(target.health.status, HealthStatus::Suspended);
    let condition = crate::status::sample_of(&target).condition;
    let reason = crate::promotion::gate::HoldReason::UpstreamNotHealthy {
        condition: condition.describe(),
    }
    .to_string();
    assert_eq!(
        reason,
        "the upstream is not converged and Healthy yet: its health is Suspended: clicks"
    );
}

#[test]
fn a_job_in_git_and_not_live_is_out_of_sync_and_missing() {
    let desired = DesiredJobs {
        flink: vec![desired_sql("clicks")],
        dlf: vec![],
    };
    let jobs = statuses(
        &desired,
        &ObservedJobs::default(),
        &JournalView::default(),
        &BTreeMap::new(),
    );
    assert_eq!(jobs[0].sync_status, SyncStatus::OutOfSync);
    assert_eq!(jobs[0].health.status, HealthStatus::Missing);
    assert_eq!(jobs[0].action.as_deref(), Some("create"));
}

#[test]
fn drift_on_a_live_job_is_out_of_sync_with_the_plan_reason_and_the_last_error() {
    let job = desired_sql("clicks");
    let mut live = live_of(&job, 7, FlinkJobStatus::Running);
    live.config.cu_number = 9;
    let desired = DesiredJobs {
        flink: vec![job],
        dlf: vec![],
    };
    let observed = ObservedJobs {
        flink: vec![live],
        dlf: vec![],
    };
    let mut errors = BTreeMap::new();
    errors.insert(
        JobKey::new(JobKind::FlinkSql, "clicks"),
        ErrorInfo {
            code: Some("DLI.0005".into()),
            message: "queue busy".into(),
            time: None,
        },
    );
    let jobs = statuses(&desired, &observed, &managed_view(&["clicks"]), &errors);
    assert_eq!(jobs[0].sync_status, SyncStatus::OutOfSync);
    assert_eq!(jobs[0].action.as_deref(), Some("upgrade"));
    assert!(jobs[0].reason.is_some());
    assert_eq!(
        jobs[0].last_error.as_ref().and_then(|e| e.code.as_deref()),
        Some("DLI.0005")
    );
}

#[test]
fn a_managed_job_out_of_git_is_listed_out_of_sync_and_an_unmanaged_one_is_not() {
    let managed = live_of(&desired_sql("old"), 1, FlinkJobStatus::Running);
    let mut unmanaged = live_of(&desired_sql("someone-elses"), 2, FlinkJobStatus::Running);
    unmanaged.config.tags.clear();
    let observed = ObservedJobs {
        flink: vec![managed, unmanaged],
        dlf: vec![],
    };
    let desired = DesiredJobs {
        flink: vec![desired_sql("clicks")],
        dlf: vec![],
    };
    let jobs = statuses(
        &desired,
        &observed,
        &managed_view(&["old"]),
        &BTreeMap::new(),
    );
    let names: Vec<&str> = jobs.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(names, vec!["clicks", "old"]);
    let old = &jobs[1];
    assert_eq!(old.sync_status, SyncStatus::OutOfSync);
    assert_eq!(old.health.status, HealthStatus::Healthy);
}

#[test]
fn without_a_plan_sync_is_unknown_but_health_is_reported() {
    let job = desired_sql("clicks");
    let observed = ObservedJobs {
        flink: vec![live_of(&job, 7, FlinkJobStatus::RunningException)],
        dlf: vec![],
    };
    let jobs = job_statuses(&StatusInputs {
        desired: None,
        observed: &observed,
        plan: None,
        errors: &BTreeMap::new(),
    });
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].sync_status, SyncStatus::Unknown);
    assert_eq!(jobs[0].health.status, HealthStatus::Degraded);
    let mut target = dev_target();
    target.set_jobs(jobs, false);
    assert_eq!(target.sync.status, SyncStatus::Unknown);
    assert_eq!(target.health.status, HealthStatus::Degraded);
    assert!(target.health.message.as_deref().unwrap().contains("clicks"));
}

#[test]
fn live_status_words_map_to_argo_health() {
    let cases = [
        ("job_running", HealthStatus::Healthy),
        ("job_finish", HealthStatus::Healthy),
        ("job_submitting", HealthStatus::Progressing),
        ("job_savepointing", HealthStatus::Progressing),
        ("job_canceling", HealthStatus::Progressing),
        ("job_submit_fail", HealthStatus::Degraded),
        ("job_running_exception", HealthStatus::Degraded),
        ("job_arrearage_stopped", HealthStatus::Degraded),
        ("job_init", HealthStatus::Suspended),
        ("job_cancel_success", HealthStatus::Suspended),
        ("job_something_new", HealthStatus::Unknown),
    ];
    for (word, expected) in cases {
        assert_eq!(
            flink_health(&FlinkJobStatus::new(word), None).status,
            expected,
            "{word}"
        );
    }
    let described = flink_health(&FlinkJobStatus::SubmitFail, Some("queue not found"));
    assert_eq!(
        described.message.as_deref(),
        Some("job_submit_fail: queue not found")
    );
}

#[test]
fn aggregate_health_takes_the_worst_in_argo_order() {
    let job = synced_job;
    assert_eq!(aggregate_health(&[]).status, HealthStatus::Healthy);
    let jobs = [
        job("a", HealthStatus::Healthy),
        job("b", HealthStatus::Suspended),
        job("c", HealthStatus::Progressing),
    ];
    assert_eq!(aggregate_health(&jobs).status, HealthStatus::Progressing);
    let jobs = [
        job("a", HealthStatus::Missing),
        job("b", HealthStatus::Degraded),
    ];
    let health = aggregate_health(&jobs);
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(health.message.as_deref(), Some("Degraded: b"));
}

#[test]
fn a_job_held_by_automatic_rollback_is_degraded_out_of_sync_and_fails_the_promotion_gate() {
    // The live job runs the previous definition; git still asks for the one that failed.
    let job = desired_sql("clicks");
    let mut live = live_of(&job, 7, FlinkJobStatus::Running);
    live.config.sql_body = Some("SELECT 1;\n".into());
    let desired = DesiredJobs {
        flink: vec![job.clone()],
        dlf: vec![],
    };
    let observed = ObservedJobs {
        flink: vec![live],
        dlf: vec![],
    };
    let mut view = managed_view(&["clicks"]);
    view.auto_rollback.insert(
        "clicks".into(),
        serde_json::json!({"failed": {"desired_digest": job.digest, "note": "revision abc failed"}}),
    );
    let plan = plan::plan(&desired, &observed, &view, &PlanPolicy::default());
    assert!(plan.is_empty(), "held: {}", plan.render_text());
    let mut jobs = job_statuses(&StatusInputs {
        desired: Some(&desired),
        observed: &observed,
        plan: Some(&plan),
        errors: &BTreeMap::new(),
    });
    assert_eq!(
        jobs[0].health.status,
        HealthStatus::Healthy,
        "before the mark"
    );
    mark_rolled_back(
        &mut jobs,
        &[(
            "clicks".into(),
            Some("abc".into()),
            "revision abc failed".into(),
        )],
    );
    assert_eq!(jobs[0].health.status, HealthStatus::Degraded);
    assert_eq!(jobs[0].sync_status, SyncStatus::OutOfSync);
    let message = jobs[0].health.message.clone().unwrap();
    assert!(
        message.contains("rolled back automatically from revision abc"),
        "{message}"
    );

    let mut target = dev_target();
    target.set_jobs(jobs, true);
    target.sync.revision = Some("abc".into());
    assert_eq!(target.health.status, HealthStatus::Degraded);
    let sample = crate::status::sample_of(&target);
    assert_eq!(sample.revision.as_deref(), Some("abc"));
    assert!(
        matches!(
            sample.condition,
            crate::promotion::UpstreamCondition::Degraded(_)
        ),
        "a promotion gate treats the revision as failed upstream: {:?}",
        sample.condition
    );
}
