//! Retention and garbage collection of what dli-gitops wrote for a target: savepoint copies in
//! the catalog (per job), backup exports (per apply), DLF bundles in staging, and git mirrors of
//! sources no longer configured.
//!
//! `plan` is pure: from the journal's state, the target's prefixes and its `retention:` it says
//! what to delete, what to keep and what it refuses to touch. Rules for savepoint copies, per
//! job, newest first: the newest `keep` and every copy younger than `max_age` stay; the copy a
//! job would resume from (the journal's savepoint of the job, an automatic-rollback guard's
//! savepoint) stays; every copy newer than the newest verified one stays (with none verified,
//! all stay). Backups: the zips of the newest `keep` applies stay. Only paths strictly under
//! the prefixes dli-gitops writes (`savepoints::is_ours`, `<backups>/`) are ever deleted, however
//! the journal was edited: anything else is reported as refused.
//!
//! `collect` executes a plan: each deletion is an intent (`gc_delete`, the paths) fsync'd
//! before the first object is deleted and an outcome after (`effects.gc_deleted`, which makes
//! the journal forget the paths). A deletion a crash cut short is finished, once, by the next
//! collection before anything else; its objects are deleted `_metadata` first, so a half
//! deleted copy is never taken for a complete one. A reconcile pass never resolves these
//! intents: they are garbage collection's own.
//!
//! # Design and invariants
//!
//! Retention and garbage collection of what dli-gitops wrote for a target. `plan(&JournalState,
//! target, &Prefixes, &Retention, now)` is pure: savepoint copies of the catalog
//! (`TargetState.savepoints`) per job, newest first: the newest `keep`, those younger than
//! `max_age`, the job's journaled savepoint (what it resumes from), an automatic-rollback guard's
//! savepoint, and every copy with a seq above the newest verified one (all, when none is verified)
//! stay; backups are grouped per apply (plan id + pass, as `rollback` groups them) and the newest
//! `backups.keep` applies stay. A candidate is deleted only when it is strictly under our prefixes:
//! `savepoints::is_ours(path, base, target)` (base = `backups`, else `staging`: where the executor
//! copies) or a file under `<backups>/` with no `.`/`..` segment; anything else becomes a
//! `GcRefusal` (reported, exit 1, never touched), however the journal was edited.
//! `collect(&TargetContext, dry_run)`: first every open `gc_delete` intent of the target is
//! finished (the path re-checked against the prefixes, deleted, outcome written), then each
//! planned deletion is an intent (`gc_delete`, detail `{kind, path, why}`), the deletion (a copy:
//! `_metadata` first, so a cut-short deletion leaves an incomplete copy, never a complete-looking
//! one; then every object listed under it; a backup: its zip), and an outcome whose
//! `effects.gc_deleted` makes the journal state drop the path from the catalog and the backup sets
//! (`journal::state::forget_collected`). Deleting a missing object is not an error, so finishing an
//! interrupted deletion is safe, and the journal records each path deleted once. `apply`'s
//! `resolve_pending` leaves `gc_delete` intents to garbage collection. The daemon calls
//! `TargetReconciler::collect_garbage` after a pass (not when suspended or stopping); the
//! `ApplyReconciler` runs `collect` at most once per `retention.interval`. Validation refuses
//! `retention.savepoints.keep: 0` (`targets[i].retention.savepoints.keep`).
//! Staging uploads (`plan_staging`): keys of exactly the executor's shape
//! `plan-<alphanumeric>/dlf-<job>.zip` are deleted once no intent of that plan is open (its import
//! is over); any other key in staging is left alone. Git mirrors (`collect_mirrors`, by the `gc`
//! command and the daemon's collection): directories of `state_dir/mirrors/` with a mirror's name
//! shape (`<readable>-<12 hex>`) that no configured git source's `source::mirror_name(url)` gives
//! are removed; not journaled, since a mirror is a cache its source re-creates. Carried savepoint
//! copies are catalog entries of origin `carried` and follow the same per-job rules; they are ours
//! only strictly under `<staging>carried-savepoints/` (`is_carried_copy`), where `promotion::carry`
//! writes them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, json};

use crate::apply::TargetContext;
use crate::journal::{
    Effects, Intent, Journal, JournalState, Outcome, RecordBody, RecordedError, TargetState,
};
use crate::savepoints::{
    SAVEPOINT_METADATA, directory, is_ours, is_strictly_under, same_directory,
};

