//! `environments/<env>.yaml`: variables, per-job overrides, and DLF import settings.

use std::collections::BTreeMap;

use super::convert::scalar_text;
use super::diagnostics::did_you_mean;
use super::fields::Problem;
use super::yaml::{Mark, Node, NodeValue, Typed};

/// The directory environment files live in.
pub const ENVIRONMENTS_DIR: &str = "environments";

const TOP_LEVEL_KEYS: &[&str] = &["$schema", "variables", "overrides", "dlf"];
const DLF_KEYS: &[&str] = &[
    "params",
    "resources",
    "target_status",
    "approvers",
    "execute_user",
];
const RESOURCE_KEYS: &[&str] = &["name", "type", "replace"];
pub(crate) use crate::bundle::DLF_RESOURCE_TYPES as RESOURCE_TYPES;
pub(crate) const TARGET_STATUSES: &[&str] = &["SAVED", "SUBMITTED", "PRODUCTION"];

/// A parsed environment file. Override values are still untyped nodes: they are checked
/// against the job they apply to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Environment {
    pub variables: BTreeMap<String, String>,
    pub overrides: Vec<Override>,
    pub dlf: crate::model::DlfImportSettings,
}

#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub job: String,
    pub mark: Mark,
    pub entries: Vec<(Node, Node)>,
}

/// Reads an environment document, collecting every problem.
pub(crate) fn parse_environment(document: &Node, problems: &mut Vec<Problem>) -> Environment {
    let mut environment = Environment::default();
    if document.is_empty_document() {
        return environment;
    }
    let Some(entries) = document.as_mapping() else {
        problems.push(Problem::new(
            document.mark,
            format!(
                "an environment file must be a mapping, found {}",
                document.type_name()
            ),
            Some("with keys variables, overrides, dlf".into()),
        ));
        return environment;
    };
    for (key, value) in entries {
        match key.key_text() {
            "$schema" => {}
            "variables" => environment.variables = parse_variables(value, problems),
            "overrides" => environment.overrides = parse_overrides(value, problems),
            "dlf" => environment.dlf = parse_dlf(value, problems),
            unknown => problems.push(unknown_key(key, unknown, TOP_LEVEL_KEYS)),
        }
    }
    environment
}

fn parse_variables(node: &Node, problems: &mut Vec<Problem>) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::new();
    let Some(entries) = mapping(node, "variables", problems) else {
        return variables;
    };
    for (key, value) in entries {
        let name = key.key_text();
        if !super::files::is_variable_name(name) {
            problems.push(Problem::new(
                key.mark,
                format!("`{name}` is not a valid variable name"),
                Some("use letters, digits, `_`, `.` and `-`, starting with a letter or `_`".into()),
            ));
            continue;
        }
        match scalar_text(value) {
            Some(text) => {
                variables.insert(name.to_string(), text);
            }
            None => problems.push(Problem::new(
                value.mark,
                format!(
                    "variable `{name}` must be a string, number or boolean, found {}",
                    value.type_name()
                ),
                None,
            )),
        }
    }
    variables
}

fn parse_overrides(node: &Node, problems: &mut Vec<Problem>) -> Vec<Override> {
    let Some(entries) = mapping(node, "overrides", problems) else {
        return Vec::new();
    };
    let mut overrides = Vec::new();
    for (key, value) in entries {
        match value.as_mapping() {
            Some(fields) => overrides.push(Override {
                job: key.key_text().to_string(),
                mark: key.mark,
                entries: fields.to_vec(),
            }),
            None => problems.push(Problem::new(
                value.mark,
                format!(
                    "the override of `{}` must be a mapping of fields, found {}",
                    key.key_text(),
                    value.type_name()
                ),
                Some("e.g. overrides: {clickstream-agg: {cu_number: 16}}".into()),
            )),
        }
    }
    overrides
}

