//! The shared vocabulary: canonical job definitions that `desired` builds from git, that `cloud`
//! builds from the live service, and that `plan` compares.
//!
//! Everything here is plain data. The canonical form is chosen so that a job in git that matches
//! the live job compares equal field by field: API quirks (checkpoint mode as number or name,
//! runtime config as a JSON string, empty strings for "unset") are resolved before a value lands
//! here, and the defaults the service applies are written out explicitly.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod struct_fields;

/// The tag every job managed by dli-gitops carries on the live side.
pub const MANAGED_TAG_KEY: &str = "managed-by";
/// The value of [`MANAGED_TAG_KEY`] on the jobs of the default installation.
pub const MANAGED_TAG_VALUE: &str = "dli-gitops";
/// The name of the installation when the config names none.
pub const DEFAULT_INSTANCE: &str = "default";

/// The value of [`MANAGED_TAG_KEY`] that marks the jobs of one installation: `dli-gitops` for
/// the default one (the value every job carried before installations had names, so those jobs
/// stay the default installation's), `dli-gitops.<instance>` for any other.
pub fn managed_tag_value(instance: &str) -> String {
    if instance == DEFAULT_INSTANCE {
        MANAGED_TAG_VALUE.to_string()
    } else {
        format!("{MANAGED_TAG_VALUE}.{instance}")
    }
}

/// Who manages a live job, from its `managed-by` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// No dli-gitops tag.
    Unmanaged,
    /// This installation's tag.
    Ours,
    /// Another installation's tag (its value, for messages).
    Other(String),
}

/// The kinds of job a repository can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobKind {
    #[serde(rename = "FlinkSqlJob")]
    FlinkSql,
    #[serde(rename = "FlinkJarJob")]
    FlinkJar,
    #[serde(rename = "DlfJob")]
    Dlf,
}

impl JobKind {
    /// The name used in job files (`kind: FlinkSqlJob`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::FlinkSql => "FlinkSqlJob",
            JobKind::FlinkJar => "FlinkJarJob",
            JobKind::Dlf => "DlfJob",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Flink checkpointing guarantee. The API writes it as a number (1, 2) and reads it as a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointMode {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

impl CheckpointMode {
    /// The number create/update requests carry.
    pub fn api_number(self) -> i32 {
        match self {
            CheckpointMode::ExactlyOnce => 1,
            CheckpointMode::AtLeastOnce => 2,
        }
    }

    /// The name job details carry.
    pub fn api_name(self) -> &'static str {
        match self {
            CheckpointMode::ExactlyOnce => "exactly_once",
            CheckpointMode::AtLeastOnce => "at_least_once",
        }
    }

    /// Accepts either representation the service uses: `1`/`2`, `"1"`/`"2"` or the names.
    pub fn from_api(value: &serde_json::Value) -> Option<CheckpointMode> {
        match value {
            serde_json::Value::Number(number) => match number.as_i64()? {
                1 => Some(CheckpointMode::ExactlyOnce),
                2 => Some(CheckpointMode::AtLeastOnce),
                _ => None,
            },
            serde_json::Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "exactly_once" | "exactly-once" => Some(CheckpointMode::ExactlyOnce),
                "2" | "at_least_once" | "at-least-once" => Some(CheckpointMode::AtLeastOnce),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What the user wants a job to be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Running,
    Stopped,
}

/// How a running job takes a change that needs a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeMode {
    /// Stop with a savepoint and resume from it.
    #[default]
    Savepoint,
    /// Stop without a savepoint and start from empty state.
    Stateless,
}

/// An explicit request to restore a job from a savepoint before its next start.
/// Re-applied whenever `savepoint_path` or `nonce` changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Restore {
    /// `obs://bucket/dir/`, the parent directory of the savepoint's `_metadata` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_path: Option<String>,
    /// Bump to re-import the same path again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// Promotion: take the latest savepoint of this job's copy in another target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_target: Option<String>,
    /// A savepoint of this job from this target's savepoint catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_catalog: Option<CatalogRef>,
}

/// Which catalog entry `restore.from_catalog` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogRef {
    /// The newest verified copy when the restore is planned.
    Latest,
    /// The entry with this journal seq (`dli-gitops savepoints list`).
    Seq(u64),
}

impl std::fmt::Display for CatalogRef {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogRef::Latest => formatter.write_str("latest"),
            CatalogRef::Seq(seq) => write!(formatter, "{seq}"),
        }
    }
}

impl Restore {
    /// The identity of this restore request: a new key means "import again". A catalog
    /// reference is appended only when set, so keys written before it existed stay equal.
    pub fn key(&self) -> String {
        let mut key = format!(
            "{}#{}#{}",
            self.savepoint_path.as_deref().unwrap_or(""),
            self.nonce.map(|n| n.to_string()).unwrap_or_default(),
            self.from_target.as_deref().unwrap_or("")
        );
        if let Some(catalog) = &self.from_catalog {
            key.push_str(&format!("#catalog:{catalog}"));
        }
        key
    }
}

/// Lifecycle fields: ours, never sent to the service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lifecycle {
    pub desired_state: RunState,
    pub upgrade_mode: UpgradeMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
    /// `false` protects the job from pruning even when pruning is on.
    pub prune: bool,
}

impl Default for Lifecycle {
    /// Running, savepoint upgrades, no restore, prunable (the target's policy still decides).
    fn default() -> Lifecycle {
        Lifecycle {
            desired_state: RunState::Running,
            upgrade_mode: UpgradeMode::Savepoint,
            restore: None,
            prune: true,
        }
    }
}

/// Fields that can change on a running job without stopping it: the fields Terraform's
/// provider sends to a running job (`updateFlinkSqlJobInRunning`, `updateFlinkJarJobInRunning`
/// in `resource_huaweicloud_dli_flinksql_job.go` / `flinkjar_job.go`). Terraform also sends a
/// Jar job's `checkpoint_path`, but only when checkpoints are off and `resume_checkpoint` is on;
/// dli-gitops restarts the job for a `checkpoint_path` change instead, which always converges.
pub const HOT_FIELDS: &[&str] = &[
    "smn_topic",
    "restart_when_exception",
    "resume_checkpoint",
    "resume_max_num",
    "obs_bucket",
];

