//! The status model, in Argo CD's vocabulary: sync status and health per target and per job,
//! derived purely from the desired jobs, the observation, the plan and the last action errors.
//!
//! This module is what the daemon's loops write and the HTTP server reads, so that neither
//! imports the other: the status of every target and source ([`StatusBoard`]), the triggers
//! that wake a target ([`Trigger`]), the metrics ([`DaemonMetrics`]) and the operating
//! controls (suspend, change windows, break-glass overrides: [`control`]).
//!
//! # Design and invariants
//!
//! | file | what it holds |
//! |---|---|
//! | `status/mod.rs` | the status model in Argo CD's vocabulary and its pure derivation from desired × observed × plan × errors |
//! | `status/mod.rs` (health) | a Flink job git wants stopped and found stopped is `Suspended` with `STOPPED_AS_GIT_WANTS` (`stopped_on_purpose`); `aggregate_health` counts it Healthy, so a target whose only stopped jobs are stopped on purpose is Healthy and passes promotion gates. `promotion::gate::UpstreamCondition::describe` ends a sentence (`the upstream is not converged and Healthy yet: its health is Suspended: clicks`) |
//! | `status/board.rs` | `StatusBoard`: the status of every target and source, written by the daemon's loops and read by the server |
//! | `status/trigger.rs` | `Trigger`: a set of pending reasons plus a `Notify` permit, so any number of fires become one next pass |
//! | `status/metrics.rs` | `prometheus-client` registry; cloud request counters and journal counts (by record kind, `Journal::appended_by_kind`) are read at scrape time |
//! | `status/upstream.rs` | `sample_of(TargetStatus)`: a target's status as the promotion gate reads it |
//! | `status/control.rs`, `server/controls.rs` | suspend, change windows, break-glass (see the `control` module docs; notifications: `notify`) |
//! | `apply/progress.rs` | `StepProgress` (`ApplyOptions::progress`, `PassRequest::progress`): the executor announces each step before it runs; the daemon's worker turns it into `TargetStatus::mark_step` (the job `Progressing`/`OutOfSync` with `step`). `TargetStatus::begin_pass`/`settle_revision`: a desired revision that is not the applied one is never `Synced`. `TargetReconciler::job_records` gives each job its last savepoint and newest backups from the journal (`status::attach_records`) |
//!
//! Invariants:
//! * Metric names are the contract in `docs/operations.md` (`dli_gitops_*`); labels are bounded.

mod board;
pub mod control;
mod metrics;
mod trigger;
mod upstream;

pub use board::{SourceStatus, StatusBoard};
pub use metrics::DaemonMetrics;
pub use trigger::Trigger;
pub use upstream::sample_of;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{DesiredJobs, FlinkJobStatus, JobKind, ObservedFlinkJob, ObservedJobs};
use crate::plan::{ActionClass, Plan, PlanSummary};

/// Whether the live job matches git (Argo CD's `SyncStatusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyncStatus {
    Synced,
    OutOfSync,
    Unknown,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "Synced",
            SyncStatus::OutOfSync => "OutOfSync",
            SyncStatus::Unknown => "Unknown",
        }
    }

    pub const ALL: [SyncStatus; 3] = [
        SyncStatus::Synced,
        SyncStatus::OutOfSync,
        SyncStatus::Unknown,
    ];
}

/// How the live job is doing (Argo CD's `HealthStatusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    Healthy,
    Progressing,
    Degraded,
    Missing,
    Suspended,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "Healthy",
            HealthStatus::Progressing => "Progressing",
            HealthStatus::Degraded => "Degraded",
            HealthStatus::Missing => "Missing",
            HealthStatus::Suspended => "Suspended",
            HealthStatus::Unknown => "Unknown",
        }
    }

    pub const ALL: [HealthStatus; 6] = [
        HealthStatus::Healthy,
        HealthStatus::Progressing,
        HealthStatus::Degraded,
        HealthStatus::Missing,
        HealthStatus::Suspended,
        HealthStatus::Unknown,
    ];

    /// Argo CD's order (gitops-engine `health.IsWorse`): an aggregate takes the worst.
    fn severity(self) -> u8 {
        match self {
            HealthStatus::Healthy => 0,
            HealthStatus::Suspended => 1,
            HealthStatus::Progressing => 2,
            HealthStatus::Missing => 3,
            HealthStatus::Degraded => 4,
            HealthStatus::Unknown => 5,
        }
    }

    /// The worse of two.
    pub fn worst(self, other: HealthStatus) -> HealthStatus {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// A failure reported by the service (with its error code when it gave one) or by us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The service's error code (`DLI.0001`, `APIG.0301`, ...), when the error came from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
}

