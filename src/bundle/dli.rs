//! The body of a DLI Flink job create/update request as one typed document
//! ([`DliJobDocument`]): the create-body fields of SQL and Jar jobs in wire types, with their
//! conversion to and from the canonical [`FlinkJobConfig`]. The emulator reads create and update
//! bodies with it.
//!
//! No DLI Flink export zip is written or read here: the layout of DLI's exports is published
//! nowhere and DLI imports only the zips it exported itself, so the client treats export zips as
//! opaque bytes and only the emulator has a layout (its own, private: `emulator/dli/export_format.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BundleError;
use crate::model::{self, CheckpointMode, FlinkJobConfig};

/// One `{key, value}` tag, as the API carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DliTag {
    pub key: String,
    pub value: String,
}

/// One Flink job as the export zip carries it: the name, the create-body fields (SQL and Jar)
/// and the tags, in the API's wire types (`checkpoint_mode` 1/2, `runtime_config` a JSON string).
/// `None` means "not given"; [`DliJobDocument::to_model`] fills the service defaults.
/// The same type deserialises create and update request bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DliJobDocument {
    /// The id the job had where it was exported; import reports it as `old_job_id`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::optional_i64"
    )]
    pub job_id: Option<i64>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cu_number: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_cu_number: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_number: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tm_cus: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tm_slot_num: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_enabled: Option<bool>,
    /// 1 = exactly once, 2 = at least once (a name is accepted on read).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::optional_checkpoint_mode"
    )]
    pub checkpoint_mode: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obs_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smn_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_when_exception: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_state_retention: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_checkpoint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_max_num: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_data_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udf_jar_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_agency_urn: Option<String>,
    /// A JSON string of `[{"key": .., "value": ..}]` (a list or map is accepted on read).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::optional_runtime_config"
    )]
    pub runtime_config: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::optional_tags"
    )]
    pub tags: Option<Vec<DliTag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint_args: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_jars: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_files: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// `v1` or `v2` (`resource_config_version` in the SDK bodies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_config_version: Option<String>,
    /// The v2 resource model (`resource_config.py`, `resource_spec.py`); unknown keys refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_config: Option<model::ResourceConfig>,
    /// JSON text (SQL update body only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_config: Option<String>,
    /// JSON text (SQL update body only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_estimator_config: Option<String>,
    /// JSON text: `{root_logger_level, loggers_level_of_class}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flink_log_config: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_ref().filter(|text| !text.is_empty()).cloned()
}

