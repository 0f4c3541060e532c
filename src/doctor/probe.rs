//! `doctor --probe`: a scratch Flink SQL job of its own (name prefix [`PROBE_PREFIX`], tag
//! [`PROBE_TAG_KEY`]=[`PROBE_TAG_VALUE`]) that exercises every DLI endpoint the product relies
//! on and answers the open assumptions of the fidelity review. It always cleans up: after the
//! steps, after a failure, after Ctrl-C, and at the start of every probe it removes the
//! leftovers of earlier runs — only jobs whose name has the prefix *and* that carry the tag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{Check, DoctorCommand, Finding, OBJECT_PREFIX, ProbeReport, Verdict};
use crate::apply::TargetContext;
use crate::cloud::dli_wire::{self, BodyFor};
use crate::cloud::{CloudError, DliClient, ListJobsQuery};
use crate::config::StorageLocation;
use crate::model::{FlinkJobConfig, JobKind, UpdateScope};

/// Every scratch job's name starts with this.
pub const PROBE_PREFIX: &str = "dli-gitops-doctor-";
/// Every scratch job carries this tag; cleanup removes only jobs with both.
pub const PROBE_TAG_KEY: &str = "dli-gitops-doctor";
pub const PROBE_TAG_VALUE: &str = "scratch";

/// The longest the probe waits for one status transition.
const TRANSITION_LIMIT: Duration = Duration::from_secs(300);

/// The steps' shared state, so cleanup after Ctrl-C still sees what was created.
#[derive(Default)]
struct ProbeState {
    report: ProbeReport,
    /// The scratch job's name and id once created.
    job: Option<(String, i64)>,
}

type Shared = Arc<Mutex<ProbeState>>;

fn with<T>(state: &Shared, f: impl FnOnce(&mut ProbeState) -> T) -> T {
    f(&mut state.lock().unwrap_or_else(|p| p.into_inner()))
}

fn step(state: &Shared, check: Check) {
    with(state, |s| s.report.steps.push(check));
}

fn finding(state: &Shared, assumption: &str, verdict: Verdict, observed: impl Into<String>) {
    with(state, |s| {
        s.report.findings.push(Finding {
            assumption: assumption.to_string(),
            verdict,
            observed: observed.into(),
        })
    });
}

/// The open assumptions the probe answers, in report order.
pub const ASSUMPTIONS: [&str; 6] = [
    "is_cover keeps the job id",
    "savepoint_path names the savepoint after a stop with savepoint",
    "export writes one zip per job named {name}_{epoch_ms}.zip",
    "a duplicate create is refused with an error code",
    "obs:// is accepted where we send it (import-savepoint)",
    "what the service fills in is no difference to the planner",
];

pub(super) async fn run_probe(
    context: &TargetContext,
    command: &DoctorCommand,
    queues: &[String],
) -> ProbeReport {
    let state: Shared = Arc::new(Mutex::new(ProbeState::default()));
    let recorder = match &command.record {
        Some(dir) => match super::record::Recorder::create(dir, context) {
            Ok(recorder) => Some(Arc::new(recorder)),
            Err(problem) => {
                step(
                    &state,
                    Check::fail(
                        "record",
                        problem,
                        "pass an empty or new directory to --record",
                    ),
                );
                return with(&state, |s| std::mem::take(&mut s.report));
            }
        },
        None => None,
    };
    let queue = command.queue.clone().or_else(|| queues.first().cloned());
    let work = async {
        remove_leftovers(context, &state).await;
        let steps = steps(context, &state, queue.as_deref(), recorder.as_deref());
        tokio::select! {
            () = steps => {}
            _ = tokio::signal::ctrl_c() => {
                step(&state, Check::warn("interrupted", "Ctrl-C: the steps stopped; cleaning up", "run `doctor --probe` again to finish; it removes leftovers first"));
            }
        }
        remove_leftovers(context, &state).await;
        if dlf_in_use(context).await {
            remove_dlf_leftovers(context, &state).await;
        }
        remove_objects(context, &state).await;
    };
    match &recorder {
        Some(recorder) => {
            crate::cloud::observe_exchanges(recorder.observer(), work).await;
            if let Some(recorder) = &recorder.finish(&with(&state, |s| {
                serde_json::to_value(&s.report.findings).unwrap_or(Value::Null)
            })) {
                step(
                    &state,
                    Check::fail("record", recorder.clone(), "check the --record directory"),
                );
            }
        }
        None => work.await,
    }
    let mut report = with(&state, |s| std::mem::take(&mut s.report));
    report.recorded = recorder.as_ref().map(|r| r.count()).unwrap_or(0);
    for assumption in ASSUMPTIONS {
        if !report.findings.iter().any(|f| f.assumption == assumption) {
            report.findings.push(Finding {
                assumption: assumption.to_string(),
                verdict: Verdict::NotChecked,
                observed: "the probe did not get that far".to_string(),
            });
        }
    }
    report
}