/// Health with an explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthInfo {
    pub status: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One job in one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub kind: JobKind,
    pub name: String,
    pub sync_status: SyncStatus,
    pub health: HealthInfo,
    /// The service's own status word (`job_running`, ...), when the job is live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_id: Option<i64>,
    /// The class of change the last plan had for the job (`create`, `upgrade`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Why the job is out of sync, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    /// The step of an action running on the job now (`upgrade: step 2 of 5, stopping with a
    /// savepoint`), during a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The last savepoint the journal holds for the job (taken at a stop, or imported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<String>,
    /// The job's backup exports, newest first (at most [`BACKUPS_SHOWN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<String>,
}

impl JobStatus {
    /// A job known by its kind, name, sync status and health alone: nothing live, no planned
    /// action, no error, step, savepoint or backups yet.
    pub fn bare(
        kind: JobKind,
        name: &str,
        sync_status: SyncStatus,
        health: HealthInfo,
    ) -> JobStatus {
        JobStatus {
            kind,
            name: name.to_string(),
            sync_status,
            health,
            live_status: None,
            live_id: None,
            action: None,
            reason: None,
            last_error: None,
            step: None,
            savepoint: None,
            backups: Vec::new(),
        }
    }
}

/// Backup zips shown per job in status.
pub const BACKUPS_SHOWN: usize = 3;

/// What the journal holds for a job: its last savepoint and its backups, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRecords {
    pub savepoint: Option<String>,
    pub backups: Vec<String>,
}

/// Puts each job's journal records (by journal key: the name, `dlf:<name>` for DLF) on it.
pub fn attach_records(jobs: &mut [JobStatus], records: &BTreeMap<String, JobRecords>) {
    for job in jobs {
        let key = if job.kind == JobKind::Dlf {
            format!("dlf:{}", job.name)
        } else {
            job.name.clone()
        };
        if let Some(found) = records.get(&key) {
            job.savepoint = found.savepoint.clone();
            job.backups = found.backups.iter().take(BACKUPS_SHOWN).cloned().collect();
        }
    }
}

/// Counts of jobs per status, for the overview and for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobCounts {
    pub total: usize,
    pub sync: BTreeMap<String, usize>,
    pub health: BTreeMap<String, usize>,
}

impl JobCounts {
    pub fn of(jobs: &[JobStatus]) -> JobCounts {
        let mut counts = JobCounts {
            total: jobs.len(),
            ..JobCounts::default()
        };
        for job in jobs {
            *counts
                .sync
                .entry(job.sync_status.as_str().to_string())
                .or_default() += 1;
            *counts
                .health
                .entry(job.health.status.as_str().to_string())
                .or_default() += 1;
        }
        counts
    }
}

/// The last plan, as people and tools read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    pub id: String,
    pub summary: PlanSummary,
    pub warnings: Vec<String>,
    /// The Terraform-style rendering.
    pub text: String,
    /// The revision the plan was made for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub time: DateTime<Utc>,
}

impl PlanView {
    pub fn of(plan: &Plan, revision: Option<&str>, time: DateTime<Utc>) -> PlanView {
        PlanView {
            id: plan.id.clone(),
            summary: plan.summary(),
            warnings: plan.warnings.clone(),
            text: plan.render_text(),
            revision: revision.map(str::to_string),
            time,
        }
    }
}

/// Where the target stands against git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInfo {
    pub status: SyncStatus,
    /// The revision the daemon wants live: the newest revision that validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision the target last converged on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
}

/// A revision that did not validate, and why. It is never applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRevision {
    pub revision: String,
    /// Every problem, as `path:line:col: message`.
    pub errors: Vec<String>,
    pub time: DateTime<Utc>,
}

