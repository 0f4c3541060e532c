//! The typed DataArts Factory (DLF) client: job import, export, list, detail and system-task
//! polling. DLF addresses jobs by name; the optional `workspace` header selects a workspace.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use url::Url;

use super::http::{Call, ServiceClient};
use super::wire::{epoch_millis, field, first_field, flexible_i64, non_empty_string};
use super::{ClientOptions, CloudError, Credentials};
use crate::model::DlfImportSettings;

/// A DLF job import: the zip on OBS and how to apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlfImportRequest {
    /// `obs://bucket/jobs.zip` (a missing `obs://` is added).
    pub path: String,
    /// `OVERWRITE` or `SKIP`.
    pub same_name_policy: String,
    /// Per-job parameters, by job name.
    pub jobs_params: Vec<(String, std::collections::BTreeMap<String, String>)>,
    pub settings: DlfImportSettings,
}

impl DlfImportRequest {
    /// The request body, in the DataArts API's camelCase.
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "path".into(),
            json!(super::obs::with_obs_scheme(&self.path)),
        );
        body.insert("sameNamePolicy".into(), json!(self.same_name_policy));
        if !self.settings.params.is_empty() {
            body.insert("params".into(), json!(self.settings.params));
        }
        if !self.jobs_params.is_empty() {
            body.insert(
                "jobsParam".into(),
                Value::Array(
                    self.jobs_params
                        .iter()
                        .map(|(name, params)| json!({"name": name, "params": params}))
                        .collect(),
                ),
            );
        }
        if let Some(user) = &self.settings.execute_user {
            body.insert("executeUser".into(), json!(user));
        }
        if let Some(status) = &self.settings.target_status {
            body.insert("targetStatus".into(), json!(status));
        }
        if !self.settings.approvers.is_empty() {
            body.insert(
                "approvers".into(),
                Value::Array(
                    self.settings
                        .approvers
                        .iter()
                        .map(|name| json!({"approverName": name}))
                        .collect(),
                ),
            );
        }
        if !self.settings.resources.is_empty() {
            body.insert("resources".into(), json!(self.settings.resources));
        }
        Value::Object(body)
    }
}

/// A system task's state (`huaweicloudsdkdgc` `list_system_tasks_response.py`: RUNNING,
/// SUCCESSFUL, FAILED, WARNING).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemTaskStatus {
    Running,
    Successful,
    Failed,
    /// Finished with warnings (告警): the work is done, the messages say what to look at.
    Warning,
    /// Anything else; treated as not finished.
    Other(String),
}

impl SystemTaskStatus {
    pub fn parse(text: &str) -> SystemTaskStatus {
        match text.trim().to_ascii_uppercase().as_str() {
            "RUNNING" => SystemTaskStatus::Running,
            "SUCCESSFUL" | "SUCCESS" => SystemTaskStatus::Successful,
            "FAILED" | "FAIL" => SystemTaskStatus::Failed,
            "WARNING" => SystemTaskStatus::Warning,
            _ => SystemTaskStatus::Other(text.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            SystemTaskStatus::Running => "RUNNING",
            SystemTaskStatus::Successful => "SUCCESSFUL",
            SystemTaskStatus::Failed => "FAILED",
            SystemTaskStatus::Warning => "WARNING",
            SystemTaskStatus::Other(text) => text,
        }
    }
}

/// One step of a system task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSubtask {
    pub id: Option<String>,
    pub name: Option<String>,
    pub status: SystemTaskStatus,
    pub message: Option<String>,
    pub last_update: Option<i64>,
}

/// `GET /v1/{project_id}/system-tasks/{task_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemTask {
    pub id: String,
    pub status: SystemTaskStatus,
    pub message: Option<String>,
    pub subtasks: Vec<SystemSubtask>,
}

