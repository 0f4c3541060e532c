//! Building a [`DesiredDlfJob`]: the `.job` definition (the DataArts CreateJob JSON) and its
//! `.script` files read relative to the YAML file, checked, and their `${variables}` filled.
//!
//! DataArts uses `${name}` for its own job parameters too. A reference whose name is not a
//! repository variable but is a declared DLF parameter (the definition's `params`, the job's
//! `params`, or the environment's `dlf.params`) is left for DataArts to fill.

use std::collections::{BTreeMap, BTreeSet};

use super::fields::FieldValue;
use super::files::{self, join_reference, read_text};
use super::resolve::{Checked, Context, JobDocument};
use super::yaml::Mark;
use crate::model::{DesiredDlfJob, RunState, SourceLocation};

const PROCESS_TYPES: &[&str] = &["BATCH", "REAL_TIME"];

pub(crate) fn build(context: &mut Context<'_>, document: &JobDocument) -> Option<DesiredDlfJob> {
    let (checked, fields_clean) = context.check_fields(document);
    let job_params = match checked.get("params") {
        Some(Checked {
            value: FieldValue::Map(params),
            ..
        }) => params.clone(),
        _ => BTreeMap::new(),
    };
    let Some(definition_field) = checked.get("definition_file") else {
        context.report_at(
            &document.file,
            document.mark,
            format!("DlfJob `{}` has no `definition_file`", document.name),
            Some(format!(
                "add `definition_file: {}.job`, the job as DataArts exports it",
                document.name
            )),
        );
        return None;
    };

    let (definition_path, definition_text) =
        read_reference(context, document, definition_field, "definition_file")?;
    let mut definition = parse_json(context, &definition_path, definition_text)?;
    let mut clean = check_definition(context, document, definition_field, &definition);
    clean &= fields_clean;

    let dlf_parameters = dlf_parameter_names(context, &job_params, &definition);
    clean &= fill_json(
        context,
        &definition_path,
        definition_text,
        &mut definition,
        &dlf_parameters,
    );

    let mut scripts = BTreeMap::new();
    if let Some(scripts_field) = checked.get("scripts") {
        scripts = read_scripts(
            context,
            document,
            scripts_field,
            &dlf_parameters,
            &mut clean,
        )?;
    }
    if !clean {
        return None;
    }

    let mut import = context.environment.dlf.clone();
    import.job_params = job_params;
    let prune = !matches!(
        checked.get("prune"),
        Some(Checked {
            value: FieldValue::Boolean(false),
            ..
        })
    );
    let desired_state = match checked.get("desired_state") {
        Some(Checked {
            value: FieldValue::Text(state),
            ..
        }) => match state.as_str() {
            "stopped" => Some(RunState::Stopped),
            _ => Some(RunState::Running),
        },
        _ => None,
    };
    let mut job = DesiredDlfJob {
        name: document.name.clone(),
        definition,
        scripts,
        import,
        prune,
        desired_state,
        source: SourceLocation {
            file: document.file.clone(),
            line: document.mark.line,
        },
        digest: String::new(),
        policy: Default::default(),
    };
    job.digest = super::digest::dlf_job_digest(&job);
    Some(job)
}

/// The DLF parameters a `${name}` may refer to without being a repository variable: the job's
/// `params`, the environment's `dlf.params` and the definition's `params`.
fn dlf_parameter_names(
    context: &Context<'_>,
    job_params: &BTreeMap<String, String>,
    definition: &serde_json::Value,
) -> BTreeSet<String> {
    let mut dlf_parameters: BTreeSet<String> = job_params.keys().cloned().collect();
    dlf_parameters.extend(context.environment.dlf.params.keys().cloned());
    if let Some(serde_json::Value::Array(params)) = definition.get("params") {
        for param in params {
            if let Some(name) = param.get("name").and_then(|name| name.as_str()) {
                dlf_parameters.insert(name.to_string());
            }
        }
    }
    dlf_parameters
}

/// The `scripts:` files: each read, parsed, filled, and named by its `name`; a problem makes
/// `clean` false. `None` when the field is not a list.
fn read_scripts(
    context: &mut Context<'_>,
    document: &JobDocument,
    scripts_field: &Checked,
    dlf_parameters: &BTreeSet<String>,
    clean: &mut bool,
) -> Option<BTreeMap<String, serde_json::Value>> {
    let mut scripts = BTreeMap::new();
    let FieldValue::List(references) = &scripts_field.value else {
        return None;
    };
    for reference in references {
        let reference_field = Checked {
            value: FieldValue::Text(reference.clone()),
            file: scripts_field.file.clone(),
            mark: scripts_field.mark,
        };
        let Some((script_path, script_text)) =
            read_reference(context, document, &reference_field, "scripts")
        else {
            *clean = false;
            continue;
        };
        let Some(mut script) = parse_json(context, &script_path, script_text) else {
            *clean = false;
            continue;
        };
        let Some(script_name) = script
            .get("name")
            .and_then(|name| name.as_str())
            .map(str::to_string)
        else {
            context.report_at(
                &script_path,
                Mark::default(),
                "a .script document needs a string `name`".into(),
                Some("it is the CreateScript body, as DataArts exports it".into()),
            );
            *clean = false;
            continue;
        };
        *clean &= fill_json(
            context,
            &script_path,
            script_text,
            &mut script,
            dlf_parameters,
        );
        if scripts.insert(script_name.clone(), script).is_some() {
            context.report_at(
                &scripts_field.file,
                scripts_field.mark,
                format!("two scripts are named `{script_name}`"),
                None,
            );
            *clean = false;
        }
    }
    Some(scripts)
}

