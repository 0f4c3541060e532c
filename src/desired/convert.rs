//! Type- and range-checking one field's value against its [`FieldSpec`], and the text checks
//! (names, buckets, obs:// paths) the field table refers to.

use std::collections::BTreeMap;

use super::diagnostics::did_you_mean;
use super::fields::{FieldSpec, FieldType, FieldValue, Problem};
use super::yaml::{Mark, Node, NodeValue, Typed};
use crate::model::{Cpu, ResourceConfig, ResourceSpec, Restore};

/// Type- and range-checks one field's value.
pub(crate) fn convert(spec: &FieldSpec, node: &Node) -> Result<FieldValue, Vec<Problem>> {
    let name = spec.name;
    match spec.field_type {
        FieldType::Text {
            min_chars,
            max_chars,
        } => convert_text(spec, node, min_chars, max_chars),
        FieldType::Integer { min, max } => convert_integer(name, node, min, max),
        FieldType::Boolean => match node.as_scalar().map(|scalar| scalar.typed()) {
            Some(Typed::Bool(value)) => Ok(FieldValue::Boolean(value)),
            _ => Err(wrong_scalar_type(name, node, "true or false")),
        },
        FieldType::Choice(choices) => convert_choice(name, node, choices),
        FieldType::TextMap {
            max_entries,
            max_key_chars,
            max_value_chars,
        } => convert_text_map(name, node, max_entries, max_key_chars, max_value_chars),
        FieldType::TextList { max_items } => convert_text_list(name, node, max_items),
        FieldType::Restore => convert_restore(node).map(FieldValue::Restore),
        FieldType::ResourceConfig => convert_resource_config(node).map(FieldValue::ResourceConfig),
    }
}

/// The problem of a value of the wrong YAML type.
fn wrong_type(name: &str, node: &Node, expected: &str) -> Vec<Problem> {
    vec![Problem::new(
        node.mark,
        format!("`{name}` must be {expected}, found {}", node.type_name()),
        None,
    )]
}

/// [`wrong_type`] for a number or boolean field, hinting to remove the quotes when the value
/// was quoted.
fn wrong_scalar_type(name: &str, node: &Node, expected: &str) -> Vec<Problem> {
    let mut problems = wrong_type(name, node, expected);
    if node.as_scalar().is_some_and(|scalar| scalar.quoted) {
        problems[0].hint = Some("remove the quotes".into());
    }
    problems
}

