//! [`LiveService`] over the signed `cloud` clients and the target's OBS staging and backup
//! locations. DLF bundling happens here, through `bundle`, so the executor never sees a zip;
//! DLI Flink export zips are never written, only re-imported as DLI exported them.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::{
    BulkTags, ExportedDlfJob, ImportedJob, ListedConfig, ListedDlfJob, ListedFlinkJob, Listing,
    LiveService, ServiceFailure,
};
use crate::bundle::{DlfJobEntry, write_dlf_zip};
use crate::cloud::obs::with_obs_scheme;
use crate::cloud::{
    CloudClients, CloudError, DlfImportRequest, ListJobsQuery, ObjectStore, SystemTaskStatus,
};
use crate::model::{DesiredDlfJob, FlinkJobConfig, JobKind, ObservedFlinkJob};

/// One target's live service.
#[derive(Debug)]
pub struct CloudLive {
    pub clients: CloudClients,
    /// Where bundles are uploaded before an import (`None`: imports are refused, clearly).
    pub staging: Option<ObjectStore>,
    /// `obs://bucket/prefix/` for exports taken before an overwrite or delete.
    pub backups: Option<String>,
}

impl From<CloudError> for ServiceFailure {
    fn from(error: CloudError) -> ServiceFailure {
        ServiceFailure {
            code: error.error_code().map(str::to_string),
            message: error.to_string(),
            request_id: error.request_id().map(str::to_string),
            retryable: error.is_retryable(),
        }
    }
}

impl From<crate::savepoints::CopyError> for ServiceFailure {
    fn from(error: crate::savepoints::CopyError) -> ServiceFailure {
        ServiceFailure {
            code: None,
            retryable: error.is_retryable(),
            message: error.to_string(),
            request_id: None,
        }
    }
}

impl CloudLive {
    /// Object stores opened at the savepoint directories `first` and `second`.
    fn savepoint_stores(
        &self,
        first: &str,
        second: &str,
    ) -> Result<(ObjectStore, ObjectStore), ServiceFailure> {
        let open = |path: &str| {
            self.clients
                .object_store(&crate::savepoints::directory(path))
        };
        Ok((open(first)?, open(second)?))
    }

    fn staging(&self) -> Result<&ObjectStore, ServiceFailure> {
        self.staging.as_ref().ok_or_else(|| {
            ServiceFailure::local(
                "the target has no `staging:` location; DLF imports upload their bundle there first (set `staging:`)",
            )
        })
    }

    fn backup_dir(&self, folder: &str) -> Result<String, ServiceFailure> {
        let base = self.backups.as_deref().ok_or_else(|| {
            ServiceFailure::local(
                "the target has no `backups:` location; the plan asked for a backup",
            )
        })?;
        Ok(format!("{}/{folder}/", base.trim_end_matches('/')))
    }

    async fn upload(&self, key: &str, bytes: Vec<u8>) -> Result<String, ServiceFailure> {
        let staging = self.staging()?;
        staging.put(key, Bytes::from(bytes)).await?;
        Ok(staging.url_of(key))
    }
}

/// The bulk tag read was refused for good: a 4xx other than throttling and other than a
/// credential failure, or a 2xx answer that does not read.
fn bulk_tags_refused(error: &CloudError) -> bool {
    match error {
        CloudError::Decode { .. } | CloudError::Rejected { .. } => true,
        CloudError::Service { status, .. } => {
            (400..500).contains(status) && *status != 429 && !error.is_auth_failure()
        }
        _ => false,
    }
}

fn bundle_failure(what: &str, error: impl std::fmt::Display) -> ServiceFailure {
    ServiceFailure::local(format!("bundling {what}: {error}"))
}

impl LiveService for CloudLive {
    async fn list_flink_jobs(&self) -> Result<Listing<ListedFlinkJob>, ServiceFailure> {
        let listed = self
            .clients
            .dli
            .list_jobs_paged(&ListJobsQuery::default())
            .await?;
        Ok(Listing {
            jobs: listed
                .jobs
                .into_iter()
                .map(|job| ListedFlinkJob {
                    id: job.id,
                    name: job.name,
                    status: job.status,
                    update_time: job.update_time,
                })
                .collect(),
            calls: listed.pages,
        })
    }

    async fn flink_job(&self, job_id: i64) -> Result<ObservedFlinkJob, ServiceFailure> {
        Ok(self.clients.dli.job_detail(job_id).await?)
    }

    async fn list_flink_jobs_with_config(
        &self,
    ) -> Result<Listing<(ListedFlinkJob, ListedConfig)>, ServiceFailure> {
        let query = ListJobsQuery {
            show_detail: true,
            ..ListJobsQuery::default()
        };
        let listed = self.clients.dli.list_jobs_paged(&query).await?;
        Ok(Listing {
            jobs: listed
                .jobs
                .into_iter()
                .map(|job| {
                    let entry = ListedFlinkJob {
                        id: job.id,
                        name: job.name,
                        status: job.status,
                        update_time: job.update_time,
                    };
                    (entry, job.config)
                })
                .collect(),
            calls: listed.pages,
        })
    }

