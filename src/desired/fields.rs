//! The table of every field a job file may hold: its kinds, type, range and description.
//! Validation, the JSON Schema and rendering all read this one table, so they cannot disagree.
//!
//! Limits come from the DLI/DLF API notes (`/shared/reference/dli-dlf-api-notes.md`) where
//! the API documents one; where it does not, the limit is ours and the description says so.

use std::collections::BTreeMap;

use super::convert::{
    check_bucket_name, check_dirty_data_strategy, check_flink_log_config, check_flink_or_dlf_name,
    check_json_object, check_obs_url,
};
use super::yaml::Mark;
use crate::model::{ResourceConfig, Restore};

/// Which kinds a field belongs to (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kinds(pub(crate) u8);

impl Kinds {
    pub const SQL: Kinds = Kinds(1);
    pub const JAR: Kinds = Kinds(2);
    pub const DLF: Kinds = Kinds(4);
    pub const FLINK: Kinds = Kinds(1 | 2);
    pub const ALL: Kinds = Kinds(1 | 2 | 4);
    const FLINK_AND_DLF: Kinds = Kinds(1 | 2 | 4);

    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The type and range of a field's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldType {
    /// Any non-null scalar, taken as written; length in characters.
    Text {
        min_chars: usize,
        max_chars: usize,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Boolean,
    Choice(&'static [&'static str]),
    /// A mapping of text keys to scalar values (stringified).
    TextMap {
        max_entries: usize,
        max_key_chars: usize,
        max_value_chars: usize,
    },
    /// A list of non-empty text values.
    TextList {
        max_items: usize,
    },
    /// `{savepoint_path, nonce, from_target}`.
    Restore,
    /// `{max_slot, parallel_number, jobmanager_resource_spec, taskmanager_resource_spec}`.
    ResourceConfig,
}

/// An extra check on a text value: `Err((message, hint))`.
pub(crate) type TextCheck = fn(&str) -> Result<(), (String, Option<String>)>;

/// One field of a job file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldSpec {
    pub name: &'static str,
    pub kinds: Kinds,
    pub field_type: FieldType,
    pub description: &'static str,
    /// An extra check on text values: `Err((message, hint))`.
    pub check: Option<TextCheck>,
}

const fn field(
    name: &'static str,
    kinds: Kinds,
    field_type: FieldType,
    description: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        kinds,
        field_type,
        description,
        check: None,
    }
}

const fn text(max_chars: usize) -> FieldType {
    FieldType::Text {
        min_chars: 1,
        max_chars,
    }
}

