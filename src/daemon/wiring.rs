//! From a config file to a running daemon: the production implementations of the loop's
//! interfaces (sources from `source`, resolution from `desired`, reconcilers from `apply`),
//! secrets read once at start, the listener, and SIGTERM/SIGINT handling.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::apply_adapter::ApplyReconciler;
use super::reconciler::{Resolver, SnapshotSource, SourceFailure};
use super::{
    DEFAULT_PROGRESS_INTERVAL, DaemonError, DaemonParts, SourceParts, TargetParts, TargetPolicy,
    TargetSpec,
};
use crate::config::{Config, ConfigError, Service, SourceConfig, TargetConfig};
use crate::desired::snapshot::RepoSnapshot;
use crate::journal::{Journal, JournalOptions};
use crate::source::{Source, SourceError, jittered};
use crate::status::DaemonMetrics;
use crate::status::control::{Controls, system_clock};

/// What `dli-gitops run` was asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    /// `--log-format` when given explicitly; it wins over the config's `logging.format`.
    pub log_format: Option<crate::config::LogFormat>,
}

/// Why the daemon could not start (or stopped badly).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("loading the daemon config")]
    Config(#[source] ConfigError),
    #[error("setting up source `{source_name}`")]
    Source {
        source_name: String,
        #[source]
        source: SourceError,
    },
    #[error("opening the journal in {state_dir}")]
    Journal {
        state_dir: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("setting up target `{target}`")]
    Target {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the config has no targets; add one under `targets:` (see config.example.yaml)")]
    NoTargets,
    #[error("installing the {signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

/// A configured source behind the loop's interface.
struct ConfiguredSource {
    source: Source,
    location: String,
    webhook: Option<(String, String)>,
}

impl ConfiguredSource {
    fn new(config: &SourceConfig, state_dir: &std::path::Path) -> Result<Self, SourceError> {
        let source = Source::from_config(config, state_dir)?;
        let (location, webhook) = match &source {
            Source::Git { source: git, .. } => (
                format!("{} ({})", git.display_url(), git.git_ref().short_name()),
                config
                    .git
                    .as_ref()
                    .map(|spec| (spec.url.clone(), spec.git_ref().full_name())),
            ),
            Source::Dir { source: dir, .. } => (dir.root().display().to_string(), None),
        };
        Ok(ConfiguredSource {
            source,
            location,
            webhook,
        })
    }
}

impl SnapshotSource for ConfiguredSource {
    fn poll(&self, last_revision: Option<&str>) -> Result<Option<RepoSnapshot>, SourceFailure> {
        self.source
            .poll(last_revision)
            .map_err(|error| SourceFailure {
                message: error_chain(&error),
                retryable: error.is_retryable(),
            })
    }

    fn next_poll_in(&self) -> Option<Duration> {
        match &self.source {
            Source::Git {
                poll_interval,
                poll_jitter,
                ..
            } => Some(jittered(*poll_interval, *poll_jitter)),
            Source::Dir { .. } => None,
        }
    }

    fn watch(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, SourceFailure> {
        match &self.source {
            Source::Dir { source, debounce } => {
                source
                    .watch(*debounce)
                    .map(Some)
                    .map_err(|error| SourceFailure {
                        message: error_chain(&error),
                        retryable: true,
                    })
            }
            Source::Git { .. } => Ok(None),
        }
    }

    fn kind(&self) -> &'static str {
        match &self.source {
            Source::Git { .. } => "git",
            Source::Dir { .. } => "dir",
        }
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn webhook_match(&self) -> Option<(String, String)> {
        self.webhook.clone()
    }
}

use crate::error_chain::error_chain;

/// The job repository resolver: `desired::resolve` for the target's environment.
pub fn desired_resolver() -> Resolver {
    Arc::new(|snapshot: &RepoSnapshot, environment: &str| {
        crate::desired::resolve(snapshot, Some(environment))
            .map_err(|diagnostics| diagnostics.iter().map(ToString::to_string).collect())
    })
}

/// The loop's view of a target's config.
pub fn target_spec(target: &TargetConfig) -> TargetSpec {
    TargetSpec {
        name: target.name.clone(),
        source: target.source.clone(),
        environment: target.environment_name().to_string(),
        policy: TargetPolicy {
            auto_sync: target.policy.auto_sync,
            self_heal: target.policy.self_heal,
            prune: target.policy.prune,
            resync_interval: target.policy.resync_interval.get(),
            sync_timeout: target.policy.sync_timeout.get(),
            promote_from: target.promote_from.clone(),
        },
    }
}

/// The sources the targets use (unused ones are not polled), with their webhook secrets.
fn source_parts(config: &Config) -> Result<Vec<SourceParts>, RunError> {
    let mut parts = Vec::new();
    for (name, source_config) in &config.sources {
        if !config.targets.iter().any(|target| &target.source == name) {
            tracing::info!(source = %name, "Source is not used by any target; it is not polled.");
            continue;
        }
        let source = ConfiguredSource::new(source_config, &config.state_dir).map_err(|source| {
            RunError::Source {
                source_name: name.clone(),
                source,
            }
        })?;
        let webhook_secret = match source_config.webhook_secret() {
            Some(secret) => match Config::resolve_secret(&secret) {
                Ok(secret) => Some(secret.into_bytes()),
                Err(error) => {
                    tracing::warn!(
                        source = %name,
                        error = %error,
                        "The webhook secret could not be read; webhooks for this source are refused until it is provided and the daemon restarted (polling still works)."
                    );
                    None
                }
            },
            None => None,
        };
        if webhook_secret.is_some() && source.webhook.is_none() {
            tracing::warn!(source = %name, "A webhook secret is set on a directory source; webhooks only apply to git sources.");
        }
        parts.push(SourceParts {
            name: name.clone(),
            source: Arc::new(source),
            webhook_secret,
        });
    }
    Ok(parts)
}

/// Everything but the reconcilers, which `run` adds from `apply`.
pub fn base_parts(config: &Config) -> Result<DaemonParts, RunError> {
    if config.targets.is_empty() {
        return Err(RunError::NoTargets);
    }
    let api_token = match config.api_token() {
        Some(secret) => match Config::resolve_secret(&secret) {
            Ok(token) => Some(token.into_bytes()),
            // A missing variable or file disables the endpoints (the safe side) rather than
            // stopping the daemon: the quick start sets no token.
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    "The API token could not be read; manual syncs over HTTP are disabled until it is provided and the daemon restarted."
                );
                None
            }
        },
        None => {
            tracing::info!("No API token is configured; manual syncs over HTTP are disabled.");
            None
        }
    };
    Ok(DaemonParts {
        targets: Vec::new(),
        sources: source_parts(config)?,
        resolver: desired_resolver(),
        suspended: config.suspend == crate::config::Suspend::Always,
        api_token,
        metrics: Arc::new(DaemonMetrics::new()),
        progress_interval: DEFAULT_PROGRESS_INTERVAL,
        shutdown_grace: config.shutdown_grace.get(),
        promotion: None,
        controls: None,
    })
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, RunError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(|source| RunError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|source| RunError::Signal {
            signal: "SIGINT",
            source,
        })?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "Signal received."),
                _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "Signal received."),
            }
            // A second signal (Ctrl-C twice at a terminal) stops waiting for the actions in
            // flight: like a crash, which the journal is built for, the next start resolves them.
            tokio::spawn(async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                tracing::warn!(
                    "Second signal: exiting now without waiting for the actions in flight; the next start resolves their journal intents first and finishes the work."
                );
                std::process::exit(crate::pass::interrupt::ABORT_EXIT_CODE);
            });
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "Signal received.");
        })
    }
}