/// The intent's action word of one deletion (defined with the passes that leave it to gc).
pub use crate::apply::GC_ACTION;

/// A target's `retention:`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub savepoints_keep: usize,
    pub savepoints_max_age: Duration,
    pub backups_keep: usize,
}

impl Retention {
    pub fn from_config(config: &crate::config::RetentionConfig) -> Retention {
        Retention {
            savepoints_keep: config.savepoints.keep as usize,
            savepoints_max_age: config.savepoints.max_age.get(),
            backups_keep: config.backups.keep as usize,
        }
    }
}

/// Where dli-gitops writes for a target: the savepoint catalog's base (`backups`, else
/// `staging`) and the backups location.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prefixes {
    pub savepoint_base: Option<String>,
    pub backups: Option<String>,
    /// The staging location: DLF bundles, and carried savepoint copies
    /// (`<staging>carried-savepoints/<from>/<job>/<digest>/`, catalog entries of origin
    /// `carried`).
    pub staging: Option<String>,
}

/// The folder of carried savepoint copies under staging (`promotion::carry`).
pub const CARRIED_FOLDER: &str = "carried-savepoints/";

/// Whether `path` is a directory strictly under `<staging>carried-savepoints/`, without `.` or
/// `..` segments: where promotion writes the savepoints it carries.
fn is_carried_copy(path: &str, staging: &str) -> bool {
    is_strictly_under(path, &format!("{}{CARRIED_FOLDER}", directory(staging)))
}

/// One object or directory to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcItem {
    /// `savepoint` (a directory), `backup` or `staging` (a zip).
    pub kind: &'static str,
    pub job: String,
    pub path: String,
    /// Why retention lets it go.
    pub why: String,
}

/// A path the journal names that garbage collection will not touch, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcRefusal {
    pub job: String,
    pub path: String,
    pub reason: String,
}

/// What retention decides for one target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GcPlan {
    pub delete: Vec<GcItem>,
    pub refused: Vec<GcRefusal>,
    /// Catalog entries and backup sets kept.
    pub kept: usize,
}

/// What one collection did.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct GcReport {
    pub target: String,
    pub dry_run: bool,
    /// Deleted by this collection (on a dry run: what it would delete).
    pub deleted: Vec<GcItem>,
    /// Deletions an interrupted collection had started, finished now.
    pub finished: Vec<String>,
    pub refused: Vec<GcRefusal>,
    /// Deletions that failed (retried by the next collection).
    pub failed: Vec<String>,
    pub kept: usize,
}

impl GcReport {
    pub fn render_text(&self) -> String {
        let mut text = format!(
            "Garbage collection of target `{}`{}:\n",
            self.target,
            if self.dry_run {
                " (dry run: nothing deleted)"
            } else {
                ""
            }
        );
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for item in &self.deleted {
            text.push_str(&format!(
                "  {verb} {} {} of {} ({})\n",
                item.kind, item.path, item.job, item.why
            ));
        }
        for path in &self.finished {
            text.push_str(&format!("  finished an interrupted deletion of {path}\n"));
        }
        for refusal in &self.refused {
            text.push_str(&format!(
                "  REFUSED {} of {}: {}\n",
                refusal.path, refusal.job, refusal.reason
            ));
        }
        for failure in &self.failed {
            text.push_str(&format!("  FAILED  {failure}\n"));
        }
        text.push_str(&format!(
            "{} {}, {} kept, {} refused, {} failed.\n",
            self.deleted.len(),
            verb,
            self.kept,
            self.refused.len(),
            self.failed.len()
        ));
        crate::terminal::escape(&text).into_owned()
    }
}

