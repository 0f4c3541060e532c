//! [`TargetContext`]: everything needed to act on one configured target — its cloud clients,
//! OBS staging and backup locations, the journal, the planning policy — built from the daemon's
//! config. An `embedded` endpoint starts the emulator in-process, with its data under
//! `state_dir/emulator/`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::ledger::journal::JournalLedger;
use super::live::cloud::CloudLive;
use super::{ApplyError, ApplyOptions};
use crate::cloud::{
    ClientOptions, CloudClients, Credentials, RetryPolicy, Secret, ServiceEndpoints, parse_endpoint,
};
use crate::config::{self, Config, Endpoint, Service, StorageLocation, TargetConfig};
use crate::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use crate::journal::{Journal, JournalOptions};
use crate::model::DesiredJobs;
use crate::plan::PlanPolicy;

/// One target, ready to observe, plan and apply.
pub struct TargetContext {
    pub name: String,
    pub target: TargetConfig,
    pub live: CloudLive,
    pub ledger: JournalLedger,
    pub policy: PlanPolicy,
    /// Timeouts from the target's config; `dry_run`/`revision` are set per pass.
    pub options: ApplyOptions,
    /// `environments/<environment>.yaml` in the target's source.
    pub environment: String,
    source: Option<config::SourceConfig>,
    state_dir: PathBuf,
    /// The embedded emulator this target uses (shared by the targets of one daemon).
    emulator: Option<Arc<EmulatorHandle>>,
    /// With `authorize_obs`: the buckets DLI was granted access to in this process.
    authorized_buckets: tokio::sync::Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for TargetContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetContext")
            .field("name", &self.name)
            .field("environment", &self.environment)
            .field("embedded", &self.emulator.is_some())
            .finish_non_exhaustive()
    }
}

impl TargetContext {
    /// Opens the journal in `config.state_dir` (taking its lock) and builds the target.
    pub async fn open(config: &Config, target_name: &str) -> Result<TargetContext, ApplyError> {
        let state_dir = config.state_dir.clone();
        let directory = state_dir.clone();
        let opened = tokio::task::spawn_blocking(move || {
            Journal::open(&directory, JournalOptions::default())
        })
        .await
        .map_err(|error| setup_error(target_name, "opening the journal", error, ""))?;
        let (journal, recovery) = opened.map_err(|source| ApplyError::Journal {
            target: target_name.to_string(),
            what: "opening it",
            source: Box::new(source),
        })?;
        tracing::debug!(target_name, recovery = %recovery, "Opened the journal for one target.");
        TargetContext::with_journal(config, target_name, journal).await
    }

    /// Builds the target over an already open journal, starting the embedded emulator when an
    /// endpoint is `embedded`.
    pub async fn with_journal(
        config: &Config,
        target_name: &str,
        journal: Journal,
    ) -> Result<TargetContext, ApplyError> {
        TargetContext::with_shared(config, target_name, journal, None).await
    }

