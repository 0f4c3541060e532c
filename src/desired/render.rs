//! Writing jobs back as repository files (for `export`, adopting live jobs): minimal YAML with
//! every field at its default left out, the SQL in its own file, and `${` escaped so that
//! resolving the files gives the same job back.

use serde_yaml::{Mapping, Value};

use super::files::escape_variables;
use crate::model::{
    CheckpointMode, DesiredDlfJob, FlinkJobConfig, JobKind, Lifecycle, MANAGED_TAG_KEY, RunState,
    UpgradeMode,
};

/// `flink/<name>.yaml` (+ `flink/<name>.sql` for SQL jobs): relative paths and contents.
pub fn render_flink_job(
    name: &str,
    config: &FlinkJobConfig,
    lifecycle: &Lifecycle,
) -> Vec<(String, String)> {
    let kind = config.kind();
    let defaults = FlinkJobConfig::defaults_for(kind);
    let mut document = Mapping::new();
    let mut put = |key: &str, value: Value| {
        document.insert(Value::String(key.to_string()), value);
    };
    put("kind", text(kind.as_str()));
    put("name", text(name));

    let mut files = Vec::new();
    let field_map = config.to_field_map();
    let default_map = defaults.to_field_map();
    // The field table's order: identity, placement, SQL, resources, checkpoints, the rest.
    for spec in super::fields::FIELDS {
        let field = spec.name;
        // Only what the job type carries, and for a v2 job not the CU numbers the service
        // computed (a job file may not set them next to resource_config).
        if !config.compares(field) {
            continue;
        }
        let Some(value) = field_map.get(field) else {
            continue;
        };
        if default_map.get(field) == Some(value) || value.is_null() {
            continue;
        }
        match field {
            "sql_body" => {
                let sql = config.sql_body.as_deref().unwrap_or_default();
                put("sql_file", text(&format!("{name}.sql")));
                files.push((
                    format!("flink/{name}.sql"),
                    escape_variables(sql, &|_| false),
                ));
            }
            "checkpoint_mode" => put(
                field,
                text(match config.checkpoint_mode {
                    CheckpointMode::ExactlyOnce => "exactly_once",
                    CheckpointMode::AtLeastOnce => "at_least_once",
                }),
            ),
            "tags" => {
                let tags: Vec<(&String, &String)> = config
                    .tags
                    .iter()
                    .filter(|(key, _)| key.as_str() != MANAGED_TAG_KEY)
                    .collect();
                if !tags.is_empty() {
                    put(field, string_map(tags));
                }
            }
            "runtime_config" => put(field, string_map(config.runtime_config.iter().collect())),
            _ => put(field, yaml_value(value)),
        }
    }
    if lifecycle.desired_state != RunState::Running {
        put("desired_state", text("stopped"));
    }
    if lifecycle.upgrade_mode != UpgradeMode::Savepoint {
        put("upgrade_mode", text("stateless"));
    }
    if let Some(restore) = &lifecycle.restore {
        let mut map = Mapping::new();
        if let Some(path) = &restore.savepoint_path {
            map.insert(text("savepoint_path"), text(path));
        }
        if let Some(nonce) = restore.nonce {
            map.insert(text("nonce"), Value::Number(nonce.into()));
        }
        if let Some(target) = &restore.from_target {
            map.insert(text("from_target"), text(target));
        }
        match restore.from_catalog {
            Some(crate::model::CatalogRef::Latest) => {
                map.insert(text("from_catalog"), text("latest"));
            }
            Some(crate::model::CatalogRef::Seq(seq)) => {
                map.insert(text("from_catalog"), Value::Number(seq.into()));
            }
            None => {}
        }
        put("restore", Value::Mapping(map));
    }
    if !lifecycle.prune {
        put("prune", Value::Bool(false));
    }
    let yaml = to_yaml(&Value::Mapping(document));
    files.insert(0, (format!("flink/{name}.yaml"), yaml));
    debug_assert!(kind != JobKind::Dlf);
    files
}

