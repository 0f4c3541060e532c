//! The emulator's service state (jobs, runs, DLF jobs and tasks per project) and its
//! persistence as one JSON file, `<data>/state.json`, replaced atomically on every change.
//!
//! Status transitions are stored as timestamps (`pending`), not driven by timers: every access
//! first applies the transitions that are due. A restart therefore resumes exactly where the
//! clock says the jobs are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::FlinkJobConfig;

/// Most status changes and runs kept per job, so `state.json` stays small on long runs.
pub const MAX_HISTORY_PER_JOB: usize = 200;

/// The version written in `state.json`.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// Everything the emulator persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatorState {
    pub format_version: u32,
    /// DLI job ids are unique across projects, as in the real service.
    pub next_job_id: i64,
    pub next_task_number: u64,
    pub projects: BTreeMap<String, ProjectState>,
}

impl Default for EmulatorState {
    fn default() -> EmulatorState {
        EmulatorState {
            format_version: STATE_FORMAT_VERSION,
            next_job_id: 100_001,
            next_task_number: 1,
            projects: BTreeMap::new(),
        }
    }
}

impl EmulatorState {
    /// A copy of `project_id`'s state (empty for a project never seen).
    pub fn project_copy(&self, project_id: &str) -> ProjectState {
        self.projects.get(project_id).cloned().unwrap_or_default()
    }

    /// The counters, without any project.
    pub fn clone_counters(&self) -> EmulatorState {
        EmulatorState {
            format_version: self.format_version,
            next_job_id: self.next_job_id,
            next_task_number: self.next_task_number,
            projects: BTreeMap::new(),
        }
    }
}

/// One project's jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectState {
    pub flink_jobs: BTreeMap<i64, FlinkJobRecord>,
    pub dlf_jobs: BTreeMap<String, DlfJobRecord>,
    pub dlf_scripts: BTreeMap<String, Value>,
    pub dlf_resources: BTreeMap<String, Value>,
    pub dlf_tasks: BTreeMap<String, DlfTaskRecord>,
    pub next_dlf_job_id: i64,
}

/// A DLI Flink job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlinkJobRecord {
    pub job_id: i64,
    pub name: String,
    pub config: FlinkJobConfig,
    pub status: String,
    pub status_desc: String,
    pub create_time: i64,
    pub update_time: i64,
    pub start_time: Option<i64>,
    /// The savepoint the next run with `resume_savepoint` restores (`obs://bucket/dir/`).
    pub savepoint_path: Option<String>,
    /// Transitions not yet applied, in time order.
    pub pending: Vec<Transition>,
    /// Every run, oldest first (introspection).
    pub runs: Vec<RunRecord>,
    /// Every status the job went through with its time (introspection).
    pub history: Vec<StatusChange>,
    /// Savepoints the service took for this job (at stop or triggered) since it last started,
    /// `obs://bucket/dir/`: deleted when the job is restarted (dli_01_0461, "Triggering a
    /// Savepoint": the lifecycle of a savepoint "ends when the job is restarted. The savepoint
    /// is automatically deleted after the job is restarted").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taken_savepoints: Vec<String>,
}

/// A status the job takes at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: i64,
    pub status: String,
    pub status_desc: String,
}

/// One entry of a job's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub at_ms: i64,
    pub status: String,
}

/// One run of a job: what it restored from and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_number: u32,
    pub started_at: i64,
    pub resume_savepoint: bool,
    /// The savepoint the run restored its state from, when it did.
    pub restored_from: Option<String>,
    pub stopped_at: Option<i64>,
    /// The savepoint taken when the run was stopped, when one was.
    pub stop_savepoint: Option<String>,
    /// The `savepoint_id` inside the restored savepoint's `_metadata`: a copy of a savepoint
    /// has the id of its original, so a chain of runs is checked by state, not by path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_savepoint_id: Option<String>,
    /// The `savepoint_id` of the stop savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_savepoint_id: Option<String>,
}

impl FlinkJobRecord {
    /// A job as created at `now_ms`, before any status (no history, no runs).
    pub fn blank(job_id: i64, name: String, config: FlinkJobConfig, now_ms: i64) -> FlinkJobRecord {
        FlinkJobRecord {
            job_id,
            name,
            config,
            status: String::new(),
            status_desc: String::new(),
            create_time: now_ms,
            update_time: now_ms,
            start_time: None,
            savepoint_path: None,
            pending: Vec::new(),
            runs: Vec::new(),
            history: Vec::new(),
            taken_savepoints: Vec::new(),
        }
    }

