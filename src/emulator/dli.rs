//! DLI Flink job handlers under `/v1.0/{project_id}/streaming/...` (and the v3 tag API), with
//! the field names and types of the official SDK models and the service's quirks: `is_success`
//! as a string, batch calls answering arrays, a missing job as HTTP 400 `DLI.16001`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::DEFAULT_SAVEPOINT_BUCKET;
use super::obs::{ObjectError, ObjectPath};
use super::server::{ApiError, Call, Operation, Reply, ReplyBody, Service};
use super::state::{EmulatorState, FlinkJobRecord, ProjectState, RunRecord};
use crate::bundle::{self, DliJobDocument, DliTag};
use crate::model::{FlinkJobConfig, JobKind};

/// Longest job name the service accepts.
pub const MAX_JOB_NAME_CHARS: usize = 57;
/// Largest page of the list call.
pub const MAX_PAGE_SIZE: i64 = 100;

pub(crate) fn handle(call: &Call<'_>, operation: Operation) -> Result<Reply, ApiError> {
    match operation {
        Operation::ListFlinkJobs => list_jobs(call),
        Operation::ShowFlinkJob => show_job(call),
        Operation::CreateFlinkSqlJob => create_job(call, JobKind::FlinkSql),
        Operation::CreateFlinkJarJob => create_job(call, JobKind::FlinkJar),
        Operation::UpdateFlinkSqlJob => update_job(call, JobKind::FlinkSql),
        Operation::UpdateFlinkJarJob => update_job(call, JobKind::FlinkJar),
        Operation::BatchRunFlinkJobs => run_jobs(call),
        Operation::BatchStopFlinkJobs => stop_jobs(call),
        Operation::DeleteFlinkJob => delete_job(call),
        Operation::BatchDeleteFlinkJobs => delete_jobs(call),
        Operation::ExportFlinkJobs => export_jobs(call),
        Operation::ImportFlinkJobs => import_jobs(call),
        Operation::ExecuteFlinkJobSavepoint => trigger_savepoint(call),
        Operation::ImportFlinkJobSavepoint => import_savepoint(call),
        Operation::RegisterBucket => register_buckets(call),
        Operation::ListFlinkJobTags
        | Operation::CreateFlinkJobTags
        | Operation::DeleteFlinkJobTags => tags(call, operation),
        _ => Err(ApiError::internal(
            Service::Dli,
            "operation routed to the wrong service",
        )),
    }
}

fn success(message: &str) -> Value {
    json!({"is_success": "true", "message": message})
}

fn failure(message: String) -> Value {
    json!({"is_success": "false", "message": message})
}

/// The job id in the path segment at `index`.
fn path_job_id(call: &Call<'_>, index: usize) -> Result<i64, ApiError> {
    let text = call
        .segments
        .get(index)
        .map(String::as_str)
        .unwrap_or_default();
    text.parse::<i64>()
        .map_err(|_| ApiError::dli_parameter(format!("job_id {text:?} is not a number")))
}

fn project<'a>(state: &'a mut EmulatorState, call: &Call<'_>) -> &'a mut ProjectState {
    state.projects.entry(call.project_id.clone()).or_default()
}

fn check_job_name(name: &str) -> Result<(), ApiError> {
    let length = name.chars().count();
    if length == 0 || length > MAX_JOB_NAME_CHARS {
        return Err(ApiError::dli_parameter(format!(
            "name must have 1 to {MAX_JOB_NAME_CHARS} characters; {name:?} has {length}"
        )));
    }
    bundle::check_entry_name(name)
        .map_err(|error| ApiError::dli_parameter(format!("name is not valid: {error}")))
}

fn config_error(error: bundle::BundleError) -> ApiError {
    ApiError::dli_parameter(error.to_string())
}