/// Fields only Flink SQL jobs carry: the SQL create/update bodies have them, the Jar bodies
/// (`create_flink_jar_job_request_body.py`, `update_flink_jar_job_request_body.py`, SDK 3.1.219)
/// do not. A Jar job never reads, writes or compares them.
pub const SQL_ONLY_FIELDS: &[&str] = &[
    "sql_body",
    "run_mode",
    "idle_state_retention",
    "dirty_data_strategy",
    "udf_jar_url",
    "operator_config",
    "static_estimator_config",
];

/// Fields only Flink Jar jobs carry (absent from the SQL create/update bodies).
pub const JAR_ONLY_FIELDS: &[&str] = &[
    "entrypoint",
    "main_class",
    "entrypoint_args",
    "dependency_jars",
    "dependency_files",
    "image",
    "feature",
    "checkpoint_path",
];

/// The v1 CU fields. With `resource_config_version: v2` the service sizes the job from
/// `resource_config` ("v2 does not support setting the CU number", `resource_config_version` in
/// the SDK create/update bodies): they are neither sent nor compared.
pub const V1_RESOURCE_FIELDS: &[&str] = &[
    "cu_number",
    "manager_cu_number",
    "parallel_number",
    "tm_cus",
    "tm_slot_num",
];

/// The resource model version that replaces CU numbers with `resource_config`.
pub const RESOURCE_CONFIG_V2: &str = "v2";

impl JobKind {
    /// Whether a job of this kind carries the [`FlinkJobConfig`] field `field`.
    pub fn carries(self, field: &str) -> bool {
        match self {
            JobKind::FlinkSql => !JAR_ONLY_FIELDS.contains(&field),
            JobKind::FlinkJar => !SQL_ONLY_FIELDS.contains(&field),
            JobKind::Dlf => false,
        }
    }
}

/// What an update call sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateScope {
    /// Every field the job type's update body has (the job is not running).
    Full,
    /// Only the [`HOT_FIELDS`], for a running job: `changed` names the fields that differ from
    /// the live job (`obs_bucket` is sent only when it changed, as Terraform does).
    Running { changed: Vec<String> },
    /// The full update body, plus an empty value for each of `fields`: optional fields that git
    /// removed and that an update leaving them out would keep ([`CLEARABLE_FIELDS`]).
    Clearing { fields: Vec<String> },
}

/// Optional fields an update clears only by sending them empty (`""`, or `[]` for lists):
/// leaving them out keeps the live value, and the job would differ from git on every pass.
/// Chosen: no source says how the service clears a field; service-filled fields are not here
/// (an empty queue would unset the job's queue).
pub const CLEARABLE_FIELDS: &[&str] = &[
    "smn_topic",
    "obs_bucket",
    "main_class",
    "entrypoint_args",
    "image",
    "execution_agency_urn",
    "dependency_jars",
    "dependency_files",
];

impl UpdateScope {
    /// `Running` when every difference is a hot field (or tags, which go through the tag API),
    /// else `Full`. A hot-only body carries every change in the first case, whatever the status.
    pub fn for_diffs(diffs: &[FieldDiff]) -> UpdateScope {
        if diffs
            .iter()
            .all(|diff| diff.is_hot() || diff.field == "tags")
        {
            return UpdateScope::Running {
                changed: diffs.iter().map(|diff| diff.field.clone()).collect(),
            };
        }
        let cleared: Vec<String> = diffs
            .iter()
            .filter(|diff| {
                CLEARABLE_FIELDS.contains(&diff.field.as_str())
                    && (diff.desired.is_null() || diff.desired == serde_json::json!([]))
            })
            .map(|diff| diff.field.clone())
            .collect();
        if cleared.is_empty() {
            UpdateScope::Full
        } else {
            UpdateScope::Clearing { fields: cleared }
        }
    }
}

/// CPU cores of a `resource_spec` (a float on the wire), kept in thousandths so that the
/// configuration stays `Eq` and `Hash`; serialised as the number of cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpu(pub i64);

impl Cpu {
    /// From cores; `None` for values that are not finite or not positive.
    pub fn from_cores(cores: f64) -> Option<Cpu> {
        (cores.is_finite() && cores > 0.0 && cores < 1e9)
            .then(|| Cpu((cores * 1000.0).round() as i64))
    }
    pub fn cores(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl Serialize for Cpu {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            serializer.serialize_i64(self.0 / 1000)
        } else {
            serializer.serialize_f64(self.cores())
        }
    }
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cpu, D::Error> {
        let cores = f64::deserialize(deserializer)?;
        Cpu::from_cores(cores)
            .ok_or_else(|| serde::de::Error::custom(format!("{cores} is not a positive CPU count")))
    }
}

/// `resource_spec.py`: the CPU cores and memory of the job manager or of each task manager.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// As written, e.g. `4G` or `4096M` (Terraform: "in MB or GB (default)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

impl ResourceSpec {
    /// Unset parts taken from `live` (the service fills them).
    fn filled_from(&self, live: Option<&ResourceSpec>) -> ResourceSpec {
        ResourceSpec {
            cpu: self.cpu.or_else(|| live.and_then(|spec| spec.cpu)),
            memory: self
                .memory
                .clone()
                .or_else(|| live.and_then(|spec| spec.memory.clone())),
        }
    }
}

/// `resource_config.py`: the v2 resource model (`resource_config_version: v2`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Slots per task manager (service default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slot: Option<i32>,
    /// Parallelism (service default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_number: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobmanager_resource_spec: Option<ResourceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taskmanager_resource_spec: Option<ResourceSpec>,
}

