//! Unit tests of the executor, the observer and intent resolution against in-memory seams:
//! the exact calls each plan makes, a failing step that does not stop other jobs, a stop that
//! loses its savepoint, the observation cache.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::ledger::*;
use super::live::*;
use super::*;
use crate::model::{
    DesiredFlinkJob, FlinkJobConfig, FlinkJobStatus, Lifecycle, ObservedFlinkJob, RunState,
    SourceLocation,
};
use crate::plan::JournalView;

#[derive(Default)]
struct FakeState {
    jobs: BTreeMap<i64, ObservedFlinkJob>,
    next_id: i64,
    clock: i64,
    calls: Vec<String>,
    /// `operation job-name` → the failure that call returns.
    failures: BTreeMap<String, ServiceFailure>,
    /// A stop with a savepoint writes one (off: the service "forgets").
    no_savepoint_on_stop: bool,
    /// Every stop writes its savepoint into this directory: the service names stop
    /// savepoints to the second, so two stops of a job in one second share one.
    stop_directory: Option<String>,
    /// Backup paths that were deleted from OBS.
    missing_backups: std::collections::BTreeSet<String>,
    /// Jobs the list call leaves out (an implausible, shorter listing).
    unlisted: std::collections::BTreeSet<String>,
    /// Complete savepoints on "OBS": directory → which savepoint its `_metadata` is (the
    /// clock when it was taken; a copy has its source's). A savepoint written into a
    /// directory that holds one replaces it, as on OBS.
    savepoints: BTreeMap<String, i64>,
}

#[derive(Default)]
struct FakeLive {
    state: Mutex<FakeState>,
}

