//! The emulator's configuration: accounts, IAM users, status delays, faults, buckets, limits.
//! Deserialised from the YAML file given with `--config`; `Default` is the documented
//! development account with near-realistic delays.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::bundle::ZipLimits;

/// The development account's access key (AK).
pub const DEV_ACCESS_KEY: &str = "DLIGITOPSDEVACCESSKEY";
/// The development account's secret key (SK). Not a secret: it only opens the local emulator.
pub const DEV_SECRET_KEY: &str = "dli-gitops-dev-secret-key-not-for-production";
/// The development account's project id.
pub const DEV_PROJECT_ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// The development IAM user (password grant at `POST /v3/auth/tokens`).
pub const DEV_USER_NAME: &str = "dli-gitops-dev";
/// The development IAM user's password.
pub const DEV_USER_PASSWORD: &str = "dli-gitops-dev-password";
/// The development IAM user's domain (account) name.
pub const DEV_DOMAIN_NAME: &str = "dli-gitops-dev";
/// Buckets that exist when the emulator starts, unless the config lists others.
pub const DEFAULT_BUCKETS: &[&str] = &[
    "dli-gitops-staging",
    "dli-gitops-backups",
    "dli-gitops-savepoints",
];
/// Where savepoints go for jobs without an `obs_bucket`.
pub const DEFAULT_SAVEPOINT_BUCKET: &str = "dli-gitops-savepoints";

/// Everything the emulator needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Address of the DLI, DLF and IAM APIs (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Address of the S3-compatible OBS endpoint.
    pub s3_listen: SocketAddr,
    /// Persisted state (`state.json`) and OBS objects (`obs/<bucket>/<key>`).
    pub data_dir: PathBuf,
    /// AK/SK pairs and the project each may use.
    pub credentials: Vec<EmulatorCredential>,
    /// IAM users for the password grant.
    pub users: Vec<EmulatorUser>,
    pub delays: EmulatorDelays,
    pub faults: EmulatorFaults,
    pub auth: EmulatorAuth,
    /// Buckets created at start (existing ones are kept).
    pub buckets: Vec<String>,
    pub limits: EmulatorLimits,
    /// How the S3 endpoint names buckets: path style, virtual-hosted under a domain, or both.
    pub s3: EmulatorS3,
    /// The DLI queues of every project, as the queue list API (`GET /v1.0/{project_id}/queues`,
    /// SDK `ListQueues`) reports them.
    pub queues: Vec<EmulatorQueue>,
}

impl Default for EmulatorConfig {
    fn default() -> EmulatorConfig {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            s3_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from("emulator-data"),
            credentials: vec![EmulatorCredential {
                access_key: DEV_ACCESS_KEY.to_string(),
                secret_key: DEV_SECRET_KEY.to_string(),
                project_id: DEV_PROJECT_ID.to_string(),
            }],
            users: vec![EmulatorUser {
                name: DEV_USER_NAME.to_string(),
                password: DEV_USER_PASSWORD.to_string(),
                domain: DEV_DOMAIN_NAME.to_string(),
                project_id: DEV_PROJECT_ID.to_string(),
            }],
            delays: EmulatorDelays::default(),
            faults: EmulatorFaults::default(),
            auth: EmulatorAuth::default(),
            buckets: DEFAULT_BUCKETS
                .iter()
                .map(|name| name.to_string())
                .collect(),
            limits: EmulatorLimits::default(),
            s3: EmulatorS3::default(),
            queues: DEFAULT_QUEUES
                .iter()
                .map(|name| EmulatorQueue {
                    name: name.to_string(),
                    queue_type: default_queue_type(),
                    cu_count: default_cu_count(),
                })
                .collect(),
        }
    }
}

/// Queues every project has unless the config lists others: the names the example repository,
/// the tests and the README use. All are `general` queues (the type Flink jobs run on).
pub const DEFAULT_QUEUES: &[&str] = &["default", "dev_flink", "prod_flink", "flink_queue", "q1"];