/// The `job_config` object of a job detail (`FlinkJobConfig` in the SDK).
fn job_config_json(job: &FlinkJobRecord) -> Value {
    let config = &job.config;
    // The service's default: (parallel_number * tm_cus) / (cu_number - manager_cu_number),
    // computed wide so that extreme inputs cannot overflow.
    let tm_slot_num = config.tm_slot_num.unwrap_or_else(|| {
        let workers = (i64::from(config.cu_number) - i64::from(config.manager_cu_number)).max(1);
        let slots = (i64::from(config.parallel_number) * i64::from(config.tm_cus)) / workers;
        i32::try_from(slots.max(1)).unwrap_or(i32::MAX)
    });
    let runtime_config: Vec<Value> = config
        .runtime_config
        .iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    let mut object = json!({
        "checkpoint_enabled": config.checkpoint_enabled,
        "checkpoint_mode": config.checkpoint_mode.api_name(),
        "checkpoint_interval": config.checkpoint_interval,
        "log_enabled": config.log_enabled,
        "manager_cu_number": config.manager_cu_number,
        "cu_number": config.cu_number,
        "parallel_number": config.parallel_number,
        "restart_when_exception": config.restart_when_exception,
        "idle_state_retention": config.idle_state_retention,
        "dirty_data_strategy": config.dirty_data_strategy,
        "dependency_jars": config.dependency_jars,
        "dependency_files": config.dependency_files,
        "resume_checkpoint": config.resume_checkpoint,
        "resume_max_num": config.resume_max_num,
        "runtime_config": Value::Array(runtime_config).to_string(),
        "tm_cus": config.tm_cus,
        "tm_slot_num": tm_slot_num,
        "flink_version": config.flink_version.clone().unwrap_or_else(|| "1.15".to_string()),
        "real_cu_number": config.cu_number,
        "graph_editor_enabled": false,
        "edge_group_ids": [],
        "root_id": -1,
    });
    let optional = [
        ("obs_bucket", &config.obs_bucket),
        ("smn_topic", &config.smn_topic),
        ("udf_jar_url", &config.udf_jar_url),
        ("entrypoint", &config.entrypoint),
        ("execution_agency_urn", &config.execution_agency_urn),
        ("checkpoint_path", &config.checkpoint_path),
        ("image", &config.image),
        ("feature", &config.feature),
    ];
    if let Value::Object(map) = &mut object {
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_string(), Value::String(value.clone()));
            }
        }
    }
    object
}

/// A job as list and detail answer it (`FlinkJob` in the SDK).
fn job_json(job: &FlinkJobRecord, project_id: &str, with_config: bool, now_ms: i64) -> Value {
    let config = &job.config;
    let duration = match (job.status.as_str(), job.start_time) {
        ("job_running", Some(start)) => (now_ms - start).max(0),
        _ => 0,
    };
    let mut object = json!({
        "job_id": job.job_id,
        "name": job.name,
        "desc": config.desc,
        "user_name": "emulator",
        "job_type": config.job_type,
        "status": job.status,
        "status_desc": job.status_desc,
        "create_time": job.create_time,
        "start_time": job.start_time.unwrap_or(0),
        "duration": duration,
        "root_id": -1,
        "user_id": "emulator",
        "project_id": project_id,
        "run_mode": config.run_mode,
        "update_time": job.update_time,
        "graph_editor_enabled": false,
        "has_savepoint": job.savepoint_path.is_some(),
        "edge_group_ids": [],
        "restart_times": 0,
    });
    if let Value::Object(map) = &mut object {
        let optional = [
            ("sql_body", &config.sql_body),
            ("main_class", &config.main_class),
            ("entrypoint_args", &config.entrypoint_args),
            ("queue_name", &config.queue_name),
            ("savepoint_path", &job.savepoint_path),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_string(), Value::String(value.clone()));
            }
        }
        if with_config {
            map.insert("job_config".into(), job_config_json(job));
        }
    }
    object
}

fn query_number(call: &Call<'_>, name: &str, default: i64) -> Result<i64, ApiError> {
    match call.query_value(name) {
        None | Some("") => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::dli_parameter(format!("{name} {text:?} is not a number"))),
    }
}