impl ResourceConfig {
    /// Unset parts taken from `live`: Terraform marks every part Optional+Computed.
    pub fn filled_from(&self, live: Option<&ResourceConfig>) -> ResourceConfig {
        let spec = |desired: &Option<ResourceSpec>, live: Option<&ResourceSpec>| match desired {
            Some(spec) => Some(spec.filled_from(live)),
            None => live.cloned(),
        };
        ResourceConfig {
            max_slot: self.max_slot.or_else(|| live.and_then(|c| c.max_slot)),
            parallel_number: self
                .parallel_number
                .or_else(|| live.and_then(|c| c.parallel_number)),
            jobmanager_resource_spec: spec(
                &self.jobmanager_resource_spec,
                live.and_then(|c| c.jobmanager_resource_spec.as_ref()),
            ),
            taskmanager_resource_spec: spec(
                &self.taskmanager_resource_spec,
                live.and_then(|c| c.taskmanager_resource_spec.as_ref()),
            ),
        }
    }
}

/// A JSON text field (`operator_config`, `static_estimator_config`, `flink_log_config`) in
/// canonical form: parsed and written back compactly with sorted keys, so that formatting and
/// key order never count as a difference. Text that is not JSON is kept as it is.
pub fn canonical_json_text(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => sorted_json(&value).to_string(),
        Err(_) => text.trim().to_string(),
    }
}

fn sorted_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, sorted_json(v))).collect();
            let mut out = serde_json::Map::new();
            for (key, value) in sorted {
                out.insert(key.clone(), value);
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted_json).collect())
        }
        other => other.clone(),
    }
}

/// Every Flink job field compared between git and the live service, in canonical form.
///
/// `Option` fields are `None` when unset; empty strings from the service are normalised to
/// `None`. Fields listed in [`SERVICE_COMPUTED_FIELDS`] are ignored in comparisons when the
/// desired value is `None` (the service picks a value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlinkJobConfig {
    pub desc: String,
    /// `flink_opensource_sql_job` (default for SQL jobs), `flink_sql_job`, or `flink_jar_job`.
    pub job_type: String,
    pub queue_name: Option<String>,
    /// SQL jobs only.
    pub sql_body: Option<String>,
    /// `shared_cluster` (service default), `exclusive_cluster`, `edge_node`.
    pub run_mode: String,
    pub cu_number: i32,
    pub manager_cu_number: i32,
    pub parallel_number: i32,
    pub tm_cus: i32,
    pub tm_slot_num: Option<i32>,
    pub checkpoint_enabled: bool,
    pub checkpoint_mode: CheckpointMode,
    /// Seconds.
    pub checkpoint_interval: i32,
    pub checkpoint_path: Option<String>,
    pub obs_bucket: Option<String>,
    pub log_enabled: bool,
    pub smn_topic: Option<String>,
    pub restart_when_exception: bool,
    pub idle_state_retention: i32,
    pub resume_checkpoint: bool,
    pub resume_max_num: i64,
    /// `"0"` ignore, `"1"` throw, `"2:obs-dir"` save.
    pub dirty_data_strategy: String,
    pub udf_jar_url: Option<String>,
    pub flink_version: Option<String>,
    pub execution_agency_urn: Option<String>,
    /// The API's JSON string of `[{key, value}]`, as a sorted map.
    pub runtime_config: BTreeMap<String, String>,
    /// Includes [`MANAGED_TAG_KEY`] for managed jobs.
    pub tags: BTreeMap<String, String>,
    /// Jar jobs only.
    pub entrypoint: Option<String>,
    pub main_class: Option<String>,
    pub entrypoint_args: Option<String>,
    pub dependency_jars: Vec<String>,
    pub dependency_files: Vec<String>,
    pub image: Option<String>,
    /// Jar jobs only: `basic` or `custom`.
    pub feature: Option<String>,
    /// `v1` (service default) or `v2`.
    #[serde(default)]
    pub resource_config_version: Option<String>,
    /// The v2 resource model; only with `resource_config_version: v2`.
    #[serde(default)]
    pub resource_config: Option<ResourceConfig>,
    /// SQL jobs only: per-operator parallelism, a JSON string (canonical form).
    #[serde(default)]
    pub operator_config: Option<String>,
    /// SQL jobs only: per-operator traffic/hit-rate estimates, a JSON string (canonical form).
    #[serde(default)]
    pub static_estimator_config: Option<String>,
    /// Log levels, a JSON string `{root_logger_level, loggers_level_of_class}` (canonical form).
    #[serde(default)]
    pub flink_log_config: Option<String>,
}

/// Fields the service fills in when a request leaves them out; unset in git means "don't care".
///
/// Sources: Terraform marks `queue_name`, `feature`, `flink_version`, `udf_jar_url`,
/// `tm_slot_num`, `checkpoint_path`, `resource_config_version` and `resource_config`
/// Optional+Computed (`resource_huaweicloud_dli_flinksql_job.go`, `flinkjar_job.go`); the SDK
/// documents the `tm_slot_num` formula and the `v1` default of `resource_config_version`.
///
/// `operator_config`, `static_estimator_config` and `flink_log_config` are here too, for another
/// reason: the console writes them (the stream graph editor writes `operator_config`) and no
/// source says how an update clears one, so a job file that leaves them out leaves them alone
/// instead of restarting the job on every pass over a value it cannot remove.
pub const SERVICE_COMPUTED_FIELDS: &[&str] = &[
    "queue_name",
    "feature",
    "flink_version",
    "udf_jar_url",
    "tm_slot_num",
    "checkpoint_path",
    "resource_config_version",
    "resource_config",
    "operator_config",
    "static_estimator_config",
    "flink_log_config",
];

