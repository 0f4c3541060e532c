//! Observing a target: list page by page, read a job's detail only when its `update_time` or
//! status moved since the journal's cached observation, and record an `Observed` entry only
//! for those. A pass over an unchanged target costs one call per list page.
//!
//! # Design and invariants
//!
//! * One confirming read per change. The daemon's look after a pass that acted
//!   (`apply::confirm_with`) plans from the observation the pass started with, each Flink job it
//!   acted on read again by its detail (the live id the action reported, else the journal's); a "no
//!   such job" answer drops it. A pass that acted on DLF jobs or left intents open is looked at with
//!   a full dry run. The next scheduled pass lists every page.
//!
//! Cold observation from listings, tags in bulk, DLF listing per job type, scheduled DLF jobs and DLF import tasks that end `WARNING`: docs/service-fidelity.md ("DLI listing and tags", "DataArts Factory"), with their sources.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::ApplyError;
use super::ledger::{CachedObservation, DLF_KEY_PREFIX, Ledger, ObservationEntry, journal_key};
use super::live::{
    BulkTags, ListedConfig, ListedDlfJob, ListedFlinkJob, Listing, LiveService, ServiceFailure,
};
use crate::model::{JobKind, ObservedDlfJob, ObservedFlinkJob, ObservedJobs};

/// Job details read concurrently during one observation.
const DETAIL_READS_AT_ONCE: usize = 8;
/// Jobs per page of the bulk tag read (`resource-instances/filter`'s default `limit`).
const BULK_TAG_PAGE: usize = 1000;
/// Observation records written at once (they share fsyncs).
const RECORDS_AT_ONCE: usize = 64;

/// The journal's observation of a listed job is still good: same live id, `update_time` and
/// status, and no unresolved intent names it.
fn cache_is_fresh<J: Ledger>(ledger: &J, scope: &ObserveScope, listed: &ListedFlinkJob) -> bool {
    let key = journal_key(JobKind::FlinkSql, &listed.name);
    !scope.refresh.contains(&key)
        && ledger
            .cached(&key)
            .is_some_and(|cached| matches_listing(&cached, listed))
}

/// A cached observation still matches the listed job: same live id, `update_time` and status.
fn matches_listing(cached: &CachedObservation, listed: &ListedFlinkJob) -> bool {
    cached.live_id == Some(listed.id)
        && cached.update_time == Some(listed.update_time)
        && cached.status.as_deref() == Some(listed.status.as_str())
}

/// The journal record of a Flink job's observation.
fn observation_of(key: String, job: &ObservedFlinkJob) -> ObservationEntry {
    ObservationEntry {
        job: key,
        live_id: Some(job.id),
        update_time: Some(job.update_time),
        status: Some(job.status.as_str().to_string()),
        snapshot: serde_json::to_value(job).unwrap_or_default(),
    }
}

/// What one observation cost and found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ObserveReport {
    /// Flink list calls (pages).
    pub flink_list_calls: u32,
    /// Flink detail calls.
    pub flink_detail_calls: u32,
    /// Flink tag calls: the bulk read's pages, and per-job reads when it was refused or left a
    /// job out.
    pub flink_tag_calls: u32,
    /// Flink jobs observed from the listing's configuration (`show_detail`), no detail read.
    pub from_listing: u32,
    /// Flink jobs whose listing entry lacked a readable configuration (their details were read).
    pub flink_listing_fallbacks: u32,
    /// DLF list calls (pages); 0 when DLF was not observed.
    pub dlf_list_calls: u32,
    /// DLF detail calls.
    pub dlf_detail_calls: u32,
    /// Jobs served from the journal's cache.
    pub cached: u32,
    /// `Observed` records written.
    pub recorded: u32,
}

impl ObserveReport {
    /// Every call the observation made.
    pub fn total_calls(&self) -> u32 {
        self.flink_list_calls
            + self.flink_detail_calls
            + self.flink_tag_calls
            + self.dlf_list_calls
            + self.dlf_detail_calls
    }
}

/// What to observe.
#[derive(Debug, Clone, Default)]
pub(crate) struct ObserveScope {
    /// List DLF jobs too.
    pub dlf: bool,
    /// Journal keys whose detail is read whatever the cache says (jobs with unresolved intents).
    pub refresh: BTreeSet<String>,
}

