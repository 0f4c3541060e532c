//! DLI Flink job handlers under `/v1.0/{project_id}/streaming/...` (and the v3 tag API), with
//! the field names and types of the official SDK models and the service's quirks: `is_success`
//! as a string, batch calls answering arrays, a missing job as HTTP 400 `DLI.16001`.

pub(crate) mod export_format;
mod lifecycle;
mod tags;
mod transfer;

use serde::Deserialize;
use serde_json::{Value, json};

use super::server::{ApiError, Call, Operation, Reply, Service};
use super::state::{EmulatorState, FlinkJobRecord, ProjectState};
use crate::bundle::{self, DliJobDocument};
use crate::model::{FlinkJobConfig, JobKind};

/// Longest job name the service accepts.
pub const MAX_JOB_NAME_CHARS: usize = 57;

/// The queue a Jar or `shared_cluster` job without `queue_name` lands on. Chosen: the service
/// fills one in (Terraform marks `queue_name` Optional+Computed) but no source names it; DLI's
/// built-in queue is called `default`. An `exclusive_cluster` SQL job gets none and fails to
/// start with `DLI.13024` "No job-running queue selected" (Terraform PR #4426; binding a queue
/// is an exclusive-cluster setting, PR #4495).
pub const DEFAULT_QUEUE_NAME: &str = "default";
/// The Flink version a job without `flink_version` gets. Chosen: Terraform marks the field
/// Optional+Computed; the SDK examples use 1.15 and 1.17.
pub const DEFAULT_FLINK_VERSION: &str = "1.15";

/// The request body keys of each endpoint, from the SDK 3.1.219 models
/// (`create/update_flink_sql_job_request_body.py`, `create/update_flink_jar_job_request_body.py`).
/// A key outside them is refused: a client that sends a field the job type cannot carry has
/// a bug the real service may silently ignore.
const SQL_CREATE_KEYS: &[&str] = &[
    "name",
    "desc",
    "template_id",
    "queue_name",
    "sql_body",
    "run_mode",
    "cu_number",
    "parallel_number",
    "checkpoint_enabled",
    "checkpoint_mode",
    "checkpoint_interval",
    "obs_bucket",
    "log_enabled",
    "smn_topic",
    "restart_when_exception",
    "idle_state_retention",
    "job_type",
    "edge_group_ids",
    "dirty_data_strategy",
    "udf_jar_url",
    "manager_cu_number",
    "tm_cus",
    "tm_slot_num",
    "tags",
    "resume_checkpoint",
    "resume_max_num",
    "runtime_config",
    "flink_log_config",
    "flink_version",
    "execution_agency_urn",
    "resource_config_version",
    "resource_config",
];
const SQL_UPDATE_KEYS: &[&str] = &[
    "name",
    "desc",
    "queue_name",
    "sql_body",
    "run_mode",
    "cu_number",
    "parallel_number",
    "checkpoint_enabled",
    "checkpoint_mode",
    "checkpoint_interval",
    "obs_bucket",
    "log_enabled",
    "smn_topic",
    "restart_when_exception",
    "idle_state_retention",
    "edge_group_ids",
    "dirty_data_strategy",
    "udf_jar_url",
    "manager_cu_number",
    "tm_cus",
    "tm_slot_num",
    "resume_checkpoint",
    "resume_max_num",
    "runtime_config",
    "flink_log_config",
    "operator_config",
    "static_estimator_config",
    "flink_version",
    "execution_agency_urn",
    "resource_config_version",
    "resource_config",
];
const JAR_CREATE_KEYS: &[&str] = &[
    "name",
    "desc",
    "queue_name",
    "cu_number",
    "manager_cu_number",
    "parallel_number",
    "checkpoint_enabled",
    "checkpoint_mode",
    "checkpoint_interval",
    "log_enabled",
    "obs_bucket",
    "smn_topic",
    "main_class",
    "entrypoint_args",
    "restart_when_exception",
    "entrypoint",
    "dependency_jars",
    "dependency_files",
    "flink_version",
    "image",
    "tm_slot_num",
    "tm_cus",
    "feature",
    "resume_checkpoint",
    "resume_max_num",
    "checkpoint_path",
    "runtime_config",
    "flink_log_config",
    "execution_agency_urn",
    "tags",
    "resource_config",
    "resource_config_version",
];
const JAR_UPDATE_KEYS: &[&str] = &[
    "name",
    "desc",
    "queue_name",
    "cu_number",
    "manager_cu_number",
    "parallel_number",
    "checkpoint_enabled",
    "checkpoint_mode",
    "checkpoint_interval",
    "log_enabled",
    "obs_bucket",
    "smn_topic",
    "main_class",
    "entrypoint_args",
    "restart_when_exception",
    "entrypoint",
    "dependency_jars",
    "dependency_files",
    "tm_cus",
    "tm_slot_num",
    "feature",
    "flink_version",
    "execution_agency_urn",
    "image",
    "resume_checkpoint",
    "resume_max_num",
    "checkpoint_path",
    "runtime_config",
    "flink_log_config",
    "job_type",
    "resource_config",
    "resource_config_version",
];
/// What a running job accepts in an update: Terraform's `updateFlinkSqlJobInRunning` comment
/// ("updated in job_running: smn_topic, restart_when_exception, resume_checkpoint,
/// resume_max_num, checkpoint_path, obs_bucket"); `checkpoint_path` is a Jar body field.
const RUNNING_UPDATE_KEYS: &[&str] = &[
    "smn_topic",
    "restart_when_exception",
    "resume_checkpoint",
    "resume_max_num",
    "obs_bucket",
    "checkpoint_path",
];