impl SystemTask {
    /// What a `WARNING` (or `FAILED`) task says: its message, then each subtask that is not
    /// SUCCESSFUL, as `name: message`.
    pub fn messages(&self) -> Vec<String> {
        let mut messages: Vec<String> = self.message.iter().cloned().collect();
        for subtask in &self.subtasks {
            if matches!(
                subtask.status,
                SystemTaskStatus::Failed | SystemTaskStatus::Warning
            ) {
                messages.push(format!(
                    "{}: {}",
                    subtask.name.as_deref().unwrap_or("subtask"),
                    subtask
                        .message
                        .as_deref()
                        .unwrap_or(subtask.status.as_str())
                ));
            }
        }
        messages
    }
}

/// Filters for [`DlfClient::list_jobs`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DlfListJobsQuery {
    pub job_name: Option<String>,
    /// `REAL_TIME` or `BATCH`.
    pub job_type: Option<String>,
}

/// One entry of the DLF job list.
#[derive(Debug, Clone, PartialEq)]
pub struct DlfJobSummary {
    pub name: String,
    pub job_type: Option<String>,
    pub status: Option<String>,
    pub last_update: Option<i64>,
    /// The entry as the service sent it.
    pub raw: Value,
}

/// The DataArts Factory client of one project (and optionally one workspace).
#[derive(Debug)]
pub struct DlfClient {
    core: ServiceClient,
}

impl DlfClient {
    /// `endpoint` is `https://dayu-dlf.{region}.myhuaweicloud.com` or the emulator's URL;
    /// `workspace` is sent as the `workspace` header when set.
    pub fn new(
        endpoint: Url,
        project_id: &str,
        credentials: Credentials,
        options: ClientOptions,
        workspace: Option<&str>,
    ) -> Result<DlfClient, CloudError> {
        let mut core = ServiceClient::new("dlf", endpoint, project_id, credentials, options)?;
        if let Some(workspace) = workspace.filter(|w| !w.is_empty()) {
            core.add_header("workspace", workspace)?;
        }
        Ok(DlfClient { core })
    }

    fn call(&self, operation: &'static str, method: Method, tail: &[&str]) -> Call {
        let mut segments = vec!["v1", self.core.project_id()];
        segments.extend_from_slice(tail);
        Call::new(operation, method, &segments)
    }

    /// Starts an import; returns the system task id to poll.
    pub async fn import_jobs(&self, request: &DlfImportRequest) -> Result<String, CloudError> {
        let call = self
            .call("import_jobs", Method::POST, &["jobs", "import"])
            .target(request.path.clone())
            .json(request.to_body());
        let response = self.core.send(&call).await?;
        let value = response.successful_json()?;
        non_empty_string(first_field(&value, &["taskId", "task_id"]))
            .ok_or_else(|| response.decode_error("import answered without taskId"))
    }

    /// One look at a system task.
    pub async fn system_task(&self, task_id: &str) -> Result<SystemTask, CloudError> {
        let call = self
            .call("system_task", Method::GET, &["system-tasks", task_id])
            .target(format!("task {task_id}"));
        let response = self.core.send(&call).await?;
        let value = response.json()?;
        parse_system_task(&value, task_id).map_err(|problem| response.decode_error(problem))
    }

