//! Type- and range-checking one field's value against its [`FieldSpec`], and the text checks
//! (names, buckets, obs:// paths) the field table refers to.

use std::collections::BTreeMap;

use super::diagnostics::did_you_mean;
use super::fields::{FieldSpec, FieldType, FieldValue, Problem};
use super::yaml::{Mark, Node, NodeValue, Typed};
use crate::model::Restore;

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
                did_you_mean(unknown, RESTORE_FIELDS.iter().map(|(name, _)| *name))
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