/// Service defaults, written out so that an unset field in git equals the live default.
pub mod defaults {
    pub const SQL_JOB_TYPE: &str = "flink_opensource_sql_job";
    pub const JAR_JOB_TYPE: &str = "flink_jar_job";
    /// Ours, not the service's: the SDK's SQL create body defaults `run_mode` to
    /// `shared_cluster` and `job_type` to `flink_opensource_sql_job`, a pair its own `job_type`
    /// description forbids ("shared_cluster → job_type must be flink_sql_job"). Shared queues
    /// are legacy, and `exclusive_cluster` is valid with both SQL job types, so dli-gitops always
    /// sends `exclusive_cluster` unless the job file says otherwise.
    pub const RUN_MODE: &str = "exclusive_cluster";
    pub const CU_NUMBER: i32 = 2;
    pub const MANAGER_CU_NUMBER: i32 = 1;
    pub const PARALLEL_NUMBER: i32 = 1;
    pub const TM_CUS: i32 = 1;
    pub const CHECKPOINT_INTERVAL: i32 = 10;
    pub const IDLE_STATE_RETENTION: i32 = 3600;
    pub const RESUME_MAX_NUM: i64 = -1;
    pub const DIRTY_DATA_STRATEGY: &str = "0";
}

impl FlinkJobConfig {
    /// A configuration with every field at the service default, for the given kind.
    pub fn defaults_for(kind: JobKind) -> FlinkJobConfig {
        FlinkJobConfig {
            desc: String::new(),
            job_type: match kind {
                JobKind::FlinkJar => defaults::JAR_JOB_TYPE.to_string(),
                _ => defaults::SQL_JOB_TYPE.to_string(),
            },
            queue_name: None,
            sql_body: None,
            run_mode: defaults::RUN_MODE.to_string(),
            cu_number: defaults::CU_NUMBER,
            manager_cu_number: defaults::MANAGER_CU_NUMBER,
            parallel_number: defaults::PARALLEL_NUMBER,
            tm_cus: defaults::TM_CUS,
            tm_slot_num: None,
            checkpoint_enabled: false,
            checkpoint_mode: CheckpointMode::ExactlyOnce,
            checkpoint_interval: defaults::CHECKPOINT_INTERVAL,
            checkpoint_path: None,
            obs_bucket: None,
            log_enabled: false,
            smn_topic: None,
            restart_when_exception: false,
            idle_state_retention: defaults::IDLE_STATE_RETENTION,
            resume_checkpoint: false,
            resume_max_num: defaults::RESUME_MAX_NUM,
            dirty_data_strategy: defaults::DIRTY_DATA_STRATEGY.to_string(),
            udf_jar_url: None,
            flink_version: None,
            execution_agency_urn: None,
            runtime_config: BTreeMap::new(),
            tags: BTreeMap::new(),
            entrypoint: None,
            main_class: None,
            entrypoint_args: None,
            dependency_jars: Vec::new(),
            dependency_files: Vec::new(),
            image: None,
            feature: None,
            resource_config_version: None,
            resource_config: None,
            operator_config: None,
            static_estimator_config: None,
            flink_log_config: None,
        }
    }

    /// Uses the v2 resource model.
    pub fn is_resource_v2(&self) -> bool {
        self.resource_config_version.as_deref() == Some(RESOURCE_CONFIG_V2)
    }

    /// Resets every field this configuration's kind cannot carry to its default, so that a
    /// value the service reports for a foreign field (say `run_mode` on a Jar job) never enters
    /// the model.
    pub fn clear_foreign_fields(&mut self) {
        let kind = self.kind();
        let defaults = FlinkJobConfig::defaults_for(kind);
        if !kind.carries("sql_body") {
            self.sql_body = defaults.sql_body;
            self.run_mode = defaults.run_mode;
            self.idle_state_retention = defaults.idle_state_retention;
            self.dirty_data_strategy = defaults.dirty_data_strategy;
            self.udf_jar_url = defaults.udf_jar_url;
            self.operator_config = defaults.operator_config;
            self.static_estimator_config = defaults.static_estimator_config;
        }
        if !kind.carries("entrypoint") {
            self.entrypoint = defaults.entrypoint;
            self.main_class = defaults.main_class;
            self.entrypoint_args = defaults.entrypoint_args;
            self.dependency_jars = defaults.dependency_jars;
            self.dependency_files = defaults.dependency_files;
            self.image = defaults.image;
            self.feature = defaults.feature;
            self.checkpoint_path = defaults.checkpoint_path;
        }
    }

    /// Whether `field` is compared between git (`self`) and the live job: fields the kind
    /// carries, minus the v1 CU fields of a v2 job (the service computes them).
    pub fn compares(&self, field: &str) -> bool {
        self.kind().carries(field)
            && !(self.is_resource_v2() && V1_RESOURCE_FIELDS.contains(&field))
    }

    /// `self` with every service-filled field that git leaves unset taken from `live`, so that
    /// "unset in git" compares equal to whatever the service filled in.
    fn with_service_filled(&self, live: &FlinkJobConfig) -> FlinkJobConfig {
        let mut filled = self.clone();
        let take = |desired: &mut Option<String>, live: &Option<String>| {
            if desired.is_none() {
                desired.clone_from(live);
            }
        };
        take(&mut filled.queue_name, &live.queue_name);
        take(&mut filled.feature, &live.feature);
        take(&mut filled.flink_version, &live.flink_version);
        take(&mut filled.udf_jar_url, &live.udf_jar_url);
        take(&mut filled.checkpoint_path, &live.checkpoint_path);
        take(
            &mut filled.resource_config_version,
            &live.resource_config_version,
        );
        take(&mut filled.operator_config, &live.operator_config);
        take(
            &mut filled.static_estimator_config,
            &live.static_estimator_config,
        );
        take(&mut filled.flink_log_config, &live.flink_log_config);
        if filled.tm_slot_num.is_none() {
            filled.tm_slot_num = live.tm_slot_num;
        }
        filled.resource_config = match &self.resource_config {
            Some(desired) => Some(desired.filled_from(live.resource_config.as_ref())),
            None => live.resource_config.clone(),
        };
        filled
    }

    /// The kind this configuration describes, from its `job_type`.
    pub fn kind(&self) -> JobKind {
        if self.job_type == defaults::JAR_JOB_TYPE {
            JobKind::FlinkJar
        } else {
            JobKind::FlinkSql
        }
    }