/// `dlf/<name>.yaml` + `dlf/<name>.job` + one `dlf/<script>.script` per script. The
/// environment's import settings (params, resources, target status, approvers) belong in an
/// environment file and are not written; the job's own `params` are.
pub fn render_dlf_job(job: &DesiredDlfJob) -> Vec<(String, String)> {
    let name = &job.name;
    let declared = declared_parameters(job);
    let keep = |variable: &str| declared.iter().any(|parameter| parameter == variable);
    let mut document = Mapping::new();
    document.insert(text("kind"), text(JobKind::Dlf.as_str()));
    document.insert(text("name"), text(name));
    document.insert(text("definition_file"), text(&format!("{name}.job")));
    let mut files = Vec::new();
    if !job.scripts.is_empty() {
        let mut scripts = Vec::new();
        for (script_name, script) in &job.scripts {
            let file_name = format!("{}.script", safe_file_stem(script_name));
            scripts.push(text(&file_name));
            files.push((format!("dlf/{file_name}"), pretty_json(script, &keep)));
        }
        document.insert(text("scripts"), Value::Sequence(scripts));
    }
    if !job.import.job_params.is_empty() {
        document.insert(
            text("params"),
            string_map(job.import.job_params.iter().collect()),
        );
    }
    if !job.prune {
        document.insert(text("prune"), Value::Bool(false));
    }
    match job.desired_state {
        Some(RunState::Running) => {
            document.insert(text("desired_state"), text("running"));
        }
        Some(RunState::Stopped) => {
            document.insert(text("desired_state"), text("stopped"));
        }
        None => {}
    }
    files.insert(
        0,
        (
            format!("dlf/{name}.job"),
            pretty_json(&job.definition, &keep),
        ),
    );
    files.insert(
        0,
        (
            format!("dlf/{name}.yaml"),
            to_yaml(&Value::Mapping(document)),
        ),
    );
    files
}

/// DLF parameters the job declares: `${name}` of these stays as DataArts wrote it.
fn declared_parameters(job: &DesiredDlfJob) -> Vec<String> {
    let mut names: Vec<String> = job.import.job_params.keys().cloned().collect();
    if let Some(serde_json::Value::Array(params)) = job.definition.get("params") {
        names.extend(
            params
                .iter()
                .filter_map(|param| param.get("name")?.as_str().map(str::to_string)),
        );
    }
    names
}

fn safe_file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn text(value: &str) -> Value {
    Value::String(escape_variables(value, &|_| false))
}

fn string_map(entries: Vec<(&String, &String)>) -> Value {
    let mut map = Mapping::new();
    for (key, value) in entries {
        map.insert(Value::String(key.clone()), text(value));
    }
    Value::Mapping(map)
}

fn yaml_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => Value::Number(integer.into()),
            (None, Some(float)) => Value::Number(float.into()),
            _ => text(&number.to_string()),
        },
        serde_json::Value::String(string) => text(string),
        serde_json::Value::Array(items) => Value::Sequence(items.iter().map(yaml_value).collect()),
        serde_json::Value::Object(map) => {
            let mut mapping = Mapping::new();
            for (key, item) in map {
                mapping.insert(Value::String(key.clone()), yaml_value(item));
            }
            Value::Mapping(mapping)
        }
    }
}

/// Block-style YAML written by hand rather than by `serde_yaml`: libyaml follows YAML 1.1 and
/// folds characters such as U+2028 inside quoted scalars, which a YAML 1.2 reader (ours) keeps.
/// Strings are plain when that is unambiguous, double-quoted with escapes otherwise.
fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    if let Value::Mapping(mapping) = value {
        emit_mapping(mapping, 0, &mut out);
    }
    out
}

fn emit_mapping(mapping: &Mapping, indent: usize, out: &mut String) {
    for (key, value) in mapping {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(key));
        out.push(':');
        emit_value(value, indent, out);
    }
}

fn emit_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Mapping(mapping) if mapping.is_empty() => out.push_str(" {}\n"),
        Value::Sequence(items) if items.is_empty() => out.push_str(" []\n"),
        Value::Mapping(mapping) => {
            out.push('\n');
            emit_mapping(mapping, indent + 2, out);
        }
        Value::Sequence(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                emit_value(item, indent + 2, out);
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => string_scalar(text),
        // Not produced by this module: collections are emitted by emit_value.
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => "null".into(),
    }
}

fn string_scalar(text: &str) -> String {
    let plain_safe = !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '_' | '-' | '.' | '/' | ':' | '@' | ' ' | ',' | '=' | '+' | '(' | ')' | '$'
                )
        })
        && text
            .starts_with(|c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '$'))
        && !text.ends_with([' ', ':'])
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.contains("${")
        && super::yaml::Scalar {
            text: text.to_string(),
            quoted: false,
            inline_offset: None,
        }
        .typed()
            == super::yaml::Typed::Str(text);
    if plain_safe {
        return text.to_string();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{feff}') => {
                quoted.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn pretty_json(value: &serde_json::Value, keep: &dyn Fn(&str) -> bool) -> String {
    let escaped = escape_json_strings(value, keep);
    let mut text = serde_json::to_string_pretty(&escaped).unwrap_or_default();
    text.push('\n');
    text
}

fn escape_json_strings(
    value: &serde_json::Value,
    keep: &dyn Fn(&str) -> bool,
) -> serde_json::Value {
    match value {
        serde_json::Value::String(string) => {
            serde_json::Value::String(escape_variables(string, keep))
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|item| escape_json_strings(item, keep))
                .collect(),
        ),
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), escape_json_strings(item, keep)))
                .collect(),
        ),
        other => other.clone(),
    }
}