    /// Applies every transition due at `now_ms`.
    pub fn advance(&mut self, now_ms: i64) {
        while self
            .pending
            .first()
            .is_some_and(|transition| transition.at_ms <= now_ms)
        {
            let transition = self.pending.remove(0);
            if transition.status == "job_running" && self.status != "job_running" {
                self.start_time = Some(transition.at_ms);
            }
            self.set_status(
                transition.at_ms,
                &transition.status,
                &transition.status_desc,
            );
        }
    }

    /// Sets the status now, recording it; `update_time` follows every change so that observers
    /// that re-read details on a new `update_time` see savepoint paths and statuses change.
    pub fn set_status(&mut self, at_ms: i64, status: &str, status_desc: &str) {
        self.status = status.to_string();
        self.status_desc = status_desc.to_string();
        self.update_time = self.update_time.max(at_ms);
        self.history.push(StatusChange {
            at_ms,
            status: status.to_string(),
        });
        if self.history.len() > MAX_HISTORY_PER_JOB {
            let excess = self.history.len() - MAX_HISTORY_PER_JOB;
            self.history.drain(..excess);
        }
    }

    /// Records a new run, keeping the newest [`MAX_HISTORY_PER_JOB`].
    pub fn push_run(&mut self, run: RunRecord) {
        self.runs.push(run);
        if self.runs.len() > MAX_HISTORY_PER_JOB {
            let excess = self.runs.len() - MAX_HISTORY_PER_JOB;
            self.runs.drain(..excess);
        }
    }

    /// Replaces the pending transitions with `steps` (delay after the previous step, status).
    pub fn schedule(&mut self, now_ms: i64, steps: &[(u64, &str, &str)]) {
        self.pending.clear();
        let mut at_ms = now_ms;
        for (delay_ms, status, status_desc) in steps {
            at_ms = at_ms.saturating_add(i64::try_from(*delay_ms).unwrap_or(i64::MAX));
            self.pending.push(Transition {
                at_ms,
                status: status.to_string(),
                status_desc: status_desc.to_string(),
            });
        }
    }

    /// Running or on its way: the states import-savepoint and import-over refuse.
    pub fn is_active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "job_running"
                | "job_submitting"
                | "job_canceling"
                | "job_savepointing"
                | "job_downloading"
                | "job_arrearage_recovering"
        )
    }
}

/// A DataArts Factory job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlfJobRecord {
    pub id: i64,
    pub name: String,
    /// The `.job` document, with import replacements applied.
    pub definition: Value,
    pub script_names: Vec<String>,
    pub resource_names: Vec<String>,
    /// `SAVED`, `SUBMITTED` or `PRODUCTION`.
    pub target_status: String,
    /// Scheduling status: `NORMAL` (scheduled/running) or `STOPPED`.
    pub schedule_status: String,
    pub approvers: Vec<String>,
    pub execute_user: Option<String>,
    pub version: u32,
    pub create_time: i64,
    pub last_update: i64,
}

/// A DLF system task (an import).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlfTaskRecord {
    pub id: String,
    pub name: String,
    pub start_time: i64,
    pub finish_at: i64,
    pub end_time: Option<i64>,
    /// `RUNNING` until `finish_at`, then `SUCCESSFUL`, `WARNING` or `FAILED`.
    pub status: String,
    pub message: String,
    pub outcome: DlfTaskOutcome,
}

/// What a DLF task does when it completes, decided when it was submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlfTaskOutcome {
    pub status: String,
    pub message: String,
    pub subtasks: Vec<DlfSubtask>,
    /// Jobs to write when the task succeeds.
    pub jobs: Vec<DlfPendingJob>,
}

/// One job of an import task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlfSubtask {
    pub id: String,
    pub name: String,
    pub status: String,
    pub message: String,
}

/// A job an import task writes on success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlfPendingJob {
    pub name: String,
    pub definition: Value,
    pub scripts: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Value>,
    pub target_status: String,
    pub approvers: Vec<String>,
    pub execute_user: Option<String>,
}

impl ProjectState {
    /// Whether [`ProjectState::advance`] would change anything at `now_ms`.
    pub fn has_due(&self, now_ms: i64) -> bool {
        self.flink_jobs.values().any(|job| {
            job.pending
                .first()
                .is_some_and(|transition| transition.at_ms <= now_ms)
        }) || self
            .dlf_tasks
            .values()
            .any(|task| task.status == "RUNNING" && task.finish_at <= now_ms)
    }