    async fn flink_tags_of_every_job(&self) -> Result<BulkTags, ServiceFailure> {
        match self.clients.dli.list_all_job_tags().await {
            Ok(listing) => Ok(BulkTags::Read {
                tags: listing.tags,
                calls: listing.pages,
            }),
            // A refusal (no such route, not allowed, an answer that does not read) falls back to
            // per-job reads; throttling, server errors and transport failures end the pass as
            // a failed listing would.
            Err(error) if bulk_tags_refused(&error) => Ok(BulkTags::Refused {
                reason: error.to_string(),
                calls: error.context().map_or(1, |context| context.attempts.max(1)),
            }),
            Err(error) => Err(error.into()),
        }
    }

    async fn flink_job_tags(
        &self,
        job_id: i64,
    ) -> Result<BTreeMap<String, String>, ServiceFailure> {
        Ok(self.clients.dli.job_tags(job_id).await?)
    }

    async fn list_dlf_jobs(&self) -> Result<Listing<ListedDlfJob>, ServiceFailure> {
        // One listing per job type: without `jobType` DataArts lists BATCH jobs only.
        let (jobs, calls) = self.clients.dlf.list_every_job(None).await?;
        Ok(Listing {
            jobs: jobs
                .into_iter()
                .map(|job| ListedDlfJob {
                    name: job.name,
                    last_update: job.last_update,
                    status: job.status,
                })
                .collect(),
            calls,
        })
    }

    async fn dlf_job(&self, name: &str) -> Result<serde_json::Value, ServiceFailure> {
        Ok(self.clients.dlf.job_detail(name).await?)
    }

    async fn backup_flink_job(
        &self,
        job_id: i64,
        folder: &str,
    ) -> Result<Vec<String>, ServiceFailure> {
        let directory = self.backup_dir(folder)?;
        let zips = self
            .clients
            .dli
            .export_jobs(&directory, Some(&[job_id]))
            .await?;
        Ok(zips.iter().map(|zip| with_obs_scheme(zip)).collect())
    }

    async fn backup_dlf_job(
        &self,
        name: &str,
        folder: &str,
    ) -> Result<Vec<String>, ServiceFailure> {
        let directory = format!("{}dlf-{name}/", self.backup_dir(folder)?);
        let written = self.clients.dlf.export_job(name, &directory).await?;
        Ok(vec![written.unwrap_or(directory)])
    }

    async fn backup_exists(&self, path: &str) -> Result<bool, ServiceFailure> {
        let folder = path.ends_with('/');
        let (directory, name) = path.trim_end_matches('/').rsplit_once('/').ok_or_else(|| {
            ServiceFailure::local(format!("the backup path {path} names no object"))
        })?;
        let store = self.clients.object_store(&format!("{directory}/"))?;
        let keys = store.list("").await?;
        let inside = format!("{name}/");
        Ok(keys.iter().any(|key| {
            if folder {
                key.starts_with(&inside)
            } else {
                key == name
            }
        }))
    }

    async fn import_flink_zip(&self, zip_path: &str) -> Result<Vec<ImportedJob>, ServiceFailure> {
        let mapping = self.clients.dli.import_jobs(zip_path, true).await?;
        Ok(mapping
            .into_iter()
            .map(|entry| ImportedJob {
                old_job_id: entry.old_job_id,
                new_job_id: entry.new_job_id,
                remark: entry.remark,
            })
            .collect())
    }

    async fn create_flink_job(
        &self,
        name: &str,
        config: &FlinkJobConfig,
    ) -> Result<i64, ServiceFailure> {
        Ok(match config.kind() {
            JobKind::FlinkJar => self.clients.dli.create_jar_job(name, config).await?,
            _ => self.clients.dli.create_sql_job(name, config).await?,
        })
    }

    async fn update_flink_job(
        &self,
        job_id: i64,
        config: &FlinkJobConfig,
        scope: &crate::model::UpdateScope,
    ) -> Result<(), ServiceFailure> {
        self.clients.dli.update_job(job_id, config, scope).await?;
        Ok(())
    }

    async fn update_flink_tags(
        &self,
        job_id: i64,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), ServiceFailure> {
        self.clients.dli.create_job_tags(job_id, set).await?;
        self.clients.dli.delete_job_tags(job_id, remove).await?;
        Ok(())
    }

    async fn import_savepoint(&self, job_id: i64, path: &str) -> Result<(), ServiceFailure> {
        Ok(self.clients.dli.import_savepoint(job_id, path).await?)
    }

    async fn run_flink_job(
        &self,
        job_id: i64,
        resume_savepoint: bool,
    ) -> Result<(), ServiceFailure> {
        Ok(self
            .clients
            .dli
            .run_jobs(&[job_id], resume_savepoint)
            .await?)
    }

    async fn stop_flink_job(
        &self,
        job_id: i64,
        trigger_savepoint: bool,
    ) -> Result<(), ServiceFailure> {
        Ok(self
            .clients
            .dli
            .stop_jobs(&[job_id], trigger_savepoint)
            .await?)
    }

