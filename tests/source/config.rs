//! The config file: the example loads, and every kind of mistake is reported with where and
//! what to do.

use super::*;

// ---------------------------------------------------------------------------------------------
// config

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml")
}

fn load_text(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

#[test]
fn the_example_config_loads_with_an_embedded_target() {
    let config = Config::load(&example_path()).unwrap_or_else(|error| panic!("{error}"));
    let target = &config.targets[0];
    assert_eq!(target.name, "dev");
    assert!(target.is_embedded());
    assert_eq!(target.endpoint(Service::Dli), Endpoint::Embedded);
    assert_eq!(target.endpoint(Service::Iam), Endpoint::Embedded);
    assert_eq!(
        target.project_id(),
        Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    );
    let source = config.source_of(target).unwrap();
    assert_eq!(
        source.path.as_deref(),
        Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/jobs")
                .as_path()
        ),
        "relative paths resolve against the config file"
    );
    assert_eq!(source.debounce.get(), Duration::from_millis(500));
    assert_eq!(
        target.policy.resync_interval.get(),
        Duration::from_secs(300)
    );
    let credentials = Config::resolve_credentials(target).unwrap();
    let printed = format!("{credentials:?}");
    assert!(!printed.contains("dli-gitops-dev-secret-key"), "{printed}");
    assert!(matches!(credentials, Credentials::AkSk { .. }));
}

#[test]
fn the_commented_cloud_target_in_the_example_is_valid_too() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let begin = text.find("# --- begin cloud target example ---").unwrap();
    let end = text.find("# --- end cloud target example ---").unwrap();
    let uncommented: String = text[begin..end]
        .lines()
        .skip(1)
        .map(|line| line.strip_prefix('#').unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    let full = format!("{}{}", &text[..begin], uncommented);
    let temp = tempfile::tempdir().unwrap();
    let config = load_text(temp.path(), &full).unwrap_or_else(|error| panic!("{error}"));
    let prod = config.target("prod").expect("prod target");
    assert!(!prod.is_embedded());
    assert_eq!(
        prod.endpoint(Service::Dli),
        Endpoint::Url("https://dli.cn-north-4.myhuaweicloud.com".into())
    );
    assert_eq!(
        prod.endpoint(Service::Dlf),
        Endpoint::Url("https://dayu-dlf.cn-north-4.myhuaweicloud.com".into())
    );
    assert_eq!(prod.promote_from.as_deref(), Some("dev"));
    let promotion = prod.promotion();
    assert!(promotion.auto);
    assert_eq!(promotion.after.get(), Duration::from_secs(600));
    // The two promotion windows, then the target's own (they apply to promotions too).
    assert_eq!(promotion.windows.len(), 3);
    assert!(promotion.windows.iter().all(|window| window.cron().is_ok()));
    assert_eq!(prod.windows.len(), 1);
    assert_eq!(prod.windows[0].timezone.as_deref(), Some("Asia/Shanghai"));
    assert_eq!(
        prod.staging(),
        Some(StorageLocation::Obs {
            bucket: "dli-gitops-staging".into(),
            prefix: "prod/".into()
        })
    );
}

const MINIMAL: &str = "
sources:
  jobs: {path: jobs}
targets:
  - name: dev
    source: jobs
    endpoints: {dli: embedded, dlf: embedded, obs: embedded}
";

/// Loads `text` and returns the error's text, asserting that loading failed.
fn load_error(text: &str) -> String {
    let temp = tempfile::tempdir().unwrap();
    match load_text(temp.path(), text) {
        Ok(_) => panic!("expected this config to be refused:\n{text}"),
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("config.yaml"),
                "the file is named: {message}"
            );
            message
        }
    }
}

#[test]
fn minimal_config_loads() {
    let temp = tempfile::tempdir().unwrap();
    let config = load_text(temp.path(), MINIMAL).unwrap();
    assert_eq!(config.state_dir, temp.path().join("./state"));
    assert!(config.targets[0].policy.auto_sync);
    assert_eq!(config.targets[0].environment_name(), "dev");
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    let message = load_error(&format!("{MINIMAL}    policy: {{auto_synk: true}}\n"));
    assert!(message.contains("targets[0].policy"), "{message}");
    assert!(message.contains("auto_synk"), "{message}");
    assert!(message.contains("did you mean `auto_sync`?"), "{message}");
    assert!(message.contains(":8:"), "the line is given: {message}");

    let message = load_error(&MINIMAL.replace("sources:", "sourcse:"));
    assert!(message.contains("did you mean `sources`?"), "{message}");

    let message = load_error(&format!("{MINIMAL}    apply_strategy: imports\n"));
    assert!(message.contains("did you mean `import`?"), "{message}");
}