/// What set off a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// The daemon started.
    Startup,
    /// The source has a new revision.
    Revision,
    /// A push webhook for the source arrived.
    Webhook,
    /// The resync interval passed.
    Resync,
    /// Jobs were moving; look again soon.
    Progress,
    /// `POST /api/v1/targets/{t}/sync`.
    Manual,
    /// The last pass failed; try again.
    Retry,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Startup => "startup",
            TriggerKind::Revision => "revision",
            TriggerKind::Webhook => "webhook",
            TriggerKind::Resync => "resync",
            TriggerKind::Progress => "progress",
            TriggerKind::Manual => "manual",
            TriggerKind::Retry => "retry",
        }
    }
}

/// Argo CD's operation phases, for the reconcile in flight or the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationPhase {
    Running,
    Succeeded,
    /// Ran, but some job failed.
    Failed,
    /// Could not run (observation failed, no valid revision, timeout).
    Error,
}

/// One reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationState {
    pub phase: OperationPhase,
    /// `apply` (changes were allowed) or `report` (observe and plan only).
    pub mode: String,
    pub triggers: Vec<TriggerKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The policy a target runs with, as shown in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub auto_sync: bool,
    pub self_heal: bool,
    pub prune: bool,
    pub resync_interval_seconds: u64,
    /// The daemon is globally suspended: nothing is changed.
    pub suspended: bool,
    /// The upstream target of a promotion pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_from: Option<String>,
}

/// Everything known about one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: String,
    pub source: String,
    pub environment: String,
    pub sync: SyncInfo,
    pub health: HealthInfo,
    pub policy: PolicyView,
    /// The first observation of the live service is done.
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// The reconcile in flight, or the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationState>,
    /// The newest revision, when it failed validation (the previous good one stays in use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_revision: Option<RejectedRevision>,
    /// The last failure of the target as a whole (source, observation, journal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    pub counts: JobCounts,
    pub jobs: Vec<JobStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_plan: Option<PlanView>,
}

/// The list view: a target without its jobs and plan text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetOverview {
    pub name: String,
    pub source: String,
    pub environment: String,
    pub sync: SyncInfo,
    pub health: HealthInfo,
    pub policy: PolicyView,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_revision: Option<RejectedRevision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    pub counts: JobCounts,
}

impl TargetStatus {
    /// A target nothing is known about yet.
    pub fn new(name: &str, source: &str, environment: &str, policy: PolicyView) -> TargetStatus {
        TargetStatus {
            name: name.to_string(),
            source: source.to_string(),
            environment: environment.to_string(),
            sync: SyncInfo {
                status: SyncStatus::Unknown,
                revision: None,
                applied_revision: None,
            },
            health: HealthInfo {
                status: HealthStatus::Unknown,
                message: Some("not observed yet".to_string()),
            },
            policy,
            ready: false,
            observed_at: None,
            operation: None,
            rejected_revision: None,
            last_error: None,
            counts: JobCounts::default(),
            jobs: Vec::new(),
            last_plan: None,
        }
    }

    pub fn overview(&self) -> TargetOverview {
        TargetOverview {
            name: self.name.clone(),
            source: self.source.clone(),
            environment: self.environment.clone(),
            sync: self.sync.clone(),
            health: self.health.clone(),
            policy: self.policy.clone(),
            ready: self.ready,
            observed_at: self.observed_at,
            operation: self.operation.clone(),
            rejected_revision: self.rejected_revision.clone(),
            last_error: self.last_error.clone(),
            counts: self.counts.clone(),
        }
    }

    /// Replaces the jobs and recomputes the target's sync status, health and counts.
    pub fn set_jobs(&mut self, jobs: Vec<JobStatus>, planned: bool) {
        self.counts = JobCounts::of(&jobs);
        self.sync.status = if !planned {
            SyncStatus::Unknown
        } else if jobs.iter().all(|job| job.sync_status == SyncStatus::Synced) {
            SyncStatus::Synced
        } else if jobs
            .iter()
            .any(|job| job.sync_status == SyncStatus::OutOfSync)
        {
            SyncStatus::OutOfSync
        } else {
            SyncStatus::Unknown
        };
        self.health = aggregate_health(&jobs);
        self.jobs = jobs;
    }

    /// A pass starts: a revision that differs from the applied one is `OutOfSync` from now on,
    /// and `Progressing` while the pass may change things, whatever the last pass saw.
    pub fn begin_pass(&mut self, executing: bool) {
        let Some(revision) = self.sync.revision.clone() else {
            return;
        };
        if self.sync.applied_revision.as_deref() == Some(revision.as_str()) {
            return;
        }
        self.sync.status = SyncStatus::OutOfSync;
        if executing
            && self.health.status.worst(HealthStatus::Progressing) == HealthStatus::Progressing
        {
            self.health = HealthInfo {
                status: HealthStatus::Progressing,
                message: Some(format!(
                    "applying revision {}",
                    revision.chars().take(12).collect::<String>()
                )),
            };
        }
    }

