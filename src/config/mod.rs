//! The daemon configuration file (`config.yaml`): state directory, server, sources, targets and
//! their policy. [`Config::load`] reads, parses and validates it in one step; secrets are only
//! ever referenced (`*_env`, `*_file`) and read at run time by [`Config::resolve_secret`].
//!
//! # Design and invariants
//!
//! * `mod.rs`: `Config` (serde, `deny_unknown_fields` everywhere), `ConfigError`, `Config::load`
//!   (read with a 1 MiB limit → parse → resolve relative paths against the file's directory →
//!   validate), `Config::resolve_secret`, `Config::resolve_credentials` (redacted `Debug`).
//! * `sources.rs`: the `sources:` types (`SourceConfig`, `GitSourceConfig`, `SshConfig`, `GitRef`,
//!   `git_transport`).
//! * `targets.rs`: the `targets:` types and accessors that fill defaults (`endpoint(Service)` → the
//!   region's public host, the emulator's project id and dev account and staging/backups prefixes for
//!   embedded targets, `promotion()`).
//! * `diagnose.rs`: parses to a `serde_yaml::Value` first to refuse inline secrets (every key in
//!   `INLINE_SECRET_KEYS`, wherever it appears), then deserialises through `serde_path_to_error` so an
//!   error carries the YAML path and line, and adds "did you mean" from serde's expected-key list.
//! * `validate.rs`: every semantic problem in one pass, each as `yaml.path: message`.
//! * `values.rs`: `ConfigDuration`, `Endpoint`, `StorageLocation` deserialise leniently (an invalid
//!   value is kept) so that `validate` reports all of them at once; `SecretRef` (env or file).
//! * `schedule.rs`: five-field cron for change windows, in UTC or an IANA zone (`chrono-tz`,
//!   pinned; its compiled-in tz database, so no `/usr/share/zoneinfo` is needed in a container),
//!   `window_active` / `window_closes(now, duration)`, `next_opening`; pure, `now` is a parameter.
//! * `control.rs`: `Suspend` and the `notifications:` sink types (see "operating controls and
//!   notifications"). `validate.rs` refuses an unknown `timezone`, an unknown event name, a sink url
//!   that is not http(s), a sink of no kind or of two, an SMN URN that is not `urn:smn:…`, an
//!   unknown sink or SMN target, each at its YAML path.
//!
//! Invariants: a `Config` returned by `load` has passed `validate`, so its durations, endpoints and
//! locations are valid; the config never holds a secret value, only `SecretRef`s; secret values
//! never appear in errors or `Debug`.

pub mod control;
mod diagnose;
pub mod log_filter;
pub mod schedule;
mod sources;
mod targets;
mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use control::{NotificationSink, SlackSink, SmnSink, Suspend, WebhookSink};
pub use schedule::CronSchedule;
pub use sources::{GitRef, GitSourceConfig, GitTransport, SourceConfig, SshConfig, git_transport};
pub use targets::{
    ApplyStrategy, CredentialSpec, Credentials, CredentialsConfig, EndpointsConfig,
    MissingSavepoint, ObsAddressing, PolicyConfig, PromotionConfig, RateLimitConfig, RestoreConfig,
    RetryConfig, Service, TargetConfig, TimeoutsConfig, WindowConfig, WindowKind,
};
pub use targets::{BackupRetention, RetentionConfig, SavepointRetention};
pub use targets::{JobRollbackOverride, RollbackOnFailureConfig};
pub use values::{ConfigDuration, Endpoint, SecretRef, StorageLocation};

use values::secret_ref;
// Embedded targets use the emulator's dev account: one definition, so they cannot disagree.
use crate::emulator::{DEV_ACCESS_KEY, DEV_SECRET_KEY};

/// Config files larger than this are refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Secret files larger than this are refused (a key or token is far smaller).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// The region a target uses when it names none (only allowed for embedded targets).
pub const EMBEDDED_DEFAULT_REGION: &str = "cn-north-4";

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Journal, snapshot, git mirrors. Relative paths are relative to the config file.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Address for health, metrics, the API, webhooks and the status page.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token for mutating endpoints.
    #[serde(default)]
    pub api_token_env: Option<String>,
    /// File holding the bearer token (alternative to `api_token_env`).
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// Global suspend: observe and report, never change anything. `true`, or
    /// `{until: <RFC 3339 time>}` to resume on its own.
    #[serde(default)]
    pub suspend: Suspend,
    /// Notification sinks, each with the events it wants.
    #[serde(default)]
    pub notifications: Vec<NotificationSink>,
    #[serde(default)]
    pub logging: LoggingConfig,
    /// How long the daemon lets the actions in flight finish after SIGTERM/SIGINT (an upgrade
    /// that stopped a job updates, imports and starts it again). Keep it below the process
    /// manager's own limit: Kubernetes' `terminationGracePeriodSeconds`, systemd's
    /// `TimeoutStopSec`. Default 45s.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: ConfigDuration,
    /// Actions (one job each) running at once across all targets, shared fairly: when all are
    /// taken, a freed one goes to the waiting target holding the fewest. Default 256.
    #[serde(default = "default_max_concurrent_actions")]
    pub max_concurrent_actions: std::num::NonZeroUsize,
    /// This installation's name. Its jobs carry `managed-by: dli-gitops` (the default
    /// installation) or `managed-by: dli-gitops.<instance>`; prune, adoption and drift touch
    /// only its own jobs, so two installations can share a project. Default `default`.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Named sources of desired state.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Environments the daemon converges, in the order written.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// The file this config was loaded from (empty when parsed from a string).
    #[serde(skip)]
    pub file: PathBuf,
}

