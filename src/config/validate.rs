//! Semantic checks on a parsed [`Config`]: every problem in one pass, each at its YAML path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{
    ApplyStrategy, Config, ConfigDuration, ConfigProblem, CredentialsConfig, Endpoint,
    GitSourceConfig, GitTransport, NotificationSink, ObsAddressing, SlackSink, SmnSink,
    SourceConfig, StorageLocation, TargetConfig, WebhookSink, schedule,
};

pub(super) fn problems(config: &Config) -> Vec<ConfigProblem> {
    let mut checker = Checker::default();
    checker.top_level(config);
    for (name, source) in &config.sources {
        checker.source(name, source);
    }
    let target_names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for (index, target) in config.targets.iter().enumerate() {
        let at = format!("targets[{index}]");
        if !seen.insert(target.name.as_str()) {
            checker.problem(
                format!("{at}.name"),
                format!(
                    "duplicate target name `{}`; each target needs its own name",
                    target.name
                ),
            );
        }
        checker.target(&at, target, config, &target_names);
    }
    checker.promotion_cycles(config);
    checker.notifications(config, &target_names);
    checker.problems
}

#[derive(Default)]
struct Checker {
    problems: Vec<ConfigProblem>,
}

impl Checker {
    fn problem(&mut self, yaml_path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            yaml_path: yaml_path.into(),
            message: message.into(),
        });
    }

    fn top_level(&mut self, config: &Config) {
        self.secret_pair(
            "",
            "api_token",
            &config.api_token_env,
            &config.api_token_file,
        );
        if config.targets.is_empty() {
            self.problem(
                "targets",
                "no targets configured; add at least one under `targets:`",
            );
        }
        let instance = config.instance.as_str();
        let valid_instance = (1..=32).contains(&instance.len())
            && instance
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && instance.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_instance {
            self.problem(
                "instance",
                format!(
                    "`{instance}` is not an installation name: use 1-32 lowercase letters, digits and `-`, starting with a letter or digit (it becomes part of the `managed-by` tag)"
                ),
            );
        }
        self.duration(
            "shutdown_grace",
            &config.shutdown_grace,
            Duration::from_secs(1),
        );
        if config.logging.level.trim().is_empty() {
            self.problem(
                "logging.level",
                "empty log filter; use e.g. `info` or `dli_gitops=debug`",
            );
        } else if let Err(problem) = super::log_filter::parse_filter(&config.logging.level) {
            self.problem(
                "logging.level",
                format!(
                    "`{}` is not a log filter ({problem}); use levels trace|debug|info|warn|error, e.g. `info` or `info,dli_gitops=debug`",
                    config.logging.level
                ),
            );
        }
    }

    fn source(&mut self, name: &str, source: &SourceConfig) {
        let at = format!("sources.{name}");
        if !is_valid_name(name) {
            self.problem(
                &at,
                format!(
                    "source name `{name}` must be lowercase letters, digits, `-` or `_`, starting with a letter or digit"
                ),
            );
        }
        match (&source.git, &source.path) {
            (Some(_), Some(_)) => self.problem(
                &at,
                "a source is either `git:` or `path:`, not both; split it into two sources",
            ),
            (None, None) => self.problem(&at, "a source needs `git: {url: ...}` or `path: DIR`"),
            _ => {}
        }
        self.duration(
            &format!("{at}.debounce"),
            &source.debounce,
            Duration::from_millis(10),
        );
        self.secret_pair(
            &at,
            "webhook_secret",
            &source.webhook_secret_env,
            &source.webhook_secret_file,
        );
        if source.path.is_some() && source.webhook_secret().is_some() {
            self.problem(
                format!("{at}.webhook_secret_env"),
                "webhooks only apply to git sources; a `path:` source is watched for changes instead",
            );
        }
        if let Some(git) = &source.git {
            self.git(&format!("{at}.git"), git);
        }
    }

    fn git(&mut self, at: &str, git: &GitSourceConfig) {
        if git.url.trim().is_empty() {
            self.problem(format!("{at}.url"), "empty url");
        }
        if git.branch.is_some() && git.tag.is_some() {
            self.problem(at, "set `branch` or `tag`, not both");
        }
        let git_ref = git.git_ref();
        if !git2::Reference::is_valid_name(&git_ref.full_name()) {
            self.problem(
                format!("{at}.{}", if git.tag.is_some() { "tag" } else { "branch" }),
                format!("`{}` is not a valid git ref name", git_ref.short_name()),
            );
        }
        if !is_safe_relative_path(&git.path) {
            self.problem(
                format!("{at}.path"),
                format!(
                    "subdirectory `{}` must be relative to the repository root, without `..`",
                    git.path
                ),
            );
        }
        self.duration(
            &format!("{at}.poll_interval"),
            &git.poll_interval,
            Duration::from_secs(1),
        );
        if !(0.0..1.0).contains(&git.poll_jitter) {
            self.problem(
                format!("{at}.poll_jitter"),
                format!(
                    "{} is not a fraction in [0, 1); 0.1 means ±10% of poll_interval",
                    git.poll_jitter
                ),
            );
        }
        self.secret_pair(at, "token", &git.token_env, &git.token_file);
        let transport = git.transport();
        if git.token().is_some() {
            match transport {
                GitTransport::Https => {}
                GitTransport::Http => self.problem(
                    format!("{at}.url"),
                    "a token would be sent in clear text over http://; use https://",
                ),
                GitTransport::Ssh => self.problem(
                    format!("{at}.token_env"),
                    "tokens are for https urls; ssh urls use `ssh: {key_file, known_hosts_file}`",
                ),
                GitTransport::Local => self.problem(
                    format!("{at}.token_env"),
                    "a local repository needs no token; remove it",
                ),
            }
        }
        match (&git.ssh, transport) {
            (Some(ssh), GitTransport::Ssh) => {
                self.secret_pair(
                    &format!("{at}.ssh"),
                    "passphrase",
                    &ssh.passphrase_env,
                    &ssh.passphrase_file,
                );
            }
            (Some(_), _) => self.problem(
                format!("{at}.ssh"),
                "`ssh:` settings need an ssh url (`ssh://host/repo.git` or `git@host:repo.git`)",
            ),
            (None, GitTransport::Ssh) => self.problem(
                format!("{at}.ssh"),
                "an ssh url needs `ssh: {key_file: ..., known_hosts_file: ...}`; unknown hosts are refused",
            ),
            (None, _) => {}
        }
    }

    fn target(&mut self, at: &str, target: &TargetConfig, config: &Config, names: &[&str]) {
        self.target_names(at, target, config);
        self.endpoints(at, target);
        self.obs_addressing(at, target);
        self.target_account(at, target);
        self.target_storage(at, target);
        if target.apply_strategy == Some(ApplyStrategy::Import) {
            self.problem(
                format!("{at}.apply_strategy"),
                "`import` is no longer supported: DLI imports only zips that DLI itself exported, so dli-gitops now writes Flink jobs with the create/update API and carries state with savepoint import; delete this line (or write `apply_strategy: api`). Journals and state directories from earlier versions keep working",
            );
        }
        self.target_policy(at, target);
        self.target_promotion(at, target, names);
        self.target_client(at, target);
    }

    /// A target's `name`, `source` and `environment`.
    fn target_names(&mut self, at: &str, target: &TargetConfig, config: &Config) {
        if !is_valid_name(&target.name) {
            self.problem(
                format!("{at}.name"),
                format!(
                    "target name `{}` must be lowercase letters, digits, `-` or `_`, starting with a letter or digit",
                    target.name
                ),
            );
        }
        if !config.sources.contains_key(&target.source) {
            let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
            self.problem(
                format!("{at}.source"),
                format!(
                    "unknown source `{}`{}",
                    target.source,
                    suggestion(&target.source, &known, "sources")
                ),
            );
        }
        if !is_valid_name(target.environment_name()) {
            self.problem(
                format!("{at}.environment"),
                format!(
                    "environment `{}` must be a plain file stem (environments/<name>.yaml)",
                    target.environment_name()
                ),
            );
        }
    }

    /// A target's `region`, `project_id` and `credentials` (embedded targets may omit them).
    fn target_account(&mut self, at: &str, target: &TargetConfig) {
        let embedded = target.is_embedded();
        match &target.region {
            Some(region) if !is_valid_region(region) => self.problem(
                format!("{at}.region"),
                format!("`{region}` does not look like a region id such as `cn-north-4`"),
            ),
            None if !embedded => self.problem(
                format!("{at}.region"),
                "missing `region` (e.g. cn-north-4); only embedded targets may omit it",
            ),
            _ => {}
        }
        match &target.project_id {
            Some(id) if !(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())) => self
                .problem(
                    format!("{at}.project_id"),
                    format!(
                        "`{id}` is not a project id (32 hex characters, shown under My Credentials > API Credentials)"
                    ),
                ),
            // With AK/SK the project id is looked up from IAM for the region (`cloud::iam`);
            // a password token is scoped to a project id, so it needs one.
            None if !embedded
                && target.credentials.as_ref().is_some_and(|c| {
                    c.user_env.is_some()
                        || c.user_file.is_some()
                        || c.password_env.is_some()
                }) =>
            {
                self.problem(
                    format!("{at}.project_id"),
                    "missing `project_id`; password credentials cannot look it up (AK/SK can): set the id of the region's project (My Credentials > API Credentials > Projects)",
                )
            }
            _ => {}
        }
        match &target.credentials {
            Some(credentials) => self.credentials(&format!("{at}.credentials"), credentials),
            None if !embedded => self.problem(
                format!("{at}.credentials"),
                "missing `credentials`; use {access_key_env, secret_key_env} (or *_file), or {user_env, password_env, domain}",
            ),
            None => {}
        }
    }

    /// A target's `staging` and `backups` locations, and that OBS ones have AK/SK credentials.
    fn target_storage(&mut self, at: &str, target: &TargetConfig) {
        let embedded = target.is_embedded();
        for (key, location) in [("staging", &target.staging), ("backups", &target.backups)] {
            match location {
                Some(StorageLocation::Invalid(text)) => {
                    let bucket = text
                        .trim()
                        .strip_prefix("obs://")
                        .map(|rest| rest.split('/').next().unwrap_or(""));
                    let message = match bucket {
                        Some(bucket) if bucket.len() < 3 || bucket.len() > 63 => format!(
                            "`{text}`: the bucket name `{bucket}` is too {} ({} characters; OBS bucket names have 3 to 63)",
                            if bucket.len() < 3 { "short" } else { "long" },
                            bucket.len()
                        ),
                        _ => format!(
                            "`{text}` is neither `obs://bucket/prefix/` (lowercase bucket, prefix ending in `/`) nor `file://dir`"
                        ),
                    };
                    self.problem(format!("{at}.{key}"), message)
                }
                None if !embedded && key == "backups" => self.problem(
                    format!("{at}.{key}"),
                    format!(
                        "missing `{key}`; set an `obs://bucket/prefix/` the credentials can write"
                    ),
                ),
                _ => {}
            }
        }
        // OBS speaks only the S3 protocol, signed with an access key and secret key; IAM user
        // and password credentials give a token, which OBS does not take. Said here, at load,
        // rather than by the first backup or staging upload.
        let password_auth = target.credentials.as_ref().is_some_and(|c| {
            c.user_env.is_some()
                || c.user_file.is_some()
                || c.password_env.is_some()
                || c.password_file.is_some()
        });
        if password_auth && !embedded {
            for (key, location) in [("staging", &target.staging), ("backups", &target.backups)] {
                if let Some(StorageLocation::Obs { bucket, .. }) = location {
                    self.problem(
                        format!("{at}.{key}"),
                        format!(
                            "`obs://{bucket}/...` needs AK/SK credentials: OBS signs requests with an access key and secret key and does not take the IAM token that user/password credentials give; use {{access_key_env, secret_key_env}} (or temporary keys with security_token_env), or a `file://` location"
                        ),
                    );
                }
            }
        }
    }

    /// A target's `policy` (intervals, rollback on failure, pruning) and `retention`.
    fn target_policy(&mut self, at: &str, target: &TargetConfig) {
        let policy = &target.policy;
        self.duration(
            &format!("{at}.policy.resync_interval"),
            &policy.resync_interval,
            Duration::from_secs(10),
        );
        self.duration(
            &format!("{at}.policy.sync_timeout"),
            &policy.sync_timeout,
            Duration::from_secs(10),
        );
        let retention = &target.retention;
        if retention.savepoints.keep == 0 {
            self.problem(
                format!("{at}.retention.savepoints.keep"),
                "`0` would let garbage collection delete every savepoint copy of a running job, its only way back to its state; keep at least 1 (the default is 3)",
            );
        }
        self.duration(
            &format!("{at}.retention.savepoints.max_age"),
            &retention.savepoints.max_age,
            Duration::ZERO,
        );
        self.duration(
            &format!("{at}.retention.interval"),
            &retention.interval,
            Duration::from_secs(60),
        );
        let rollback = &policy.rollback_on_failure;
        self.duration(
            &format!("{at}.policy.rollback_on_failure.within"),
            &rollback.within,
            Duration::from_secs(1),
        );
        for (job, job_override) in &rollback.jobs {
            if let Some(within) = &job_override.within {
                self.duration(
                    &format!("{at}.policy.rollback_on_failure.jobs.{job}.within"),
                    within,
                    Duration::from_secs(1),
                );
            }
        }
        if policy.allow_empty_prune && !policy.prune {
            self.problem(
                format!("{at}.policy.allow_empty_prune"),
                "has no effect without `prune: true`",
            );
        }
    }

    /// A target's `promote_from`, `promotion`, `windows` and `restore.from_target`.
    fn target_promotion(&mut self, at: &str, target: &TargetConfig, names: &[&str]) {
        if let Some(upstream) = &target.promote_from {
            self.target_reference(&format!("{at}.promote_from"), upstream, target, names);
        }
        if let Some(promotion) = &target.promotion {
            if target.promote_from.is_none() {
                self.problem(
                    format!("{at}.promotion"),
                    "`promotion` needs `promote_from: <upstream target>`",
                );
            }
            self.duration(
                &format!("{at}.promotion.after"),
                &promotion.after,
                Duration::ZERO,
            );
            for (index, window) in promotion.windows.iter().enumerate() {
                self.window(&format!("{at}.promotion.windows[{index}]"), window);
            }
        }
        for (index, window) in target.windows.iter().enumerate() {
            self.window(&format!("{at}.windows[{index}]"), window);
        }
        if let Some(upstream) = &target.restore.from_target {
            self.target_reference(
                &format!("{at}.restore.from_target"),
                upstream,
                target,
                names,
            );
        }
    }

    /// A target's API client settings: `rate_limit`, `retry` and `timeouts`.
    fn target_client(&mut self, at: &str, target: &TargetConfig) {
        let rate = &target.rate_limit;
        if !(rate.requests_per_second.is_finite() && rate.requests_per_second > 0.0) {
            self.problem(
                format!("{at}.rate_limit.requests_per_second"),
                "must be a positive number",
            );
        }
        if rate.burst == 0 {
            self.problem(format!("{at}.rate_limit.burst"), "must be at least 1");
        }
        let retry = &target.retry;
        if retry.max_attempts == 0 {
            self.problem(format!("{at}.retry.max_attempts"), "must be at least 1");
        }
        self.duration(
            &format!("{at}.retry.initial_backoff"),
            &retry.initial_backoff,
            Duration::from_millis(1),
        );
        self.duration(
            &format!("{at}.retry.max_backoff"),
            &retry.max_backoff,
            Duration::from_millis(1),
        );
        if retry.max_backoff.get() < retry.initial_backoff.get() {
            self.problem(
                format!("{at}.retry.max_backoff"),
                "must not be shorter than initial_backoff",
            );
        }
        let timeouts = &target.timeouts;
        for (key, value) in [
            ("connect", &timeouts.connect),
            ("request", &timeouts.request),
            ("job_transition", &timeouts.job_transition),
            ("savepoint", &timeouts.savepoint),
            ("import_task", &timeouts.import_task),
        ] {
            self.duration(
                &format!("{at}.timeouts.{key}"),
                value,
                Duration::from_millis(100),
            );
        }
    }

    fn endpoints(&mut self, at: &str, target: &TargetConfig) {
        let mut embedded = Vec::new();
        let mut remote = Vec::new();
        for (service, endpoint) in target.endpoints.all_set() {
            match endpoint {
                Some(Endpoint::Invalid(text)) => self.problem(
                    format!("{at}.endpoints.{}", service.as_str()),
                    format!("`{text}` is neither `embedded` nor an http(s):// URL"),
                ),
                Some(Endpoint::Embedded) => embedded.push(service.as_str()),
                Some(Endpoint::Url(_)) => remote.push(service.as_str()),
                None => {}
            }
        }
        if !embedded.is_empty() && !remote.is_empty() {
            self.problem(
                format!("{at}.endpoints"),
                format!(
                    "{} are embedded but {} are not; a target talks either to the embedded emulator or to a cloud",
                    embedded.join(", "),
                    remote.join(", ")
                ),
            );
        }
    }

    /// `virtual_hosted` needs an OBS endpoint with a host name that `{bucket}.` can go in front
    /// of: not the embedded emulator (it listens on 127.0.0.1), not an IP address.
    fn obs_addressing(&mut self, at: &str, target: &TargetConfig) {
        if target.obs_addressing != ObsAddressing::VirtualHosted {
            return;
        }
        let unusable = match target.endpoint(super::Service::Obs) {
            Endpoint::Embedded => Some("the embedded emulator (127.0.0.1)".to_string()),
            Endpoint::Url(text) => url::Url::parse(&text)
                .ok()
                .filter(crate::cloud::obs::host_cannot_carry_buckets)
                .map(|_| format!("`{text}`")),
            Endpoint::Invalid(_) => None,
        };
        if let Some(endpoint) = unusable {
            self.problem(
                format!("{at}.obs_addressing"),
                format!(
                    "`virtual_hosted` puts the bucket in the host name, but the OBS endpoint is {endpoint}, an IP address or localhost with no `{{bucket}}.` names; use `auto` or `path`, or an OBS endpoint with a host name"
                ),
            );
        }
    }

    fn credentials(&mut self, at: &str, credentials: &CredentialsConfig) {
        let pairs = [
            (
                "access_key",
                &credentials.access_key_env,
                &credentials.access_key_file,
            ),
            (
                "secret_key",
                &credentials.secret_key_env,
                &credentials.secret_key_file,
            ),
            (
                "security_token",
                &credentials.security_token_env,
                &credentials.security_token_file,
            ),
            ("user", &credentials.user_env, &credentials.user_file),
            (
                "password",
                &credentials.password_env,
                &credentials.password_file,
            ),
        ];
        let mut present = BTreeMap::new();
        for (name, env, file) in pairs {
            self.secret_pair(at, name, env, file);
            present.insert(name, env.is_some() || file.is_some());
        }
        let aksk = present["access_key"] || present["secret_key"] || present["security_token"];
        let password = present["user"] || present["password"] || credentials.domain.is_some();
        if aksk && password {
            self.problem(
                at,
                "use either access/secret keys or user/password/domain, not both",
            );
        } else if aksk {
            if !present["access_key"] || !present["secret_key"] {
                self.problem(
                    at,
                    "AK/SK auth needs both `access_key_env` (or `_file`) and `secret_key_env` (or `_file`)",
                );
            }
        } else if password {
            if !present["user"] || !present["password"] || credentials.domain.is_none() {
                self.problem(
                    at,
                    "password auth needs `user_env`, `password_env` (or their `_file` forms) and `domain`",
                );
            }
        } else {
            self.problem(
                at,
                "empty credentials; use {access_key_env, secret_key_env} or {user_env, password_env, domain}",
            );
        }
    }

    fn target_reference(
        &mut self,
        at: &str,
        upstream: &str,
        target: &TargetConfig,
        names: &[&str],
    ) {
        if upstream == target.name {
            self.problem(at, format!("target `{upstream}` cannot follow itself"));
        } else if !names.contains(&upstream) {
            self.problem(
                at,
                format!(
                    "unknown target `{upstream}`{}",
                    suggestion(upstream, names, "targets")
                ),
            );
        }
    }

    fn promotion_cycles(&mut self, config: &Config) {
        let upstream_of: BTreeMap<&str, &str> = config
            .targets
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.promote_from.as_deref()?)))
            .collect();
        let mut reported = BTreeSet::new();
        for (index, target) in config.targets.iter().enumerate() {
            let mut chain = vec![target.name.as_str()];
            let mut current = target.name.as_str();
            while let Some(&next) = upstream_of.get(current) {
                if next == target.name && next != current {
                    let members: BTreeSet<&str> = chain.iter().copied().collect();
                    if reported.insert(members) {
                        chain.push(next);
                        self.problem(
                            format!("targets[{index}].promote_from"),
                            format!("promotion cycle: {}", chain.join(" <- ")),
                        );
                    }
                    break;
                }
                if chain.contains(&next) {
                    // A cycle further upstream; reported from one of its members.
                    break;
                }
                chain.push(next);
                current = next;
            }
        }
    }

    fn duration(&mut self, at: &str, value: &ConfigDuration, minimum: Duration) {
        if !value.is_valid() {
            let hint = if value.raw().trim().chars().all(|c| c.is_ascii_digit())
                && !value.raw().trim().is_empty()
            {
                format!("; add a unit, e.g. `{}s`", value.raw().trim())
            } else {
                String::new()
            };
            self.problem(
                at,
                format!(
                    "`{}` is not a duration; write a number and a unit such as `30s`, `5m`, `1h`{hint}",
                    value.raw()
                ),
            );
        } else if value.get() < minimum || (minimum > Duration::ZERO && value.get().is_zero()) {
            self.problem(
                at,
                format!(
                    "`{}` is too short; the minimum is {}",
                    value.raw(),
                    humantime::format_duration(minimum)
                ),
            );
        }
    }

    fn secret_pair(&mut self, at: &str, name: &str, env: &Option<String>, file: &Option<PathBuf>) {
        let key = |suffix: &str| {
            if at.is_empty() {
                format!("{name}_{suffix}")
            } else {
                format!("{at}.{name}_{suffix}")
            }
        };
        if env.is_some() && file.is_some() {
            self.problem(
                key("env"),
                format!("set `{name}_env` or `{name}_file`, not both"),
            );
        }
        if let Some(variable) = env
            && !is_valid_env_name(variable)
        {
            self.problem(
                key("env"),
                // The value is not echoed: the usual slip is pasting the secret itself here,
                // and this message goes to stderr, CI logs and the startup log.
                format!(
                    "the value ({} characters, not shown: it may be the secret itself) is not an \
                     environment variable name (letters, digits and `_`, not starting with a \
                     digit); write the variable's NAME here, never the secret",
                    variable.chars().count()
                ),
            );
        }
        if let Some(path) = file
            && path.as_os_str().is_empty()
        {
            self.problem(key("file"), "empty path");
        }
    }
}