/// The scratch job's definition (also written to the recording as the spec that created it).
pub fn scratch_config(queue: Option<&str>) -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.desc = "dli-gitops doctor scratch job; safe to delete".to_string();
    config.queue_name = queue.map(str::to_string);
    config.sql_body = Some(
        "CREATE TABLE doctor_source (n INT) WITH ('connector' = 'datagen', 'rows-per-second' = '1');\n\
         CREATE TABLE doctor_sink (n INT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO doctor_sink SELECT n FROM doctor_source;"
            .to_string(),
    );
    // No `obs_bucket`: savepoints then go where the service puts them by default, which is
    // what the stop-savepoint finding reports (a SQL job has no `checkpoint_path`).
    config.tags = BTreeMap::from([(PROBE_TAG_KEY.to_string(), PROBE_TAG_VALUE.to_string())]);
    config
}

/// `obs://bucket/prefix/.dli-gitops-doctor/` of the staging location.
fn scratch_dir(context: &TargetContext) -> Option<String> {
    match context.target.staging() {
        Some(StorageLocation::Obs { bucket, prefix }) => {
            Some(format!("obs://{bucket}/{prefix}{OBJECT_PREFIX}"))
        }
        _ => None,
    }
}

async fn steps(
    context: &TargetContext,
    state: &Shared,
    queue: Option<&str>,
    recorder: Option<&super::record::Recorder>,
) {
    let dli = &context.live.clients.dli;
    let name = format!("{PROBE_PREFIX}{}", hex::encode(rand::random::<[u8; 4]>()));
    let dir = scratch_dir(context);
    let job_dir = dir.as_ref().map(|d| format!("{d}{name}/"));
    let config = scratch_config(queue);
    if let Some(recorder) = recorder {
        recorder.set_spec(&name, &config);
    }
    let Some(id) = create_step(dli, state, &name, &config, queue).await else {
        return;
    };
    tags_step(dli, state, id).await;
    duplicate_create_step(dli, state, &name, &config).await;
    detail_step(dli, state, id, &config).await;
    update_step(dli, state, id, &config).await;
    // Run, trigger a savepoint, stop with a savepoint.
    let mut stop_savepoint = None;
    match (queue, &job_dir) {
        (Some(_), Some(job_dir)) => {
            stop_savepoint = lifecycle(dli, state, id, job_dir).await;
        }
        _ => {
            step(
                state,
                Check::not_checked(
                    "run / savepoint / stop",
                    "no queue (pass --queue) or no obs:// staging location",
                ),
            );
        }
    }
    export_import_step(dli, state, id, &name, job_dir.as_deref()).await;
    import_savepoint_step(dli, state, id, stop_savepoint).await;
    delete_step(dli, state, id).await;
    dlf_probe(context, state, &name, dir.as_deref()).await;
}

/// Step "create": creates the scratch job and remembers it for the cleanup; `None` (after a
/// failed check) when the service refused it, and the steps stop there.
async fn create_step(
    dli: &DliClient,
    state: &Shared,
    name: &str,
    config: &FlinkJobConfig,
    queue: Option<&str>,
) -> Option<i64> {
    match dli.create_sql_job(name, config).await {
        Ok(id) => {
            with(state, |s| s.job = Some((name.to_string(), id)));
            step(state, Check::ok("create", format!("{name} (id {id})")));
            Some(id)
        }
        Err(error) => {
            step(
                state,
                Check::fail(
                    "create",
                    error.to_string(),
                    if queue.is_none() {
                        "pass --queue <a general-purpose queue> (no job of the target names one)"
                    } else {
                        "allow creating DLI Flink jobs (see docs/real-account.md)"
                    },
                ),
            );
            None
        }
    }
}

