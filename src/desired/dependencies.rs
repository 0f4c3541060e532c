//! What a job says about the other jobs of its target and about its drift: `depends_on`,
//! `drift` and `ignore_differences`. Checked over every document of the environment at once,
//! since a dependency names another job: unknown names, ambiguous names, a job depending on
//! itself and cycles are refused, each at the `file:line` of the name that causes it.
//!
//! The values are type-checked by the field table like any other field ([`super::fields`]);
//! this module reads only values that passed, so a bad value is reported once.

use std::collections::{BTreeMap, BTreeSet};

use super::diagnostics::did_you_mean;
use super::fields::Problem;
use super::resolve::{Context, JobDocument};
use super::yaml::{Mark, Node, NodeValue};
use crate::model::{DriftMode, FlinkJobConfig, JobKind, JobPolicy};

/// Prefix of a DLF job's key (its journal key): Flink and DLF jobs are separate name spaces.
const DLF_PREFIX: &str = "dlf:";
/// Written in `depends_on` to name the Flink job when a DLF job has the same name.
const FLINK_PREFIX: &str = "flink:";

/// The fields a DLF job may list in `ignore_differences`: its definition (compared whole, by
/// digest) and its schedule.
pub(crate) const DLF_IGNORABLE: &[&str] = &["definition", "schedule_status"];

/// The key a job is known by in `JobPolicy::depends_on` (and in the journal).
pub(crate) fn job_key(kind: JobKind, name: &str) -> String {
    match kind {
        JobKind::Dlf => format!("{DLF_PREFIX}{name}"),
        JobKind::FlinkSql | JobKind::FlinkJar => name.to_string(),
    }
}

/// The fields a job of `kind` may list in `ignore_differences`.
pub(crate) fn ignorable_fields(kind: JobKind) -> Vec<String> {
    match kind {
        JobKind::Dlf => DLF_IGNORABLE.iter().map(|name| name.to_string()).collect(),
        JobKind::FlinkSql | JobKind::FlinkJar => FlinkJobConfig::defaults_for(kind)
            .to_field_map()
            .keys()
            .filter(|field| kind.carries(field))
            .cloned()
            .collect(),
    }
}

/// One `depends_on` item that named a job of this target.
struct Edge {
    to: String,
    file: String,
    mark: Mark,
}

/// The fields [`policies`] reads: a document keeps only these once its job is built.
pub(crate) const POLICY_KEYS: &[&str] = &[
    "depends_on",
    "drift",
    "ignore_differences",
    "rollback_on_failure",
];

