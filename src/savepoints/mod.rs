//! The savepoint catalog: copies of Flink savepoints under dli-gitops's own prefix, and the
//! journal records that list them.
//!
//! Why copies: the DLI user guide (dli_01_0461, "Stopping a Job" and "Triggering a Savepoint")
//! says a savepoint's lifecycle "ends when the job is restarted. The savepoint is automatically
//! deleted after the job is restarted." A savepoint needed later (to roll back, to restore from
//! the catalog, to carry to another target) is therefore copied under
//! `<base>dli-gitops/savepoints/<target>/<job>/<time>-<origin>/` and verified before the job
//! is restarted; the journal's `savepoint` record is the catalog entry.
//!
//! A copy is complete when its `_metadata` exists: it is written last, so a copy cut short is
//! never taken for a savepoint. Verification lists the copy and compares every object's size
//! with its source, and `_metadata` byte for byte.
//!
//! # Design and invariants
//!
//! **The fact that shapes it.** The DLI user guide (dli_01_0461, "Performing Operations on a Flink
//! Job", sections "Stopping a Job" and "Triggering a Savepoint"; opentelekomcloud-docs/data-lake-insight
//! `umn/source/.../common_operations_of_flink_jobs.rst`) says: "The lifecycle of a savepoint starts
//! when the savepoint is triggered and stops the job, and ends when the job is restarted. The
//! savepoint is automatically deleted after the job is restarted." So a savepoint the service took
//! (at a stop, or triggered) is gone after the next start of the job. Every savepoint dli-gitops may
//! need later (to resume an upgrade, roll back, restore from the catalog, carry to another target)
//! is copied under a prefix of ours and verified **before** the job is restarted.
//!
//! Layout: `<base>dli-gitops/savepoints/<target>/<job>/<UTC time>-<origin>/`, `<base>` = the
//! target's `backups:` location, else `staging:` (`LiveService::savepoint_base`). Savepoints are
//! triggered into `<base>dli-gitops/triggered/<target>/<job>/<time>/` (the service's own, deleted at
//! the restart) and copied from there. A copy is complete when its `_metadata` exists: objects are
//! copied whole through memory, `_metadata` last; verification lists the copy and compares every
//! key and size with the source, and `_metadata` byte for byte (`copy_and_verify`, over
//! `ObjectStore::list_sizes`).
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the layout (`target_prefix`, `copy_directory`, `trigger_directory`, `is_ours`), `Origin`, `inspect`/`copy_and_verify`/`verify`, `catalog`/`latest_verified` over `JournalState`, the API section (`status_section`) and the status page section |
//! | `command.rs` | `dli-gitops savepoints list [--config F \| --state-dir D] [--target T] [--job J] [--json]`: the catalog from `journal::read_state` (no lock: works beside a running daemon) |
//!
//! Strict state (the executor, `apply/execute.rs` `before_step`, `keep_savepoint`):
//! * Before a `Stop { trigger_savepoint: true }` of a Flink job (every stop in `upgrade_mode:
//!   savepoint`: upgrade, restore, stop, prune), a savepoint is triggered while the job runs
//!   (`ExecuteFlinkJobSavepoint`, `POST /v1.0/{project_id}/streaming/jobs/{job_id}/savepoint`,
//!   body `{"action": "TRIGGER", "savepoint_path": "bucket/dir/"}`: SDK 3.1.219
//!   `ExecuteFlinkJobSavepointRequestBody`, both fields required in the Go SDK model; answer
//!   `{is_success, message}`), awaited until its `_metadata` exists and the job runs again
//!   (`timeouts.savepoint`), copied, verified and journaled (`savepoint`, origin `triggered`).
//!   Only then is the job stopped. If any of it fails, the job is not stopped: it keeps running its
//!   current version, the action fails with the reason, and nothing else of that job is touched.
//! * The stop still takes its own savepoint (the newest state: resuming from the pre-stop one would
//!   replay what ran between the two). It is copied and verified at once (origin `stop`), the
//!   one-shot `-stop-savepoint` outcome records **the copy**, and `ImportSavepoint(FromStop)`
//!   imports the copy: **the restart resumes from our copy of the stop savepoint**, which still
//!   exists after the service deletes its own. If the stop reports no new savepoint (or still
//!   names the one triggered before it), the action fails before anything is imported (the state
//!   before the stop is in the catalog). If the copy fails, the job stays stopped and is not
//!   restarted (its state is in the service's savepoint, which lives until a restart).
//! * An `ImportSavepoint` of the savepoint a stopped job holds on the service (the planner's
//!   `Path`/`Held` of the held savepoint) imports the catalog's copy of it, or copies it first
//!   (origin `held`) and imports the copy. A start that resumes from the held savepoint without an
//!   import (`Held`) keeps a copy first when the catalog has none (the run itself resumes from the
//!   held one, which the check before the start requires).
//!   A catalogued copy is reused (a crashed pass already made it; a savepoint can be huge) only
//!   while the service's directory still holds the savepoint it was copied from: the service
//!   names its stop savepoint directories to the second
//!   (`jobs/savepoint/{job_id}/{yyyy-mm-dd_HH-mm-ss}/`, the huaweicloud Terraform provider's
//!   `dli_flinksql_job`, `updateFlinkSqlJobWithStop`), so a second stop of the job in the same
//!   second writes a newer savepoint over the first in the same directory (OBS overwrites an
//!   object uploaded under an existing name). Before reuse,
//!   `verify` compares the directory with the copy (keys, sizes, `_metadata` byte for byte,
//!   `LiveService::savepoint_copy_matches`); a copy that differs, or cannot be compared, is not
//!   used and the savepoint is copied again (`apply/execute.rs` `catalogued_copy_of`).
//!   Explicit `restore.savepoint_path`s are the user's, not the service's: imported as given.
//! * `upgrade_mode: stateless` takes no savepoint and stops without one: an explicit choice.
//!
//! The catalog is the journal: record kind `savepoint` (`journal::SavepointRecord`: `job`, `path`
//! (our copy), `origin` (`triggered`/`stop`/`held`), `source_path`, `revision` (the target's
//! applied revision when taken), `spec_digest`, `action_id`, `live_id`, `objects`, `size_bytes`,
//! `verified`), folded into `TargetState.savepoints` (at most `SAVEPOINT_CATALOG_LIMIT` per
//! target). The record's `seq` is the catalog id: `restore: {from_catalog: <seq>}` restores that
//! copy, `from_catalog: latest` the newest verified copy when the restore is planned (the planner
//! reads `JournalView.savepoint_catalog`; the restore key gains `#catalog:<ref>` only when set, so
//! older keys are unchanged; bump `nonce` to restore `latest` again). `GET /api/v1/targets/{t}`
//! carries `savepoints: {count, total_bytes, entries}` (newest 50) and the status page a
//! Savepoints table. Carried savepoints (promotion) keep their own place under
//! `carried-savepoints/` and are imported as copies.
//!
//! Emulator (`emulator/dli/lifecycle.rs`): every savepoint it writes (stop or triggered) holds a
//! `_metadata` with a `savepoint_id`, is remembered on the job (`taken_savepoints`), and is deleted
//! from its OBS when the job is run again (after the run read its state). A run records
//! `restored_savepoint_id`/`stop_savepoint_id` (a copy has its original's id), so tests check a
//! chain of runs by state, not by path; a stop savepoint's directory is named to the second, as
//! the service's, and a second savepoint of the job in that second overwrites its `_metadata`;
//! a run resuming from a savepoint without `_metadata` ends
//! `job_submit_fail`. A trigger without `savepoint_path` is refused (`DLI.0001`, chosen: Terraform's
//! `dli_flinksql_job_savepoint` treats the path as optional, the SDK model requires it; the service's
//! answer is not documented). Savepoints imported with import-savepoint are not the service's and
//! are never deleted by it.
//!
//! Tested: `tests/savepoint_catalog.rs` (a failed pre-stop savepoint leaves the old job running;
//! every savepoint of three upgrades is in the catalog and `savepoints list`; the service's stop and
//! triggered savepoints are gone after the restart while our copy stays, and `from_catalog: <seq>`
//! / `latest` resume from copies, shown by the emulator's run history; a copy of the held savepoint
//! is reused while its directory holds the same savepoint and made again once a newer one replaced
//! it there; `from_catalog` validation; the
//! real daemon serves the catalog in `GET /api/v1/targets/dev` and on the page), `tests/promotion/`
//! (a carried copy is a verified `carried` entry of prod), `savepoints::tests` (the fold, old states,
//! the API and page sections).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cloud::{CloudError, ObjectStore};
use crate::journal::{JournalState, SavepointEntry};