fn list_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let offset = query_number(call, "offset", 0)?;
    let limit = query_number(call, "limit", 10)?;
    if offset < 0 {
        return Err(ApiError::dli_parameter("offset must be 0 or more"));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::dli_parameter(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let show_detail = match call.query_value("show_detail") {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::dli_parameter(format!(
                "show_detail {other:?} is not true or false"
            )));
        }
    };
    let ascending = match call.query_value("order") {
        None | Some("") | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::dli_parameter(format!(
                "order {other:?} is not asc or desc"
            )));
        }
    };
    let name = call.query_value("name").unwrap_or_default();
    let status = call.query_value("status").unwrap_or_default();
    let job_type = call.query_value("job_type").unwrap_or_default();
    let queue_name = call.query_value("queue_name").unwrap_or_default();
    let mut wanted_tags = Vec::new();
    for pair in call
        .query_value("tags")
        .unwrap_or_default()
        .split(',')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            ApiError::dli_parameter(format!("tags filter {pair:?} is not key=value"))
        })?;
        wanted_tags.push((key.to_string(), value.to_string()));
    }
    let body = call.shared.read(&call.project_id, call.now_ms, |project| {
        let mut matching: Vec<&FlinkJobRecord> = project
            .flink_jobs
            .values()
            .filter(|job| name.is_empty() || job.name.contains(name))
            .filter(|job| status.is_empty() || job.status == status)
            .filter(|job| job_type.is_empty() || job.config.job_type == job_type)
            .filter(|job| {
                queue_name.is_empty() || job.config.queue_name.as_deref() == Some(queue_name)
            })
            .filter(|job| {
                wanted_tags
                    .iter()
                    .all(|(key, value)| job.config.tags.get(key) == Some(value))
            })
            .collect();
        if !ascending {
            matching.reverse();
        }
        let total = matching.len();
        let jobs: Vec<Value> = matching
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|job| job_json(job, &call.project_id, show_detail, call.now_ms))
            .collect();
        json!({"is_success": "true", "message": "", "job_list": {"total_count": total, "jobs": jobs}})
    });
    Ok(Reply::json(body))
}

fn show_job(call: &Call<'_>) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    let detail = call.shared.read(&call.project_id, call.now_ms, |project| {
        project
            .flink_jobs
            .get(&job_id)
            .map(|job| job_json(job, &call.project_id, true, call.now_ms))
    });
    let detail = detail.ok_or_else(|| ApiError::dli_missing_job(job_id))?;
    Ok(Reply::json(json!({
        "is_success": "true",
        "message": "Querying of the job details succeeds.",
        "job_detail": detail
    })))
}

fn check_kind(config: &FlinkJobConfig, kind: JobKind) -> Result<(), ApiError> {
    if config.kind() != kind {
        let expected = match kind {
            JobKind::FlinkJar => "flink_jar_job (use sql-jobs for SQL jobs)",
            _ => "a Flink SQL job type (use flink-jobs for Jar jobs)",
        };
        return Err(ApiError::dli_parameter(format!(
            "job_type {:?} does not fit this endpoint; expected {expected}",
            config.job_type
        )));
    }
    Ok(())
}

fn duplicate_name(name: &str) -> ApiError {
    ApiError::bad_request("DLI.0006", format!("The job name already exists: {name}"))
}

fn create_job(call: &Call<'_>, kind: JobKind) -> Result<Reply, ApiError> {
    let mut document: DliJobDocument = call.json_body(Service::Dli)?;
    check_job_name(&document.name)?;
    if kind == JobKind::FlinkJar {
        document.job_type = Some(crate::model::defaults::JAR_JOB_TYPE.to_string());
    }
    let config = document.to_model().map_err(config_error)?;
    check_kind(&config, kind)?;
    let name = document.name.clone();
    let job_id = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job_id = state.next_job_id;
        state.next_job_id += 1;
        let project = project(state, call);
        if project.flink_jobs.values().any(|job| job.name == name) {
            return Err(duplicate_name(&name));
        }
        project.flink_jobs.insert(
            job_id,
            new_record(job_id, name.clone(), config, call.now_ms),
        );
        Ok(job_id)
    })?;
    tracing::info!(project = %call.project_id, job = %document.name, job_id, "The emulator created a Flink job.");
    Ok(Reply::json(json!({
        "is_success": "true",
        "message": "A DLI job is created successfully.",
        "job": {"job_id": job_id, "status_name": "job_init", "status_desc": ""}
    })))
}