    /// After a pass: a target whose desired revision is not the applied one is not `Synced`,
    /// even when every job it observed matches (a selective or failed pass, a held job).
    pub fn settle_revision(&mut self) {
        if self.sync.status == SyncStatus::Synced
            && self.sync.revision.is_some()
            && self.sync.revision != self.sync.applied_revision
        {
            self.sync.status = SyncStatus::OutOfSync;
        }
    }

    /// A step of an action is about to run on a job: the job is `Progressing` and `OutOfSync`
    /// with the step, and the target's counts, sync and health follow.
    pub fn mark_step(&mut self, event: &crate::apply::StepEvent) {
        let dlf = event.kind == JobKind::Dlf;
        let position = self
            .jobs
            .iter()
            .position(|job| job.name == event.job && (job.kind == JobKind::Dlf) == dlf);
        let index = match position {
            Some(index) => index,
            None => {
                self.jobs.push(JobStatus::bare(
                    event.kind,
                    &event.job,
                    SyncStatus::OutOfSync,
                    missing(),
                ));
                self.jobs.len() - 1
            }
        };
        let step = format!(
            "{}: step {} of {}, {}",
            event.action, event.number, event.total, event.step
        );
        let job = &mut self.jobs[index];
        job.sync_status = SyncStatus::OutOfSync;
        job.action = Some(event.action.clone());
        job.health = HealthInfo {
            status: HealthStatus::Progressing,
            message: Some(step.clone()),
        };
        job.step = Some(step);
        let jobs = std::mem::take(&mut self.jobs);
        let planned = self.sync.status != SyncStatus::Unknown || !jobs.is_empty();
        self.set_jobs(jobs, planned);
        self.sync.status = SyncStatus::OutOfSync;
    }
}

/// The health message of a job that is stopped because git wants it stopped.
pub const STOPPED_AS_GIT_WANTS: &str = "stopped, as git wants (desired_state: stopped)";

/// Whether a job is Suspended because git wants it stopped: not a failure, and Healthy for the
/// target's health (and so for promotion gates).
pub fn stopped_on_purpose(job: &JobStatus) -> bool {
    job.health.status == HealthStatus::Suspended
        && job
            .health
            .message
            .as_deref()
            .is_some_and(|message| message.ends_with(STOPPED_AS_GIT_WANTS))
}

/// The worst job health, where a job stopped as git wants counts as Healthy; a target with no
/// jobs is Healthy.
pub fn aggregate_health(jobs: &[JobStatus]) -> HealthInfo {
    let health_of = |job: &JobStatus| {
        if stopped_on_purpose(job) {
            HealthStatus::Healthy
        } else {
            job.health.status
        }
    };
    let worst = jobs
        .iter()
        .map(health_of)
        .fold(HealthStatus::Healthy, HealthStatus::worst);
    let unhealthy: Vec<&str> = jobs
        .iter()
        .filter(|job| health_of(job) == worst && worst != HealthStatus::Healthy)
        .map(|job| job.name.as_str())
        .collect();
    let message = (!unhealthy.is_empty()).then(|| {
        let shown: Vec<&str> = unhealthy.iter().take(5).copied().collect();
        let more = unhealthy.len().saturating_sub(shown.len());
        let mut text = format!("{}: {}", worst.as_str(), shown.join(", "));
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    });
    HealthInfo {
        status: worst,
        message,
    }
}

