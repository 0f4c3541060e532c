//! Building the canonical [`FlinkJobConfig`] and [`Lifecycle`] of a Flink SQL or Jar job from
//! its checked fields: defaults written out, the SQL file read, the managed-by tag added.

use std::collections::BTreeMap;

use super::fields::FieldValue;
use super::files::{self, join_reference, read_text};
use super::resolve::{Checked, Context, JobDocument};
use super::yaml::Mark;
use crate::model::{
    CheckpointMode, DesiredFlinkJob, FlinkJobConfig, JobKind, Lifecycle, MANAGED_TAG_KEY,
    MANAGED_TAG_VALUE, RunState, SourceLocation, UpgradeMode, V1_RESOURCE_FIELDS,
    canonical_json_text,
};

/// The `run_mode`/`job_type` pairs the SQL create body's `job_type` description allows (SDK
/// 3.1.219 `create_flink_sql_job_request_body.py`): `exclusive_cluster` takes both SQL job
/// types, `shared_cluster` only `flink_sql_job`. `edge_node` needs `flink_sql_edge_job` (the
/// job type list of `flink_job.py`) and edge groups, which dli-gitops does not manage.
pub(crate) const RUN_MODE_JOB_TYPES: &[(&str, &[&str])] = &[
    (
        "exclusive_cluster",
        &["flink_opensource_sql_job", "flink_sql_job"],
    ),
    ("shared_cluster", &["flink_sql_job"]),
    ("edge_node", &[]),
];

/// The Flink versions each resource model fits (`resource_config_version` in the SDK
/// create/update bodies: "v1: Flink 1.12, 1.13, 1.15; v2: Flink 1.13, 1.15, 1.17").
const RESOURCE_MODEL_FLINK_VERSIONS: &[(&str, &[&str])] = &[
    ("v1", &["1.12", "1.13", "1.15"]),
    ("v2", &["1.13", "1.15", "1.17"]),
];

/// DLI's limit on tags per resource; managed-by takes one.
const MAX_TAGS: usize = 20;
/// DLI's create limits: SQL text 1 MiB characters, Jar job descriptions 512 characters.
const MAX_SQL_CHARS: usize = 1024 * 1024;
const MAX_JAR_DESC_CHARS: usize = 512;

pub(crate) fn build(context: &mut Context<'_>, document: &JobDocument) -> Option<DesiredFlinkJob> {
    let (checked, fields_clean) = context.check_fields(document);
    let mut config = FlinkJobConfig::defaults_for(document.kind);
    let mut lifecycle = Lifecycle {
        prune: true,
        ..Lifecycle::default()
    };
    let mut clean = fields_clean;
    for (name, field) in &checked {
        apply_field(&mut config, &mut lifecycle, name, &field.value);
    }

    match document.kind {
        JobKind::FlinkSql => {
            clean &= fill_sql(context, document, &checked, &mut config);
        }
        JobKind::FlinkJar => {
            if config.entrypoint.is_none() {
                context.report_at(
                    &document.file,
                    document.mark,
                    format!("FlinkJarJob `{}` has no `entrypoint`", document.name),
                    Some(
                        "add `entrypoint: obs://bucket/path/job.jar` (or a DLI package name)"
                            .into(),
                    ),
                );
                clean = false;
            }
            if let Some(desc) = checked.get("desc")
                && config.desc.chars().count() > MAX_JAR_DESC_CHARS
            {
                context.report_at(
                    &desc.file,
                    desc.mark,
                    format!(
                        "`desc` is {} characters long, more than the {MAX_JAR_DESC_CHARS} DLI allows for Jar jobs",
                        config.desc.chars().count()
                    ),
                    None,
                );
                clean = false;
            }
        }
        JobKind::Dlf => return None,
    }

    // Cross-field checks only on fields that all passed, so a bad value is reported once.
    if fields_clean {
        clean &= check_documented_pairs(context, document, &checked, &config);
    }
    if fields_clean && !config.is_resource_v2() && config.cu_number <= config.manager_cu_number {
        let at = checked
            .get("cu_number")
            .or_else(|| checked.get("manager_cu_number"));
        let (file, mark) = at.map_or((document.file.as_str(), document.mark), |field| {
            (field.file.as_str(), field.mark)
        });
        let file = file.to_string();
        context.report_at(
            &file,
            mark,
            format!(
                "`cu_number` ({}) must be larger than `manager_cu_number` ({})",
                config.cu_number, config.manager_cu_number
            ),
            Some("cu_number counts the job manager's CUs too; task managers get the rest".into()),
        );
        clean = false;
    }

    if let Some(tags) = checked.get("tags") {
        if config.tags.contains_key(MANAGED_TAG_KEY) {
            context.report_at(
                &tags.file,
                tags.mark,
                format!("the tag `{MANAGED_TAG_KEY}` is reserved"),
                Some("dli-gitops adds it to every job it manages; remove it".into()),
            );
            clean = false;
        } else if config.tags.len() + 1 > MAX_TAGS {
            context.report_at(
                &tags.file,
                tags.mark,
                format!(
                    "{} tags, more than the {} allowed ({MAX_TAGS} per job, one is `{MANAGED_TAG_KEY}`)",
                    config.tags.len(),
                    MAX_TAGS - 1
                ),
                None,
            );
            clean = false;
        }
    }
    config
        .tags
        .insert(MANAGED_TAG_KEY.to_string(), MANAGED_TAG_VALUE.to_string());

    if !clean {
        return None;
    }
    let digest = super::digest::flink_job_digest(&document.name, &config, &lifecycle);
    Some(DesiredFlinkJob {
        name: document.name.clone(),
        config,
        lifecycle,
        source: SourceLocation {
            file: document.file.clone(),
            line: document.mark.line,
        },
        digest,
        policy: Default::default(),
    })
}