/// Refuses body keys the endpoint's SDK model does not have.
fn check_body_keys(body: &Value, allowed: &[&str], endpoint: &str) -> Result<(), ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::dli_parameter(
            "The request body must be a JSON object.",
        ));
    };
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|key| !allowed.contains(key))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::dli_parameter(format!(
            "{endpoint} does not take {}",
            unknown.join(", ")
        )))
    }
}

/// Fills what the service fills when a request leaves a field out (the fields Terraform marks
/// Optional+Computed): a queue (see [`DEFAULT_QUEUE_NAME`]), the Flink version, a Jar job's image feature (`basic`, DLI's
/// own image), the resource model version (`v1`, the SDK's documented default) and, for v2, the
/// documented `resource_config` defaults (`max_slot` 1, `parallel_number` 1).
fn fill_service_defaults(config: &mut FlinkJobConfig) {
    if config.queue_name.is_none()
        && (config.kind() == JobKind::FlinkJar || config.run_mode != "exclusive_cluster")
    {
        config.queue_name = Some(DEFAULT_QUEUE_NAME.to_string());
    }
    if config.flink_version.is_none() {
        config.flink_version = Some(DEFAULT_FLINK_VERSION.to_string());
    }
    if config.kind() == JobKind::FlinkJar && config.feature.is_none() {
        config.feature = Some("basic".to_string());
    }
    if config.resource_config_version.is_none() {
        config.resource_config_version = Some("v1".to_string());
    }
    if config.is_resource_v2() {
        let resources = config.resource_config.get_or_insert_with(Default::default);
        resources.max_slot.get_or_insert(1);
        resources.parallel_number.get_or_insert(1);
    }
}
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
        Operation::BatchRunFlinkJobs => lifecycle::run_jobs(call),
        Operation::BatchStopFlinkJobs => lifecycle::stop_jobs(call),
        Operation::DeleteFlinkJob => delete_job(call),
        Operation::BatchDeleteFlinkJobs => delete_jobs(call),
        Operation::ExportFlinkJobs => transfer::export_jobs(call),
        Operation::ImportFlinkJobs => transfer::import_jobs(call),
        Operation::ExecuteFlinkJobSavepoint => lifecycle::trigger_savepoint(call),
        Operation::ImportFlinkJobSavepoint => lifecycle::import_savepoint(call),
        Operation::RegisterBucket => transfer::register_buckets(call),
        Operation::ListFlinkJobTags
        | Operation::CreateFlinkJobTags
        | Operation::DeleteFlinkJobTags => tags::tags(call, operation),
        Operation::ListResourcesByTags => tags::filter(call),
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
        "flink_version": config.flink_version.clone().unwrap_or_else(|| DEFAULT_FLINK_VERSION.to_string()),
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
        ("resource_config_version", &config.resource_config_version),
        ("operator_config", &config.operator_config),
        ("static_estimator_config", &config.static_estimator_config),
        ("flink_log_config", &config.flink_log_config),
    ];
    if let Value::Object(map) = &mut object {
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_string(), Value::String(value.clone()));
            }
        }
        if let Some(resources) = &config.resource_config {
            map.insert(
                "resource_config".into(),
                crate::cloud::dli_wire::resource_config_to_wire(resources),
            );
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

/// A running job takes only [`RUNNING_UPDATE_KEYS`]; anything else needs the job stopped.
/// The answer is a `DLI.0001`-style 400 (the code is chosen: no source records the exact code
/// the service gives). An unchanged `obs_bucket` is refused too (Terraform: "for running job,
/// when `obs_bucket` is not changed, no need to update, otherwise the interface will return an
/// error").
fn check_running_update(
    job: &FlinkJobRecord,
    changes: &serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    let refused: Vec<&str> = changes
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, _)| key.as_str())
        .filter(|key| {
            !RUNNING_UPDATE_KEYS.contains(key)
                || (*key == "checkpoint_path" && job.config.kind() != JobKind::FlinkJar)
        })
        .collect();
    if !refused.is_empty() {
        return Err(ApiError::dli_parameter(format!(
            "The job is {} and accepts changes only to {}; stop it before changing {}",
            job.status,
            RUNNING_UPDATE_KEYS.join(", "),
            refused.join(", ")
        )));
    }
    if let Some(bucket) = changes.get("obs_bucket").and_then(Value::as_str)
        && job.config.obs_bucket.as_deref() == Some(bucket)
    {
        return Err(ApiError::dli_parameter(format!(
            "The job is {}: obs_bucket {bucket:?} is unchanged and must not be sent",
            job.status
        )));
    }
    Ok(())
}

