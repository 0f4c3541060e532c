//! The daemon: one process serving several targets. Each configured source gets a task that
//! fetches it once per cycle and publishes new revisions; each target gets a task that turns
//! coalesced triggers into one reconcile pass at a time; the HTTP server (`crate::server`)
//! reports status and accepts webhooks and manual syncs. Targets run concurrently.
//!
//! # Design and invariants
//!
//! One process, several targets. `daemon::serve(DaemonParts, TcpListener, shutdown)` starts one task
//! per source that targets use (`sources.rs`), one task per target (`worker.rs`), and the HTTP
//! server (`server::serve`); `daemon::run` builds the parts from the config (`wiring.rs`) and
//! serves until SIGTERM/SIGINT.
//!
//! | file | what it holds |
//! |---|---|
//! | `daemon/mod.rs` | `serve`, `DaemonParts`, `TargetSpec`/`TargetPolicy` (the `Stop` signal is `pass::Stop`) |
//! | `daemon/reconciler.rs` | the seams: `TargetReconciler` (one pass: observe, plan, maybe apply), `SnapshotSource`, `Resolver` |
//! | `daemon/sources.rs` | the source loop: poll (git, jittered) or watch (directory), publish each new snapshot once on a `watch` channel, wake the targets that read it; `/api/v1/hooks/git` wakes it at once |
//! | `daemon/worker.rs` | the target loop: coalesced triggers → validate a new revision → policy → one pass → status and metrics → next wake-up |
//! | `memory.rs` (crate root) | the heap at rest: the allocator: jemalloc for the Rust heap (registered in `lib.rs`), `configure_allocator` (its background thread; glibc `M_ARENA_MAX` 1 for the C libraries unless the operator set `MALLOC_ARENA_MAX`) and `release_after_pass` (jemalloc purge and `malloc_trim` after each pass; the counters logged at debug); no-ops off Linux |
//! | `daemon/logging.rs` | `decide(flag, config, RUST_LOG)` → format and filter (flag > config for the format, valid non-empty `RUST_LOG` > config for the filter, then text/`info`), `install`; `run_blocking` calls it after loading the config, every other command through `install_for_cli` |
//! | `daemon/wiring.rs` | config → parts: `source::Source` behind `SnapshotSource`, `desired::resolve` as the resolver, secrets, signals |
//! | `daemon/apply_adapter.rs` | `pass::run_pass` (which runs `apply::reconcile_with`) behind `TargetReconciler`, through `StoppingLedger` (`pass/stopping.rs`), which announces no new action after shutdown begins but lets an action already under way write its own records (an intent naming it in `detail.part_of`, or whose id extends its id: the stop savepoint); `TargetContext::authorize_obs` before a pass that acts; one embedded emulator shared by all embedded targets. Status uses the jobs `ApplyReport::observed` carries, so a pass observes once, twice when it changed something (the re-plan after the actions) |
//! | `pass/fairness.rs` | `ActionSlots`: the daemon-wide cap on concurrent actions (`max_concurrent_actions`, default 256); a freed slot goes to the waiting target holding the fewest (max-min fair), FIFO among equals; cancel-safe. `StoppingLedger::sharing` takes a slot before an action's intent and gives it back with its outcome (or when the pass is dropped); steps of a started action (`part_of`) take none |
//! | `pass/interrupt.rs`, `pass/history.rs` | used by the daemon and the CLI: `Stop`, `finish_then_abort_on_interrupt` (for the `apply` command, the first SIGINT/SIGTERM triggers a `Stop`, the second exits 130); `adopt_without_history` (a target the journal has no history of gets its live managed jobs' restores recorded as done; see the `journal` module docs, "Targets without history") |
//!
//! The pass decision (`worker.rs`): a pass *applies* when there is a valid revision, the daemon is
//! not suspended (and `Controls::gate` lets it: no suspend of the target, no change window holding it), a `promote_from` target runs under a promotion pipeline (its valid revision is the promoted one; without a `PromotionHook` it is held), and either the trigger was a manual sync, or `auto_sync` is on and either the
//! revision is not yet the applied one or `self_heal` is on or a job says `drift: revert`. Otherwise it observes and plans only
//! (report). The applied revision is the last one for which a pass ended with nothing left to do
//! and no failed action; it is journaled (`RevisionApplied`) and read back at start. Next wake-up:
//! the resync interval; sooner (3 s) while jobs are moving; after failures, 2 s doubling to 5 min.
//!
//! Invariants:
//! * One pass at a time per target (one task each); targets never wait for each other, except for
//!   a slot of the daemon-wide action cap, which is shared max-min fairly, so a target waits at
//!   most for the next slot to free, never for another target's queue (`tests/fairness.rs`: one
//!   account at 100% faults and one slow account beside healthy ones under a cap of 2).
//! * Nothing on a pass's path copies the whole journal state (`Journal::state()` clones every
//!   target's jobs with their cached observations, about 54 MiB at 10,000 jobs, and made each pass
//!   cost O(all jobs of all targets)); it reads under `Journal::state_guard()` instead.
//! * A revision that does not resolve is never handed to a reconciler; the previous valid one stays
//!   desired and `rejected_revision` lists every problem.
//! * A source is polled by one task however many targets read it; each snapshot is published once.
//!   (Two *sources* naming the same repository share its mirror, but each fetches its own ref.)
//! * Shutdown: no pass starts, no new action is announced (the ledger refuses the intent), every
//!   action already under way runs to its outcome — an upgrade that stopped a job writes it, imports
//!   the stop savepoint and starts it — then the process logs `Shutdown complete …` and exits 0.
//!   The executor collects every started action before returning the first error, so a refused
//!   intent of one action never drops another mid-flight. After `shutdown_grace` (config, default
//!   `DEFAULT_SHUTDOWN_GRACE` = 45 s; Kubernetes' `terminationGracePeriodSeconds` and systemd's
//!   `TimeoutStopSec` in `deploy/` are longer) a pass still running is abandoned and logged
//!   (`Shutdown incomplete …`, naming the targets); its intent is resolved by the next start, whose
//!   first pass logs and reports in the operation message which actions it resolved
//!   (`PassReport::resolved`), and the planner then finishes the work from what is live.
//!   A second SIGTERM/SIGINT exits at once with status 130 (`wiring::shutdown_signal`), as a
//!   crash would; the next start resolves the intents.
//! * `apply` (the command) uses the same `StoppingLedger` with `finish_then_abort_on_interrupt`:
//!   the first Ctrl-C finishes the actions in flight, the second aborts.
//! * A pass over a target with nothing to do makes one observation: one list call per 100 Flink
//!   jobs (and, when DLF is in scope, one DLF listing per job type), no detail reads for unchanged jobs;
//!   `tests/daemon/` checks it against the emulator's `/_emulator/v1/stats`.
//!
//! The status model, triggers, metrics and operating controls the loops write are in `status`; the HTTP
//! server that reads them is `server`. Scaling to many targets and the design for more than one replica:
//! docs/scaling.md.