/// Binds the configured listen address.
pub async fn bind(config: &Config) -> Result<TcpListener, RunError> {
    TcpListener::bind(config.listen).await.map_err(|source| {
        RunError::Daemon(DaemonError::Bind {
            address: config.listen.to_string(),
            source,
        })
    })
}

/// `dli-gitops run`: loads the config, builds every source and target, serves until SIGTERM or
/// SIGINT, then shuts down gracefully. Logging is the caller's (see [`run_blocking`]).
pub async fn run(options: &RunOptions) -> Result<(), RunError> {
    let config = Config::load(&options.config).map_err(RunError::Config)?;
    run_loaded(options, config).await
}

async fn run_loaded(options: &RunOptions, config: Config) -> Result<(), RunError> {
    let mut parts = base_parts(&config)?;
    let (targets, promotion, controls) = target_parts(&config, &parts.metrics).await?;
    parts.targets = targets;
    parts.promotion = promotion;
    parts.controls = Some(controls);
    let listener = bind(&config).await?;
    let shutdown = shutdown_signal().await?;
    tracing::info!(
        config = %options.config.display(),
        listen = %config.listen,
        targets = parts.targets.len(),
        sources = parts.sources.len(),
        suspend = %config.suspend,
        "Starting the daemon."
    );
    super::serve(parts, listener, shutdown).await?;
    Ok(())
}