fn read_reference<'a>(
    context: &mut Context<'a>,
    document: &JobDocument,
    field: &Checked,
    field_name: &str,
) -> Option<(String, &'a str)> {
    let FieldValue::Text(relative) = &field.value else {
        return None;
    };
    let path = match join_reference(&document.file, relative) {
        Ok(path) => path,
        Err(message) => {
            context.report_at(
                &field.file,
                field.mark,
                format!("`{field_name}`: {message}"),
                Some("keep referenced files inside the repository".into()),
            );
            return None;
        }
    };
    match read_text(context.snapshot, &path) {
        Ok(found) => Some(found),
        Err(problem) => {
            let (message, hint) = problem.describe(&path);
            context.report_at(
                &field.file,
                field.mark,
                format!("`{field_name}`: {message}"),
                hint,
            );
            None
        }
    }
}

fn parse_json(context: &mut Context<'_>, path: &str, text: &str) -> Option<serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Some(value),
        Ok(_) => {
            context.report_at(path, Mark::default(), "expected a JSON object".into(), None);
            None
        }
        Err(error) => {
            let mark = Mark {
                line: error.line() as u32,
                column: error.column() as u32,
            };
            context.report_at(path, mark, format!("JSON syntax error: {error}"), None);
            None
        }
    }
}

/// The definition's own checks: its name equals the YAML name, nodes, schedule, processType.
fn check_definition(
    context: &mut Context<'_>,
    document: &JobDocument,
    field: &Checked,
    definition: &serde_json::Value,
) -> bool {
    let mut clean = true;
    let mut report = |message: String, hint: Option<String>| {
        context.report_at(&field.file, field.mark, message, hint);
        clean = false;
    };
    match definition.get("name").and_then(|name| name.as_str()) {
        Some(name) if name == document.name => {}
        Some(name) => report(
            format!(
                "the definition names the job `{name}`, but this file names it `{}`",
                document.name
            ),
            Some("DataArts imports by the name inside the .job file; make them equal".into()),
        ),
        None => report("the definition has no string `name`".into(), None),
    }
    match definition.get("nodes") {
        Some(serde_json::Value::Array(nodes)) if !nodes.is_empty() => {}
        _ => report(
            "the definition has no `nodes` (DataArts rejects jobs without nodes, DLF.1006)".into(),
            None,
        ),
    }
    if !definition
        .get("schedule")
        .is_some_and(|schedule| schedule.is_object())
    {
        report("the definition has no `schedule` object".into(), None);
    }
    match definition
        .get("processType")
        .and_then(|value| value.as_str())
    {
        Some(process_type) if PROCESS_TYPES.contains(&process_type) => {}
        other => report(
            format!(
                "the definition's `processType` is {}, expected BATCH or REAL_TIME",
                other.map_or("missing".to_string(), |value| format!("`{value}`"))
            ),
            None,
        ),
    }
    clean
}

/// Reports unknown variables at their place in `text`, then fills every string of `value`.
fn fill_json(
    context: &mut Context<'_>,
    path: &str,
    text: &str,
    value: &mut serde_json::Value,
    dlf_parameters: &BTreeSet<String>,
) -> bool {
    let passthrough = |name: &str| dlf_parameters.contains(name);
    let (_, unknown) = files::substitute(text, &context.environment.variables, &passthrough);
    let clean = unknown.is_empty();
    for variable in unknown {
        let (line, column) = files::line_column(text, variable.offset);
        context.unknown_variable(path, Mark { line, column }, &variable.name);
    }
    fill_strings(value, &context.environment.variables, &passthrough);
    clean
}

fn fill_strings(
    value: &mut serde_json::Value,
    variables: &BTreeMap<String, String>,
    passthrough: &dyn Fn(&str) -> bool,
) {
    match value {
        serde_json::Value::String(text) if text.contains('$') => {
            *text = files::substitute(text, variables, passthrough).0;
        }
        serde_json::Value::Array(items) => {
            for item in items {
                fill_strings(item, variables, passthrough);
            }
        }
        serde_json::Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                fill_strings(item, variables, passthrough);
            }
        }
        _ => {}
    }
}