/// A listed job whose configuration came with the listing: the job, its list entry, its
/// journal key, and whether its name is listed once (only then is it cached).
type FromListing<'a> = (ObservedFlinkJob, &'a ListedFlinkJob, String, bool);
/// A listed job whose detail is read: its list entry, journal key and whether it is unique.
type ToRead<'a> = (&'a ListedFlinkJob, String, bool);

/// The error of observing `target` while doing `what`.
fn observe_error(target: &str, what: &'static str) -> impl FnOnce(ServiceFailure) -> ApplyError {
    let target = target.to_string();
    move |source| ApplyError::Observe {
        target,
        what,
        source,
    }
}

/// The service answered that the job does not exist.
fn is_not_found(failure: &ServiceFailure) -> bool {
    failure
        .code
        .as_deref()
        .is_some_and(|code| crate::cloud::error::NOT_FOUND_CODES.contains(&code))
}

pub(crate) async fn observe_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    scope: &ObserveScope,
) -> Result<(ObservedJobs, ObserveReport), ApplyError> {
    let mut report = ObserveReport::default();
    let mut observed = ObservedJobs::default();
    let listing = list_flink(live, ledger, scope).await?;
    report.flink_list_calls = listing.calls;
    let (mut from_listing, to_read) =
        sort_listed(ledger, scope, &listing.jobs, &mut observed, &mut report);
    tag_listed(
        live,
        ledger.target(),
        listing.jobs.len(),
        &mut from_listing,
        &mut report,
    )
    .await?;
    record_listed(ledger, from_listing, &mut observed, &mut report).await?;
    read_details(live, ledger, to_read, &mut observed, &mut report).await?;
    recheck_unlisted_flink_jobs(live, ledger, &mut observed, &mut report).await?;
    if scope.dlf {
        observe_dlf(live, ledger, scope, &mut observed, &mut report).await?;
    }
    observed
        .flink
        .sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    observed.dlf.sort_by(|a, b| a.name.cmp(&b.name));
    tracing::debug!(
        target_name = ledger.target(),
        flink_jobs = observed.flink.len(),
        dlf_jobs = observed.dlf.len(),
        calls = report.total_calls(),
        cached = report.cached,
        "Observed the target."
    );
    Ok((observed, report))
}

/// Lists the Flink jobs. Configurations make every page about twice as large, so they are
/// asked for only when the journal holds no observation of this target's Flink jobs (first
/// contact, adoption, a lost state directory), or when a plain listing shows more moved jobs
/// than a listing with configurations and one bulk tag read would cost (each moved job costs
/// a detail and a tag read otherwise).
async fn list_flink<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    scope: &ObserveScope,
) -> Result<Listing<(ListedFlinkJob, ListedConfig)>, ApplyError> {
    let target = ledger.target();
    let cold = !ledger.view().flink.keys().any(|name| {
        ledger
            .cached(&journal_key(JobKind::FlinkSql, name))
            .is_some()
    });
    if cold {
        return live
            .list_flink_jobs_with_config()
            .await
            .map_err(observe_error(target, "listing Flink jobs"));
    }
    let plain = live
        .list_flink_jobs()
        .await
        .map_err(observe_error(target, "listing Flink jobs"))?;
    let moved = plain
        .jobs
        .iter()
        .filter(|listed| !cache_is_fresh(ledger, scope, listed))
        .count();
    if moved * 2 > plain.calls as usize + 1 {
        let mut detailed = live
            .list_flink_jobs_with_config()
            .await
            .map_err(observe_error(target, "listing Flink jobs"))?;
        detailed.calls += plain.calls;
        return Ok(detailed);
    }
    Ok(Listing {
        jobs: plain
            .jobs
            .into_iter()
            .map(|job| (job, ListedConfig::NotAsked))
            .collect(),
        calls: plain.calls,
    })
}

