//! The job repository through its public API: the example repository, a corpus of broken
//! repositories (snapshot-tested validation output), render/resolve round trips, digest
//! properties, and the `validate`/`schema` commands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dli_gitops::desired::{
    self, snapshot::MAX_FILE_BYTES, snapshot::RepoFile, snapshot::RepoSnapshot,
};
use dli_gitops::model::{
    CheckpointMode, Cpu, DesiredDlfJob, DlfImportSettings, FlinkJobConfig, JobKind, Lifecycle,
    MANAGED_TAG_KEY, ResourceConfig, ResourceSpec, Restore, RunState, SourceLocation, UpgradeMode,
    canonical_json_text,
};
use proptest::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec")
}

/// A checked-in copy of `examples/jobs` (`.ci/run` checks they are equal on a fresh clone): the
/// live `examples/` is the quick start's to edit, and tests never read it.
fn example_repository() -> RepoSnapshot {
    desired::read_directory(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/example-jobs"),
    )
    .unwrap()
}

fn broken(case: &str) -> RepoSnapshot {
    desired::read_directory(&fixtures().join("broken").join(case)).unwrap()
}

fn snapshot_of(files: &[(&str, &str)]) -> RepoSnapshot {
    let mut snapshot = RepoSnapshot::default();
    for (path, text) in files {
        snapshot
            .files
            .insert(path.to_string(), RepoFile::Data(text.as_bytes().to_vec()));
    }
    snapshot.revision = desired::content_revision(&snapshot);
    snapshot
}

/// The validation report of a broken repository, compared with its committed snapshot.
fn check(case: &str, snapshot: &RepoSnapshot, environment: Option<&str>) {
    let report = desired::validate(snapshot, environment);
    assert!(!report.is_clean(), "{case} should not validate");
    insta::with_settings!({ snapshot_path => fixtures().join("snapshots"), prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(case, report.render_text());
    });
}

#[test]
fn broken_syntax_error() {
    check("syntax-error", &broken("syntax-error"), None);
}

#[test]
fn broken_unknown_field_suggests_the_closest_name() {
    check("unknown-field", &broken("unknown-field"), None);
}

#[test]
fn broken_job_type_fields_and_documented_pairs() {
    // Fields the job type cannot carry, invalid run_mode/job_type pairs, v1/v2 resource fields,
    // Flink versions per resource model, Jar desc > 512, and the other SDK-documented limits.
    check("job-type-fields", &broken("job-type-fields"), None);
}

#[test]
fn broken_wrong_type() {
    check("wrong-type", &broken("wrong-type"), None);
}

#[test]
fn broken_out_of_range() {
    check("out-of-range", &broken("out-of-range"), None);
}

#[test]
fn broken_name_too_long() {
    check("name-too-long", &broken("name-too-long"), None);
}

#[test]
fn broken_duplicate_name_across_flink_kinds() {
    check("duplicate-name", &broken("duplicate-name"), None);
}

#[test]
fn broken_unknown_variable_in_yaml_and_sql() {
    check("unknown-variable", &broken("unknown-variable"), None);
}

#[test]
fn broken_missing_sql_file() {
    check("missing-sql-file", &broken("missing-sql-file"), None);
}

#[test]
fn broken_parent_directory_escape() {
    check("parent-escape", &broken("parent-escape"), None);
}

#[test]
fn broken_alias_bomb_is_refused_before_expansion() {
    check("alias-bomb", &broken("alias-bomb"), None);
}

#[test]
fn broken_dlf_name_mismatch() {
    check("dlf-name-mismatch", &broken("dlf-name-mismatch"), None);
}

#[test]
fn broken_unknown_environment() {
    check(
        "unknown-environment",
        &broken("unknown-environment"),
        Some("prod"),
    );
}

#[test]
fn broken_many_problems_are_all_reported_at_once() {
    check("many-problems", &broken("many-problems"), None);
}

