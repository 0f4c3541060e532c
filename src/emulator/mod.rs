//! The local DLI/DLF/IAM/OBS service emulator: a real HTTP service that the official Huawei
//! Cloud SDKs accept, with persisted state, AK/SK and token authentication, project isolation,
//! the services' error shapes, realistic status transitions, and injectable faults.
//!
//! Start it in-process with [`Emulator::start`] (tests, the embedded default) or from the CLI
//! with [`run_from_cli`]. See ARCHITECTURE.md (`### emulator`) for the code map.

mod auth;
pub mod config;
mod dlf;
mod dli;
/// The DLI queue list (its own file beside the Flink job handlers).
#[path = "dli/queues.rs"]
mod dli_queues;
#[doc(hidden)]
pub use dli::export_format::fuzzing as flink_export_fuzzing;
mod faults;
mod iam;
mod introspection;
pub mod obs;
mod s3;
mod server;
mod smn;
pub mod state;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    DEFAULT_BUCKETS, DEFAULT_SAVEPOINT_BUCKET, DEV_ACCESS_KEY, DEV_DOMAIN_NAME, DEV_PROJECT_ID,
    DEV_SECRET_KEY, DEV_USER_NAME, DEV_USER_PASSWORD, EmulatorAuth, EmulatorConfig,
    EmulatorCredential, EmulatorDelays, EmulatorFaults, EmulatorLimits, EmulatorS3, EmulatorUser,
    TargetedFault,
};

/// Why the emulator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("emulator config is not valid: {reason}")]
    InvalidConfig { reason: String },
    #[error("could not read emulator config {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("emulator config {path} is not valid YAML for the emulator: {reason}")]
    ParseConfig { path: PathBuf, reason: String },
    #[error("could not prepare the emulator data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not bind the emulator's {service} endpoint to {address}")]
    Bind {
        service: &'static str,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not load the emulator state")]
    State(#[source] state::StateError),
    #[error("could not set up the S3 endpoint over {path}: {reason}")]
    S3Setup { path: PathBuf, reason: String },
    #[error("{what}")]
    Runtime {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The emulator; see [`Emulator::start`].
pub struct Emulator;

/// A running emulator. Dropping it without [`EmulatorHandle::shutdown`] leaves the servers
/// running until the runtime stops.
pub struct EmulatorHandle {
    shared: Arc<server::Shared>,
    api_address: SocketAddr,
    s3_address: SocketAddr,
    data_dir: PathBuf,
    shutdown_sender: watch::Sender<bool>,
    api_task: JoinHandle<()>,
    s3_task: JoinHandle<()>,
}

impl Emulator {
    /// Binds `config.listen` (DLI, DLF, IAM) and `config.s3_listen` (OBS over S3) on the
    /// caller's tokio runtime, loads the state in `config.data_dir`, creates the configured
    /// buckets, and serves until [`EmulatorHandle::shutdown`].
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        config
            .validate()
            .map_err(|reason| EmulatorError::InvalidConfig { reason })?;
        let data_dir = config.data_dir.clone();
        let obs_root = data_dir.join("obs");
        let temp_dir = data_dir.join("tmp");
        for directory in [&data_dir, &obs_root, &temp_dir] {
            std::fs::create_dir_all(directory).map_err(|source| EmulatorError::DataDir {
                path: directory.clone(),
                source,
            })?;
        }
        let objects = obs::ObjectStore::new(obs_root.clone(), temp_dir.clone());
        for bucket in &config.buckets {
            objects
                .create_bucket(bucket)
                .map_err(|source| EmulatorError::DataDir {
                    path: obs_root.join(bucket),
                    source,
                })?;
        }
        let store = store::StateStore::open(&data_dir, &temp_dir).map_err(EmulatorError::State)?;
        let api_listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    service: "DLI/DLF/IAM",
                    address: config.listen,
                    source,
                })?;
        let s3_listener = TcpListener::bind(config.s3_listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                service: "S3",
                address: config.s3_listen,
                source,
            })?;
        let local_address = |listener: &TcpListener, service, address| {
            listener.local_addr().map_err(|source| EmulatorError::Bind {
                service,
                address,
                source,
            })
        };
        let api_address = local_address(&api_listener, "DLI/DLF/IAM", config.listen)?;
        let s3_address = local_address(&s3_listener, "S3", config.s3_listen)?;
        let s3_service =
            s3::build_service(&obs_root, &config.credentials, &config.s3).map_err(|reason| {
                EmulatorError::S3Setup {
                    path: obs_root.clone(),
                    reason,
                }
            })?;
        let export_key =
            dli::export_format::ExportKey::load_or_create(&data_dir).map_err(|source| {
                EmulatorError::DataDir {
                    path: data_dir.join("export-key"),
                    source,
                }
            })?;
        let shared = Arc::new(server::Shared {
            export_key,
            faults: faults::FaultInjector::new(config.faults.clone()),
            config,
            objects,
            store: Mutex::new(store),
            tokens: Mutex::new(HashMap::new()),
            lockouts: Mutex::new(HashMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            smn: Default::default(),
        });
        let (shutdown_sender, shutdown_receiver) = watch::channel(false);
        let router = axum::Router::new()
            .fallback(server::handle)
            .with_state(Arc::clone(&shared));
        let mut api_shutdown = shutdown_receiver.clone();
        let api_task = tokio::spawn(async move {
            let served = axum::serve(api_listener, router)
                .with_graceful_shutdown(async move {
                    let _ = api_shutdown.changed().await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(error = %error, "The emulator API server stopped with an error.");
            }
        });
        let s3_task = tokio::spawn(s3::serve(s3_listener, s3_service, shutdown_receiver));
        tracing::info!(api = %api_address, s3 = %s3_address, data_dir = %data_dir.display(), "The emulator is listening.");
        Ok(EmulatorHandle {
            shared,
            api_address,
            s3_address,
            data_dir,
            shutdown_sender,
            api_task,
            s3_task,
        })
    }
}

impl EmulatorHandle {
    /// Base URL of the DLI API (`http://127.0.0.1:PORT`).
    pub fn dli_url(&self) -> String {
        format!("http://{}", self.api_address)
    }
    /// Base URL of the DLF API (the same listener as DLI).
    pub fn dlf_url(&self) -> String {
        self.dli_url()
    }
    /// Base URL of the IAM API (the same listener as DLI).
    pub fn iam_url(&self) -> String {
        self.dli_url()
    }
    /// Base URL of the S3-compatible OBS endpoint (path-style).
    pub fn s3_url(&self) -> String {
        format!("http://{}", self.s3_address)
    }
    pub fn api_address(&self) -> SocketAddr {
        self.api_address
    }
    pub fn s3_address(&self) -> SocketAddr {
        self.s3_address
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// The one-line JSON the CLI prints: `{"dli":..,"dlf":..,"iam":..,"s3":..}`.
    pub fn endpoints_json(&self) -> String {
        serde_json::json!({
            "dli": self.dli_url(),
            "dlf": self.dlf_url(),
            "iam": self.iam_url(),
            "s3": self.s3_url(),
        })
        .to_string()
    }

    /// Stops accepting, lets in-flight API calls finish (up to 5 s), drops S3 connections.
    pub async fn shutdown(self) {
        let _ = self.shutdown_sender.send(true);
        let mut api_task = self.api_task;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut api_task)
            .await
            .is_err()
        {
            api_task.abort();
        }
        let _ = self.s3_task.await;
        if let Err(error) = self.shared.compact() {
            // Every change is still in changes.jsonl; the next start folds it in.
            tracing::error!(error = %error, "Compacting the emulator state at shutdown failed.");
        }
        tracing::info!("The emulator stopped.");
    }
}

/// What `dli-gitops emulator` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct EmulatorCliOptions {
    pub listen: String,
    pub s3_listen: String,
    pub data_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub fault_error_rate: Option<f64>,
    pub fault_drop_rate: Option<f64>,
    pub fault_throttle_rate: Option<f64>,
    pub fault_latency_ms: Option<u64>,
    pub fault_seed: Option<u64>,
}