/// Sorts the listed jobs: served from the journal's cache (pushed to `observed` now), observed
/// from the listing's configuration, or read by their detail (no usable configuration; those
/// are counted and warned about).
fn sort_listed<'a, J: Ledger>(
    ledger: &J,
    scope: &ObserveScope,
    listed_jobs: &'a [(ListedFlinkJob, ListedConfig)],
    observed: &mut ObservedJobs,
    report: &mut ObserveReport,
) -> (Vec<FromListing<'a>>, Vec<ToRead<'a>>) {
    let mut name_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (job, _) in listed_jobs {
        *name_counts.entry(job.name.as_str()).or_default() += 1;
    }
    let mut to_read = Vec::new();
    let mut from_listing = Vec::new();
    // Jobs whose listing lacked a readable configuration: (name, what was wrong).
    let mut unusable: Vec<(&str, String)> = Vec::new();
    for (listed, config) in listed_jobs {
        let key = journal_key(JobKind::FlinkSql, &listed.name);
        // Two live jobs with one name would overwrite each other's cache entry on every pass;
        // the planner leaves such jobs alone, so they are read but not cached.
        let unique = name_counts.get(listed.name.as_str()) == Some(&1);
        let cached = if unique && !scope.refresh.contains(&key) {
            ledger.cached(&key).and_then(|cached| {
                matches_listing(&cached, listed)
                    .then(|| serde_json::from_value::<ObservedFlinkJob>(cached.snapshot).ok())
                    .flatten()
            })
        } else {
            None
        };
        if let Some(job) = cached {
            report.cached += 1;
            observed.flink.push(job);
            continue;
        }
        match config {
            ListedConfig::Read(job) if job.id == listed.id => {
                from_listing.push((job.as_ref().clone(), listed, key, unique));
            }
            ListedConfig::NotAsked => to_read.push((listed, key, unique)),
            ListedConfig::Read(_) => {
                unusable.push((&listed.name, "the entry's ids disagree".to_string()));
                to_read.push((listed, key, unique));
            }
            ListedConfig::Missing => {
                unusable.push((&listed.name, "no job_config".to_string()));
                to_read.push((listed, key, unique));
            }
            ListedConfig::Unreadable(problem) => {
                unusable.push((&listed.name, problem.clone()));
                to_read.push((listed, key, unique));
            }
        }
    }
    if let Some((first, problem)) = unusable.first() {
        // Never read as "no configuration": those jobs' details are read instead.
        tracing::warn!(
            target_name = ledger.target(),
            jobs = unusable.len(),
            first_job = %first,
            problem = %problem,
            "The job list did not carry a readable configuration for some jobs; reading their details instead."
        );
    }
    report.flink_listing_fallbacks = unusable.len() as u32;
    (from_listing, to_read)
}

/// Configurations from the listing still need their tags (a list entry carries none): one
/// bulk read for all of them, job by job only for those it leaves out or when it is refused.
/// The bulk read costs one call per page of its answer; a pass that needs fewer jobs' tags
/// than that (a job or two changed) reads them one by one: as many calls, fewer bytes.
async fn tag_listed<L: LiveService>(
    live: &L,
    target: &str,
    listed_count: usize,
    from_listing: &mut [FromListing<'_>],
    report: &mut ObserveReport,
) -> Result<(), ApplyError> {
    let mut tags_one_by_one = Vec::new();
    let bulk_pages = listed_count.div_ceil(BULK_TAG_PAGE).max(1);
    if !from_listing.is_empty() && from_listing.len() <= bulk_pages {
        tags_one_by_one.extend(0..from_listing.len());
    } else if !from_listing.is_empty() {
        let bulk = live
            .flink_tags_of_every_job()
            .await
            .map_err(observe_error(target, "reading the Flink jobs' tags"))?;
        let tags = match bulk {
            BulkTags::Read { tags, calls } => {
                report.flink_tag_calls += calls;
                Some(tags)
            }
            BulkTags::Refused { reason, calls } => {
                report.flink_tag_calls += calls;
                tracing::warn!(target_name = target, reason = %reason,
                    "The bulk tag read was refused; reading each job's tags on its own.");
                None
            }
        };
        for (index, (job, ..)) in from_listing.iter_mut().enumerate() {
            match tags.as_ref().and_then(|tags| tags.get(&job.id)) {
                Some(found) => job.config.tags = found.clone(),
                None => tags_one_by_one.push(index),
            }
        }
    }
    let tag_reads: Vec<_> = tags_one_by_one
        .iter()
        .map(|&index| {
            let job_id = from_listing[index].0.id;
            let observe_error = observe_error(target, "reading a Flink job's tags");
            async move {
                let tags = live.flink_job_tags(job_id).await.map_err(observe_error)?;
                Ok::<_, ApplyError>((index, tags))
            }
        })
        .collect();
    let read_tags: Vec<(usize, BTreeMap<String, String>)> = futures::stream::iter(tag_reads)
        .buffered(DETAIL_READS_AT_ONCE)
        .try_collect()
        .await?;
    for (index, tags) in read_tags {
        report.flink_tag_calls += 1;
        from_listing[index].0.config.tags = tags;
    }
    Ok(())
}

/// Observes the jobs whose configuration came with the listing. Their observations are
/// journaled many at a time, so they share fsyncs (group commit).
async fn record_listed<J: Ledger>(
    ledger: &J,
    from_listing: Vec<FromListing<'_>>,
    observed: &mut ObservedJobs,
    report: &mut ObserveReport,
) -> Result<(), ApplyError> {
    let records: Vec<_> = from_listing
        .into_iter()
        .map(|(job, listed, key, unique)| record_as_listed(ledger, job, listed, key, unique))
        .collect();
    let listed_jobs: Vec<(ObservedFlinkJob, bool)> = futures::stream::iter(records)
        .buffered(RECORDS_AT_ONCE)
        .try_collect()
        .await?;
    for (job, recorded) in listed_jobs {
        report.from_listing += 1;
        report.recorded += u32::from(recorded);
        observed.flink.push(job);
    }
    Ok(())
}

/// Reads the details of the jobs the cache and the listing could not serve, a few at a time;
/// their journal records share fsyncs (group commit). Collected first, so the observation's
/// future stays `Send` (see `execute::Executor::run`).
async fn read_details<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    to_read: Vec<ToRead<'_>>,
    observed: &mut ObservedJobs,
    report: &mut ObserveReport,
) -> Result<(), ApplyError> {
    let reads: Vec<_> = to_read
        .into_iter()
        .map(|(listed, key, unique)| {
            let observe_error = observe_error(ledger.target(), "reading a Flink job's detail");
            async move {
                let job = live.flink_job(listed.id).await.map_err(observe_error)?;
                record_as_listed(ledger, job, listed, key, unique).await
            }
        })
        .collect();
    let read: Vec<(ObservedFlinkJob, bool)> = futures::stream::iter(reads)
        .buffered(DETAIL_READS_AT_ONCE)
        .try_collect()
        .await?;
    for (job, recorded) in read {
        report.flink_detail_calls += 1;
        report.recorded += u32::from(recorded);
        observed.flink.push(job);
    }
    Ok(())
}

