//! DLI Flink wire formats ⇄ the canonical `model` types: job detail → `ObservedFlinkJob`,
//! `FlinkJobConfig` → create/update bodies. Pure functions, tested on recorded shapes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::wire::{
    epoch_millis, field, first_field, flexible_bool, flexible_i64, non_empty_string,
};
use crate::model::{
    CheckpointMode, Cpu, FlinkJobConfig, FlinkJobStatus, HOT_FIELDS, JobKind, ObservedFlinkJob,
    ResourceConfig, ResourceSpec, canonical_json_text, defaults,
};

/// Builds the canonical job from a `job_detail` object (or a list entry with `show_detail`).
/// `tags` overrides whatever tags the detail carries (the tag API's answer).
pub fn observed_from_detail(
    job: &Value,
    tags: Option<BTreeMap<String, String>>,
) -> Result<ObservedFlinkJob, String> {
    if !job.is_object() {
        return Err("job_detail is not an object".into());
    }
    let id = flexible_i64(first_field(job, &["job_id", "id"]))
        .ok_or("job_detail has no numeric job_id")?;
    let name = non_empty_string(field(job, "name")).ok_or("job_detail has no name")?;
    let status = non_empty_string(field(job, "status")).unwrap_or_else(|| "unknown".into());
    let update_time = epoch_millis(first_field(job, &["update_time", "create_time"])).unwrap_or(0);
    let config_value = field(job, "job_config");
    let config = config_from_wire(job, config_value, tags)?;
    Ok(ObservedFlinkJob {
        id,
        name,
        status: FlinkJobStatus::from(status),
        update_time,
        config,
        savepoint_path: non_empty_string(field(job, "savepoint_path")),
        status_desc: non_empty_string(field(job, "status_desc")),
    })
}

/// Reads a field from the job first, then from `job_config` (the service splits fields between
/// the two and has moved some over time).
fn either<'a>(job: &'a Value, config: &'a Value, name: &str) -> &'a Value {
    let top = field(job, name);
    if top.is_null() {
        field(config, name)
    } else {
        top
    }
}

fn int_or(value: &Value, default: i32, name: &str) -> Result<i32, String> {
    if value.is_null() || value.as_str() == Some("") {
        return Ok(default);
    }
    flexible_i64(value)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| format!("{name} is not a 32-bit integer: {value}"))
}

fn bool_or(value: &Value, default: bool, name: &str) -> Result<bool, String> {
    if value.is_null() || value.as_str() == Some("") {
        return Ok(default);
    }
    flexible_bool(value).ok_or_else(|| format!("{name} is not a boolean: {value}"))
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(non_empty_string).collect(),
        Value::String(text) if !text.trim().is_empty() => {
            // Some responses carry lists as a JSON string or comma-separated text.
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(items)) => items.iter().filter_map(non_empty_string).collect(),
                _ => text
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            }
        }
        _ => Vec::new(),
    }
}

/// `[{key, value}]` (or a JSON string of it, or an object) as a sorted map.
pub fn key_value_map(value: &Value, name: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    match value {
        Value::Null => {}
        Value::String(text) if text.trim().is_empty() => {}
        Value::String(text) => {
            let parsed: Value = serde_json::from_str(text)
                .map_err(|e| format!("{name} is not JSON ({e}): {text}"))?;
            return key_value_map(&parsed, name);
        }
        Value::Array(items) => {
            for item in items {
                let key = non_empty_string(field(item, "key"))
                    .ok_or_else(|| format!("{name} entry without key: {item}"))?;
                let value = match field(item, "value") {
                    Value::Null => String::new(),
                    other => non_empty_string(other).unwrap_or_default(),
                };
                map.insert(key, value);
            }
        }
        Value::Object(object) => {
            for (key, value) in object {
                map.insert(key.clone(), non_empty_string(value).unwrap_or_default());
            }
        }
        other => return Err(format!("{name} is neither a list nor a map: {other}")),
    }
    Ok(map)
}

