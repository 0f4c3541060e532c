//! One path for a pass, shared by the CLI commands (`plan`, `apply`) and the daemon.
//!
//! * [`desired_for`]: a target's desired jobs at a revision — the revision promoted to a
//!   `promote_from` target (else the source's head) → resolve for the target's environment →
//!   the target's `restore: {from_target}` default ([`resolve_for`], which the daemon's worker
//!   calls on the snapshots its sources hand it).
//! * [`run_pass`]: one pass inside the `reconcile` tracing span — carry the savepoints other
//!   targets hand over ([`carry_for_target`]) → grant DLI access to the target's buckets →
//!   observe, plan and maybe apply (`apply::reconcile_with`) → after a pass that acted, with
//!   `look_again`, the look that shows what remains (`apply::confirm_with`).
//!
//! This module sits above `apply` and `promotion` and joins them: neither imports the other
//! for a pass.

pub mod commands;
pub mod fairness;
pub mod history;
pub mod interrupt;
pub mod stopping;

use std::collections::BTreeMap;

use tracing::Instrument;

use crate::apply::{self, ApplyError, ApplyOptions, ApplyReport, Ledger, TargetContext};
use crate::config::{Config, TargetConfig};
use crate::desired::snapshot::RepoSnapshot;
use crate::journal::Journal;
use crate::model::DesiredJobs;
use crate::plan::PlanPolicy;
use crate::promotion::{self, CarryTarget, RestoreError};

pub use fairness::{ActionSlot, ActionSlots, SlotStats};
pub use history::{adopt_without_history, warn_about_unknown_targets};
pub use interrupt::{Stop, finish_then_abort_on_interrupt};
pub use stopping::StoppingLedger;

pub use commands::{
    ApplyCommand, ExportCommand, PlanCommand, Prompt, RollbackCommand, apply_command,
    export_command, plan_command, rollback_command, state_dir_of,
};

/// The revision `context` follows: for a `promote_from` target the one promoted to it (an
/// error while nothing has been), else `None` (the source's head).
pub fn followed_revision(context: &TargetContext) -> Result<Option<String>, ApplyError> {
    let Some(upstream) = &context.target.promote_from else {
        return Ok(None);
    };
    let target = &context.name;
    promotion::followed_revision(&context.ledger.journal.state_guard(), target)
        .map(Some)
        .ok_or_else(|| ApplyError::Repository {
            target: target.clone(),
            problem: format!(
                "nothing has been promoted to `{target}` yet (it follows `{upstream}`); promote a revision with `dli-gitops promote`"
            ),
        })
}

/// Reads the target's source once and resolves its jobs for the target's environment, with
/// the target's `restore: {from_target}` default. `revision: None` reads what the target
/// follows ([`followed_revision`]). Returns the jobs and the revision they were read at.
/// Blocking work runs off the runtime.
pub async fn desired_for(
    context: &TargetContext,
    revision: Option<&str>,
) -> Result<(DesiredJobs, String), ApplyError> {
    let repository = |problem: String| ApplyError::Repository {
        target: context.name.clone(),
        problem,
    };
    let source_config = context.source_config().cloned().ok_or_else(|| {
        repository(format!(
            "the source `{}` is not configured",
            context.target.source
        ))
    })?;
    let revision = match revision {
        Some(revision) => Some(revision.to_string()),
        None => followed_revision(context)?,
    };
    let state_dir = context.state_dir().to_path_buf();
    let target = context.name.clone();
    let snapshot = tokio::task::spawn_blocking(move || {
        read_snapshot(&target, &source_config, &state_dir, revision)
    })
    .await
    .map_err(|error| ApplyError::RepositoryRead {
        target: context.name.clone(),
        source: Box::new(error),
    })??;
    let desired = resolve_for(
        &snapshot,
        &context.environment,
        Some(&context.target),
        |snapshot, environment| crate::desired::resolve(snapshot, Some(environment)),
    )
    .map_err(|diagnostics| {
        repository(format!(
            "revision {} does not validate ({} problem(s)):\n{diagnostics}",
            snapshot.revision,
            diagnostics.len()
        ))
    })?;
    Ok((desired, snapshot.revision))
}

/// The source's files at `revision` (a promoted one, see `promotion::snapshot_at`), or at its
/// head. Blocking.
fn read_snapshot(
    target: &str,
    source_config: &crate::config::SourceConfig,
    state_dir: &std::path::Path,
    revision: Option<String>,
) -> Result<RepoSnapshot, ApplyError> {
    let read_failed = |error: crate::source::SourceError| ApplyError::RepositoryRead {
        target: target.to_string(),
        source: Box::new(error),
    };
    let source =
        crate::source::Source::from_config(source_config, state_dir).map_err(read_failed)?;
    match revision {
        Some(revision) => promotion::snapshot_at(&source, &revision).map_err(|error| {
            ApplyError::PromotedRevision {
                target: target.to_string(),
                source: Box::new(error),
            }
        }),
        None => source
            .poll(None)
            .map_err(read_failed)?
            .ok_or_else(|| ApplyError::Repository {
                target: target.to_string(),
                problem: "the source returned no snapshot".to_string(),
            }),
    }
}

/// Resolves `snapshot` for `environment` with `resolve` (`desired::resolve`, or the daemon's
/// resolver), then applies `target`'s `restore: {from_target}` default
/// (`promotion::apply_target_restore`) when a target is given.
pub fn resolve_for<E>(
    snapshot: &RepoSnapshot,
    environment: &str,
    target: Option<&TargetConfig>,
    resolve: impl FnOnce(&RepoSnapshot, &str) -> Result<DesiredJobs, E>,
) -> Result<DesiredJobs, E> {
    let mut desired = resolve(snapshot, environment)?;
    if let Some(target) = target {
        promotion::apply_target_restore(&mut desired, target);
    }
    Ok(desired)
}