/// The policy of every document, by job key. Problems go to `context`.
pub(crate) fn policies(
    context: &mut Context<'_>,
    documents: &[JobDocument],
) -> BTreeMap<String, JobPolicy> {
    let flink: BTreeSet<&str> = documents
        .iter()
        .filter(|document| document.kind != JobKind::Dlf)
        .map(|document| document.name.as_str())
        .collect();
    let dlf: BTreeSet<&str> = documents
        .iter()
        .filter(|document| document.kind == JobKind::Dlf)
        .map(|document| document.name.as_str())
        .collect();
    let mut policies = BTreeMap::new();
    let mut edges: BTreeMap<String, Vec<Edge>> = BTreeMap::new();
    for document in documents {
        let key = job_key(document.kind, &document.name);
        let mut policy = JobPolicy::default();
        let mut own_edges: Vec<Edge> = Vec::new();
        if let Some((file, node)) = last_entry(document, "depends_on") {
            for (text, mark) in scalar_items(node) {
                let Some(to) = resolve_name(context, &flink, &dlf, &text, file, mark) else {
                    continue;
                };
                if to == key {
                    context.report(
                        file,
                        Problem::new(
                            mark,
                            format!("`{}` depends on itself", document.name),
                            Some("remove it from its own depends_on".into()),
                        ),
                    );
                    continue;
                }
                if own_edges.iter().any(|edge| edge.to == to) {
                    context.report(
                        file,
                        Problem::new(
                            mark,
                            format!("`{text}` is listed twice in depends_on"),
                            Some("list each dependency once".into()),
                        ),
                    );
                    continue;
                }
                policy.depends_on.push(to.clone());
                own_edges.push(Edge {
                    to,
                    file: file.to_string(),
                    mark,
                });
            }
        }
        if let Some((_, node)) = last_entry(document, "drift") {
            policy.drift = match node.as_scalar().map(|scalar| scalar.text.as_str()) {
                Some("revert") => Some(DriftMode::Revert),
                Some("report") => Some(DriftMode::Report),
                // Any other value is reported by the field table.
                _ => None,
            };
        }
        if let Some((file, node)) = last_entry(document, "ignore_differences") {
            let allowed = ignorable_fields(document.kind);
            for (text, mark) in scalar_items(node) {
                if !allowed.contains(&text) {
                    let hint =
                        did_you_mean(&text, allowed.iter().map(String::as_str)).or_else(|| {
                            Some(format!("{} fields: {}", document.kind, allowed.join(", ")))
                        });
                    context.report(
                        file,
                        Problem::new(
                            mark,
                            format!(
                                "`{text}` in ignore_differences is not a field of {}",
                                document.kind
                            ),
                            hint,
                        ),
                    );
                    continue;
                }
                if !policy.ignore_differences.contains(&text) {
                    policy.ignore_differences.push(text);
                }
            }
        }
        if let Some((file, node)) = last_entry(document, "rollback_on_failure") {
            policy.rollback_on_failure = rollback_override(context, file, node);
        }
        edges.entry(key.clone()).or_default().extend(own_edges);
        // A name declared twice is reported as a duplicate; the first declaration's policy wins.
        policies.entry(key).or_insert(policy);
    }
    report_cycles(context, &edges);
    policies
}

/// `rollback_on_failure: {enabled: true|false, within: <duration>}` (the field table checked it
/// is a small map of scalars); unknown keys and bad values are reported where they are.
fn rollback_override(
    context: &mut Context<'_>,
    file: &str,
    node: &Node,
) -> Option<crate::model::RollbackOverride> {
    let entries = node.as_mapping()?;
    let mut result = crate::model::RollbackOverride::default();
    let mut clean = true;
    // Reports a problem at `mark` in `file`; the override is then not taken.
    let mut refuse =
        |context: &mut Context<'_>, mark: Mark, message: String, hint: Option<String>| {
            clean = false;
            context.report(file, Problem::new(mark, message, hint));
        };
    for (key, value) in entries {
        let text = value
            .as_scalar()
            .map(|scalar| scalar.text.trim().to_string())
            .unwrap_or_default();
        match key.key_text() {
            "enabled" => match text.as_str() {
                "true" => result.enabled = Some(true),
                "false" => result.enabled = Some(false),
                _ => refuse(
                    context,
                    value.mark,
                    format!("rollback_on_failure.enabled is `{text}`, expected true or false"),
                    None,
                ),
            },
            "within" => match (!text.chars().all(|c| c.is_ascii_digit()))
                .then(|| humantime::parse_duration(&text).ok())
                .flatten()
            {
                Some(duration) if duration >= std::time::Duration::from_secs(1) => {
                    result.within_ms =
                        Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
                }
                _ => refuse(
                    context,
                    value.mark,
                    format!(
                        "rollback_on_failure.within is `{text}`, expected a duration of at least 1s such as `10m`"
                    ),
                    None,
                ),
            },
            other => refuse(
                context,
                key.mark,
                format!("unknown key `{other}` in rollback_on_failure"),
                did_you_mean(other, ["enabled", "within"].into_iter())
                    .or_else(|| Some("the keys are enabled and within".to_string())),
            ),
        }
    }
    clean.then_some(result)
}