/// Every field, in the order rendering writes them.
pub(crate) const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        check: None,
        ..field(
            "$schema",
            Kinds::ALL,
            text(2048),
            "JSON Schema reference for editors; ignored by dli-gitops.",
        )
    },
    field(
        "kind",
        Kinds::ALL,
        FieldType::Choice(&["FlinkSqlJob", "FlinkJarJob", "DlfJob"]),
        "What this document declares.",
    ),
    FieldSpec {
        check: Some(check_flink_or_dlf_name),
        ..field(
            "name",
            Kinds::ALL,
            text(128),
            "The job's name on the live side, its identity. Flink: at most 57 characters (DLI limit); DLF: at most 128. Letters, digits, `-` and `_` (and `.` for DLF): a restriction of ours, since names become file names.",
        )
    },
    field(
        "desc",
        Kinds::FLINK,
        FieldType::Text {
            min_chars: 0,
            max_chars: 2048,
        },
        "Description (DLI: at most 2048 characters; 512 for Jar jobs).",
    ),
    field(
        "job_type",
        Kinds::SQL,
        FieldType::Choice(&["flink_opensource_sql_job", "flink_sql_job"]),
        "DLI job type. Default flink_opensource_sql_job.",
    ),
    field(
        "queue_name",
        Kinds::FLINK,
        text(128),
        "The DLI queue (elastic resource pool queue) the job runs on. Unset: whatever queue the service assigns is accepted.",
    ),
    field(
        "sql_file",
        Kinds::SQL,
        text(1024),
        "File holding the job's SQL, relative to this YAML file. Use this or sql_body.",
    ),
    field(
        "sql_body",
        Kinds::SQL,
        text(1024 * 1024),
        "The job's SQL inline (DLI: at most 1 MiB). Use this or sql_file.",
    ),
    field(
        "run_mode",
        Kinds::SQL,
        FieldType::Choice(&["shared_cluster", "exclusive_cluster", "edge_node"]),
        "Where the job runs. Default exclusive_cluster (ours: the service's shared_cluster is not valid with flink_opensource_sql_job). shared_cluster needs job_type flink_sql_job; edge_node is not supported (it needs job_type flink_sql_edge_job and edge groups).",
    ),
    field(
        "resource_config_version",
        Kinds::FLINK,
        FieldType::Choice(&["v1", "v2"]),
        "Resource model: v1 sizes the job in CUs (cu_number, manager_cu_number, tm_cus, tm_slot_num, parallel_number), v2 with resource_config (DLI recommends v2; v1 fits Flink 1.12/1.13/1.15, v2 Flink 1.13/1.15/1.17). Unset: the service's v1.",
    ),
    field(
        "resource_config",
        Kinds::FLINK,
        FieldType::ResourceConfig,
        "v2 resources (only with resource_config_version: v2): max_slot (slots per task manager, default 1), parallel_number (default 1), jobmanager_resource_spec and taskmanager_resource_spec, each {cpu: cores, memory: e.g. 4G or 4096M}. Unset parts: the service's.",
    ),
    field(
        "cu_number",
        Kinds::FLINK,
        FieldType::Integer { min: 2, max: 400 },
        "Total CUs of the job (DLI: 2-400). Default 2.",
    ),
    field(
        "manager_cu_number",
        Kinds::FLINK,
        FieldType::Integer { min: 1, max: 400 },
        "CUs of the job manager. Default 1. Upper bound 400 is ours (cu_number's).",
    ),
    field(
        "parallel_number",
        Kinds::FLINK,
        FieldType::Integer { min: 1, max: 2000 },
        "Parallelism (DLI: 1-2000). Default 1.",
    ),
    field(
        "tm_cus",
        Kinds::FLINK,
        FieldType::Integer { min: 1, max: 400 },
        "CUs per task manager. Default 1. Upper bound 400 is ours.",
    ),
    field(
        "tm_slot_num",
        Kinds::FLINK,
        FieldType::Integer { min: 1, max: 2000 },
        "Slots per task manager. Unset: the service computes it. Upper bound 2000 is ours.",
    ),
    field(
        "checkpoint_enabled",
        Kinds::FLINK,
        FieldType::Boolean,
        "Take checkpoints. Default false.",
    ),
    field(
        "checkpoint_mode",
        Kinds::FLINK,
        FieldType::Choice(&["exactly_once", "at_least_once"]),
        "Checkpoint guarantee (the API's 1 and 2). Default exactly_once.",
    ),
    field(
        "checkpoint_interval",
        Kinds::FLINK,
        FieldType::Integer { min: 1, max: 3600 },
        "Seconds between checkpoints (DLI: 1-3600). Default 10.",
    ),
    FieldSpec {
        check: Some(check_obs_url),
        ..field(
            "checkpoint_path",
            Kinds::JAR,
            text(1024),
            "obs:// path for checkpoints; must differ per job. Unset: the service picks one.",
        )
    },
    FieldSpec {
        check: Some(check_bucket_name),
        ..field(
            "obs_bucket",
            Kinds::FLINK,
            text(63),
            "OBS bucket for checkpoints and logs (a bucket name, not a URL). Changes without a restart.",
        )
    },
    field(
        "log_enabled",
        Kinds::FLINK,
        FieldType::Boolean,
        "Upload job logs to obs_bucket. Default false.",
    ),
    field(
        "smn_topic",
        Kinds::FLINK,
        text(255),
        "SMN topic notified when the job fails. Changes without a restart.",
    ),
    field(
        "restart_when_exception",
        Kinds::FLINK,
        FieldType::Boolean,
        "Restart the job automatically after an exception. Default false. Changes without a restart.",
    ),
    field(
        "idle_state_retention",
        Kinds::SQL,
        FieldType::Integer {
            min: 1,
            max: i32::MAX as i64,
        },
        "Idle state retention (the SDK says seconds; the unit is unconfirmed). Default 3600.",
    ),
    field(
        "resume_checkpoint",
        Kinds::FLINK,
        FieldType::Boolean,
        "Resume from the latest checkpoint after an automatic restart. Default false. Changes without a restart.",
    ),
    field(
        "resume_max_num",
        Kinds::FLINK,
        FieldType::Integer {
            min: -1,
            max: 100_000,
        },
        "Maximum automatic restarts per hour: -1 (unlimited, the default) or more than 0 (DLI). Upper bound is ours. Changes without a restart.",
    ),
    FieldSpec {
        check: Some(check_dirty_data_strategy),
        ..field(
            "dirty_data_strategy",
            Kinds::SQL,
            text(1024),
            "Dirty data: \"0\" ignore (default), \"1\" throw, \"2:obs://bucket/dir\" save.",
        )
    },
    field(
        "udf_jar_url",
        Kinds::SQL,
        text(1024),
        "UDF jar: an OBS path or a DLI package name. Unset: whatever the service reports is accepted.",
    ),
    FieldSpec {
        check: Some(check_json_object),
        ..field(
            "operator_config",
            Kinds::SQL,
            text(65536),
            "Per-operator parallelism, the API's JSON text, e.g. '{\"operator_list\":[{\"id\":\"0a44...\",\"parallelism\":2}]}'. Sent by an update right after create (the create body has no such field). Limit ours.",
        )
    },
    FieldSpec {
        check: Some(check_json_object),
        ..field(
            "static_estimator_config",
            Kinds::SQL,
            text(65536),
            "Per-operator traffic/hit-rate estimates, the API's JSON text, e.g. '{\"operator_list\":[{\"id\":\"0a44...\",\"rate_factor\":0.55}]}'. Sent like operator_config. Limit ours.",
        )
    },
    FieldSpec {
        check: Some(check_flink_log_config),
        ..field(
            "flink_log_config",
            Kinds::FLINK,
            text(65536),
            "Log levels, the API's JSON text: '{\"root_logger_level\":\"INFO\",\"loggers_level_of_class\":{\"org.apache.flink\":\"WARN\"}}'; levels TRACE, DEBUG, INFO, WARN, ERROR. Limit ours.",
        )
    },
    field(
        "flink_version",
        Kinds::FLINK,
        text(16),
        "Flink version, e.g. \"1.15\" or \"1.17\". Unset: whatever the service picks is accepted.",
    ),
    field(
        "execution_agency_urn",
        Kinds::FLINK,
        text(255),
        "IAM agency the job runs as (Flink 1.15+).",
    ),
    field(
        "runtime_config",
        Kinds::FLINK,
        FieldType::TextMap {
            max_entries: 256,
            max_key_chars: 1024,
            max_value_chars: 4096,
        },
        "Flink configuration as a map (sent as the API's JSON string of key/value pairs). Values may be strings, numbers or booleans. Limits are ours.",
    ),
    field(
        "tags",
        Kinds::FLINK,
        FieldType::TextMap {
            max_entries: 20,
            max_key_chars: 128,
            max_value_chars: 255,
        },
        "Tags (keys 1-128, values 1-255 characters, at most 20). managed-by is added by dli-gitops.",
    ),
    field(
        "entrypoint",
        Kinds::JAR,
        text(1024),
        "The job's jar: an OBS path or a DLI package name. Required for Jar jobs.",
    ),
    field(
        "main_class",
        Kinds::JAR,
        text(1024),
        "Main class; unset uses the jar manifest's.",
    ),
    field(
        "entrypoint_args",
        Kinds::JAR,
        text(10240),
        "Program arguments, space-separated. Limit ours.",
    ),
    field(
        "dependency_jars",
        Kinds::JAR,
        FieldType::TextList { max_items: 100 },
        "Other jars (OBS paths or DLI packages). Limit ours.",
    ),
    field(
        "dependency_files",
        Kinds::JAR,
        FieldType::TextList { max_items: 100 },
        "Other files (OBS paths or DLI packages). Limit ours.",
    ),
    field(
        "image",
        Kinds::JAR,
        text(1024),
        "Custom image, organization/image:version (SWR). Only with feature: custom.",
    ),
    field(
        "feature",
        Kinds::JAR,
        FieldType::Choice(&["basic", "custom"]),
        "Image feature: basic (DLI's image, uses flink_version) or custom (uses image). Unset: whatever the service picks (basic) is accepted.",
    ),
    field(
        "desired_state",
        Kinds::FLINK_AND_DLF,
        FieldType::Choice(&["running", "stopped"]),
        "dli-gitops: whether the job should run. Flink: default running. DLF: running keeps the job scheduled (DataArts start), stopped keeps its schedule stopped; unset leaves the schedule as found (a schedule stopped for an overwrite is started again).",
    ),
    field(
        "upgrade_mode",
        Kinds::FLINK,
        FieldType::Choice(&["savepoint", "stateless"]),
        "dli-gitops: how a running job takes a change that needs a restart. Default savepoint.",
    ),
    field(
        "restore",
        Kinds::FLINK,
        FieldType::Restore,
        "dli-gitops: import this savepoint before the next start; re-imported when the path or nonce changes.",
    ),
    field(
        "prune",
        Kinds::FLINK_AND_DLF,
        FieldType::Boolean,
        "dli-gitops: false protects the job from pruning. Default true.",
    ),
    field(
        "depends_on",
        Kinds::FLINK_AND_DLF,
        FieldType::TextList { max_items: 64 },
        "dli-gitops: jobs of this target this job depends on (by name; `flink:NAME` or `dlf:NAME` when a Flink and a DLF job share the name). Creates and starts go upstream first, stops and prunes downstream first; a job whose dependency is Degraded or missing is held. No cycles. Limit ours.",
    ),
    field(
        "drift",
        Kinds::FLINK_AND_DLF,
        FieldType::Choice(&["revert", "report"]),
        "dli-gitops: what an automatic pass does when the live job drifts from git: revert it, or report it (journaled, shown, left alone). Overrides the target's self_heal for this job. A manual sync always reverts.",
    ),
    field(
        "rollback_on_failure",
        Kinds::FLINK,
        FieldType::TextMap {
            max_entries: 2,
            max_key_chars: 16,
            max_value_chars: 32,
        },
        "dli-gitops: overrides the target's policy.rollback_on_failure for this job, e.g. {enabled: true, within: 5m}: an upgrade that leaves the job failing (not running, or failed within `within`) is rolled back to its previous definition and savepoint, and the revision is held for the job until a commit changes it. Usually set per environment in an override.",
    ),
    field(
        "ignore_differences",
        Kinds::FLINK_AND_DLF,
        FieldType::TextList { max_items: 64 },
        "dli-gitops: fields that may change on the live side (the console) without counting as drift, e.g. [cu_number]; an update keeps their live values. Flink: any field of the job's config; DLF: definition, schedule_status. Limit ours.",
    ),
    field(
        "definition_file",
        Kinds::DLF,
        text(1024),
        "The DataArts job definition (the CreateJob JSON, as DataArts exports it), relative to this YAML file.",
    ),
    field(
        "scripts",
        Kinds::DLF,
        FieldType::TextList { max_items: 100 },
        "Script files (.script JSON, as DataArts exports them) the job uses, relative to this YAML file.",
    ),
    field(
        "params",
        Kinds::DLF,
        FieldType::TextMap {
            max_entries: 256,
            max_key_chars: 256,
            max_value_chars: 4096,
        },
        "Job parameters for the import (jobsParam). Limits ours.",
    ),
];