    /// The fields as a JSON object (field name → value), sorted by field name.
    pub fn to_field_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            // A struct of plain data always serialises to an object.
            _ => serde_json::Map::new(),
        }
    }

    /// The fields whose values differ between `self` (desired) and `live`, in a stable order.
    /// Only fields the job type carries are compared ([`FlinkJobConfig::compares`]);
    /// service-computed fields that are unset in `self` (and unset parts of `resource_config`)
    /// are skipped.
    pub fn field_diffs(&self, live: &FlinkJobConfig) -> Vec<FieldDiff> {
        self.field_diffs_with(live, None)
    }

    /// [`FlinkJobConfig::field_diffs`] with `live`'s field map ([`FlinkJobConfig::to_field_map`])
    /// already built, for a caller that compares many configs with one (the planner's creates,
    /// all compared with the service defaults).
    pub fn field_diffs_with(
        &self,
        live: &FlinkJobConfig,
        live_map: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Vec<FieldDiff> {
        // The common case in a steady state; building the JSON maps below is ~80% of planning
        // time at 10,000 jobs (BENCHMARKS.md), so skip it when the configs are identical.
        if self == live {
            return Vec::new();
        }
        // Against one live job: a service-filled field unset in git matches whatever the
        // service filled in. A caller comparing many configs with one (the creates) skips this
        // copy; the walk below gives the same answer field by field.
        if live_map.is_none() && self.with_service_filled(live) == *live {
            return Vec::new();
        }
        // What `with_service_filled` would make of `resource_config`: its unset parts are the
        // live ones. Every other service-filled field is either set in git (compared as is) or
        // unset (skipped below: the filled value would equal the live one).
        let filled_resources = self
            .resource_config
            .as_ref()
            .map(|desired| desired.filled_from(live.resource_config.as_ref()));
        let built;
        let live_fields = match live_map {
            Some(map) => map,
            None => {
                built = live.to_field_map();
                &built
            }
        };
        let mut diffs = Vec::new();
        // Field by field, each value moving into its diff (no field map of `self` is built).
        let walked = struct_fields::for_each_field(self, |field, desired_value| {
            if !self.compares(field) {
                return;
            }
            let desired_value = match (field, &filled_resources) {
                ("resource_config", Some(filled)) => {
                    serde_json::to_value(filled).unwrap_or(desired_value)
                }
                _ => desired_value,
            };
            if desired_value.is_null() && SERVICE_COMPUTED_FIELDS.contains(&field) {
                return;
            }
            let live_value = live_fields.get(field).unwrap_or(&serde_json::Value::Null);
            if desired_value != *live_value {
                diffs.push(FieldDiff {
                    live: live_value.clone(),
                    field: field.to_string(),
                    desired: desired_value,
                });
            }
        });
        if let Err(error) = walked {
            // Unreachable for a derived struct of plain data; if it ever happened, the configs
            // still differ (they are not equal) and the plan must not say otherwise.
            diffs.push(FieldDiff {
                field: "(configuration)".to_string(),
                live: serde_json::Value::Null,
                desired: serde_json::Value::String(error.to_string()),
            });
        }
        // In field-name order, as the field map gave them.
        diffs.sort_by(|a, b| a.field.cmp(&b.field));
        diffs
    }
}

/// One field that differs between git and the live service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub live: serde_json::Value,
    pub desired: serde_json::Value,
}

impl FieldDiff {
    /// Whether the field can change without stopping the job.
    pub fn is_hot(&self) -> bool {
        HOT_FIELDS.contains(&self.field.as_str())
    }
}

/// Where in the repository a job was declared (for messages).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct SourceLocation {
    /// Path relative to the repository root, with `/` separators.
    pub file: String,
    pub line: u32,
}

/// What a job does about drift on automatic passes (`drift:` in a job file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMode {
    /// Put the live job back to git (self-heal for this job).
    Revert,
    /// Show and journal the drift, leave the live job as it is.
    Report,
}

impl DriftMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftMode::Revert => "revert",
            DriftMode::Report => "report",
        }
    }
}

/// How a job relates to the other jobs of its target and what happens to its drift. Ours,
/// never sent to the service, and no part of the job's digest: changing it restarts nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct JobPolicy {
    /// Jobs of the same target this one depends on, as journal keys (`name` for a Flink job,
    /// `dlf:name` for a DLF job), in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Overrides the target's `self_heal` for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftMode>,
    /// Fields that may change on the live side without counting as drift; an update of the
    /// job keeps their live values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<String>,
    /// Overrides the target's `policy.rollback_on_failure` for this job (automatic rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_on_failure: Option<RollbackOverride>,
}

/// A job's `rollback_on_failure: {enabled, within}`: each part, when set, wins over the
/// target's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RollbackOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
}

impl JobPolicy {
    pub fn is_default(&self) -> bool {
        *self == JobPolicy::default()
    }

    pub fn ignores(&self, field: &str) -> bool {
        self.ignore_differences.iter().any(|name| name == field)
    }
}

/// A Flink job as git wants it, resolved for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredFlinkJob {
    pub name: String,
    pub config: FlinkJobConfig,
    pub lifecycle: Lifecycle,
    pub source: SourceLocation,
    /// Stable content digest of `config` + `lifecycle` (hex SHA-256).
    pub digest: String,
    /// Dependencies and drift policy (not part of `digest`).
    #[serde(default, skip_serializing_if = "JobPolicy::is_default")]
    pub policy: JobPolicy,
}

impl DesiredFlinkJob {
    pub fn kind(&self) -> JobKind {
        self.config.kind()
    }
}

/// A DLF resource replacement applied at import (`{name, type, replace}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DlfResourceReplacement {
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
}

/// How a DLF job is imported into one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DlfImportSettings {
    pub params: BTreeMap<String, String>,
    /// Per-job parameters (`jobsParam[].params` for this job).
    pub job_params: BTreeMap<String, String>,
    pub resources: Vec<DlfResourceReplacement>,
    /// `SAVED`, `SUBMITTED` or `PRODUCTION`.
    pub target_status: Option<String>,
    pub approvers: Vec<String>,
    pub execute_user: Option<String>,
}