impl DliJobDocument {
    /// The document for a job named `name` with `config`; every field is written out.
    pub fn from_model(name: &str, config: &FlinkJobConfig) -> DliJobDocument {
        let runtime_config = if config.runtime_config.is_empty() {
            None
        } else {
            let pairs: Vec<Value> = config
                .runtime_config
                .iter()
                .map(|(key, value)| serde_json::json!({"key": key, "value": value}))
                .collect();
            Some(Value::Array(pairs).to_string())
        };
        DliJobDocument {
            job_id: None,
            name: name.to_string(),
            desc: Some(config.desc.clone()),
            job_type: Some(config.job_type.clone()),
            queue_name: config.queue_name.clone(),
            sql_body: config.sql_body.clone(),
            run_mode: Some(config.run_mode.clone()),
            cu_number: Some(config.cu_number),
            manager_cu_number: Some(config.manager_cu_number),
            parallel_number: Some(config.parallel_number),
            tm_cus: Some(config.tm_cus),
            tm_slot_num: config.tm_slot_num,
            checkpoint_enabled: Some(config.checkpoint_enabled),
            checkpoint_mode: Some(config.checkpoint_mode.api_number()),
            checkpoint_interval: Some(config.checkpoint_interval),
            checkpoint_path: config.checkpoint_path.clone(),
            obs_bucket: config.obs_bucket.clone(),
            log_enabled: Some(config.log_enabled),
            smn_topic: config.smn_topic.clone(),
            restart_when_exception: Some(config.restart_when_exception),
            idle_state_retention: Some(config.idle_state_retention),
            resume_checkpoint: Some(config.resume_checkpoint),
            resume_max_num: Some(config.resume_max_num),
            dirty_data_strategy: Some(config.dirty_data_strategy.clone()),
            udf_jar_url: config.udf_jar_url.clone(),
            flink_version: config.flink_version.clone(),
            execution_agency_urn: config.execution_agency_urn.clone(),
            runtime_config,
            tags: Some(
                config
                    .tags
                    .iter()
                    .map(|(key, value)| DliTag {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            ),
            entrypoint: config.entrypoint.clone(),
            main_class: config.main_class.clone(),
            entrypoint_args: config.entrypoint_args.clone(),
            dependency_jars: Some(config.dependency_jars.clone()),
            dependency_files: Some(config.dependency_files.clone()),
            image: config.image.clone(),
            feature: config.feature.clone(),
            resource_config_version: config.resource_config_version.clone(),
            resource_config: config.resource_config.clone(),
            operator_config: config.operator_config.clone(),
            static_estimator_config: config.static_estimator_config.clone(),
            flink_log_config: config.flink_log_config.clone(),
        }
    }

    /// The canonical configuration: service defaults for unset fields, empty strings as unset,
    /// checkpoint mode, runtime config and tags decoded. The job type decides SQL or Jar
    /// defaults; without one, a document with an `entrypoint` is a Jar job.
    pub fn to_model(&self) -> Result<FlinkJobConfig, BundleError> {
        let mut config = FlinkJobConfig::defaults_for(self.kind()?);
        if let Some(job_type) = self.job_type.as_ref().filter(|text| !text.is_empty()) {
            config.job_type = job_type.clone();
        }
        if let Some(desc) = &self.desc {
            config.desc = desc.clone();
        }
        config.queue_name = non_empty(&self.queue_name);
        config.sql_body = non_empty(&self.sql_body);
        self.read_resources(&mut config)?;
        self.read_checkpoints_and_recovery(&mut config)?;
        config.udf_jar_url = non_empty(&self.udf_jar_url);
        config.flink_version = non_empty(&self.flink_version);
        config.execution_agency_urn = non_empty(&self.execution_agency_urn);
        if let Some(runtime_config) = non_empty(&self.runtime_config) {
            config.runtime_config = decode_runtime_config(&runtime_config)
                .map_err(|reason| self.invalid("runtime_config", reason))?;
        }
        if let Some(tags) = &self.tags {
            config.tags = self.tag_map(tags)?;
        }
        self.read_jar_and_advanced(&mut config)?;
        Ok(config)
    }

    /// The error for a field of this document the service would not have written.
    fn invalid(&self, field: &'static str, reason: String) -> BundleError {
        BundleError::InvalidField {
            job: self.name.clone(),
            field,
            reason,
        }
    }

    /// SQL or Jar, from `job_type`; without one, a document with an `entrypoint` is a Jar job.
    fn kind(&self) -> Result<model::JobKind, BundleError> {
        Ok(match self.job_type.as_deref() {
            Some(model::defaults::JAR_JOB_TYPE) => model::JobKind::FlinkJar,
            Some("flink_sql_job" | "flink_opensource_sql_job" | "flink_sql_edge_job") => {
                model::JobKind::FlinkSql
            }
            Some(other) if !other.is_empty() => {
                return Err(self.invalid(
                    "job_type",
                    format!(
                        "{other:?} is not one of flink_sql_job, flink_opensource_sql_job, flink_sql_edge_job, flink_jar_job"
                    ),
                ));
            }
            _ if self.entrypoint.is_some() => model::JobKind::FlinkJar,
            _ => model::JobKind::FlinkSql,
        })
    }

    /// A count field that must be at least 1; the default when unset.
    fn positive(
        &self,
        field: &'static str,
        value: Option<i32>,
        default: i32,
    ) -> Result<i32, BundleError> {
        match value {
            Some(number) if number < 1 => Err(self.invalid(field, format!("{number} is below 1"))),
            Some(number) => Ok(number),
            None => Ok(default),
        }
    }

    /// `run_mode` and the CU, parallelism and task-manager counts.
    fn read_resources(&self, config: &mut FlinkJobConfig) -> Result<(), BundleError> {
        if let Some(run_mode) = non_empty(&self.run_mode) {
            if !matches!(
                run_mode.as_str(),
                "shared_cluster" | "exclusive_cluster" | "edge_node"
            ) {
                return Err(self.invalid(
                    "run_mode",
                    format!("{run_mode:?} is not shared_cluster, exclusive_cluster or edge_node"),
                ));
            }
            config.run_mode = run_mode;
        }
        config.cu_number = self.positive("cu_number", self.cu_number, config.cu_number)?;
        config.manager_cu_number = self.positive(
            "manager_cu_number",
            self.manager_cu_number,
            config.manager_cu_number,
        )?;
        config.parallel_number = self.positive(
            "parallel_number",
            self.parallel_number,
            config.parallel_number,
        )?;
        config.tm_cus = self.positive("tm_cus", self.tm_cus, config.tm_cus)?;
        config.tm_slot_num = self.tm_slot_num;
        Ok(())
    }

    /// Checkpointing, logging, restart and resume settings, and the dirty data strategy.
    fn read_checkpoints_and_recovery(
        &self,
        config: &mut FlinkJobConfig,
    ) -> Result<(), BundleError> {
        if let Some(enabled) = self.checkpoint_enabled {
            config.checkpoint_enabled = enabled;
        }
        if let Some(mode) = self.checkpoint_mode {
            config.checkpoint_mode = CheckpointMode::from_api(&Value::from(mode))
                .ok_or_else(|| self.invalid("checkpoint_mode", format!("{mode} is not 1 or 2")))?;
        }
        config.checkpoint_interval = self.positive(
            "checkpoint_interval",
            self.checkpoint_interval,
            config.checkpoint_interval,
        )?;
        config.checkpoint_path = non_empty(&self.checkpoint_path);
        config.obs_bucket = non_empty(&self.obs_bucket);
        if let Some(enabled) = self.log_enabled {
            config.log_enabled = enabled;
        }
        config.smn_topic = non_empty(&self.smn_topic);
        if let Some(restart) = self.restart_when_exception {
            config.restart_when_exception = restart;
        }
        if let Some(retention) = self.idle_state_retention {
            config.idle_state_retention = retention;
        }
        if let Some(resume) = self.resume_checkpoint {
            config.resume_checkpoint = resume;
        }
        if let Some(resume_max_num) = self.resume_max_num {
            config.resume_max_num = resume_max_num;
        }
        if let Some(strategy) = non_empty(&self.dirty_data_strategy) {
            if !(strategy == "0"
                || strategy == "1"
                || strategy.starts_with("2:")
                || strategy == "2")
            {
                return Err(self.invalid(
                    "dirty_data_strategy",
                    format!("{strategy:?} is not \"0\", \"1\" or \"2:<obs dir>\""),
                ));
            }
            config.dirty_data_strategy = strategy;
        }
        Ok(())
    }

    /// The tags as a map: each key 1-128 and value 0-255 characters, no key twice.
    fn tag_map(&self, tags: &[DliTag]) -> Result<BTreeMap<String, String>, BundleError> {
        let mut map = BTreeMap::new();
        for tag in tags {
            if tag.key.is_empty() || tag.key.len() > 128 || tag.value.len() > 255 {
                return Err(self.invalid(
                    "tags",
                    format!(
                        "tag {:?} needs a key of 1-128 and a value of 0-255 characters",
                        tag.key
                    ),
                ));
            }
            if map.insert(tag.key.clone(), tag.value.clone()).is_some() {
                return Err(self.invalid("tags", format!("tag key {:?} appears twice", tag.key)));
            }
        }
        Ok(map)
    }

    /// The Jar job's entrypoint and dependencies, the image, the resource config and the JSON
    /// text fields (operator, static estimator and log configs, in canonical form).
    fn read_jar_and_advanced(&self, config: &mut FlinkJobConfig) -> Result<(), BundleError> {
        config.entrypoint = non_empty(&self.entrypoint);
        config.main_class = non_empty(&self.main_class);
        config.entrypoint_args = non_empty(&self.entrypoint_args);
        config.dependency_jars = self.dependency_jars.clone().unwrap_or_default();
        config.dependency_files = self.dependency_files.clone().unwrap_or_default();
        config.image = non_empty(&self.image);
        config.feature = non_empty(&self.feature);
        if let Some(version) = non_empty(&self.resource_config_version) {
            if version != "v1" && version != model::RESOURCE_CONFIG_V2 {
                return Err(self.invalid(
                    "resource_config_version",
                    format!("{version:?} is not \"v1\" or \"v2\""),
                ));
            }
            config.resource_config_version = Some(version);
        }
        config.resource_config = self
            .resource_config
            .clone()
            .filter(|resources| *resources != model::ResourceConfig::default());
        let json_text = |field: &'static str, value: &Option<String>| match non_empty(value) {
            Some(text) => serde_json::from_str::<Value>(&text)
                .map(|_| Some(model::canonical_json_text(&text)))
                .map_err(|error| self.invalid(field, format!("is not JSON: {error}"))),
            None => Ok(None),
        };
        config.operator_config = json_text("operator_config", &self.operator_config)?;
        config.static_estimator_config =
            json_text("static_estimator_config", &self.static_estimator_config)?;
        config.flink_log_config = json_text("flink_log_config", &self.flink_log_config)?;
        Ok(())
    }
}

/// Decodes the API's runtime config (a JSON array of `{key, value}`, or a JSON object) into a
/// sorted map.
pub(crate) fn decode_runtime_config(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| format!("not a JSON list of {{key, value}}: {error}"))?;
    let mut map = BTreeMap::new();
    match value {
        Value::Array(items) => {
            for item in items {
                let key = item.get("key").and_then(Value::as_str);
                let value = item.get("value").map(scalar_text);
                match (key, value) {
                    (Some(key), Some(Some(value))) => {
                        map.insert(key.to_string(), value);
                    }
                    _ => return Err(format!("item {item} is not {{\"key\": .., \"value\": ..}}")),
                }
            }
        }
        Value::Object(object) => {
            for (key, value) in object {
                let text = scalar_text(&value)
                    .ok_or_else(|| format!("value of {key:?} is not a scalar"))?;
                map.insert(key, text);
            }
        }
        other => return Err(format!("{other} is not a list of {{key, value}}")),
    }
    Ok(map)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Deserialisers that accept the representations the service and older exports use.
mod lenient {
    use serde::{Deserialize, Deserializer, de::Error};
    use serde_json::Value;