fn apply_field(
    config: &mut FlinkJobConfig,
    lifecycle: &mut Lifecycle,
    name: &str,
    value: &FieldValue,
) {
    let text = || match value {
        FieldValue::Text(text) => Some(text.clone()),
        _ => None,
    };
    let integer = || match value {
        FieldValue::Integer(value) => *value,
        _ => 0,
    };
    let boolean = || matches!(value, FieldValue::Boolean(true));
    let map = || match value {
        FieldValue::Map(map) => map.clone(),
        _ => BTreeMap::new(),
    };
    let list = || match value {
        FieldValue::List(list) => list.clone(),
        _ => Vec::new(),
    };
    // Integer fields are range-checked against i32 bounds in the field table.
    match name {
        "desc" => config.desc = text().unwrap_or_default(),
        "job_type" => config.job_type = text().unwrap_or_default(),
        "queue_name" => config.queue_name = text(),
        "sql_body" => config.sql_body = text(),
        "run_mode" => config.run_mode = text().unwrap_or_default(),
        "cu_number" => config.cu_number = integer() as i32,
        "manager_cu_number" => config.manager_cu_number = integer() as i32,
        "parallel_number" => config.parallel_number = integer() as i32,
        "tm_cus" => config.tm_cus = integer() as i32,
        "tm_slot_num" => config.tm_slot_num = Some(integer() as i32),
        "checkpoint_enabled" => config.checkpoint_enabled = boolean(),
        "checkpoint_mode" => {
            config.checkpoint_mode = match text().as_deref() {
                Some("at_least_once") => CheckpointMode::AtLeastOnce,
                _ => CheckpointMode::ExactlyOnce,
            }
        }
        "checkpoint_interval" => config.checkpoint_interval = integer() as i32,
        "checkpoint_path" => config.checkpoint_path = text(),
        "obs_bucket" => config.obs_bucket = text(),
        "log_enabled" => config.log_enabled = boolean(),
        "smn_topic" => config.smn_topic = text(),
        "restart_when_exception" => config.restart_when_exception = boolean(),
        "idle_state_retention" => config.idle_state_retention = integer() as i32,
        "resume_checkpoint" => config.resume_checkpoint = boolean(),
        "resume_max_num" => config.resume_max_num = integer(),
        "dirty_data_strategy" => config.dirty_data_strategy = text().unwrap_or_default(),
        "udf_jar_url" => config.udf_jar_url = text(),
        "flink_version" => config.flink_version = text(),
        "execution_agency_urn" => config.execution_agency_urn = text(),
        "runtime_config" => config.runtime_config = map(),
        "tags" => config.tags = map(),
        "entrypoint" => config.entrypoint = text(),
        "main_class" => config.main_class = text(),
        "entrypoint_args" => config.entrypoint_args = text(),
        "dependency_jars" => config.dependency_jars = list(),
        "dependency_files" => config.dependency_files = list(),
        "image" => config.image = text(),
        "feature" => config.feature = text(),
        "resource_config_version" => config.resource_config_version = text(),
        "resource_config" => {
            if let FieldValue::ResourceConfig(resources) = value {
                // `resource_config: {}` asks for nothing: the service's values.
                config.resource_config = Some(resources.clone())
                    .filter(|resources| *resources != crate::model::ResourceConfig::default());
            }
        }
        "operator_config" => config.operator_config = text().map(|t| canonical_json_text(&t)),
        "static_estimator_config" => {
            config.static_estimator_config = text().map(|t| canonical_json_text(&t))
        }
        "flink_log_config" => config.flink_log_config = text().map(|t| canonical_json_text(&t)),
        "desired_state" => {
            lifecycle.desired_state = match text().as_deref() {
                Some("stopped") => RunState::Stopped,
                _ => RunState::Running,
            }
        }
        "upgrade_mode" => {
            lifecycle.upgrade_mode = match text().as_deref() {
                Some("stateless") => UpgradeMode::Stateless,
                _ => UpgradeMode::Savepoint,
            }
        }
        "restore" => {
            if let FieldValue::Restore(restore) = value {
                lifecycle.restore = Some(restore.clone());
            }
        }
        "prune" => lifecycle.prune = boolean(),
        // `$schema` and `sql_file` carry no config of their own.
        _ => {}
    }
}