fn default_instance() -> String {
    crate::model::DEFAULT_INSTANCE.to_string()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./state")
}

/// The default cap on actions in flight across all targets (`max_concurrent_actions`): 64
/// targets acting at their default `parallel_actions` of 4 at once. Actions mostly wait on the
/// service (job transitions, each account's rate limit), so the cap bounds what the daemon holds
/// (tasks, connections, journal appends in flight) rather than CPU; at 64 it was the limit of
/// converging 50 accounts × 200 new jobs (400 s against about 250 s at 256, where each account's
/// rate limit is the limit; BENCHMARKS.md, "One daemon, many accounts").
pub const DEFAULT_MAX_CONCURRENT_ACTIONS: usize = 256;

/// How long shutdown waits for passes in flight before giving up on them (`shutdown_grace`,
/// inside Kubernetes' default 60 s grace). An abandoned pass leaves intents without outcomes,
/// which the next start resolves by observing.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(45);

fn default_max_concurrent_actions() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(DEFAULT_MAX_CONCURRENT_ACTIONS)
        .unwrap_or(std::num::NonZeroUsize::MIN)
}

fn default_shutdown_grace() -> ConfigDuration {
    ConfigDuration::from_duration(DEFAULT_SHUTDOWN_GRACE)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `text` or `json`; the `--log-format` flag wins when given.
    #[serde(default)]
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter; the `RUST_LOG` variable wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One semantic problem, at a YAML path such as `targets[1].promotion.after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub yaml_path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.yaml_path, self.message)
    }
}

/// Why a config could not be loaded or a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS reason is in the message (not a `source`), so every way of printing it says why.
    #[error("reading config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "config file {path} is {size} bytes, over the {limit}-byte limit; is it the right file?"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// A YAML syntax or type error, with where it is and what was probably meant.
    #[error("{0}")]
    Parse(Box<ParseFailure>),
    #[error("{}", render_problems(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
    #[error(
        "reading secret from {secret}: the variable is not set; export it before starting dli-gitops"
    )]
    SecretEnvMissing { secret: SecretRef },
    #[error("reading secret from {secret}: the variable's value is not valid UTF-8")]
    SecretEnvNotUnicode { secret: SecretRef },
    #[error("reading secret from {secret}")]
    SecretFile {
        secret: SecretRef,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "reading secret from {secret}: over {limit} bytes, so it is not a secret file; check the path"
    )]
    SecretTooLarge { secret: SecretRef, limit: u64 },
    #[error("reading secret from {secret}: it is empty")]
    SecretEmpty { secret: SecretRef },
    #[error(
        "target `{target}` has no credentials configured; add `credentials:` with `*_env` or `*_file` references"
    )]
    NoCredentials { target: String },
}

/// Where and why a config file failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    pub path: PathBuf,
    /// Dotted path of the offending key, empty at the top level.
    pub yaml_path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// A suggestion such as "did you mean `auto_sync`?".
    pub hint: Option<String>,
}

impl fmt::Display for ParseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if !self.yaml_path.is_empty() {
            write!(f, ": at `{}`", self.yaml_path)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

fn render_problems(path: &Path, problems: &[ConfigProblem]) -> String {
    let mut text = format!(
        "config file {} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        text.push_str(&format!("\n  - {problem}"));
    }
    text
}

impl Config {
    /// Reads, parses and validates `path`. Relative paths inside are resolved against the config
    /// file's directory, so the daemon behaves the same whatever its working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let metadata = std::fs::metadata(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        if metadata.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                size: metadata.len(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let base_dir = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut config = Config::from_yaml_str(&text, path)?;
        config.resolve_relative_paths(base_dir);
        config.validate().map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })?;
        tracing::debug!(file = %path.display(), targets = config.targets.len(), sources = config.sources.len(), "Config loaded.");
        Ok(config)
    }

    /// Parses YAML text without validating it or resolving paths; `origin` names it in errors.
    pub fn from_yaml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut config = diagnose::parse(text, origin)?;
        config.file = origin.to_path_buf();
        Ok(config)
    }

    /// Every semantic problem, in one pass.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Reads a secret from its environment variable or file. One trailing newline is trimmed
    /// from files; an empty secret is an error. The value never appears in errors.
    pub fn resolve_secret(secret: &SecretRef) -> Result<String, ConfigError> {
        let value = match secret {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => {
                    return Err(ConfigError::SecretEnvMissing {
                        secret: secret.clone(),
                    });
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(ConfigError::SecretEnvNotUnicode {
                        secret: secret.clone(),
                    });
                }
            },
            SecretRef::File(path) => {
                let metadata =
                    std::fs::metadata(path).map_err(|source| ConfigError::SecretFile {
                        secret: secret.clone(),
                        source,
                    })?;
                if metadata.len() > MAX_SECRET_FILE_BYTES {
                    return Err(ConfigError::SecretTooLarge {
                        secret: secret.clone(),
                        limit: MAX_SECRET_FILE_BYTES,
                    });
                }
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    if metadata.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(file = %path.display(), "Secret file is readable by other users; chmod 600 it.");
                    }
                }
                let mut text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                        secret: secret.clone(),
                        source,
                    })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
        };
        if value.is_empty() {
            return Err(ConfigError::SecretEmpty {
                secret: secret.clone(),
            });
        }
        Ok(value)
    }

    /// Where the API bearer token comes from; `None` disables the mutating endpoints.
    pub fn api_token(&self) -> Option<SecretRef> {
        secret_ref(&self.api_token_env, &self.api_token_file)
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|target| target.name == name)
    }

    /// The source a target reads from.
    pub fn source_of(&self, target: &TargetConfig) -> Option<&SourceConfig> {
        self.sources.get(&target.source)
    }

    /// Reads the target's credentials now (the emulator's dev account for embedded targets
    /// without credentials).
    pub fn resolve_credentials(target: &TargetConfig) -> Result<Credentials, ConfigError> {
        let read = |secret: &SecretRef| Config::resolve_secret(secret);
        match target.credential_spec() {
            Some(CredentialSpec::AkSk {
                access_key,
                secret_key,
                security_token,
            }) => Ok(Credentials::AkSk {
                access_key: read(&access_key)?,
                secret_key: read(&secret_key)?,
                security_token: security_token.as_ref().map(read).transpose()?,
            }),
            Some(CredentialSpec::Password {
                user,
                password,
                domain,
            }) => Ok(Credentials::Password {
                user: read(&user)?,
                password: read(&password)?,
                domain,
            }),
            Some(CredentialSpec::EmulatorDev) => Ok(Credentials::AkSk {
                access_key: DEV_ACCESS_KEY.to_string(),
                secret_key: DEV_SECRET_KEY.to_string(),
                security_token: None,
            }),
            None => Err(ConfigError::NoCredentials {
                target: target.name.clone(),
            }),
        }
    }

    fn resolve_relative_paths(&mut self, base_dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        };
        resolve(&mut self.state_dir);
        if let Some(file) = &mut self.api_token_file {
            resolve(file);
        }
        for source in self.sources.values_mut() {
            for file in [&mut source.path, &mut source.webhook_secret_file]
                .into_iter()
                .flatten()
            {
                resolve(file);
            }
            if let Some(git) = &mut source.git {
                if let Some(file) = &mut git.token_file {
                    resolve(file);
                }
                if git.transport() == GitTransport::Local && !git.url.starts_with("file://") {
                    let mut local = PathBuf::from(&git.url);
                    resolve(&mut local);
                    git.url = local.to_string_lossy().into_owned();
                }
                if let Some(ssh) = &mut git.ssh {
                    resolve(&mut ssh.key_file);
                    resolve(&mut ssh.known_hosts_file);
                    if let Some(file) = &mut ssh.passphrase_file {
                        resolve(file);
                    }
                }
            }
        }
        for target in &mut self.targets {
            for location in [&mut target.staging, &mut target.backups]
                .into_iter()
                .flatten()
            {
                if let StorageLocation::File(path) = location {
                    resolve(path);
                }
            }
            if let Some(credentials) = &mut target.credentials {
                for file in [
                    &mut credentials.access_key_file,
                    &mut credentials.secret_key_file,
                    &mut credentials.security_token_file,
                    &mut credentials.user_file,
                    &mut credentials.password_file,
                ]
                .into_iter()
                .flatten()
                {
                    resolve(file);
                }
            }
        }
    }
}