/// The `run_mode`/`job_type` pairs of the SQL create body's `job_type` description (SDK
/// 3.1.219): `exclusive_cluster` takes `flink_sql_job` or `flink_opensource_sql_job`,
/// `shared_cluster` only `flink_sql_job`; `edge_node` needs `flink_sql_edge_job` (the job type
/// list of `flink_job.py`).
fn check_run_mode_pair(config: &FlinkJobConfig) -> Result<(), ApiError> {
    if config.kind() != JobKind::FlinkSql {
        return Ok(());
    }
    let valid = match config.run_mode.as_str() {
        "exclusive_cluster" => {
            matches!(
                config.job_type.as_str(),
                "flink_sql_job" | "flink_opensource_sql_job"
            )
        }
        "shared_cluster" => config.job_type == "flink_sql_job",
        "edge_node" => config.job_type == "flink_sql_edge_job",
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::dli_parameter(format!(
            "job_type {} cannot run with run_mode {}",
            config.job_type, config.run_mode
        )))
    }
}

fn duplicate_name(name: &str) -> ApiError {
    ApiError::bad_request("DLI.0006", format!("The job name already exists: {name}"))
}

fn create_job(call: &Call<'_>, kind: JobKind) -> Result<Reply, ApiError> {
    let raw: Value = call.json_body(Service::Dli)?;
    match kind {
        JobKind::FlinkJar => check_body_keys(&raw, JAR_CREATE_KEYS, "Creating a Flink Jar job")?,
        _ => check_body_keys(&raw, SQL_CREATE_KEYS, "Creating a Flink SQL job")?,
    }
    let mut document: DliJobDocument = call.json_body(Service::Dli)?;
    check_job_name(&document.name)?;
    if kind == JobKind::FlinkJar {
        document.job_type = Some(crate::model::defaults::JAR_JOB_TYPE.to_string());
    }
    let mut config = document.to_model().map_err(config_error)?;
    check_kind(&config, kind)?;
    check_run_mode_pair(&config)?;
    fill_service_defaults(&mut config);
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
    let mut record = FlinkJobRecord::blank(job_id, name, config, now_ms);
    record.set_status(now_ms, "job_init", "");
    record
}

fn update_job(call: &Call<'_>, kind: JobKind) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    // Parsed on its own first so that type errors name the request's own fields.
    let _: DliJobDocument = call.json_body(Service::Dli)?;
    let changes: Value = call.json_body(Service::Dli)?;
    match kind {
        JobKind::FlinkJar => {
            check_body_keys(&changes, JAR_UPDATE_KEYS, "Updating a Flink Jar job")?
        }
        _ => check_body_keys(&changes, SQL_UPDATE_KEYS, "Updating a Flink SQL job")?,
    }
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
        if job.is_active() {
            check_running_update(job, &changes)?;
        }
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
        let mut config = document.to_model().map_err(config_error)?;
        check_kind(&config, kind)?;
        check_run_mode_pair(&config)?;
        fill_service_defaults(&mut config);
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
