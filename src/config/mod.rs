//! The daemon configuration file (`config.yaml`): state directory, server, sources, targets and
//! their policy. [`Config::load`] reads, parses and validates it in one step; secrets are only
//! ever referenced (`*_env`, `*_file`) and read at run time by [`Config::resolve_secret`].

mod diagnose;
pub mod schedule;
mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use schedule::CronSchedule;
pub use values::{ConfigDuration, Endpoint, SecretRef, StorageLocation};

use values::secret_ref;

/// Config files larger than this are refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Secret files larger than this are refused (a key or token is far smaller).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

// TODO(merge): point these at dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_PROJECT_ID}
// once the emulator branch is merged; the values are the emulator's documented dev account.
const EMULATOR_DEV_ACCESS_KEY: &str = "DLIGITOPSDEVACCESSKEY";
const EMULATOR_DEV_SECRET_KEY: &str = "dli-gitops-dev-secret-key-not-for-production";
const EMULATOR_DEV_PROJECT_ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

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
    /// Global suspend: observe and report, never change anything.
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub logging: LoggingConfig,
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

fn default_state_dir() -> PathBuf {
    PathBuf::from("./state")
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

/// One named source: exactly one of `git` or `path`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(default)]
    pub git: Option<GitSourceConfig>,
    /// A plain local directory, watched for changes.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Quiet time after the last change in a watched directory before it counts (path sources).
    #[serde(default = "default_debounce")]
    pub debounce: ConfigDuration,
    /// Environment variable holding the webhook secret (HMAC key or GitLab token).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
}

fn default_debounce() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_millis(500))
}

impl SourceConfig {
    /// Where the webhook secret is read from, if webhooks are enabled for this source.
    pub fn webhook_secret(&self) -> Option<SecretRef> {
        secret_ref(&self.webhook_secret_env, &self.webhook_secret_file)
    }
}

/// A git repository followed at a branch or tag.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitSourceConfig {
    /// `https://…`, `ssh://…`, `user@host:path`, `file://…` or a local path.
    pub url: String,
    /// Branch to follow (default `main` when neither branch nor tag is given).
    #[serde(default)]
    pub branch: Option<String>,
    /// Tag to follow instead of a branch.
    #[serde(default)]
    pub tag: Option<String>,
    /// Subdirectory of the repository holding the jobs.
    #[serde(default = "default_subdirectory")]
    pub path: String,
    #[serde(default = "default_poll_interval")]
    pub poll_interval: ConfigDuration,
    /// Each poll waits `poll_interval` ± this fraction, so daemons do not poll in lock step.
    #[serde(default = "default_poll_jitter")]
    pub poll_jitter: f64,
    /// User name sent with the https token (any non-empty name works for GitHub and Gitea;
    /// GitLab wants `oauth2` for OAuth tokens).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub ssh: Option<SshConfig>,
}

fn default_subdirectory() -> String {
    ".".to_string()
}

fn default_poll_interval() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(60))
}

fn default_poll_jitter() -> f64 {
    0.1
}

impl GitSourceConfig {
    /// Where the https token is read from.
    pub fn token(&self) -> Option<SecretRef> {
        secret_ref(&self.token_env, &self.token_file)
    }

    /// The ref followed, `main` by default.
    pub fn git_ref(&self) -> GitRef {
        match (&self.tag, &self.branch) {
            (Some(tag), _) => GitRef::Tag(tag.clone()),
            (None, Some(branch)) => GitRef::Branch(branch.clone()),
            (None, None) => GitRef::Branch("main".to_string()),
        }
    }

    /// How the url will be reached.
    pub fn transport(&self) -> GitTransport {
        git_transport(&self.url)
    }
}

/// A branch or a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
}

impl GitRef {
    /// The full ref name, `refs/heads/…` or `refs/tags/…`.
    pub fn full_name(&self) -> String {
        match self {
            GitRef::Branch(name) => format!("refs/heads/{name}"),
            GitRef::Tag(name) => format!("refs/tags/{name}"),
        }
    }

    /// The short name.
    pub fn short_name(&self) -> &str {
        match self {
            GitRef::Branch(name) | GitRef::Tag(name) => name,
        }
    }
}

/// How a git url is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitTransport {
    Https,
    /// Plain http: allowed only without a token.
    Http,
    Ssh,
    Local,
}