#[test]
fn inline_secrets_are_refused_everywhere() {
    let message = load_error(&format!(
        "{MINIMAL}    credentials: {{access_key_env: AK, secret_key: abc123}}\n  - name: other\n    source: jobs\n    endpoints: {{dli: embedded}}\n    credentials: {{password: hunter2, user_env: U}}\n"
    ));
    assert!(
        message.contains("targets[0].credentials.secret_key"),
        "{message}"
    );
    assert!(message.contains("secret_key_env"), "{message}");
    assert!(message.contains("secret_key_file"), "{message}");
    assert!(
        message.contains("targets[1].credentials.password"),
        "{message}"
    );
    assert!(
        !message.contains("abc123") && !message.contains("hunter2"),
        "secrets are never echoed: {message}"
    );

    let message = load_error(
        "sources:\n  jobs:\n    git: {url: https://git.example.com/a.git, token: ghp_abc}\n    webhook_secret: xyz\ntargets: []\n",
    );
    assert!(message.contains("sources.jobs.git.token"), "{message}");
    assert!(message.contains("sources.jobs.webhook_secret"), "{message}");
    assert!(!message.contains("ghp_abc"), "{message}");
}

#[test]
fn bad_durations_endpoints_and_locations_are_all_reported_at_once() {
    let message = load_error(&format!(
        "{MINIMAL}    policy: {{resync_interval: five minutes, sync_timeout: 60}}\n    staging: s3://bucket/dev/\n    backups: obs://bucket/no-trailing-slash\n  - name: prod\n    source: jobs\n    endpoints: {{dli: dli.example.com, dlf: embedded}}\n"
    ));
    for expected in [
        "targets[0].policy.resync_interval: `five minutes` is not a duration",
        "targets[0].policy.sync_timeout: `60` is not a duration",
        "add a unit, e.g. `60s`",
        "targets[0].staging: `s3://bucket/dev/` is neither",
        "targets[0].backups",
        "targets[1].endpoints.dli: `dli.example.com` is neither `embedded` nor an http(s):// URL",
        "5 problems",
    ] {
        assert!(
            message.contains(expected),
            "expected `{expected}` in:\n{message}"
        );
    }
}

#[test]
fn unknown_sources_and_targets_are_reported_with_suggestions() {
    let message = load_error(&MINIMAL.replace("    source: jobs", "    source: jbos"));
    assert!(
        message.contains("targets[0].source: unknown source `jbos`; did you mean `jobs`?"),
        "{message}"
    );
    let message = load_error(&format!(
        "{MINIMAL}  - name: prod\n    source: jobs\n    endpoints: {{dli: embedded}}\n    promote_from: deve\n    restore: {{from_target: staging}}\n"
    ));
    assert!(
        message.contains("targets[1].promote_from: unknown target `deve`; did you mean `dev`?"),
        "{message}"
    );
    assert!(
        message.contains("targets[1].restore.from_target: unknown target `staging`"),
        "{message}"
    );
}

#[test]
fn promotion_cycles_and_duplicates_are_refused() {
    let message = load_error(
        "sources:\n  jobs: {path: jobs}\ntargets:\n\
         - {name: dev, source: jobs, endpoints: {dli: embedded}, promote_from: prod}\n\
         - {name: staging, source: jobs, endpoints: {dli: embedded}, promote_from: dev}\n\
         - {name: prod, source: jobs, endpoints: {dli: embedded}, promote_from: staging}\n\
         - {name: prod, source: jobs, endpoints: {dli: embedded}}\n\
         - {name: solo, source: jobs, endpoints: {dli: embedded}, promote_from: solo}\n",
    );
    assert!(
        message.contains("promotion cycle: dev <- prod <- staging <- dev"),
        "{message}"
    );
    assert_eq!(
        message.matches("promotion cycle").count(),
        1,
        "reported once: {message}"
    );
    assert!(
        message.contains("duplicate target name `prod`"),
        "{message}"
    );
    assert!(
        message.contains("target `solo` cannot follow itself"),
        "{message}"
    );
}

#[test]
fn cloud_targets_need_region_project_credentials_and_prefixes() {
    let message = load_error(
        "sources:\n  jobs: {path: jobs}\ntargets:\n  - name: prod\n    source: jobs\n    project_id: not-a-project\n    credentials: {access_key_env: AK}\n    apply_strategy: import\n    promotion: {auto: true, windows: [{kind: deny, schedule: \"0 25 * * *\", duration: 1h}]}\n",
    );
    // `staging` is optional now that Flink jobs are written through the API (only DLF imports
    // and carried savepoints use it, and they say so when it is missing).
    assert!(!message.contains("targets[0].staging"), "{message}");
    for expected in [
        "targets[0].region: missing `region`",
        "targets[0].project_id: `not-a-project` is not a project id",
        "targets[0].credentials: AK/SK auth needs both",
        "targets[0].apply_strategy: `import` is no longer supported",
        "write `apply_strategy: api`",
        "targets[0].backups: missing `backups`",
        "targets[0].promotion: `promotion` needs `promote_from",
        "targets[0].promotion.windows[0].schedule: hour value 25 is outside 0-23",
    ] {
        assert!(
            message.contains(expected),
            "expected `{expected}` in:\n{message}"
        );
    }
}