pub mod command;

/// The file that makes a directory a Flink savepoint.
pub const SAVEPOINT_METADATA: &str = "_metadata";
/// The folder under a target's base location (backups, else staging) that holds its copies.
pub const SAVEPOINTS_FOLDER: &str = "dli-gitops/savepoints";
/// Where savepoints are triggered before a stop (the service's; deleted at the restart).
pub const TRIGGERED_FOLDER: &str = "dli-gitops/triggered";
/// Where promotion writes the savepoints it carries, under the downstream's staging prefix
/// (`<staging>carried-savepoints/<from>/<job>/<digest16>/`, or `<digest16>-<n>/` when the
/// upstream directory came to hold another savepoint; `promotion::carry`).
pub const CARRIED_PREFIX: &str = "carried-savepoints";

/// Where a savepoint copy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Triggered by dli-gitops on the running job before it stopped it.
    Triggered,
    /// Taken by the service when dli-gitops stopped the job with a savepoint.
    Stop,
    /// Held by a stopped job (taken before dli-gitops managed it) and copied before a restart.
    Held,
    /// Carried from another target (promotion).
    Carried,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Triggered => "triggered",
            Origin::Stop => "stop",
            Origin::Held => "held",
            Origin::Carried => "carried",
        }
    }
}

/// `obs://bucket/prefix/` → `obs://bucket/prefix/dli-gitops/savepoints/<target>/`: every copy of
/// one target lives below it (retention never looks elsewhere).
pub fn target_prefix(base: &str, target: &str) -> String {
    format!("{}{SAVEPOINTS_FOLDER}/{target}/", directory(base))
}