fn config_from_wire(
    job: &Value,
    config: &Value,
    tags_override: Option<BTreeMap<String, String>>,
) -> Result<FlinkJobConfig, String> {
    let entrypoint = non_empty_string(either(job, config, "entrypoint"));
    let job_type = non_empty_string(field(job, "job_type")).unwrap_or_else(|| {
        if entrypoint.is_some() {
            defaults::JAR_JOB_TYPE.into()
        } else {
            defaults::SQL_JOB_TYPE.into()
        }
    });
    let kind = if job_type == defaults::JAR_JOB_TYPE {
        JobKind::FlinkJar
    } else {
        JobKind::FlinkSql
    };
    let base = FlinkJobConfig::defaults_for(kind);
    let checkpoint_mode_value = either(job, config, "checkpoint_mode");
    let checkpoint_mode =
        if checkpoint_mode_value.is_null() || checkpoint_mode_value.as_str() == Some("") {
            CheckpointMode::default()
        } else {
            CheckpointMode::from_api(checkpoint_mode_value).ok_or_else(|| {
                format!("checkpoint_mode is not a known mode: {checkpoint_mode_value}")
            })?
        };
    let tags = match tags_override {
        Some(tags) => tags,
        None => key_value_map(either(job, config, "tags"), "tags")?,
    };
    let mut config = FlinkJobConfig {
        desc: non_empty_string(field(job, "desc")).unwrap_or_default(),
        job_type,
        queue_name: non_empty_string(either(job, config, "queue_name")),
        sql_body: non_empty_string(field(job, "sql_body")),
        run_mode: non_empty_string(either(job, config, "run_mode")).unwrap_or(base.run_mode),
        cu_number: int_or(
            either(job, config, "cu_number"),
            base.cu_number,
            "cu_number",
        )?,
        manager_cu_number: int_or(
            either(job, config, "manager_cu_number"),
            base.manager_cu_number,
            "manager_cu_number",
        )?,
        parallel_number: int_or(
            either(job, config, "parallel_number"),
            base.parallel_number,
            "parallel_number",
        )?,
        tm_cus: int_or(either(job, config, "tm_cus"), base.tm_cus, "tm_cus")?,
        tm_slot_num: match either(job, config, "tm_slot_num") {
            Value::Null => None,
            value => Some(int_or(value, 0, "tm_slot_num")?),
        },
        checkpoint_enabled: bool_or(
            either(job, config, "checkpoint_enabled"),
            false,
            "checkpoint_enabled",
        )?,
        checkpoint_mode,
        checkpoint_interval: int_or(
            either(job, config, "checkpoint_interval"),
            base.checkpoint_interval,
            "checkpoint_interval",
        )?,
        checkpoint_path: non_empty_string(either(job, config, "checkpoint_path")),
        obs_bucket: non_empty_string(either(job, config, "obs_bucket")),
        log_enabled: bool_or(either(job, config, "log_enabled"), false, "log_enabled")?,
        smn_topic: non_empty_string(either(job, config, "smn_topic")),
        restart_when_exception: bool_or(
            either(job, config, "restart_when_exception"),
            false,
            "restart_when_exception",
        )?,
        idle_state_retention: int_or(
            either(job, config, "idle_state_retention"),
            base.idle_state_retention,
            "idle_state_retention",
        )?,
        resume_checkpoint: bool_or(
            either(job, config, "resume_checkpoint"),
            false,
            "resume_checkpoint",
        )?,
        resume_max_num: match either(job, config, "resume_max_num") {
            Value::Null => base.resume_max_num,
            value => flexible_i64(value)
                .ok_or_else(|| format!("resume_max_num is not an integer: {value}"))?,
        },
        dirty_data_strategy: non_empty_string(either(job, config, "dirty_data_strategy"))
            .unwrap_or(base.dirty_data_strategy),
        udf_jar_url: non_empty_string(either(job, config, "udf_jar_url")),
        flink_version: non_empty_string(either(job, config, "flink_version")),
        execution_agency_urn: non_empty_string(either(job, config, "execution_agency_urn")),
        runtime_config: key_value_map(either(job, config, "runtime_config"), "runtime_config")?,
        tags,
        entrypoint,
        main_class: non_empty_string(either(job, config, "main_class")),
        entrypoint_args: non_empty_string(either(job, config, "entrypoint_args")),
        dependency_jars: string_list(either(job, config, "dependency_jars")),
        dependency_files: string_list(either(job, config, "dependency_files")),
        image: non_empty_string(either(job, config, "image")),
        feature: non_empty_string(either(job, config, "feature")),
        resource_config_version: non_empty_string(either(job, config, "resource_config_version")),
        resource_config: resource_config_from_wire(either(job, config, "resource_config"))?,
        operator_config: json_text(either(job, config, "operator_config")),
        static_estimator_config: json_text(either(job, config, "static_estimator_config")),
        flink_log_config: json_text(either(job, config, "flink_log_config")),
    };
    // What the service reports for a field this job type cannot carry is not part of the job.
    config.clear_foreign_fields();
    Ok(config)
}

/// A JSON text field (a string, or an object some answers carry unencoded), canonical.
fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::Object(_) | Value::Array(_) => Some(canonical_json_text(&value.to_string())),
        other => non_empty_string(other).map(|text| canonical_json_text(&text)),
    }
}

