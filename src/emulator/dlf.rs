//! DataArts Factory (DLF) handlers under `/v1/{project_id}/...`: job import from OBS (an
//! asynchronous system task, with parameter and resource replacements), job list and detail,
//! single and batch export, and `system-tasks/{task_id}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::obs::{ObjectError, ObjectPath};
use super::server::{ApiError, Call, Operation, Reply, ReplyBody, Service};
use super::state::{DlfPendingJob, DlfSubtask, DlfTaskOutcome, DlfTaskRecord, ProjectState};
use crate::bundle::DLF_RESOURCE_TYPES as RESOURCE_TYPES;
use crate::bundle::{self, DlfJobEntry};

pub(crate) fn handle(call: &Call<'_>, operation: Operation) -> Result<Reply, ApiError> {
    match operation {
        Operation::DlfImportJob => import_jobs(call),
        Operation::DlfListJobs => list_jobs(call),
        Operation::DlfShowJob => show_job(call),
        Operation::DlfExportJob => export_job(call),
        Operation::DlfExportJobList => export_job_list(call),
        Operation::DlfListSystemTasks => show_task(call),
        Operation::DlfStartJob => set_schedule(call, "NORMAL"),
        Operation::DlfStopJob => set_schedule(call, "STOPPED"),
        Operation::DlfDeleteJob => delete_job(call),
        _ => Err(ApiError::internal(
            Service::Dlf,
            "operation routed to the wrong service",
        )),
    }
}

fn missing_job(name: &str) -> ApiError {
    ApiError::bad_request("DLF.0100", format!("The job does not exist: {name}"))
}

fn obs_error(error: ObjectError) -> ApiError {
    match error {
        ObjectError::InvalidPath { .. } => ApiError::bad_request("DLF.0803", error.to_string()),
        ObjectError::NoSuchBucket { .. } => ApiError::bad_request("DLF.1242", error.to_string()),
        ObjectError::Io { .. } => ApiError::internal(Service::Dlf, &error.to_string()),
        _ => ApiError::bad_request("DLF.0815", format!("Fail to read OBS file. {error}")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImportBody {
    path: String,
    #[serde(default)]
    params: BTreeMap<String, Value>,
    #[serde(default)]
    same_name_policy: Option<String>,
    #[serde(default)]
    jobs_param: Vec<JobParams>,
    #[serde(default)]
    execute_user: Option<String>,
    #[serde(default)]
    target_status: Option<String>,
    #[serde(default)]
    approvers: Vec<Approver>,
    #[serde(default)]
    resources: Vec<ResourceReplacement>,
}

#[derive(Deserialize)]
struct JobParams {
    name: String,
    #[serde(default)]
    params: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Approver {
    approver_name: String,
}

#[derive(Deserialize)]
struct ResourceReplacement {
    name: String,
    #[serde(rename = "type")]
    resource_type: String,
    #[serde(default)]
    replace: Option<String>,
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Sets the value of every job parameter (`params: [{name, value}]`) named in `replacements`.
fn replace_params(definition: &mut Value, replacements: &BTreeMap<String, Value>) {
    if let Some(params) = definition.get_mut("params").and_then(Value::as_array_mut) {
        for param in params {
            let Some(name) = param.get("name").and_then(Value::as_str) else {
                continue;
            };
            if let Some(replacement) = replacements.get(name) {
                param["value"] = Value::String(value_text(replacement));
            }
        }
    }
}

/// Replaces every string equal to `from` inside the job's nodes (connection, cluster and
/// stream names sit in node properties).
fn replace_resource(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(text) if text == from => *text = to.to_string(),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_resource(item, from, to)),
        Value::Object(object) => object
            .values_mut()
            .for_each(|item| replace_resource(item, from, to)),
        _ => {}
    }
}

fn import_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: ImportBody = call.json_body(Service::Dlf)?;
    let policy = body.same_name_policy.as_deref().unwrap_or("SKIP");
    if !matches!(policy, "SKIP" | "OVERWRITE") {
        return Err(ApiError::dlf_parameter(format!(
            "sameNamePolicy {policy:?} is not SKIP or OVERWRITE"
        )));
    }
    let target_status = body
        .target_status
        .clone()
        .unwrap_or_else(|| "SUBMITTED".to_string());
    if !matches!(target_status.as_str(), "SAVED" | "SUBMITTED" | "PRODUCTION") {
        return Err(ApiError::dlf_parameter(format!(
            "targetStatus {target_status:?} is not SAVED, SUBMITTED or PRODUCTION"
        )));
    }
    for resource in &body.resources {
        if !RESOURCE_TYPES.contains(&resource.resource_type.as_str()) {
            return Err(ApiError::bad_request(
                "DLF.6263",
                format!(
                    "resource type {:?} is not supported",
                    resource.resource_type
                ),
            ));
        }
    }
    if !body.path.trim().starts_with("obs://") {
        return Err(ApiError::bad_request(
            "DLF.0803",
            format!(
                "path {:?} is not an OBS path (obs://bucket/object.zip)",
                body.path
            ),
        ));
    }
    let path = ObjectPath::parse(&body.path).map_err(obs_error)?;
    let limits = &call.shared.config.limits;
    let bytes = call
        .shared
        .objects
        .read(&path, limits.max_zip_bytes)
        .map_err(obs_error)?;
    let entries = bundle::read_dlf_zip(&bytes, &limits.zip).map_err(|error| {
        ApiError::bad_request(
            "DLF.0815",
            format!("Fail to read OBS file. {}: {error}", path.obs_url()),
        )
    })?;
    let approvers: Vec<String> = body
        .approvers
        .iter()
        .map(|a| a.approver_name.clone())
        .collect();
    let task_name = format!("import {}", path.obs_url());
    let delay = i64::try_from(call.shared.config.delays.dlf_task_ms).unwrap_or(i64::MAX);
    let task_id = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let number = state.next_task_number;
        state.next_task_number += 1;
        let task_id = format!("{:016x}{:016x}", call.now_ms, number);
        let project = state.projects.entry(call.project_id.clone()).or_default();
        let outcome = plan_import(
            project,
            &entries,
            &body,
            policy,
            &target_status,
            &approvers,
            &task_id,
        );
        project.dlf_tasks.insert(
            task_id.clone(),
            DlfTaskRecord {
                id: task_id.clone(),
                name: task_name,
                start_time: call.now_ms,
                finish_at: call.now_ms.saturating_add(delay),
                end_time: None,
                status: "RUNNING".to_string(),
                message: String::new(),
                outcome,
            },
        );
        Ok(task_id)
    })?;
    tracing::info!(project = %call.project_id, task = %task_id, path = %body.path, "The emulator accepted a DLF import.");
    Ok(Reply::json(json!({"taskId": task_id})))
}