impl FakeLive {
    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn call(&self, operation: &str, job: &str) -> Result<(), ServiceFailure> {
        let mut state = self.state.lock().unwrap();
        let key = format!("{operation} {job}");
        state.calls.push(key.clone());
        state.clock += 1;
        match state.failures.get(&key) {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }

    fn name_of(&self, job_id: i64) -> String {
        let state = self.state.lock().unwrap();
        state
            .jobs
            .get(&job_id)
            .map(|job| job.name.clone())
            .unwrap_or_default()
    }

    fn with_job<T>(
        &self,
        job_id: i64,
        change: impl FnOnce(&mut ObservedFlinkJob, i64) -> T,
    ) -> Result<T, ServiceFailure> {
        let mut state = self.state.lock().unwrap();
        let clock = state.clock;
        let job = state.jobs.get_mut(&job_id).ok_or_else(|| ServiceFailure {
            code: Some("DLI.16001".into()),
            message: format!("no job {job_id}"),
            request_id: None,
            retryable: false,
        })?;
        job.update_time = clock;
        Ok(change(job, clock))
    }

    fn insert(&self, name: &str, config: &FlinkJobConfig) -> i64 {
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let id = state.next_id;
        let clock = state.clock;
        state.jobs.insert(
            id,
            ObservedFlinkJob {
                id,
                name: name.to_string(),
                status: FlinkJobStatus::Init,
                update_time: clock,
                config: config.clone(),
                savepoint_path: None,
                status_desc: None,
            },
        );
        id
    }

    fn live(&self, name: &str) -> ObservedFlinkJob {
        let state = self.state.lock().unwrap();
        state
            .jobs
            .values()
            .find(|job| job.name == name)
            .cloned()
            .expect("live job")
    }
}

impl LiveService for FakeLive {
    async fn list_flink_jobs(&self) -> Result<Listing<ListedFlinkJob>, ServiceFailure> {
        self.call("list", "")?;
        let state = self.state.lock().unwrap();
        Ok(Listing {
            jobs: state
                .jobs
                .values()
                .filter(|job| !state.unlisted.contains(&job.name))
                .map(|job| ListedFlinkJob {
                    id: job.id,
                    name: job.name.clone(),
                    status: job.status.clone(),
                    update_time: job.update_time,
                })
                .collect(),
            calls: 1,
        })
    }
    async fn flink_job(&self, job_id: i64) -> Result<ObservedFlinkJob, ServiceFailure> {
        self.call("detail", &self.name_of(job_id))?;
        let state = self.state.lock().unwrap();
        state
            .jobs
            .get(&job_id)
            .cloned()
            .ok_or_else(|| ServiceFailure::local(format!("no job {job_id}")))
    }
    async fn list_dlf_jobs(&self) -> Result<Listing<ListedDlfJob>, ServiceFailure> {
        self.call("dlf_list", "")?;
        Ok(Listing {
            jobs: Vec::new(),
            calls: 1,
        })
    }
    async fn dlf_job(&self, name: &str) -> Result<serde_json::Value, ServiceFailure> {
        self.call("dlf_detail", name)?;
        Ok(serde_json::Value::Null)
    }
    async fn backup_flink_job(
        &self,
        job_id: i64,
        folder: &str,
    ) -> Result<Vec<String>, ServiceFailure> {
        let name = self.name_of(job_id);
        self.call("backup", &name)?;
        Ok(vec![format!("obs://backups/{folder}/{name}.zip")])
    }
    async fn backup_dlf_job(&self, name: &str, _: &str) -> Result<Vec<String>, ServiceFailure> {
        self.call("dlf_backup", name)?;
        Ok(Vec::new())
    }
    async fn backup_exists(&self, path: &str) -> Result<bool, ServiceFailure> {
        self.call("backup_exists", path)?;
        Ok(!self.state.lock().unwrap().missing_backups.contains(path))
    }
    async fn import_flink_zip(&self, zip: &str) -> Result<Vec<ImportedJob>, ServiceFailure> {
        self.call("import_zip", zip)?;
        Ok(Vec::new())
    }
    async fn create_flink_job(
        &self,
        name: &str,
        config: &FlinkJobConfig,
    ) -> Result<i64, ServiceFailure> {
        self.call("create", name)?;
        Ok(self.insert(name, config))
    }
    async fn update_flink_job(
        &self,
        job_id: i64,
        config: &FlinkJobConfig,
        _scope: &crate::model::UpdateScope,
    ) -> Result<(), ServiceFailure> {
        self.call("update", &self.name_of(job_id))?;
        self.with_job(job_id, |job, _| {
            let tags = job.config.tags.clone();
            job.config = config.clone();
            job.config.tags = tags;
        })
    }
    async fn update_flink_tags(
        &self,
        job_id: i64,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), ServiceFailure> {
        self.call("tags", &self.name_of(job_id))?;
        self.with_job(job_id, |job, _| {
            job.config.tags.extend(set.clone());
            for key in remove {
                job.config.tags.remove(key);
            }
        })
    }
    async fn import_savepoint(&self, job_id: i64, path: &str) -> Result<(), ServiceFailure> {
        self.call("import_savepoint", &self.name_of(job_id))?;
        self.with_job(job_id, |job, _| job.savepoint_path = Some(path.to_string()))
    }
    async fn run_flink_job(&self, job_id: i64, resume: bool) -> Result<(), ServiceFailure> {
        self.call(
            if resume { "run_resume" } else { "run" },
            &self.name_of(job_id),
        )?;
        self.with_job(job_id, |job, _| job.status = FlinkJobStatus::Running)
    }
    async fn stop_flink_job(&self, job_id: i64, savepoint: bool) -> Result<(), ServiceFailure> {
        self.call(
            if savepoint { "stop_savepoint" } else { "stop" },
            &self.name_of(job_id),
        )?;
        let (forget, directory) = {
            let state = self.state.lock().unwrap();
            (state.no_savepoint_on_stop, state.stop_directory.clone())
        };
        let taken = self.with_job(job_id, |job, clock| {
            job.status = FlinkJobStatus::CancelSuccess;
            if savepoint && !forget {
                let path = directory.unwrap_or_else(|| format!("obs://sp/{job_id}/{clock}/"));
                job.savepoint_path = Some(path.clone());
                return Some(path);
            }
            None
        })?;
        if let Some(path) = taken {
            let mut state = self.state.lock().unwrap();
            let clock = state.clock;
            state.savepoints.insert(path, clock);
        }
        Ok(())
    }
    fn savepoint_base(&self) -> Option<String> {
        Some("obs://backups/test/".into())
    }
    async fn trigger_flink_savepoint(
        &self,
        job_id: i64,
        directory: &str,
    ) -> Result<(), ServiceFailure> {
        self.call("trigger_savepoint", &self.name_of(job_id))?;
        let mut state = self.state.lock().unwrap();
        let clock = state.clock;
        state.savepoints.insert(directory.to_string(), clock);
        drop(state);
        self.with_job(job_id, |job, _| {
            job.savepoint_path = Some(directory.to_string())
        })
    }
    async fn savepoint_size(
        &self,
        directory: &str,
    ) -> Result<Option<crate::savepoints::SavepointSize>, ServiceFailure> {
        let state = self.state.lock().unwrap();
        Ok(state
            .savepoints
            .contains_key(directory)
            .then_some(crate::savepoints::SavepointSize {
                objects: 1,
                bytes: 10,
            }))
    }
    async fn copy_savepoint(
        &self,
        source: &str,
        destination: &str,
    ) -> Result<crate::savepoints::SavepointSize, ServiceFailure> {
        // Named by what is copied: the directories carry times.
        let what = if source.contains("/dli-gitops/triggered/") {
            "triggered"
        } else {
            "service"
        };
        self.call("copy_savepoint", what)?;
        let mut state = self.state.lock().unwrap();
        let Some(&taken) = state.savepoints.get(source) else {
            return Err(ServiceFailure::local(format!("no savepoint {source}")));
        };
        state.savepoints.insert(destination.to_string(), taken);
        Ok(crate::savepoints::SavepointSize {
            objects: 1,
            bytes: 10,
        })
    }
    async fn savepoint_copy_matches(
        &self,
        source: &str,
        copy: &str,
    ) -> Result<bool, ServiceFailure> {
        self.call("compare_savepoint", "")?;
        let state = self.state.lock().unwrap();
        Ok(matches!(
            (state.savepoints.get(source), state.savepoints.get(copy)),
            (Some(source), Some(copy)) if source == copy
        ))
    }
    async fn delete_flink_job(&self, job_id: i64) -> Result<(), ServiceFailure> {
        self.call("delete", &self.name_of(job_id))?;
        self.state.lock().unwrap().jobs.remove(&job_id);
        Ok(())
    }
    async fn import_dlf_job(
        &self,
        job: &crate::model::DesiredDlfJob,
        _: &str,
    ) -> Result<String, ServiceFailure> {
        self.call("dlf_import", &job.name)?;
        Ok("task".into())
    }
    async fn import_dlf_path(&self, path: &str) -> Result<String, ServiceFailure> {
        self.call("dlf_import_path", path)?;
        Ok("task".into())
    }
    async fn wait_dlf_task(&self, task: &str, _: Duration) -> Result<(), ServiceFailure> {
        self.call("dlf_wait", task)
    }
    async fn delete_dlf_job(&self, name: &str) -> Result<(), ServiceFailure> {
        self.call("dlf_delete", name)
    }
}

#[derive(Default)]
struct FakeLedger {
    records: Mutex<Vec<String>>,
    outcomes: Mutex<Vec<OutcomeEntry>>,
    cache: Mutex<BTreeMap<String, CachedObservation>>,
    view: Mutex<JournalView>,
    pending: Mutex<Vec<PendingAction>>,
    /// The process "dies" when it would journal this job's action outcome (one-shot records,
    /// whose action ids end in a part name, still go through).
    crash_at_outcome_of: Mutex<Option<String>>,
}

impl Ledger for FakeLedger {
    fn target(&self) -> &str {
        "test"
    }
    fn view(&self) -> JournalView {
        self.view.lock().unwrap().clone()
    }
    fn cached(&self, job: &str) -> Option<CachedObservation> {
        self.cache.lock().unwrap().get(job).cloned()
    }
    fn known_live_id(&self, job: &str) -> Option<i64> {
        let outcomes = self.outcomes.lock().unwrap();
        let last = outcomes.iter().rev().find(|outcome| outcome.job == job)?;
        if last.effects.deleted {
            return None;
        }
        outcomes
            .iter()
            .rev()
            .filter(|outcome| outcome.job == job)
            .find_map(|outcome| outcome.effects.live_id)
    }
    fn savepoint_in_target(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn pending(&self) -> Vec<PendingAction> {
        self.pending.lock().unwrap().clone()
    }
    fn backup_sets(&self) -> Vec<BackupSet> {
        Vec::new()
    }
    async fn savepoint(&self, entry: crate::journal::SavepointRecord) -> Result<u64, ApplyError> {
        let mut records = self.records.lock().unwrap();
        records.push(format!(
            "savepoint {} {} {}",
            entry.origin, entry.job, entry.path
        ));
        let seq = records.len() as u64;
        // The catalog, as the journal's view folds it (the job's name is its key here).
        self.view
            .lock()
            .unwrap()
            .savepoint_catalog
            .entry(entry.job.clone())
            .or_default()
            .push(crate::plan::CatalogSavepoint {
                seq,
                path: entry.path,
                source_path: entry.source_path,
            });
        Ok(seq)
    }
    async fn intent(&self, entry: IntentEntry) -> Result<u64, ApplyError> {
        let mut records = self.records.lock().unwrap();
        records.push(format!("intent {} {}", entry.action, entry.job));
        Ok(records.len() as u64)
    }
    async fn outcome(&self, entry: OutcomeEntry) -> Result<u64, ApplyError> {
        let one_shot =
            entry.action_id.ends_with("-restore") || entry.action_id.ends_with("-stop-savepoint");
        if !one_shot && self.crash_at_outcome_of.lock().unwrap().as_deref() == Some(&entry.job) {
            return Err(ApplyError::Journal {
                target: "test".into(),
                what: "the outcome (the process died)",
                source: "killed".into(),
            });
        }
        let mut records = self.records.lock().unwrap();
        records.push(format!("outcome {} ok={}", entry.job, entry.ok));
        let mut view = self.view.lock().unwrap();
        let job = view.flink.entry(entry.job.clone()).or_default();
        if let Some(managed) = entry.effects.managed {
            job.managed = managed;
        }
        if let Some(path) = &entry.effects.savepoint_path {
            job.last_savepoint = Some(path.clone());
        }
        if let Some(key) = &entry.effects.restore_key {
            job.applied_restore_key = Some(key.clone());
        }
        self.pending
            .lock()
            .unwrap()
            .retain(|pending| pending.action_id != entry.action_id);
        self.outcomes.lock().unwrap().push(entry);
        Ok(records.len() as u64)
    }
    async fn observed(&self, entry: ObservationEntry) -> Result<u64, ApplyError> {
        let mut records = self.records.lock().unwrap();
        records.push(format!("observed {}", entry.job));
        self.cache.lock().unwrap().insert(
            entry.job.clone(),
            CachedObservation {
                live_id: entry.live_id,
                update_time: entry.update_time,
                status: entry.status,
                snapshot: entry.snapshot,
            },
        );
        Ok(records.len() as u64)
    }
    async fn revision_applied(&self, revision: &str, _: &str, _: &str) -> Result<u64, ApplyError> {
        let mut records = self.records.lock().unwrap();
        records.push(format!("revision {revision}"));
        Ok(records.len() as u64)
    }
}

fn job(name: &str, cu_number: i32, state: RunState) -> DesiredFlinkJob {
    let mut config = FlinkJobConfig::defaults_for(crate::model::JobKind::FlinkSql);
    config.sql_body = Some(format!("SELECT {cu_number}"));
    // An exclusive-cluster job (the default run mode) starts only with a queue.
    config.queue_name = Some("flink_queue".into());
    config.cu_number = cu_number;
    DesiredFlinkJob {
        name: name.to_string(),
        config,
        lifecycle: Lifecycle {
            desired_state: state,
            ..Lifecycle::default()
        },
        source: SourceLocation::default(),
        digest: format!("{name}-{cu_number}-{state:?}"),
        policy: Default::default(),
    }
}

fn desired(jobs: Vec<DesiredFlinkJob>) -> DesiredJobs {
    DesiredJobs {
        flink: jobs,
        ..DesiredJobs::default()
    }
}

fn options() -> ApplyOptions {
    ApplyOptions {
        poll_interval: Duration::from_millis(1),
        transition_timeout: Duration::from_millis(200),
        revision: Some("rev1".into()),
        ..ApplyOptions::default()
    }
}

/// One job `name` at `cu_number` CU that should run.
fn one_job(name: &str, cu_number: i32) -> DesiredJobs {
    desired(vec![job(name, cu_number, RunState::Running)])
}

/// A pass under the default plan policy and `options`: its report, or why it could not run.
async fn pass_with<L: LiveService>(
    live: &L,
    ledger: &FakeLedger,
    desired: &DesiredJobs,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    reconcile_with(
        live,
        ledger,
        desired,
        &crate::plan::PlanPolicy::default(),
        options,
    )
    .await
}

/// A pass with the test options that must run.
async fn pass<L: LiveService>(live: &L, ledger: &FakeLedger, desired: &DesiredJobs) -> ApplyReport {
    pass_with(live, ledger, desired, &options())
        .await
        .expect("the pass runs")
}

fn calls_since(live: &FakeLive, from: usize) -> Vec<String> {
    live.calls()[from..]
        .iter()
        .filter(|call| !call.starts_with("detail") && !call.starts_with("list"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_upgrade_runs_exactly_the_planned_steps_and_journals_around_them() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    pass(&live, &ledger, &one_job("a", 2)).await;
    assert!(live.live("a").status.is_running());

    let from = live.calls().len();
    let report = pass(&live, &ledger, &one_job("a", 4)).await;
    assert!(report.converged(), "{}", report.render_text());
    assert_eq!(
        calls_since(&live, from),
        vec![
            "backup a",
            "trigger_savepoint a",
            "copy_savepoint triggered",
            "stop_savepoint a",
            "copy_savepoint service",
            "update a",
            "import_savepoint a",
            "run_resume a"
        ]
    );
    let live_job = live.live("a");
    assert_eq!(live_job.config.cu_number, 4);
    let stop_savepoint = report.results[0]
        .savepoint_path
        .clone()
        .expect("a savepoint");
    assert_eq!(
        live_job.savepoint_path.as_deref(),
        Some(stop_savepoint.as_str())
    );
    let records = ledger.records.lock().unwrap().clone();
    let intent = records
        .iter()
        .rposition(|r| r == "intent upgrade a")
        .unwrap();
    let outcome = records
        .iter()
        .rposition(|r| r == "outcome a ok=true")
        .unwrap();
    assert!(intent < outcome);
    assert_eq!(records.last().map(String::as_str), Some("revision rev1"));
    let last = ledger.outcomes.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.effects.spec_digest.as_deref(), Some("a-4-Running"));
    assert_eq!(last.effects.managed, Some(true));
    assert_eq!(last.effects.backup_zips.len(), 1);
}

#[tokio::test]
async fn a_failing_step_ends_its_action_only_and_is_recorded_with_the_service_code() {
    let live = FakeLive::default();
    live.state.lock().unwrap().failures.insert(
        "create b".into(),
        ServiceFailure {
            code: Some("DLI.0001".into()),
            message: "parameter error".into(),
            request_id: Some("req-1".into()),
            retryable: false,
        },
    );
    let ledger = FakeLedger::default();
    let jobs = desired(vec![
        job("b", 2, RunState::Running),
        job("c", 2, RunState::Running),
    ]);
    let report = pass(&live, &ledger, &jobs).await;
    let failed: Vec<_> = report.failures().map(|r| r.name.as_str()).collect();
    assert_eq!(failed, vec!["b"]);
    let error = report.results[0].error.clone().unwrap();
    assert_eq!(error.code.as_deref(), Some("DLI.0001"));
    assert_eq!(error.request_id.as_deref(), Some("req-1"));
    assert!(
        error.message.starts_with("create_job: "),
        "{}",
        error.message
    );
    assert!(
        live.live("c").status.is_running(),
        "the other job converged"
    );
    assert!(
        !ledger
            .records
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("revision")),
        "a pass with a failure does not claim the revision"
    );
}

#[tokio::test]
async fn a_stop_without_a_savepoint_fails_before_anything_is_imported_over_the_job() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    pass(&live, &ledger, &one_job("d", 2)).await;
    live.state.lock().unwrap().no_savepoint_on_stop = true;
    let from = live.calls().len();
    let report = pass(&live, &ledger, &one_job("d", 3)).await;
    assert!(!report.results[0].ok);
    assert!(
        report.results[0]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("no new savepoint"),
        "{}",
        report.render_text()
    );
    assert_eq!(
        calls_since(&live, from),
        vec![
            "backup d",
            "trigger_savepoint d",
            "copy_savepoint triggered",
            "stop_savepoint d"
        ]
    );
    assert_eq!(live.live("d").config.cu_number, 2, "nothing was imported");
}

#[tokio::test]
async fn an_unchanged_target_is_observed_from_the_cache_with_one_list_call() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    let jobs = desired(vec![
        job("e", 2, RunState::Running),
        job("f", 2, RunState::Stopped),
    ]);
    pass(&live, &ledger, &jobs).await;
    let first = pass(&live, &ledger, &jobs).await;
    let second = pass(&live, &ledger, &jobs).await;
    assert!(first.plan.is_empty() && second.plan.is_empty());
    assert_eq!(second.observe.flink_list_calls, 1);
    assert_eq!(second.observe.flink_detail_calls, 0);
    assert_eq!(second.observe.cached, 2);
    assert_eq!(
        second.observe.recorded, 0,
        "no Observed record without a change"
    );
    assert_eq!(
        second.observe.dlf_list_calls, 0,
        "no DLF call when nobody knows DLF jobs"
    );