fn new_record(job_id: i64, name: String, config: FlinkJobConfig, now_ms: i64) -> FlinkJobRecord {
    let mut record = FlinkJobRecord {
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
    };
    record.set_status(now_ms, "job_init", "");
    record
}

fn update_job(call: &Call<'_>, kind: JobKind) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    // Parsed on its own first so that type errors name the request's own fields.
    let _: DliJobDocument = call.json_body(Service::Dli)?;
    let changes: Value = call.json_body(Service::Dli)?;
    let Value::Object(changes) = changes else {
        return Err(ApiError::dli_parameter(
            "The request body must be a JSON object.",
        ));
    };
    let update_time = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let project = project(state, call);
        let job = project
            .flink_jobs
            .get(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        check_kind(&job.config, kind)?;
        let mut merged = serde_json::to_value(DliJobDocument::from_model(&job.name, &job.config))
            .map_err(|error| ApiError::internal(Service::Dli, &error.to_string()))?;
        if let Value::Object(merged) = &mut merged {
            for (key, value) in &changes {
                if !value.is_null() {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        let document: DliJobDocument = serde_json::from_value(merged).map_err(|error| {
            ApiError::dli_parameter(format!("The request body is not valid: {error}"))
        })?;
        check_job_name(&document.name)?;
        let config = document.to_model().map_err(config_error)?;
        check_kind(&config, kind)?;
        if project
            .flink_jobs
            .values()
            .any(|other| other.job_id != job_id && other.name == document.name)
        {
            return Err(duplicate_name(&document.name));
        }
        let job = project
            .flink_jobs
            .get_mut(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        job.name = document.name;
        job.config = config;
        job.update_time = call.now_ms.max(job.update_time + 1);
        Ok(job.update_time)
    })?;
    Ok(Reply::json(json!({
        "is_success": "true",
        "message": "The job is updated successfully.",
        "job": {"update_time": update_time}
    })))
}

#[derive(Deserialize)]
struct RunBody {
    job_ids: Vec<i64>,
    #[serde(default)]
    resume_savepoint: bool,
}

#[derive(Deserialize)]
struct StopBody {
    job_ids: Vec<i64>,
    #[serde(default)]
    trigger_savepoint: bool,
}

#[derive(Deserialize)]
struct DeleteBody {
    job_ids: Vec<i64>,
}

fn check_job_ids(job_ids: &[i64]) -> Result<(), ApiError> {
    if job_ids.is_empty() {
        return Err(ApiError::dli_parameter(
            "job_ids must name at least one job",
        ));
    }
    if job_ids.len() > 1000 {
        return Err(ApiError::dli_parameter(
            "job_ids may name at most 1000 jobs",
        ));
    }
    Ok(())
}

/// Statuses from which a job can be started.
fn can_start(status: &str) -> bool {
    matches!(
        status,
        "job_init"
            | "job_cancel_success"
            | "job_submit_fail"
            | "job_running_exception"
            | "job_cancel_fail"
            | "job_finish"
            | "job_idle"
            | "job_arrearage_stopped"
    )
}

fn run_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: RunBody = call.json_body(Service::Dli)?;
    check_job_ids(&body.job_ids)?;
    let delays = call.shared.config.delays;
    let results = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let project = project(state, call);
        let mut results = Vec::new();
        for job_id in &body.job_ids {
            let Some(job) = project.flink_jobs.get_mut(job_id) else {
                results.push(failure(format!("The job does not exist: job_id={job_id}")));
                continue;
            };
            if !can_start(&job.status) {
                results.push(failure(format!(
                    "The job {job_id} cannot be started in status {}",
                    job.status
                )));
                continue;
            }
            let restored_from = if body.resume_savepoint {
                job.savepoint_path.clone()
            } else {
                None
            };
            let run_number = job
                .runs
                .last()
                .map_or(1, |run| run.run_number.saturating_add(1));
            job.push_run(RunRecord {
                run_number,
                started_at: call.now_ms,
                resume_savepoint: body.resume_savepoint,
                restored_from,
                stopped_at: None,
                stop_savepoint: None,
            });
            job.set_status(call.now_ms, "job_submitting", "");
            let needs_queue = job.config.run_mode == "exclusive_cluster";
            if needs_queue && job.config.queue_name.is_none() {
                job.schedule(
                    call.now_ms,
                    &[(
                        delays.submit_ms,
                        "job_submit_fail",
                        "DLI.13024: No job-running queue selected. Set queue_name for exclusive_cluster jobs.",
                    )],
                );
            } else {
                job.schedule(call.now_ms, &[(delays.submit_ms, "job_running", "")]);
            }
            results.push(success(
                "The request for submitting DLI jobs is delivered successfully.",
            ));
        }
        Ok(results)
    })?;
    Ok(Reply::json(Value::Array(results)))
}