/// The directory of a new copy of `job`'s savepoint, named by the time it is made (UTC,
/// milliseconds) and its origin.
pub fn copy_directory(
    base: &str,
    target: &str,
    job: &str,
    now: DateTime<Utc>,
    origin: Origin,
) -> String {
    format!(
        "{}{job}/{}-{}/",
        target_prefix(base, target),
        now.format("%Y%m%dT%H%M%S%3fZ"),
        origin.as_str()
    )
}

/// Where a savepoint is triggered before a stop: the service's own savepoint (deleted when the
/// job restarts), copied into the catalog right after.
/// `<base>dli-gitops/triggered/<target>/<job>/<time>/`.
pub fn trigger_directory(base: &str, target: &str, job: &str, now: DateTime<Utc>) -> String {
    format!(
        "{}{TRIGGERED_FOLDER}/{target}/{job}/{}/",
        directory(base),
        now.format("%Y%m%dT%H%M%S%3fZ")
    )
}

/// Whether `path` is a directory strictly under the target's prefix (no `.`/`..` segments, no
/// other bucket): the only places dli-gitops may delete a savepoint copy.
pub fn is_ours(path: &str, base: &str, target: &str) -> bool {
    is_strictly_under(path, &target_prefix(base, target))
}

/// Whether `path`, as a directory, is strictly under the directory `prefix`, with no empty,
/// `.` or `..` segment after it.
pub fn is_strictly_under(path: &str, prefix: &str) -> bool {
    let path = directory(path);
    path.len() > prefix.len()
        && path.starts_with(prefix)
        && path[prefix.len()..]
            .trim_end_matches('/')
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// `obs://bucket/dir` → `obs://bucket/dir/` (a bare `bucket/dir` gets the `obs://` scheme).
pub fn directory(path: &str) -> String {
    let trimmed = path.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("obs://{}", trimmed.trim_start_matches('/'))
    };
    if with_scheme.ends_with('/') {
        with_scheme
    } else {
        format!("{with_scheme}/")
    }
}