/// One DLI queue (SDK `QueueDetails`: `queue_name`, `queue_type` `sql`/`general`, `cu_count`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorQueue {
    pub name: String,
    /// `general` (Flink and Spark jobs) or `sql`.
    #[serde(default = "default_queue_type")]
    pub queue_type: String,
    #[serde(default = "default_cu_count")]
    pub cu_count: i64,
}

fn default_queue_type() -> String {
    "general".to_string()
}

fn default_cu_count() -> i64 {
    16
}

impl EmulatorConfig {
    /// The default configuration with every delay at zero, for tests.
    pub fn for_tests(data_dir: PathBuf) -> EmulatorConfig {
        EmulatorConfig {
            data_dir,
            delays: EmulatorDelays::zero(),
            ..EmulatorConfig::default()
        }
    }
}

/// One AK/SK pair. The secret never appears in Debug output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorCredential {
    pub access_key: String,
    pub secret_key: String,
    pub project_id: String,
}

impl fmt::Debug for EmulatorCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorCredential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("project_id", &self.project_id)
            .finish()
    }
}

/// One IAM user. The password never appears in Debug output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorUser {
    pub name: String,
    pub password: String,
    /// The account (domain) name the token request must name.
    pub domain: String,
    pub project_id: String,
}

impl fmt::Debug for EmulatorUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("domain", &self.domain)
            .field("project_id", &self.project_id)
            .finish()
    }
}

/// How long jobs and tasks stay in each transitional status, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorDelays {
    /// `job_submitting` → `job_running` (or `job_submit_fail`).
    pub submit_ms: u64,
    /// `job_canceling` → `job_cancel_success`.
    pub cancel_ms: u64,
    /// `job_savepointing` (on stop with savepoint, or a triggered savepoint).
    pub savepoint_ms: u64,
    /// A DLF import task stays `RUNNING` this long.
    pub dlf_task_ms: u64,
}

impl Default for EmulatorDelays {
    fn default() -> EmulatorDelays {
        EmulatorDelays {
            submit_ms: 1500,
            cancel_ms: 1000,
            savepoint_ms: 1000,
            dlf_task_ms: 1000,
        }
    }
}

impl EmulatorDelays {
    /// Every transition completes at once (still observable as a sequence of statuses in the
    /// introspection API, not in the cloud API).
    pub fn zero() -> EmulatorDelays {
        EmulatorDelays {
            submit_ms: 0,
            cancel_ms: 0,
            savepoint_ms: 0,
            dlf_task_ms: 0,
        }
    }
}

/// Injected faults, applied to the cloud APIs (not to `/_emulator`) before any state change.
/// Rates are probabilities in `0.0..=1.0`, drawn from one RNG seeded with `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorFaults {
    /// HTTP 500 with the service's error body.
    pub error_rate: f64,
    /// The connection is closed without a complete response.
    pub drop_rate: f64,
    /// HTTP 429 with `Retry-After`.
    pub throttle_rate: f64,
    /// Added to every cloud API call.
    pub latency_ms: u64,
    /// The `Retry-After` value of a throttled call, in seconds.
    pub retry_after_seconds: u64,
    pub seed: u64,
    /// Late delivery: calls of these operations are held, then applied after the caller may
    /// have given up and sent again (a request stuck in a gateway). The handler runs to its end
    /// whether or not anyone still waits for the answer.
    pub late: Vec<TargetedFault>,
    /// Lost answers: calls of these operations are applied, then the connection is dropped
    /// before the answer is written.
    pub lost_answer: Vec<TargetedFault>,
    /// Permission denied: every call of these operations (SDK names, e.g. `ListQueues`) is
    /// answered HTTP 403 after authentication, as when the caller's IAM policy lacks the
    /// action. Nothing is applied.
    pub forbidden: Vec<String>,
    /// Flink jobs that fail when run, by name (see [`JobFailure`]). A SQL job whose
    /// `sql_body` holds a marker fails the same way without any config:
    /// `dli-emulator:fail-on-start` or `dli-emulator:fail-after-ms=<N>`.
    pub job_failures: Vec<JobFailure>,
}