/// Writes a savepoint `_metadata` for `job` and returns its directory (`obs://bucket/dir/`).
fn write_savepoint(
    call: &Call<'_>,
    job: &FlinkJobRecord,
    requested: Option<&str>,
) -> Result<String, String> {
    let timestamp = chrono::DateTime::from_timestamp_millis(call.now_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d_%H-%M-%S")
        .to_string();
    let directory = match requested.filter(|path| !path.trim().is_empty()) {
        Some(requested) => ObjectPath::parse(requested)
            .map_err(|error| error.to_string())?
            .join(""),
        None => {
            let bucket = job
                .config
                .obs_bucket
                .clone()
                .unwrap_or_else(|| DEFAULT_SAVEPOINT_BUCKET.to_string());
            ObjectPath {
                bucket,
                key: format!("jobs/savepoint/{}/{timestamp}/", job.job_id),
            }
        }
    };
    let metadata = json!({
        "format": "dli-gitops-emulator-savepoint",
        "job_id": job.job_id,
        "job_name": job.name,
        "run_number": job.runs.last().map_or(0, |run| run.run_number),
        "taken_at": call.now_ms,
    });
    call.shared
        .objects
        .write(
            &directory.join("_metadata"),
            metadata.to_string().as_bytes(),
        )
        .map_err(|error| error.to_string())?;
    Ok(directory.obs_url())
}

fn stop_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: StopBody = call.json_body(Service::Dli)?;
    check_job_ids(&body.job_ids)?;
    let delays = call.shared.config.delays;
    let results = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let project = project(state, call);
        let mut results = Vec::new();
        for job_id in &body.job_ids {
            let Some(job) = project.flink_jobs.get_mut(job_id) else {
                results.push(failure(format!("The job does not exist: job_id={job_id}")));
                continue;
            };
            if !matches!(job.status.as_str(), "job_running" | "job_submitting") {
                results.push(failure(format!(
                    "Only running or submitting jobs can be stopped; job {job_id} is {}",
                    job.status
                )));
                continue;
            }
            let mut stop_savepoint = None;
            if body.trigger_savepoint && job.status == "job_running" {
                match write_savepoint(call, job, None) {
                    Ok(path) => stop_savepoint = Some(path),
                    Err(reason) => {
                        results.push(failure(format!(
                            "The savepoint of job {job_id} could not be written: {reason}"
                        )));
                        continue;
                    }
                }
            }
            if let Some(run) = job.runs.last_mut() {
                run.stopped_at = Some(call.now_ms);
                run.stop_savepoint = stop_savepoint.clone();
            }
            if let Some(path) = stop_savepoint {
                job.savepoint_path = Some(path);
                job.set_status(call.now_ms, "job_savepointing", "");
                job.schedule(
                    call.now_ms,
                    &[
                        (delays.savepoint_ms, "job_canceling", ""),
                        (delays.cancel_ms, "job_cancel_success", ""),
                    ],
                );
            } else {
                job.set_status(call.now_ms, "job_canceling", "");
                job.schedule(call.now_ms, &[(delays.cancel_ms, "job_cancel_success", "")]);
            }
            results.push(success(
                "The request for stopping DLI jobs is delivered successfully.",
            ));
        }
        Ok(results)
    })?;
    Ok(Reply::json(Value::Array(results)))
}

fn delete_job(call: &Call<'_>) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        project(state, call)
            .flink_jobs
            .remove(&job_id)
            .map(|_| ())
            .ok_or_else(|| ApiError::dli_missing_job(job_id))
    })?;
    Ok(Reply::json(success("The job is deleted successfully.")))
}