/// The health of a live Flink job, from the service's status word.
pub fn flink_health(status: &FlinkJobStatus, status_desc: Option<&str>) -> HealthInfo {
    let (health, default_message) = match status {
        FlinkJobStatus::Running => (HealthStatus::Healthy, None),
        FlinkJobStatus::Finish => (HealthStatus::Healthy, Some("finished")),
        FlinkJobStatus::Submitting
        | FlinkJobStatus::Savepointing
        | FlinkJobStatus::Downloading
        | FlinkJobStatus::Canceling
        | FlinkJobStatus::ArrearageRecovering => (HealthStatus::Progressing, None),
        FlinkJobStatus::SubmitFail
        | FlinkJobStatus::RunningException
        | FlinkJobStatus::CancelFail => (HealthStatus::Degraded, None),
        FlinkJobStatus::ArrearageStopped => (
            HealthStatus::Degraded,
            Some("stopped because the account is in arrears"),
        ),
        FlinkJobStatus::Init | FlinkJobStatus::CancelSuccess | FlinkJobStatus::Idle => {
            (HealthStatus::Suspended, None)
        }
        FlinkJobStatus::Other(_) => (
            HealthStatus::Unknown,
            Some("status not known to dli-gitops"),
        ),
    };
    let word = status.as_str();
    let message = match (
        status_desc.filter(|d| !d.trim().is_empty()),
        default_message,
    ) {
        (Some(desc), _) if health != HealthStatus::Healthy => Some(format!("{word}: {desc}")),
        (_, Some(text)) => Some(format!("{word}: {text}")),
        _ => Some(word.to_string()),
    };
    HealthInfo {
        status: health,
        message,
    }
}

/// Inputs for [`job_statuses`].
pub struct StatusInputs<'a> {
    /// The desired jobs, when a valid revision is known.
    pub desired: Option<&'a DesiredJobs>,
    pub observed: &'a ObservedJobs,
    /// The plan that describes the live state now (after any apply), when one was made.
    pub plan: Option<&'a Plan>,
    /// The last failure per job, keyed by (kind family, name).
    pub errors: &'a BTreeMap<JobKey, ErrorInfo>,
}

/// A job's identity within a target: Flink and DLF jobs are separate namespaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey {
    pub dlf: bool,
    pub name: String,
}

impl JobKey {
    pub fn new(kind: JobKind, name: &str) -> JobKey {
        JobKey {
            dlf: kind == JobKind::Dlf,
            name: name.to_string(),
        }
    }
}

/// One status per job in git, per job the plan touches, and per managed live job out of git.
/// Unmanaged live jobs outside git are not ours and never appear.
pub fn job_statuses(inputs: &StatusInputs<'_>) -> Vec<JobStatus> {
    let mut jobs = listed_jobs(inputs);
    if let Some(plan) = inputs.plan {
        mark_planned(&mut jobs, plan);
    }
    if let Some(desired) = inputs.desired {
        mark_stopped_as_git_wants(&mut jobs, desired);
    }
    for (key, error) in inputs.errors {
        if let Some(job) = jobs.get_mut(key) {
            job.last_error = Some(error.clone());
        }
    }
    jobs.into_values().collect()
}

/// The live jobs of a target by name: Flink jobs, and DLF jobs with their scheduling status.
struct LiveJobs<'a> {
    flink: BTreeMap<&'a str, &'a ObservedFlinkJob>,
    dlf: BTreeMap<&'a str, Option<&'a str>>,
}