/// Every run of the Flink job named `job` fails: with `after_ms: 0` on start (the run ends in
/// `job_submit_fail`), otherwise `after_ms` after it reached `job_running` (the run ends in
/// `job_running_exception`, as a job whose operators throw). Deterministic: no RNG, no count,
/// so a restarted emulator fails the job the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFailure {
    pub job: String,
    #[serde(default)]
    pub after_ms: u64,
}

/// A fault aimed at the calls of one operation (by the SDK's operation name, as in
/// `/_emulator/v1/stats`, e.g. `BatchStopFlinkJobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetedFault {
    pub operation: String,
    /// Calls of the operation to let through untouched first.
    #[serde(default)]
    pub skip: u32,
    /// How many calls to affect after those (0: every one).
    #[serde(default = "one")]
    pub times: u32,
    /// For `late`: how long to hold the call before applying it.
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}

impl Default for EmulatorFaults {
    fn default() -> EmulatorFaults {
        EmulatorFaults {
            error_rate: 0.0,
            drop_rate: 0.0,
            throttle_rate: 0.0,
            latency_ms: 0,
            retry_after_seconds: 1,
            seed: 0,
            late: Vec::new(),
            lost_answer: Vec::new(),
            forbidden: Vec::new(),
            job_failures: Vec::new(),
        }
    }
}

/// The API gateway's protection against signature guessing: after `lockout_failures`
/// consecutive bad signatures an access key is refused for `lockout_seconds`, even with a good
/// signature. `lockout_failures: 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorAuth {
    pub lockout_failures: u32,
    pub lockout_seconds: u64,
}

impl Default for EmulatorAuth {
    fn default() -> EmulatorAuth {
        EmulatorAuth {
            lockout_failures: 5,
            lockout_seconds: 300,
        }
    }
}

/// Input size bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorLimits {
    /// Largest request body accepted by the cloud APIs (HTTP 413 beyond).
    pub max_body_bytes: usize,
    /// Largest zip object DLI or DLF will read from OBS (DLF documents 10 MB).
    pub max_zip_bytes: u64,
    /// Limits while inflating an imported zip.
    pub zip: ZipLimits,
}

impl Default for EmulatorLimits {
    fn default() -> EmulatorLimits {
        EmulatorLimits {
            max_body_bytes: 2 * 1024 * 1024,
            max_zip_bytes: 10 * 1024 * 1024,
            zip: ZipLimits::default(),
        }
    }
}

/// Bucket addressing on the S3 endpoint. By default only path style
/// (`http://127.0.0.1:PORT/{bucket}/{key}`), which the embedded default uses. With `domain`,
/// `Host: {bucket}.{domain}[:port]` addresses a bucket the way OBS's
/// `{bucket}.obs.{region}.myhuaweicloud.com` does; `refuse_path_style` then refuses path-style
/// requests the way OBS's public endpoints do (HTTP 403 `VirtualHostDomainRequired`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorS3 {
    /// The service domain, e.g. `obs.test` (no port, no bucket); bucket hosts are below it.
    pub domain: Option<String>,
    /// Refuse any request that names its bucket in the path instead of the host.
    pub refuse_path_style: bool,
}

impl EmulatorS3 {
    fn validate(&self) -> Result<(), String> {
        if let Some(domain) = &self.domain {
            let labels_ok = !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if !labels_ok || domain.parse::<std::net::IpAddr>().is_ok() {
                return Err(format!(
                    "s3.domain {domain:?} is not a host name (lower-case labels separated by '.', no port, not an IP address), e.g. obs.test"
                ));
            }
        }
        if self.refuse_path_style && self.domain.is_none() {
            return Err(
                "s3.refuse_path_style needs s3.domain: without it no request could reach a bucket"
                    .into(),
            );
        }
        Ok(())
    }
}