    /// Polls a system task until it is SUCCESSFUL or WARNING (returned: a WARNING task finished
    /// with warnings, see [`SystemTask::messages`]) or FAILED (an error), or `timeout`.
    pub async fn wait_system_task(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<SystemTask, CloudError> {
        let started = Instant::now();
        let mut interval = Duration::from_millis(500);
        loop {
            let task = self.system_task(task_id).await?;
            match &task.status {
                SystemTaskStatus::Successful | SystemTaskStatus::Warning => return Ok(task),
                SystemTaskStatus::Failed => {
                    let messages = task.messages();
                    return Err(CloudError::TaskFailed {
                        task_id: task_id.to_string(),
                        message: if messages.is_empty() {
                            "no message".into()
                        } else {
                            messages.join("; ")
                        },
                    });
                }
                status => {
                    if started.elapsed() + interval > timeout {
                        return Err(CloudError::TaskTimeout {
                            task_id: task_id.to_string(),
                            status: status.as_str().to_string(),
                            waited: started.elapsed(),
                        });
                    }
                    tokio::time::sleep(interval).await;
                    interval = (interval * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// The job types `GET /v1/{project_id}/jobs` takes in `jobType`. The list answers BATCH
    /// jobs only when `jobType` is left out (dataartsstudio_02_0086; `huaweicloudsdkdgc`
    /// `list_jobs_request.py`), so seeing every job takes one listing per type.
    pub const JOB_TYPES: [&'static str; 2] = ["BATCH", "REAL_TIME"];

    /// Every job of every type: one paged listing per entry of [`Self::JOB_TYPES`]; returns the
    /// jobs and the list calls made. A name listed under both types is kept once (the first).
    pub async fn list_every_job(
        &self,
        job_name: Option<&str>,
    ) -> Result<(Vec<DlfJobSummary>, u32), CloudError> {
        let mut jobs: Vec<DlfJobSummary> = Vec::new();
        let mut calls = 0;
        for job_type in Self::JOB_TYPES {
            let query = DlfListJobsQuery {
                job_name: job_name.map(str::to_string),
                job_type: Some(job_type.to_string()),
            };
            let (listed, pages) = self.list_jobs_counted(&query).await?;
            calls += pages;
            for mut job in listed {
                if jobs.iter().any(|seen| seen.name == job.name) {
                    continue;
                }
                // The listing's type is the type asked for, whatever the entry spells.
                job.job_type.get_or_insert_with(|| job_type.to_string());
                jobs.push(job);
            }
        }
        Ok((jobs, calls))
    }

    /// The jobs of one listing (paged with `limit=100`). Without `query.job_type` the service
    /// lists BATCH jobs only; see [`Self::list_every_job`].
    pub async fn list_jobs(
        &self,
        query: &DlfListJobsQuery,
    ) -> Result<Vec<DlfJobSummary>, CloudError> {
        Ok(self.list_jobs_counted(query).await?.0)
    }

    /// [`Self::list_jobs`], with the number of pages (calls) it took.
    pub async fn list_jobs_counted(
        &self,
        query: &DlfListJobsQuery,
    ) -> Result<(Vec<DlfJobSummary>, u32), CloudError> {
        let mut jobs = Vec::new();
        let mut offset: i64 = 0;
        let mut pages = 0;
        for _page in 0..10_000 {
            pages += 1;
            let mut call = self
                .call("list_jobs", Method::GET, &["jobs"])
                .query("limit", 100)
                .query("offset", offset);
            if let Some(name) = &query.job_name {
                call = call.query("jobName", name);
            }
            if let Some(job_type) = &query.job_type {
                call = call.query("jobType", job_type);
            }
            let response = self.core.send(&call).await?;
            let value = response.json()?;
            let total = flexible_i64(first_field(&value, &["total", "totalCount", "total_count"]));
            // An answer without the list (empty body, `null`, `{}`) is not "no jobs": read as
            // such, the planner would see every live job as missing. Only an explicit
            // `total: 0` may stand for an omitted empty list.
            let entries = match first_field(&value, &["jobs", "jobList"]) {
                Value::Array(entries) => entries.clone(),
                Value::Null if value.is_object() && total == Some(0) => Vec::new(),
                Value::Null => {
                    return Err(response.decode_error(format!(
                        "a 2xx answer without jobs (got {}); refusing to read it as no jobs live",
                        super::wire::shorten(&value.to_string())
                    )));
                }
                other => return Err(response.decode_error(format!("jobs is not a list: {other}"))),
            };
            for entry in &entries {
                let name = non_empty_string(field(entry, "name"))
                    .ok_or_else(|| response.decode_error(format!("job without name: {entry}")))?;
                jobs.push(DlfJobSummary {
                    name,
                    job_type: non_empty_string(first_field(entry, &["jobType", "processType"])),
                    status: non_empty_string(first_field(entry, &["status", "jobStatus"])),
                    last_update: epoch_millis(first_field(
                        entry,
                        &["lastUpdateTime", "lastUpdate", "updateTime"],
                    )),
                    raw: entry.clone(),
                });
            }
            offset += entries.len() as i64;
            if entries.len() < 100 || total.is_some_and(|t| offset >= t) {
                break;
            }
        }
        if let Some(name) = &query.job_name {
            jobs.retain(|job| &job.name == name);
        }
        Ok((jobs, pages))
    }

    /// Starts a job's scheduling (`POST /v1/{project_id}/jobs/{job_name}/start`, dgc `start_job`,
    /// dataartsstudio_02_0092; 204 without a body). Sent without `jobParams`.
    pub async fn start_job(&self, name: &str) -> Result<(), CloudError> {
        let call = self
            .call("start_job", Method::POST, &["jobs", name, "start"])
            .target(format!("job {name}"))
            .json(json!({}));
        self.core.send(&call).await?;
        Ok(())
    }

    /// Stops a job's scheduling (`POST /v1/{project_id}/jobs/{job_name}/stop`, dgc `stop_job`,
    /// 204 without a body). DataArts refuses to import over or delete
    /// a job that is scheduled (usermanual dataartsstudio_01_0438), so this comes first.
    pub async fn stop_job(&self, name: &str) -> Result<(), CloudError> {
        let call = self
            .call("stop_job", Method::POST, &["jobs", name, "stop"])
            .target(format!("job {name}"));
        self.core.send(&call).await?;
        Ok(())
    }

    /// Deletes a job (`DELETE /v1/{project_id}/jobs/{job_name}`); a scheduled job must be
    /// stopped first (DeleteJob, dataartsstudio_02_0065).
    pub async fn delete_job(&self, name: &str) -> Result<(), CloudError> {
        let call = self
            .call("delete_job", Method::DELETE, &["jobs", name])
            .target(format!("job {name}"));
        // DataArts answers 204 without a body.
        self.core.send(&call).await?;
        Ok(())
    }

    /// A job's definition as the service returns it (the CreateJob body shape).
    pub async fn job_detail(&self, name: &str) -> Result<Value, CloudError> {
        let call = self
            .call("job_detail", Method::GET, &["jobs", name])
            .target(format!("job {name}"));
        self.core.send(&call).await?.json()
    }

    /// Exports one job (with its scripts and resources) to `obs_path` (`obs://bucket/dir/`).
    /// Returns the folder the service wrote, when it says.
    pub async fn export_job(
        &self,
        name: &str,
        obs_path: &str,
    ) -> Result<Option<String>, CloudError> {
        let call = self
            .call("export_job", Method::POST, &["jobs", name, "export"])
            .target(format!("job {name}"))
            .json(json!({"obsPath": super::obs::with_obs_scheme(obs_path), "exportDepend": true}));
        let response = self.core.send(&call).await?;
        let value = response.json()?;
        Ok(non_empty_string(field(&value, "obsPath")))
    }

    /// Exports jobs (at most 100) and returns the zip the service streams back.
    pub async fn batch_export(&self, names: &[String]) -> Result<Bytes, CloudError> {
        if names.len() > 100 {
            return Err(CloudError::Config {
                problem: format!(
                    "batch export takes at most 100 jobs, got {}; split the list",
                    names.len()
                ),
            });
        }
        let call = self
            .call("batch_export", Method::POST, &["jobs", "batch-export"])
            .target(format!("{} jobs", names.len()))
            .json(json!({"jobList": names, "exportDepend": true}));
        let response = self.core.send(&call).await?;
        if !response.body.starts_with(b"PK") {
            return Err(response.decode_error("batch export did not answer with a zip archive"));
        }
        Ok(response.body)
    }
}

fn parse_system_task(value: &Value, task_id: &str) -> Result<SystemTask, String> {
    let status = non_empty_string(field(value, "status"))
        .ok_or_else(|| format!("system task without status: {value}"))?;
    let subtasks = match first_field(value, &["subtasks", "subTasks"]) {
        Value::Array(items) => items
            .iter()
            .map(|item| SystemSubtask {
                id: non_empty_string(field(item, "id")),
                name: non_empty_string(field(item, "name")),
                status: SystemTaskStatus::parse(
                    &non_empty_string(field(item, "status")).unwrap_or_default(),
                ),
                message: non_empty_string(field(item, "message")),
                last_update: epoch_millis(field(item, "lastUpdate")),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(SystemTask {
        id: non_empty_string(field(value, "id")).unwrap_or_else(|| task_id.to_string()),
        status: SystemTaskStatus::parse(&status),
        message: non_empty_string(field(value, "message")),
        subtasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DlfResourceReplacement;

    #[test]
    fn system_task_in_both_sdk_spellings() {
        let dgc = json!({"id": "t1", "status": "FAILED", "message": "bad", "subtasks": [
            {"id": 1, "name": "job_a", "status": "FAILED", "message": "DLF.0815 read OBS", "lastUpdate": 1711647009620_i64}]});
        let task = parse_system_task(&dgc, "t1").unwrap();
        assert_eq!(task.status, SystemTaskStatus::Failed);
        assert_eq!(task.subtasks[0].id.as_deref(), Some("1"));
        assert_eq!(task.subtasks[0].last_update, Some(1711647009620));
        let dlf = json!({"status": "RUNNING", "subTasks": [{"name": "x", "status": "RUNNING", "lastUpdate": "1711647009620"}]});
        let task = parse_system_task(&dlf, "t2").unwrap();
        assert_eq!(task.id, "t2");
        assert_eq!(task.subtasks[0].last_update, Some(1711647009620));
        assert_eq!(
            SystemTaskStatus::parse("WARNING"),
            SystemTaskStatus::Warning
        );
        let warned = json!({"id": "t3", "status": "WARNING", "message": "1 warning", "subtasks": [
            {"name": "job_a", "status": "SUCCESSFUL", "message": "imported"},
            {"name": "job_b", "status": "WARNING", "message": "resource x unused"}]});
        let task = parse_system_task(&warned, "t3").unwrap();
        assert_eq!(task.messages(), ["1 warning", "job_b: resource x unused"]);
        assert!(parse_system_task(&json!({}), "t").is_err());
    }

    #[test]
    fn import_body_uses_the_api_names() {
        let request = DlfImportRequest {
            path: "bucket/jobs.zip".into(),
            same_name_policy: "OVERWRITE".into(),
            jobs_params: vec![(
                "nightly".into(),
                [("day".to_string(), "1".to_string())].into(),
            )],
            settings: DlfImportSettings {
                params: [("env".to_string(), "prod".to_string())].into(),
                resources: vec![DlfResourceReplacement {
                    name: "dev_dws".into(),
                    resource_type: "DWS_CONNECTION".into(),
                    replace: Some("prod_dws".into()),
                }],
                target_status: Some("SUBMITTED".into()),
                approvers: vec!["bob".into()],
                ..DlfImportSettings::default()
            },
        };
        let body = request.to_body();
        assert_eq!(body["path"], json!("obs://bucket/jobs.zip"));
        assert_eq!(body["sameNamePolicy"], json!("OVERWRITE"));
        assert_eq!(
            body["jobsParam"],
            json!([{"name": "nightly", "params": {"day": "1"}}])
        );
        assert_eq!(
            body["resources"],
            json!([{"name": "dev_dws", "type": "DWS_CONNECTION", "replace": "prod_dws"}])
        );
        assert_eq!(body["approvers"], json!([{"approverName": "bob"}]));
        assert_eq!(body["targetStatus"], json!("SUBMITTED"));
    }
}