/// Takes the fields the cache is keyed on from the list (the fresher source), and journals
/// the observation when the job's name is listed once. Answers the job and whether it was
/// recorded.
async fn record_as_listed<J: Ledger>(
    ledger: &J,
    mut job: ObservedFlinkJob,
    listed: &ListedFlinkJob,
    key: String,
    unique: bool,
) -> Result<(ObservedFlinkJob, bool), ApplyError> {
    job.update_time = listed.update_time;
    job.status = listed.status.clone();
    if unique {
        ledger.observed(observation_of(key, &job)).await?;
    }
    Ok((job, unique))
}

/// Observes the DLF jobs: listed, each definition read again only when the list's
/// `lastUpdateTime` or scheduling status moved since the cached observation.
async fn observe_dlf<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    scope: &ObserveScope,
    observed: &mut ObservedJobs,
    report: &mut ObserveReport,
) -> Result<(), ApplyError> {
    let listing = live
        .list_dlf_jobs()
        .await
        .map_err(observe_error(ledger.target(), "listing DLF jobs"))?;
    report.dlf_list_calls = listing.calls;
    for listed in &listing.jobs {
        let key = journal_key(JobKind::Dlf, &listed.name);
        let previous = ledger.cached(&key);
        let fresh = previous.as_ref().filter(|cached| {
            !scope.refresh.contains(&key)
                && listed.last_update.is_some()
                && cached.update_time == listed.last_update
                && cached.status == listed.status
        });
        let definition = match fresh {
            Some(cached) => {
                report.cached += 1;
                let entry = DlfCacheEntry::from_snapshot(cached.snapshot.clone());
                // Listed scheduled: a start owed since a failed or interrupted pass is paid,
                // even when nothing else moved (a stop that failed before taking effect).
                if entry.restart_schedule
                    && crate::model::dlf_status_is_scheduled(listed.status.as_deref())
                {
                    update_dlf_cache(ledger, &key, |entry| {
                        entry.restart_schedule = false;
                        true
                    })
                    .await?;
                }
                entry.definition
            }
            None => {
                report.dlf_detail_calls += 1;
                let definition = read_dlf_job(live, ledger, listed, key, previous).await?;
                report.recorded += 1;
                definition
            }
        };
        observed.dlf.push(ObservedDlfJob {
            name: listed.name.clone(),
            definition,
            last_update: listed.last_update,
            status: listed.status.clone(),
        });
    }
    Ok(())
}