#[test]
fn broken_symlink_outside_the_repository() {
    let mut snapshot = snapshot_of(&[(
        "flink/clicks.yaml",
        "kind: FlinkSqlJob\nname: clicks\nsql_file: clicks.sql\nqueue_name: q1\n",
    )]);
    snapshot.files.insert(
        "flink/clicks.sql".into(),
        RepoFile::Symlink {
            target: "../../../etc/passwd".into(),
        },
    );
    snapshot.files.insert(
        "flink/other.yaml".into(),
        RepoFile::Symlink {
            target: "/etc/hostname".into(),
        },
    );
    check("symlink-outside", &snapshot, None);
}

#[test]
fn broken_oversized_files_are_not_read() {
    let mut snapshot = snapshot_of(&[(
        "flink/clicks.yaml",
        "kind: FlinkSqlJob\nname: clicks\nsql_file: clicks.sql\nqueue_name: q1\n",
    )]);
    snapshot.files.insert(
        "flink/clicks.sql".into(),
        RepoFile::Oversized {
            size: MAX_FILE_BYTES + 1,
        },
    );
    snapshot.files.insert(
        "flink/huge.yaml".into(),
        RepoFile::Oversized {
            size: 50 * 1024 * 1024,
        },
    );
    check("oversized", &snapshot, None);
}

#[test]
fn the_example_repository_validates_in_every_environment() {
    let snapshot = example_repository();
    assert_eq!(desired::environments(&snapshot), ["dev", "prod"]);
    let report = desired::validate(&snapshot, None);
    assert!(report.is_clean(), "{}", report.render_text());
    assert_eq!(
        report.summary(),
        "ok: 4 Flink jobs and 1 DLF job valid (environments dev, prod)"
    );
}

#[test]
fn the_example_repository_resolves_prod_with_overrides_and_replacements() {
    let desired = desired::resolve(&example_repository(), Some("prod")).unwrap();
    let names: Vec<_> = desired.flink.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "clickstream-agg",
            "fraud-detector",
            "order-archive",
            "order-enrichment"
        ]
    );
    let clicks = &desired.flink[0];
    assert_eq!(clicks.config.queue_name.as_deref(), Some("prod_flink"));
    assert_eq!(clicks.config.cu_number, 16);
    assert_eq!(clicks.config.parallel_number, 8);
    // Maps merge key by key: the override changes one key and keeps the others.
    assert_eq!(
        clicks.config.runtime_config["table.exec.mini-batch.size"],
        "20000"
    );
    assert_eq!(clicks.config.runtime_config["table.exec.state.ttl"], "1h");
    assert_eq!(
        clicks.config.runtime_config["table.exec.mini-batch.enabled"],
        "true"
    );
    assert_eq!(clicks.config.tags[MANAGED_TAG_KEY], "dli-gitops");
    assert_eq!(clicks.config.flink_version.as_deref(), Some("1.15"));
    let sql = clicks.config.sql_body.as_deref().unwrap();
    assert!(sql.contains("10.20.1.11:9092"), "{sql}");
    assert!(!sql.contains("${"), "{sql}");
    assert_eq!(clicks.source.file, "flink/clickstream-agg.yaml");

    let archive = &desired.flink[2];
    assert_eq!(archive.config.checkpoint_mode, CheckpointMode::AtLeastOnce);
    assert_eq!(archive.lifecycle.upgrade_mode, UpgradeMode::Stateless);
    assert_eq!(archive.config.manager_cu_number, 1);

    let fraud = &desired.flink[1];
    assert_eq!(fraud.kind(), JobKind::FlinkJar);
    assert!(!fraud.lifecycle.prune);
    assert_eq!(
        fraud.config.entrypoint.as_deref(),
        Some("obs://dli-gitops-artifacts/fraud-detector/fraud-detector-2.3.1.jar")
    );

    let nightly = &desired.dlf[0];
    assert_eq!(nightly.import.target_status.as_deref(), Some("SUBMITTED"));
    assert_eq!(
        nightly.import.resources[0].replace.as_deref(),
        Some("prod_dws")
    );
    assert_eq!(nightly.import.params["env"], "prod");
    assert_eq!(nightly.import.job_params["retention_days"], "400");
    assert_eq!(
        nightly.definition["logPath"],
        "obs://dli-gitops-logs-prod/dlf/nightly-load/"
    );
    // DataArts' own parameters stay for DataArts to fill.
    let script = nightly.scripts["load_orders_daily"]["content"]
        .as_str()
        .unwrap();
    assert!(script.contains("'${bizdate}'::date"), "{script}");
}