/// Whether two savepoint directories name the same place (scheme and trailing `/` aside).
pub fn same_directory(left: &str, right: &str) -> bool {
    directory(left) == directory(right)
}

/// What a complete savepoint (or copy) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SavepointSize {
    pub objects: u64,
    pub bytes: u64,
}

/// Why a savepoint could not be read, copied or verified.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("savepoint {path} holds no `_metadata` file, so it is not a complete savepoint")]
    Incomplete { path: String },
    #[error(
        "the copy {copy} of savepoint {source_path} does not match it: {problem}; the copy is not used"
    )]
    Mismatch {
        source_path: String,
        copy: String,
        problem: String,
    },
    #[error("{what} {path}: {source}")]
    Cloud {
        what: &'static str,
        path: String,
        #[source]
        source: CloudError,
    },
}

impl CopyError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CopyError::Cloud { source, .. } if source.is_retryable())
    }
}

/// The size of the savepoint in `store` (a store opened at its directory), or `None` when it
/// holds no `_metadata` (absent, or not complete yet).
pub async fn inspect(store: &ObjectStore) -> Result<Option<SavepointSize>, CloudError> {
    let entries = store.list_sizes("").await?;
    if !entries.iter().any(|(key, _)| key == SAVEPOINT_METADATA) {
        return Ok(None);
    }
    Ok(Some(SavepointSize {
        objects: entries.len() as u64,
        bytes: entries.iter().map(|(_, size)| size).sum(),
    }))
}

/// Turns a cloud error while `what` on `path` into a [`CopyError::Cloud`].
fn cloud_error(what: &'static str, path: &str) -> impl FnOnce(CloudError) -> CopyError {
    let path = path.to_string();
    move |error: CloudError| CopyError::Cloud {
        what,
        path,
        source: error,
    }
}

/// Copies the savepoint in `source` to `destination` (`_metadata` last), then verifies the copy:
/// the same keys with the same sizes, and `_metadata` identical byte for byte. A destination
/// that already holds a verified copy is not copied again.
pub async fn copy_and_verify(
    source: &ObjectStore,
    destination: &ObjectStore,
) -> Result<SavepointSize, CopyError> {
    let source_path = source.url_of("");
    let copy_path = destination.url_of("");
    let mut entries = source
        .list_sizes("")
        .await
        .map_err(cloud_error("listing savepoint", &source_path))?;
    if !entries.iter().any(|(key, _)| key == SAVEPOINT_METADATA) {
        return Err(CopyError::Incomplete { path: source_path });
    }
    let existing = destination
        .list_sizes("")
        .await
        .map_err(cloud_error("listing the copy", &copy_path))?;
    if existing != entries {
        // `_metadata` last: a copy cut short is never mistaken for a complete savepoint.
        entries.sort_by_key(|(key, _)| key == SAVEPOINT_METADATA);
        if existing.iter().any(|(key, _)| key == SAVEPOINT_METADATA) {
            destination
                .delete(SAVEPOINT_METADATA)
                .await
                .map_err(cloud_error("resetting the copy", &copy_path))?;
        }
        for (key, _) in &entries {
            let bytes: Bytes = source
                .get(key)
                .await
                .map_err(cloud_error("reading savepoint file of", &source_path))?;
            destination
                .put(key, bytes)
                .await
                .map_err(cloud_error("writing savepoint file into", &copy_path))?;
        }
    }
    verify(source, destination).await
}

