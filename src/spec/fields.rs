//! The table of every field a job file may hold: its kinds, type, range and description.
//! Validation, the JSON Schema and rendering all read this one table, so they cannot disagree.
//!
//! Limits come from the DLI/DLF API notes (`/shared/reference/dli-dlf-api-notes.md`) where
//! the API documents one; where it does not, the limit is ours and the description says so.

use std::collections::BTreeMap;

use super::yaml::{Mark, Node, NodeValue, Typed};
use crate::model::Restore;

/// Which kinds a field belongs to (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kinds(u8);

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
        "The DLI queue (elastic resource pool queue) the job runs on.",
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
        Kinds::FLINK,
        FieldType::Choice(&["shared_cluster", "exclusive_cluster", "edge_node"]),
        "Where the job runs. Service default shared_cluster.",
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
            Kinds::FLINK,
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
        "Maximum automatic restarts per hour; -1 unlimited (default). Upper bound is ours. Changes without a restart.",
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
        "UDF jar: an OBS path or a DLI package name.",
    ),
    field(
        "flink_version",
        Kinds::FLINK,
        text(16),
        "Flink version, e.g. \"1.15\" or \"1.17\". Unset: the service default.",
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
    field("image", Kinds::JAR, text(1024), "Custom image (SWR path)."),
    field(
        "feature",
        Kinds::JAR,
        FieldType::Choice(&["basic", "custom"]),
        "Image feature: basic or custom.",
    ),
    field(
        "desired_state",
        Kinds::FLINK,
        FieldType::Choice(&["running", "stopped"]),
        "dli-gitops: whether the job should run. Default running.",
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

/// Type- and range-checks one field's value.
pub(crate) fn convert(spec: &FieldSpec, node: &Node) -> Result<FieldValue, Vec<Problem>> {
    let name = spec.name;
    let wrong_type = |expected: &str| {
        vec![Problem::new(
            node.mark,
            format!("`{name}` must be {expected}, found {}", node.type_name()),
            None,
        )]
    };
    match spec.field_type {
        FieldType::Text {
            min_chars,
            max_chars,
        } => {
            let text = scalar_text(node).ok_or_else(|| wrong_type("text"))?;
            check_length(name, &text, min_chars, max_chars, node.mark)?;
            if let Some(check) = spec.check {
                check(&text).map_err(|(message, hint)| {
                    vec![Problem::new(
                        node.mark,
                        format!("`{name}`: {message}"),
                        hint,
                    )]
                })?;
            }
            Ok(FieldValue::Text(text))
        }
        FieldType::Integer { min, max } => {
            let Some(Typed::Int(value)) = node.as_scalar().map(|scalar| scalar.typed()) else {
                let mut problems = wrong_type("an integer");
                if node.as_scalar().is_some_and(|scalar| scalar.quoted) {
                    problems[0].hint = Some("remove the quotes".into());
                }
                return Err(problems);
            };
            if value < min || value > max {
                return Err(vec![Problem::new(
                    node.mark,
                    format!("`{name}` is {value}, outside the allowed range {min}..={max}"),
                    None,
                )]);
            }
            Ok(FieldValue::Integer(value))
        }
        FieldType::Boolean => match node.as_scalar().map(|scalar| scalar.typed()) {
            Some(Typed::Bool(value)) => Ok(FieldValue::Boolean(value)),
            _ => {
                let mut problems = wrong_type("true or false");
                if node.as_scalar().is_some_and(|scalar| scalar.quoted) {
                    problems[0].hint = Some("remove the quotes".into());
                }
                Err(problems)
            }
        },
        FieldType::Choice(choices) => {
            let text = match node.as_scalar().map(|scalar| scalar.typed()) {
                Some(Typed::Str(text)) => text.to_string(),
                found => {
                    let mut problems = wrong_type(&format!("one of {}", choices.join(", ")));
                    if name == "checkpoint_mode" && matches!(found, Some(Typed::Int(1 | 2))) {
                        problems[0].hint = Some(
                            "the API's 1 is exactly_once and 2 is at_least_once; write the name"
                                .into(),
                        );
                    }
                    return Err(problems);
                }
            };
            if choices.contains(&text.as_str()) {
                Ok(FieldValue::Text(text))
            } else {
                let suggestion = super::diagnostics::did_you_mean(&text, choices.iter().copied());
                Err(vec![Problem::new(
                    node.mark,
                    format!(
                        "`{name}` is `{text}`, expected one of {}",
                        choices.join(", ")
                    ),
                    suggestion,
                )])
            }
        }
        FieldType::TextMap {
            max_entries,
            max_key_chars,
            max_value_chars,
        } => {
            let Some(entries) = node.as_mapping() else {
                return Err(wrong_type("a mapping"));
            };
            let mut problems = Vec::new();
            if entries.len() > max_entries {
                problems.push(Problem::new(
                    node.mark,
                    format!(
                        "`{name}` has {} entries, more than the {max_entries} allowed",
                        entries.len()
                    ),
                    None,
                ));
            }
            let mut map = BTreeMap::new();
            for (key, value) in entries {
                let key_text = key.key_text().to_string();
                if let Err(mut more) = check_length(
                    &format!("{name} key `{key_text}`"),
                    &key_text,
                    1,
                    max_key_chars,
                    key.mark,
                ) {
                    problems.append(&mut more);
                }
                match scalar_text(value) {
                    Some(text) => {
                        if let Err(mut more) = check_length(
                            &format!("{name}.{key_text}"),
                            &text,
                            if name == "tags" { 1 } else { 0 },
                            max_value_chars,
                            value.mark,
                        ) {
                            problems.append(&mut more);
                        }
                        map.insert(key_text, text);
                    }
                    None => problems.push(Problem::new(
                        value.mark,
                        format!(
                            "`{name}.{key_text}` must be a string, number or boolean, found {}",
                            value.type_name()
                        ),
                        None,
                    )),
                }
            }
            if problems.is_empty() {
                Ok(FieldValue::Map(map))
            } else {
                Err(problems)
            }
        }
        FieldType::TextList { max_items } => {
            let NodeValue::Sequence(items) = &node.value else {
                return Err(wrong_type("a list"));
            };
            let mut problems = Vec::new();
            if items.len() > max_items {
                problems.push(Problem::new(
                    node.mark,
                    format!(
                        "`{name}` has {} items, more than the {max_items} allowed",
                        items.len()
                    ),
                    None,
                ));
            }
            let mut list = Vec::new();
            for item in items {
                match scalar_text(item) {
                    Some(text) if !text.is_empty() => list.push(text),
                    _ => problems.push(Problem::new(
                        item.mark,
                        format!(
                            "items of `{name}` must be non-empty text, found {}",
                            item.type_name()
                        ),
                        None,
                    )),
                }
            }
            if problems.is_empty() {
                Ok(FieldValue::List(list))
            } else {
                Err(problems)
            }
        }
        FieldType::Restore => convert_restore(node).map(FieldValue::Restore),
    }
}

/// The fields of `restore:`.
pub(crate) const RESTORE_FIELDS: &[(&str, &str)] = &[
    (
        "savepoint_path",
        "obs://bucket/dir/: the parent directory of the savepoint's _metadata file.",
    ),
    ("nonce", "Change it to import the same path again."),
    (
        "from_target",
        "Take the latest savepoint of this job's copy in another target (promotion).",
    ),
];

fn convert_restore(node: &Node) -> Result<Restore, Vec<Problem>> {
    let Some(entries) = node.as_mapping() else {
        return Err(vec![Problem::new(
            node.mark,
            format!("`restore` must be a mapping, found {}", node.type_name()),
            Some("e.g. restore: {savepoint_path: obs://bucket/savepoints/job/, nonce: 1}".into()),
        )]);
    };
    let mut restore = Restore::default();
    let mut problems = Vec::new();
    for (key, value) in entries {
        match key.key_text() {
            "savepoint_path" => match scalar_text(value) {
                Some(path) => match check_obs_url(&path) {
                    Ok(()) => restore.savepoint_path = Some(path),
                    Err((message, hint)) => problems.push(Problem::new(
                        value.mark,
                        format!("`restore.savepoint_path`: {message}"),
                        hint,
                    )),
                },
                None => problems.push(Problem::new(
                    value.mark,
                    format!(
                        "`restore.savepoint_path` must be text, found {}",
                        value.type_name()
                    ),
                    None,
                )),
            },
            "nonce" => match value.as_scalar().map(|scalar| scalar.typed()) {
                Some(Typed::Int(nonce)) if nonce >= 0 => restore.nonce = Some(nonce as u64),
                _ => problems.push(Problem::new(
                    value.mark,
                    format!(
                        "`restore.nonce` must be a non-negative integer, found {}",
                        value.type_name()
                    ),
                    None,
                )),
            },
            "from_target" => match scalar_text(value) {
                Some(target) if !target.is_empty() => restore.from_target = Some(target),
                _ => problems.push(Problem::new(
                    value.mark,
                    "`restore.from_target` must be a target name".into(),
                    None,
                )),
            },
            unknown => problems.push(Problem::new(
                key.mark,
                format!("unknown field `restore.{unknown}`"),
                super::diagnostics::did_you_mean(
                    unknown,
                    RESTORE_FIELDS.iter().map(|(name, _)| *name),
                )
                .or_else(|| Some("restore takes savepoint_path, nonce, from_target".into())),
            )),
        }
    }
    if restore.savepoint_path.is_none() && restore.from_target.is_none() && problems.is_empty() {
        problems.push(Problem::new(
            node.mark,
            "`restore` needs `savepoint_path` or `from_target`".into(),
            None,
        ));
    }
    if problems.is_empty() {
        Ok(restore)
    } else {
        Err(problems)
    }
}

/// A scalar's text as written; numbers keep their spelling (`1.10` stays `1.10`), booleans are
/// `true`/`false`, null is refused.
pub(crate) fn scalar_text(node: &Node) -> Option<String> {
    let scalar = node.as_scalar()?;
    match scalar.typed() {
        Typed::Null => None,
        Typed::Bool(value) => Some(value.to_string()),
        Typed::Int(value) => Some(value.to_string()),
        Typed::Float(_) | Typed::Str(_) => Some(scalar.text.clone()),
    }
}

fn check_length(
    what: &str,
    text: &str,
    min_chars: usize,
    max_chars: usize,
    mark: Mark,
) -> Result<(), Vec<Problem>> {
    let chars = text.chars().count();
    if chars < min_chars {
        return Err(vec![Problem::new(
            mark,
            format!("`{what}` is empty"),
            Some("remove the field to leave it unset".into()),
        )]);
    }
    if chars > max_chars {
        return Err(vec![Problem::new(
            mark,
            format!("`{what}` is {chars} characters long, more than the {max_chars} allowed"),
            None,
        )]);
    }
    Ok(())
}

/// Job names: letters, digits, `-`, `_` (DLF also `.`), starting with a letter or digit.
/// The length limit per kind is checked where the kind is known.
fn check_flink_or_dlf_name(name: &str) -> Result<(), (String, Option<String>)> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if starts_well && rest_ok {
        Ok(())
    } else {
        Err((
            format!("`{name}` is not a valid job name"),
            Some(
                "use letters, digits, `-` and `_` (and `.` for DLF jobs), starting with a letter or digit"
                    .into(),
            ),
        ))
    }
}

/// OBS bucket names: 3-63 characters, lowercase letters, digits, `-` and `.`.
fn check_bucket_name(bucket: &str) -> Result<(), (String, Option<String>)> {
    let valid_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
    let valid_ends = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if bucket.len() >= 3 && valid_chars && valid_ends {
        Ok(())
    } else {
        let hint = if bucket.starts_with("obs://") {
            "give the bucket name only, without obs:// and a path"
        } else {
            "OBS bucket names have 3-63 lowercase letters, digits, `-` or `.`"
        };
        Err((
            format!("`{bucket}` is not an OBS bucket name"),
            Some(hint.into()),
        ))
    }
}

fn check_obs_url(url: &str) -> Result<(), (String, Option<String>)> {
    match url.strip_prefix("obs://") {
        Some(rest)
            if rest
                .split('/')
                .next()
                .is_some_and(|bucket| !bucket.is_empty()) =>
        {
            Ok(())
        }
        _ => Err((
            format!("`{url}` is not an obs:// path"),
            Some("write it as obs://bucket/dir/".into()),
        )),
    }
}

fn check_dirty_data_strategy(value: &str) -> Result<(), (String, Option<String>)> {
    let valid = value == "0"
        || value == "1"
        || value
            .strip_prefix("2:")
            .is_some_and(|directory| !directory.is_empty());
    if valid {
        Ok(())
    } else {
        Err((
            format!("`{value}` is not a dirty data strategy"),
            Some("use \"0\" (ignore), \"1\" (throw) or \"2:obs://bucket/dir\" (save)".into()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse_documents;
    use super::*;

    fn value_of(text: &str) -> Node {
        let document = parse_documents(text).unwrap().remove(0);
        document.as_mapping().unwrap()[0].1.clone()
    }

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

    #[test]
    fn integers_are_range_checked_and_quotes_get_a_hint() {
        let spec = find("cu_number").unwrap();
        assert_eq!(
            convert(spec, &value_of("v: 8")).unwrap(),
            FieldValue::Integer(8)
        );
        let problems = convert(spec, &value_of("v: 401")).unwrap_err();
        assert!(problems[0].message.contains("2..=400"), "{problems:?}");
        let problems = convert(spec, &value_of("v: '8'")).unwrap_err();
        assert_eq!(problems[0].hint.as_deref(), Some("remove the quotes"));
    }

    #[test]
    fn maps_stringify_scalars_as_written() {
        let spec = find("runtime_config").unwrap();
        let value = convert(spec, &value_of("v: {a: 1, b: true, c: 1.10, d: x}")).unwrap();
        let FieldValue::Map(map) = value else {
            panic!("not a map")
        };
        assert_eq!(map["a"], "1");
        assert_eq!(map["b"], "true");
        assert_eq!(map["c"], "1.10");
        assert_eq!(map["d"], "x");
    }

    #[test]
    fn text_checks_reject_bad_buckets_and_paths() {
        let problems = convert(
            find("obs_bucket").unwrap(),
            &value_of("v: obs://bucket/dir"),
        )
        .unwrap_err();
        assert!(
            problems[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("bucket name only")
        );
        assert!(convert(find("obs_bucket").unwrap(), &value_of("v: dli-ckpt")).is_ok());
        assert!(
            convert(
                find("restore").unwrap(),
                &value_of("v: {savepoint_path: s3://x/}")
            )
            .is_err()
        );
    }
}