/// A DataArts Factory job as git wants it, resolved for one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredDlfJob {
    pub name: String,
    /// The `.job` document (the CreateJob body, as DataArts exports it), variables filled.
    pub definition: serde_json::Value,
    /// Scripts the job uses, by script name (`.script` documents).
    pub scripts: BTreeMap<String, serde_json::Value>,
    pub import: DlfImportSettings,
    pub prune: bool,
    /// `desired_state` of a DLF job: `Running` keeps it scheduled (DataArts "start"),
    /// `Stopped` keeps its schedule stopped; `None` leaves the schedule as found (a job
    /// stopped for an overwrite is started again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<RunState>,
    pub source: SourceLocation,
    pub digest: String,
    /// Dependencies and drift policy (not part of `digest`).
    #[serde(default, skip_serializing_if = "JobPolicy::is_default")]
    pub policy: JobPolicy,
}

/// Everything a repository declares for one environment, sorted by name within each kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DesiredJobs {
    pub flink: Vec<DesiredFlinkJob>,
    pub dlf: Vec<DesiredDlfJob>,
}

/// The live status of a DLI Flink job, as the service reports it (`status` of the job list and
/// the job detail). The known values are those the DLI SDK models document (GoSDK
/// `model_flink_job.go`, docs dli_02_0234; see `dli-dlf-api-notes.md` §1.2); a value this build
/// does not know is kept verbatim in [`FlinkJobStatus::Other`], so it round-trips unchanged and
/// is treated as neither running, stopped nor moving. On the wire (and in the journal) a status
/// is its string: `job_running`, `job_init`, ...
#[derive(Debug, Clone)]
pub enum FlinkJobStatus {
    /// `job_init`: a draft, never started (or reset).
    Init,
    /// `job_submitting`: being submitted.
    Submitting,
    /// `job_submit_fail`: the submit failed.
    SubmitFail,
    /// `job_running`.
    Running,
    /// `job_running_exception`: stopped by an exception.
    RunningException,
    /// `job_downloading`.
    Downloading,
    /// `job_idle`.
    Idle,
    /// `job_canceling`: stopping.
    Canceling,
    /// `job_cancel_success`: stopped.
    CancelSuccess,
    /// `job_cancel_fail`: the stop failed.
    CancelFail,
    /// `job_savepointing`: taking a savepoint.
    Savepointing,
    /// `job_arrearage_stopped`: stopped because the account is in arrears.
    ArrearageStopped,
    /// `job_arrearage_recovering`: recovering after a recharge.
    ArrearageRecovering,
    /// `job_finish`: finished (a bounded job ran to its end).
    Finish,
    /// A status this build does not know, kept as the service wrote it.
    Other(String),
}

impl FlinkJobStatus {
    /// Every status this build knows.
    pub const KNOWN: [FlinkJobStatus; 14] = [
        FlinkJobStatus::Init,
        FlinkJobStatus::Submitting,
        FlinkJobStatus::SubmitFail,
        FlinkJobStatus::Running,
        FlinkJobStatus::RunningException,
        FlinkJobStatus::Downloading,
        FlinkJobStatus::Idle,
        FlinkJobStatus::Canceling,
        FlinkJobStatus::CancelSuccess,
        FlinkJobStatus::CancelFail,
        FlinkJobStatus::Savepointing,
        FlinkJobStatus::ArrearageStopped,
        FlinkJobStatus::ArrearageRecovering,
        FlinkJobStatus::Finish,
    ];

    /// The status a wire string names: a known variant, else [`FlinkJobStatus::Other`].
    pub fn new(status: &str) -> FlinkJobStatus {
        FlinkJobStatus::KNOWN
            .iter()
            .find(|known| known.as_str() == status)
            .cloned()
            .unwrap_or_else(|| FlinkJobStatus::Other(status.to_string()))
    }

    /// The wire string (`job_running`), or the unknown value as received.
    pub fn as_str(&self) -> &str {
        match self {
            FlinkJobStatus::Init => "job_init",
            FlinkJobStatus::Submitting => "job_submitting",
            FlinkJobStatus::SubmitFail => "job_submit_fail",
            FlinkJobStatus::Running => "job_running",
            FlinkJobStatus::RunningException => "job_running_exception",
            FlinkJobStatus::Downloading => "job_downloading",
            FlinkJobStatus::Idle => "job_idle",
            FlinkJobStatus::Canceling => "job_canceling",
            FlinkJobStatus::CancelSuccess => "job_cancel_success",
            FlinkJobStatus::CancelFail => "job_cancel_fail",
            FlinkJobStatus::Savepointing => "job_savepointing",
            FlinkJobStatus::ArrearageStopped => "job_arrearage_stopped",
            FlinkJobStatus::ArrearageRecovering => "job_arrearage_recovering",
            FlinkJobStatus::Finish => "job_finish",
            FlinkJobStatus::Other(other) => other,
        }
    }

    /// Running, or about to be.
    pub fn is_running(&self) -> bool {
        matches!(self, FlinkJobStatus::Running)
    }
    /// Moving between states; wait before acting.
    pub fn is_transitional(&self) -> bool {
        matches!(
            self,
            FlinkJobStatus::Submitting
                | FlinkJobStatus::Canceling
                | FlinkJobStatus::Savepointing
                | FlinkJobStatus::Downloading
                | FlinkJobStatus::ArrearageRecovering
        )
    }
    /// Not running and not moving: safe to import over, import a savepoint into, or start.
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            FlinkJobStatus::Init
                | FlinkJobStatus::CancelSuccess
                | FlinkJobStatus::SubmitFail
                | FlinkJobStatus::RunningException
                | FlinkJobStatus::CancelFail
                | FlinkJobStatus::Finish
                | FlinkJobStatus::Idle
                | FlinkJobStatus::ArrearageStopped
        )
    }
    /// A failure state that needs attention.
    pub fn is_failed(&self) -> bool {
        matches!(
            self,
            FlinkJobStatus::SubmitFail
                | FlinkJobStatus::RunningException
                | FlinkJobStatus::CancelFail
        )
    }
    /// Down when it should not be: a failure, or stopped because the account is in arrears
    /// (the status page's Degraded).
    pub fn is_degraded(&self) -> bool {
        self.is_failed() || matches!(self, FlinkJobStatus::ArrearageStopped)
    }
}