impl EmulatorConfig {
    /// Checks what serde cannot: rates in range, non-empty and unique access keys.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("faults.error_rate", self.faults.error_rate),
            ("faults.drop_rate", self.faults.drop_rate),
            ("faults.throttle_rate", self.faults.throttle_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} is {rate}; it must be between 0 and 1"));
            }
        }
        if self.credentials.is_empty() && self.users.is_empty() {
            return Err("no credentials and no users: nobody could call the emulator".into());
        }
        let mut access_keys = std::collections::BTreeSet::new();
        for credential in &self.credentials {
            if credential.access_key.is_empty() || credential.secret_key.is_empty() {
                return Err("a credential has an empty access_key or secret_key".into());
            }
            if credential.project_id.is_empty() {
                return Err(format!(
                    "credential {} has an empty project_id",
                    credential.access_key
                ));
            }
            if !access_keys.insert(credential.access_key.as_str()) {
                return Err(format!(
                    "access key {} is listed twice",
                    credential.access_key
                ));
            }
        }
        for bucket in &self.buckets {
            super::obs::check_bucket_name(bucket)
                .map_err(|reason| format!("bucket {bucket:?}: {reason}"))?;
        }
        self.s3.validate()?;
        let mut queue_names = std::collections::BTreeSet::new();
        for queue in &self.queues {
            if queue.name.is_empty() || !queue_names.insert(queue.name.as_str()) {
                return Err(format!("queue {:?} is empty or listed twice", queue.name));
            }
            if !matches!(queue.queue_type.as_str(), "general" | "sql") {
                return Err(format!(
                    "queue {}: queue_type {:?} is neither `general` nor `sql`",
                    queue.name, queue.queue_type
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_matches_the_defaults_it_documents() {
        let example: EmulatorConfig =
            serde_yaml::from_str(include_str!("../../examples/emulator.yaml")).unwrap();
        example.validate().unwrap();
        let defaults = EmulatorConfig::default();
        assert_eq!(example.delays, defaults.delays);
        assert_eq!(example.faults, defaults.faults);
        assert_eq!(example.auth, defaults.auth);
        assert_eq!(example.limits, defaults.limits);
        assert_eq!(example.buckets, defaults.buckets);
        assert_eq!(example.credentials[0], defaults.credentials[0]);
        assert_eq!(example.users, defaults.users);
        assert_eq!(example.s3, defaults.s3);
        assert_eq!(example.queues, defaults.queues);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let unknown = serde_yaml::from_str::<EmulatorConfig>("delay: {submit_ms: 1}");
        assert!(unknown.is_err());
        let mut config = EmulatorConfig::default();
        config.faults.error_rate = 1.5;
        assert!(config.validate().unwrap_err().contains("error_rate"));
        let mut config = EmulatorConfig::default();
        config.credentials.push(config.credentials[0].clone());
        assert!(config.validate().unwrap_err().contains("twice"));
        let mut config = EmulatorConfig::default();
        config.buckets.push("Bad_Bucket".into());
        assert!(config.validate().is_err());
        let mut config = EmulatorConfig::default();
        config.s3.refuse_path_style = true;
        assert!(config.validate().unwrap_err().contains("s3.domain"));
        for bad in [
            "obs.test:9000",
            "127.0.0.1",
            "Obs.Test",
            "-obs.test",
            "obs..test",
            "",
        ] {
            let mut config = EmulatorConfig::default();
            config.s3.domain = Some(bad.into());
            assert!(config.validate().is_err(), "{bad:?} was accepted");
        }
        let config = EmulatorConfig {
            s3: EmulatorS3 {
                domain: Some("obs.test".into()),
                refuse_path_style: true,
            },
            ..EmulatorConfig::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let text = format!("{:?}", EmulatorConfig::default());
        assert!(!text.contains(DEV_SECRET_KEY));
        assert!(!text.contains(DEV_USER_PASSWORD));
    }
}