/// Classifies a git url: scheme URLs by scheme, `user@host:path` as ssh, anything else local.
pub fn git_transport(url: &str) -> GitTransport {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        GitTransport::Https
    } else if lower.starts_with("http://") {
        GitTransport::Http
    } else if lower.starts_with("ssh://") || lower.starts_with("git+ssh://") {
        GitTransport::Ssh
    } else if lower.starts_with("file://") {
        GitTransport::Local
    } else if let Some((before, _)) = url.split_once(':')
        && !before.contains('/')
        && before.len() > 1
    {
        // scp-like `git@host:owner/repo.git`; a Windows drive letter is one character.
        GitTransport::Ssh
    } else {
        GitTransport::Local
    }
}

/// SSH access: a private key and the known_hosts file the server's key must be in.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Login name when the url has none (default `git`).
    #[serde(default)]
    pub user: Option<String>,
    pub key_file: PathBuf,
    /// Servers whose host key is not in this file are refused.
    pub known_hosts_file: PathBuf,
    #[serde(default)]
    pub passphrase_env: Option<String>,
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
}

impl SshConfig {
    pub fn passphrase(&self) -> Option<SecretRef> {
        secret_ref(&self.passphrase_env, &self.passphrase_file)
    }
}

/// One environment in one account.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// A key of `sources`.
    pub source: String,
    /// `environments/<environment>.yaml` in the source; defaults to the target's name.
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub endpoints: EndpointsConfig,
    #[serde(default)]
    pub credentials: Option<CredentialsConfig>,
    /// Where import bundles are uploaded.
    #[serde(default)]
    pub staging: Option<StorageLocation>,
    /// Where live jobs are exported before they are overwritten or deleted.
    #[serde(default)]
    pub backups: Option<StorageLocation>,
    #[serde(default)]
    pub apply_strategy: ApplyStrategy,
    /// DataArts Studio workspace id for DLF calls (header `workspace`).
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Follow the revision this target converged on and kept healthy, not the branch head.
    #[serde(default)]
    pub promote_from: Option<String>,
    #[serde(default)]
    pub promotion: Option<PromotionConfig>,
    #[serde(default)]
    pub restore: RestoreConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
}

/// The services a target talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Dli,
    Dlf,
    Obs,
    Iam,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Dli => "dli",
            Service::Dlf => "dlf",
            Service::Obs => "obs",
            Service::Iam => "iam",
        }
    }
}

/// Per-service endpoints; an absent one is the region's public host.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EndpointsConfig {
    #[serde(default)]
    pub dli: Option<Endpoint>,
    #[serde(default)]
    pub dlf: Option<Endpoint>,
    #[serde(default)]
    pub obs: Option<Endpoint>,
    #[serde(default)]
    pub iam: Option<Endpoint>,
}

impl EndpointsConfig {
    fn get(&self, service: Service) -> Option<&Endpoint> {
        match service {
            Service::Dli => self.dli.as_ref(),
            Service::Dlf => self.dlf.as_ref(),
            Service::Obs => self.obs.as_ref(),
            Service::Iam => self.iam.as_ref(),
        }
    }

    fn all_set(&self) -> [(Service, Option<&Endpoint>); 4] {
        [Service::Dli, Service::Dlf, Service::Obs, Service::Iam].map(|s| (s, self.get(s)))
    }
}

/// How the target authenticates: AK/SK (optionally temporary, with a security token) or an IAM
/// user's password exchanged for a token. Only references to secrets, never the secrets.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    #[serde(default)]
    pub access_key_env: Option<String>,
    #[serde(default)]
    pub access_key_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_key_env: Option<String>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    #[serde(default)]
    pub security_token_env: Option<String>,
    #[serde(default)]
    pub security_token_file: Option<PathBuf>,
    #[serde(default)]
    pub user_env: Option<String>,
    #[serde(default)]
    pub user_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// IAM account (domain) name, for password auth.
    #[serde(default)]
    pub domain: Option<String>,
}

/// The credential scheme a target uses, with where each secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSpec {
    AkSk {
        access_key: SecretRef,
        secret_key: SecretRef,
        security_token: Option<SecretRef>,
    },
    Password {
        user: SecretRef,
        password: SecretRef,
        domain: String,
    },
    /// The embedded emulator's documented development account.
    EmulatorDev,
}