/// Decides what an import task will do; the jobs are written when the task completes.
fn plan_import(
    project: &ProjectState,
    entries: &[DlfJobEntry],
    body: &ImportBody,
    policy: &str,
    target_status: &str,
    approvers: &[String],
    task_id: &str,
) -> DlfTaskOutcome {
    let mut subtasks = Vec::new();
    let mut jobs = Vec::new();
    let mut failed = false;
    let mut warned = false;
    for (index, entry) in entries.iter().enumerate() {
        let subtask = |status: &str, message: String| DlfSubtask {
            id: format!("{task_id}-{index}"),
            name: entry.name.clone(),
            status: status.to_string(),
            message,
        };
        if let Err(problem) = check_job_definition(&entry.name, &entry.job) {
            failed = true;
            subtasks.push(subtask("FAILED", problem));
            continue;
        }
        match project.dlf_jobs.get(&entry.name) {
            Some(_) if policy == "SKIP" => {
                subtasks.push(subtask(
                    "SUCCESSFUL",
                    "Skipped: a job with the same name exists (sameNamePolicy SKIP).".into(),
                ));
                continue;
            }
            Some(existing) if existing.schedule_status == "NORMAL" => {
                failed = true;
                subtasks.push(subtask(
                    "FAILED",
                    format!(
                        "The job {} is scheduled; stop it before importing over it.",
                        entry.name
                    ),
                ));
                continue;
            }
            _ => {}
        }
        let mut definition = entry.job.clone();
        replace_params(&mut definition, &body.params);
        for job_params in body
            .jobs_param
            .iter()
            .filter(|params| params.name == entry.name)
        {
            replace_params(&mut definition, &job_params.params);
        }
        for resource in &body.resources {
            if let Some(replace) = &resource.replace
                && let Some(nodes) = definition.get_mut("nodes")
            {
                replace_resource(nodes, &resource.name, replace);
            }
        }
        if let Value::Object(object) = &mut definition {
            object.insert("name".into(), Value::String(entry.name.clone()));
        }
        // A replacement the job does not use changes nothing: the job is imported and the
        // task ends WARNING (dgc `list_system_tasks_response.py` lists WARNING), naming it.
        let unused: Vec<String> = body
            .resources
            .iter()
            .filter(|resource| !mentions(&entry.job, &resource.name))
            .map(|resource| format!("{} ({})", resource.name, resource.resource_type))
            .collect();
        if unused.is_empty() {
            subtasks.push(subtask("SUCCESSFUL", "The job is imported.".into()));
        } else {
            warned = true;
            subtasks.push(subtask(
                "WARNING",
                format!(
                    "The job is imported; resource {} is not used by it, nothing was replaced.",
                    unused.join(", ")
                ),
            ));
        }
        jobs.push(DlfPendingJob {
            name: entry.name.clone(),
            definition,
            scripts: entry.scripts.clone(),
            resources: entry.resources.clone(),
            target_status: target_status.to_string(),
            approvers: approvers.to_vec(),
            execute_user: body.execute_user.clone(),
        });
    }
    if failed {
        DlfTaskOutcome {
            status: "FAILED".into(),
            message: "Some jobs could not be imported; nothing was changed.".into(),
            subtasks,
            jobs: Vec::new(),
        }
    } else if warned {
        DlfTaskOutcome {
            status: "WARNING".into(),
            message: format!("{} job(s) imported, with warnings.", jobs.len()),
            subtasks,
            jobs,
        }
    } else {
        DlfTaskOutcome {
            status: "SUCCESSFUL".into(),
            message: format!("{} job(s) imported.", jobs.len()),
            subtasks,
            jobs,
        }
    }
}