/// A text field: its length, then the field's own check.
fn convert_text(
    spec: &FieldSpec,
    node: &Node,
    min_chars: usize,
    max_chars: usize,
) -> Result<FieldValue, Vec<Problem>> {
    let name = spec.name;
    let text = scalar_text(node).ok_or_else(|| wrong_type(name, node, "text"))?;
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

/// An integer field within `min..=max`.
fn convert_integer(
    name: &str,
    node: &Node,
    min: i64,
    max: i64,
) -> Result<FieldValue, Vec<Problem>> {
    let Some(Typed::Int(value)) = node.as_scalar().map(|scalar| scalar.typed()) else {
        return Err(wrong_scalar_type(name, node, "an integer"));
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

/// One of a fixed set of names.
fn convert_choice(name: &str, node: &Node, choices: &[&str]) -> Result<FieldValue, Vec<Problem>> {
    let text = match node.as_scalar().map(|scalar| scalar.typed()) {
        Some(Typed::Str(text)) => text.to_string(),
        found => {
            let mut problems = wrong_type(name, node, &format!("one of {}", choices.join(", ")));
            if name == "checkpoint_mode" && matches!(found, Some(Typed::Int(1 | 2))) {
                problems[0].hint = Some(
                    "the API's 1 is exactly_once and 2 is at_least_once; write the name".into(),
                );
            }
            return Err(problems);
        }
    };
    if choices.contains(&text.as_str()) {
        Ok(FieldValue::Text(text))
    } else {
        let suggestion = did_you_mean(&text, choices.iter().copied());
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

/// A mapping of text to text (tags, parameters): entry count, key and value lengths.
fn convert_text_map(
    name: &str,
    node: &Node,
    max_entries: usize,
    max_key_chars: usize,
    max_value_chars: usize,
) -> Result<FieldValue, Vec<Problem>> {
    let Some(entries) = node.as_mapping() else {
        return Err(wrong_type(name, node, "a mapping"));
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

/// A list of non-empty texts, at most `max_items`.
fn convert_text_list(
    name: &str,
    node: &Node,
    max_items: usize,
) -> Result<FieldValue, Vec<Problem>> {
    let NodeValue::Sequence(items) = &node.value else {
        return Err(wrong_type(name, node, "a list"));
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

/// The fields of `resource_config:` and of its two resource specs.
pub(crate) const RESOURCE_CONFIG_FIELDS: &[(&str, &str)] = &[
    (
        "max_slot",
        "Slots per task manager (DLI default 1, at least 1).",
    ),
    (
        "parallel_number",
        "Parallelism (DLI default 1, at least 1).",
    ),
    (
        "jobmanager_resource_spec",
        "The job manager's {cpu, memory}.",
    ),
    (
        "taskmanager_resource_spec",
        "Each task manager's {cpu, memory}.",
    ),
];
pub(crate) const RESOURCE_SPEC_FIELDS: &[(&str, &str)] = &[
    ("cpu", "CPU cores, a positive number (e.g. 0.5, 1, 2)."),
    (
        "memory",
        "Memory with a unit: M/MB or G/GB (e.g. 2048M, 4G); a bare number is GB (Terraform).",
    ),
];

fn convert_resource_config(node: &Node) -> Result<ResourceConfig, Vec<Problem>> {
    let Some(entries) = node.as_mapping() else {
        return Err(vec![Problem::new(
            node.mark,
            format!("`resource_config` must be a mapping, found {}", node.type_name()),
            Some("e.g. resource_config: {max_slot: 2, parallel_number: 4, taskmanager_resource_spec: {cpu: 2, memory: 4G}}".into()),
        )]);
    };
    let mut config = ResourceConfig::default();
    let mut problems = Vec::new();
    let count = |value: &Node, name: &str, problems: &mut Vec<Problem>| match value
        .as_scalar()
        .map(|scalar| scalar.typed())
    {
        Some(Typed::Int(number)) if (1..=2000).contains(&number) => Some(number as i32),
        _ => {
            problems.push(Problem::new(
                value.mark,
                format!("`resource_config.{name}` must be an integer from 1 to 2000"),
                None,
            ));
            None
        }
    };
    for (key, value) in entries {
        match key.key_text() {
            "max_slot" => config.max_slot = count(value, "max_slot", &mut problems),
            "parallel_number" => {
                config.parallel_number = count(value, "parallel_number", &mut problems)
            }
            name @ ("jobmanager_resource_spec" | "taskmanager_resource_spec") => {
                match convert_resource_spec(value, name) {
                    Ok(spec) if name == "jobmanager_resource_spec" => {
                        config.jobmanager_resource_spec = Some(spec)
                    }
                    Ok(spec) => config.taskmanager_resource_spec = Some(spec),
                    Err(mut more) => problems.append(&mut more),
                }
            }
            unknown => problems.push(Problem::new(
                key.mark,
                format!("unknown field `resource_config.{unknown}`"),
                did_you_mean(unknown, RESOURCE_CONFIG_FIELDS.iter().map(|(name, _)| *name))
                    .or_else(|| {
                        Some(
                            "resource_config takes max_slot, parallel_number, jobmanager_resource_spec, taskmanager_resource_spec"
                                .into(),
                        )
                    }),
            )),
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn convert_resource_spec(node: &Node, name: &str) -> Result<ResourceSpec, Vec<Problem>> {
    let Some(entries) = node.as_mapping() else {
        return Err(vec![Problem::new(
            node.mark,
            format!(
                "`resource_config.{name}` must be a mapping, found {}",
                node.type_name()
            ),
            Some("e.g. {cpu: 1, memory: 4G}".into()),
        )]);
    };
    let mut spec = ResourceSpec::default();
    let mut problems = Vec::new();
    for (key, value) in entries {
        match key.key_text() {
            "cpu" => {
                let cores = match value.as_scalar().map(|scalar| scalar.typed()) {
                    Some(Typed::Int(number)) => Some(number as f64),
                    Some(Typed::Float(number)) => Some(number),
                    _ => None,
                };
                match cores.and_then(Cpu::from_cores) {
                    Some(cpu) => spec.cpu = Some(cpu),
                    None => problems.push(Problem::new(
                        value.mark,
                        format!("`resource_config.{name}.cpu` must be a positive number of cores"),
                        None,
                    )),
                }
            }
            "memory" => match scalar_text(value) {
                Some(memory) if is_memory_size(&memory) => spec.memory = Some(memory),
                _ => problems.push(Problem::new(
                    value.mark,
                    format!(
                        "`resource_config.{name}.memory` must be a size such as 4G, 4GB, 4096M or 4096MB"
                    ),
                    None,
                )),
            },
            unknown => problems.push(Problem::new(
                key.mark,
                format!("unknown field `resource_config.{name}.{unknown}`"),
                did_you_mean(unknown, RESOURCE_SPEC_FIELDS.iter().map(|(name, _)| *name))
                    .or_else(|| Some("a resource spec takes cpu and memory".into())),
            )),
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems)
    }
}

/// `4G`, `4GB`, `4096M`, `4096MB`, `1.5G` or a bare number (GB, Terraform's default unit).
fn is_memory_size(text: &str) -> bool {
    let upper = text.trim().to_ascii_uppercase();
    let number = upper
        .strip_suffix("GB")
        .or_else(|| upper.strip_suffix("MB"))
        .or_else(|| upper.strip_suffix('G'))
        .or_else(|| upper.strip_suffix('M'))
        .unwrap_or(&upper);
    !number.is_empty()
        && number
            .parse::<f64>()
            .is_ok_and(|value| value > 0.0 && value.is_finite())
}

/// A JSON object as text (the API's `operator_config`, `static_estimator_config`).
pub(crate) fn check_json_object(text: &str) -> Result<(), (String, Option<String>)> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err((
            "is JSON but not an object".into(),
            Some("write the API's JSON object as text, in single quotes".into()),
        )),
        Err(error) => Err((
            format!("is not JSON ({error})"),
            Some("write the API's JSON object as text, in single quotes".into()),
        )),
    }
}

/// The log levels the SDK documents for `flink_log_config`.
const LOG_LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// `{"root_logger_level": LEVEL, "loggers_level_of_class": {"class or package": LEVEL}}`.
pub(crate) fn check_flink_log_config(text: &str) -> Result<(), (String, Option<String>)> {
    check_json_object(text)?;
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let hint = || {
        Some(
            "e.g. '{\"root_logger_level\":\"INFO\",\"loggers_level_of_class\":{\"org.apache.flink\":\"WARN\"}}'"
                .to_string(),
        )
    };
    let level_ok = |level: &serde_json::Value| {
        level
            .as_str()
            .is_some_and(|level| LOG_LEVELS.contains(&level))
    };
    for (key, level) in value.as_object().into_iter().flatten() {
        match key.as_str() {
            "root_logger_level" if level_ok(level) => {}
            "root_logger_level" => {
                return Err((
                    format!(
                        "root_logger_level is {level}, expected one of {}",
                        LOG_LEVELS.join(", ")
                    ),
                    None,
                ));
            }
            "loggers_level_of_class" => {
                let Some(classes) = level.as_object() else {
                    return Err((
                        "loggers_level_of_class must be an object of class → level".into(),
                        hint(),
                    ));
                };
                for (class, level) in classes {
                    if !level_ok(level) {
                        return Err((
                            format!(
                                "the level of {class} is {level}, expected one of {}",
                                LOG_LEVELS.join(", ")
                            ),
                            None,
                        ));
                    }
                }
            }
            other => {
                return Err((
                    format!(
                        "unknown key {other:?}; flink_log_config takes root_logger_level and loggers_level_of_class"
                    ),
                    hint(),
                ));
            }
        }
    }
    Ok(())
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
    (
        "from_catalog",
        "latest, or the seq of an entry of `dli-gitops savepoints list`: restore from a copy in this target's savepoint catalog.",
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
            "from_catalog" => match value.as_scalar().map(|scalar| scalar.typed()) {
                Some(Typed::Int(seq)) if seq > 0 => {
                    restore.from_catalog = Some(crate::model::CatalogRef::Seq(seq as u64))
                }
                _ if scalar_text(value).as_deref() == Some("latest") => {
                    restore.from_catalog = Some(crate::model::CatalogRef::Latest)
                }
                _ => problems.push(Problem::new(
                    value.mark,
                    "`restore.from_catalog` must be `latest` or the seq of a catalog entry (a positive integer)".into(),
                    Some("see `dli-gitops savepoints list --target <target> --job <job>`".into()),
                )),
            },
            unknown => problems.push(Problem::new(
                key.mark,
                format!("unknown field `restore.{unknown}`"),
                did_you_mean(unknown, RESTORE_FIELDS.iter().map(|(name, _)| *name)).or_else(
                    || Some("restore takes savepoint_path, nonce, from_target, from_catalog".into()),
                ),
            )),
        }
    }
    let sources = usize::from(restore.savepoint_path.is_some())
        + usize::from(restore.from_target.is_some())
        + usize::from(restore.from_catalog.is_some());
    if sources == 0 && problems.is_empty() {
        problems.push(Problem::new(
            node.mark,
            "`restore` needs `savepoint_path`, `from_target` or `from_catalog`".into(),
            None,
        ));
    }
    if restore.from_catalog.is_some() && sources > 1 {
        problems.push(Problem::new(
            node.mark,
            "`restore.from_catalog` cannot be combined with `savepoint_path` or `from_target`"
                .into(),
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
pub(crate) fn check_flink_or_dlf_name(name: &str) -> Result<(), (String, Option<String>)> {
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
pub(crate) fn check_bucket_name(bucket: &str) -> Result<(), (String, Option<String>)> {
    // An unknown `${variable}` is reported once, where it is used; its unresolved text is not
    // also a bad bucket name.
    if bucket.contains("${") {
        return Ok(());
    }
    if bucket.len() < 3 || bucket.len() > 63 {
        return Err((
            format!(
                "`{bucket}` is too {} for an OBS bucket name ({} characters; OBS allows 3 to 63)",
                if bucket.len() < 3 { "short" } else { "long" },
                bucket.len()
            ),
            Some("OBS bucket names have 3-63 lowercase letters, digits, `-` or `.`".into()),
        ));
    }
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

pub(crate) fn check_obs_url(url: &str) -> Result<(), (String, Option<String>)> {
    if url.contains("${") {
        return Ok(());
    }
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

pub(crate) fn check_dirty_data_strategy(value: &str) -> Result<(), (String, Option<String>)> {
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
    use super::super::fields::find;
    use super::super::yaml::parse_documents;
    use super::*;

    fn value_of(text: &str) -> Node {
        let document = parse_documents(text).unwrap().remove(0);
        document.as_mapping().unwrap()[0].1.clone()
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