    // A change made behind our back moves update_time: that one job is read again.
    let id = live.live("e").id;
    live.with_job(id, |job, _| job.config.cu_number = 9)
        .unwrap();
    let drifted = pass(&live, &ledger, &jobs).await;
    assert_eq!(drifted.observe.flink_detail_calls, 1);
    assert_eq!(
        live.live("e").config.cu_number,
        2,
        "the drift was corrected"
    );
}

#[tokio::test]
async fn an_intent_left_open_is_resolved_by_observing_before_planning() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    let jobs = desired(vec![job("g", 2, RunState::Running)]);
    pass(&live, &ledger, &jobs).await;
    ledger.pending.lock().unwrap().push(PendingAction {
        action_id: "crashed-1".into(),
        job: "g".into(),
        action: "upgrade".into(),
        plan_id: Some("p".into()),
        detail: serde_json::Value::Null,
        seq: 1,
    });
    let from = live.calls().len();
    let report = pass(&live, &ledger, &jobs).await;
    assert_eq!(report.resolved.len(), 1);
    assert!(
        report.resolved[0].found.contains("job_running"),
        "{:?}",
        report.resolved
    );
    assert!(
        live.calls()[from..].iter().any(|call| call == "detail g"),
        "the job was re-read despite the cache"
    );
    let resolution = ledger
        .outcomes
        .lock()
        .unwrap()
        .iter()
        .find(|outcome| outcome.action_id == "crashed-1")
        .cloned()
        .unwrap();
    assert!(!resolution.ok);
    assert_eq!(
        resolution.error.unwrap().code.as_deref(),
        Some("INTERRUPTED")
    );
    assert!(ledger.pending.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_plan_that_changed_since_approval_is_not_applied() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    let jobs = desired(vec![job("h", 2, RunState::Running)]);
    let report = pass_with(
        &live,
        &ledger,
        &jobs,
        &ApplyOptions {
            expected_plan_id: Some("not-this-plan".into()),
            ..options()
        },
    )
    .await;
    assert!(matches!(report, Err(ApplyError::PlanChanged { .. })));
    assert!(live.calls().iter().all(|call| call.starts_with("list")));
}