/// Whether any string inside `value` equals `text`.
fn mentions(value: &Value, text: &str) -> bool {
    match value {
        Value::String(found) => found == text,
        Value::Array(items) => items.iter().any(|item| mentions(item, text)),
        Value::Object(object) => object.values().any(|item| mentions(item, text)),
        _ => false,
    }
}

/// The CreateJob body's documented requirements (dataartsstudio_02_0084; dgc `job_info.py`):
/// `name` (at most 128 letters, digits, `-`, `_`, `.`), a non-empty `nodes` list, a
/// `schedule` object and `processType` BATCH or REAL_TIME. An export's `.job` file holds
/// this body (dataartsstudio_02_0088), so an import checks the same. Codes from the DataArts
/// error-code list: DLF.3004 (name empty), DLF.3018 (invalid name), DLF.1006 (nodes empty),
/// DLF.3025 (invalid schedule), DLF.3051 (invalid parameter).
pub(crate) fn check_job_definition(file_name: &str, job: &Value) -> Result<(), String> {
    let name = job.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(format!(
            "DLF.3004: The job name is empty (in the definition of {file_name})."
        ));
    }
    let valid_name = name.chars().count() <= 128
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_name {
        return Err(format!(
            "DLF.3018: The job name {name:?} is invalid: at most 128 letters, digits, -, _ and ."
        ));
    }
    if job
        .get("nodes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err("DLF.1006: The job nodes are empty.".into());
    }
    if !job.get("schedule").is_some_and(Value::is_object) {
        return Err(format!(
            "DLF.3025: The schedule of job {name} is missing or not an object."
        ));
    }
    match job.get("processType").and_then(Value::as_str) {
        Some("BATCH" | "REAL_TIME") => Ok(()),
        other => Err(format!(
            "DLF.3051: The processType of job {name} is {}, not BATCH or REAL_TIME.",
            other.map_or("missing".to_string(), |value| format!("{value:?}"))
        )),
    }
}

fn query_number(call: &Call<'_>, name: &str, default: i64) -> Result<i64, ApiError> {
    match call.query_value(name) {
        None | Some("") => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::dlf_parameter(format!("{name} {text:?} is not a number"))),
    }
}

fn list_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let offset = query_number(call, "offset", 0)?;
    let limit = query_number(call, "limit", 10)?;
    if offset < 0 || !(1..=100).contains(&limit) {
        return Err(ApiError::dlf_parameter(
            "offset must be >= 0 and limit between 1 and 100",
        ));
    }
    let name = call.query_value("jobName").unwrap_or_default().to_string();
    // `jobType` defaults to BATCH (dataartsstudio_02_0086; dgc `list_jobs_request.py`): a
    // listing without it never shows REAL_TIME jobs.
    let job_type = match call.query_value("jobType") {
        None | Some("") => "BATCH".to_string(),
        Some(value @ ("BATCH" | "REAL_TIME")) => value.to_string(),
        Some(other) => {
            return Err(ApiError::dlf_parameter(format!(
                "jobType {other:?} is not REAL_TIME or BATCH"
            )));
        }
    };
    let body = call.shared.read(&call.project_id, call.now_ms, |project| {
        let matching: Vec<Value> = project
            .dlf_jobs
            .values()
            .filter(|job| name.is_empty() || job.name.contains(&name))
            .filter(|job| {
                job.definition.get("processType").and_then(Value::as_str)
                    == Some(job_type.as_str())
            })
            .map(|job| {
                json!({
                    "name": job.name,
                    "id": job.id,
                    "jobType": job.definition.get("processType").cloned().unwrap_or(Value::Null),
                    "directory": job.definition.get("directory").cloned().unwrap_or_else(|| json!("/")),
                    "lastUpdateUser": job.execute_user.clone().unwrap_or_else(|| "emulator".into()),
                    "status": job.schedule_status,
                    "submitStatus": job.target_status,
                    "version": job.version,
                    "createTime": job.create_time,
                    "lastUpdateTime": job.last_update,
                })
            })
            .collect();
        let total = matching.len();
        let jobs: Vec<Value> = matching
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        json!({"total": total, "jobs": jobs})
    });
    Ok(Reply::json(body))
}