/// The value of the last entry named `key` (an environment override replaces the job file's).
fn last_entry<'d>(document: &'d JobDocument, key: &str) -> Option<(&'d str, &'d Node)> {
    document
        .entries
        .iter()
        .rev()
        .find(|entry| entry.key == key)
        .map(|entry| (entry.file.as_str(), &entry.value))
}

/// The non-empty scalar items of a sequence, with their positions (anything else is the field
/// table's to report).
fn scalar_items(node: &Node) -> Vec<(String, Mark)> {
    let NodeValue::Sequence(items) = &node.value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let text = item.as_scalar()?.text.trim().to_string();
            (!text.is_empty()).then_some((text, item.mark))
        })
        .collect()
}

/// The key of the job a `depends_on` item names, or a reported problem.
fn resolve_name(
    context: &mut Context<'_>,
    flink: &BTreeSet<&str>,
    dlf: &BTreeSet<&str>,
    text: &str,
    file: &str,
    mark: Mark,
) -> Option<String> {
    let (name, want_flink, want_dlf) = if let Some(name) = text.strip_prefix(FLINK_PREFIX) {
        (name, true, false)
    } else if let Some(name) = text.strip_prefix(DLF_PREFIX) {
        (name, false, true)
    } else {
        (text, true, true)
    };
    let in_flink = want_flink && flink.contains(name);
    let in_dlf = want_dlf && dlf.contains(name);
    match (in_flink, in_dlf) {
        (true, false) => Some(name.to_string()),
        (false, true) => Some(format!("{DLF_PREFIX}{name}")),
        (true, true) => {
            context.report(
                file,
                Problem::new(
                    mark,
                    format!("`{name}` in depends_on names both a Flink job and a DLF job"),
                    Some(format!("write `flink:{name}` or `dlf:{name}`")),
                ),
            );
            None
        }
        (false, false) => {
            let names = flink.iter().chain(dlf.iter()).copied();
            let hint = did_you_mean(name, names).or_else(|| {
                Some(
                    "depends_on names jobs of this target (this repository and environment); a job of another target cannot be waited for"
                        .into(),
                )
            });
            context.report(
                file,
                Problem::new(
                    mark,
                    format!("`{text}` in depends_on is not a job of this target"),
                    hint,
                ),
            );
            None
        }
    }
}

/// Reports every cycle once, at the `depends_on` item that closes it.
fn report_cycles(context: &mut Context<'_>, edges: &BTreeMap<String, Vec<Edge>>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color: BTreeMap<&str, Color> = edges
        .keys()
        .map(|key| (key.as_str(), Color::White))
        .collect();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut problems: Vec<(String, Problem)> = Vec::new();
    for start in edges.keys() {
        if color.get(start.as_str()) != Some(&Color::White) {
            continue;
        }
        // Iterative depth-first search: (node, index of its next edge).
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        color.insert(start.as_str(), Color::Grey);
        while let Some((node, next)) = stack.last().copied() {
            let out = edges.get(node).map_or(&[][..], Vec::as_slice);
            if next >= out.len() {
                color.insert(node, Color::Black);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let edge = &out[next];
            match color.get(edge.to.as_str()).copied() {
                Some(Color::White) => {
                    color.insert(edge.to.as_str(), Color::Grey);
                    stack.push((edge.to.as_str(), 0));
                }
                Some(Color::Grey) => {
                    let from = stack
                        .iter()
                        .position(|(name, _)| *name == edge.to)
                        .unwrap_or(0);
                    let mut members: Vec<String> = stack[from..]
                        .iter()
                        .map(|(name, _)| name.to_string())
                        .collect();
                    let mut path = members.clone();
                    path.push(edge.to.clone());
                    members.sort();
                    if reported.insert(members) {
                        problems.push((
                            edge.file.clone(),
                            Problem::new(
                                edge.mark,
                                format!("dependency cycle: {}", path.join(" -> ")),
                                Some("depends_on must not loop back; remove one of these dependencies".into()),
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    for (file, problem) in problems {
        context.report(&file, problem);
    }
}