// Equality, order and hash are those of the wire string, so an `Other` that was built by hand
// from a known string still equals its variant, and sorting by status sorts as the strings did.
impl PartialEq for FlinkJobStatus {
    fn eq(&self, other: &FlinkJobStatus) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for FlinkJobStatus {}

impl PartialOrd for FlinkJobStatus {
    fn partial_cmp(&self, other: &FlinkJobStatus) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FlinkJobStatus {
    fn cmp(&self, other: &FlinkJobStatus) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for FlinkJobStatus {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<&str> for FlinkJobStatus {
    fn from(status: &str) -> FlinkJobStatus {
        FlinkJobStatus::new(status)
    }
}

impl From<String> for FlinkJobStatus {
    fn from(status: String) -> FlinkJobStatus {
        FlinkJobStatus::new(&status)
    }
}

impl std::str::FromStr for FlinkJobStatus {
    type Err = std::convert::Infallible;
    fn from_str(status: &str) -> Result<FlinkJobStatus, Self::Err> {
        Ok(FlinkJobStatus::new(status))
    }
}

impl Serialize for FlinkJobStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FlinkJobStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(FlinkJobStatus::from)
    }
}

impl fmt::Display for FlinkJobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DLI Flink job as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFlinkJob {
    pub id: i64,
    pub name: String,
    pub status: FlinkJobStatus,
    /// 13-digit epoch milliseconds.
    pub update_time: i64,
    pub config: FlinkJobConfig,
    /// The latest savepoint the service knows for the job (`obs://bucket/dir/`).
    pub savepoint_path: Option<String>,
    pub status_desc: Option<String>,
}

impl ObservedFlinkJob {
    /// Carries the managed-by tag.
    pub fn is_managed(&self) -> bool {
        self.config.tags.get(MANAGED_TAG_KEY).map(String::as_str) == Some(MANAGED_TAG_VALUE)
    }