/// Reads a DLF job's definition and journals the observation. What the journal knows besides
/// the definition (the digest read right after our import, export's equivalent digests)
/// carries over; a job listed as scheduled owes no restart of its schedule any more.
async fn read_dlf_job<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    listed: &ListedDlfJob,
    key: String,
    previous: Option<CachedObservation>,
) -> Result<serde_json::Value, ApplyError> {
    let definition = live.dlf_job(&listed.name).await.map_err(observe_error(
        ledger.target(),
        "reading a DLF job's definition",
    ))?;
    let mut entry = previous
        .map(|cached| DlfCacheEntry::from_snapshot(cached.snapshot))
        .unwrap_or_default();
    entry.definition = definition.clone();
    if crate::model::dlf_status_is_scheduled(listed.status.as_deref()) {
        entry.restart_schedule = false;
    }
    ledger
        .observed(ObservationEntry {
            job: key,
            live_id: None,
            update_time: listed.last_update,
            status: listed.status.clone(),
            snapshot: entry.to_value(),
        })
        .await?;
    Ok(definition)
}

/// The look after a pass acted: the observation the pass planned from, with each Flink job it
/// acted on read again (its detail, by the live id the action reported or the journal knows),
/// instead of listing every page. A job whose read answers "no such job" is gone. The next
/// scheduled pass lists as usual.
pub(crate) async fn reobserve_acted_on<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    mut observed: ObservedJobs,
    acted_on: &[(String, Option<i64>)],
) -> Result<(ObservedJobs, ObserveReport), ApplyError> {
    let mut report = ObserveReport::default();
    for (name, reported_id) in acted_on {
        let key = journal_key(JobKind::FlinkSql, name);
        let job_id = reported_id
            .or_else(|| ledger.known_live_id(&key))
            .or_else(|| {
                observed
                    .flink
                    .iter()
                    .find(|job| job.name == *name)
                    .map(|job| job.id)
            });
        let Some(job_id) = job_id else {
            // Never created (the action failed before its create): nothing live to read.
            continue;
        };
        report.flink_detail_calls += 1;
        let found = match live.flink_job(job_id).await {
            Ok(job) if job.name == *name => Some(job),
            Ok(_) => None,
            Err(failure) if is_not_found(&failure) => None,
            Err(failure) => {
                return Err(ApplyError::Observe {
                    target: ledger.target().to_string(),
                    what: "reading a job the pass acted on",
                    source: failure,
                });
            }
        };
        observed.flink.retain(|job| job.name != *name);
        if let Some(job) = found {
            ledger.observed(observation_of(key, &job)).await?;
            report.recorded += 1;
            observed.flink.push(job);
        }
    }
    observed
        .flink
        .sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    Ok((observed, report))
}

/// Whether DLF needs observing: git declares DLF jobs, or the journal remembers some.
pub(crate) fn dlf_in_scope<J: Ledger>(ledger: &J, desired_dlf_jobs: usize) -> bool {
    desired_dlf_jobs > 0 || !ledger.view().dlf.is_empty() || has_dlf_pending(ledger)
}

fn has_dlf_pending<J: Ledger>(ledger: &J) -> bool {
    ledger
        .pending()
        .iter()
        .any(|pending| pending.job.starts_with(DLF_KEY_PREFIX))
}

/// The journal's cached observation of a DLF job (the `observed` record's snapshot): the live
/// definition, and what the journal knows about it. Older records held the bare definition;
/// they read as a definition with nothing known besides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
pub(crate) struct DlfCacheEntry {
    /// Format marker (1).
    pub dlf_cache: u32,
    pub definition: serde_json::Value,
    /// [`crate::plan::dlf_definition_digest`] of the definition read right after our last
    /// import (or at adoption): the baseline drift is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_digest: Option<String>,
    /// Digests of repositories `export` wrote from this definition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equivalent_digests: Vec<String>,
    /// An interrupted pass stopped the schedule and meant to start it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_schedule: bool,
}