fn delete_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: DeleteBody = call.json_body(Service::Dli)?;
    check_job_ids(&body.job_ids)?;
    let results = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let project = project(state, call);
        Ok(body
            .job_ids
            .iter()
            .map(|job_id| match project.flink_jobs.remove(job_id) {
                Some(_) => success("The job is deleted successfully."),
                None => failure(format!("The job does not exist: job_id={job_id}")),
            })
            .collect::<Vec<_>>())
    })?;
    Ok(Reply::json(Value::Array(results)))
}

#[derive(Deserialize)]
struct SavepointBody {
    action: String,
    #[serde(default)]
    savepoint_path: Option<String>,
}

fn trigger_savepoint(call: &Call<'_>) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    let body: SavepointBody = call.json_body(Service::Dli)?;
    if body.action != "TRIGGER" {
        return Err(ApiError::dli_parameter(format!(
            "action {:?} is not supported; the only action is TRIGGER",
            body.action
        )));
    }
    let delays = call.shared.config.delays;
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job = project(state, call)
            .flink_jobs
            .get_mut(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        if job.status != "job_running" {
            return Err(ApiError::dli_parameter(format!(
                "A savepoint can only be triggered for a running job; job {job_id} is {}",
                job.status
            )));
        }
        let path =
            write_savepoint(call, job, body.savepoint_path.as_deref()).map_err(|reason| {
                ApiError::dli_parameter(format!("The savepoint could not be written: {reason}"))
            })?;
        job.savepoint_path = Some(path);
        job.set_status(call.now_ms, "job_savepointing", "");
        job.schedule(call.now_ms, &[(delays.savepoint_ms, "job_running", "")]);
        Ok(())
    })?;
    Ok(Reply::json(success(
        "The savepoint is triggered successfully.",
    )))
}

#[derive(Deserialize)]
struct ImportSavepointBody {
    #[serde(default)]
    job_id: Option<Value>,
    savepoint_path: String,
}

fn import_savepoint(call: &Call<'_>) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    let body: ImportSavepointBody = call.json_body(Service::Dli)?;
    // The SDK sends a number, Terraform a string; both must name the job in the path.
    let body_job_id = match &body.job_id {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => number.as_i64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    if body.job_id.as_ref().is_some_and(|value| !value.is_null()) && body_job_id != Some(job_id) {
        return Err(ApiError::dli_parameter(format!(
            "job_id in the body ({}) does not match the job in the path ({job_id})",
            body.job_id
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default()
        )));
    }
    let directory = ObjectPath::parse(&body.savepoint_path)
        .map_err(|error| ApiError::dli_parameter(error.to_string()))?
        .join("");
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job = project(state, call)
            .flink_jobs
            .get_mut(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        if job.is_active() {
            return Err(ApiError::dli_parameter(format!(
                "Savepoints can only be imported into non-running jobs; job {job_id} is {}",
                job.status
            )));
        }
        if !call
            .shared
            .objects
            .object_exists(&directory.join("_metadata"))
        {
            return Err(ApiError::dli_parameter(format!(
                "No savepoint found: {} holds no _metadata file",
                directory.obs_url()
            )));
        }
        job.savepoint_path = Some(directory.obs_url());
        job.update_time = call.now_ms.max(job.update_time + 1);
        Ok(())
    })?;
    Ok(Reply::json(success("The job is successfully updated.")))
}

#[derive(Deserialize)]
struct ExportBody {
    obs_dir: String,
    is_selected: bool,
    #[serde(default)]
    job_selected: Option<Vec<i64>>,
}

fn object_error(error: ObjectError) -> ApiError {
    match error {
        ObjectError::NoSuchKey { .. } => ApiError::bad_request("DLI.0002", error.to_string()),
        ObjectError::Io { .. } => ApiError::internal(Service::Dli, &error.to_string()),
        _ => ApiError::dli_parameter(error.to_string()),
    }
}