#[tokio::test]
async fn an_export_resolves_to_the_live_jobs_and_plans_no_change() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    let mut config = FlinkJobConfig::defaults_for(crate::model::JobKind::FlinkSql);
    config.sql_body = Some("SELECT a, COUNT(*)\nFROM t\nGROUP BY a;\n".into());
    config.queue_name = Some("flink_queue".into());
    config.cu_number = 3;
    config.checkpoint_enabled = true;
    config.checkpoint_mode = crate::model::CheckpointMode::AtLeastOnce;
    config.tm_slot_num = Some(2);
    config.flink_version = Some("1.15".into());
    config
        .runtime_config
        .insert("table.exec.state.ttl".into(), "1h".into());
    config.tags.insert("team".into(), "growth".into());
    let running = live.insert("running-job", &config);
    live.with_job(running, |job, _| job.status = FlinkJobStatus::Running)
        .unwrap();
    let mut jar = FlinkJobConfig::defaults_for(crate::model::JobKind::FlinkJar);
    jar.entrypoint = Some("obs://artifacts/app.jar".into());
    jar.main_class = Some("com.example.Main".into());
    jar.entrypoint_args = Some("--price ${not_a_variable}".into());
    live.insert("draft-jar", &jar);

    let out = tempfile::tempdir().unwrap();
    let report = export_with(&live, &ledger, out.path(), "dev")
        .await
        .expect("export");
    assert_eq!(report.flink_jobs, vec!["draft-jar", "running-job"]);
    assert_eq!(report.adopted.len(), 2, "{}", report.render_text());
    assert!(
        live.live("running-job").is_managed(),
        "adopted jobs carry the managed tag"
    );

    let snapshot = crate::desired::read_directory(out.path()).unwrap();
    let desired = crate::desired::resolve(&snapshot, Some("dev")).expect("the export resolves");
    let plan = pass_with(
        &live,
        &ledger,
        &desired,
        &ApplyOptions {
            dry_run: true,
            ..options()
        },
    )
    .await
    .unwrap()
    .plan;
    assert!(plan.is_empty(), "{}", plan.render_text());

    let again = export_with(&live, &ledger, out.path(), "dev").await;
    assert!(
        matches!(again, Err(ApplyError::Export { .. })),
        "an export never writes into a non-empty directory"
    );
}