/// Why garbage collection could not run.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(
        "garbage collection of target `{target}`: the journal refused a record ({source}); nothing more is deleted until it works"
    )]
    Journal {
        target: String,
        #[source]
        source: crate::journal::JournalError,
    },
    #[error("{0}")]
    Apply(#[from] crate::apply::ApplyError),
    #[error("loading config {path}: {source}")]
    Config {
        path: std::path::PathBuf,
        #[source]
        source: crate::config::ConfigError,
    },
    #[error("unknown target `{0}`; the config names: {1}")]
    UnknownTarget(String, String),
    /// Starting the async runtime or writing the report failed.
    #[error("{doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What retention deletes, keeps and refuses for `target` (pure).
pub fn plan(
    state: &JournalState,
    target: &str,
    prefixes: &Prefixes,
    retention: &Retention,
    now: DateTime<Utc>,
) -> GcPlan {
    let mut plan = GcPlan::default();
    let Some(target_state) = state.targets.get(target) else {
        return plan;
    };
    plan_savepoints(target_state, target, prefixes, retention, now, &mut plan);
    plan_backups(target_state, prefixes, retention, &mut plan);
    plan
}

fn plan_savepoints(
    state: &TargetState,
    target: &str,
    prefixes: &Prefixes,
    retention: &Retention,
    now: DateTime<Utc>,
    plan: &mut GcPlan,
) {
    let mut by_job: BTreeMap<&str, Vec<&crate::journal::SavepointEntry>> = BTreeMap::new();
    for entry in &state.savepoints {
        by_job.entry(&entry.record.job).or_default().push(entry);
    }
    let max_age =
        chrono::Duration::from_std(retention.savepoints_max_age).unwrap_or(chrono::Duration::MAX);
    for (job, mut entries) in by_job {
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
        let newest_verified = entries
            .iter()
            .filter(|entry| entry.record.verified)
            .map(|entry| entry.seq)
            .max();
        let job_state = state.jobs.get(job);
        let resume_from = job_state.and_then(|job| job.savepoint_path.clone());
        let guarded = job_state
            .and_then(|job| job.auto_rollback.as_ref())
            .and_then(|memory| memory.get("guard")?.get("savepoint")?.as_str())
            .map(str::to_string);
        for (index, entry) in entries.iter().enumerate() {
            let path = &entry.record.path;
            let protects = |other: &Option<String>| {
                other
                    .as_deref()
                    .is_some_and(|other| same_directory(other, path))
            };
            let keep = index < retention.savepoints_keep
                || now - entry.time < max_age
                || newest_verified.is_none_or(|newest| entry.seq > newest)
                || protects(&resume_from)
                || protects(&guarded);
            if keep {
                plan.kept += 1;
                continue;
            }
            let carried = entry.record.origin == "carried";
            let ours = if carried {
                prefixes
                    .staging
                    .as_deref()
                    .is_some_and(|staging| is_carried_copy(path, staging))
            } else {
                prefixes
                    .savepoint_base
                    .as_deref()
                    .is_some_and(|base| is_ours(path, base, target))
            };
            if !ours {
                let reason = if carried {
                    format!(
                        "a carried copy not under this target's carried folder ({}): garbage collection deletes only what dli-gitops wrote",
                        prefixes
                            .staging
                            .as_deref()
                            .map(|staging| format!("{}{CARRIED_FOLDER}", directory(staging)))
                            .unwrap_or_else(
                                || "none: the target has no staging location".to_string()
                            )
                    )
                } else {
                    format!(
                        "not under this target's savepoint prefix ({}): garbage collection deletes only what dli-gitops wrote",
                        prefixes
                            .savepoint_base
                            .as_deref()
                            .map(|base| crate::savepoints::target_prefix(base, target))
                            .unwrap_or_else(|| {
                                "none: the target has no backups or staging location".to_string()
                            })
                    )
                };
                plan.refused.push(GcRefusal {
                    job: job.to_string(),
                    path: path.clone(),
                    reason,
                });
                continue;
            }
            plan.delete.push(GcItem {
                kind: "savepoint",
                job: job.to_string(),
                path: path.clone(),
                why: format!(
                    "catalog seq {}, number {} of the job's copies (keep {}), older than {}",
                    entry.seq,
                    index + 1,
                    retention.savepoints_keep,
                    humantime::format_duration(retention.savepoints_max_age)
                ),
            });
        }
    }
}

/// Whether `zip` is a file strictly under the backups location (no `.`/`..` segment).
fn under_backups(zip: &str, backups: &str) -> bool {
    let base = directory(backups);
    let zip = if zip.contains("://") {
        zip.to_string()
    } else {
        format!("obs://{}", zip.trim_start_matches('/'))
    };
    zip.len() > base.len()
        && zip.starts_with(&base)
        && !zip.ends_with('/')
        && zip[base.len()..]
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

fn plan_backups(
    state: &TargetState,
    prefixes: &Prefixes,
    retention: &Retention,
    plan: &mut GcPlan,
) {
    // One set per apply (plan id and pass), as `rollback` groups them.
    let mut sets: Vec<Vec<&crate::journal::BackupEntry>> = Vec::new();
    let mut last: Option<(Option<&str>, Option<&str>)> = None;
    for entry in &state.backups {
        let pass = entry
            .action_id
            .as_deref()
            .and_then(|id| id.split('-').nth(1));
        let key = (entry.plan_id.as_deref(), pass);
        match sets.last_mut() {
            Some(set) if last == Some(key) => set.push(entry),
            _ => sets.push(vec![entry]),
        }
        last = Some(key);
    }
    let old = sets.len().saturating_sub(retention.backups_keep);
    plan.kept += sets.len() - old;
    for set in &sets[..old] {
        for entry in set {
            for zip in &entry.zip_paths {
                let ours = prefixes
                    .backups
                    .as_deref()
                    .is_some_and(|backups| under_backups(zip, backups));
                if !ours {
                    plan.refused.push(GcRefusal {
                        job: entry.job.clone(),
                        path: zip.clone(),
                        reason: format!(
                            "not under this target's backups location ({}): garbage collection deletes only what dli-gitops wrote",
                            prefixes.backups.as_deref().unwrap_or("none")
                        ),
                    });
                    continue;
                }
                plan.delete.push(GcItem {
                    kind: "backup",
                    job: entry.job.clone(),
                    path: zip.clone(),
                    why: format!(
                        "backup of an apply older than the newest {} (journal seq {})",
                        retention.backups_keep, entry.seq
                    ),
                });
            }
        }
    }
}

/// DLF bundles uploaded to staging (`plan-<plan id prefix>/dlf-<job>.zip`, `keys` relative to
/// the staging location) once their import is over: every one but those of a plan with an
/// action still open (its import may not have run yet). Keys of any other shape are not ours
/// to judge and are left alone.
pub fn plan_staging(keys: &[String], staging_url: &str, open_plans: &[String], plan: &mut GcPlan) {
    for key in keys {
        let mut segments = key.split('/');
        let (Some(folder), Some(file), None) = (segments.next(), segments.next(), segments.next())
        else {
            continue;
        };
        let plan_part = folder.strip_prefix("plan-").unwrap_or_default();
        let job_part = file
            .strip_prefix("dlf-")
            .and_then(|rest| rest.strip_suffix(".zip"))
            .unwrap_or_default();
        let ours = !plan_part.is_empty()
            && plan_part.chars().all(|c| c.is_ascii_alphanumeric())
            && !job_part.is_empty()
            && !job_part.contains("..")
            && job_part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ours {
            continue;
        }
        if open_plans
            .iter()
            .any(|plan_id| folder == format!("plan-{}", &plan_id[..plan_id.len().min(12)]))
        {
            plan.kept += 1;
            continue;
        }
        plan.delete.push(GcItem {
            kind: "staging",
            job: format!(
                "dlf:{}",
                file.trim_start_matches("dlf-").trim_end_matches(".zip")
            ),
            path: format!("{}{key}", directory(staging_url)),
            why: "a DLF bundle whose import is over".to_string(),
        });
    }
}

/// The prefixes of a configured target.
pub fn prefixes_of(context: &TargetContext) -> Prefixes {
    let backups = context.live.backups.clone();
    let staging = context
        .live
        .staging
        .as_ref()
        .map(|staging| directory(&staging.url_of("")));
    Prefixes {
        staging,
        savepoint_base: backups
            .clone()
            .or_else(|| {
                context
                    .live
                    .staging
                    .as_ref()
                    .map(|staging| staging.url_of(""))
            })
            .map(|base| directory(&base)),
        backups,
    }
}

/// One collection for one target: finish interrupted deletions, then delete what retention
/// lets go (nothing on a dry run).
pub async fn collect(context: &TargetContext, dry_run: bool) -> Result<GcReport, GcError> {
    let journal = &context.ledger.journal;
    let target = context.name.as_str();
    let prefixes = prefixes_of(context);
    let retention = Retention::from_config(&context.target.retention);
    let mut report = GcReport {
        target: target.to_string(),
        dry_run,
        ..GcReport::default()
    };
    if !dry_run {
        finish_interrupted(context, &prefixes, &mut report).await?;
    }
    let mut plan = plan(&journal.state(), target, &prefixes, &retention, Utc::now());
    if let Some(staging) = &context.live.staging {
        let open_plans: Vec<String> = journal
            .pending_intents(target)
            .into_iter()
            .filter_map(|intent| intent.plan_id)
            .collect();
        match staging.list("").await {
            Ok(keys) => plan_staging(&keys, &staging.url_of(""), &open_plans, &mut plan),
            Err(error) => report
                .failed
                .push(format!("listing the staging uploads: {error}")),
        }
    }
    report.refused = plan.refused;
    report.kept = plan.kept;
    for refusal in &report.refused {
        tracing::warn!(target_name = target, job = %refusal.job, path = %refusal.path, reason = %refusal.reason, "Garbage collection refuses to delete a path the journal names.");
    }
    if dry_run {
        report.deleted = plan.delete;
        return Ok(report);
    }
    delete_planned(context, plan.delete, &mut report).await?;
    Ok(report)
}

/// Finishes the deletions an earlier collection journaled but did not finish, each only when
/// its path is still under a prefix dli-gitops writes.
async fn finish_interrupted(
    context: &TargetContext,
    prefixes: &Prefixes,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let journal = &context.ledger.journal;
    let target = context.name.as_str();
    for intent in journal.pending_intents(target) {
        if intent.action != GC_ACTION {
            continue;
        }
        let kind = intent.detail["kind"].as_str().unwrap_or("savepoint");
        let path = intent.detail["path"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let result = if is_ours_to_delete(context, prefixes, kind, &path) {
            delete(context, kind, &path).await
        } else {
            Err(format!(
                "{path} is not under a prefix dli-gitops writes; not deleted"
            ))
        };
        match &result {
            Ok(()) => report.finished.push(path.clone()),
            Err(problem) => report.failed.push(format!("{path}: {problem}")),
        }
        finish(
            journal,
            target,
            &intent.action_id,
            &intent.job,
            &path,
            result,
        )
        .await?;
    }
    Ok(())
}

/// Whether a journaled deletion's path is one this collection may delete: a staged upload the
/// staging plan would delete, a backup under the backups prefix, or one of this target's
/// savepoints (or a carried copy under staging).
fn is_ours_to_delete(context: &TargetContext, prefixes: &Prefixes, kind: &str, path: &str) -> bool {
    let target = context.name.as_str();
    let staging_url = context
        .live
        .staging
        .as_ref()
        .map(|staging| staging.url_of(""));
    match kind {
        "staging" => staging_url.as_deref().is_some_and(|staging| {
            let mut probe = GcPlan::default();
            let key = path
                .strip_prefix(&directory(staging))
                .unwrap_or_default()
                .to_string();
            plan_staging(&[key], staging, &[], &mut probe);
            probe.delete.len() == 1
        }),
        "backup" => prefixes
            .backups
            .as_deref()
            .is_some_and(|backups| under_backups(path, backups)),
        _ => {
            prefixes
                .savepoint_base
                .as_deref()
                .is_some_and(|base| is_ours(path, base, target))
                || prefixes
                    .staging
                    .as_deref()
                    .is_some_and(|staging| is_carried_copy(path, staging))
        }
    }
}

/// Deletes the planned items, each between a journaled intent and its outcome.
async fn delete_planned(
    context: &TargetContext,
    items: Vec<GcItem>,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let journal = &context.ledger.journal;
    let target = context.name.as_str();
    let run: u64 = rand::random();
    for (index, item) in items.into_iter().enumerate() {
        let action_id = format!("gc-{run:016x}-{index}");
        journal
            .append_async(
                target,
                RecordBody::Intent(Intent {
                    action_id: action_id.clone(),
                    job: item.job.clone(),
                    action: GC_ACTION.to_string(),
                    plan_id: None,
                    detail: json!({"kind": item.kind, "path": item.path, "why": item.why}),
                    extra: Map::new(),
                }),
            )
            .await
            .map_err(|source| GcError::Journal {
                target: target.to_string(),
                source,
            })?;
        let result = delete(context, item.kind, &item.path).await;
        if let Err(problem) = &result {
            report.failed.push(format!("{}: {problem}", item.path));
        }
        let ok = result.is_ok();
        finish(journal, target, &action_id, &item.job, &item.path, result).await?;
        if ok {
            tracing::info!(target_name = target, job = %item.job, path = %item.path, kind = item.kind, "Garbage collection deleted an object.");
            report.deleted.push(item);
        }
    }
    Ok(())
}

async fn finish(
    journal: &Journal,
    target: &str,
    action_id: &str,
    job: &str,
    path: &str,
    result: Result<(), String>,
) -> Result<(), GcError> {
    let (ok, error, gc_deleted) = match result {
        Ok(()) => (true, None, vec![path.to_string()]),
        Err(problem) => (
            false,
            Some(RecordedError {
                code: None,
                message: problem,
                request_id: None,
                extra: Map::new(),
            }),
            Vec::new(),
        ),
    };
    journal
        .append_async(
            target,
            RecordBody::Outcome(Outcome {
                action_id: action_id.to_string(),
                job: job.to_string(),
                ok,
                error,
                effects: Effects {
                    gc_deleted,
                    ..Effects::default()
                },
                plan_id: None,
                extra: Map::new(),
            }),
        )
        .await
        .map_err(|source| GcError::Journal {
            target: target.to_string(),
            source,
        })?;
    Ok(())
}

/// Deletes a savepoint directory (its `_metadata` first, so a cut-short deletion leaves an
/// incomplete copy, never one that looks complete) or a backup zip. Deleting what is already
/// gone is not an error.
async fn delete(context: &TargetContext, kind: &str, path: &str) -> Result<(), String> {
    let clients = &context.live.clients;
    if kind == "backup" || kind == "staging" {
        let (parent, name) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("{path} names no file"))?;
        let store = clients
            .object_store(&directory(parent))
            .map_err(|error| error.to_string())?;
        return store.delete(name).await.map_err(|error| error.to_string());
    }
    let store = clients
        .object_store(&directory(path))
        .map_err(|error| error.to_string())?;
    store
        .delete(SAVEPOINT_METADATA)
        .await
        .map_err(|error| error.to_string())?;
    for key in store.list("").await.map_err(|error| error.to_string())? {
        store
            .delete(&key)
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// Git mirrors (`state_dir/mirrors/<name>-<12 hex>`) of repositories no configured source
/// names any more: deleted (on a dry run: listed). A mirror is a local cache the source
/// re-creates on its next fetch, so these deletions are not journaled; only directories with a
/// mirror's name shape are touched. Returns (deleted or to delete, failures).
pub fn collect_mirrors(
    config: &crate::config::Config,
    dry_run: bool,
) -> (Vec<String>, Vec<String>) {
    let wanted: Vec<String> = config
        .sources
        .values()
        .filter_map(|source| source.git.as_ref())
        .map(|git| crate::source::mirror_name(&git.url))
        .collect();
    let directory = config.state_dir.join("mirrors");
    let Ok(entries) = std::fs::read_dir(&directory) else {
        return (Vec::new(), Vec::new());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    let (mut deleted, mut failed) = (Vec::new(), Vec::new());
    for name in names {
        let shaped = name.rsplit_once('-').is_some_and(|(readable, digest)| {
            !readable.is_empty()
                && digest.len() == 12
                && digest.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !shaped || wanted.contains(&name) {
            continue;
        }
        let path = directory.join(&name);
        if dry_run {
            deleted.push(path.display().to_string());
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(mirror = %path.display(), "Garbage collection deleted the git mirror of a source no longer configured.");
                deleted.push(path.display().to_string());
            }
            Err(error) => failed.push(format!("{}: {error}", path.display())),
        }
    }
    (deleted, failed)
}

/// `dli-gitops gc`.
#[derive(Debug, Clone)]
pub struct GcCommand {
    pub config: std::path::PathBuf,
    /// One target; every target when `None`.
    pub target: Option<String>,
    pub dry_run: bool,
    pub json: bool,
}

/// Runs `gc` for the chosen targets; exit code 1 when a deletion failed or a path was refused.
pub fn gc_command(command: &GcCommand, out: &mut dyn std::io::Write) -> Result<u8, GcError> {
    let config =
        crate::config::Config::load(&command.config).map_err(|source| GcError::Config {
            path: command.config.clone(),
            source,
        })?;
    let names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let chosen: Vec<String> = match &command.target {
        Some(name) if names.contains(name) => vec![name.clone()],
        Some(name) => return Err(GcError::UnknownTarget(name.clone(), names.join(", "))),
        None => names,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| GcError::Io {
            doing: "starting the runtime",
            source,
        })?;
    let reports = runtime.block_on(async {
        let mut reports = Vec::new();
        for name in &chosen {
            let context = TargetContext::open(&config, name).await?;
            let result = collect(&context, command.dry_run).await;
            context.shutdown().await;
            reports.push(result?);
        }
        Ok::<_, GcError>(reports)
    })?;
    let (mirrors, mirror_failures) = collect_mirrors(&config, command.dry_run);
    let text = if command.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({
                "targets": reports,
                "mirrors": {"deleted": mirrors, "failed": mirror_failures},
            }))
            .unwrap_or_default()
        )
    } else {
        let mut text: String = reports.iter().map(GcReport::render_text).collect();
        let verb = if command.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for mirror in &mirrors {
            text.push_str(&format!(
                "{verb} the git mirror {mirror} (no configured source uses it)\n"
            ));
        }
        for failure in &mirror_failures {
            text.push_str(&format!("FAILED  {failure}\n"));
        }
        crate::terminal::escape(&text).into_owned()
    };
    out.write_all(text.as_bytes())
        .map_err(|source| GcError::Io {
            doing: "writing the report",
            source,
        })?;
    let clean = mirror_failures.is_empty()
        && reports
            .iter()
            .all(|report| report.failed.is_empty() && report.refused.is_empty());
    Ok(if clean { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{BackupEntry, JobState, SavepointEntry, SavepointRecord};

    const BASE: &str = "obs://bk/dev/";

    fn copy(
        seq: u64,
        job: &str,
        days_old: i64,
        verified: bool,
        now: DateTime<Utc>,
    ) -> SavepointEntry {
        SavepointEntry {
            seq,
            time: now - chrono::Duration::days(days_old),
            record: SavepointRecord {
                job: job.into(),
                path: format!("{BASE}dli-gitops/savepoints/dev/{job}/{seq:04}-stop/"),
                origin: "stop".into(),
                verified,
                ..SavepointRecord::default()
            },
        }
    }

    fn retention(keep: usize) -> Retention {
        Retention {
            savepoints_keep: keep,
            savepoints_max_age: Duration::from_secs(7 * 24 * 3600),
            backups_keep: 1,
        }
    }

    /// The plan for target `dev` holding `target`, keeping `keep` copies.
    fn plan_for_dev(target: TargetState, keep: usize, now: DateTime<Utc>) -> GcPlan {
        let mut state = JournalState::default();
        state.targets.insert("dev".into(), target);
        plan(&state, "dev", &prefixes(), &retention(keep), now)
    }

    fn deleted_paths(plan: &GcPlan) -> Vec<&str> {
        plan.delete.iter().map(|item| item.path.as_str()).collect()
    }

    /// `target` with a savepoint copy of `orders` (30 days old, verified) at each path.
    fn copies_at(
        target: &mut TargetState,
        paths: &[(u64, &str)],
        origin: Option<&str>,
        now: DateTime<Utc>,
    ) {
        for (seq, path) in paths {
            let mut entry = copy(*seq, "orders", 30, true, now);
            entry.record.path = (*path).into();
            if let Some(origin) = origin {
                entry.record.origin = origin.into();
            }
            target.savepoints.push(entry);
        }
    }

    fn prefixes() -> Prefixes {
        Prefixes {
            savepoint_base: Some(BASE.into()),
            backups: Some(BASE.into()),
            staging: Some("obs://st/dev/".into()),
        }
    }

    #[test]
    fn carried_copies_follow_retention_under_the_staging_carried_folder_only() {
        let now = Utc::now();
        let mut target = TargetState::default();
        let paths = [
            (
                1,
                "obs://st/dev/carried-savepoints/dev/orders/0123456789abcdef/",
            ),
            (2, "obs://st/dev/carried-savepoints/../../elsewhere/"),
            (3, "obs://st/dev/plan-x/"),
            (
                4,
                "obs://st/dev/carried-savepoints/dev/orders/fedcba9876543210/",
            ),
        ];
        copies_at(&mut target, &paths, Some("carried"), now);
        let plan = plan_for_dev(target, 1, now);
        let deleted = deleted_paths(&plan);
        assert_eq!(
            deleted,
            ["obs://st/dev/carried-savepoints/dev/orders/0123456789abcdef/"]
        );
        let refused: Vec<&str> = plan.refused.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            refused,
            [
                "obs://st/dev/plan-x/",
                "obs://st/dev/carried-savepoints/../../elsewhere/"
            ]
        );
    }

    #[test]
    fn retention_keeps_the_newest_the_young_the_resumed_and_those_past_the_newest_verified() {
        let now = Utc::now();
        let mut target = TargetState::default();
        // seq 1..=6 of `orders`, 30 days old except 6; 5 is unverified but older than the
        // newest verified copy (6). The job resumes from 2.
        for (seq, days, verified) in [
            (1, 30, true),
            (2, 30, true),
            (3, 30, true),
            (4, 30, true),
            (5, 30, false),
            (6, 1, true),
        ] {
            target
                .savepoints
                .push(copy(seq, "orders", days, verified, now));
        }
        target.savepoints.push(copy(7, "clicks", 30, false, now));
        target.jobs.insert(
            "orders".into(),
            JobState {
                savepoint_path: Some(target.savepoints[1].record.path.clone()),
                ..JobState::default()
            },
        );
        let plan = plan_for_dev(target, 2, now);
        let deleted = deleted_paths(&plan);
        // Kept: 6 (newest, young), 5 (second newest), 2 (resumed from); clicks' only copy is
        // unverified (none verified: all stay).
        assert_eq!(
            deleted,
            [
                format!("{BASE}dli-gitops/savepoints/dev/orders/0004-stop/"),
                format!("{BASE}dli-gitops/savepoints/dev/orders/0003-stop/"),
                format!("{BASE}dli-gitops/savepoints/dev/orders/0001-stop/"),
            ]
        );
        assert!(plan.refused.is_empty());
        assert_eq!(plan.kept, 4);
    }

    #[test]
    fn staging_bundles_go_once_their_plan_has_no_open_action() {
        let keys: Vec<String> = [
            "plan-aaaaaaaaaaaa/dlf-nightly.zip",
            "plan-bbbbbbbbbbbb/dlf-nightly.zip",
            "plan-aaaaaaaaaaaa/notes.txt",
            "carried-savepoints/dev/orders/0123/_metadata",
            "plan-../dlf-x.zip",
            "other/dlf-x.zip",
        ]
        .iter()
        .map(|key| key.to_string())
        .collect();
        let mut plan = GcPlan::default();
        plan_staging(
            &keys,
            "obs://st/dev/",
            &["bbbbbbbbbbbb0123456789".to_string()],
            &mut plan,
        );
        let deleted: Vec<&str> = plan.delete.iter().map(|item| item.path.as_str()).collect();
        assert_eq!(deleted, ["obs://st/dev/plan-aaaaaaaaaaaa/dlf-nightly.zip"]);
        assert_eq!(plan.delete[0].job, "dlf:nightly");
        assert_eq!(plan.kept, 1);
    }

    #[test]
    fn paths_outside_our_prefixes_are_refused_however_the_journal_names_them() {
        let now = Utc::now();
        let mut target = TargetState::default();
        let paths = [
            (
                1,
                "obs://bk/dev/dli-gitops/savepoints/dev/orders/../../../../etc/",
            ),
            (2, "obs://other-bucket/dli-gitops/savepoints/dev/orders/x/"),
            (3, "obs://bk/dev/dli-gitops/savepoints/prod/orders/x/"),
            (4, "obs://bk/dev/dli-gitops/savepoints/dev/"),
            (5, "obs://bk/dev/dli-gitops/savepoints/dev/orders/keep-1/"),
            (6, "obs://bk/dev/dli-gitops/savepoints/dev/orders/keep-2/"),
        ];
        copies_at(&mut target, &paths, None, now);
        target.backups.push(BackupEntry {
            plan_id: Some("p1".into()),
            action_id: Some("p1-aaaa-0".into()),
            job: "orders".into(),
            zip_paths: vec![
                "obs://bk/dev/plan-p1/../../secret.zip".into(),
                "obs://elsewhere/orders.zip".into(),
                "obs://bk/dev/plan-p1/orders_1.zip".into(),
            ],
            seq: 10,
            time: now,
        });
        target.backups.push(BackupEntry {
            plan_id: Some("p2".into()),
            action_id: Some("p2-bbbb-0".into()),
            job: "orders".into(),
            zip_paths: vec!["obs://bk/dev/plan-p2/orders_2.zip".into()],
            seq: 11,
            time: now,
        });
        let plan = plan_for_dev(target, 2, now);
        let deleted = deleted_paths(&plan);
        assert_eq!(deleted, ["obs://bk/dev/plan-p1/orders_1.zip"]);
        let refused: Vec<&str> = plan.refused.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(refused.len(), 6, "{refused:#?}");
        assert!(
            plan.refused
                .iter()
                .all(|r| r.reason.contains("only what dli-gitops wrote"))
        );
    }
}