/// [`run`] for the CLI: reads the config first, sets logging up from it (the explicit
/// `--log-format` and `RUST_LOG` win, see [`super::logging::decide`]), then runs the daemon on
/// its own multi-threaded runtime. A config that does not load is returned before anything is
/// logged; the CLI prints it.
pub fn run_blocking(options: &RunOptions) -> Result<(), RunError> {
    let config = Config::load(&options.config).map_err(RunError::Config)?;
    let rust_log = std::env::var("RUST_LOG").ok();
    let settings = super::logging::decide(
        options.log_format,
        Some(&config.logging),
        rust_log.as_deref(),
    );
    super::logging::install(&settings);
    tracing::info!(
        format = ?settings.format,
        format_from = settings.format_from.as_str(),
        filter = %settings.filter,
        filter_from = settings.filter_from.as_str(),
        "Logging set up."
    );
    crate::memory::configure_allocator();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dli-gitops")
        // A busy moment (many journal appends at once) starts many blocking threads; each
        // keeps its stack and allocator cache until it exits. They exit after 2 s idle, not 10.
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()
        .map_err(|source| RunError::Signal {
            signal: "async runtime",
            source,
        })?;
    runtime.block_on(run_loaded(options, config))
}

/// One reconciler per target, all sharing one journal and, for embedded endpoints, one
/// in-process emulator (two must not share `state_dir/emulator/`).
async fn target_parts(
    config: &Config,
    metrics: &Arc<DaemonMetrics>,
) -> Result<
    (
        Vec<TargetParts>,
        Option<Arc<crate::promotion::PromotionHook>>,
        Arc<Controls>,
    ),
    RunError,