/// Step "tags": the tags as created (the cleanup relies on them); when the create's tags were
/// not kept, adds them through the tag API.
async fn tags_step(dli: &DliClient, state: &Shared, id: i64) {
    match dli.job_tags(id).await {
        Ok(tags) if tags.get(PROBE_TAG_KEY).map(String::as_str) == Some(PROBE_TAG_VALUE) => {
            step(state, Check::ok("tags", "the scratch job carries its tag"))
        }
        Ok(tags) => {
            // Tags on create not kept: add them through the tag API.
            let wanted = BTreeMap::from([(PROBE_TAG_KEY.to_string(), PROBE_TAG_VALUE.to_string())]);
            match dli.create_job_tags(id, &wanted).await {
                Ok(()) => step(
                    state,
                    Check::warn(
                        "tags",
                        format!(
                            "the create's tags were not kept ({} tag(s) read); added through the tag API",
                            tags.len()
                        ),
                        "report this with the recording",
                    ),
                ),
                Err(error) => step(
                    state,
                    Check::fail("tags", error.to_string(), "allow tagging DLI Flink jobs"),
                ),
            }
        }
        Err(error) => step(
            state,
            Check::fail(
                "tags",
                error.to_string(),
                "allow reading DLI Flink job tags",
            ),
        ),
    }
}

/// Step "duplicate create": the same create sent once without the by-name check; answers
/// whether a duplicate is refused with an error code.
async fn duplicate_create_step(
    dli: &DliClient,
    state: &Shared,
    name: &str,
    config: &FlinkJobConfig,
) {
    let body = dli_wire::sql_job_body(Some(name), config, BodyFor::Create);
    match dli
        .send_once_for_probe(
            "create_sql_job",
            Method::POST,
            &["streaming", "sql-jobs"],
            Some(body),
        )
        .await
    {
        Err(error) => {
            step(
                state,
                Check::ok("duplicate create", format!("refused: {error}")),
            );
            finding(
                state,
                ASSUMPTIONS[3],
                if error.error_code().is_some() {
                    Verdict::Confirmed
                } else {
                    Verdict::Refuted
                },
                error.error_code().unwrap_or("no error code").to_string(),
            );
        }
        Ok(value) => {
            let second = value.get("job").and_then(|j| j.get("job_id")).cloned();
            step(
                state,
                Check::warn(
                    "duplicate create",
                    format!(
                        "accepted: a second job with the same name ({second:?}); removed by the cleanup"
                    ),
                    "names are not unique on this service: report it with the recording",
                ),
            );
            finding(
                state,
                ASSUMPTIONS[3],
                Verdict::Refuted,
                format!("accepted: {value}"),
            );
        }
    }
}

/// Step "detail": reads the job back and reports what the service filled in, and whether the
/// planner would act on any of it.
async fn detail_step(dli: &DliClient, state: &Shared, id: i64, config: &FlinkJobConfig) {
    match dli.job_detail(id).await {
        Ok(observed) => {
            step(
                state,
                Check::ok("detail", format!("status {}", observed.status)),
            );
            let (verdict, text) = filled_in_finding(config, &observed.config);
            finding(state, ASSUMPTIONS[5], verdict, text);
        }
        Err(error) => step(
            state,
            Check::fail("detail", error.to_string(), "allow reading DLI Flink jobs"),
        ),
    }
}

/// The finding on what the service fills in: what reads back differently from what was sent,
/// and which of those differences the planner would act on.
fn filled_in_finding(sent_config: &FlinkJobConfig, read: &FlinkJobConfig) -> (Verdict, String) {
    let sent = sent_config.to_field_map();
    let filled: Vec<String> = read
        .to_field_map()
        .into_iter()
        .filter(|(key, value)| sent.get(key) != Some(value))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    // The planner's view: a difference it would act on is a phantom diff (a restart on
    // every pass); what the model already treats as service-filled is not.
    let phantom: Vec<String> = sent_config
        .field_diffs(read)
        .into_iter()
        .map(|diff| format!("{}: sent {} read {}", diff.field, diff.desired, diff.live))
        .collect();
    let filled_text = if filled.is_empty() {
        "nothing".to_string()
    } else {
        filled.join(", ")
    };
    if phantom.is_empty() {
        (
            Verdict::Confirmed,
            format!("the planner sees no difference; the service filled in {filled_text}"),
        )
    } else {
        (
            Verdict::Refuted,
            format!(
                "the planner would act on: {}; the service filled in {filled_text}",
                phantom.join(", ")
            ),
        )
    }
}