/// The cloud-backed live service against the real emulator (with the in-memory ledger): the
/// bundle, staging upload, import, savepoint and tag calls the fake above stands in for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_live_service_upgrades_a_job_on_the_emulator() {
    use crate::cloud::{ClientOptions, CloudClients, Credentials, Secret, ServiceEndpoints};
    use crate::emulator::{
        DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::for_tests(dir.path().join("emulator")))
        .await
        .unwrap();
    let url = |text: String| url::Url::parse(&text).unwrap();
    let endpoints = ServiceEndpoints {
        dli: url(emulator.dli_url()),
        dlf: url(emulator.dlf_url()),
        iam: url(emulator.iam_url()),
        obs: url(emulator.s3_url()),
    };
    let clients = CloudClients::new(
        &endpoints,
        "cn-north-4",
        DEV_PROJECT_ID,
        Credentials::AkSk {
            access_key: DEV_ACCESS_KEY.into(),
            secret_key: Secret::new(DEV_SECRET_KEY),
            security_token: None,
        },
        ClientOptions::default(),
        None,
    )
    .unwrap();
    let staging = clients
        .object_store("obs://dli-gitops-staging/test/")
        .unwrap();
    let live = super::CloudLive {
        clients,
        staging: Some(staging),
        backups: Some("obs://dli-gitops-backups/test/".into()),
    };
    let ledger = FakeLedger::default();
    let first = pass(&live, &ledger, &one_job("cloud", 2)).await;
    assert!(first.converged(), "{}", first.render_text());
    let second = pass(&live, &ledger, &one_job("cloud", 3)).await;
    assert!(
        second.converged(),
        "{}\n{}",
        second.plan.render_text(),
        second.render_text()
    );
    assert_eq!(
        second.plan.actions[0].class,
        crate::plan::ActionClass::Upgrade
    );
    let third = pass(&live, &ledger, &one_job("cloud", 3)).await;
    assert!(third.plan.is_empty(), "{}", third.plan.render_text());
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_restore_is_journaled_the_moment_its_savepoint_import_succeeds() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    pass(&live, &ledger, &one_job("r", 2)).await;
    let mut restored = job("r", 2, RunState::Running);
    restored.lifecycle.restore = Some(crate::model::Restore {
        savepoint_path: Some("obs://ckpt/seed/".into()),
        nonce: Some(1),
        from_target: None,
        from_catalog: None,
    });
    // The pass dies after the restore ran, before the action's outcome is written.
    *ledger.crash_at_outcome_of.lock().unwrap() = Some("r".into());
    let died = pass_with(&live, &ledger, &desired(vec![restored.clone()]), &options()).await;
    assert!(matches!(died, Err(ApplyError::Journal { .. })), "{died:?}");
    assert!(
        live.calls().iter().any(|call| call == "import_savepoint r"),
        "the restore ran: {:?}",
        live.calls()
    );
    *ledger.crash_at_outcome_of.lock().unwrap() = None;

    let from = live.calls().len();
    let report = pass(&live, &ledger, &desired(vec![restored])).await;
    assert_eq!(
        calls_since(&live, from),
        Vec::<String>::new(),
        "the restore is not applied a second time: {}",
        report.render_text()
    );
}