/// Carries every savepoint the next pass of `downstream` will import from another target, and
/// returns them by job name for `ApplyOptions::carried_savepoints`. Nothing pending: nothing is
/// built or called. The upstream targets are built beside `downstream` over the same journal
/// and, when embedded, the same emulator, and stopped again after the carry.
pub async fn carry_for_target(
    config: &Config,
    journal: &Journal,
    downstream: &TargetContext,
    desired: &DesiredJobs,
) -> Result<BTreeMap<String, String>, RestoreError> {
    // Read under the guard: cloning the whole journal state on every pass of every target
    // costs O(all jobs of all targets) per pass.
    let pending = promotion::pending_carries(desired, &journal.state_guard(), &downstream.name);
    if pending.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut upstreams: BTreeMap<String, TargetContext> = BTreeMap::new();
    for carry in &pending {
        if upstreams.contains_key(&carry.from_target) {
            continue;
        }
        let upstream = TargetContext::with_shared(
            config,
            &carry.from_target,
            journal.clone(),
            downstream.shared_emulator(),
        )
        .await
        .map_err(|source| RestoreError::Upstream {
            target: downstream.name.clone(),
            upstream: carry.from_target.clone(),
            source: Box::new(source),
        })?;
        upstreams.insert(carry.from_target.clone(), upstream);
    }
    let ends: BTreeMap<String, CarryTarget<'_>> = upstreams
        .iter()
        .map(|(name, upstream)| (name.clone(), carry_target(upstream)))
        .collect();
    let carried = promotion::carry_pending(
        journal,
        &carry_target(downstream),
        downstream.target.restore.on_missing_savepoint,
        &ends,
        desired,
        pending,
    )
    .await;
    drop(ends);
    for (_, upstream) in upstreams {
        upstream.shutdown().await;
    }
    carried
}

/// What carrying needs of one target, borrowed from its context.
fn carry_target(context: &TargetContext) -> CarryTarget<'_> {
    CarryTarget {
        name: &context.name,
        dli: &context.live.clients.dli,
        obs: &context.live.clients.obs,
        staging: context.live.staging.as_ref().map(|store| store.url_of("")),
        savepoint_timeout: context.options.savepoint_timeout,
        poll_interval: context.options.poll_interval,
    }
}

/// One pass over one target, for [`run_pass`].
pub struct Pass<'a, J> {
    pub context: &'a TargetContext,
    /// The context's ledger, or one over it (the daemon's and `apply`'s refuse new actions
    /// once a stop begins).
    pub ledger: &'a J,
    pub desired: &'a DesiredJobs,
    pub policy: &'a PlanPolicy,
    pub options: ApplyOptions,
    /// Before a pass that executes, carry the savepoints other targets hand over
    /// ([`carry_for_target`], upstream targets built from this config) into
    /// `options.carried_savepoints`. `None`: the caller carried them already (`apply` carries
    /// before it shows the plan) or there is nothing to carry (a dry run).
    pub carry: Option<&'a Config>,
    /// After a pass that acted, look again (`apply::confirm_with`): the daemon's status shows
    /// what the pass left to do and the live jobs as they are now, not what it started from.
    pub look_again: bool,
}

/// What [`run_pass`] did.
#[derive(Debug)]
pub struct PassRun {
    pub report: ApplyReport,
    /// The look after a pass that acted (with `look_again`): its report, or why it failed.
    /// Its failure is the caller's to report: the pass's own actions are journaled already.
    pub after: Option<Result<ApplyReport, ApplyError>>,
}

/// Runs one pass inside the `reconcile` span: carry savepoints (see [`Pass::carry`]) and grant
/// DLI access to the target's buckets (`authorize_obs`) before a pass that executes; observe,
/// plan and maybe apply; then, with [`Pass::look_again`], look again after a pass that acted.
pub async fn run_pass<J: Ledger>(pass: Pass<'_, J>) -> Result<PassRun, ApplyError> {
    let revision = pass
        .options
        .revision
        .as_deref()
        .or(pass.options.source_revision.as_deref())
        .unwrap_or("-")
        .to_string();
    let span = tracing::info_span!("reconcile", target = %pass.context.name, revision = %revision);
    run_pass_steps(pass).instrument(span).await
}

/// The steps of [`run_pass`], inside its span.
async fn run_pass_steps<J: Ledger>(pass: Pass<'_, J>) -> Result<PassRun, ApplyError> {
    let Pass {
        context,
        ledger,
        desired,
        policy,
        mut options,
        carry,
        look_again,
    } = pass;
    if !options.dry_run {
        if let Some(config) = carry {
            options.carried_savepoints =
                carry_for_target(config, &context.ledger.journal, context, desired)
                    .await
                    .map_err(|error| ApplyError::Carry {
                        source: Box::new(error),
                    })?;
        }
        // `authorize_obs`: DLI may use the target's buckets before the pass acts (once each).
        context.authorize_obs(Some(desired)).await?;
    }
    let report = apply::reconcile_with(&context.live, ledger, desired, policy, &options).await?;
    let acted = !options.dry_run && !report.results.is_empty();
    let after = if look_again && acted {
        // Only the jobs the pass acted on are read again (their details); the next pass
        // lists every page.
        Some(
            apply::confirm_with(
                &context.live,
                ledger,
                desired,
                policy,
                &options,
                report.observed.clone(),
                &report.results,
            )
            .await,
        )
    } else {
        None
    };
    Ok(PassRun { report, after })
}