#[test]
fn environments_change_only_what_they_override() {
    let snapshot = example_repository();
    let dev = desired::resolve(&snapshot, Some("dev")).unwrap();
    let prod = desired::resolve(&snapshot, Some("prod")).unwrap();
    let fraud_dev = dev
        .flink
        .iter()
        .find(|job| job.name == "fraud-detector")
        .unwrap();
    assert_eq!(fraud_dev.lifecycle.desired_state, RunState::Stopped);
    assert_eq!(fraud_dev.config.cu_number, 4);
    for (dev_job, prod_job) in dev.flink.iter().zip(&prod.flink) {
        assert_ne!(dev_job.digest, prod_job.digest, "{}", dev_job.name);
    }
}

#[test]
fn without_an_environment_variables_are_reported() {
    let diagnostics = desired::resolve(&example_repository(), None).unwrap_err();
    let variable = diagnostics
        .iter()
        .find(|diagnostic| diagnostic.message == "unknown variable `${flink_queue}`")
        .unwrap();
    assert_eq!(variable.file, "flink/clickstream-agg.yaml");
    assert_eq!((variable.line, variable.column), (4, 13));
    assert!(variable.hint.as_deref().unwrap().contains("--env"));
}

#[test]
fn resolving_is_deterministic() {
    let snapshot = example_repository();
    for environment in ["dev", "prod"] {
        let first = desired::resolve(&snapshot, Some(environment)).unwrap();
        let second = desired::resolve(&snapshot.clone(), Some(environment)).unwrap();
        assert_eq!(first, second);
    }
}

#[test]
fn diagnostics_serialise_for_json_output() {
    let report = desired::validate(&broken("unknown-field"), None);
    let json = report.to_json();
    assert_eq!(json["ok"], false);
    let diagnostic = &json["results"][0]["diagnostics"][0];
    assert_eq!(diagnostic["file"], "flink/clicks.yaml");
    assert_eq!(diagnostic["line"], 5);
    assert_eq!(diagnostic["column"], 1);
    assert_eq!(diagnostic["hint"], "did you mean `cu_number`?");
}

#[test]
fn the_schema_has_one_branch_per_kind_with_every_field() {
    let schema = desired::schema();
    let branches = schema["oneOf"].as_array().unwrap();
    let kinds: Vec<_> = branches
        .iter()
        .map(|branch| branch["properties"]["kind"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["FlinkSqlJob", "FlinkJarJob", "DlfJob"]);
    let sql = &branches[0]["properties"];
    for field in [
        "queue_name",
        "sql_file",
        "cu_number",
        "runtime_config",
        "restore",
    ] {
        assert!(sql[field]["description"].is_string(), "{field}");
    }
    assert_eq!(sql["cu_number"]["anyOf"][0]["maximum"], 400);
    assert_eq!(branches[0]["additionalProperties"], false);
    assert!(branches[1]["properties"]["sql_file"].is_null());
    assert!(schema["$defs"]["environment"]["properties"]["dlf"].is_object());
}

#[test]
fn the_validate_command_exits_by_result() {
    let binary = env!("CARGO_BIN_EXE_dli-gitops");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/example-jobs");
    let output = std::process::Command::new(binary)
        .args(["validate", "--repo"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok: 4 Flink jobs"));

    let output = std::process::Command::new(binary)
        .args(["validate", "--format", "json", "--repo"])
        .arg(fixtures().join("broken/many-problems"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert!(json["problems"].as_u64().unwrap() >= 10, "{json}");

    let output = std::process::Command::new(binary)
        .arg("schema")
        .output()
        .unwrap();
    assert!(output.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(schema, desired::schema());
}

// ---- render → resolve round trips and digest properties ----

fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ,.:/_-]{1,24}",
        "\\PC{1,24}",
        Just("${not_a_variable} and $${escaped} and $".to_string()),
        Just("1.10".to_string()),
        Just("true".to_string()),
        Just(" leading and trailing ".to_string()),
    ]
}

fn optional_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text_strategy())
}

fn text_map(max: usize, min_value: usize) -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        "[a-z][a-z0-9.-]{0,15}",
        text_strategy().prop_filter("value length", move |value| {
            value.chars().count() >= min_value
        }),
        0..max,
    )
}

