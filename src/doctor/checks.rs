//! The read-only checks. Each makes at most a few harmless calls; the only writes are one small
//! object per bucket under `<prefix>.dli-gitops-doctor/`, removed at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{Check, OBJECT_PREFIX};
use crate::apply::TargetContext;
use crate::cloud::{CloudError, ListJobsQuery, TransportFailure};
use crate::config::{Service, StorageLocation};

/// The service's documented request limit per user (README "Being a good API citizen").
pub const DOCUMENTED_REQUESTS_PER_SECOND: f64 = 30.0;
/// APIG refuses a signature whose `X-Sdk-Date` is this far from its clock (the emulator's
/// `auth.rs` uses the same 15 minutes).
const SKEW_REFUSED_SECONDS: i64 = 15 * 60;
/// Skew worth a warning: signing still works, but it is drifting.
const SKEW_WARN_SECONDS: i64 = 60;

pub(super) struct ChecksOutcome {
    pub checks: Vec<Check>,
    /// Signed calls work and the project is right: the probe may run.
    pub can_probe: bool,
    /// The queues the target's Flink jobs name, in order of first use.
    pub queues: Vec<String>,
}

/// The server's `Date` of the last answer and our clock when it arrived.
#[derive(Default)]
struct DateSeen(Mutex<Option<(String, chrono::DateTime<chrono::Utc>)>>);

fn skew_seconds(seen: &DateSeen) -> Option<(i64, String)> {
    let guard = seen
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (date, local) = guard.as_ref()?;
    let server = chrono::DateTime::parse_from_rfc2822(date).ok()?;
    Some(((local.timestamp() - server.timestamp()), date.clone()))
}

fn is_permission_denied(error: &CloudError) -> bool {
    matches!(error, CloudError::Service { status: 403, error_code, .. }
        if error_code.as_deref() != Some("APIG.0302"))
        || error.error_code() == Some("DLI.0003")
}

/// The `project id` check's detail when DLI took the id; one the config left out was looked up
/// from IAM, and the detail says which, so the operator can pin it.
fn project_accepted(context: &TargetContext) -> String {
    if context.target.project_id().is_some() {
        return "accepted by DLI".to_string();
    }
    format!(
        "accepted by DLI; no `project_id` configured: looked it up from IAM ({}); set `project_id: {}` to skip the lookup",
        context.live.clients.dli.project_id(),
        context.live.clients.dli.project_id()
    )
}

fn is_wrong_project(error: &CloudError) -> bool {
    error.error_code() == Some("APIG.0302")
}

fn transport(error: &CloudError) -> Option<TransportFailure> {
    match error {
        CloudError::Transport { failure, .. } => Some(*failure),
        _ => None,
    }
}

pub(super) async fn run_checks(context: &TargetContext) -> ChecksOutcome {
    let mut checks = Vec::new();
    let target = &context.target;
    checks.push(rate_limit(context));

    // 1. DLI: reachable, signed calls accepted (clock skew), project id right.
    let (can_probe, queue_list) = dli_checks(context, &mut checks).await;

    // 2. The job repository: the queues its Flink jobs name, whether DLF is in use, buckets.
    let (queues_used, uses_dlf, checkpoint_buckets) = repository_check(context, &mut checks).await;

    // 3. Queues.
    checks.push(queues_check(context, queue_list, &queues_used));

    // 4. DataArts Factory and its workspace.
    let dlf_in_use = uses_dlf || target.workspace.is_some();
    let dlf_listed = dataarts_check(context, dlf_in_use, can_probe, &mut checks).await;

    // 5. Buckets: staging, backups and the jobs' checkpoint buckets, each written and removed.
    bucket_checks(context, checkpoint_buckets, &mut checks).await;

    // 6. IAM permissions: one harmless call per permission where one exists.
    checks.extend(permissions(context, can_probe, dlf_listed).await);

    // 7. IAM endpoint: used for tokens (password credentials) only.
    checks.push(iam_endpoint_check(context, can_probe));

    ChecksOutcome {
        checks,
        can_probe,
        queues: queues_used,
    }
}

/// What the queue list answered: `None` when signed calls failed, else the queues or the error.
type QueueList = Option<Result<Vec<crate::cloud::DliQueue>, String>>;