/// Fields the service reports but no create/update request carries (SDK 3.1.219): refused in
/// job files with the reason, never compared.
pub(crate) const READ_ONLY_FIELDS: &[(&str, &str)] = &[(
    "graph_editor_enabled",
    "DLI reports whether a job's stream graph is editable (job detail, `flink_job.py`), but no create or update request has the field (SDK 3.1.219 create/update bodies), so dli-gitops cannot manage it; the console sets it",
)];

/// The fields of one kind.
pub(crate) fn fields_of(kinds: Kinds) -> impl Iterator<Item = &'static FieldSpec> {
    FIELDS.iter().filter(move |spec| spec.kinds.contains(kinds))
}

pub(crate) fn find(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|spec| spec.name == name)
}

/// A field's value after type checking.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Map(BTreeMap<String, String>),
    List(Vec<String>),
    Restore(Restore),
    ResourceConfig(ResourceConfig),
}

/// A problem at a position of the file the node came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub mark: Mark,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(mark: Mark, message: String, hint: Option<String>) -> Problem {
        Problem {
            mark,
            message,
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_name_is_unique() {
        let mut names: Vec<_> = FIELDS.iter().map(|spec| spec.name).collect();
        names.sort();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn every_canonical_flink_field_has_a_job_file_field() {
        // render writes config fields in table order: a field missing here would be dropped.
        let config = crate::model::FlinkJobConfig::defaults_for(crate::model::JobKind::FlinkSql);
        for field in config.to_field_map().keys() {
            let spec = find(field).unwrap_or_else(|| panic!("{field} is not in FIELDS"));
            assert!(spec.kinds.0 & Kinds::FLINK.0 != 0, "{field}");
        }
    }
}