impl<'a> LiveJobs<'a> {
    fn of(observed: &'a ObservedJobs) -> LiveJobs<'a> {
        LiveJobs {
            flink: observed
                .flink
                .iter()
                .map(|job| (job.name.as_str(), job))
                .collect(),
            dlf: observed
                .dlf
                .iter()
                .map(|job| (job.name.as_str(), job.status.as_deref()))
                .collect(),
        }
    }

    /// A job's health, live status word and live id (`missing` when it is not live).
    fn health(&self, kind: JobKind, name: &str) -> (HealthInfo, Option<String>, Option<i64>) {
        if kind == JobKind::Dlf {
            match self.dlf.get(name) {
                // The list's scheduling status (NORMAL, STOPPED, ...); runs are not observed.
                Some(status) => (
                    HealthInfo {
                        status: HealthStatus::Healthy,
                        message: Some(format!(
                            "present, schedule {}; DLF run results are not observed",
                            status.unwrap_or("unknown")
                        )),
                    },
                    status.map(str::to_string),
                    None,
                ),
                None => (missing(), None, None),
            }
        } else {
            match self.flink.get(name) {
                Some(live) => (
                    flink_health(&live.status, live.status_desc.as_deref()),
                    Some(live.status.as_str().to_string()),
                    Some(live.id),
                ),
                None => (missing(), None, None),
            }
        }
    }
}

/// Every job to report, with its live health: the jobs in git, those the plan touches, and
/// the managed live jobs (out of git: `OutOfSync` once a plan was made).
fn listed_jobs(inputs: &StatusInputs<'_>) -> BTreeMap<JobKey, JobStatus> {
    let mut jobs: BTreeMap<JobKey, JobStatus> = BTreeMap::new();
    let live = LiveJobs::of(inputs.observed);
    let base_sync = if inputs.plan.is_some() {
        SyncStatus::Synced
    } else {
        SyncStatus::Unknown
    };

    let mut add = |kind: JobKind, name: &str, in_git: bool| {
        let key = JobKey::new(kind, name);
        if jobs.contains_key(&key) {
            return;
        }
        let (health, live_status, live_id) = live.health(kind, name);
        let (sync_status, reason) = if in_git || inputs.plan.is_none() {
            (base_sync, None)
        } else {
            (
                SyncStatus::OutOfSync,
                Some("managed by dli-gitops and no longer in git".to_string()),
            )
        };
        jobs.insert(
            key,
            JobStatus {
                kind,
                name: name.to_string(),
                sync_status,
                health,
                live_status,
                live_id,
                action: None,
                reason,
                last_error: None,
                step: None,
                savepoint: None,
                backups: Vec::new(),
            },
        );
    };

    if let Some(desired) = inputs.desired {
        for job in &desired.flink {
            add(job.kind(), &job.name, true);
        }
        for job in &desired.dlf {
            add(JobKind::Dlf, &job.name, true);
        }
    }
    if let Some(plan) = inputs.plan {
        for action in &plan.actions {
            add(action.kind, &action.name, inputs.desired.is_none());
        }
    }
    for live in &inputs.observed.flink {
        if live.is_managed() {
            add(live.config.kind(), &live.name, false);
        }
    }
    jobs
}

/// Each job the plan changes is `OutOfSync` with the change and its reason; a job waiting on
/// the service is `Progressing` (unless it is `Degraded`).
fn mark_planned(jobs: &mut BTreeMap<JobKey, JobStatus>, plan: &Plan) {
    for action in &plan.actions {
        if let Some(job) = jobs.get_mut(&JobKey::new(action.kind, &action.name)) {
            if action.class == ActionClass::None {
                continue;
            }
            job.sync_status = SyncStatus::OutOfSync;
            job.action = Some(action.class.as_str().to_string());
            job.reason = Some(action.reason.clone());
            if action.is_waiting() && job.health.status != HealthStatus::Degraded {
                job.health.status = HealthStatus::Progressing;
            }
        }
    }
}

/// A Flink job git wants stopped, found stopped, is stopped on purpose: not a failure.
fn mark_stopped_as_git_wants(jobs: &mut BTreeMap<JobKey, JobStatus>, desired: &DesiredJobs) {
    for wanted in &desired.flink {
        if wanted.lifecycle.desired_state == crate::model::RunState::Stopped
            && let Some(job) = jobs.get_mut(&JobKey::new(wanted.kind(), &wanted.name))
            && job.health.status == HealthStatus::Suspended
        {
            let word = job.live_status.clone().unwrap_or_default();
            job.health.message = Some(format!("{word}: {STOPPED_AS_GIT_WANTS}"));
        }
    }
}

/// Automatic rollback: a job held on the definition it restored is Degraded (the revision git
/// asks for failed on it) and OutOfSync, with the reason and the revision rolled back from.
/// `held` is (name, revision, why), as `PassReport::held` carries it.
pub fn mark_rolled_back(jobs: &mut [JobStatus], held: &[(String, Option<String>, String)]) {
    for (name, revision, note) in held {
        let Some(job) = jobs
            .iter_mut()
            .find(|job| job.kind != JobKind::Dlf && &job.name == name)
        else {
            continue;
        };
        job.health = HealthInfo {
            status: HealthStatus::Degraded,
            message: Some(format!(
                "rolled back automatically from revision {}: {note}",
                revision.as_deref().unwrap_or("(unknown)")
            )),
        };
        job.sync_status = SyncStatus::OutOfSync;
        job.action = Some("rolled_back".to_string());
        job.reason = Some(format!(
            "held by automatic rollback: {note}; a commit that changes this job clears the mark"
        ));
    }
}

fn missing() -> HealthInfo {
    HealthInfo {
        status: HealthStatus::Missing,
        message: Some("not found on the service".to_string()),
    }
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
