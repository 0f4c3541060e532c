//! The live service as the executor sees it: the operations a plan's steps need, in the
//! executor's terms. [`CloudLive`](super::target) backs it with the signed `cloud` clients
//! and the target's OBS locations; DLF bundling happens behind it. Flink export zips are opaque
//! bytes here: they are only ever re-imported as DLI exported them.

pub(crate) mod cloud;

use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::cloud::ListedConfig;
use crate::model::{DesiredDlfJob, FlinkJobConfig, ObservedFlinkJob};

/// One entry of the Flink job list: enough to decide whether the cached detail is still good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFlinkJob {
    pub id: i64,
    pub name: String,
    pub status: crate::model::FlinkJobStatus,
    /// 13-digit epoch milliseconds.
    pub update_time: i64,
}

/// The tags of every Flink job, read in bulk (the tag API's `resource-instances/filter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkTags {
    /// Tags by job id; a job the answer leaves out has its tags read on its own.
    Read {
        tags: BTreeMap<i64, BTreeMap<String, String>>,
        calls: u32,
    },
    /// The service refused the bulk read (not found, forbidden, an answer that does not read):
    /// tags are read job by job.
    Refused { reason: String, calls: u32 },
}

/// One entry of the DLF job list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedDlfJob {
    pub name: String,
    pub last_update: Option<i64>,
    /// The scheduling status the list reports (`NORMAL`, `STOPPED`, ...).
    pub status: Option<String>,
}

/// A DLF job as DataArts exports it: the `.job` definition (the CreateJob body) and the scripts
/// it depends on, by script name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportedDlfJob {
    pub definition: serde_json::Value,
    pub scripts: BTreeMap<String, serde_json::Value>,
}

/// A complete listing and the calls it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub jobs: Vec<T>,
    pub calls: u32,
}

/// What an import did to one job (`job_mapping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedJob {
    pub old_job_id: Option<i64>,
    /// `-1` when the service did not import it.
    pub new_job_id: i64,
    pub remark: Option<String>,
}

/// A call to the live service failed. Carries what the service said, so the journal can
/// record its code and message; never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceFailure {
    /// The service's `error_code`, when it sent one.
    pub code: Option<String>,
    /// What was being done and what the service answered.
    pub message: String,
    pub request_id: Option<String>,
    /// Worth trying again on the next pass (5xx, 429, timeouts).
    pub retryable: bool,
}

impl ServiceFailure {
    /// A failure the executor itself detected (no service code).
    pub fn local(message: impl Into<String>) -> ServiceFailure {
        ServiceFailure {
            code: None,
            message: message.into(),
            request_id: None,
            retryable: false,
        }
    }
}

/// The operations the executor and the observer run against one target.
///
/// Implementations make one attempt per call (with the client's own transient retries); the
/// executor decides nothing on their behalf.
#[allow(async_fn_in_trait)]
pub trait LiveService {
    /// Every Flink job, page by page.
    async fn list_flink_jobs(&self) -> Result<Listing<ListedFlinkJob>, ServiceFailure>;
    /// One Flink job's detail, normalised.
    async fn flink_job(&self, job_id: i64) -> Result<ObservedFlinkJob, ServiceFailure>;
    /// Every Flink job with the configuration the listing carried (`show_detail`). The default
    /// asks for none, so every job not served from the cache has its detail read.
    async fn list_flink_jobs_with_config(
        &self,
    ) -> Result<Listing<(ListedFlinkJob, ListedConfig)>, ServiceFailure> {
        let listing = self.list_flink_jobs().await?;
        Ok(Listing {
            jobs: listing
                .jobs
                .into_iter()
                .map(|job| (job, ListedConfig::NotAsked))
                .collect(),
            calls: listing.calls,
        })
    }
    /// The tags of every Flink job in bulk. The default has no bulk read.
    async fn flink_tags_of_every_job(&self) -> Result<BulkTags, ServiceFailure> {
        Ok(BulkTags::Refused {
            reason: "this service has no bulk tag read".to_string(),
            calls: 0,
        })
    }
    /// One Flink job's tags (the tag API). The default reads the job's detail.
    async fn flink_job_tags(
        &self,
        job_id: i64,
    ) -> Result<BTreeMap<String, String>, ServiceFailure> {
        Ok(self.flink_job(job_id).await?.config.tags)
    }
    /// Every DLF job, page by page.
    async fn list_dlf_jobs(&self) -> Result<Listing<ListedDlfJob>, ServiceFailure>;
    /// One DLF job's definition.
    async fn dlf_job(&self, name: &str) -> Result<serde_json::Value, ServiceFailure>;

    /// Exports one Flink job into `<backups>/<folder>/`; returns the zip paths.
    async fn backup_flink_job(
        &self,
        job_id: i64,
        folder: &str,
    ) -> Result<Vec<String>, ServiceFailure>;
    /// Exports one DLF job into `<backups>/<folder>/`; returns the paths written.
    async fn backup_dlf_job(&self, name: &str, folder: &str)
    -> Result<Vec<String>, ServiceFailure>;