/// The checks "dli endpoint", "signed calls" and "project id". The queue list is the call: it
/// needs no IAM action ("Querying all queues: /", DLI user guide dli_01_0441). Returns whether
/// the probe may run and what the queue list answered.
async fn dli_checks(context: &TargetContext, checks: &mut Vec<Check>) -> (bool, QueueList) {
    let region = context.target.region().to_string();
    let seen = Arc::new(DateSeen::default());
    let observer: crate::cloud::ExchangeObserver = {
        let seen = Arc::clone(&seen);
        Arc::new(move |exchange: &crate::cloud::Exchange| {
            if let Some((_, date)) = exchange
                .response_headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("date"))
            {
                *seen.0.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((date.clone(), chrono::Utc::now()));
            }
        })
    };
    let dli = &context.live.clients.dli;
    let dli_endpoint = endpoint_text(context, Service::Dli);
    let listed = crate::cloud::observe_exchanges(observer.clone(), dli.list_queues()).await;
    let skew = skew_seconds(&seen);
    let skew_text = skew
        .as_ref()
        .map(|(seconds, _)| format!("clock skew {seconds:+} s against the server's Date"))
        .unwrap_or_else(|| "the server sent no Date header".to_string());
    match &listed {
        Err(error) if transport(error).is_some() => {
            checks.push(Check::fail(
                "dli endpoint",
                format!("{dli_endpoint}: {error}"),
                format!(
                    "check the `endpoints.dli` URL (default https://dli.{region}.myhuaweicloud.com), DNS, proxy and TLS trust from this host"
                ),
            ));
            checks.push(Check::not_checked(
                "signed calls",
                "the DLI endpoint did not answer",
            ));
            checks.push(Check::not_checked(
                "project id",
                "the DLI endpoint did not answer",
            ));
            (false, None)
        }
        other => {
            checks.push(Check::ok(
                "dli endpoint",
                format!("{dli_endpoint} answered (TLS verified where https)"),
            ));
            signed_and_project_checks(context, other, &skew, &skew_text, checks).await
        }
    }
}

/// The checks "signed calls" and "project id" once the DLI endpoint answered the queue list.
async fn signed_and_project_checks(
    context: &TargetContext,
    listed: &Result<Vec<crate::cloud::DliQueue>, CloudError>,
    skew: &Option<(i64, String)>,
    skew_text: &str,
    checks: &mut Vec<Check>,
) -> (bool, QueueList) {
    let region = context.target.region().to_string();
    match listed {
        Err(error) if error.is_auth_failure() => {
            let clock = matches!(skew, Some((s, _)) if s.abs() >= SKEW_REFUSED_SECONDS);
            checks.push(Check::fail(
                "signed calls",
                format!("refused: {error}; {skew_text}"),
                if clock {
                    "this host's clock is more than 15 minutes off the service's: sync it (NTP), then run doctor again".to_string()
                } else {
                    "the access key / secret key pair (or the IAM user's password) is wrong or disabled: check the target's `credentials` (the variables or files they name, e.g. HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK), or create a new key under My Credentials > Access Keys; requests with these credentials are held back locally for 5 minutes".to_string()
                },
            ));
            checks.push(Check::not_checked("project id", "signed calls failed"));
            (false, None)
        }
        Err(error) if is_wrong_project(error) => {
            checks.push(signed_ok(skew, skew_text));
            let found = match super::project::lookup(context).await {
                Ok(ids) if !ids.is_empty() => format!(
                    "; IAM says the project of {region} for these keys is {}: set `project_id: {}`",
                    ids.join(" or "),
                    ids[0]
                ),
                Ok(_) => format!("; IAM lists no project named {region} for these keys"),
                Err(problem) => format!("; looking it up from IAM failed: {problem}"),
            };
            checks.push(Check::fail(
                "project id",
                format!("refused: {error}"),
                format!(
                    "`project_id` is not a project these credentials may use in {region}: copy the id of project `{region}` from My Credentials > API Credentials > Projects (or GET /v3/projects?name={region} on IAM){found}"
                ),
            ));
            (false, None)
        }
        Err(error) if is_permission_denied(error) => {
            checks.push(signed_ok(skew, skew_text));
            checks.push(Check::ok("project id", project_accepted(context)));
            (true, Some(Err(error.to_string())))
        }
        Err(error) => {
            checks.push(signed_ok(skew, skew_text));
            checks.push(Check::warn(
                "project id",
                format!("not confirmed: the queue list failed: {error}"),
                "run doctor again; if it persists, quote the request id to Huawei Cloud support",
            ));
            (false, Some(Err(error.to_string())))
        }
        Ok(queues) => {
            checks.push(signed_ok(skew, skew_text));
            checks.push(Check::ok("project id", project_accepted(context)));
            (true, Some(Ok(queues.clone())))
        }
    }
}