/// The constraints the SDK models document between fields: the `run_mode`/`job_type` pairs,
/// the resource model (v2 replaces the CU fields with `resource_config`; each model fits some
/// Flink versions), `resume_max_num` -1 or more than 0, and `image` only with `feature: custom`.
/// Each problem names the field, the job type and the valid choices.
fn check_documented_pairs(
    context: &mut Context<'_>,
    document: &JobDocument,
    checked: &BTreeMap<&'static str, Checked>,
    config: &FlinkJobConfig,
) -> bool {
    let mut violations = Vec::new();
    if document.kind == JobKind::FlinkSql {
        violations.extend(run_mode_pair_violation(document, checked, config));
    }
    violations.extend(resource_model_violations(document, checked, config));
    violations.extend(restart_and_image_violations(document, config));
    for violation in &violations {
        let (file, mark) = checked
            .get(violation.field)
            .map_or((document.file.clone(), document.mark), |at| {
                (at.file.clone(), at.mark)
            });
        context.report_at(
            &file,
            mark,
            violation.message.clone(),
            Some(violation.hint.clone()),
        );
    }
    violations.is_empty()
}

/// A documented constraint between fields that a job breaks: the field it is reported at,
/// what is wrong, and what to do.
struct PairViolation {
    field: &'static str,
    message: String,
    hint: String,
}

/// A SQL job's `run_mode` and `job_type` must be a documented pair.
fn run_mode_pair_violation(
    document: &JobDocument,
    checked: &BTreeMap<&'static str, Checked>,
    config: &FlinkJobConfig,
) -> Option<PairViolation> {
    let valid_types = RUN_MODE_JOB_TYPES
        .iter()
        .find(|(mode, _)| *mode == config.run_mode)
        .map_or(&[][..], |(_, types)| *types);
    if valid_types.contains(&config.job_type.as_str()) {
        return None;
    }
    let field = if checked.contains_key("run_mode") {
        "run_mode"
    } else {
        "job_type"
    };
    let modes: Vec<&str> = RUN_MODE_JOB_TYPES
        .iter()
        .filter(|(_, types)| types.contains(&config.job_type.as_str()))
        .map(|(mode, _)| *mode)
        .collect();
    let hint = if config.run_mode == "edge_node" {
        "edge_node needs job_type flink_sql_edge_job and edge groups, which dli-gitops does not manage; use exclusive_cluster".to_string()
    } else {
        format!(
            "with job_type {}, run_mode must be {}; with run_mode {}, job_type must be {}",
            config.job_type,
            modes.join(" or "),
            config.run_mode,
            valid_types.join(" or ")
        )
    };
    Some(PairViolation {
        field,
        message: format!(
            "FlinkSqlJob `{}`: run_mode `{}` and job_type `{}` are not a valid pair (DLI)",
            document.name, config.run_mode, config.job_type
        ),
        hint,
    })
}

/// The resource model: v2 has no CU fields, `resource_config` needs v2, and the model must fit
/// the Flink version.
fn resource_model_violations(
    document: &JobDocument,
    checked: &BTreeMap<&'static str, Checked>,
    config: &FlinkJobConfig,
) -> Vec<PairViolation> {
    let kind = document.kind;
    let mut violations = Vec::new();
    let version = config.resource_config_version.as_deref();
    if config.is_resource_v2() {
        for field in V1_RESOURCE_FIELDS {
            if checked.contains_key(field) {
                violations.push(PairViolation {
                    field,
                    message: format!(
                        "{kind} `{}`: `{field}` is a v1 resource field, but resource_config_version is v2",
                        document.name
                    ),
                    hint: "v2 sizes the job with resource_config (max_slot, parallel_number, jobmanager_resource_spec, taskmanager_resource_spec); remove the CU fields or use resource_config_version: v1".to_string(),
                });
            }
        }
    } else if config.resource_config.is_some() {
        violations.push(PairViolation {
            field: "resource_config",
            message: format!(
                "{kind} `{}`: `resource_config` needs resource_config_version: v2 (it is {})",
                document.name,
                version.unwrap_or("unset, which means v1")
            ),
            hint: "add `resource_config_version: v2`, or size the job with the v1 CU fields"
                .to_string(),
        });
    }
    if let (Some(version), Some(flink_version)) = (version, config.flink_version.as_deref())
        && let Some((_, versions)) = RESOURCE_MODEL_FLINK_VERSIONS
            .iter()
            .find(|(model, _)| *model == version)
        && !versions.contains(&flink_version)
    {
        violations.push(PairViolation {
            field: "flink_version",
            message: format!(
                "{kind} `{}`: flink_version {flink_version} does not fit resource_config_version {version} (DLI)",
                document.name
            ),
            hint: format!(
                "resource_config_version {version} fits Flink {}",
                versions.join(", ")
            ),
        });
    }
    violations
}