    /// Whether a backup (an export zip, or a DLF export folder ending in `/`) is still where the
    /// journal recorded it. `rollback` checks every backup before it stops anything.
    async fn backup_exists(&self, path: &str) -> Result<bool, ServiceFailure>;
    /// Re-imports a zip that is already on OBS (a backup) with `is_cover: true`.
    async fn import_flink_zip(&self, zip_path: &str) -> Result<Vec<ImportedJob>, ServiceFailure>;
    async fn create_flink_job(
        &self,
        name: &str,
        config: &FlinkJobConfig,
    ) -> Result<i64, ServiceFailure>;
    /// Updates the job with `config`; `scope` says whether the whole update body goes or only
    /// the fields a running job accepts.
    async fn update_flink_job(
        &self,
        job_id: i64,
        config: &FlinkJobConfig,
        scope: &crate::model::UpdateScope,
    ) -> Result<(), ServiceFailure>;
    async fn update_flink_tags(
        &self,
        job_id: i64,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), ServiceFailure>;
    async fn import_savepoint(&self, job_id: i64, path: &str) -> Result<(), ServiceFailure>;
    async fn run_flink_job(
        &self,
        job_id: i64,
        resume_savepoint: bool,
    ) -> Result<(), ServiceFailure>;
    async fn stop_flink_job(
        &self,
        job_id: i64,
        trigger_savepoint: bool,
    ) -> Result<(), ServiceFailure>;
    async fn delete_flink_job(&self, job_id: i64) -> Result<(), ServiceFailure>;

    /// Bundles the DLF job in the DLF export layout, uploads it to `<staging>/<folder>/`, imports
    /// it with `sameNamePolicy: OVERWRITE` and the job's import settings; returns the task id.
    async fn import_dlf_job(
        &self,
        job: &DesiredDlfJob,
        folder: &str,
    ) -> Result<String, ServiceFailure>;
    /// Re-imports DLF jobs from a path already on OBS (a backup), overwriting.
    async fn import_dlf_path(&self, path: &str) -> Result<String, ServiceFailure>;
    /// Polls a DLF system task until it succeeds (Ok), fails or times out (Err).
    async fn wait_dlf_task(&self, task_id: &str, timeout: Duration) -> Result<(), ServiceFailure>;
    async fn delete_dlf_job(&self, name: &str) -> Result<(), ServiceFailure>;

    // DLF scheduling, task warnings and export. Defaults refuse (or, for the task, report no
    // warnings), so a service that lacks them says so instead of pretending.

    /// Polls a DLF system task like [`LiveService::wait_dlf_task`]; a task that finished
    /// `WARNING` is Ok, with what it said.
    async fn wait_dlf_task_warnings(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, ServiceFailure> {
        self.wait_dlf_task(task_id, timeout).await?;
        Ok(Vec::new())
    }
    /// Stops a DLF job's schedule (`POST jobs/{name}/stop`).
    async fn stop_dlf_schedule(&self, name: &str) -> Result<(), ServiceFailure> {
        Err(ServiceFailure::local(format!(
            "this service cannot stop the schedule of DLF job `{name}`"
        )))
    }
    /// Starts a DLF job's schedule (`POST jobs/{name}/start`).
    async fn start_dlf_schedule(&self, name: &str) -> Result<(), ServiceFailure> {
        Err(ServiceFailure::local(format!(
            "this service cannot start the schedule of DLF job `{name}`"
        )))
    }
    /// Exports one DLF job with its scripts, as DataArts writes it.
    async fn export_dlf_job(&self, name: &str) -> Result<ExportedDlfJob, ServiceFailure> {
        Err(ServiceFailure::local(format!(
            "this service cannot export DLF job `{name}`"
        )))
    }

    // Savepoint copies (the catalog). Defaults refuse, so a service without them never
    // pretends that a savepoint is safe.

    /// Where this target keeps its savepoint copies (`obs://bucket/prefix/`): the `backups:`
    /// location, else `staging:`.
    fn savepoint_base(&self) -> Option<String> {
        None
    }
    /// Triggers a savepoint of a running Flink job into `directory` (`obs://bucket/dir/`;
    /// `ExecuteFlinkJobSavepoint`).
    async fn trigger_flink_savepoint(
        &self,
        job_id: i64,
        directory: &str,
    ) -> Result<(), ServiceFailure> {
        Err(ServiceFailure::local(format!(
            "this service cannot trigger a savepoint of job {job_id} into {directory}"
        )))
    }
    /// The complete savepoint in `directory` (its `_metadata` present), or `None`.
    async fn savepoint_size(
        &self,
        directory: &str,
    ) -> Result<Option<crate::savepoints::SavepointSize>, ServiceFailure> {
        Err(ServiceFailure::local(format!(
            "this service cannot read savepoint {directory}"
        )))
    }
    /// Copies the savepoint in `source` to `destination` (`_metadata` last) and verifies the
    /// copy against its source.
    async fn copy_savepoint(
        &self,
        source: &str,
        destination: &str,
    ) -> Result<crate::savepoints::SavepointSize, ServiceFailure> {
        Err(ServiceFailure::local(format!(
            "this service cannot copy savepoint {source} to {destination}"
        )))
    }
    /// Whether `copy` still matches the savepoint that is in `source` now (the same objects
    /// with the same sizes, `_metadata` byte for byte), without writing anything. The service
    /// names its stop savepoints to the second, so two stops of one job in one second write
    /// into one directory: a copy made from that directory earlier may be of an older
    /// savepoint. The default answers `false`, so a service that cannot tell never reuses one.
    async fn savepoint_copy_matches(
        &self,
        source: &str,
        copy: &str,
    ) -> Result<bool, ServiceFailure> {
        let _ = (source, copy);
        Ok(false)
    }
}
