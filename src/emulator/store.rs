//! Durable state: `state.json` (a full snapshot, replaced atomically) plus `changes.jsonl`, an
//! append-only log of per-call changes, fsync'd before the call is answered.
//!
//! Writing the whole state on every call costs O(jobs); appending only what one call changed
//! costs O(change). The log is folded into a new snapshot every [`COMPACT_AFTER_CHANGES`]
//! records, at start and at shutdown. A torn last line (a crash mid-append, never answered) is
//! dropped on load; any other unreadable line refuses the start.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::{
    self, DlfJobRecord, DlfTaskRecord, EmulatorState, FlinkJobRecord, ProjectState, StateError,
};

/// Log records folded into the snapshot at once.
pub const COMPACT_AFTER_CHANGES: usize = 500;

/// What one call changed in one project (the counters are written whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub project_id: String,
    pub next_job_id: i64,
    pub next_task_number: u64,
    pub next_dlf_job_id: i64,
    #[serde(default)]
    pub flink_upserts: Vec<FlinkJobRecord>,
    #[serde(default)]
    pub flink_removals: Vec<i64>,
    #[serde(default)]
    pub dlf_job_upserts: Vec<DlfJobRecord>,
    #[serde(default)]
    pub dlf_job_removals: Vec<String>,
    #[serde(default)]
    pub dlf_script_upserts: BTreeMap<String, Value>,
    #[serde(default)]
    pub dlf_resource_upserts: BTreeMap<String, Value>,
    #[serde(default)]
    pub dlf_task_upserts: Vec<DlfTaskRecord>,
}

impl ChangeRecord {
    /// The difference between a project before and after a call.
    pub fn between(
        project_id: &str,
        counters: &EmulatorState,
        before: &ProjectState,
        after: &ProjectState,
    ) -> ChangeRecord {
        fn upserts<K: Ord + Clone, V: PartialEq + Clone>(
            before: &BTreeMap<K, V>,
            after: &BTreeMap<K, V>,
        ) -> Vec<V> {
            after
                .iter()
                .filter(|(key, value)| before.get(key) != Some(value))
                .map(|(_, value)| value.clone())
                .collect()
        }
        fn removals<K: Ord + Clone, V>(before: &BTreeMap<K, V>, after: &BTreeMap<K, V>) -> Vec<K> {
            before
                .keys()
                .filter(|key| !after.contains_key(key))
                .cloned()
                .collect()
        }
        let changed_values = |before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>| {
            after
                .iter()
                .filter(|(key, value)| before.get(*key) != Some(value))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        };
        ChangeRecord {
            project_id: project_id.to_string(),
            next_job_id: counters.next_job_id,
            next_task_number: counters.next_task_number,
            next_dlf_job_id: after.next_dlf_job_id,
            flink_upserts: upserts(&before.flink_jobs, &after.flink_jobs),
            flink_removals: removals(&before.flink_jobs, &after.flink_jobs),
            dlf_job_upserts: upserts(&before.dlf_jobs, &after.dlf_jobs),
            dlf_job_removals: removals(&before.dlf_jobs, &after.dlf_jobs),
            dlf_script_upserts: changed_values(&before.dlf_scripts, &after.dlf_scripts),
            dlf_resource_upserts: changed_values(&before.dlf_resources, &after.dlf_resources),
            dlf_task_upserts: upserts(&before.dlf_tasks, &after.dlf_tasks),
        }
    }

    /// Whether the call changed nothing but possibly the counters.
    pub fn is_empty(&self) -> bool {
        self.flink_upserts.is_empty()
            && self.flink_removals.is_empty()
            && self.dlf_job_upserts.is_empty()
            && self.dlf_job_removals.is_empty()
            && self.dlf_script_upserts.is_empty()
            && self.dlf_resource_upserts.is_empty()
            && self.dlf_task_upserts.is_empty()
    }

    /// Applies the change to `state`.
    pub fn apply(self, state: &mut EmulatorState) {
        state.next_job_id = state.next_job_id.max(self.next_job_id);
        state.next_task_number = state.next_task_number.max(self.next_task_number);
        let project = state.projects.entry(self.project_id).or_default();
        project.next_dlf_job_id = project.next_dlf_job_id.max(self.next_dlf_job_id);
        for job in self.flink_upserts {
            project.flink_jobs.insert(job.job_id, job);
        }
        for job_id in self.flink_removals {
            project.flink_jobs.remove(&job_id);
        }
        for job in self.dlf_job_upserts {
            project.dlf_jobs.insert(job.name.clone(), job);
        }
        for name in self.dlf_job_removals {
            project.dlf_jobs.remove(&name);
        }
        project.dlf_scripts.extend(self.dlf_script_upserts);
        project.dlf_resources.extend(self.dlf_resource_upserts);
        for task in self.dlf_task_upserts {
            project.dlf_tasks.insert(task.id.clone(), task);
        }
    }
}

/// The in-memory state and its files.
#[derive(Debug)]
pub struct StateStore {
    pub state: EmulatorState,
    snapshot_path: PathBuf,
    log_path: PathBuf,
    temp_dir: PathBuf,
    log: File,
    changes_since_snapshot: usize,
}