mod apply_adapter;
pub mod logging;
mod reconciler;
mod sources;
mod wiring;
mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

pub use reconciler::{
    ActionOutcome, PassError, PassReport, PassRequest, Resolver, SnapshotSource, SourceFailure,
    TargetReconciler,
};
pub use sources::SourceState;
pub use wiring::{
    RunError, RunOptions, base_parts, desired_resolver, run, run_blocking, target_spec,
};

use sources::SourceDriver;
use worker::{Memory, Worker};

use crate::pass::Stop;
use crate::server::{ServerState, WebhookRoute};
use crate::status::control::{self, Controls};
use crate::status::{
    DaemonMetrics, ErrorInfo, PolicyView, SourceStatus, StatusBoard, SyncStatus, TargetStatus,
    Trigger, TriggerKind,
};

/// How soon a target is looked at again while its jobs are moving.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(3);

/// One target, as the loop needs it.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    /// The name of the source it reads.
    pub source: String,
    /// `environments/<environment>.yaml`.
    pub environment: String,
    pub policy: TargetPolicy,
}

/// When a target may change things.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    /// Apply new revisions automatically; off = report only.
    pub auto_sync: bool,
    /// Also correct drift while the revision is unchanged.
    pub self_heal: bool,
    /// Shown in status (the planner enforces it).
    pub prune: bool,
    pub resync_interval: Duration,
    pub sync_timeout: Duration,
    /// The upstream target this one is promoted from. It follows the revision promoted to it
    /// (`DaemonParts::promotion`); without a promotion hook it is held: observed and reported,
    /// never changed, because following the branch head would skip the promotion gate.
    pub promote_from: Option<String>,
}

/// A target with its reconciler.
pub struct TargetParts {
    pub spec: TargetSpec,
    pub reconciler: Arc<dyn TargetReconciler>,
}