fn parse_dlf(node: &Node, problems: &mut Vec<Problem>) -> crate::model::DlfImportSettings {
    let mut settings = crate::model::DlfImportSettings::default();
    let Some(entries) = mapping(node, "dlf", problems) else {
        return settings;
    };
    for (key, value) in entries {
        match key.key_text() {
            "params" => {
                if let Some(params) = mapping(value, "dlf.params", problems) {
                    for (name, param) in params {
                        match scalar_text(param) {
                            Some(text) => {
                                settings.params.insert(name.key_text().to_string(), text);
                            }
                            None => problems.push(Problem::new(
                                param.mark,
                                format!(
                                    "`dlf.params.{}` must be a string, number or boolean",
                                    name.key_text()
                                ),
                                None,
                            )),
                        }
                    }
                }
            }
            "resources" => settings.resources = parse_resources(value, problems),
            "target_status" => {
                settings.target_status =
                    choice(value, "dlf.target_status", TARGET_STATUSES, problems)
            }
            "approvers" => match &value.value {
                NodeValue::Sequence(items) => {
                    for item in items {
                        match scalar_text(item) {
                            Some(name) if !name.is_empty() => settings.approvers.push(name),
                            _ => problems.push(Problem::new(
                                item.mark,
                                "approvers must be user names".into(),
                                None,
                            )),
                        }
                    }
                }
                _ => problems.push(Problem::new(
                    value.mark,
                    format!(
                        "`dlf.approvers` must be a list of user names, found {}",
                        value.type_name()
                    ),
                    None,
                )),
            },
            "execute_user" => match scalar_text(value) {
                Some(user) if !user.is_empty() => settings.execute_user = Some(user),
                _ => problems.push(Problem::new(
                    value.mark,
                    "`dlf.execute_user` must be a user name".into(),
                    None,
                )),
            },
            unknown => problems.push(unknown_key(key, unknown, DLF_KEYS)),
        }
    }
    settings
}

fn parse_resources(
    node: &Node,
    problems: &mut Vec<Problem>,
) -> Vec<crate::model::DlfResourceReplacement> {
    let NodeValue::Sequence(items) = &node.value else {
        problems.push(Problem::new(
            node.mark,
            format!("`dlf.resources` must be a list, found {}", node.type_name()),
            Some(
                "e.g. resources: [{name: dev_dws, type: DWS_CONNECTION, replace: prod_dws}]".into(),
            ),
        ));
        return Vec::new();
    };
    let mut resources = Vec::new();
    for item in items {
        let Some(entries) = mapping(item, "dlf.resources[]", problems) else {
            continue;
        };
        let mut name = None;
        let mut resource_type = None;
        let mut replace = None;
        for (key, value) in entries {
            match key.key_text() {
                "name" => name = scalar_text(value).filter(|text| !text.is_empty()),
                "type" => resource_type = choice(value, "type", RESOURCE_TYPES, problems),
                "replace" => replace = scalar_text(value).filter(|text| !text.is_empty()),
                unknown => problems.push(unknown_key(key, unknown, RESOURCE_KEYS)),
            }
        }
        match (name, resource_type) {
            (Some(name), Some(resource_type)) => {
                resources.push(crate::model::DlfResourceReplacement {
                    name,
                    resource_type,
                    replace,
                })
            }
            (None, _) => problems.push(Problem::new(
                item.mark,
                "a resource replacement needs `name`".into(),
                None,
            )),
            (Some(_), None) => {
                if !entries.iter().any(|(key, _)| key.key_text() == "type") {
                    problems.push(Problem::new(
                        item.mark,
                        "a resource replacement needs `type`".into(),
                        Some(format!("one of {}", RESOURCE_TYPES.join(", "))),
                    ))
                }
            }
        }
    }
    resources
}

fn mapping<'a>(
    node: &'a Node,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'a [(Node, Node)]> {
    if let NodeValue::Scalar(scalar) = &node.value
        && scalar.typed() == Typed::Null
    {
        return Some(&[]);
    }
    let entries = node.as_mapping();
    if entries.is_none() {
        problems.push(Problem::new(
            node.mark,
            format!("`{what}` must be a mapping, found {}", node.type_name()),
            None,
        ));
    }
    entries
}

fn choice(
    node: &Node,
    what: &str,
    choices: &[&str],
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match scalar_text(node) {
        Some(text) if choices.contains(&text.as_str()) => Some(text),
        Some(text) => {
            problems.push(Problem::new(
                node.mark,
                format!(
                    "`{what}` is `{text}`, expected one of {}",
                    choices.join(", ")
                ),
                did_you_mean(&text, choices.iter().copied()),
            ));
            None
        }
        None => {
            problems.push(Problem::new(
                node.mark,
                format!(
                    "`{what}` must be one of {}, found {}",
                    choices.join(", "),
                    node.type_name()
                ),
                None,
            ));
            None
        }
    }
}

fn unknown_key(key: &Node, unknown: &str, known: &[&str]) -> Problem {
    Problem::new(
        key.mark,
        format!("unknown field `{unknown}`"),
        did_you_mean(unknown, known.iter().copied())
            .or_else(|| Some(format!("expected one of {}", known.join(", ")))),
    )
}
