//! The local DLI/DLF/IAM/OBS service emulator: a real HTTP service that the official Huawei
//! Cloud SDKs accept, with persisted state, AK/SK and token authentication, project isolation,
//! the services' error shapes, realistic status transitions, and injectable faults.
//!
//! Start it in-process with [`Emulator::start`] (tests, the embedded default) or from the CLI
//! with [`run_from_cli`]. The code map and invariants follow.
//!
//! # Design and invariants
//!
//! A real local DLI/DLF/IAM/OBS service. One axum listener serves DLI, DLF, IAM and `/_emulator`;
//! a second serves S3 (`s3s` + `s3s-fs`) over `<data>/obs`.
//!
//! | file | what it is for |
//! |---|---|
//! | `mod.rs` | `Emulator::start(EmulatorConfig) -> EmulatorHandle`, CLI entry (`run_from_cli`), errors |
//! | `config.rs` | `EmulatorConfig` (YAML), dev account consts, delays, faults (random, `late`, `lost_answer`, `forbidden`), limits, S3 addressing (`s3.domain`, `s3.refuse_path_style`), declared DLI `queues` |
//! | `server.rs` | the single handler: route table (`Operation`), body limit, faults, auth, request ids, error shapes; `Shared::mutate` |
//! | `auth.rs` | SDK-HMAC-SHA256 verification via `cloud::signer` (15-minute skew), `X-Auth-Token`, AK lockout after repeated bad signatures |
//! | `iam.rs` | password-grant tokens, `/v3/projects` |
//! | `dli/` | Flink job handlers: `mod.rs` (routing, rendering, list/show/create/update/delete), `lifecycle.rs` (run, stop, savepoints), `transfer.rs` (export/import, obs-authorize), `export_format.rs` (the emulator's private, sealed export layout: import accepts only its own exports), `tags.rs` (v3 tag API), `queues.rs` (the queue list, `ListQueues`; declared in `emulator/mod.rs` as `dli_queues`) |
//! | `dlf.rs` | DLF import tasks (replacements; the CreateJob checks; WARNING for an unused resource replacement), list (jobType default BATCH)/show, delete, exports, system tasks, schedule start/stop (a scheduled job refuses import and delete) |
//! | `obs.rs` | object paths (`bucket/key`, `obs://`), safe on-disk object store, atomic file writes |
//! | `s3.rs` | the S3 endpoint (SimpleAuth with every credential); virtual-hosted buckets under `s3.domain` (`Host: {bucket}.{domain}`, an `s3s::host::S3Host`); with `s3.refuse_path_style` a gate in front answers a request naming its bucket in the path 403 `VirtualHostDomainRequired` (OBS's code, obs_04_0115) before authentication |
//! | `state.rs` | the state model: job records, runs, DLF jobs and tasks, lazy status transitions, `state.json` load/save |
//! | `store.rs` | durability: `state.json` snapshot + `changes.jsonl` change log (per-call diffs, fsync'd), replay and compaction |
//! | `faults.rs` | seeded fault injection |
//! | `introspection.rs` | `/_emulator/v1/stats`, `/_emulator/v1/{pid}/jobs/{id}/runs`, `/_emulator/v1/smn/messages` |
//! | `smn.rs` | SMN v2 `PublishMessage` (`POST /v2/{pid}/notifications/topics/{topic_urn}/publish`), checked like the SDK model, messages kept in memory (see the `notify` module docs; sources in docs/service-fidelity.md, "SMN") |
//!
//! Invariants:
//! * A call changes state only through `Shared::mutate`, which runs the handler on a clone of the
//!   caller's project and commits it only after the handler succeeded and the call's change record
//!   (the upserted/removed records) was appended to `changes.jsonl` and fsync'd: a failed call leaves
//!   no partial change. OBS side effects (savepoint files, export zips) are written before the commit
//!   and may be orphaned by a failed save, never the reverse.
//! * `changes.jsonl` is folded into `state.json` (temp + fsync + rename + dir fsync) every 500 records,
//!   at start and at a clean shutdown; on start a torn last line is dropped (it was never answered),
//!   any other bad line refuses the start. Per-call cost is O(change), not O(state).
//! * Status transitions are timestamps (`pending`), applied lazily on each access and logged like any
//!   change when applied (so a DLF task completion is never applied twice after a crash); there are
//!   no timers, so a restart resumes where the clock says.
//! * Random faults (errors, throttling, drops, latency) are decided before auth and before any
//!   state change; `/_emulator` is never faulted or counted. Two targeted faults model what those
//!   cannot: `late` holds a call of one operation, then applies it (late delivery: the caller has
//!   timed out and may have sent again), and `lost_answer` applies a call, then drops the
//!   connection. Every handler runs on a task of its own, so a caller that gives up never cancels
//!   a call half-way, as with a real service.
//! * Deterministic job failures (`faults.rs` `run_failure`): `faults.job_failures: [{job, after_ms}]`
//!   or a marker in a SQL job's `sql_body` (`dli-emulator:fail-on-start`,
//!   `dli-emulator:fail-after-ms=N`) makes every run of that job (or that definition) end
//!   `job_submit_fail` after the submit delay (`after_ms: 0`), or reach `job_running` and end
//!   `job_running_exception` `N` ms later; the status description names the fault. Scheduled as
//!   ordinary lazy transitions (`pending`), so a restart keeps the timing.
//! * `faults.forbidden` (operation names): a call of such an operation is answered HTTP 403 after
//!   authentication and applies nothing, as when an IAM policy lacks the action. DLI answers
//!   `DLI.0003` (dli_02_0056: permission check failed); DLF documents no such code, so the emulator
//!   sends its own `DLF.0003`.
//! * `ListFlinkJobs` adds `job_config` to each entry only with `show_detail=true` (anything but
//!   `true`/`false` is refused). `ListResourcesByTags` (`POST
//!   /v3/{pid}/dli_flink_job/resource-instances/filter`) answers `{resources: [{resource_id (a
//!   string), resource_name, resource_detail: null, tags: [{key, value}]}], total_count}` in job-id
//!   order, every job when nothing is filtered; it refuses (400 `DLI.0001`) a missing body, unknown
//!   body keys, more than 20 tags, a tag without `values` or with an empty or repeated key, a
//!   `matches` key other than `resource_name` (a prefix match), and `limit` outside 1–1000 or a
//!   negative `offset` (dli_02_0399; the 1000 maximum is the TMS filters' of other services).
//! * The queue list (`GET /v1.0/{pid}/queues`, `ListQueues`) lists the config's `queues` (default:
//!   `default`, `dev_flink`, `prod_flink`, `flink_queue`, `q1`, all `general`, 16 CU) with the SDK's
//!   `QueueDetails` fields. Strict as the SDK model: `queue_type` is `sql`/`general`/`all` and
//!   defaults to `sql`; `page-size`/`current-page` positive; `order` one of the four documented;
//!   `with-priv`/`with-charge-info` booleans. Jobs are not (yet) refused for a queue the config does
//!   not declare: the declared set only feeds the list, so existing tests keep their queue names.
//! * The S3 endpoint answers a request naming a bucket that does not exist 404 `NoSuchBucket`
//!   (obs_04_0115) before the file-system backend sees it (which would create the directory on a
//!   PUT); creating a bucket (`PUT /{bucket}`) still works.
//! * Project isolation: the path's project must be the caller's (AK/SK credential or token), else
//!   HTTP 403 `APIG.0302`; job ids are global, so another project's id is a `DLI.16001`.
//! * obs-authorize refuses a body with unknown fields or without `obs_buckets`, an empty list, a
//!   malformed bucket name and a bucket that does not exist (HTTP 400 `DLI.0001`).
//! * Never panics on input: every body is size-limited, parsed with serde into typed structs, and
//!   zips go through `bundle`'s safe reader.
//!
//! What the emulator follows field by field, and where each rule comes from: docs/service-fidelity.md.

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