/// A source with its webhook secret.
pub struct SourceParts {
    pub name: String,
    pub source: Arc<dyn SnapshotSource>,
    /// The webhook secret (HMAC key or GitLab token), when webhooks are enabled for it.
    pub webhook_secret: Option<Vec<u8>>,
}

/// Everything the daemon runs, built from the config (`wiring`) or by tests.
pub struct DaemonParts {
    pub targets: Vec<TargetParts>,
    pub sources: Vec<SourceParts>,
    pub resolver: Resolver,
    /// Global suspend: observe and report, never change anything.
    pub suspended: bool,
    /// The bearer token for mutating endpoints; `None` disables them.
    pub api_token: Option<Vec<u8>>,
    pub metrics: Arc<DaemonMetrics>,
    pub progress_interval: Duration,
    pub shutdown_grace: Duration,
    /// Promotion between targets; `None` when no target has `promote_from`.
    pub promotion: Option<Arc<crate::promotion::PromotionHook>>,
    /// Suspend, change windows and break-glass overrides; `None`: no windows, no run-time
    /// suspends (each target is added with the global `suspended`).
    pub controls: Option<Arc<Controls>>,
}

/// Why the daemon could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("target `{target}` reads source `{source_name}`, which is not configured")]
    UnknownSource { target: String, source_name: String },
    #[error("two targets are named `{target}`")]
    DuplicateTarget { target: String },
    #[error("serving HTTP on {address}")]
    Serve {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the HTTP listener to {address}; is another daemon running there?")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon on `listener` until `shutdown` resolves, then stops: no new pass starts,
/// passes in flight finish the call they are in and journal it (up to `shutdown_grace`), and
/// the server drains. The steps: start sources, start workers, start promotion, start the
/// server, wait, drain.
pub async fn serve(
    parts: DaemonParts,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let address = listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_else(|_| "the listener".to_string());
    let stop = Stop::new();
    let board = Arc::new(StatusBoard::default());
    let metrics = parts.metrics.clone();
    let controls = controls_for(&parts);
    let mut channels = source_channels(&parts.sources, &board);
    let (workers, triggers, mut source_targets) =
        prepare_workers(&parts, &channels, &board, &controls, &stop)?;
    let (webhooks, source_tasks) = start_sources(
        parts.sources,
        &mut channels,
        &mut source_targets,
        &board,
        &metrics,
        &stop,
    );
    let worker_tasks = start_workers(workers, &board);
    if let Some(hook) = &parts.promotion {
        start_promotion(hook, &triggers, &metrics, &controls, &stop);
    }
    let server_state = Arc::new(ServerState {
        board: board.clone(),
        metrics: metrics.clone(),
        triggers,
        api_token: parts.api_token,
        webhooks,
        suspended: parts.suspended,
        promotion: parts.promotion.clone(),
        controls: controls.clone(),
    });
    let server_stop = stop.clone();
    let server = tokio::spawn(crate::server::serve(listener, server_state, async move {
        server_stop.wait().await
    }));
    tracing::info!(%address, "dli-gitops daemon started.");

    let watcher_stop = stop.clone();
    tokio::select! {
        _ = shutdown => {
            tracing::info!("Shutdown requested; finishing the calls in flight.");
        }
        _ = watcher_stop.wait() => {}
    }
    stop.trigger();
    drain(
        parts.shutdown_grace,
        worker_tasks,
        source_tasks,
        server,
        &address,
    )
    .await
}

/// The controls the loops consult (a fresh set without windows when none were given), with
/// every target known to them and the notifications a previous run left due resumed.
fn controls_for(parts: &DaemonParts) -> Arc<Controls> {
    let controls = parts.controls.clone().unwrap_or_else(|| {
        Arc::new(Controls::new(
            control::system_clock(),
            None,
            crate::config::Suspend::Off,
        ))
    });
    if let Some(notifier) = controls.notifier() {
        // Deliveries a previous run journaled as due and did not finish.
        notifier.resume_pending();
    }
    for target in &parts.targets {
        if !controls.knows(&target.spec.name) {
            controls.add_target(&target.spec.name, crate::config::Suspend::Off, Vec::new());
        }
    }
    controls
}

/// Per source: the channel its targets read snapshots from and the webhook's "fetch now"
/// signal; each source is put on the board.
type SourceChannels = BTreeMap<String, (watch::Sender<SourceState>, Arc<Notify>)>;

fn source_channels(sources: &[SourceParts], board: &StatusBoard) -> SourceChannels {
    let mut channels = SourceChannels::new();
    for source in sources {
        channels.insert(
            source.name.clone(),
            (
                watch::channel(SourceState::default()).0,
                Arc::new(Notify::new()),
            ),
        );
        board.add_source(SourceStatus {
            name: source.name.clone(),
            kind: source.source.kind().to_string(),
            location: source.source.location(),
            revision: None,
            last_poll: None,
            last_change: None,
            last_error: None,
        });
    }
    channels
}

/// The workers, one per target, with each target's trigger (by target) and the triggers of
/// the targets of each source (by source); each target is put on the board. Fails on a
/// duplicate target name or a target whose source is not configured.
#[allow(clippy::type_complexity)]
fn prepare_workers(
    parts: &DaemonParts,
    channels: &SourceChannels,
    board: &Arc<StatusBoard>,
    controls: &Arc<Controls>,
    stop: &Stop,
) -> Result<
    (
        Vec<Worker>,
        BTreeMap<String, Arc<Trigger>>,
        BTreeMap<String, Vec<Arc<Trigger>>>,
    ),
    DaemonError,
> {
    let mut triggers: BTreeMap<String, Arc<Trigger>> = BTreeMap::new();
    let mut source_targets: BTreeMap<String, Vec<Arc<Trigger>>> = BTreeMap::new();
    let mut workers = Vec::new();
    for target in &parts.targets {
        let name = target.spec.name.clone();
        if triggers.contains_key(&name) {
            return Err(DaemonError::DuplicateTarget { target: name });
        }
        let Some((sender, _)) = channels.get(&target.spec.source) else {
            return Err(DaemonError::UnknownSource {
                target: name,
                source_name: target.spec.source.clone(),
            });
        };
        let trigger = Arc::new(Trigger::new());
        triggers.insert(name.clone(), trigger.clone());
        source_targets
            .entry(target.spec.source.clone())
            .or_default()
            .push(trigger.clone());
        let policy = &target.spec.policy;
        let mut status = TargetStatus::new(
            &name,
            &target.spec.source,
            &target.spec.environment,
            PolicyView {
                auto_sync: policy.auto_sync,
                self_heal: policy.self_heal,
                prune: policy.prune,
                resync_interval_seconds: policy.resync_interval.as_secs(),
                suspended: parts.suspended,
                promote_from: policy.promote_from.clone(),
            },
        );
        status.sync.applied_revision = target.reconciler.applied_revision();
        board.add_target(status);
        if let Some(request_metrics) = target.reconciler.request_metrics() {
            parts.metrics.add_request_metrics(&name, request_metrics);
        }
        workers.push(Worker {
            spec: target.spec.clone(),
            reconciler: target.reconciler.clone(),
            resolver: parts.resolver.clone(),
            source: sender.subscribe(),
            trigger,
            board: board.clone(),
            metrics: parts.metrics.clone(),
            stop: stop.clone(),
            suspended: parts.suspended,
            progress_interval: parts.progress_interval,
            memory: Memory::default(),
            promotion: parts.promotion.clone(),
            controls: controls.clone(),
        });
    }
    Ok((workers, triggers, source_targets))
}

/// Starts one task per source (it polls or watches, publishes revisions and wakes its
/// targets); returns the webhook routes of the sources that take webhooks, and the tasks.
fn start_sources(
    sources: Vec<SourceParts>,
    channels: &mut SourceChannels,
    source_targets: &mut BTreeMap<String, Vec<Arc<Trigger>>>,
    board: &Arc<StatusBoard>,
    metrics: &Arc<DaemonMetrics>,
    stop: &Stop,
) -> (Vec<WebhookRoute>, Vec<tokio::task::JoinHandle<()>>) {
    let mut webhooks = Vec::new();
    let mut source_tasks = Vec::new();
    for source in sources {
        let Some((sender, fetch_now)) = channels.remove(&source.name) else {
            continue;
        };
        if let (Some(secret), Some((url, git_ref))) =
            (source.webhook_secret, source.source.webhook_match())
        {
            webhooks.push(WebhookRoute {
                source: source.name.clone(),
                url,
                git_ref,
                secret,
                fetch_now: fetch_now.clone(),
            });
        }
        let driver = SourceDriver {
            targets: source_targets.remove(&source.name).unwrap_or_default(),
            name: source.name,
            source: source.source,
            state: sender,
            fetch_now,
            board: board.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
        source_tasks.push(tokio::spawn(driver.run()));
    }
    (webhooks, source_tasks)
}

/// Starts one task per target. A panic in a target's loop is a bug: it is logged and shown on
/// the target's status rather than passing silently while the rest keeps running.
fn start_workers(
    workers: Vec<Worker>,
    board: &Arc<StatusBoard>,
) -> Vec<(String, tokio::task::JoinHandle<()>)> {
    workers
        .into_iter()
        .map(|worker| {
            let name = worker.spec.name.clone();
            let task_name = name.clone();
            let board = board.clone();
            let task = tokio::spawn(async move {
                if let Err(error) = tokio::spawn(worker.run()).await
                    && error.is_panic()
                {
                    tracing::error!(target_name = %name, "The target loop panicked; the target is not reconciled until the daemon restarts.");
                    board.update_target(&name, |status| {
                        status.sync.status = SyncStatus::Unknown;
                        status.last_error = Some(ErrorInfo {
                            code: None,
                            message: "internal error: this target's loop stopped unexpectedly; restart the daemon and report its log".to_string(),
                            time: Some(chrono::Utc::now()),
                        });
                    });
                }
            });
            (task_name, task)
        })
        .collect()
}

/// Promotion: a promotion wakes its target (and is counted and notified); the gates are re-run
/// on a timer, since `after` can end between passes.
fn start_promotion(
    hook: &Arc<crate::promotion::PromotionHook>,
    triggers: &BTreeMap<String, Arc<Trigger>>,
    metrics: &Arc<DaemonMetrics>,
    controls: &Controls,
    stop: &Stop,
) {
    let wake = triggers.clone();
    let counted = metrics.clone();
    let notifier = controls.notifier();
    let runtime = tokio::runtime::Handle::current();
    hook.set_listener(Box::new(move |event| {
        use crate::promotion::PromotionEvent;
        if let Some(notifier) = &notifier {
            notifier.promotion_event(&runtime, event);
        }
        match event {
            PromotionEvent::Promoted { to, by, .. } => {
                if let Some(trigger) = wake.get(to) {
                    trigger.fire(TriggerKind::Revision);
                }
                let kind = if by == crate::promotion::BY_AUTO {
                    "auto"
                } else {
                    "manual"
                };
                counted.count_promotion(to, kind, "promoted");
            }
            PromotionEvent::Refused { to, .. } => {
                counted.count_promotion(to, "manual", "refused");
            }
            PromotionEvent::MarkedFailed { to, .. } => {
                counted.count_promotion(to, "auto", "failed_upstream");
            }
            PromotionEvent::Held { .. } => {}
        }
    }));
    let timer_stop = stop.clone();
    tokio::spawn(
        hook.clone()
            .run_timer(crate::promotion::DEFAULT_TICK, async move {
                timer_stop.wait().await
            }),
    );
}

/// After shutdown began: waits for the target loops and the source tasks up to `grace`
/// (abandoning what runs past it), then for the server to drain, and logs how it ended.
async fn drain(
    grace: Duration,
    worker_tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    source_tasks: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    address: &str,
) -> Result<(), DaemonError> {
    let mut abandoned: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + grace;
    for (name, task) in worker_tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
            abandoned.push(name);
        }
    }
    for task in source_tasks {
        // A fetch in flight runs on the blocking pool and cannot be cut short; do not wait
        // for it beyond the grace period.
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
    }
    let served = match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(result)) => result.map_err(|source| DaemonError::Serve {
            address: address.to_string(),
            source,
        }),
        Ok(Err(_join_error)) => Ok(()),
        Err(_elapsed) => Ok(()),
    };
    served?;
    if abandoned.is_empty() {
        tracing::info!(
            "Shutdown complete: every action in flight ran to its end and was journaled; no job was left stopped by this process."
        );
    } else {
        // The journal holds the intents of the abandoned actions; the next start resolves
        // them by observing before it does anything else, then plans from what is live, so
        // a job an abandoned upgrade stopped is started again. Exiting 0 keeps the restart calm.
        tracing::warn!(
            abandoned = abandoned.len(),
            targets = %abandoned.join(", "),
            grace_s = grace.as_secs(),
            "Shutdown incomplete: reconcile passes still running after the shutdown grace period (shutdown_grace) were abandoned; a job they stopped may stay down until the next start, which first resolves their journal intents and finishes the work."
        );
    }
    tracing::info!("dli-gitops daemon stopped.");
    Ok(())
}

#[cfg(test)]
mod tests;