/// The check "job repository": reads the desired jobs; returns the queues the Flink jobs name
/// (in order of first use), whether any DLF job exists, and the checkpoint buckets.
async fn repository_check(
    context: &TargetContext,
    checks: &mut Vec<Check>,
) -> (Vec<String>, bool, BTreeSet<String>) {
    match &crate::pass::desired_for(context, None).await {
        Ok((jobs, _)) => {
            let mut queues = Vec::new();
            let mut buckets = BTreeSet::new();
            for job in &jobs.flink {
                if let Some(queue) = &job.config.queue_name
                    && !queues.contains(queue)
                {
                    queues.push(queue.clone());
                }
                for path in [&job.config.obs_bucket, &job.config.checkpoint_path]
                    .into_iter()
                    .flatten()
                {
                    if let Ok(location) = crate::cloud::ObsLocation::parse(path) {
                        buckets.insert(location.bucket);
                    }
                }
            }
            checks.push(Check::ok(
                "job repository",
                format!(
                    "{} Flink and {} DLF job(s) for environment {}",
                    jobs.flink.len(),
                    jobs.dlf.len(),
                    context.environment
                ),
            ));
            (queues, !jobs.dlf.is_empty(), buckets)
        }
        Err(error) => {
            checks.push(Check::warn(
                "job repository",
                format!("not read: {error}"),
                "fix the target's `source` (or run `dli-gitops validate`); queues and checkpoint buckets are not checked until it reads",
            ));
            (Vec::new(), false, BTreeSet::new())
        }
    }
}

/// The check "queues": every queue the jobs name exists and can run Flink jobs.
fn queues_check(context: &TargetContext, queue_list: QueueList, queues_used: &[String]) -> Check {
    let region = context.target.region();
    match queue_list {
        None => Check::not_checked("queues", "signed calls failed"),
        Some(Err(error)) => Check::fail(
            "queues",
            format!("the queue list failed: {error}"),
            "allow the user to list DLI queues (DLI FullAccess or ReadOnlyAccess, or a custom policy; see docs/real-account.md)",
        ),
        Some(Ok(listed)) => {
            let names: BTreeSet<&str> = listed.iter().map(|q| q.name.as_str()).collect();
            let missing: Vec<&String> = queues_used
                .iter()
                .filter(|queue| !names.contains(queue.as_str()))
                .collect();
            let sql_only: Vec<&String> = queues_used
                .iter()
                .filter(|queue| {
                    listed
                        .iter()
                        .any(|q| q.name == **queue && q.queue_type.as_deref() == Some("sql"))
                })
                .collect();
            if !missing.is_empty() {
                Check::fail(
                    "queues",
                    format!(
                        "used by jobs but not in the project: {} (the project has: {})",
                        join(&missing),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.iter().copied().collect::<Vec<_>>().join(", ")
                        }
                    ),
                    format!(
                        "create the queue in {region} (DLI console > Resources > Queue Management, type `general`/for general purpose, or in an elastic resource pool) or fix `queue_name` in the job files"
                    ),
                )
            } else if !sql_only.is_empty() {
                Check::fail(
                    "queues",
                    format!("SQL queues cannot run Flink jobs: {}", join(&sql_only)),
                    "use a general-purpose queue for Flink jobs",
                )
            } else if queues_used.is_empty() {
                Check::ok(
                    "queues",
                    format!(
                        "no job names a queue; the project has {} queue(s)",
                        names.len()
                    ),
                )
            } else {
                Check::ok("queues", format!("{} exist", queues_used.join(", ")))
            }
        }
    }
}

/// The check "dataarts workspace": one harmless DLF job list when DataArts Factory is in use.
/// Returns whether that list succeeded (`None` when it was not made).
async fn dataarts_check(
    context: &TargetContext,
    dlf_in_use: bool,
    can_probe: bool,
    checks: &mut Vec<Check>,
) -> Option<bool> {
    let target = &context.target;
    let region = target.region();
    if !dlf_in_use {
        checks.push(Check::not_checked(
            "dataarts workspace",
            "no DLF job and no `workspace`: DataArts Factory is not used",
        ));
        return None;
    }
    if !can_probe {
        checks.push(Check::not_checked(
            "dataarts workspace",
            "signed calls failed",
        ));
        return None;
    }
    let query = crate::cloud::DlfListJobsQuery {
        job_name: Some(format!("{}none", super::PROBE_PREFIX)),
        job_type: Some("BATCH".to_string()),
    };
    let result = context.live.clients.dlf.list_jobs(&query).await;
    let workspace = target
        .workspace
        .as_deref()
        .map(|w| format!("workspace {w}"))
        .unwrap_or_else(|| "the default workspace".to_string());
    checks.push(match &result {
        Ok(_) => Check::ok(
            "dataarts workspace",
            format!("{} answered for {workspace}", endpoint_text(context, Service::Dlf)),
        ),
        Err(error) if transport(error).is_some() => Check::fail(
            "dataarts workspace",
            format!("{}: {error}", endpoint_text(context, Service::Dlf)),
            format!("check `endpoints.dlf` (default https://dayu-dlf.{region}.myhuaweicloud.com), DNS, proxy and TLS"),
        ),
        Err(error) if is_permission_denied(error) => Check::fail(
            "dataarts workspace",
            format!("refused: {error}"),
            "allow the user DataArts Studio access to the workspace (DAYU User / workspace developer role)",
        ),
        Err(error) => Check::fail(
            "dataarts workspace",
            format!("{workspace}: {error}"),
            "set `workspace:` to the workspace id (DataArts Studio console > Workspaces, or the instance's workspace list); it is required when there is more than one workspace",
        ),
    });
    Some(result.is_ok())
}