/// Records in a DLF job's cached observation that its schedule was stopped on the way to an
/// import and is owed a start (`restart_schedule`); the planner starts it until an observation
/// sees it scheduled. Nothing is recorded for a job the journal has no observation of.
pub(crate) async fn remember_dlf_restart_owed<J: Ledger>(
    ledger: &J,
    key: &str,
) -> Result<(), ApplyError> {
    update_dlf_cache(ledger, key, |entry| {
        if entry.restart_schedule {
            return false;
        }
        entry.restart_schedule = true;
        true
    })
    .await
}

/// Rewrites a DLF job's cached observation with `change` made to its entry (the cached update
/// time and status kept). Nothing is written when the journal has no observation of the job,
/// or when `change` answers that it changed nothing.
pub(crate) async fn update_dlf_cache<J: Ledger>(
    ledger: &J,
    key: &str,
    change: impl FnOnce(&mut DlfCacheEntry) -> bool,
) -> Result<(), ApplyError> {
    let Some(cached) = ledger.cached(key) else {
        return Ok(());
    };
    let mut entry = DlfCacheEntry::from_snapshot(cached.snapshot);
    if !change(&mut entry) {
        return Ok(());
    }
    ledger
        .observed(ObservationEntry {
            job: key.to_string(),
            live_id: None,
            update_time: cached.update_time,
            status: cached.status,
            snapshot: entry.to_value(),
        })
        .await?;
    Ok(())
}

impl DlfCacheEntry {
    pub(crate) fn from_snapshot(snapshot: serde_json::Value) -> DlfCacheEntry {
        if snapshot.get("dlf_cache").is_some()
            && let Ok(entry) = serde_json::from_value::<DlfCacheEntry>(snapshot.clone())
        {
            return entry;
        }
        DlfCacheEntry {
            dlf_cache: 1,
            definition: snapshot,
            ..DlfCacheEntry::default()
        }
    }

    pub(crate) fn to_value(&self) -> serde_json::Value {
        let mut entry = self.clone();
        entry.dlf_cache = 1;
        serde_json::to_value(&entry).unwrap_or_default()
    }
}

/// An implausible listing: a well-formed list (empty, or much shorter) that lacks jobs the
/// journal knows are live. Planned as is, every such job would become a create (or an import
/// over a job that still exists). Each one is looked up by its id instead: found, it is
/// observed as it is (and the gap is said in a warning); a "no such job" answer means it is
/// gone; any other answer ends the observation, since nothing can be decided from it.
async fn recheck_unlisted_flink_jobs<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    observed: &mut ObservedJobs,
    report: &mut ObserveReport,
) -> Result<(), ApplyError> {
    let listed: BTreeSet<&str> = observed.flink.iter().map(|job| job.name.as_str()).collect();
    let unlisted: Vec<(String, i64)> = ledger
        .view()
        .flink
        .iter()
        .filter(|(name, entry)| entry.managed && !listed.contains(name.as_str()))
        .filter_map(|(name, _)| {
            let job_id = ledger.known_live_id(&journal_key(JobKind::FlinkSql, name))?;
            Some((name.clone(), job_id))
        })
        .collect();
    for (name, job_id) in unlisted {
        report.flink_detail_calls += 1;
        match live.flink_job(job_id).await {
            Ok(job) if job.name == name => {
                tracing::warn!(target_name = ledger.target(), job = %name, job_id,
                    "The job list left out a job that exists (read by its id); it is planned as it is, not created again.");
                observed.flink.push(job);
            }
            Ok(_) => {}
            Err(failure) if is_not_found(&failure) => {
                // Gone (deleted outside dli-gitops): the journal forgets its live id, so the
                // next pass does not look it up again.
                record_gone(ledger, &name, job_id).await?;
            }
            Err(failure) => {
                return Err(ApplyError::Observe {
                    target: ledger.target().to_string(),
                    what: "reading a job the list left out",
                    source: failure,
                });
            }
        }
    }
    Ok(())
}

/// Journals that a job the journal knew no longer exists on the service.
async fn record_gone<J: Ledger>(ledger: &J, name: &str, job_id: i64) -> Result<(), ApplyError> {
    use super::ledger::{ActionEffects, OneShot, record_one_shot};
    let observation = format!("gone-{job_id}-{:016x}", rand::random::<u64>());
    record_one_shot(
        ledger,
        OneShot {
            part_of: &observation,
            job: &journal_key(JobKind::FlinkSql, name),
            part: "observed_gone",
            plan_id: None,
            live_id: Some(job_id),
            effects: ActionEffects {
                deleted: true,
                ..ActionEffects::default()
            },
        },
    )
    .await
}