    async fn delete_flink_job(&self, job_id: i64) -> Result<(), ServiceFailure> {
        Ok(self.clients.dli.delete_job(job_id).await?)
    }

    async fn import_dlf_job(
        &self,
        job: &DesiredDlfJob,
        folder: &str,
    ) -> Result<String, ServiceFailure> {
        let entry = DlfJobEntry {
            name: job.name.clone(),
            job: job.definition.clone(),
            scripts: job.scripts.clone(),
            resources: BTreeMap::new(),
        };
        let zip = write_dlf_zip(std::slice::from_ref(&entry))
            .map_err(|error| bundle_failure(&format!("DLF job `{}`", job.name), error))?;
        let url = self
            .upload(&format!("{folder}/dlf-{}.zip", job.name), zip)
            .await?;
        let jobs_params = if job.import.job_params.is_empty() {
            Vec::new()
        } else {
            vec![(job.name.clone(), job.import.job_params.clone())]
        };
        let request = DlfImportRequest {
            path: url,
            same_name_policy: "OVERWRITE".to_string(),
            jobs_params,
            settings: job.import.clone(),
        };
        Ok(self.clients.dlf.import_jobs(&request).await?)
    }

    async fn import_dlf_path(&self, path: &str) -> Result<String, ServiceFailure> {
        let request = DlfImportRequest {
            path: path.to_string(),
            same_name_policy: "OVERWRITE".to_string(),
            jobs_params: Vec::new(),
            settings: Default::default(),
        };
        Ok(self.clients.dlf.import_jobs(&request).await?)
    }

    async fn wait_dlf_task(&self, task_id: &str, timeout: Duration) -> Result<(), ServiceFailure> {
        self.clients.dlf.wait_system_task(task_id, timeout).await?;
        Ok(())
    }

    async fn delete_dlf_job(&self, name: &str) -> Result<(), ServiceFailure> {
        Ok(self.clients.dlf.delete_job(name).await?)
    }

    // DLF scheduling, task warnings and export.

    async fn wait_dlf_task_warnings(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, ServiceFailure> {
        let task = self.clients.dlf.wait_system_task(task_id, timeout).await?;
        Ok(match task.status {
            SystemTaskStatus::Warning => task.messages(),
            _ => Vec::new(),
        })
    }

    async fn stop_dlf_schedule(&self, name: &str) -> Result<(), ServiceFailure> {
        Ok(self.clients.dlf.stop_job(name).await?)
    }

    async fn start_dlf_schedule(&self, name: &str) -> Result<(), ServiceFailure> {
        Ok(self.clients.dlf.start_job(name).await?)
    }

    fn savepoint_base(&self) -> Option<String> {
        self.backups
            .clone()
            .or_else(|| self.staging.as_ref().map(|staging| staging.url_of("")))
            .map(|base| crate::savepoints::directory(&base))
    }

    async fn trigger_flink_savepoint(
        &self,
        job_id: i64,
        directory: &str,
    ) -> Result<(), ServiceFailure> {
        Ok(self
            .clients
            .dli
            .trigger_savepoint(job_id, directory)
            .await?)
    }

    async fn savepoint_size(
        &self,
        directory: &str,
    ) -> Result<Option<crate::savepoints::SavepointSize>, ServiceFailure> {
        let store = self
            .clients
            .object_store(&crate::savepoints::directory(directory))?;
        Ok(crate::savepoints::inspect(&store).await?)
    }

    async fn copy_savepoint(
        &self,
        source: &str,
        destination: &str,
    ) -> Result<crate::savepoints::SavepointSize, ServiceFailure> {
        let (from, to) = self.savepoint_stores(source, destination)?;
        Ok(crate::savepoints::copy_and_verify(&from, &to).await?)
    }

    async fn savepoint_copy_matches(
        &self,
        source: &str,
        copy: &str,
    ) -> Result<bool, ServiceFailure> {
        let (from, to) = self.savepoint_stores(source, copy)?;
        match crate::savepoints::verify(&from, &to).await {
            Ok(_) => Ok(true),
            Err(
                crate::savepoints::CopyError::Mismatch { .. }
                | crate::savepoints::CopyError::Incomplete { .. },
            ) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    async fn export_dlf_job(&self, name: &str) -> Result<ExportedDlfJob, ServiceFailure> {
        let zip = self
            .clients
            .dlf
            .batch_export(std::slice::from_ref(&name.to_string()))
            .await?;
        let entries = crate::bundle::read_dlf_zip(&zip, &crate::bundle::ZipLimits::default())
            .map_err(|error| {
                ServiceFailure::local(format!("reading the export of DLF job `{name}`: {error}"))
            })?;
        let entry = entries
            .into_iter()
            .find(|entry| entry.name == name)
            .ok_or_else(|| {
                ServiceFailure::local(format!(
                    "the export of DLF job `{name}` holds no `{name}.job`"
                ))
            })?;
        Ok(ExportedDlfJob {
            definition: entry.job,
            scripts: entry.scripts,
        })
    }
}