fn export_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: ExportBody = call.json_body(Service::Dli)?;
    let directory = ObjectPath::parse(&body.obs_dir)
        .map_err(|error| ApiError::dli_parameter(error.to_string()))?;
    if !call.shared.objects.bucket_exists(&directory.bucket) {
        return Err(ApiError::dli_parameter(format!(
            "OBS bucket {} does not exist",
            directory.bucket
        )));
    }
    let selected = match (body.is_selected, &body.job_selected) {
        (true, Some(ids)) if !ids.is_empty() => Some(ids.clone()),
        (true, _) => {
            return Err(ApiError::dli_parameter(
                "job_selected is required when is_selected is true",
            ));
        }
        (false, _) => None,
    };
    let documents = call.shared.read(&call.project_id, call.now_ms, |project| {
        let jobs: Vec<&FlinkJobRecord> = match &selected {
            Some(ids) => {
                let mut jobs = Vec::new();
                for job_id in ids {
                    jobs.push(
                        project
                            .flink_jobs
                            .get(job_id)
                            .ok_or_else(|| ApiError::dli_missing_job(*job_id))?,
                    );
                }
                jobs
            }
            None => project.flink_jobs.values().collect(),
        };
        Ok::<_, ApiError>(
            jobs.into_iter()
                .map(|job| {
                    let mut document = DliJobDocument::from_model(&job.name, &job.config);
                    document.job_id = Some(job.job_id);
                    document
                })
                .collect::<Vec<_>>(),
        )
    })?;
    let mut zip_files = Vec::new();
    for document in documents {
        let bytes = bundle::write_dli_zip(std::slice::from_ref(&document)).map_err(config_error)?;
        let path = directory.join(&format!("{}_{}.zip", document.name, call.now_ms));
        call.shared
            .objects
            .write(&path, &bytes)
            .map_err(object_error)?;
        zip_files.push(path.plain());
    }
    Ok(Reply::json(json!({
        "is_success": "true",
        "message": "The job is exported successfully.",
        "zip_file": zip_files
    })))
}

#[derive(Deserialize)]
struct ImportBody {
    zip_file: String,
    #[serde(default)]
    is_cover: bool,
}

/// Reads every job document named by an import's `zip_file` (one zip, or a folder of zips).
fn read_import_documents(call: &Call<'_>, zip_file: &str) -> Result<Vec<DliJobDocument>, ApiError> {
    let objects = &call.shared.objects;
    let limits = &call.shared.config.limits;
    let path =
        ObjectPath::parse(zip_file).map_err(|error| ApiError::dli_parameter(error.to_string()))?;
    if !objects.bucket_exists(&path.bucket) {
        return Err(ApiError::dli_parameter(format!(
            "OBS bucket {} does not exist",
            path.bucket
        )));
    }
    let zips = if objects.object_exists(&path) {
        vec![path]
    } else if objects.is_directory(&path) {
        let children = objects.list_directory(&path).map_err(object_error)?;
        if children.is_empty() {
            return Err(ApiError::dli_parameter(format!(
                "The folder {} is empty",
                path.plain()
            )));
        }
        for child in &children {
            if !child.key.to_ascii_lowercase().ends_with(".zip") || !objects.object_exists(child) {
                return Err(ApiError::dli_parameter(format!(
                    "The folder {} can contain only .zip files; found {}",
                    path.plain(),
                    child.plain()
                )));
            }
        }
        children
    } else {
        return Err(ApiError::bad_request(
            "DLI.0002",
            format!("The zip file {} does not exist", path.plain()),
        ));
    };
    let mut documents: Vec<DliJobDocument> = Vec::new();
    for zip in zips {
        let bytes = objects
            .read(&zip, limits.max_zip_bytes)
            .map_err(object_error)?;
        let read = bundle::read_dli_zip(&bytes, &limits.zip).map_err(|error| {
            ApiError::dli_parameter(format!(
                "The zip file {} cannot be imported: {error}",
                zip.plain()
            ))
        })?;
        for document in read {
            if documents.iter().any(|known| known.name == document.name) {
                return Err(ApiError::dli_parameter(format!(
                    "The job name already exists: {} appears more than once in {zip_file}",
                    document.name
                )));
            }
            documents.push(document);
        }
    }
    Ok(documents)
}