/// Compares a copy with its source: keys and sizes, then `_metadata` byte for byte.
pub async fn verify(
    source: &ObjectStore,
    destination: &ObjectStore,
) -> Result<SavepointSize, CopyError> {
    let source_path = source.url_of("");
    let copy_path = destination.url_of("");
    let mismatch = |problem: String| CopyError::Mismatch {
        source_path: source_path.clone(),
        copy: copy_path.clone(),
        problem,
    };
    let expected = source
        .list_sizes("")
        .await
        .map_err(cloud_error("listing savepoint", &source_path))?;
    let found = destination
        .list_sizes("")
        .await
        .map_err(cloud_error("listing the copy", &copy_path))?;
    if expected != found {
        let missing: Vec<&str> = expected
            .iter()
            .filter(|entry| !found.contains(entry))
            .map(|(key, _)| key.as_str())
            .collect();
        return Err(mismatch(format!(
            "objects missing or of another size: {}",
            if missing.is_empty() {
                "(extra objects in the copy)".to_string()
            } else {
                missing.join(", ")
            }
        )));
    }
    let original = source
        .get(SAVEPOINT_METADATA)
        .await
        .map_err(cloud_error("reading _metadata of", &source_path))?;
    let copied = destination
        .get(SAVEPOINT_METADATA)
        .await
        .map_err(cloud_error("reading _metadata of", &copy_path))?;
    if original != copied {
        return Err(mismatch("`_metadata` differs".to_string()));
    }
    Ok(SavepointSize {
        objects: found.len() as u64,
        bytes: found.iter().map(|(_, size)| size).sum(),
    })
}

/// One catalog entry, with the target it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogEntry {
    pub target: String,
    #[serde(flatten)]
    pub entry: SavepointEntry,
}

impl CatalogEntry {
    pub fn seq(&self) -> u64 {
        self.entry.seq
    }
    pub fn path(&self) -> &str {
        &self.entry.record.path
    }
    pub fn job(&self) -> &str {
        &self.entry.record.job
    }
}

/// The catalog, oldest first, optionally for one target and one job (by journal key).
pub fn catalog(state: &JournalState, target: Option<&str>, job: Option<&str>) -> Vec<CatalogEntry> {
    let mut entries: Vec<CatalogEntry> = state
        .targets
        .iter()
        .filter(|(name, _)| target.is_none_or(|wanted| wanted == name.as_str()))
        .flat_map(|(name, state)| {
            state
                .savepoints
                .iter()
                .filter(|entry| job.is_none_or(|wanted| wanted == entry.record.job))
                .map(|entry| CatalogEntry {
                    target: name.clone(),
                    entry: entry.clone(),
                })
        })
        .collect();
    entries.sort_by_key(|entry| entry.entry.seq);
    entries
}

/// How many catalog entries the status API and page show per target (newest first).
pub const STATUS_ENTRIES: usize = 50;

/// The `savepoints` section of `GET /api/v1/targets/{t}`: the count, the total size and the
/// newest entries (at most [`STATUS_ENTRIES`]), newest first.
pub fn status_section(state: &JournalState, target: &str) -> serde_json::Value {
    let entries = catalog(state, Some(target), None);
    let total_bytes: u64 = entries
        .iter()
        .map(|entry| entry.entry.record.size_bytes)
        .sum();
    let newest: Vec<&CatalogEntry> = entries.iter().rev().take(STATUS_ENTRIES).collect();
    serde_json::json!({
        "count": entries.len(),
        "total_bytes": total_bytes,
        "entries": newest,
    })
}