    /// Whose job this is, for the installation named `instance`.
    pub fn ownership(&self, instance: &str) -> Ownership {
        match self.config.tags.get(MANAGED_TAG_KEY) {
            Some(value) if *value == managed_tag_value(instance) => Ownership::Ours,
            Some(value)
                if value == MANAGED_TAG_VALUE
                    || value.starts_with(&format!("{MANAGED_TAG_VALUE}.")) =>
            {
                Ownership::Other(value.clone())
            }
            _ => Ownership::Unmanaged,
        }
    }
}

/// A DataArts Factory job as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedDlfJob {
    pub name: String,
    pub definition: serde_json::Value,
    /// `lastUpdateTime` from the list (13-digit epoch milliseconds).
    pub last_update: Option<i64>,
    /// The list's scheduling status (`NORMAL`, `STOPPED`, ...), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl ObservedDlfJob {
    /// The job's schedule runs, or is on its way to (anything but stopped, or not yet
    /// started): DataArts neither imports over nor deletes such a job.
    pub fn is_scheduled(&self) -> bool {
        dlf_status_is_scheduled(self.status.as_deref())
    }
}

/// [`ObservedDlfJob::is_scheduled`] for a bare status.
pub fn dlf_status_is_scheduled(status: Option<&str>) -> bool {
    status.is_some_and(|status| !matches!(status, "STOPPED" | "STOPPING" | "INIT" | ""))
}

/// Everything observed in one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ObservedJobs {
    pub flink: Vec<ObservedFlinkJob>,
    pub dlf: Vec<ObservedDlfJob>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_job_status_parses_every_known_value_and_round_trips_through_serde() {
        for known in FlinkJobStatus::KNOWN {
            let wire = known.as_str().to_string();
            assert!(wire.starts_with("job_"), "{wire}");
            let parsed = FlinkJobStatus::new(&wire);
            assert!(!matches!(parsed, FlinkJobStatus::Other(_)), "{wire}");
            assert_eq!(parsed, known);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, format!("\"{wire}\""));
            let back: FlinkJobStatus = serde_json::from_str(&json).unwrap();
            assert!(!matches!(back, FlinkJobStatus::Other(_)), "{wire}");
            assert_eq!(back, known);
            assert_eq!(back.to_string(), wire);
        }
        assert_eq!(FlinkJobStatus::new("job_running"), FlinkJobStatus::Running);
        assert_eq!(
            "job_cancel_success".parse::<FlinkJobStatus>().unwrap(),
            FlinkJobStatus::CancelSuccess
        );
        let parsed: FlinkJobStatus = serde_json::from_str("\"job_finish\"").unwrap();
        assert!(matches!(parsed, FlinkJobStatus::Finish));
    }

    #[test]
    fn an_unknown_flink_job_status_is_kept_verbatim_and_is_neither_running_nor_stopped() {
        for wire in ["job_paused_by_ops", "JOB_RUNNING", "", " job_running"] {
            let parsed = FlinkJobStatus::new(wire);
            assert!(matches!(&parsed, FlinkJobStatus::Other(kept) if kept == wire));
            assert_eq!(parsed.as_str(), wire);
            assert!(!parsed.is_running() && !parsed.is_stopped());
            assert!(!parsed.is_transitional() && !parsed.is_failed());
            let json = serde_json::to_value(&parsed).unwrap();
            assert_eq!(json, serde_json::json!(wire));
            let back: FlinkJobStatus = serde_json::from_value(json).unwrap();
            assert!(matches!(&back, FlinkJobStatus::Other(kept) if kept == wire));
        }
        // Built by hand from a known string, `Other` still equals the variant (equality, order
        // and hash follow the wire string).
        assert_eq!(
            FlinkJobStatus::Other("job_running".into()),
            FlinkJobStatus::Running
        );
        let mut sorted = [
            FlinkJobStatus::Running,
            FlinkJobStatus::Other("job_aaa".into()),
            FlinkJobStatus::CancelSuccess,
        ];
        sorted.sort();
        let words: Vec<&str> = sorted.iter().map(FlinkJobStatus::as_str).collect();
        assert_eq!(words, ["job_aaa", "job_cancel_success", "job_running"]);
    }

    #[test]
    fn checkpoint_mode_accepts_every_service_representation() {
        for value in [
            serde_json::json!(1),
            serde_json::json!("1"),
            serde_json::json!("exactly_once"),
        ] {
            assert_eq!(
                CheckpointMode::from_api(&value),
                Some(CheckpointMode::ExactlyOnce)
            );
        }
        for value in [serde_json::json!(2), serde_json::json!("at_least_once")] {
            assert_eq!(
                CheckpointMode::from_api(&value),
                Some(CheckpointMode::AtLeastOnce)
            );
        }
        assert_eq!(CheckpointMode::from_api(&serde_json::json!(3)), None);
    }

    #[test]
    fn equal_configs_have_no_diff_and_hot_fields_are_flagged() {
        let desired = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        let mut live = desired.clone();
        assert!(desired.field_diffs(&live).is_empty());
        live.smn_topic = Some("alerts".into());
        live.cu_number = 8;
        let diffs = desired.field_diffs(&live);
        let fields: Vec<_> = diffs
            .iter()
            .map(|d| (d.field.as_str(), d.is_hot()))
            .collect();
        assert_eq!(fields, vec![("cu_number", false), ("smn_topic", true)]);
    }

    #[test]
    fn per_type_fields_and_console_written_json_fields() {
        let mut desired = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
        desired.entrypoint = Some("obs://b/a.jar".into());
        let mut live = desired.clone();
        // SQL-only values on a Jar job are not compared, nor is a console-set operator config.
        live.run_mode = "shared_cluster".into();
        live.idle_state_retention = 1;
        live.flink_log_config = Some(canonical_json_text(r#"{"root_logger_level":"WARN"}"#));
        live.feature = Some("basic".into());
        live.queue_name = Some("default".into());
        assert_eq!(desired.field_diffs(&live), vec![]);
        // Pinned in git, they are compared.
        desired.flink_log_config = Some(canonical_json_text(r#"{"root_logger_level": "INFO"}"#));
        desired.feature = Some("custom".into());
        let fields: Vec<String> = desired
            .field_diffs(&live)
            .into_iter()
            .map(|diff| diff.field)
            .collect();
        assert_eq!(fields, vec!["feature", "flink_log_config"]);
        // JSON text compares in canonical form.
        assert_eq!(
            canonical_json_text(r#"{ "b": 1, "a": {"d": 2, "c": 3} }"#),
            r#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }

    #[test]
    fn v2_jobs_are_not_compared_on_cu_fields_and_resource_parts_are_filled() {
        let mut desired = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        desired.resource_config_version = Some(RESOURCE_CONFIG_V2.into());
        desired.resource_config = Some(ResourceConfig {
            parallel_number: Some(4),
            ..ResourceConfig::default()
        });
        let mut live = desired.clone();
        live.cu_number = 9;
        live.tm_cus = 3;
        live.resource_config = Some(ResourceConfig {
            max_slot: Some(1),
            parallel_number: Some(4),
            taskmanager_resource_spec: Some(ResourceSpec {
                cpu: Cpu::from_cores(1.0),
                memory: Some("4G".into()),
            }),
            ..ResourceConfig::default()
        });
        assert_eq!(desired.field_diffs(&live), vec![]);
        live.resource_config.as_mut().unwrap().parallel_number = Some(2);
        assert_eq!(desired.field_diffs(&live).len(), 1);
    }

    /// The creates' path (the live field map built once, no filled copy) and the one-job path
    /// find the same differences, service-filled fields and partial `resource_config` included.
    #[test]
    fn diffs_against_a_prebuilt_live_map_equal_the_one_job_diffs() {
        let mut live = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        live.tm_slot_num = Some(4);
        live.flink_version = Some("1.15".into());
        live.resource_config_version = Some(RESOURCE_CONFIG_V2.into());
        live.resource_config = Some(ResourceConfig {
            max_slot: Some(1),
            parallel_number: Some(4),
            ..ResourceConfig::default()
        });
        let live_map = live.to_field_map();
        let mut cases = Vec::new();
        let base = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        cases.push(base.clone());
        let mut v2 = base.clone();
        v2.resource_config_version = Some(RESOURCE_CONFIG_V2.into());
        v2.resource_config = Some(ResourceConfig {
            parallel_number: Some(4),
            ..ResourceConfig::default()
        });
        cases.push(v2.clone());
        v2.resource_config.as_mut().unwrap().parallel_number = Some(2);
        v2.cu_number = 7;
        cases.push(v2);
        let mut pinned = base.clone();
        pinned.tm_slot_num = Some(2);
        pinned.sql_body = Some("SELECT 2".into());
        pinned.tags.insert("team".into(), "a".into());
        cases.push(pinned);
        for desired in cases {
            assert_eq!(
                desired.field_diffs_with(&live, Some(&live_map)),
                desired.field_diffs(&live),
                "{desired:?}"
            );
        }
    }

    #[test]
    fn service_computed_fields_are_ignored_when_unset_in_git() {
        let desired = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        let mut live = desired.clone();
        live.tm_slot_num = Some(4);
        live.flink_version = Some("1.15".into());
        assert!(desired.field_diffs(&live).is_empty());
        let mut pinned = desired.clone();
        pinned.tm_slot_num = Some(2);
        assert_eq!(pinned.field_diffs(&live).len(), 1);
    }
}