impl StateStore {
    /// Loads the snapshot and replays the log, then folds both into a fresh snapshot.
    pub fn open(data_dir: &Path, temp_dir: &Path) -> Result<StateStore, StateError> {
        let snapshot_path = data_dir.join("state.json");
        let log_path = data_dir.join("changes.jsonl");
        let mut state = state::load(&snapshot_path)?;
        match std::fs::read(&log_path) {
            Ok(bytes) => replay(&mut state, &bytes, &log_path)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Read {
                    path: log_path,
                    source,
                });
            }
        }
        let log = open_log(&log_path)?;
        let mut store = StateStore {
            state,
            snapshot_path,
            log_path,
            temp_dir: temp_dir.to_path_buf(),
            log,
            changes_since_snapshot: 0,
        };
        store.compact()?;
        Ok(store)
    }

    /// Makes one call's change durable (appended and fsync'd), compacting when the log is long.
    pub fn append(&mut self, record: &ChangeRecord) -> Result<(), StateError> {
        let write_error = |source| StateError::Write {
            path: self.log_path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|error| write_error(error.into()))?;
        line.push(b'\n');
        self.log.write_all(&line).map_err(write_error)?;
        self.log.sync_data().map_err(write_error)?;
        self.changes_since_snapshot += 1;
        Ok(())
    }

    /// Whether the log is long enough to fold into the snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.changes_since_snapshot >= COMPACT_AFTER_CHANGES
    }

    /// Writes the whole state as the snapshot and empties the log.
    pub fn compact(&mut self) -> Result<(), StateError> {
        state::save(&self.state, &self.snapshot_path, &self.temp_dir)?;
        let truncate_error = |source| StateError::Write {
            path: self.log_path.clone(),
            source,
        };
        self.log.set_len(0).map_err(truncate_error)?;
        self.log.sync_all().map_err(truncate_error)?;
        self.changes_since_snapshot = 0;
        Ok(())
    }
}

fn open_log(path: &Path) -> Result<File, StateError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| StateError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn replay(state: &mut EmulatorState, bytes: &[u8], path: &Path) -> Result<(), StateError> {
    let lines: Vec<&[u8]> = bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    let complete = bytes.ends_with(b"\n");
    for (index, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<ChangeRecord>(line) {
            Ok(record) => record.apply(state),
            Err(_) if index + 1 == lines.len() && !complete => {
                tracing::warn!(path = %path.display(), "The last change record was torn by a crash and is dropped; it was never acknowledged.");
            }
            Err(error) => {
                return Err(StateError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("line {}: {error}", index + 1),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FlinkJobConfig, JobKind};

    fn job(job_id: i64, name: &str) -> FlinkJobRecord {
        let mut job = FlinkJobRecord::blank(
            job_id,
            name.into(),
            FlinkJobConfig::defaults_for(JobKind::FlinkSql),
            1,
        );
        job.status = "job_init".into();
        job
    }

    fn change(store: &mut StateStore, project_id: &str, edit: impl FnOnce(&mut ProjectState)) {
        let before = store.state.project_copy(project_id);
        let mut after = before.clone();
        edit(&mut after);
        store.state.next_job_id += 1;
        let record = ChangeRecord::between(project_id, &store.state, &before, &after);
        store.append(&record).unwrap();
        store.state.projects.insert(project_id.to_string(), after);
    }

    #[test]
    fn changes_survive_a_reopen_through_the_log_and_the_snapshot() {
        let temp = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(temp.path(), temp.path()).unwrap();
        change(&mut store, "p", |project| {
            project.flink_jobs.insert(1, job(1, "a"));
            project.flink_jobs.insert(2, job(2, "b"));
        });
        change(&mut store, "p", |project| {
            project.flink_jobs.remove(&1);
            project.flink_jobs.get_mut(&2).unwrap().status = "job_running".into();
        });
        let expected = store.state.clone();
        let log = std::fs::read_to_string(temp.path().join("changes.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 2);
        assert!(
            !log.lines().nth(1).unwrap().contains("\"name\":\"a\""),
            "only changes are logged"
        );
        drop(store);
        let reopened = StateStore::open(temp.path(), temp.path()).unwrap();
        assert_eq!(reopened.state, expected);
        assert_eq!(
            std::fs::read(temp.path().join("changes.jsonl"))
                .unwrap()
                .len(),
            0,
            "compacted at start"
        );
        drop(reopened);
        assert_eq!(
            StateStore::open(temp.path(), temp.path()).unwrap().state,
            expected
        );
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_middle_line_refused() {
        let temp = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(temp.path(), temp.path()).unwrap();
        change(&mut store, "p", |project| {
            project.flink_jobs.insert(1, job(1, "kept"));
        });
        drop(store);
        let log_path = temp.path().join("changes.jsonl");
        let mut log = OpenOptions::new().append(true).open(&log_path).unwrap();
        log.write_all(b"{\"project_id\":\"p\",\"next_jo").unwrap();
        drop(log);
        let reopened = StateStore::open(temp.path(), temp.path()).unwrap();
        assert_eq!(reopened.state.projects["p"].flink_jobs[&1].name, "kept");
        drop(reopened);
        std::fs::write(&log_path, b"not json\n{}\n").unwrap();
        assert!(matches!(
            StateStore::open(temp.path(), temp.path()),
            Err(StateError::Corrupt { .. })
        ));
    }
}