/// The "bucket …" checks: staging, backups and the jobs' checkpoint buckets, each written and
/// removed.
async fn bucket_checks(
    context: &TargetContext,
    checkpoint_buckets: BTreeSet<String>,
    checks: &mut Vec<Check>,
) {
    let target = &context.target;
    let mut locations: Vec<(String, String, String)> = Vec::new();
    for (what, location) in [("staging", target.staging()), ("backups", target.backups())] {
        match location {
            Some(StorageLocation::Obs { bucket, prefix }) => {
                locations.push((what.to_string(), bucket, prefix))
            }
            Some(other) => checks.push(Check::fail(
                format!("bucket {what}"),
                format!("{other} is not an obs:// location"),
                "DLI and DLF read bundles and write exports on OBS only: use obs://bucket/prefix/",
            )),
            None => checks.push(Check::warn(
                format!("bucket {what}"),
                "not configured",
                format!(
                    "set `{what}: obs://<bucket>/<prefix>/`; without it {}",
                    if what == "staging" {
                        "DLF jobs and the import strategy cannot ship bundles"
                    } else {
                        "no backup is taken before an update"
                    }
                ),
            )),
        }
    }
    for bucket in checkpoint_buckets {
        if !locations.iter().any(|(_, b, _)| *b == bucket) {
            locations.push(("checkpoints".to_string(), bucket, String::new()));
        }
    }
    for (what, bucket, prefix) in &locations {
        checks.push(bucket_check(context, what, bucket, prefix).await);
    }
}

/// The check "iam endpoint": used for tokens (password credentials) only.
fn iam_endpoint_check(context: &TargetContext, can_probe: bool) -> Check {
    let password = context
        .target
        .credentials
        .as_ref()
        .is_some_and(|c| c.user_env.is_some() || c.password_env.is_some());
    match Some(password) {
        Some(true) if can_probe => {
            Check::ok("iam endpoint", "issued a token (password credentials)")
        }
        Some(true) => Check::not_checked(
            "iam endpoint",
            "the token request did not succeed (see signed calls)",
        ),
        _ => Check::not_checked("iam endpoint", "not used with AK/SK credentials"),
    }
}