> {
    let state_dir = config.state_dir.clone();
    let directory = state_dir.clone();
    let (journal, recovery) =
        tokio::task::spawn_blocking(move || Journal::open(&directory, JournalOptions::default()))
            .await
            .map_err(|error| RunError::Journal {
                state_dir: state_dir.clone(),
                source: Box::new(error),
            })?
            .map_err(|error| RunError::Journal {
                state_dir: state_dir.clone(),
                source: Box::new(error),
            })?;
    tracing::info!(state_dir = %state_dir.display(), %recovery, "Journal opened.");
    crate::pass::warn_about_unknown_targets(config, &journal.state());
    let counted = journal.clone();
    metrics.set_journal_records(Box::new(move || counted.appended_by_kind()));
    let services = [Service::Dli, Service::Dlf, Service::Obs, Service::Iam];
    let embedded = config.targets.iter().find(|target| {
        services
            .iter()
            .any(|service| target.endpoint(*service).is_embedded())
    });
    let emulator = match embedded {
        Some(target) => {
            let handle = crate::apply::start_embedded_emulator(config)
                .await
                .map_err(|problem| RunError::Target {
                    target: target.name.clone(),
                    source: problem.into(),
                })?;
            tracing::info!(
                dli = %handle.dli_url(),
                obs = %handle.s3_url(),
                "Embedded emulator started."
            );
            Some(handle)
        }
        None => None,
    };
    // One set of action slots for every target: the daemon-wide cap, shared fairly.
    let slots = crate::pass::ActionSlots::new(config.max_concurrent_actions.get());
    // One copy of the configuration for every target and the promotion pipeline.
    let shared_config = Arc::new(config.clone());
    let mut parts = Vec::new();
    for target in &config.targets {
        let reconciler = ApplyReconciler::open(
            &shared_config,
            &target.name,
            journal.clone(),
            emulator.clone(),
            Some(slots.clone()),
        )
        .await
        .map_err(|error| RunError::Target {
            target: target.name.clone(),
            source: Box::new(error),
        })?;
        parts.push(TargetParts {
            spec: target_spec(target),
            reconciler: Arc::new(reconciler),
        });
    }
    // Suspend and change windows: run-time suspends are read back from the journal.
    let controls = Controls::from_config(config, Some(journal.clone()), system_clock()).map_err(
        |problem| RunError::Target {
            target: String::new(),
            source: problem.into(),
        },
    )?;
    // Notifications over the same journal (states and due deliveries are read back).
    let notifier = crate::notify::Notifier::from_config(
        config,
        Some(journal.clone()),
        crate::notify::RetryPolicy::default(),
    )
    .map_err(|error| RunError::Target {
        target: String::new(),
        source: Box::new(error),
    })?;
    if let Some(notifier) = &notifier {
        tracing::info!(sinks = %notifier.sink_names().join(", "), "Notifications on.");
    }
    controls.set_notifier(notifier);
    // Promotion: the pipeline over the same journal.
    let promotion =
        crate::promotion::PromotionHook::new(shared_config, journal).map_err(|error| {
            RunError::Target {
                target: config
                    .targets
                    .iter()
                    .find(|target| target.promote_from.is_some())
                    .map(|target| target.name.clone())
                    .unwrap_or_default(),
                source: Box::new(error),
            }
        })?;
    Ok((parts, promotion, Arc::new(controls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_config() -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        Config::load(&path).expect("config.example.yaml loads")
    }

    #[test]
    fn the_example_config_builds_its_source_and_resolves_the_example_jobs() {
        let config = example_config();
        let parts = base_parts(&config).expect("the example config builds");
        assert_eq!(parts.sources.len(), 1);
        let source = &parts.sources[0];
        assert_eq!(source.name, "examples");
        assert_eq!(source.source.kind(), "dir");
        assert!(
            source.source.next_poll_in().is_none(),
            "a directory is watched, not polled"
        );
        assert!(source.source.webhook_match().is_none());

        let snapshot = source
            .source
            .poll(None)
            .expect("the example directory reads")
            .expect("a first poll always has a snapshot");
        assert!(snapshot.revision.starts_with("sha256:"));
        assert!(
            source
                .source
                .poll(Some(&snapshot.revision))
                .unwrap()
                .is_none(),
            "an unchanged directory is not a new revision"
        );
        let target = target_spec(&config.targets[0]);
        assert_eq!(target.environment, "dev");
        let desired = (parts.resolver)(&snapshot, &target.environment)
            .expect("the example jobs resolve for dev");
        assert!(
            desired
                .flink
                .iter()
                .any(|job| job.name == "clickstream-agg")
        );

        let mut broken = snapshot.clone();
        broken.files.insert(
            "flink/broken.yaml".into(),
            crate::desired::snapshot::RepoFile::Data(
                b"kind: FlinkSqlJob\nname: x\ncu_nmber: 2\n".to_vec(),
            ),
        );
        let problems = (parts.resolver)(&broken, "dev").expect_err("an unknown field is refused");
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("flink/broken.yaml:")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_token_variable_that_is_not_set_disables_mutations_instead_of_failing() {
        let mut config = example_config();
        config.api_token_env = Some("DLI_GITOPS_TEST_TOKEN_THAT_IS_NEVER_SET".into());
        let parts = base_parts(&config).expect("builds without the token");
        assert!(parts.api_token.is_none());
        config.targets.clear();
        assert!(matches!(base_parts(&config), Err(RunError::NoTargets)));
    }
}