    /// Applies every job transition and task completion due at `now_ms`.
    pub fn advance(&mut self, now_ms: i64) {
        for job in self.flink_jobs.values_mut() {
            job.advance(now_ms);
        }
        let due: Vec<String> = self
            .dlf_tasks
            .values()
            .filter(|task| task.status == "RUNNING" && task.finish_at <= now_ms)
            .map(|task| task.id.clone())
            .collect();
        for task_id in due {
            let Some(task) = self.dlf_tasks.get_mut(&task_id) else {
                continue;
            };
            task.status = task.outcome.status.clone();
            task.message = task.outcome.message.clone();
            task.end_time = Some(task.finish_at);
            let finished_at = task.finish_at;
            let jobs = if matches!(task.status.as_str(), "SUCCESSFUL" | "WARNING") {
                std::mem::take(&mut task.outcome.jobs)
            } else {
                Vec::new()
            };
            for job in jobs {
                self.write_dlf_job(job, finished_at);
            }
        }
    }

    fn write_dlf_job(&mut self, job: DlfPendingJob, now_ms: i64) {
        for (name, script) in &job.scripts {
            self.dlf_scripts.insert(name.clone(), script.clone());
        }
        for (name, resource) in &job.resources {
            self.dlf_resources.insert(name.clone(), resource.clone());
        }
        let (id, version, create_time) = match self.dlf_jobs.get(&job.name) {
            Some(existing) => (existing.id, existing.version + 1, existing.create_time),
            None => {
                self.next_dlf_job_id += 1;
                (self.next_dlf_job_id, 1, now_ms)
            }
        };
        self.dlf_jobs.insert(
            job.name.clone(),
            DlfJobRecord {
                id,
                name: job.name,
                definition: job.definition,
                script_names: job.scripts.keys().cloned().collect(),
                resource_names: job.resources.keys().cloned().collect(),
                target_status: job.target_status,
                schedule_status: "STOPPED".to_string(),
                approvers: job.approvers,
                execute_user: job.execute_user,
                version,
                create_time,
                last_update: now_ms,
            },
        );
    }
}

/// Why the state file could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("could not read emulator state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "emulator state {path} is not valid (fix or move the file away to start empty): {reason}"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("could not write emulator state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Loads `path`, or an empty state when it does not exist.
pub fn load(path: &Path) -> Result<EmulatorState, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(EmulatorState::default());
        }
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let state: EmulatorState =
        serde_json::from_slice(&bytes).map_err(|error| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    if state.format_version != STATE_FORMAT_VERSION {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "format_version {} is not {STATE_FORMAT_VERSION}",
                state.format_version
            ),
        });
    }
    Ok(state)
}

/// Saves `state` to `path` atomically (temp file in `temp_dir`, fsync, rename, fsync dir).
pub fn save(state: &EmulatorState, path: &Path, temp_dir: &Path) -> Result<(), StateError> {
    let write_error = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec(state).map_err(|error| write_error(error.into()))?;
    super::obs::write_file_atomically(temp_dir, path, &bytes).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobKind;

    fn job() -> FlinkJobRecord {
        let mut job = FlinkJobRecord::blank(
            1,
            "a".into(),
            FlinkJobConfig::defaults_for(JobKind::FlinkSql),
            1000,
        );
        job.status = "job_init".into();
        job
    }

    #[test]
    fn transitions_apply_when_due_and_in_order() {
        let mut record = job();
        record.set_status(2000, "job_submitting", "");
        record.schedule(2000, &[(500, "job_running", "")]);
        record.advance(2499);
        assert_eq!(record.status, "job_submitting");
        record.advance(2500);
        assert_eq!(record.status, "job_running");
        assert_eq!(record.start_time, Some(2500));
        assert_eq!(record.update_time, 2500);
        record.schedule(
            3000,
            &[
                (0, "job_savepointing", ""),
                (10, "job_canceling", ""),
                (10, "job_cancel_success", ""),
            ],
        );
        record.advance(3015);
        assert_eq!(record.status, "job_canceling");
        record.advance(4000);
        assert_eq!(record.status, "job_cancel_success");
        assert!(record.pending.is_empty());
    }

    #[test]
    fn state_survives_save_and_load_and_corruption_is_reported() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("state.json");
        assert_eq!(load(&path).unwrap().projects.len(), 0);
        let mut state = EmulatorState::default();
        state
            .projects
            .entry("p".into())
            .or_default()
            .flink_jobs
            .insert(1, job());
        save(&state, &path, temp.path()).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.projects["p"].flink_jobs[&1].name, "a");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(load(&path), Err(StateError::Corrupt { .. })));
    }
}