/// `resource_config` (`resource_config.py`); an empty or missing object is `None`.
pub fn resource_config_from_wire(value: &Value) -> Result<Option<ResourceConfig>, String> {
    let value = match value {
        Value::String(text) if text.trim().is_empty() => return Ok(None),
        Value::String(text) => &serde_json::from_str::<Value>(text)
            .map_err(|e| format!("resource_config is not JSON ({e}): {text}"))?,
        other => other,
    };
    if value.is_null() {
        return Ok(None);
    }
    if !value.is_object() {
        return Err(format!("resource_config is not an object: {value}"));
    }
    let int = |name: &str| -> Result<Option<i32>, String> {
        match field(value, name) {
            Value::Null => Ok(None),
            Value::String(text) if text.is_empty() => Ok(None),
            other => flexible_i64(other)
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("resource_config.{name} is not a 32-bit integer: {other}")),
        }
    };
    let spec = |name: &str| -> Result<Option<ResourceSpec>, String> {
        let spec = field(value, name);
        if spec.is_null() {
            return Ok(None);
        }
        let cpu = match field(spec, "cpu") {
            Value::Null => None,
            Value::Number(number) => {
                Some(number.as_f64().and_then(Cpu::from_cores).ok_or_else(|| {
                    format!("resource_config.{name}.cpu is not a positive number: {number}")
                })?)
            }
            Value::String(text) if text.trim().is_empty() => None,
            Value::String(text) => Some(
                text.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(Cpu::from_cores)
                    .ok_or_else(|| {
                        format!("resource_config.{name}.cpu is not a positive number: {text:?}")
                    })?,
            ),
            other => {
                return Err(format!(
                    "resource_config.{name}.cpu is not a number: {other}"
                ));
            }
        };
        let memory = non_empty_string(field(spec, "memory"));
        Ok((cpu.is_some() || memory.is_some()).then_some(ResourceSpec { cpu, memory }))
    };
    let config = ResourceConfig {
        max_slot: int("max_slot")?,
        parallel_number: int("parallel_number")?,
        jobmanager_resource_spec: spec("jobmanager_resource_spec")?,
        taskmanager_resource_spec: spec("taskmanager_resource_spec")?,
    };
    Ok((config != ResourceConfig::default()).then_some(config))
}

/// `resource_config` as the create/update bodies carry it.
pub fn resource_config_to_wire(config: &ResourceConfig) -> Value {
    let mut body = Map::new();
    if let Some(max_slot) = config.max_slot {
        body.insert("max_slot".into(), json!(max_slot));
    }
    if let Some(parallel_number) = config.parallel_number {
        body.insert("parallel_number".into(), json!(parallel_number));
    }
    for (name, spec) in [
        ("jobmanager_resource_spec", &config.jobmanager_resource_spec),
        (
            "taskmanager_resource_spec",
            &config.taskmanager_resource_spec,
        ),
    ] {
        if let Some(spec) = spec {
            let mut object = Map::new();
            if let Some(cpu) = spec.cpu {
                object.insert("cpu".into(), json!(cpu.cores()));
            }
            if let Some(memory) = &spec.memory {
                object.insert("memory".into(), json!(memory));
            }
            body.insert(name.into(), Value::Object(object));
        }
    }
    Value::Object(body)
}

/// Which request a body is for: field sets differ between create and update, SQL and Jar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFor {
    Create,
    Update,
}

/// An unset text field as `""`, so that an update clears what a previous one set (the detail
/// reports unset text fields as `""`; chosen: no source says how the service clears a field,
/// and leaving the key out keeps the old value).
fn put_or_clear(body: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    body.insert(key.into(), json!(value.as_deref().unwrap_or("")));
}

fn put_opt(body: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        body.insert(key.into(), json!(value));
    }
}

/// `runtime_config` as the API wants it: a JSON string of `[{key, value}]`, sorted by key.
pub fn runtime_config_string(map: &BTreeMap<String, String>) -> String {
    let list: Vec<Value> = map
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    Value::Array(list).to_string()
}