fn job_name(call: &Call<'_>) -> String {
    call.segments.get(3).cloned().unwrap_or_default()
}

fn show_job(call: &Call<'_>) -> Result<Reply, ApiError> {
    let name = job_name(call);
    let detail = call.shared.read(&call.project_id, call.now_ms, |project| {
        project.dlf_jobs.get(&name).map(|job| {
            let mut detail = job.definition.clone();
            if let Value::Object(object) = &mut detail {
                object.insert("id".into(), json!(job.id));
                object.insert("name".into(), json!(job.name));
                object.entry("jobType".to_string()).or_insert_with(|| {
                    job.definition
                        .get("processType")
                        .cloned()
                        .unwrap_or(Value::Null)
                });
                object.insert("version".into(), json!(job.version));
                object.insert("createTime".into(), json!(job.create_time));
                object.insert(
                    "lastUpdateUser".into(),
                    json!(
                        job.execute_user
                            .clone()
                            .unwrap_or_else(|| "emulator".into())
                    ),
                );
                object.insert("targetStatus".into(), json!(job.target_status));
                object.insert(
                    "approvers".into(),
                    json!(
                        job.approvers
                            .iter()
                            .map(|name| json!({"approverName": name}))
                            .collect::<Vec<_>>()
                    ),
                );
                object.insert("lastUpdateTime".into(), json!(job.last_update));
            }
            detail
        })
    });
    detail.map(Reply::json).ok_or_else(|| missing_job(&name))
}

/// The jobs named, with their scripts and resources when `export_depend`.
fn export_entries(
    call: &Call<'_>,
    names: &[String],
    export_depend: bool,
) -> Result<Vec<DlfJobEntry>, ApiError> {
    call.shared.read(&call.project_id, call.now_ms, |project| {
        names
            .iter()
            .map(|name| {
                let job = project
                    .dlf_jobs
                    .get(name)
                    .ok_or_else(|| missing_job(name))?;
                let mut entry = DlfJobEntry {
                    name: job.name.clone(),
                    job: job.definition.clone(),
                    ..DlfJobEntry::default()
                };
                if export_depend {
                    for script in &job.script_names {
                        if let Some(document) = project.dlf_scripts.get(script) {
                            entry.scripts.insert(script.clone(), document.clone());
                        }
                    }
                    for resource in &job.resource_names {
                        if let Some(document) = project.dlf_resources.get(resource) {
                            entry.resources.insert(resource.clone(), document.clone());
                        }
                    }
                }
                Ok(entry)
            })
            .collect()
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExportBody {
    #[serde(default)]
    obs_path: Option<String>,
    #[serde(default)]
    export_depend: Option<bool>,
    #[serde(default)]
    export_status: Option<String>,
    #[serde(default)]
    job_list: Vec<String>,
}

fn export_body(call: &Call<'_>) -> Result<ExportBody, ApiError> {
    if call.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ExportBody::default());
    }
    let body: ExportBody = call.json_body(Service::Dlf)?;
    if let Some(status) = &body.export_status
        && !matches!(status.as_str(), "DEVELOP" | "SUBMIT")
    {
        return Err(ApiError::dlf_parameter(format!(
            "exportStatus {status:?} is not DEVELOP or SUBMIT"
        )));
    }
    Ok(body)
}

fn deliver_zip(
    call: &Call<'_>,
    body: &ExportBody,
    bytes: Vec<u8>,
    file_name: String,
) -> Result<Reply, ApiError> {
    match body
        .obs_path
        .as_deref()
        .filter(|path| !path.trim().is_empty())
    {
        Some(obs_path) => {
            let directory = ObjectPath::parse(obs_path).map_err(obs_error)?;
            let target = directory.join(&file_name);
            call.shared
                .objects
                .write(&target, &bytes)
                .map_err(obs_error)?;
            Ok(Reply::json(json!({"obsPath": target.obs_url()})))
        }
        None => Ok(Reply {
            status: http::StatusCode::OK,
            body: ReplyBody::Binary { bytes, file_name },
            headers: Vec::new(),
        }),
    }
}

fn export_job(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body = export_body(call)?;
    let name = job_name(call);
    let entries = export_entries(
        call,
        std::slice::from_ref(&name),
        body.export_depend.unwrap_or(true),
    )?;
    let bytes = bundle::write_dlf_zip(&entries)
        .map_err(|error| ApiError::internal(Service::Dlf, &error.to_string()))?;
    let file_name = match body.obs_path {
        Some(_) => format!("DLF_{name}_{}.zip", call.now_ms),
        None => format!("DLF_{name}.zip"),
    };
    deliver_zip(call, &body, bytes, file_name)
}

fn export_job_list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: ExportBody = call.json_body(Service::Dlf)?;
    if body.job_list.is_empty() || body.job_list.len() > 100 {
        return Err(ApiError::dlf_parameter("jobList must name 1 to 100 jobs"));
    }
    let entries = export_entries(call, &body.job_list, body.export_depend.unwrap_or(true))?;
    let bytes = bundle::write_dlf_batch_zip(&entries)
        .map_err(|error| ApiError::internal(Service::Dlf, &error.to_string()))?;
    let file_name = match body.obs_path {
        Some(_) => format!("jobs_{}.zip", call.now_ms),
        None => "jobs.zip".to_string(),
    };
    deliver_zip(call, &body, bytes, file_name)
}