    /// Builds the target over an already open journal and, for `embedded` endpoints, the given
    /// emulator (see [`start_embedded_emulator`]; a daemon starts one for all its targets, since
    /// two emulators must not share `state_dir/emulator/`). Without one, one is started.
    pub async fn with_shared(
        config: &Config,
        target_name: &str,
        journal: Journal,
        shared_emulator: Option<Arc<EmulatorHandle>>,
    ) -> Result<TargetContext, ApplyError> {
        let target = configured_target(config, target_name)?;
        let emulator = emulator_for(config, target_name, &target, shared_emulator).await?;
        let endpoints = service_endpoints(target_name, &target, emulator.as_deref())?;
        let clients = clients_for(target_name, &target, &endpoints).await?;
        let staging = match target.staging() {
            Some(location) => Some(
                clients
                    .object_store(&location_url(target_name, &location, "staging")?)
                    .map_err(|error| setup_error(target_name, "", error, ""))?,
            ),
            None => None,
        };
        let backups = match target.backups() {
            Some(location) => Some(location_url(target_name, &location, "backups")?),
            None => None,
        };
        let policy = PlanPolicy {
            prune: target.policy.prune,
            allow_empty_prune: target.policy.allow_empty_prune,
            backups: backups.is_some(),
            instance: config.instance.clone(),
            // `apply` is a pass a person asked for; the daemon sets the target's self_heal
            // for its automatic passes.
            self_heal: None,
        };
        Ok(TargetContext {
            name: target_name.to_string(),
            environment: target.environment_name().to_string(),
            source: config.source_of(&target).cloned(),
            live: CloudLive {
                clients,
                staging,
                backups,
            },
            ledger: JournalLedger::new(journal, target_name),
            policy,
            options: apply_options(&target),
            target,
            state_dir: config.state_dir.clone(),
            emulator,
            authorized_buckets: tokio::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// With `authorize_obs: true`, grants DLI access (`POST .../dli/obs-authorize`) to the
    /// staging and backup buckets and to the checkpoint buckets (`obs_bucket`,
    /// `checkpoint_path`) of `desired`, once per bucket per process. Does nothing otherwise.
    pub async fn authorize_obs(&self, desired: Option<&DesiredJobs>) -> Result<(), ApplyError> {
        if !self.target.authorize_obs {
            return Ok(());
        }
        let mut wanted = BTreeSet::new();
        for location in [self.target.staging(), self.target.backups()]
            .into_iter()
            .flatten()
        {
            if let StorageLocation::Obs { bucket, .. } = location {
                wanted.insert(bucket);
            }
        }
        for job in desired.map(|d| d.flink.as_slice()).unwrap_or_default() {
            for path in [&job.config.obs_bucket, &job.config.checkpoint_path]
                .into_iter()
                .flatten()
            {
                if let Ok(location) = crate::cloud::ObsLocation::parse(path) {
                    wanted.insert(location.bucket);
                }
            }
        }
        let mut authorized = self.authorized_buckets.lock().await;
        let missing: Vec<String> = wanted.difference(&authorized).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.live
            .clients
            .dli
            .authorize_obs_buckets(&missing)
            .await
            .map_err(|error| {
                setup_error(
                    &self.name,
                    format!(
                        "granting DLI access to the OBS buckets {} (authorize_obs) failed",
                        missing.join(", ")
                    ),
                    error,
                    "check that the buckets exist and the credentials may authorise them, or set `authorize_obs: false` when DLI's agency already has access",
                )
            })?;
        tracing::info!(target = %self.name, buckets = %missing.join(","), "Granted DLI access to OBS buckets.");
        authorized.extend(missing);
        Ok(())
    }

    /// The source the target reads (`None`: the config names no such source).
    pub fn source_config(&self) -> Option<&config::SourceConfig> {
        self.source.as_ref()
    }

    /// The daemon's state directory (git mirrors live under it).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The shared embedded emulator, for building another target beside this one (promotion).
    pub fn shared_emulator(&self) -> Option<Arc<EmulatorHandle>> {
        self.emulator.clone()
    }

    /// The embedded emulator, when the target uses one.
    pub fn emulator(&self) -> Option<&EmulatorHandle> {
        self.emulator.as_deref()
    }

    /// Stops the embedded emulator when this was its last user.
    pub async fn shutdown(self) {
        if let Some(emulator) = self
            .emulator
            .and_then(|shared| Arc::try_unwrap(shared).ok())
        {
            emulator.shutdown().await;
        }
    }
}

/// The target named `target_name` in `config`, or an error listing the configured ones.
fn configured_target(config: &Config, target_name: &str) -> Result<TargetConfig, ApplyError> {
    config.target(target_name).cloned().ok_or_else(|| {
        let known: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        target_error(
            target_name,
            format!(
                "no such target in {}; configured targets: {}",
                config.file.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )
    })
}

/// The embedded emulator the target uses: `shared`, or one started now; none when no endpoint
/// is `embedded`.
async fn emulator_for(
    config: &Config,
    target_name: &str,
    target: &TargetConfig,
    shared: Option<Arc<EmulatorHandle>>,
) -> Result<Option<Arc<EmulatorHandle>>, ApplyError> {
    let services = [Service::Dli, Service::Dlf, Service::Obs, Service::Iam];
    let embedded = services
        .iter()
        .any(|service| target.endpoint(*service).is_embedded());
    Ok(match (embedded, shared) {
        (false, _) => None,
        (true, Some(shared)) => Some(shared),
        (true, None) => Some(
            start_embedded_emulator(config)
                .await
                .map_err(|problem| target_error(target_name, problem))?,
        ),
    })
}

/// The url of each service: the configured one, or the embedded emulator's.
fn service_endpoints(
    target_name: &str,
    target: &TargetConfig,
    emulator: Option<&EmulatorHandle>,
) -> Result<ServiceEndpoints, ApplyError> {
    let endpoint = |service: Service| -> Result<url::Url, ApplyError> {
        let text = match (target.endpoint(service), emulator) {
            (Endpoint::Embedded, Some(handle)) => match service {
                Service::Obs => handle.s3_url(),
                Service::Dli => handle.dli_url(),
                Service::Dlf => handle.dlf_url(),
                Service::Iam => handle.iam_url(),
            },
            (Endpoint::Url(url), _) => url,
            (other, _) => {
                return Err(target_error(
                    target_name,
                    format!("the {} endpoint {other:?} is not usable", service.as_str()),
                ));
            }
        };
        parse_endpoint(&text).map_err(|error| setup_error(target_name, "", error, ""))
    };
    Ok(ServiceEndpoints {
        dli: endpoint(Service::Dli)?,
        dlf: endpoint(Service::Dlf)?,
        iam: endpoint(Service::Iam)?,
        obs: endpoint(Service::Obs)?,
    })
}

/// The target's credentials, read from where the config points.
fn credentials_of(target_name: &str, target: &TargetConfig) -> Result<Credentials, ApplyError> {
    let credentials = Config::resolve_credentials(target)
        .map_err(|error| setup_error(target_name, "", error, ""))?;
    Ok(match credentials {
        config::Credentials::AkSk {
            access_key,
            secret_key,
            security_token,
        } => Credentials::AkSk {
            access_key,
            secret_key: Secret::new(secret_key),
            security_token: security_token.map(Secret::new),
        },
        config::Credentials::Password {
            user,
            password,
            domain,
        } => Credentials::Password {
            user,
            password: Secret::new(password),
            domain,
        },
    })
}

/// The target's cloud clients: its credentials, its project (looked up from IAM when not
/// configured), and its timeouts, retries and rate limit.
async fn clients_for(
    target_name: &str,
    target: &TargetConfig,
    endpoints: &ServiceEndpoints,
) -> Result<CloudClients, ApplyError> {
    let credentials = credentials_of(target_name, target)?;
    let looked_up;
    let project_id = match target.project_id() {
        Some(id) => id,
        None => {
            looked_up =
                lookup_project_id(target_name, target, &endpoints.iam, &credentials).await?;
            looked_up.as_str()
        }
    };
    let client_options = ClientOptions {
        connect_timeout: target.timeouts.connect.get(),
        request_timeout: target.timeouts.request.get(),
        retry: RetryPolicy {
            max_attempts: target.retry.max_attempts,
            base_backoff: target.retry.initial_backoff.get(),
            max_backoff: target.retry.max_backoff.get(),
            ..RetryPolicy::default()
        },
        requests_per_second: target.rate_limit.requests_per_second,
        burst: target.rate_limit.burst,
        ..ClientOptions::default()
    };
    Ok(CloudClients::new(
        endpoints,
        target.region(),
        project_id,
        credentials,
        client_options,
        target.workspace.as_deref(),
    )
    .map_err(|error| setup_error(target_name, "", error, ""))?
    .with_obs_addressing(target.obs_addressing))
}

/// The pass options from the target's config (timeouts, automatic rollback).
fn apply_options(target: &TargetConfig) -> ApplyOptions {
    ApplyOptions {
        transition_timeout: target.timeouts.job_transition.get(),
        savepoint_timeout: target.timeouts.savepoint.get(),
        import_task_timeout: target.timeouts.import_task.get(),
        rollback_on_failure: super::auto_rollback::RollbackPolicy::from_config(
            &target.policy.rollback_on_failure,
        ),
        ..ApplyOptions::default()
    }
}

/// Starts the emulator in-process for `embedded` endpoints, with its data in
/// `state_dir/emulator/`, on free loopback ports.
pub async fn start_embedded_emulator(config: &Config) -> Result<Arc<EmulatorHandle>, String> {
    let emulator_config = EmulatorConfig {
        data_dir: config.state_dir.join("emulator"),
        ..EmulatorConfig::default()
    };
    let handle = Emulator::start(emulator_config)
        .await
        .map_err(|error| format!("starting the embedded emulator: {error}"))?;
    Ok(Arc::new(handle))
}

fn location_url(
    target: &str,
    location: &StorageLocation,
    what: &str,
) -> Result<String, ApplyError> {
    match location {
        StorageLocation::Obs { bucket, prefix } => Ok(format!("obs://{bucket}/{prefix}")),
        other => Err(target_error(
            target,
            format!(
                "the {what} location {other} is not an obs:// location; DLI and DLF read bundles and write exports on OBS only"
            ),
        )),
    }
}

/// Without `project_id`: the id of the project named after the region, looked up once from IAM
/// with the AK/SK (`cloud::iam`), and logged.
async fn lookup_project_id(
    target_name: &str,
    target: &TargetConfig,
    iam: &url::Url,
    credentials: &Credentials,
) -> Result<String, ApplyError> {
    let region = target.region();
    let by_hand = format!(
        "set `project_id` by hand: the id of project `{region}` under My Credentials > API Credentials > Projects"
    );
    let Credentials::AkSk {
        access_key,
        secret_key,
        security_token,
    } = credentials
    else {
        return Err(target_error(
            target_name,
            format!("no `project_id`, and password credentials cannot look it up; {by_hand}"),
        ));
    };
    let ids = crate::cloud::iam::project_ids_for_region(
        iam,
        region,
        access_key,
        secret_key,
        security_token.as_ref(),
        target.timeouts.request.get(),
    )
    .await
    .map_err(|error| {
        setup_error(
            target_name,
            "no `project_id`, and looking it up from IAM failed",
            error,
            &by_hand,
        )
    })?;
    match ids.as_slice() {
        [id] => {
            tracing::info!(target = target_name, region, project_id = %id, "No `project_id` configured: looked it up from IAM.");
            Ok(id.clone())
        }
        [] => Err(target_error(
            target_name,
            format!(
                "no `project_id`, and IAM lists no project named `{region}` for these keys; {by_hand}"
            ),
        )),
        several => Err(target_error(
            target_name,
            format!(
                "no `project_id`, and IAM lists {} projects named `{region}` ({}); set the one to use",
                several.len(),
                several.join(", ")
            ),
        )),
    }
}

/// A setup step of the target failed because of `source`: `{doing}: {source}; {advice}`.
fn setup_error(
    target: &str,
    doing: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
    advice: impl Into<String>,
) -> ApplyError {
    ApplyError::TargetSetup {
        target: target.to_string(),
        doing: doing.into(),
        source: Box::new(source),
        advice: advice.into(),
    }
}

fn target_error(target: &str, problem: String) -> ApplyError {
    ApplyError::Target {
        target: target.to_string(),
        problem,
    }
}

/// Observes the target: every Flink job (and DLF jobs when git or the journal knows some),
/// reading details only for jobs that changed since the journal's last observation.
pub async fn observe(
    context: &TargetContext,
) -> Result<(crate::model::ObservedJobs, super::ObserveReport), ApplyError> {
    let scope = super::observe::ObserveScope {
        dlf: super::observe::dlf_in_scope(&context.ledger, 0),
        ..Default::default()
    };
    super::observe::observe_with(&context.live, &context.ledger, &scope).await
}

/// One pass through the context's own ledger: resolve unfinished intents by observing first,
/// observe, plan, and — unless `options.dry_run` — apply the plan. `pass::run_pass` is the
/// full path `plan`, `apply` and the daemon take (carrying savepoints, any ledger, the look
/// after acting); this is the plain pass, for tests and benches.
pub async fn reconcile_once(
    context: &TargetContext,
    desired: &DesiredJobs,
    options: &ApplyOptions,
) -> Result<super::ApplyReport, ApplyError> {
    let span = tracing::info_span!("reconcile", target = %context.name, revision = options.revision.as_deref().unwrap_or("-"));
    use tracing::Instrument;
    if !options.dry_run {
        context.authorize_obs(Some(desired)).await?;
    }
    super::reconcile_with(
        &context.live,
        &context.ledger,
        desired,
        &context.policy,
        options,
    )
    .instrument(span)
    .await
}

/// `export`: writes the target's live jobs as a repository in `out_dir` (which must be empty)
/// and adopts them.
pub async fn export(
    context: &TargetContext,
    out_dir: &std::path::Path,
) -> Result<super::ExportReport, ApplyError> {
    super::export_with(
        &context.live,
        &context.ledger,
        out_dir,
        &context.environment,
    )
    .await
}

/// `rollback`: re-imports the backups of the apply chosen by `to` (default: the latest).
pub async fn rollback(
    context: &TargetContext,
    to: Option<u64>,
) -> Result<super::RollbackReport, ApplyError> {
    context.authorize_obs(None).await?;
    super::rollback_with(&context.live, &context.ledger, to, &context.options).await
}