fn tags_list(map: &BTreeMap<String, String>) -> Value {
    Value::Array(
        map.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

/// The body of `POST/PUT .../streaming/sql-jobs`. `operator_config` and
/// `static_estimator_config` exist only in the update body: create sends them in a second call
/// ([`sql_followup_update_body`]), as Terraform does.
pub fn sql_job_body(name: Option<&str>, config: &FlinkJobConfig, purpose: BodyFor) -> Value {
    let mut body = common_body(name, config, purpose);
    put_opt(&mut body, "sql_body", &config.sql_body);
    if purpose == BodyFor::Update {
        put_opt(&mut body, "operator_config", &config.operator_config);
        put_opt(
            &mut body,
            "static_estimator_config",
            &config.static_estimator_config,
        );
    }
    body.insert("run_mode".into(), json!(config.run_mode));
    body.insert(
        "idle_state_retention".into(),
        json!(config.idle_state_retention),
    );
    body.insert(
        "dirty_data_strategy".into(),
        json!(config.dirty_data_strategy),
    );
    put_opt(&mut body, "udf_jar_url", &config.udf_jar_url);
    if purpose == BodyFor::Create {
        body.insert("job_type".into(), json!(config.job_type));
    }
    Value::Object(body)
}

/// The update that follows a SQL create when the job sets fields only the update body has
/// (`operator_config`, `static_estimator_config`); `None` when there are none. Terraform's
/// `resourceFlinkSqlJobCreate` does the same (`updateJobConfig`).
pub fn sql_followup_update_body(config: &FlinkJobConfig) -> Option<Value> {
    if config.operator_config.is_none() && config.static_estimator_config.is_none() {
        return None;
    }
    let mut body = Map::new();
    put_opt(&mut body, "operator_config", &config.operator_config);
    put_opt(
        &mut body,
        "static_estimator_config",
        &config.static_estimator_config,
    );
    Some(Value::Object(body))
}

/// The body of an update to a running job (SQL or Jar): only the [`HOT_FIELDS`], as Terraform's
/// `updateFlinkSqlJobInRunning`/`updateFlinkJarJobInRunning` send them. `obs_bucket` goes only
/// when it is in `changed` (Terraform: "when `obs_bucket` is not changed, no need to update,
/// otherwise the interface will return an error").
pub fn running_update_body(config: &FlinkJobConfig, changed: &[String]) -> Value {
    let mut body = Map::new();
    put_or_clear(&mut body, "smn_topic", &config.smn_topic);
    body.insert(
        "restart_when_exception".into(),
        json!(config.restart_when_exception),
    );
    body.insert("resume_checkpoint".into(), json!(config.resume_checkpoint));
    body.insert("resume_max_num".into(), json!(config.resume_max_num));
    if changed.iter().any(|field| field == "obs_bucket") {
        put_or_clear(&mut body, "obs_bucket", &config.obs_bucket);
    }
    debug_assert!(body.keys().all(|key| HOT_FIELDS.contains(&key.as_str())));
    Value::Object(body)
}

/// Adds an empty value (`""`, or `[]` for the dependency lists) for each of `fields` that the
/// job type carries and the body leaves out, so that the update clears what git removed
/// ([`crate::model::UpdateScope::Clearing`]).
pub fn clear_fields(body: &mut Value, config: &FlinkJobConfig, fields: &[String]) {
    let Value::Object(body) = body else {
        return;
    };
    for field in fields {
        if !crate::model::CLEARABLE_FIELDS.contains(&field.as_str())
            || !config.kind().carries(field)
            || body.contains_key(field.as_str())
        {
            continue;
        }
        let empty = if field.starts_with("dependency_") {
            json!([])
        } else {
            json!("")
        };
        body.insert(field.clone(), empty);
    }
}

/// The body of `POST/PUT .../streaming/flink-jobs`.
pub fn jar_job_body(name: Option<&str>, config: &FlinkJobConfig, purpose: BodyFor) -> Value {
    let mut body = common_body(name, config, purpose);
    put_opt(&mut body, "main_class", &config.main_class);
    put_opt(&mut body, "entrypoint_args", &config.entrypoint_args);
    put_opt(&mut body, "entrypoint", &config.entrypoint);
    put_opt(&mut body, "checkpoint_path", &config.checkpoint_path);
    put_opt(&mut body, "image", &config.image);
    put_opt(&mut body, "feature", &config.feature);
    if !config.dependency_jars.is_empty() {
        body.insert("dependency_jars".into(), json!(config.dependency_jars));
    }
    if !config.dependency_files.is_empty() {
        body.insert("dependency_files".into(), json!(config.dependency_files));
    }
    if purpose == BodyFor::Update {
        body.insert("job_type".into(), json!(config.job_type));
    }
    Value::Object(body)
}

fn common_body(
    name: Option<&str>,
    config: &FlinkJobConfig,
    purpose: BodyFor,
) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(name) = name {
        body.insert("name".into(), json!(name));
    }
    body.insert("desc".into(), json!(config.desc));
    put_opt(&mut body, "queue_name", &config.queue_name);
    put_opt(
        &mut body,
        "resource_config_version",
        &config.resource_config_version,
    );
    if config.is_resource_v2() {
        // v2 sizes the job from resource_config; the CU fields are not settable.
        if let Some(resources) = &config.resource_config {
            body.insert("resource_config".into(), resource_config_to_wire(resources));
        }
    } else {
        body.insert("cu_number".into(), json!(config.cu_number));
        body.insert("manager_cu_number".into(), json!(config.manager_cu_number));
        body.insert("parallel_number".into(), json!(config.parallel_number));
        body.insert("tm_cus".into(), json!(config.tm_cus));
        if let Some(slots) = config.tm_slot_num {
            body.insert("tm_slot_num".into(), json!(slots));
        }
    }
    put_opt(&mut body, "flink_log_config", &config.flink_log_config);
    body.insert(
        "checkpoint_enabled".into(),
        json!(config.checkpoint_enabled),
    );
    body.insert(
        "checkpoint_mode".into(),
        json!(config.checkpoint_mode.api_number()),
    );
    body.insert(
        "checkpoint_interval".into(),
        json!(config.checkpoint_interval),
    );
    put_opt(&mut body, "obs_bucket", &config.obs_bucket);
    body.insert("log_enabled".into(), json!(config.log_enabled));
    if purpose == BodyFor::Update {
        put_or_clear(&mut body, "smn_topic", &config.smn_topic);
    } else {
        put_opt(&mut body, "smn_topic", &config.smn_topic);
    }
    body.insert(
        "restart_when_exception".into(),
        json!(config.restart_when_exception),
    );
    body.insert("resume_checkpoint".into(), json!(config.resume_checkpoint));
    body.insert("resume_max_num".into(), json!(config.resume_max_num));
    put_opt(&mut body, "flink_version", &config.flink_version);
    put_opt(
        &mut body,
        "execution_agency_urn",
        &config.execution_agency_urn,
    );
    body.insert(
        "runtime_config".into(),
        json!(runtime_config_string(&config.runtime_config)),
    );
    if purpose == BodyFor::Create && !config.tags.is_empty() {
        body.insert("tags".into(), tags_list(&config.tags));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RESOURCE_CONFIG_V2, UpdateScope};
    use proptest::prelude::*;

    /// What the documented service answers for a job created with `body`: every field it was
    /// given (reads use names for `checkpoint_mode`), plus what it fills when a field is left
    /// out (Terraform's Optional+Computed fields, the SDK defaults), plus fields of the other job
    /// type at their defaults, which the shared `FlinkJobConfig` detail model carries for every
    /// job. `fill` is the value the service picks for a computed field.
    fn service_detail(body: &Value, kind: JobKind, fill: &ServiceFill) -> Value {
        let mut config = body.as_object().cloned().unwrap_or_default();
        let mode = match config.get("checkpoint_mode").and_then(Value::as_i64) {
            Some(2) => "at_least_once",
            _ => "exactly_once",
        };
        config.insert("checkpoint_mode".into(), json!(mode));
        let mut put_default = |key: &str, value: Value| {
            config.entry(key.to_string()).or_insert(value);
        };
        put_default("queue_name", json!(fill.queue));
        put_default("flink_version", json!(fill.flink_version));
        put_default("resource_config_version", json!("v1"));
        put_default("tm_slot_num", json!(fill.slots));
        put_default("cu_number", json!(fill.cu));
        put_default("manager_cu_number", json!(1));
        put_default("parallel_number", json!(fill.parallel));
        put_default("tm_cus", json!(1));
        put_default("graph_editor_enabled", json!(false));
        put_default("real_cu_number", json!(fill.cu));
        // Shared detail model: both types' fields are reported, whatever the job type.
        put_default("run_mode", json!(fill.run_mode));
        put_default("idle_state_retention", json!(3600));
        put_default("dirty_data_strategy", json!("0"));
        put_default("udf_jar_url", json!(fill.udf));
        put_default("checkpoint_path", json!(fill.checkpoint_path));
        if kind == JobKind::FlinkJar {
            put_default("feature", json!("basic"));
        } else {
            put_default("feature", json!(""));
            put_default("entrypoint", json!(""));
            put_default("dependency_jars", json!([]));
        }
        if config.get("resource_config_version") == Some(&json!(RESOURCE_CONFIG_V2)) {
            let resources = config
                .entry("resource_config".to_string())
                .or_insert_with(|| json!({}));
            if let Value::Object(resources) = resources {
                resources.entry("max_slot").or_insert(json!(1));
                resources
                    .entry("parallel_number")
                    .or_insert(json!(fill.parallel));
                resources
                    .entry("jobmanager_resource_spec")
                    .or_insert(json!({"cpu": 1.0, "memory": "4G"}));
                resources
                    .entry("taskmanager_resource_spec")
                    .or_insert(json!({"cpu": 1.0, "memory": "4G"}));
            }
        }
        let mut detail = json!({
            "job_id": 9, "name": "job", "status": "job_running", "update_time": 1711647009620_i64,
            "job_type": body.get("job_type").cloned().unwrap_or(json!(defaults::JAR_JOB_TYPE)),
            "desc": body.get("desc").cloned().unwrap_or(json!("")),
        });
        for top in [
            "sql_body",
            "run_mode",
            "queue_name",
            "main_class",
            "entrypoint_args",
        ] {
            if let Some(value) = config.remove(top) {
                detail[top] = value;
            }
        }
        detail["job_config"] = Value::Object(config);
        detail
    }

    #[derive(Debug, Clone)]
    struct ServiceFill {
        queue: String,
        flink_version: String,
        slots: i32,
        cu: i32,
        parallel: i32,
        run_mode: String,
        udf: String,
        checkpoint_path: String,
    }

    fn fill_strategy() -> impl Strategy<Value = ServiceFill> {
        (
            "[a-z]{1,10}",
            prop_oneof![Just("1.12"), Just("1.15"), Just("1.17")],
            1i32..64,
            2i32..400,
            1i32..100,
            prop_oneof![Just("shared_cluster"), Just("exclusive_cluster")],
            prop_oneof![Just(""), Just("obs://b/udf.jar")],
            prop_oneof![Just(""), Just("obs://b/checkpoints/")],
        )
            .prop_map(
                |(queue, version, slots, cu, parallel, run_mode, udf, checkpoint_path)| {
                    ServiceFill {
                        queue,
                        flink_version: version.into(),
                        slots,
                        cu,
                        parallel,
                        run_mode: run_mode.into(),
                        udf: udf.into(),
                        checkpoint_path: checkpoint_path.into(),
                    }
                },
            )
    }

    /// A configuration as `desired` builds it: service-computed fields often unset.
    fn written_strategy() -> impl Strategy<Value = FlinkJobConfig> {
        (
            any::<bool>(),
            any::<bool>(),
            proptest::option::of("[a-z]{1,8}"),
            proptest::option::of(prop_oneof![Just("1.15"), Just("1.17")]),
            proptest::option::of(prop_oneof![Just("basic"), Just("custom")]),
            proptest::option::of(1i32..8),
            (2i32..50, 1i32..20, any::<bool>(), any::<bool>()),
            proptest::option::of("obs://[a-z]{3}/ck/"),
        )
            .prop_map(
                |(jar, v2, queue, version, feature, slots, (cu, parallel, a, b), ckpt)| {
                    let kind = if jar {
                        JobKind::FlinkJar
                    } else {
                        JobKind::FlinkSql
                    };
                    let mut config = FlinkJobConfig::defaults_for(kind);
                    config.queue_name = queue;
                    config.flink_version = version.map(String::from);
                    config.checkpoint_enabled = a;
                    config.restart_when_exception = b;
                    config.tags.insert("managed-by".into(), "dli-gitops".into());
                    if v2 {
                        config.resource_config_version = Some(RESOURCE_CONFIG_V2.into());
                        config.resource_config = Some(ResourceConfig {
                            max_slot: slots,
                            parallel_number: Some(parallel),
                            ..ResourceConfig::default()
                        });
                    } else {
                        config.cu_number = cu;
                        config.parallel_number = parallel;
                        config.tm_slot_num = slots;
                    }
                    if jar {
                        config.entrypoint = Some("obs://b/job.jar".into());
                        config.feature = feature.map(String::from);
                        config.checkpoint_path = ckpt;
                    } else {
                        config.sql_body = Some("select 1".into());
                        config.operator_config = a.then(|| {
                            crate::model::canonical_json_text(
                                r#"{"operator_list":[{"id":"x","parallelism":2}]}"#,
                            )
                        });
                    }
                    config
                },
            )
    }

    proptest! {
        /// A job written by us (its create body) and read back from a detail in which the
        /// service filled every field it computes plans to no change, for every job type.
        #[test]
        fn a_created_job_read_back_with_service_filled_fields_has_no_diff(
            config in written_strategy(),
            fill in fill_strategy(),
        ) {
            let kind = config.kind();
            let mut body = match kind {
                JobKind::FlinkJar => jar_job_body(Some("job"), &config, BodyFor::Create),
                _ => sql_job_body(Some("job"), &config, BodyFor::Create),
            };
            // Fields only the update body carries follow in an update right after create.
            if let (Some(Value::Object(extra)), Value::Object(body)) =
                (sql_followup_update_body(&config), &mut body)
            {
                body.extend(extra);
            }
            let detail = service_detail(&body, kind, &fill);
            let observed = observed_from_detail(&detail, None).unwrap();
            prop_assert_eq!(observed.config.kind(), kind);
            let diffs = config.field_diffs(&observed.config);
            prop_assert!(diffs.is_empty(), "{diffs:#?}\n{detail:#}");
        }
    }

    #[test]
    fn a_jar_job_never_carries_sql_fields_and_is_not_compared_on_them() {
        let detail = json!({
            "job_id": 8, "name": "jar", "status": "job_running", "job_type": "flink_jar_job",
            "run_mode": "shared_cluster",
            "job_config": {"entrypoint": "obs://b/a.jar", "idle_state_retention": 7, "dirty_data_strategy": "1",
                "udf_jar_url": "obs://b/udf.jar", "operator_config": "{\"a\":1}"}
        });
        let observed = observed_from_detail(&detail, None).unwrap();
        let defaults = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
        assert_eq!(observed.config.run_mode, defaults.run_mode);
        assert_eq!(
            observed.config.idle_state_retention,
            defaults.idle_state_retention
        );
        assert_eq!(observed.config.udf_jar_url, None);
        assert_eq!(observed.config.operator_config, None);
        let mut desired = defaults.clone();
        desired.entrypoint = Some("obs://b/a.jar".into());
        assert_eq!(desired.field_diffs(&observed.config), vec![]);
        // Even a hand-built live config with foreign values is not compared on them.
        let mut live = desired.clone();
        live.run_mode = "shared_cluster".into();
        live.dirty_data_strategy = "2:obs://x".into();
        assert_eq!(desired.field_diffs(&live), vec![]);
        // The Jar bodies never carry SQL-only fields.
        for purpose in [BodyFor::Create, BodyFor::Update] {
            let body = jar_job_body(Some("jar"), &desired, purpose);
            for field in crate::model::SQL_ONLY_FIELDS {
                assert!(body.get(*field).is_none(), "{field} in {body}");
            }
        }
        let sql = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        let body = sql_job_body(Some("sql"), &sql, BodyFor::Create);
        for field in crate::model::JAR_ONLY_FIELDS {
            assert!(body.get(*field).is_none(), "{field} in {body}");
        }
        assert_eq!(body["run_mode"], json!("exclusive_cluster"));
        assert_eq!(body["job_type"], json!("flink_opensource_sql_job"));
    }

    #[test]
    fn a_running_job_gets_only_the_hot_fields() {
        let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
        config.entrypoint = Some("obs://b/a.jar".into());
        config.obs_bucket = Some("bucket".into());
        config.smn_topic = Some("alerts".into());
        config.cu_number = 8;
        let body = running_update_body(&config, &["smn_topic".to_string()]);
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            vec![
                "restart_when_exception",
                "resume_checkpoint",
                "resume_max_num",
                "smn_topic"
            ]
        );
        let body = running_update_body(&config, &["obs_bucket".to_string()]);
        assert_eq!(body["obs_bucket"], json!("bucket"));
        let hot = crate::model::FieldDiff {
            field: "smn_topic".into(),
            live: Value::Null,
            desired: json!("alerts"),
        };
        let cold = crate::model::FieldDiff {
            field: "cu_number".into(),
            live: json!(2),
            desired: json!(8),
        };
        assert_eq!(
            UpdateScope::for_diffs(std::slice::from_ref(&hot)),
            UpdateScope::Running {
                changed: vec!["smn_topic".into()]
            }
        );
        assert_eq!(UpdateScope::for_diffs(&[hot, cold]), UpdateScope::Full);
    }

    #[test]
    fn a_field_git_removed_is_cleared_in_the_full_update_body() {
        let mut desired = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
        desired.entrypoint = Some("obs://b/a.jar".into());
        desired.cu_number = 4;
        let diffs = vec![
            crate::model::FieldDiff {
                field: "cu_number".into(),
                live: json!(2),
                desired: json!(4),
            },
            crate::model::FieldDiff {
                field: "main_class".into(),
                live: json!("com.example.Main"),
                desired: Value::Null,
            },
            crate::model::FieldDiff {
                field: "dependency_jars".into(),
                live: json!(["obs://b/dep.jar"]),
                desired: json!([]),
            },
        ];
        let scope = UpdateScope::for_diffs(&diffs);
        assert_eq!(
            scope,
            UpdateScope::Clearing {
                fields: vec!["main_class".into(), "dependency_jars".into()]
            }
        );
        let UpdateScope::Clearing { fields } = scope else {
            unreachable!()
        };
        let mut body = jar_job_body(None, &desired, BodyFor::Update);
        assert!(body.get("main_class").is_none());
        clear_fields(&mut body, &desired, &fields);
        assert_eq!(body["main_class"], json!(""));
        assert_eq!(body["dependency_jars"], json!([]));
        assert_eq!(body["cu_number"], json!(4));
        // Read back, the cleared fields are unset again.
        let mut detail = body.clone();
        detail["job_id"] = json!(1);
        detail["name"] = json!("jar");
        let back = observed_from_detail(&detail, None).unwrap();
        assert_eq!(back.config.main_class, None);
        assert!(back.config.dependency_jars.is_empty());
    }

    #[test]
    fn v2_bodies_carry_resource_config_and_no_cu_fields() {
        let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        config.sql_body = Some("select 1".into());
        config.resource_config_version = Some("v2".into());
        config.resource_config = Some(ResourceConfig {
            max_slot: Some(2),
            parallel_number: Some(4),
            jobmanager_resource_spec: Some(ResourceSpec {
                cpu: Cpu::from_cores(0.5),
                memory: Some("2G".into()),
            }),
            taskmanager_resource_spec: None,
        });
        config.flink_log_config = Some(crate::model::canonical_json_text(
            r#"{"root_logger_level": "INFO"}"#,
        ));
        let body = sql_job_body(Some("job"), &config, BodyFor::Create);
        for field in crate::model::V1_RESOURCE_FIELDS {
            assert!(body.get(*field).is_none(), "{field} in {body}");
        }
        assert_eq!(
            body["resource_config"],
            json!({"max_slot": 2, "parallel_number": 4, "jobmanager_resource_spec": {"cpu": 0.5, "memory": "2G"}})
        );
        assert_eq!(
            body["flink_log_config"],
            json!("{\"root_logger_level\":\"INFO\"}")
        );
        let mut detail = body.clone();
        detail["job_id"] = json!(1);
        let back = observed_from_detail(&detail, None).unwrap();
        assert_eq!(back.config, config);
    }

    #[test]
    fn detail_with_every_quirk_becomes_canonical() {
        let detail = json!({
            "job_id": "42", "name": "clickstream-agg", "desc": "", "job_type": "flink_opensource_sql_job",
            "status": "job_running", "status_desc": "", "update_time": 1711647009620_i64,
            "sql_body": "select 1", "run_mode": "exclusive_cluster", "queue_name": "q1",
            "savepoint_path": "",
            "job_config": {
                "checkpoint_enabled": "true", "checkpoint_mode": "at_least_once", "checkpoint_interval": 60,
                "log_enabled": true, "obs_bucket": "", "smn_topic": "", "cu_number": 4, "manager_cu_number": 1,
                "parallel_number": "2", "tm_cus": 1, "tm_slot_num": 2, "restart_when_exception": false,
                "idle_state_retention": 3600, "resume_checkpoint": false, "resume_max_num": -1,
                "dirty_data_strategy": 0, "udf_jar_url": "", "flink_version": "1.15",
                "runtime_config": "[{\"key\":\"table.exec.state.ttl\",\"value\":\"1h\"},{\"key\":\"a\",\"value\":\"b\"}]",
                "tags": [{"key": "managed-by", "value": "dli-gitops"}]
            }
        });
        let job = observed_from_detail(&detail, None).unwrap();
        assert_eq!(job.id, 42);
        assert_eq!(job.update_time, 1711647009620);
        assert_eq!(job.savepoint_path, None);
        assert_eq!(job.status_desc, None);
        let c = &job.config;
        assert_eq!(c.checkpoint_mode, CheckpointMode::AtLeastOnce);
        assert!(c.checkpoint_enabled);
        assert_eq!(c.parallel_number, 2);
        assert_eq!(c.obs_bucket, None);
        assert_eq!(c.smn_topic, None);
        assert_eq!(c.udf_jar_url, None);
        assert_eq!(c.dirty_data_strategy, "0");
        assert_eq!(
            c.runtime_config
                .get("table.exec.state.ttl")
                .map(String::as_str),
            Some("1h")
        );
        assert_eq!(
            c.runtime_config.keys().collect::<Vec<_>>(),
            vec!["a", "table.exec.state.ttl"]
        );
        assert!(job.is_managed());
        assert_eq!(c.queue_name.as_deref(), Some("q1"));
    }

    #[test]
    fn missing_fields_take_the_service_defaults() {
        let detail = json!({"job_id": 7, "name": "bare", "status": "job_init", "update_time": "1711647009620"});
        let job = observed_from_detail(&detail, None).unwrap();
        assert_eq!(job.config, FlinkJobConfig::defaults_for(JobKind::FlinkSql));
        let jar = json!({"job_id": 8, "name": "jar", "status": "job_init", "job_config": {"entrypoint": "obs://b/a.jar"}});
        let jar = observed_from_detail(&jar, None).unwrap();
        assert_eq!(jar.config.kind(), JobKind::FlinkJar);
    }

    #[test]
    fn bad_values_are_reported_not_guessed() {
        let detail =
            json!({"job_id": 7, "name": "x", "job_config": {"checkpoint_mode": "sometimes"}});
        assert!(
            observed_from_detail(&detail, None)
                .unwrap_err()
                .contains("checkpoint_mode")
        );
        let detail =
            json!({"job_id": 7, "name": "x", "job_config": {"runtime_config": "{not json"}});
        assert!(
            observed_from_detail(&detail, None)
                .unwrap_err()
                .contains("runtime_config")
        );
        assert!(observed_from_detail(&json!({"name": "x"}), None).is_err());
    }

    #[test]
    fn bodies_write_numbers_and_json_strings_where_the_api_wants_them() {
        let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        config.checkpoint_mode = CheckpointMode::AtLeastOnce;
        config.runtime_config.insert("k".into(), "v".into());
        config.tags.insert("managed-by".into(), "dli-gitops".into());
        config.sql_body = Some("select 1".into());
        let create = sql_job_body(Some("job"), &config, BodyFor::Create);
        assert_eq!(create["checkpoint_mode"], json!(2));
        assert_eq!(
            create["runtime_config"],
            json!("[{\"key\":\"k\",\"value\":\"v\"}]")
        );
        assert_eq!(
            create["tags"],
            json!([{"key": "managed-by", "value": "dli-gitops"}])
        );
        assert_eq!(create["job_type"], json!("flink_opensource_sql_job"));
        let update = sql_job_body(None, &config, BodyFor::Update);
        assert!(
            update.get("tags").is_none()
                && update.get("job_type").is_none()
                && update.get("name").is_none()
        );
        // A round trip through the detail decoder gives the same canonical config back.
        let mut detail = create.clone();
        detail["job_id"] = json!(1);
        detail["name"] = json!("job");
        let back = observed_from_detail(&detail, None).unwrap();
        assert_eq!(back.config, config);
    }
}