    use super::DliTag;

    pub fn optional_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("{number} is not an integer"))),
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| D::Error::custom(format!("{text:?} is not an integer"))),
            Some(other) => Err(D::Error::custom(format!("{other} is not an integer"))),
        }
    }

    pub fn optional_checkpoint_mode<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<i32>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .and_then(|value| i32::try_from(value).ok())
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("{number} is not 1 or 2"))),
            Some(value @ Value::String(_)) => crate::model::CheckpointMode::from_api(&value)
                .map(|mode| Some(mode.api_number()))
                .ok_or_else(|| D::Error::custom(format!("{value} is not a checkpoint mode"))),
            Some(other) => Err(D::Error::custom(format!(
                "{other} is not a checkpoint mode"
            ))),
        }
    }

    pub fn optional_runtime_config<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(value @ (Value::Array(_) | Value::Object(_))) => Ok(Some(value.to_string())),
            Some(other) => Err(D::Error::custom(format!(
                "{other} is not a runtime config (a JSON string of [{{key, value}}])"
            ))),
        }
    }

    pub fn optional_tags<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<DliTag>>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(value @ Value::Array(_)) => serde_json::from_value(value)
                .map(Some)
                .map_err(|error| D::Error::custom(format!("tags: {error}"))),
            Some(Value::Object(map)) => map
                .into_iter()
                .map(|(key, value)| match value {
                    Value::String(value) => Ok(DliTag { key, value }),
                    other => Err(D::Error::custom(format!(
                        "tag {key:?} has a non-string value {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(D::Error::custom(format!(
                "{other} is not a list of {{key, value}} tags"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobKind;

    fn sample_sql() -> FlinkJobConfig {
        let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        config.desc = "Per-minute click aggregates".into();
        config.queue_name = Some("flink_queue".into());
        config.sql_body = Some("SELECT 1;".into());
        config.cu_number = 4;
        config.checkpoint_enabled = true;
        config.checkpoint_mode = CheckpointMode::AtLeastOnce;
        config.runtime_config = BTreeMap::from([("table.exec.state.ttl".into(), "1h".into())]);
        config.tags = BTreeMap::from([("managed-by".into(), "dli-gitops".into())]);
        config
    }

    /// A document as the emulator reads a create body: serialised, parsed, converted.
    fn through_json(document: &DliJobDocument) -> DliJobDocument {
        serde_json::from_slice(&serde_json::to_vec(document).unwrap()).unwrap()
    }

    #[test]
    fn sql_and_jar_jobs_round_trip_through_their_json_body() {
        let mut jar = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
        jar.entrypoint = Some("obs://bucket/app.jar".into());
        jar.main_class = Some("com.example.Main".into());
        jar.dependency_jars = vec!["obs://bucket/dep.jar".into()];
        let sql = through_json(&DliJobDocument::from_model("clicks", &sample_sql()));
        let read_jar = through_json(&DliJobDocument::from_model("fraud", &jar));
        assert_eq!(sql.to_model().unwrap(), sample_sql());
        assert_eq!(read_jar.to_model().unwrap(), jar);
        assert_eq!(sql.checkpoint_mode, Some(2));
        assert_eq!(
            sql.runtime_config.as_deref(),
            Some(r#"[{"key":"table.exec.state.ttl","value":"1h"}]"#)
        );
    }

    #[test]
    fn invalid_values_fail_to_model() {
        let document = DliJobDocument {
            name: "x".into(),
            checkpoint_mode: Some(3),
            ..DliJobDocument::default()
        };
        assert!(matches!(
            document.to_model(),
            Err(BundleError::InvalidField {
                field: "checkpoint_mode",
                ..
            })
        ));
        let document = DliJobDocument {
            name: "x".into(),
            runtime_config: Some("not json".into()),
            ..DliJobDocument::default()
        };
        assert!(matches!(
            document.to_model(),
            Err(BundleError::InvalidField {
                field: "runtime_config",
                ..
            })
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9 _.:/-]{1,24}"
        }

        fn optional_text() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(text())
        }

        prop_compose! {
            fn config()(
                jar in any::<bool>(),
                desc in "[a-zA-Z0-9 ]{0,40}",
                queue_name in optional_text(),
                sql_body in optional_text(),
                run_mode in prop::sample::select(vec!["shared_cluster", "exclusive_cluster", "edge_node"]),
                numbers in (1..400i32, 1..8i32, 1..2000i32, 1..8i32, proptest::option::of(1..16i32), 1..3600i32),
                flags in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
                mode in prop::sample::select(vec![CheckpointMode::ExactlyOnce, CheckpointMode::AtLeastOnce]),
                idle_state_retention in any::<i32>(),
                resume_max_num in -1..100i64,
                dirty in prop::sample::select(vec!["0", "1", "2:obs://bucket/dirty"]),
                optionals in (optional_text(), optional_text(), optional_text(), optional_text(), optional_text()),
                runtime_config in prop::collection::btree_map(text(), text(), 0..4),
                tags in prop::collection::btree_map("[a-z]{1,12}", "[a-z0-9]{0,12}", 0..4),
                jars in prop::collection::vec(text(), 0..3),
                jar_fields in (optional_text(), optional_text(), optional_text(), optional_text()),
            ) -> FlinkJobConfig {
                let mut config = FlinkJobConfig::defaults_for(if jar { JobKind::FlinkJar } else { JobKind::FlinkSql });
                config.desc = desc;
                config.queue_name = queue_name;
                config.sql_body = if jar { None } else { sql_body };
                config.run_mode = run_mode.to_string();
                (config.cu_number, config.manager_cu_number, config.parallel_number, config.tm_cus, config.tm_slot_num, config.checkpoint_interval) = numbers;
                (config.checkpoint_enabled, config.log_enabled, config.restart_when_exception, config.resume_checkpoint, _) = flags;
                config.checkpoint_mode = mode;
                config.idle_state_retention = idle_state_retention;
                config.resume_max_num = resume_max_num;
                config.dirty_data_strategy = dirty.to_string();
                (config.obs_bucket, config.smn_topic, config.udf_jar_url, config.flink_version, config.checkpoint_path) = optionals;
                config.runtime_config = runtime_config;
                config.tags = tags;
                config.dependency_jars = jars.clone();
                config.dependency_files = jars;
                if jar {
                    (config.entrypoint, config.main_class, config.entrypoint_args, config.image) = jar_fields;
                }
                config
            }
        }

        proptest! {
            /// Writing a job into a body and reading it back gives the same canonical config,
            /// so a no-op update can never look like a change.
            #[test]
            fn every_config_survives_a_body_round_trip(config in config()) {
                let read = through_json(&DliJobDocument::from_model("job", &config));
                prop_assert_eq!(read.to_model().unwrap(), config);
            }
        }
    }
}
