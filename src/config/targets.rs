//! The `targets:` section: one environment in one account, with its endpoints, credentials,
//! policy, promotion and client limits, and the defaults filled in for embedded targets.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::EMBEDDED_DEFAULT_REGION;
use super::schedule::CronSchedule;
use super::values::{ConfigDuration, Endpoint, SecretRef, StorageLocation, secret_ref};
pub use crate::cloud::ObsAddressing;
use crate::emulator::DEV_PROJECT_ID;

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
    /// Where DLF import bundles (and carried savepoints) are uploaded.
    #[serde(default)]
    pub staging: Option<StorageLocation>,
    /// Where live jobs are exported before they are overwritten or deleted.
    #[serde(default)]
    pub backups: Option<StorageLocation>,
    /// Kept so that configs written before Flink jobs were always written through the API read
    /// with a clear message: `api` is accepted (it is the only behaviour), `import` is refused.
    #[serde(default)]
    pub apply_strategy: Option<ApplyStrategy>,
    /// DataArts Studio workspace id for DLF calls (header `workspace`).
    #[serde(default)]
    pub workspace: Option<String>,
    /// How OBS requests name the bucket: `auto` (virtual-hosted, except path style for an
    /// endpoint that is an IP address or `localhost`), `virtual_hosted` or `path`.
    #[serde(default)]
    pub obs_addressing: ObsAddressing,
    /// Grant DLI access to the staging, backup and checkpoint buckets
    /// (`POST /v1.0/{project_id}/dli/obs-authorize`) before they are first used.
    #[serde(default)]
    pub authorize_obs: bool,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Follow the revision this target converged on and kept healthy, not the branch head.
    #[serde(default)]
    pub promote_from: Option<String>,
    #[serde(default)]
    pub promotion: Option<PromotionConfig>,
    /// Change windows for this target: syncs and promotions to it wait inside a deny window
    /// and, when allow windows exist, outside all of them.
    #[serde(default)]
    pub windows: Vec<WindowConfig>,
    /// Suspend this target: `true` or `{until: <RFC 3339 time>}`.
    #[serde(default)]
    pub suspend: super::Suspend,
    #[serde(default)]
    pub restore: RestoreConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// What garbage collection keeps of what dli-gitops wrote (savepoint copies, backups).
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// Retention and garbage collection of the objects dli-gitops wrote for a target.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Savepoint copies in the catalog, per job.
    #[serde(default)]
    pub savepoints: SavepointRetention,
    /// Backup exports, per apply.
    #[serde(default)]
    pub backups: BackupRetention,
    /// How often the daemon collects garbage for the target (the `gc` command: on demand).
    #[serde(default = "default_gc_interval")]
    pub interval: ConfigDuration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            savepoints: SavepointRetention::default(),
            backups: BackupRetention::default(),
            interval: default_gc_interval(),
        }
    }
}

/// Keep the newest `keep` savepoint copies of each job and every copy younger than `max_age`.
/// The copy a job would resume from, and any copy newer than the newest verified one, are
/// kept whatever these say.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointRetention {
    #[serde(default = "default_savepoints_keep")]
    pub keep: u32,
    #[serde(default = "default_savepoints_max_age")]
    pub max_age: ConfigDuration,
}

impl Default for SavepointRetention {
    fn default() -> Self {
        SavepointRetention {
            keep: default_savepoints_keep(),
            max_age: default_savepoints_max_age(),
        }
    }
}

/// Keep the backups of the newest `keep` applies (`rollback --to` can reach only those).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRetention {
    #[serde(default = "default_backups_keep")]
    pub keep: u32,
}

impl Default for BackupRetention {
    fn default() -> Self {
        BackupRetention {
            keep: default_backups_keep(),
        }
    }
}

fn default_gc_interval() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(3600))
}

fn default_savepoints_keep() -> u32 {
    3
}

fn default_savepoints_max_age() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(7 * 24 * 3600))
}

fn default_backups_keep() -> u32 {
    10
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
    pub(super) fn get(&self, service: Service) -> Option<&Endpoint> {
        match service {
            Service::Dli => self.dli.as_ref(),
            Service::Dlf => self.dlf.as_ref(),
            Service::Obs => self.obs.as_ref(),
            Service::Iam => self.iam.as_ref(),
        }
    }

    pub(super) fn all_set(&self) -> [(Service, Option<&Endpoint>); 4] {
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

/// The former `apply_strategy` setting. Flink job definitions are written only with the
/// documented create/update calls; `import` (authoring DLI export zips) was removed because DLI
/// imports only zips it exported itself. Still parsed so that validation can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStrategy {
    /// Refused by validation, with what to write instead.
    Import,
    /// Create/update JSON calls: what dli-gitops always does.
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
    /// Automatic rollback of a failed upgrade (opt-in, per target and per job).
    #[serde(default)]
    pub rollback_on_failure: RollbackOnFailureConfig,
}

/// Automatic rollback: a Flink job upgraded (or restored) by a pass that fails to reach
/// running, or fails within `within` of its start, gets its previous definition back and
/// resumes from the savepoint the upgrade stopped it with; the revision is marked failed for
/// that job until a commit changes the job.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackOnFailureConfig {
    /// Off by default: a failed upgrade is reported (Degraded) and left as it is.
    #[serde(default)]
    pub enabled: bool,
    /// How long after its start a failure still counts as the upgrade's fault.
    #[serde(default = "default_rollback_within")]
    pub within: ConfigDuration,
    /// Per-job overrides by Flink job name: `{enabled, within}`, each optional.
    #[serde(default)]
    pub jobs: std::collections::BTreeMap<String, JobRollbackOverride>,
}

impl Default for RollbackOnFailureConfig {
    fn default() -> Self {
        RollbackOnFailureConfig {
            enabled: false,
            within: default_rollback_within(),
            jobs: Default::default(),
        }
    }
}

/// One job's override of the target's `rollback_on_failure`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobRollbackOverride {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub within: Option<ConfigDuration>,
}

fn default_rollback_within() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(600))
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
            rollback_on_failure: RollbackOnFailureConfig::default(),
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
    /// Five-field cron expression for when the window opens, read in `timezone`.
    pub schedule: String,
    /// How long it stays open (elapsed time).
    pub duration: ConfigDuration,
    /// IANA time zone the schedule is read in (`Europe/Berlin`); default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl WindowConfig {
    /// The parsed schedule in its zone; a loaded config always parses.
    pub fn cron(&self) -> Result<CronSchedule, String> {
        CronSchedule::parse_in(&self.schedule, self.timezone.as_deref())
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
            None if self.is_embedded() => Some(DEV_PROJECT_ID),
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
    /// The promotion settings; the target's own `windows` apply to promotions too.
    pub fn promotion(&self) -> PromotionConfig {
        let mut promotion = self.promotion.clone().unwrap_or_default();
        promotion.windows.extend(self.windows.iter().cloned());
        promotion
    }
}