/// Change windows and notifications.
impl Checker {
    fn window(&mut self, window_at: &str, window: &super::WindowConfig) {
        match super::CronSchedule::parse(&window.schedule) {
            Err(message) => self.problem(format!("{window_at}.schedule"), message),
            Ok(_) => {
                if let Some(zone) = &window.timezone
                    && let Err(message) = schedule::parse_time_zone(zone)
                {
                    self.problem(format!("{window_at}.timezone"), message);
                }
            }
        }
        self.duration(
            &format!("{window_at}.duration"),
            &window.duration,
            Duration::from_secs(60),
        );
        if window.duration.get() > schedule::MAX_WINDOW {
            self.problem(
                format!("{window_at}.duration"),
                "a window may last at most 31 days",
            );
        }
    }

    fn notifications(&mut self, config: &Config, targets: &[&str]) {
        let mut names = BTreeSet::new();
        for (index, sink) in config.notifications.iter().enumerate() {
            let at = format!("notifications[{index}]");
            self.sink_common(&at, sink, &mut names, targets);
            if let Some(webhook) = &sink.webhook {
                self.webhook_sink(&at, webhook);
            }
            if let Some(slack) = &sink.slack {
                self.slack_sink(&at, slack);
            }
            if let Some(smn) = &sink.smn {
                self.smn_sink(&at, smn, targets);
            }
        }
    }