/// The newest verified copy of `job` in `target`.
pub fn latest_verified(state: &JournalState, target: &str, job: &str) -> Option<CatalogEntry> {
    catalog(state, Some(target), Some(job))
        .into_iter()
        .rev()
        .find(|entry| entry.entry.record.verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_live_under_the_target_prefix_and_nothing_else_is_ours() {
        let base = "obs://backups/dev";
        let now = DateTime::parse_from_rfc3339("2026-12-04T22:01:02.345Z")
            .unwrap()
            .with_timezone(&Utc);
        let copy = copy_directory(base, "dev", "clicks", now, Origin::Stop);
        assert_eq!(
            copy,
            "obs://backups/dev/dli-gitops/savepoints/dev/clicks/20261204T220102345Z-stop/"
        );
        assert!(is_ours(&copy, base, "dev"));
        assert!(is_ours(copy.trim_end_matches('/'), "backups/dev/", "dev"));
        for foreign in [
            "obs://backups/dev/dli-gitops/savepoints/dev/",
            "obs://backups/dev/dli-gitops/savepoints/prod/clicks/x/",
            "obs://backups/dev/dli-gitops/savepoints/dev/../../x/",
            "obs://other/dev/dli-gitops/savepoints/dev/clicks/x/",
            "obs://backups/dev/jobs/savepoint/1/x/",
        ] {
            assert!(!is_ours(foreign, base, "dev"), "{foreign}");
        }
        assert!(same_directory("bkt/a", "obs://bkt/a/"));
    }

    fn record(seq: u64, target: &str, body: crate::journal::RecordBody) -> crate::journal::Record {
        crate::journal::Record {
            v: crate::journal::FORMAT_VERSION,
            seq,
            time: DateTime::from_timestamp_millis(1_764_800_000_000 + seq as i64).unwrap(),
            target: target.to_string(),
            body,
        }
    }

    fn copy(job: &str, origin: &str, verified: bool) -> crate::journal::RecordBody {
        crate::journal::RecordBody::Savepoint(crate::journal::SavepointRecord {
            job: job.to_string(),
            path: format!("obs://b/dev/dli-gitops/savepoints/dev/{job}/{origin}/"),
            origin: origin.to_string(),
            size_bytes: 10,
            objects: 1,
            verified,
            ..Default::default()
        })
    }

    #[test]
    fn the_catalog_is_a_fold_of_savepoint_records_and_reads_back_as_json() {
        let mut state = JournalState::default();
        let records = [
            record(1, "dev", copy("a", "triggered", true)),
            record(2, "dev", copy("a", "stop", true)),
            record(3, "prod", copy("a", "carried", true)),
            record(4, "dev", copy("b", "stop", false)),
        ];
        for one in &records {
            state.apply(one);
        }
        let all = catalog(&state, None, None);
        assert_eq!(
            all.iter().map(CatalogEntry::seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(catalog(&state, Some("dev"), Some("a")).len(), 2);
        assert_eq!(
            latest_verified(&state, "dev", "a").map(|e| e.seq()),
            Some(2)
        );
        assert_eq!(latest_verified(&state, "dev", "b"), None, "not verified");

        // The record kind round-trips through the line encoding; the state through JSON.
        let line = serde_json::to_string(&records[1]).unwrap();
        assert!(line.contains(r#""kind":"savepoint""#), "{line}");
        let decoded: crate::journal::Record = serde_json::from_str(&line).unwrap();
        assert_eq!(decoded, records[1]);
        let text = serde_json::to_string(&state).unwrap();
        let back: JournalState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
        // A state written before the catalog existed reads as an empty catalog.
        let old: JournalState =
            serde_json::from_str(r#"{"last_seq":7,"targets":{"dev":{"jobs":{}}}}"#).unwrap();
        assert!(catalog(&old, None, None).is_empty());

        let section = status_section(&state, "dev");
        assert_eq!(section["count"], 3);
        assert_eq!(section["total_bytes"], 30);
        assert_eq!(section["entries"][0]["seq"], 4, "newest first");
        assert_eq!(section["entries"][0]["target"], "dev");
        let page = crate::server::html::savepoints_section(
            &state,
            &["dev".to_string(), "prod".to_string()],
        );
        assert!(page.starts_with("<h2>Savepoints</h2>"), "{page}");
        assert_eq!(page.matches("<tr><td>").count(), 4, "{page}");
        let empty =
            crate::server::html::savepoints_section(&JournalState::default(), &["dev".to_string()]);
        assert!(
            empty.contains("No savepoints in the catalog yet."),
            "{empty}"
        );
    }
}