#[test]
fn git_source_settings_are_checked() {
    let message = load_error(
        "sources:\n\
         \x20 a: {git: {url: 'git@github.com:data/jobs.git'}}\n\
         \x20 b: {git: {url: 'http://git.example.com/x.git', token_env: T, branch: main, tag: v1}}\n\
         \x20 c: {git: {url: 'https://git.example.com/x.git', path: ../up, poll_interval: 0s, poll_jitter: 2}}\n\
         \x20 d: {path: jobs, git: {url: /tmp/x}}\n\
         \x20 e: {path: jobs, webhook_secret_env: 'not a name'}\n\
         targets:\n  - {name: dev, source: a, endpoints: {dli: embedded}}\n",
    );
    for expected in [
        "sources.a.git.ssh: an ssh url needs",
        "sources.b.git.url: a token would be sent in clear text",
        "sources.b.git: set `branch` or `tag`, not both",
        "sources.c.git.path: subdirectory `../up`",
        "sources.c.git.poll_interval: `0s` is too short",
        "sources.c.git.poll_jitter",
        "sources.d: a source is either `git:` or `path:`",
        "sources.e.webhook_secret_env: the value (10 characters, not shown: it may be the secret itself) is not an environment variable name",
    ] {
        assert!(
            message.contains(expected),
            "expected `{expected}` in:\n{message}"
        );
    }
}

#[test]
fn syntax_errors_and_non_mappings_are_located() {
    let message = load_error("targets: [\n");
    assert!(message.contains("not valid YAML"), "{message}");
    let message = load_error("- a\n- b\n");
    assert!(message.contains("must be a YAML mapping"), "{message}");
    let temp = tempfile::tempdir().unwrap();
    let error = Config::load(&temp.path().join("absent.yaml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("absent.yaml"));
}

#[test]
fn secrets_resolve_from_files_and_environment_without_leaking() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("token");
    std::fs::write(&file, "tok-123\n").unwrap();
    assert_eq!(
        Config::resolve_secret(&SecretRef::File(file.clone())).unwrap(),
        "tok-123"
    );
    std::fs::write(&file, "").unwrap();
    let error = Config::resolve_secret(&SecretRef::File(file)).unwrap_err();
    assert!(matches!(error, ConfigError::SecretEmpty { .. }));
    let huge = temp.path().join("huge");
    std::fs::write(&huge, vec![b'a'; 100 * 1024]).unwrap();
    let error = Config::resolve_secret(&SecretRef::File(huge)).unwrap_err();
    assert!(
        matches!(error, ConfigError::SecretTooLarge { .. }),
        "{error:?}"
    );
    let error = Config::resolve_secret(&SecretRef::File(temp.path().join("nope"))).unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
    // PATH is set in every test environment; reading it proves the env path works.
    assert!(
        !Config::resolve_secret(&SecretRef::Env("PATH".into()))
            .unwrap()
            .is_empty()
    );
    let error = Config::resolve_secret(&SecretRef::Env(
        "DLI_GITOPS_TEST_VARIABLE_THAT_IS_NEVER_SET".into(),
    ))
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("DLI_GITOPS_TEST_VARIABLE_THAT_IS_NEVER_SET"),
        "{error}"
    );
    assert!(error.to_string().contains("not set"), "{error}");

    // Credentials read from files; Debug never shows them.
    let ak = temp.path().join("ak");
    let sk = temp.path().join("sk");
    std::fs::write(&ak, "AKVALUE").unwrap();
    std::fs::write(&sk, "SKVALUE").unwrap();
    let config = load_text(
        temp.path(),
        &format!(
            "sources:\n  jobs: {{path: jobs}}\ntargets:\n  - name: prod\n    source: jobs\n    region: cn-north-4\n    project_id: 0123456789abcdef0123456789abcdef\n    credentials: {{access_key_file: ak, secret_key_file: {}}}\n    staging: obs://staging-bucket/prod/\n    backups: obs://backup-bucket/prod/\n",
            sk.display()
        ),
    )
    .unwrap();
    let credentials = Config::resolve_credentials(&config.targets[0]).unwrap();
    assert_eq!(
        credentials,
        Credentials::AkSk {
            access_key: "AKVALUE".into(),
            secret_key: "SKVALUE".into(),
            security_token: None
        }
    );
    let printed = format!("{credentials:?} {config:?}");
    assert!(
        !printed.contains("AKVALUE") && !printed.contains("SKVALUE"),
        "{printed}"
    );
}