/// Secrets read at run time. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    AkSk {
        access_key: String,
        secret_key: String,
        security_token: Option<String>,
    },
    Password {
        user: String,
        password: String,
        domain: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AkSk { security_token, .. } => f
                .debug_struct("AkSk")
                .field("access_key", &"<redacted>")
                .field("secret_key", &"<redacted>")
                .field(
                    "security_token",
                    &security_token.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
            Credentials::Password { domain, .. } => f
                .debug_struct("Password")
                .field("user", &"<redacted>")
                .field("password", &"<redacted>")
                .field("domain", domain)
                .finish(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStrategy {
    /// Bundle changed jobs, upload to staging, import with overwrite (the default).
    #[default]
    Import,
    /// Create/update JSON calls.
    Api,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Apply plans automatically; off means observe and report only.
    #[serde(default = "default_true")]
    pub auto_sync: bool,
    /// Correct drift of live jobs changed by hand (otherwise report it as OutOfSync).
    #[serde(default)]
    pub self_heal: bool,
    /// Delete managed jobs that were removed from git.
    #[serde(default)]
    pub prune: bool,
    /// Allow a prune that would delete every managed job (an empty revision is usually a mistake).
    #[serde(default)]
    pub allow_empty_prune: bool,
    /// Re-observe the live service this often even when git does not change.
    #[serde(default = "default_resync_interval")]
    pub resync_interval: ConfigDuration,
    /// Give up on one reconcile after this long.
    #[serde(default = "default_sync_timeout")]
    pub sync_timeout: ConfigDuration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            auto_sync: true,
            self_heal: false,
            prune: false,
            allow_empty_prune: false,
            resync_interval: default_resync_interval(),
            sync_timeout: default_sync_timeout(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_resync_interval() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(300))
}

fn default_sync_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(1800))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionConfig {
    /// Promote without a person once the gate passes.
    #[serde(default)]
    pub auto: bool,
    /// How long the upstream must have kept a revision Synced and Healthy.
    #[serde(default = "default_promotion_after")]
    pub after: ConfigDuration,
    /// Change windows: promotions are blocked inside a deny window, and, when any allow window is
    /// configured, outside all allow windows.
    #[serde(default)]
    pub windows: Vec<WindowConfig>,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig {
            auto: false,
            after: default_promotion_after(),
            windows: Vec::new(),
        }
    }
}

fn default_promotion_after() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(600))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub kind: WindowKind,
    /// Five-field cron expression, UTC, for when the window opens.
    pub schedule: String,
    /// How long it stays open.
    pub duration: ConfigDuration,
}

impl WindowConfig {
    /// The parsed schedule; a loaded config always parses.
    pub fn cron(&self) -> Result<CronSchedule, String> {
        CronSchedule::parse(&self.schedule)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Deny,
    Allow,
}

/// Defaults for carrying Flink state into this target.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// Start promoted jobs from the latest savepoint of their copy in this target.
    #[serde(default)]
    pub from_target: Option<String>,
    /// What to do when that copy has no savepoint.
    #[serde(default)]
    pub on_missing_savepoint: MissingSavepoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingSavepoint {
    /// Mark the job Failed and leave it for a person.
    #[default]
    Fail,
    /// Start without state.
    Stateless,
}

/// Client-side limit on API calls to the target's services.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: default_requests_per_second(),
            burst: default_burst(),
        }
    }
}

fn default_requests_per_second() -> f64 {
    10.0
}

fn default_burst() -> u32 {
    20
}

/// Backoff for transient errors (5xx, 429, timeouts, resets).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: ConfigDuration,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: ConfigDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_max_attempts() -> u32 {
    5
}

fn default_initial_backoff() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(1))
}

fn default_max_backoff() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(60))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP + TLS connect.
    #[serde(default = "default_connect_timeout")]
    pub connect: ConfigDuration,
    /// One HTTP request, start to end.
    #[serde(default = "default_request_timeout")]
    pub request: ConfigDuration,
    /// A job reaching running/stopped after run/stop.
    #[serde(default = "default_job_transition_timeout")]
    pub job_transition: ConfigDuration,
    /// A savepoint being taken or imported.
    #[serde(default = "default_savepoint_timeout")]
    pub savepoint: ConfigDuration,
    /// A DLF import task reaching SUCCESSFUL or FAILED.
    #[serde(default = "default_import_task_timeout")]
    pub import_task: ConfigDuration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: default_connect_timeout(),
            request: default_request_timeout(),
            job_transition: default_job_transition_timeout(),
            savepoint: default_savepoint_timeout(),
            import_task: default_import_task_timeout(),
        }
    }
}