#[tokio::test]
async fn a_job_the_list_leaves_out_is_looked_up_by_id_and_never_created_again() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    let jobs = desired(vec![
        job("kept", 2, RunState::Running),
        job("other", 2, RunState::Running),
    ]);
    pass(&live, &ledger, &jobs).await;
    // A well-formed listing that lacks both jobs, while the journal knows them live.
    live.state.lock().unwrap().unlisted = ["kept".to_string(), "other".to_string()].into();
    let from = live.calls().len();
    let report = pass(&live, &ledger, &jobs).await;
    assert!(
        report.plan.is_empty(),
        "nothing is created over jobs that exist:\n{}",
        report.plan.render_text()
    );
    assert_eq!(
        calls_since(&live, from),
        Vec::<String>::new(),
        "no mutating call"
    );
    assert_eq!(report.observe.flink_detail_calls, 2, "both looked up by id");
}

/// Fails the fake's call `operation job` until it is cleared.
fn fail(live: &FakeLive, call: &str) {
    live.state.lock().unwrap().failures.insert(
        call.to_string(),
        ServiceFailure::local(format!("{call} failed (the pass is cut short here)")),
    );
}

fn clear_failures(live: &FakeLive) {
    live.state.lock().unwrap().failures.clear();
}

/// The savepoint the directory `path` holds (the fake's clock when it was taken).
fn savepoint_at(live: &FakeLive, path: &str) -> Option<i64> {
    live.state.lock().unwrap().savepoints.get(path).copied()
}