fn signed_ok(skew: &Option<(i64, String)>, skew_text: &str) -> Check {
    match skew {
        Some((seconds, _)) if seconds.abs() >= SKEW_WARN_SECONDS => Check::warn(
            "signed calls",
            format!("accepted; {skew_text}"),
            "sync this host's clock (NTP): APIG refuses signatures more than 15 minutes off",
        ),
        _ => Check::ok("signed calls", format!("accepted; {skew_text}")),
    }
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn endpoint_text(context: &TargetContext, service: Service) -> String {
    match context.target.endpoint(service) {
        crate::config::Endpoint::Url(url) => url,
        crate::config::Endpoint::Embedded => "the embedded emulator".to_string(),
        crate::config::Endpoint::Invalid(text) => text,
    }
}

fn rate_limit(context: &TargetContext) -> Check {
    let rps = context.target.rate_limit.requests_per_second;
    if rps > DOCUMENTED_REQUESTS_PER_SECOND {
        Check::warn(
            "rate limit",
            format!(
                "{rps} requests/s per service client is above the documented {DOCUMENTED_REQUESTS_PER_SECOND} requests/s per user"
            ),
            format!(
                "lower `rate_limit.requests_per_second` to at most {DOCUMENTED_REQUESTS_PER_SECOND} (the default is 10); above it the service answers 429 and calls wait"
            ),
        )
    } else {
        Check::ok(
            "rate limit",
            format!(
                "{rps} requests/s (burst {}) per service client, within the documented {DOCUMENTED_REQUESTS_PER_SECOND} requests/s per user",
                context.target.rate_limit.burst
            ),
        )
    }
}

/// Writes one small object under `<prefix>.dli-gitops-doctor/`, reads it back and removes it.
async fn bucket_check(context: &TargetContext, what: &str, bucket: &str, prefix: &str) -> Check {
    let name = format!("bucket {what}");
    let url = format!("obs://{bucket}/{prefix}{OBJECT_PREFIX}");
    let store = match context.live.clients.object_store(&url) {
        Ok(store) => store,
        Err(error) => {
            return Check::fail(
                name,
                format!("{url}: {error}"),
                "fix the location's syntax: obs://bucket/prefix/",
            );
        }
    };
    let key = format!("check-{}.txt", hex::encode(rand::random::<[u8; 6]>()));
    let body = Bytes::from_static(b"written by dli-gitops doctor; safe to delete\n");
    let result = async {
        store.put(&key, body.clone()).await?;
        let read = store.get(&key).await?;
        store.delete(&key).await?;
        Ok::<bool, CloudError>(read == body)
    }
    .await;
    let region = context.target.region();
    match result {
        Ok(true) => Check::ok(
            name,
            format!(
                "obs://{bucket}/{prefix} exists and is writable (object written, read, removed)"
            ),
        ),
        Ok(false) => Check::fail(
            name,
            format!("obs://{bucket}/{prefix}: the object read back differs from the one written"),
            "check for a proxy or lifecycle rule rewriting objects",
        ),
        Err(error) => {
            let text = error.to_string();
            let missing = text.contains("NoSuchBucket") || error.is_not_found();
            let denied =
                text.contains("AccessDenied") || text.contains("403") || error.is_auth_failure();
            let fix = if missing {
                format!(
                    "create the bucket `{bucket}` in {region} (OBS console > Create Bucket, or `obsutil mb obs://{bucket} -location={region}`)"
                )
            } else if denied {
                format!(
                    "allow the user obs:object:PutObject, GetObject and DeleteObject on `{bucket}/{prefix}*` (and obs:bucket:ListBucket on `{bucket}`); OBS needs AK/SK credentials"
                )
            } else if transport(&error).is_some()
                || text.contains("connect")
                || text.contains("dns")
            {
                format!(
                    "check `endpoints.obs` (default https://obs.{region}.myhuaweicloud.com), `obs_addressing`, DNS and TLS"
                )
            } else {
                "see the error; quote its request id to Huawei Cloud support".to_string()
            };
            Check::fail(
                name,
                format!(
                    "obs://{bucket}/{prefix}: {}",
                    crate::cloud::wire::shorten(&text)
                ),
                fix,
            )
        }
    }
}

/// The IAM check: a harmless call per permission where one exists. Writes (create, update,
/// run, stop, delete, export, import, savepoints, tags, obs-authorize, DLF import) have no
/// harmless call: `--probe` exercises them on scratch jobs.
async fn permissions(
    context: &TargetContext,
    can_call: bool,
    dlf_listed: Option<bool>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    if !can_call {
        checks.push(Check::not_checked(
            "permission list jobs",
            "signed calls failed",
        ));
        return checks;
    }
    let query = ListJobsQuery {
        name: Some(format!("{}none", super::PROBE_PREFIX)),
        page_size: 1,
        ..ListJobsQuery::default()
    };
    checks.push(match context.live.clients.dli.list_jobs(&query).await {
        Ok(_) => Check::ok("permission list jobs", "dli ListFlinkJobs allowed"),
        Err(error) if is_permission_denied(&error) => Check::fail(
            "permission list jobs",
            format!("refused: {error}"),
            "allow listing DLI Flink jobs (see the policy in docs/real-account.md); without it nothing can be observed",
        ),
        Err(error) => Check::fail(
            "permission list jobs",
            format!("failed: {error}"),
            "run doctor again; quote the request id to Huawei Cloud support if it persists",
        ),
    });
    match dlf_listed {
        Some(true) => checks.push(Check::ok(
            "permission dlf list jobs",
            "DataArts ListJobs allowed",
        )),
        Some(false) => checks.push(Check::fail(
            "permission dlf list jobs",
            "refused or failed (see dataarts workspace)",
            "allow DataArts Factory job access in the workspace",
        )),
        None => {}
    }
    checks.push(Check::not_checked(
        "permission writes",
        "create, update, run, stop, delete, export, import, savepoints, tags, obs-authorize and DLF import have no harmless call; `doctor --probe` exercises them on a scratch job",
    ));
    checks
}