/// Reads a YAML config file (fields as in [`EmulatorConfig`]; all optional).
pub fn load_config_file(path: &Path) -> Result<EmulatorConfig, EmulatorError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|error| EmulatorError::ParseConfig {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// The configuration the CLI options describe: the file (or the default), then the flags.
pub fn config_from_cli(options: &EmulatorCliOptions) -> Result<EmulatorConfig, EmulatorError> {
    let mut config = match &options.config_file {
        Some(path) => load_config_file(path)?,
        None => EmulatorConfig::default(),
    };
    let address = |text: &str, flag: &str| {
        text.parse::<SocketAddr>()
            .map_err(|error| EmulatorError::InvalidConfig {
                reason: format!("{flag} {text:?} is not an IP:port address: {error}"),
            })
    };
    config.listen = address(&options.listen, "--listen")?;
    config.s3_listen = address(&options.s3_listen, "--s3-listen")?;
    config.data_dir = options.data_dir.clone();
    let faults = &mut config.faults;
    if let Some(rate) = options.fault_error_rate {
        faults.error_rate = rate;
    }
    if let Some(rate) = options.fault_drop_rate {
        faults.drop_rate = rate;
    }
    if let Some(rate) = options.fault_throttle_rate {
        faults.throttle_rate = rate;
    }
    if let Some(latency) = options.fault_latency_ms {
        faults.latency_ms = latency;
    }
    if let Some(seed) = options.fault_seed {
        faults.seed = seed;
    }
    config
        .validate()
        .map_err(|reason| EmulatorError::InvalidConfig { reason })?;
    Ok(config)
}

/// `dli-gitops emulator`: starts, prints the endpoints as one JSON line on stdout, and serves
/// until SIGINT or SIGTERM.
pub fn run_from_cli(options: &EmulatorCliOptions) -> Result<(), EmulatorError> {
    let config = config_from_cli(options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| EmulatorError::Runtime {
            what: "could not start the async runtime",
            source,
        })?;
    runtime.block_on(async move {
        let handle = Emulator::start(config).await?;
        {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", handle.endpoints_json());
            let _ = stdout.flush();
        }
        wait_for_signal().await?;
        tracing::info!("A stop signal arrived; the emulator is shutting down.");
        handle.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> Result<(), EmulatorError> {
    let runtime_error = |source| EmulatorError::Runtime {
        what: "could not listen for stop signals",
        source,
    };
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(runtime_error)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(runtime_error),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(runtime_error)
    }
}