fn default_connect_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(10))
}

fn default_request_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(60))
}

fn default_job_transition_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(900))
}

fn default_savepoint_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(600))
}

fn default_import_task_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(600))
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
    #[error("reading config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
        let metadata = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if metadata.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                size: metadata.len(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
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
                access_key: EMULATOR_DEV_ACCESS_KEY.to_string(),
                secret_key: EMULATOR_DEV_SECRET_KEY.to_string(),
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

impl TargetConfig {
    /// The environment file's name, `environments/<this>.yaml`.
    pub fn environment_name(&self) -> &str {
        self.environment.as_deref().unwrap_or(&self.name)
    }

    /// The region; embedded targets default to [`EMBEDDED_DEFAULT_REGION`].
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(EMBEDDED_DEFAULT_REGION)
    }

    /// True when every service is the in-process emulator.
    pub fn is_embedded(&self) -> bool {
        self.endpoints
            .all_set()
            .iter()
            .filter_map(|(_, endpoint)| *endpoint)
            .any(Endpoint::is_embedded)
    }

    /// The endpoint for `service`: as configured, embedded when the target is, or the region's
    /// public host.
    pub fn endpoint(&self, service: Service) -> Endpoint {
        if let Some(endpoint) = self.endpoints.get(service) {
            return endpoint.clone();
        }
        if self.is_embedded() {
            return Endpoint::Embedded;
        }
        let region = self.region();
        // EU-sovereign regions live under a different top-level domain.
        let domain = if region.starts_with("eu-west-1") && region.len() > "eu-west-1".len() {
            "myhuaweicloud.eu"
        } else {
            "myhuaweicloud.com"
        };
        let host = match service {
            Service::Dli => "dli",
            Service::Dlf => "dayu-dlf",
            Service::Obs => "obs",
            Service::Iam => "iam",
        };
        Endpoint::Url(format!("https://{host}.{region}.{domain}"))
    }

    /// The project id; embedded targets default to the emulator's dev project.
    pub fn project_id(&self) -> Option<&str> {
        match &self.project_id {
            Some(id) => Some(id),
            None if self.is_embedded() => Some(EMULATOR_DEV_PROJECT_ID),
            None => None,
        }
    }

    /// Where the secrets come from; `None` when a non-embedded target has no credentials.
    pub fn credential_spec(&self) -> Option<CredentialSpec> {
        let Some(credentials) = &self.credentials else {
            return self.is_embedded().then_some(CredentialSpec::EmulatorDev);
        };
        let access_key = secret_ref(&credentials.access_key_env, &credentials.access_key_file);
        let secret_key = secret_ref(&credentials.secret_key_env, &credentials.secret_key_file);
        let user = secret_ref(&credentials.user_env, &credentials.user_file);
        let password = secret_ref(&credentials.password_env, &credentials.password_file);
        match (access_key, secret_key, user, password) {
            (Some(access_key), Some(secret_key), _, _) => Some(CredentialSpec::AkSk {
                access_key,
                secret_key,
                security_token: secret_ref(
                    &credentials.security_token_env,
                    &credentials.security_token_file,
                ),
            }),
            (None, None, Some(user), Some(password)) => Some(CredentialSpec::Password {
                user,
                password,
                domain: credentials.domain.clone().unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// Staging prefix: as configured, or a per-target default in the emulator's OBS.
    pub fn staging(&self) -> Option<StorageLocation> {
        self.staging.clone().or_else(|| {
            self.is_embedded().then(|| StorageLocation::Obs {
                bucket: "dli-gitops-staging".to_string(),
                prefix: format!("{}/", self.name),
            })
        })
    }

    /// Backup prefix: as configured, or a per-target default in the emulator's OBS.
    pub fn backups(&self) -> Option<StorageLocation> {
        self.backups.clone().or_else(|| {
            self.is_embedded().then(|| StorageLocation::Obs {
                bucket: "dli-gitops-backups".to_string(),
                prefix: format!("{}/", self.name),
            })
        })
    }

    /// Promotion settings (defaults when not written).
    pub fn promotion(&self) -> PromotionConfig {
        self.promotion.clone().unwrap_or_default()
    }
}