    /// A sink's `name` (valid, not taken by an earlier sink), `events`, `targets`,
    /// `policy_off_after`, and that it is exactly one kind.
    fn sink_common<'a>(
        &mut self,
        at: &str,
        sink: &'a NotificationSink,
        names: &mut BTreeSet<&'a str>,
        targets: &[&str],
    ) {
        if !is_valid_name(&sink.name) {
            self.problem(
                format!("{at}.name"),
                format!(
                    "sink name `{}` must be lowercase letters, digits, `-` or `_`, starting with a letter or digit",
                    sink.name
                ),
            );
        } else if !names.insert(sink.name.as_str()) {
            self.problem(
                format!("{at}.name"),
                format!("duplicate sink name `{}`", sink.name),
            );
        }
        if sink.events.is_empty() {
            self.problem(
                format!("{at}.events"),
                "no events; list the events this sink wants",
            );
        }
        for (event_index, event) in sink.events.iter().enumerate() {
            if !super::control::NOTIFICATION_EVENTS.contains(&event.as_str()) {
                self.problem(
                    format!("{at}.events[{event_index}]"),
                    format!(
                        "unknown event `{event}`{}; the events are {}",
                        suggestion(event, super::control::NOTIFICATION_EVENTS, "events"),
                        super::control::NOTIFICATION_EVENTS.join(", ")
                    ),
                );
            }
        }
        for (target_index, target) in sink.targets.iter().enumerate() {
            if !targets.contains(&target.as_str()) {
                self.problem(
                    format!("{at}.targets[{target_index}]"),
                    format!(
                        "unknown target `{target}`{}",
                        suggestion(target, targets, "targets")
                    ),
                );
            }
        }
        self.duration(
            &format!("{at}.policy_off_after"),
            &sink.policy_off_after,
            Duration::from_secs(60),
        );
        let kinds = [
            sink.webhook.is_some(),
            sink.slack.is_some(),
            sink.smn.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if kinds != 1 {
            self.problem(
                at,
                "a sink is exactly one of `webhook:`, `slack:` or `smn:`",
            );
        }
    }

    /// A `webhook:` sink: its url, and the secret it signs with.
    fn webhook_sink(&mut self, at: &str, webhook: &WebhookSink) {
        self.sink_url(&format!("{at}.webhook.url"), &webhook.url);
        self.secret_pair(
            &format!("{at}.webhook"),
            "secret",
            &webhook.secret_env,
            &webhook.secret_file,
        );
        if webhook.secret_env.is_none() && webhook.secret_file.is_none() {
            self.problem(
                format!("{at}.webhook"),
                "a webhook sink signs its messages: set `secret_env` or `secret_file`",
            );
        }
    }

    /// A `slack:` sink: exactly one way to give the incoming webhook url.
    fn slack_sink(&mut self, at: &str, slack: &SlackSink) {
        let given = [
            slack.url.is_some(),
            slack.url_env.is_some(),
            slack.url_file.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if given != 1 {
            self.problem(
                format!("{at}.slack"),
                "set exactly one of `url`, `url_env` or `url_file` (the incoming webhook url is a credential: prefer `url_env`)",
            );
        }
        if let Some(url) = &slack.url {
            self.sink_url(&format!("{at}.slack.url"), url);
        }
        self.secret_pair(
            &format!("{at}.slack"),
            "url",
            &slack.url_env,
            &slack.url_file,
        );
    }

    /// An `smn:` sink: the target it publishes with, its topic URN and endpoint.
    fn smn_sink(&mut self, at: &str, smn: &SmnSink, targets: &[&str]) {
        if !targets.contains(&smn.target.as_str()) {
            self.problem(
                format!("{at}.smn.target"),
                format!(
                    "unknown target `{}`{}; the SMN sink publishes with that target's region, project and credentials",
                    smn.target,
                    suggestion(&smn.target, targets, "targets")
                ),
            );
        }
        let parts: Vec<&str> = smn.topic_urn.split(':').collect();
        if parts.len() != 5
            || parts[0] != "urn"
            || parts[1] != "smn"
            || parts[2..].iter().any(|part| part.is_empty())
        {
            self.problem(
                format!("{at}.smn.topic_urn"),
                format!(
                    "`{}` is not an SMN topic URN; it reads `urn:smn:<region>:<project id>:<topic name>`",
                    smn.topic_urn
                ),
            );
        }
        if let Some(endpoint) = &smn.endpoint {
            self.sink_url(&format!("{at}.smn.endpoint"), endpoint);
        }
    }

    fn sink_url(&mut self, at: &str, url: &str) {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            }
            Ok(parsed) => self.problem(
                at,
                format!(
                    "`{}` is not an http(s) url (scheme `{}`); a sink is reached over http or https",
                    crate::config::control::redact_url(url),
                    parsed.scheme()
                ),
            ),
            Err(error) => self.problem(
                at,
                format!(
                    "`{}` is not a url ({error}); write e.g. `https://hooks.example.com/dli-gitops`",
                    crate::config::control::redact_url(url)
                ),
            ),
        }
    }
}