fn import_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: ImportBody = call.json_body(Service::Dli)?;
    let documents = read_import_documents(call, &body.zip_file)?;
    let mut configs = Vec::new();
    for document in &documents {
        check_job_name(&document.name)?;
        configs.push(document.to_model().map_err(config_error)?);
    }
    let mapping = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let mut mapping = Vec::new();
        for (document, config) in documents.iter().zip(configs) {
            let old_job_id = document.job_id.unwrap_or(0);
            let existing = project(state, call)
                .flink_jobs
                .values()
                .find(|job| job.name == document.name)
                .map(|job| (job.job_id, job.is_active(), job.status.clone()));
            match existing {
                Some((job_id, active, status)) if body.is_cover => {
                    if active {
                        return Err(ApiError::dli_parameter(format!(
                            "The job {} ({job_id}) is {status}; stop it before importing over it",
                            document.name
                        )));
                    }
                    let job = project(state, call)
                        .flink_jobs
                        .get_mut(&job_id)
                        .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
                    job.config = config;
                    job.pending.clear();
                    job.savepoint_path = None;
                    job.start_time = None;
                    job.set_status(call.now_ms, "job_init", "");
                    job.update_time = call.now_ms.max(job.update_time + 1);
                    mapping.push(json!({"old_job_id": old_job_id, "new_job_id": job_id,
                                        "remark": "The job is overwritten and is in draft state."}));
                }
                Some(_) => mapping.push(json!({"old_job_id": old_job_id, "new_job_id": -1,
                                               "remark": "The job name already exists."})),
                None => {
                    let job_id = state.next_job_id;
                    state.next_job_id += 1;
                    project(state, call).flink_jobs.insert(
                        job_id,
                        new_record(job_id, document.name.clone(), config, call.now_ms),
                    );
                    mapping.push(json!({"old_job_id": old_job_id, "new_job_id": job_id,
                                        "remark": "Job successfully created"}));
                }
            }
        }
        Ok(mapping)
    })?;
    Ok(Reply::json(json!({
        "is_success": "true",
        "message": "The job is imported successfully.",
        "job_mapping": mapping
    })))
}

#[derive(Deserialize)]
struct RegisterBucketBody {
    obs_buckets: Vec<String>,
}

fn register_buckets(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: RegisterBucketBody = call.json_body(Service::Dli)?;
    for bucket in &body.obs_buckets {
        if !call.shared.objects.bucket_exists(bucket) {
            return Err(ApiError::dli_parameter(format!(
                "OBS bucket {bucket} does not exist"
            )));
        }
    }
    Ok(Reply::json(
        json!({"is_success": true, "message": "The OBS buckets are authorized."}),
    ))
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<TagBody>,
}

#[derive(Deserialize)]
struct TagBody {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

/// The v3 tag API Terraform uses for Flink jobs (`resource_type = dli_flink_job`).
fn tags(call: &Call<'_>, operation: Operation) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 3)?;
    if operation == Operation::ListFlinkJobTags {
        let tags = call.shared.read(&call.project_id, call.now_ms, |project| {
            project
                .flink_jobs
                .get(&job_id)
                .map(|job| job.config.tags.clone())
        });
        let tags = tags.ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        let tags: Vec<DliTag> = tags
            .into_iter()
            .map(|(key, value)| DliTag { key, value })
            .collect();
        return Ok(Reply::json(json!({"tags": tags})));
    }
    let body: TagsBody = call.json_body(Service::Dli)?;
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job = project(state, call)
            .flink_jobs
            .get_mut(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        let mut tags: BTreeMap<String, String> = job.config.tags.clone();
        for tag in &body.tags {
            if operation == Operation::CreateFlinkJobTags {
                let value = tag.value.clone().unwrap_or_default();
                if tag.key.is_empty() || tag.key.len() > 128 || value.len() > 255 {
                    return Err(ApiError::dli_parameter(format!(
                        "tag {:?} needs a key of 1-128 and a value of 0-255 characters",
                        tag.key
                    )));
                }
                tags.insert(tag.key.clone(), value);
            } else {
                tags.remove(&tag.key);
            }
        }
        job.config.tags = tags;
        job.update_time = call.now_ms.max(job.update_time + 1);
        Ok(())
    })?;
    Ok(Reply {
        status: http::StatusCode::NO_CONTENT,
        body: ReplyBody::Empty,
        headers: Vec::new(),
    })
}