fn show_task(call: &Call<'_>) -> Result<Reply, ApiError> {
    let task_id = call.segments.get(3).cloned().unwrap_or_default();
    let task = call.shared.read(&call.project_id, call.now_ms, |project| {
        project.dlf_tasks.get(&task_id).map(|task| {
            let last_update = task.end_time.unwrap_or(call.now_ms);
            let subtasks: Vec<Value> = if task.status == "RUNNING" {
                Vec::new()
            } else {
                task.outcome
                    .subtasks
                    .iter()
                    .map(|subtask| {
                        json!({
                            "id": subtask.id, "name": subtask.name, "status": subtask.status,
                            "message": subtask.message, "lastUpdate": last_update,
                        })
                    })
                    .collect()
            };
            // Both spellings: the docs and the dgc SDK say `subtasks`, the older dlf SDKs
            // `subTasks`; each client reads its own and ignores the other.
            json!({
                "id": task.id,
                "name": task.name,
                "projectId": call.project_id,
                "startTime": task.start_time,
                "endTime": task.end_time,
                "lastUpdate": last_update,
                "status": task.status,
                "message": task.message,
                "subtasks": subtasks,
                "subTasks": subtasks,
            })
        })
    });
    task.map(Reply::json).ok_or_else(|| {
        ApiError::bad_request(
            "DLF.0810",
            format!("The system task does not exist: {task_id}"),
        )
    })
}

/// `DELETE jobs/{name}`: a scheduled job must be stopped first, as for an import over it.
fn delete_job(call: &Call<'_>) -> Result<Reply, ApiError> {
    let name = job_name(call);
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let jobs = &mut state
            .projects
            .entry(call.project_id.clone())
            .or_default()
            .dlf_jobs;
        let job = jobs.get(&name).ok_or_else(|| missing_job(&name))?;
        if job.schedule_status == "NORMAL" {
            return Err(ApiError::bad_request(
                // DeleteJob (dataartsstudio_02_0065): "jobs being scheduled may not be deleted;
                // stop the job first". The code is not documented: DLF.3051 (invalid request
                // parameter) is the closest in the DataArts error-code list.
                "DLF.3051",
                format!("The job {name} is scheduled; stop it before deleting it."),
            ));
        }
        jobs.remove(&name);
        Ok(())
    })?;
    Ok(Reply::no_content())
}

/// `POST jobs/{name}/start` and `/stop`: schedule the job (`NORMAL`) or stop it (`STOPPED`).
/// An import over a scheduled job fails, as DataArts requires same-name jobs to be stopped.
fn set_schedule(call: &Call<'_>, status: &str) -> Result<Reply, ApiError> {
    let name = job_name(call);
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job = state
            .projects
            .entry(call.project_id.clone())
            .or_default()
            .dlf_jobs
            .get_mut(&name)
            .ok_or_else(|| missing_job(&name))?;
        // Scheduling is not an edit of the job: `lastUpdateTime` stays (a definition change
        // moves it, and clients read the definition again only then).
        job.schedule_status = status.to_string();
        Ok(())
    })?;
    Ok(Reply::no_content())
}