fn suggestion(unknown: &str, known: &[&str], what: &str) -> String {
    let close = known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(unknown, candidate), *candidate))
        .min()
        .filter(|(distance, _)| *distance <= 2.max(unknown.len() / 3));
    match close {
        Some((_, candidate)) => format!("; did you mean `{candidate}`?"),
        None if known.is_empty() => format!("; no {what} are defined"),
        None => format!("; known {what}: {}", known.join(", ")),
    }
}

/// Names used in URLs, metric labels and directory names.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(crate) fn is_valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `cn-north-4`, `ap-southeast-1`, `eu-west-101`, `la-north-2`.
fn is_valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        && !parts[parts.len() - 1].is_empty()
}

fn is_safe_relative_path(path: &str) -> bool {
    let path = Path::new(path);
    !path.is_absolute()
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const PASTED: &str = "Zx9/LEAK+SecretKeyPastedHere0123456789";

    /// The problems `validate` finds in a config text, one a line (empty when it is valid).
    fn problems(text: &str) -> String {
        let config = Config::from_yaml_str(text, Path::new("config.yaml")).expect("parses");
        match config.validate() {
            Ok(_) => String::new(),
            Err(problems) => problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// A secret pasted where its variable's name belongs is refused without being echoed.
    #[test]
    fn an_invalid_env_name_is_refused_without_echoing_the_value() {
        let text = format!(
            "sources:\n  jobs: {{path: jobs}}\ntargets:\n  - name: dev\n    source: jobs\n    \
             endpoints: {{dli: embedded}}\n    credentials: {{access_key_env: AK, secret_key_env: \
             '{PASTED}'}}\n"
        );
        let config = Config::from_yaml_str(&text, Path::new("config.yaml")).expect("parses");
        let problems = config
            .validate()
            .expect_err("an invalid variable name is refused");
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let debug = format!("{problems:?}");
        assert!(
            message.contains("targets[0].credentials.secret_key_env")
                && message.contains("is not an environment variable name")
                && message.contains(&format!("{} characters", PASTED.len())),
            "{message}"
        );
        assert!(
            !message.contains("LEAK") && !debug.contains("LEAK"),
            "the value leaked: {message}"
        );
    }

    /// A bucket name that is too short (or too long) says so, with its length.
    #[test]
    fn a_too_short_bucket_name_says_so() {
        let text = "sources:\n  jobs: {path: jobs}\ntargets:\n  - name: dev\n    source: jobs\n    \
                    region: cn-north-4\n    project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\n    \
                    credentials: {access_key_env: AK, secret_key_env: SK}\n    \
                    backups: obs://ab/dev/\n";
        let config = Config::from_yaml_str(text, Path::new("config.yaml")).expect("parses");
        let problems = config
            .validate()
            .expect_err("a two-letter bucket is refused");
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            message.contains("targets[0].backups")
                && message.contains("the bucket name `ab` is too short (2 characters"),
            "{message}"
        );
    }

    /// IAM password credentials cannot reach OBS: a target that stages or backs up on OBS with
    /// them is refused at load, naming the key; `file://` storage works with them.
    #[test]
    fn password_credentials_with_obs_storage_are_refused_at_load() {
        let config_with = |storage: &str| {
            format!(
                "sources:\n  jobs: {{path: jobs}}\ntargets:\n  - name: prod\n    source: jobs\n    \
                 region: cn-north-4\n    project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\n    \
                 credentials: {{user_env: HW_USER, password_env: HW_PASSWORD, domain: acme}}\n    \
                 {storage}\n"
            )
        };
        let found = problems(&config_with(
            "staging: obs://acme-staging/prod/\n    backups: obs://acme-backups/prod/",
        ));
        assert!(
            found.contains("targets[0].backups")
                && found.contains("targets[0].staging")
                && found.contains("needs AK/SK credentials"),
            "{found}"
        );
        let local = problems(&config_with("backups: file:///var/lib/dli-gitops/backups"));
        assert!(!found.is_empty() && !local.contains("AK/SK"), "{local}");
    }

    /// `obs_addressing: virtual_hosted` needs an endpoint with a host name; `auto` and `path`
    /// work anywhere, and an unknown value is refused by the parser.
    #[test]
    fn virtual_hosted_addressing_is_refused_on_ip_and_embedded_endpoints() {
        let config_with = |endpoints: &str, addressing: &str| {
            format!(
                "sources:\n  jobs: {{path: jobs}}\ntargets:\n  - name: dev\n    source: jobs\n    \
                 region: cn-north-4\n    project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\n    \
                 credentials: {{access_key_env: AK, secret_key_env: SK}}\n    \
                 staging: obs://b-staging/dev/\n    backups: obs://b-backups/dev/\n    \
                 endpoints: {endpoints}\n    obs_addressing: {addressing}\n    authorize_obs: true\n"
            )
        };
        let on_ip = problems(&config_with(
            "{obs: 'http://10.0.0.7:9000'}",
            "virtual_hosted",
        ));
        assert!(
            on_ip.contains("targets[0].obs_addressing") && on_ip.contains("10.0.0.7"),
            "{on_ip}"
        );
        let embedded = problems(&config_with(
            "{dli: embedded, dlf: embedded, obs: embedded, iam: embedded}",
            "virtual_hosted",
        ));
        assert!(embedded.contains("targets[0].obs_addressing"), "{embedded}");
        for (endpoints, addressing) in [
            ("{obs: 'http://10.0.0.7:9000'}", "path"),
            ("{obs: 'http://10.0.0.7:9000'}", "auto"),
            (
                "{obs: 'https://obs.cn-north-4.myhuaweicloud.com'}",
                "virtual_hosted",
            ),
            ("{}", "virtual_hosted"),
        ] {
            let found = problems(&config_with(endpoints, addressing));
            assert!(
                !found.contains("obs_addressing"),
                "{endpoints} {addressing}: {found}"
            );
        }
        let unknown = config_with("{}", "sideways");
        assert!(Config::from_yaml_str(&unknown, Path::new("config.yaml")).is_err());
    }
}