#[tokio::test]
async fn a_catalogued_copy_is_reused_only_while_its_directory_holds_the_same_savepoint() {
    let live = FakeLive::default();
    let ledger = FakeLedger::default();
    pass(&live, &ledger, &one_job("a", 2)).await;
    // Both stops below fall in one second: the service writes both into one directory.
    let directory = "obs://sp/1/2026-12-05_04-00-00/";
    live.state.lock().unwrap().stop_directory = Some(directory.to_string());

    // An upgrade cut short after its stop savepoint was copied: the job stays stopped.
    fail(&live, "import_savepoint a");
    let report = pass(&live, &ledger, &one_job("a", 3)).await;
    assert!(!report.results[0].ok, "{}", report.render_text());
    let first = savepoint_at(&live, directory).expect("the stop took a savepoint");
    clear_failures(&live);
    // The next pass resumes from the savepoint the job holds: the copy the catalog has of it
    // is compared with it and reused, not copied again.
    let from = live.calls().len();
    let report = pass(&live, &ledger, &one_job("a", 3)).await;
    assert!(report.converged(), "{}", report.render_text());
    assert_eq!(
        calls_since(&live, from),
        vec!["compare_savepoint ", "run_resume a"]
    );

    // A second upgrade in the same second, cut short before its stop savepoint was copied:
    // the job holds a newer savepoint in the directory the catalog's copy was made from.
    fail(&live, "copy_savepoint service");
    let report = pass(&live, &ledger, &one_job("a", 4)).await;
    assert!(!report.results[0].ok, "{}", report.render_text());
    let second = savepoint_at(&live, directory).expect("the stop took a savepoint");
    assert_ne!(
        first, second,
        "the second stop replaced the first savepoint"
    );
    clear_failures(&live);
    let from = live.calls().len();
    let report = pass(&live, &ledger, &one_job("a", 4)).await;
    assert!(report.converged(), "{}", report.render_text());
    assert_eq!(
        calls_since(&live, from),
        vec![
            "backup a",
            "update a",
            "compare_savepoint ",
            "copy_savepoint service",
            "import_savepoint a",
            "run_resume a"
        ],
        "the older copy is not reused: the savepoint is copied again"
    );
    let imported = live.live("a").savepoint_path.expect("a savepoint");
    assert_ne!(imported, directory, "a copy is imported");
    assert_eq!(
        savepoint_at(&live, &imported),
        Some(second),
        "the job resumes from the newer savepoint, not from the copy of the older one"
    );
}