fn lifecycle_strategy() -> impl Strategy<Value = Lifecycle> {
    (
        prop_oneof![Just(RunState::Running), Just(RunState::Stopped)],
        prop_oneof![Just(UpgradeMode::Savepoint), Just(UpgradeMode::Stateless)],
        proptest::option::of((
            "obs://[a-z]{3,8}/[a-z]{1,8}/",
            proptest::option::of(0u64..1000),
            proptest::option::of("[a-z]{2,8}"),
        )),
        any::<bool>(),
    )
        .prop_map(|(desired_state, upgrade_mode, restore, prune)| Lifecycle {
            desired_state,
            upgrade_mode,
            restore: restore.map(|(savepoint_path, nonce, from_target)| Restore {
                savepoint_path: Some(savepoint_path),
                nonce,
                from_target,
                from_catalog: None,
            }),
            prune,
        })
}

fn flink_config_strategy() -> impl Strategy<Value = FlinkJobConfig> {
    let resources = (
        2i32..=400,
        1i32..=2000,
        1i32..=400,
        proptest::option::of(1i32..=2000),
        any::<bool>(),
        prop_oneof![
            Just(CheckpointMode::ExactlyOnce),
            Just(CheckpointMode::AtLeastOnce)
        ],
        1i32..=3600,
        prop_oneof![Just(-1i64), 1i64..=100],
    );
    let places = (
        optional_text(),
        proptest::option::of("obs://[a-z]{3,8}/[a-z]{1,8}/"),
        proptest::option::of("[a-z][a-z0-9-]{1,20}[a-z0-9]"),
        optional_text(),
        proptest::option::of("1\\.1[0-9]"),
        text_map(6, 0),
        text_map(6, 1),
        // The run_mode/job_type pairs DLI documents as valid.
        prop_oneof![
            Just(("exclusive_cluster", "flink_opensource_sql_job")),
            Just(("exclusive_cluster", "flink_sql_job")),
            Just(("shared_cluster", "flink_sql_job")),
        ],
    );
    let sql = (
        Just(()),
        "(\\PC|\n){1,200}",
        1i32..=100_000,
        prop_oneof![Just("0"), Just("1"), Just("2:obs://bucket/dirty")],
        optional_text(),
    );
    let jar = (
        "obs://[a-z]{3,8}/[a-z]{1,8}\\.jar",
        optional_text(),
        optional_text(),
        proptest::collection::vec("obs://[a-z]{3,8}/[a-z]{1,8}\\.jar", 0..3),
        proptest::option::of(prop_oneof![
            Just("basic".to_string()),
            Just("custom".to_string())
        ]),
    );
    (
        any::<bool>(),
        resources,
        places,
        sql,
        jar,
        "[a-zA-Z0-9 ,.${}-]{0,40}",
        any::<bool>(),
        newer_fields_strategy(),
    )
        .prop_map(
            |(is_jar, resources, places, sql, jar, desc, flags, newer)| {
                let kind = if is_jar {
                    JobKind::FlinkJar
                } else {
                    JobKind::FlinkSql
                };
                let mut config = FlinkJobConfig::defaults_for(kind);
                let (cu, parallel, tm_cus, tm_slots, checkpoint, mode, interval, resume_max) =
                    resources;
                config.cu_number = cu;
                config.manager_cu_number = 1 + (cu - 2) / 4;
                config.parallel_number = parallel;
                config.tm_cus = tm_cus;
                config.tm_slot_num = tm_slots;
                config.checkpoint_enabled = checkpoint;
                config.checkpoint_mode = mode;
                config.checkpoint_interval = interval;
                config.resume_max_num = resume_max;
                config.log_enabled = flags;
                config.restart_when_exception = !flags;
                config.resume_checkpoint = checkpoint && flags;
                let (queue, checkpoint_path, bucket, smn, version, runtime, tags, run_mode) =
                    places;
                config.queue_name = queue;
                // The SQL create/update bodies carry no checkpoint_path and the Jar ones no run_mode
                // (official SDK request models), so each field exists for one kind only.
                if is_jar {
                    config.checkpoint_path = checkpoint_path;
                }
                config.obs_bucket = bucket;
                config.smn_topic = smn;
                config.flink_version = version;
                config.runtime_config = runtime;
                config.tags = tags;
                if !is_jar {
                    config.run_mode = run_mode.0.to_string();
                    config.job_type = run_mode.1.to_string();
                    // An exclusive-cluster job needs its queue (DLI.13024 otherwise).
                    if config.run_mode == "exclusive_cluster" && config.queue_name.is_none() {
                        config.queue_name = Some("flink_queue".into());
                    }
                }
                config.desc = desc;
                if is_jar {
                    let (entrypoint, main_class, arguments, jars, feature) = jar;
                    config.entrypoint = Some(entrypoint);
                    config.main_class = main_class;
                    config.entrypoint_args = arguments;
                    config.dependency_jars = jars;
                    config.feature = feature;
                } else {
                    let ((), body, retention, dirty, udf) = sql;
                    config.sql_body = Some(body);
                    config.idle_state_retention = retention;
                    config.dirty_data_strategy = dirty.to_string();
                    config.udf_jar_url = udf;
                }
                let (resources_v2, v2_flink_version, operator, estimator, log) = newer;
                if let Some(resources) = resources_v2 {
                    // v2 replaces the CU fields: they stay at their defaults (never written).
                    let defaults = FlinkJobConfig::defaults_for(kind);
                    config.cu_number = defaults.cu_number;
                    config.manager_cu_number = defaults.manager_cu_number;
                    config.parallel_number = defaults.parallel_number;
                    config.tm_cus = defaults.tm_cus;
                    config.tm_slot_num = defaults.tm_slot_num;
                    config.resource_config_version = Some("v2".into());
                    config.resource_config = Some(resources);
                    config.flink_version = v2_flink_version;
                }
                if !is_jar {
                    config.operator_config = operator;
                    config.static_estimator_config = estimator;
                }
                config.flink_log_config = log;
                config
                    .tags
                    .insert(MANAGED_TAG_KEY.into(), "dli-gitops".into());
                config
            },
        )
}