/// `resume_max_num` is -1 or above 0, and a Jar job's `image` needs `feature: custom`.
fn restart_and_image_violations(
    document: &JobDocument,
    config: &FlinkJobConfig,
) -> Vec<PairViolation> {
    let kind = document.kind;
    let mut violations = Vec::new();
    if config.resume_max_num == 0 {
        violations.push(PairViolation {
            field: "resume_max_num",
            message: format!(
                "{kind} `{}`: `resume_max_num` is 0; DLI takes -1 (unlimited) or a number above 0",
                document.name
            ),
            hint: "use -1 for unlimited restarts, or set restart_when_exception: false".to_string(),
        });
    }
    if kind == JobKind::FlinkJar
        && config.image.is_some()
        && config.feature.as_deref() != Some("custom")
    {
        violations.push(PairViolation {
            field: "image",
            message: format!(
                "FlinkJarJob `{}`: `image` takes effect only with feature: custom (feature is {})",
                document.name,
                config
                    .feature
                    .as_deref()
                    .unwrap_or("unset, which the service makes basic")
            ),
            hint: "add `feature: custom`, or remove `image` to use DLI's image with flink_version"
                .to_string(),
        });
    }
    violations
}

/// Exactly one of `sql_body` and `sql_file`; the file is read relative to the job's YAML file
/// and its variables are filled. Returns false when there was a problem.
fn fill_sql(
    context: &mut Context<'_>,
    document: &JobDocument,
    checked: &BTreeMap<&'static str, Checked>,
    config: &mut FlinkJobConfig,
) -> bool {
    let sql_file = checked.get("sql_file");
    match (sql_file, checked.get("sql_body")) {
        (Some(file), Some(body)) => {
            let (second, first) =
                if (file.file.as_str(), file.mark) > (body.file.as_str(), body.mark) {
                    (file, "sql_body")
                } else {
                    (body, "sql_file")
                };
            context.report_at(
                &second.file,
                second.mark,
                "both `sql_file` and `sql_body` are given".into(),
                Some(format!("keep one; `{first}` is set too")),
            );
            false
        }
        (None, None) => {
            context.report_at(
                &document.file,
                document.mark,
                format!("FlinkSqlJob `{}` has no SQL", document.name),
                Some(format!(
                    "add `sql_file: {}.sql` (relative to this file) or `sql_body: |`",
                    document.name
                )),
            );
            false
        }
        (None, Some(_)) => check_sql_length(context, &document.file, Mark::default(), config),
        (Some(reference), None) => {
            let FieldValue::Text(relative) = &reference.value else {
                return false;
            };
            let path = match join_reference(&document.file, relative) {
                Ok(path) => path,
                Err(message) => {
                    context.report_at(
                        &reference.file,
                        reference.mark,
                        format!("`sql_file`: {message}"),
                        Some("keep SQL files inside the repository".into()),
                    );
                    return false;
                }
            };
            let (read_path, text) = match read_text(context.snapshot, &path) {
                Ok(found) => found,
                Err(problem) => {
                    let (message, hint) = problem.describe(&path);
                    context.report_at(
                        &reference.file,
                        reference.mark,
                        format!("`sql_file`: {message}"),
                        hint,
                    );
                    return false;
                }
            };
            let (sql, unknown) =
                files::substitute(text, &context.environment.variables, &|_| false);
            let clean = unknown.is_empty();
            for variable in unknown {
                let (line, column) = files::line_column(text, variable.offset);
                context.unknown_variable(&read_path, Mark { line, column }, &variable.name);
            }
            config.sql_body = Some(sql);
            clean && check_sql_length(context, &read_path, Mark::default(), config)
        }
    }
}

fn check_sql_length(
    context: &mut Context<'_>,
    file: &str,
    mark: Mark,
    config: &FlinkJobConfig,
) -> bool {
    let chars = config
        .sql_body
        .as_deref()
        .map_or(0, |sql| sql.chars().count());
    if chars > MAX_SQL_CHARS {
        context.report_at(
            file,
            mark,
            format!(
                "the SQL is {chars} characters long, more than the {MAX_SQL_CHARS} DLI accepts"
            ),
            None,
        );
        return false;
    }
    true
}