/// Step "update": a full update of the description, read back.
async fn update_step(dli: &DliClient, state: &Shared, id: i64, config: &FlinkJobConfig) {
    let mut updated = config.clone();
    updated.desc = "dli-gitops doctor scratch job (updated); safe to delete".to_string();
    match dli.update_job(id, &updated, &UpdateScope::Full).await {
        Ok(()) => match dli.job_detail(id).await {
            Ok(observed) if observed.config.desc == updated.desc => {
                step(state, Check::ok("update", "the new description reads back"))
            }
            Ok(_) => step(
                state,
                Check::warn(
                    "update",
                    "accepted, but the description did not change",
                    "report it with the recording",
                ),
            ),
            Err(error) => step(
                state,
                Check::fail("update", error.to_string(), "see the error"),
            ),
        },
        Err(error) => step(
            state,
            Check::fail("update", error.to_string(), "allow updating DLI Flink jobs"),
        ),
    }
}

/// Steps "export" and "import is_cover": exports the job to the scratch directory, checks the
/// zip's name, then imports it over the job with `is_cover`.
async fn export_import_step(
    dli: &DliClient,
    state: &Shared,
    id: i64,
    name: &str,
    job_dir: Option<&str>,
) {
    let Some(job_dir) = job_dir else {
        step(
            state,
            Check::not_checked("export / import", "no obs:// staging location"),
        );
        return;
    };
    let export_dir = format!("{job_dir}export/");
    match dli.export_jobs(&export_dir, Some(&[id])).await {
        Ok(zips) => {
            step(
                state,
                Check::ok(
                    "export",
                    format!("{} zip(s): {}", zips.len(), zips.join(", ")),
                ),
            );
            let named = zips.len() == 1 && is_export_zip_name(&zips[0], name);
            finding(
                state,
                ASSUMPTIONS[2],
                if named {
                    Verdict::Confirmed
                } else {
                    Verdict::Refuted
                },
                zips.iter()
                    .map(|z| z.rsplit('/').next().unwrap_or(z).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            if let Some(zip) = zips.first() {
                import_cover_step(dli, state, id, zip).await;
            }
        }
        Err(error) => step(
            state,
            Check::fail(
                "export",
                error.to_string(),
                "allow exporting DLI Flink jobs, and DLI access to the staging bucket (authorize_obs or an agency)",
            ),
        ),
    }
}

/// Whether an exported zip's file name is `{name}_{epoch_ms}.zip` (13 digits).
fn is_export_zip_name(zip: &str, name: &str) -> bool {
    zip.rsplit('/')
        .next()
        .and_then(|file| file.strip_prefix(&format!("{name}_")))
        .and_then(|rest| rest.strip_suffix(".zip"))
        .is_some_and(|ms| ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()))
}

/// Step "import is_cover": imports the exported zip over the job; answers whether the job keeps
/// its id.
async fn import_cover_step(dli: &DliClient, state: &Shared, id: i64, zip: &str) {
    match dli.import_jobs(zip, true).await {
        Ok(mappings) => {
            let ids: Vec<i64> = mappings.iter().map(|m| m.new_job_id).collect();
            step(
                state,
                Check::ok("import is_cover", format!("job_mapping new ids {ids:?}")),
            );
            finding(
                state,
                ASSUMPTIONS[0],
                if ids == [id] {
                    Verdict::Confirmed
                } else {
                    Verdict::Refuted
                },
                format!("sent over job {id}, new_job_id {ids:?}"),
            );
            if let Some(other) = ids.iter().find(|new| **new != id && **new > 0) {
                with(state, |s| {
                    s.report.steps.push(Check::warn(
                        "import is_cover",
                        format!("a new job id {other}: the old id no longer names the job"),
                        "report it with the recording",
                    ))
                });
            }
        }
        Err(error) => step(
            state,
            Check::fail(
                "import is_cover",
                error.to_string(),
                "allow importing DLI Flink jobs",
            ),
        ),
    }
}

/// Step "import-savepoint": imports the stop savepoint (sent with obs://).
async fn import_savepoint_step(
    dli: &DliClient,
    state: &Shared,
    id: i64,
    stop_savepoint: Option<String>,
) {
    match stop_savepoint {
        Some(path) => match dli.import_savepoint(id, &path).await {
            Ok(()) => {
                step(state, Check::ok("import-savepoint", "accepted"));
                finding(
                    state,
                    ASSUMPTIONS[4],
                    Verdict::Confirmed,
                    "import-savepoint accepted an obs:// path",
                );
            }
            Err(error) => {
                step(
                    state,
                    Check::fail(
                        "import-savepoint",
                        error.to_string(),
                        "report it with the recording",
                    ),
                );
                finding(state, ASSUMPTIONS[4], Verdict::Refuted, error.to_string());
            }
        },
        None => step(
            state,
            Check::not_checked("import-savepoint", "no stop savepoint to import"),
        ),
    }
}

/// Step "delete": deletes the scratch job and reads it back; once gone, the cleanup no longer
/// needs to remove it.
async fn delete_step(dli: &DliClient, state: &Shared, id: i64) {
    match dli.delete_job(id).await {
        Ok(()) => match dli.job_detail(id).await {
            Err(error) if error.is_not_found() => {
                with(state, |s| s.job = None);
                step(state, Check::ok("delete", "the job is gone"));
            }
            Ok(_) => step(
                state,
                Check::warn(
                    "delete",
                    "accepted, but the job still reads",
                    "the cleanup tries again",
                ),
            ),
            Err(error) => step(
                state,
                Check::warn(
                    "delete",
                    format!("accepted; reading it back: {error}"),
                    "see the error",
                ),
            ),
        },
        Err(error) => step(
            state,
            Check::fail("delete", error.to_string(), "allow deleting DLI Flink jobs"),
        ),
    }
}

/// The DLF marker: a job parameter, since DataArts jobs carry no tags. Cleanup removes a DLF job
/// only when its name has the prefix and its definition carries this parameter.
pub const DLF_MARKER_PARAM: &str = "dli_gitops_doctor";

/// A DataArts Factory import of a one-node job (a `Dummy` node), read back and deleted, when
/// the target uses DataArts (DLF jobs in the repository or a `workspace`).
async fn dlf_probe(context: &TargetContext, state: &Shared, name: &str, dir: Option<&str>) {
    let uses_dlf = dlf_in_use(context).await;
    let Some(dir) = dir.filter(|_| uses_dlf) else {
        step(
            state,
            Check::not_checked(
                "dlf import",
                "DataArts is not used by this target, or no obs:// staging location",
            ),
        );
        return;
    };
    let dlf = &context.live.clients.dlf;
    let entry = crate::bundle::DlfJobEntry {
        name: name.to_string(),
        job: serde_json::json!({
            "name": name,
            "processType": "BATCH",
            "nodes": [{"name": "doctor", "type": "Dummy"}],
            "params": [{"name": DLF_MARKER_PARAM, "value": PROBE_TAG_VALUE}],
            "schedule": {"type": "EXECUTE_ONCE"},
        }),
        scripts: BTreeMap::new(),
        resources: BTreeMap::new(),
    };
    let result = async {
        let zip = crate::bundle::write_dlf_zip(&[entry]).map_err(|e| e.to_string())?;
        let store = context
            .live
            .clients
            .object_store(dir)
            .map_err(|e| e.to_string())?;
        let key = format!("{name}/dlf.zip");
        store
            .put(&key, bytes::Bytes::from(zip))
            .await
            .map_err(|e| e.to_string())?;
        let request = crate::cloud::DlfImportRequest {
            path: store.url_of(&key),
            same_name_policy: "OVERWRITE".to_string(),
            jobs_params: Vec::new(),
            settings: crate::model::DlfImportSettings::default(),
        };
        let task = dlf.import_jobs(&request).await.map_err(|e| e.to_string())?;
        let done = dlf
            .wait_system_task(&task, TRANSITION_LIMIT)
            .await
            .map_err(|e| e.to_string())?;
        if !matches!(
            done.status,
            crate::cloud::SystemTaskStatus::Successful | crate::cloud::SystemTaskStatus::Warning
        ) {
            return Err(format!(
                "the import task ended {}: {}",
                done.status.as_str(),
                done.messages().join("; ")
            ));
        }
        dlf.job_detail(name).await.map_err(|e| e.to_string())?;
        Ok::<String, String>(done.status.as_str().to_string())
    }
    .await;
    match result {
        Ok(status) => step(
            state,
            Check::ok(
                "dlf import",
                format!("a one-node job imported ({status}) and read back"),
            ),
        ),
        Err(problem) => step(
            state,
            Check::fail(
                "dlf import",
                problem,
                "check the workspace, DataArts permissions and DataArts access to the staging bucket",
            ),
        ),
    }
    remove_dlf_leftovers(context, state).await;
}

/// The target uses DataArts: DLF jobs in the repository, or a `workspace`.
async fn dlf_in_use(context: &TargetContext) -> bool {
    context.target.workspace.is_some()
        || crate::pass::desired_for(context, None)
            .await
            .is_ok_and(|(jobs, _)| !jobs.dlf.is_empty())
}

/// Removes DataArts jobs named `dli-gitops-doctor-*` whose definition carries the marker
/// parameter; others with the prefix are reported and left alone.
async fn remove_dlf_leftovers(context: &TargetContext, state: &Shared) {
    let dlf = &context.live.clients.dlf;
    let Ok((jobs, _)) = dlf.list_every_job(None).await else {
        return;
    };
    for job in jobs.iter().filter(|job| job.name.starts_with(PROBE_PREFIX)) {
        let marked = dlf.job_detail(&job.name).await.is_ok_and(|detail| {
            detail["params"].as_array().is_some_and(|params| {
                params
                    .iter()
                    .any(|p| p["name"] == DLF_MARKER_PARAM && p["value"] == PROBE_TAG_VALUE)
            })
        });
        if !marked {
            step(
                state,
                Check::warn(
                    "cleanup",
                    format!(
                        "DLF job {} has the doctor's prefix but not its marker: left alone",
                        job.name
                    ),
                    "remove it by hand if it is a leftover",
                ),
            );
            continue;
        }
        match dlf.delete_job(&job.name).await {
            Ok(()) => with(state, |s| {
                s.report.cleaned_up.push(format!("DLF {}", job.name))
            }),
            Err(error) => step(
                state,
                Check::fail(
                    "cleanup",
                    format!("DLF {}: {error}", job.name),
                    "delete it by hand in DataArts Factory",
                ),
            ),
        }
    }
}

/// Run, trigger a savepoint, stop with a savepoint; returns the savepoint the detail names.
async fn lifecycle(dli: &DliClient, state: &Shared, id: i64, job_dir: &str) -> Option<String> {
    if let Err(error) = dli.run_jobs(&[id], false).await {
        step(
            state,
            Check::fail(
                "run",
                error.to_string(),
                "allow starting DLI Flink jobs and submitting to the queue",
            ),
        );
        return None;
    }
    if let Err(problem) = wait_for(dli, id, |status| status.is_running()).await {
        step(
            state,
            Check::fail("run", problem, "see the job's status in the DLI console"),
        );
        return None;
    }
    step(
        state,
        Check::ok("run", crate::model::FlinkJobStatus::Running.as_str()),
    );
    match dli
        .trigger_savepoint(id, &format!("{job_dir}savepoint-trigger/"))
        .await
    {
        Ok(()) => step(state, Check::ok("trigger savepoint", "accepted")),
        Err(error) => step(
            state,
            Check::fail(
                "trigger savepoint",
                error.to_string(),
                "allow DLI job savepoints, and DLI access to the staging bucket",
            ),
        ),
    }
    // A triggered savepoint may hold the job in a transitional status for a while.
    let _ = wait_for(dli, id, |status| status.is_running()).await;
    if let Err(error) = dli.stop_jobs(&[id], true).await {
        step(
            state,
            Check::fail(
                "stop with savepoint",
                error.to_string(),
                "allow stopping DLI Flink jobs",
            ),
        );
        return None;
    }
    if let Err(problem) = wait_for(dli, id, |status| status.is_stopped()).await {
        step(
            state,
            Check::fail(
                "stop with savepoint",
                problem,
                "see the job's status in the DLI console",
            ),
        );
        return None;
    }
    let path = dli
        .job_detail(id)
        .await
        .ok()
        .and_then(|job| job.savepoint_path);
    step(
        state,
        Check::ok(
            "stop with savepoint",
            format!(
                "stopped; savepoint_path {}",
                path.as_deref().unwrap_or("(none)")
            ),
        ),
    );
    finding(
        state,
        ASSUMPTIONS[1],
        if path.is_some() {
            Verdict::Confirmed
        } else {
            Verdict::Refuted
        },
        path.clone()
            .unwrap_or_else(|| "the detail names no savepoint".to_string()),
    );
    path
}

async fn wait_for(
    dli: &DliClient,
    id: i64,
    done: impl Fn(&crate::model::FlinkJobStatus) -> bool,
) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    loop {
        let job = dli.job_detail(id).await.map_err(|e| e.to_string())?;
        if done(&job.status) {
            return Ok(());
        }
        if job.status.is_failed() {
            return Err(format!("the job went to {}", job.status));
        }
        if started.elapsed() > TRANSITION_LIMIT {
            return Err(format!(
                "still {} after {} s",
                job.status,
                TRANSITION_LIMIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Removes every job named `dli-gitops-doctor-*` that carries the doctor's tag (stopping it
/// first when it runs). Jobs with the prefix but without the tag are left alone and reported.
async fn remove_leftovers(context: &TargetContext, state: &Shared) {
    let dli = &context.live.clients.dli;
    let listed = match dli.list_jobs(&ListJobsQuery::default()).await {
        Ok(listed) => listed,
        Err(error) => {
            step(
                state,
                Check::warn(
                    "cleanup",
                    format!("listing jobs: {error}"),
                    "remove jobs named dli-gitops-doctor-* tagged dli-gitops-doctor=scratch by hand",
                ),
            );
            return;
        }
    };
    for job in listed
        .iter()
        .filter(|job| job.name.starts_with(PROBE_PREFIX))
    {
        let tagged = matches!(dli.job_tags(job.id).await, Ok(tags) if tags.get(PROBE_TAG_KEY).map(String::as_str) == Some(PROBE_TAG_VALUE));
        if !tagged {
            step(
                state,
                Check::warn(
                    "cleanup",
                    format!(
                        "{} (id {}) has the doctor's name prefix but not its tag: left alone",
                        job.name, job.id
                    ),
                    "remove it by hand if it is a leftover",
                ),
            );
            continue;
        }
        if let Err(error) = remove_job(dli, job.id, &job.status).await {
            step(
                state,
                Check::fail(
                    "cleanup",
                    format!("{} (id {}): {error}", job.name, job.id),
                    "delete it by hand in the DLI console",
                ),
            );
            continue;
        }
        with(state, |s| {
            s.report
                .cleaned_up
                .push(format!("{} (id {})", job.name, job.id));
            if s.job.as_ref().is_some_and(|(_, id)| *id == job.id) {
                s.job = None;
            }
        });
    }
}

async fn remove_job(
    dli: &DliClient,
    id: i64,
    status: &crate::model::FlinkJobStatus,
) -> Result<(), CloudError> {
    if !status.is_stopped() {
        let _ = dli.stop_jobs(&[id], false).await;
        let _ = wait_for(dli, id, |status| status.is_stopped()).await;
    }
    match dli.delete_job(id).await {
        Err(error) if error.is_not_found() => Ok(()),
        other => other,
    }
}

/// Removes the objects the probe's exports and savepoints left under the scratch prefix.
async fn remove_objects(context: &TargetContext, state: &Shared) {
    let Some(dir) = scratch_dir(context) else {
        return;
    };
    let store = match context.live.clients.object_store(&dir) {
        Ok(store) => store,
        Err(_) => return,
    };
    match store.list("").await {
        Ok(keys) => {
            for key in keys {
                if let Err(error) = store.delete(&key).await {
                    step(
                        state,
                        Check::warn(
                            "cleanup objects",
                            format!("{dir}{key}: {error}"),
                            "delete it by hand",
                        ),
                    );
                }
            }
        }
        Err(error) => step(
            state,
            Check::warn(
                "cleanup objects",
                format!("listing {dir}: {error}"),
                "delete the objects under it by hand",
            ),
        ),
    }
}