/// v2 resources, the Flink version for them, operator_config, static_estimator_config,
/// flink_log_config.
type NewerFields = (
    Option<ResourceConfig>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The v2 resource model and the JSON text fields, in canonical form.
fn newer_fields_strategy() -> impl Strategy<Value = NewerFields> {
    let spec = (
        proptest::option::of(1i64..=64_000),
        proptest::option::of(prop_oneof![
            (1u32..=64).prop_map(|gb| format!("{gb}G")),
            (512u32..=65536).prop_map(|mb| format!("{mb}M")),
        ]),
    )
        .prop_map(|(cpu, memory)| ResourceSpec {
            cpu: cpu.map(Cpu),
            memory,
        });
    let resources = (
        proptest::option::of(1i32..=16),
        proptest::option::of(1i32..=2000),
        proptest::option::of(spec.clone()),
        proptest::option::of(spec),
    )
        .prop_map(|(max_slot, parallel_number, jm, tm)| ResourceConfig {
            max_slot: max_slot.or(Some(1)),
            parallel_number,
            jobmanager_resource_spec: jm.filter(|spec| *spec != ResourceSpec::default()),
            taskmanager_resource_spec: tm.filter(|spec| *spec != ResourceSpec::default()),
        });
    let operators = proptest::option::of((1u32..=8).prop_map(|parallelism| {
        canonical_json_text(&format!(
            r#"{{"operator_list":[{{"id":"0a448493b4782967b150582570326227","parallelism":{parallelism}}}]}}"#
        ))
    }));
    let estimates = proptest::option::of((1u32..=100).prop_map(|rate| {
        canonical_json_text(&format!(
            r#"{{"operator_list":[{{"id":"6d2677a0ecc3fd8df0b72ec675edf8f4","rate_factor":0.{rate}}}]}}"#
        ))
    }));
    let log = proptest::option::of(
        prop_oneof![Just("INFO"), Just("WARN"), Just("DEBUG")].prop_map(|level| {
            canonical_json_text(&format!(
                r#"{{"root_logger_level":"{level}","loggers_level_of_class":{{"org.apache.flink":"ERROR"}}}}"#
            ))
        }),
    );
    (
        proptest::option::of(resources),
        proptest::option::of(
            prop_oneof![Just("1.13"), Just("1.15"), Just("1.17")].prop_map(String::from),
        ),
        operators,
        estimates,
        log,
    )
}

fn snapshot_from_rendered(files: Vec<(String, String)>) -> RepoSnapshot {
    let mut snapshot = RepoSnapshot::default();
    for (path, text) in files {
        snapshot
            .files
            .insert(path, RepoFile::Data(text.into_bytes()));
    }
    snapshot.revision = desired::content_revision(&snapshot);
    snapshot
}

/// Writes a YAML mapping as JSON (which is YAML in flow style) with its keys in reverse order.
fn as_reversed_flow(yaml: &str) -> String {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let serde_yaml::Value::Mapping(mapping) = value else {
        panic!("not a mapping")
    };
    let mut parts = Vec::new();
    let entries: Vec<_> = mapping.iter().collect();
    for (key, value) in entries.into_iter().rev() {
        let key: serde_json::Value = serde_yaml::from_value(key.clone()).unwrap();
        let value: serde_json::Value = serde_yaml::from_value(value.clone()).unwrap();
        parts.push(format!("{key}: {value}"));
    }
    format!("# reformatted\n{{\n  {}\n}}\n", parts.join(",\n  "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn render_then_resolve_gives_back_the_same_flink_job(
        config in flink_config_strategy(),
        lifecycle in lifecycle_strategy(),
    ) {
        let files = desired::render::render_flink_job("job-1", &config, &lifecycle);
        let rendered = format!("{files:#?}");
        let snapshot = snapshot_from_rendered(files);
        let desired = match desired::resolve(&snapshot, None) {
            Ok(desired) => desired,
            Err(diagnostics) => panic!("{diagnostics}\n{rendered}"),
        };
        prop_assert_eq!(desired.flink.len(), 1);
        prop_assert_eq!(&desired.flink[0].config, &config, "{}", rendered);
        prop_assert_eq!(&desired.flink[0].lifecycle, &lifecycle);
        prop_assert_eq!(
            &desired.flink[0].digest,
            &desired::flink_job_digest("job-1", &config, &lifecycle)
        );
    }

    #[test]
    fn the_digest_ignores_key_order_and_formatting_but_not_meaning(
        config in flink_config_strategy(),
        lifecycle in lifecycle_strategy(),
    ) {
        let files = desired::render::render_flink_job("job-1", &config, &lifecycle);
        let original = desired::resolve(&snapshot_from_rendered(files.clone()), None).unwrap();

        let reformatted: Vec<_> = files
            .iter()
            .map(|(path, text)| {
                if path.ends_with(".yaml") {
                    (path.clone(), as_reversed_flow(text))
                } else {
                    (path.clone(), text.clone())
                }
            })
            .collect();
        let again = desired::resolve(&snapshot_from_rendered(reformatted), None).unwrap();
        prop_assert_eq!(&again.flink[0].digest, &original.flink[0].digest);
        prop_assert_eq!(&again.flink[0].config, &original.flink[0].config);

        let mut changed = config.clone();
        changed.checkpoint_interval = if config.checkpoint_interval == 3600 { 3599 } else { config.checkpoint_interval + 1 };
        let files = desired::render::render_flink_job("job-1", &changed, &lifecycle);
        let different = desired::resolve(&snapshot_from_rendered(files), None).unwrap();
        prop_assert_ne!(&different.flink[0].digest, &original.flink[0].digest);
    }

    #[test]
    fn resolving_generated_repositories_is_deterministic(
        config in flink_config_strategy(),
        lifecycle in lifecycle_strategy(),
    ) {
        let snapshot = snapshot_from_rendered(desired::render::render_flink_job("job-1", &config, &lifecycle));
        prop_assert_eq!(desired::resolve(&snapshot, None), desired::resolve(&snapshot, None));
    }
}

#[test]
fn render_then_resolve_gives_back_the_dlf_job() {
    let prod = desired::resolve(&example_repository(), Some("prod")).unwrap();
    let nightly = &prod.dlf[0];
    let adopted = DesiredDlfJob {
        import: DlfImportSettings {
            job_params: nightly.import.job_params.clone(),
            ..DlfImportSettings::default()
        },
        source: SourceLocation {
            file: "dlf/nightly-load.yaml".into(),
            line: 1,
        },
        ..nightly.clone()
    };
    let files = desired::render::render_dlf_job(&adopted);
    let paths: Vec<_> = files.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "dlf/nightly-load.yaml",
            "dlf/nightly-load.job",
            "dlf/load_orders_daily.script"
        ]
    );
    // Declared DataArts parameters stay readable; nothing else needs escaping here.
    assert!(files[2].1.contains("'${bizdate}'::date"));
    let resolved = desired::resolve(&snapshot_from_rendered(files), None).unwrap();
    let back = &resolved.dlf[0];
    assert_eq!(back.definition, adopted.definition);
    assert_eq!(back.scripts, adopted.scripts);
    assert_eq!(back.import, adopted.import);
    assert_eq!(back.prune, adopted.prune);
    assert_eq!(back.digest, desired::dlf_job_digest(&adopted));
}

#[test]
fn a_broken_environment_file_is_the_only_problem_reported_for_its_variables() {
    let snapshot = snapshot_of(&[
        (
            "flink/clicks.yaml",
            "kind: FlinkSqlJob\nname: clicks\nqueue_name: ${queue}\nsql_body: SELECT 1\n",
        ),
        ("environments/dev.yaml", "variables: {queue: [dev\n"),
        ("environments/empty.yaml", "# nothing yet\n"),
    ]);
    let diagnostics = desired::resolve(&snapshot, Some("dev")).unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{diagnostics}");
    assert_eq!(
        diagnostics.iter().next().unwrap().file,
        "environments/dev.yaml"
    );

    let diagnostics = desired::resolve(&snapshot, Some("empty")).unwrap_err();
    assert_eq!(
        diagnostics.iter().next().unwrap().message,
        "unknown variable `${queue}`"
    );
}

#[test]
fn checkpoint_mode_numbers_get_a_hint() {
    let snapshot = snapshot_of(&[(
        "flink/clicks.yaml",
        "kind: FlinkSqlJob\nname: clicks\nsql_body: SELECT 1\ncheckpoint_mode: 2\n",
    )]);
    let diagnostics = desired::resolve(&snapshot, None).unwrap_err();
    let diagnostic = diagnostics.iter().next().unwrap();
    assert_eq!((diagnostic.line, diagnostic.column), (4, 18));
    assert!(
        diagnostic
            .hint
            .as_deref()
            .unwrap()
            .contains("2 is at_least_once")
    );
}

#[test]
fn rendering_is_minimal_and_readable() {
    let prod = desired::resolve(&example_repository(), Some("prod")).unwrap();
    let mut rendered = String::new();
    for job in &prod.flink {
        for (path, text) in
            desired::render::render_flink_job(&job.name, &job.config, &job.lifecycle)
        {
            if path.ends_with(".yaml") {
                rendered.push_str(&format!("# {path}\n{text}"));
            }
        }
    }
    insta::with_settings!({ snapshot_path => fixtures().join("snapshots"), prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("render-prod", rendered);
    });
}

#[test]
fn dlf_digests_ignore_json_key_order_and_json_errors_have_positions() {
    let yaml = "kind: DlfJob\nname: load\ndefinition_file: load.job\n";
    let first = snapshot_of(&[
        ("dlf/load.yaml", yaml),
        (
            "dlf/load.job",
            r#"{"name": "load", "processType": "BATCH", "nodes": [{"name": "a", "type": "DWSSQL"}], "schedule": {"type": "EXECUTE_ONCE"}}"#,
        ),
    ]);
    let reordered = snapshot_of(&[
        ("dlf/load.yaml", yaml),
        (
            "dlf/load.job",
            "{\n  \"schedule\": {\"type\": \"EXECUTE_ONCE\"},\n  \"nodes\": [{\"type\": \"DWSSQL\", \"name\": \"a\"}],\n  \"processType\": \"BATCH\",\n  \"name\": \"load\"\n}\n",
        ),
    ]);
    let changed = snapshot_of(&[
        ("dlf/load.yaml", yaml),
        (
            "dlf/load.job",
            r#"{"name": "load", "processType": "BATCH", "nodes": [{"name": "b", "type": "DWSSQL"}], "schedule": {"type": "EXECUTE_ONCE"}}"#,
        ),
    ]);
    let digest = |snapshot: &RepoSnapshot| {
        desired::resolve(snapshot, None).unwrap().dlf[0]
            .digest
            .clone()
    };
    assert_eq!(digest(&first), digest(&reordered));
    assert_ne!(digest(&first), digest(&changed));

    let broken_json = snapshot_of(&[
        ("dlf/load.yaml", yaml),
        (
            "dlf/load.job",
            "{\n  \"name\": \"load\",\n  \"nodes\": [\n}\n",
        ),
    ]);
    let diagnostics = desired::resolve(&broken_json, None).unwrap_err();
    let diagnostic = diagnostics.iter().next().unwrap();
    assert_eq!(diagnostic.file, "dlf/load.job");
    assert_eq!(diagnostic.line, 4);
    assert!(
        diagnostic.message.starts_with("JSON syntax error"),
        "{diagnostic}"
    );
}

#[test]
fn broken_in_one_environment_only() {
    let snapshot = snapshot_of(&[
        (
            "flink/clicks.yaml",
            "kind: FlinkSqlJob\nname: clicks\nqueue_name: ${queue}\nsql_body: SELECT 1\ncu_number: 500\n",
        ),
        ("environments/dev.yaml", "variables: {queue: dev_flink}\n"),
        ("environments/prod.yaml", "variables: {queeu: prod_flink}\n"),
    ]);
    check("only-in-one-environment", &snapshot, None);
}

#[test]
fn a_dlf_job_takes_desired_state_for_its_schedule_without_changing_its_digest() {
    let definition = r#"{"name": "load", "processType": "REAL_TIME", "nodes": [{"name": "a", "type": "DWSSQL"}], "schedule": {"type": "CRON"}}"#;
    let resolve = |yaml: &str| {
        desired::resolve(
            &snapshot_of(&[("dlf/load.yaml", yaml), ("dlf/load.job", definition)]),
            None,
        )
    };
    let base = "kind: DlfJob\nname: load\ndefinition_file: load.job\n";
    let unset = resolve(base).expect("resolves");
    assert_eq!(unset.dlf[0].desired_state, None);
    let running = resolve(&format!("{base}desired_state: running\n")).expect("resolves");
    assert_eq!(
        running.dlf[0].desired_state,
        Some(dli_gitops::model::RunState::Running)
    );
    let stopped = resolve(&format!("{base}desired_state: stopped\n")).expect("resolves");
    assert_eq!(
        stopped.dlf[0].desired_state,
        Some(dli_gitops::model::RunState::Stopped)
    );
    // The schedule is no part of what is imported: starting or stopping it never re-imports.
    assert_eq!(unset.dlf[0].digest, running.dlf[0].digest);
    assert_eq!(unset.dlf[0].digest, stopped.dlf[0].digest);
    let refused = resolve(&format!("{base}desired_state: scheduled\n")).unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("desired_state") && text.contains("running"),
        "{text}"
    );
}
