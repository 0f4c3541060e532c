//! Running, stopping and savepoints of DLI Flink jobs: batch run (`resume_savepoint`), batch
//! stop (`trigger_savepoint`), trigger savepoint and import-savepoint. Savepoints are real
//! `_metadata` objects in OBS.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{check_job_ids, failure, path_job_id, project, success};
use crate::emulator::config::DEFAULT_SAVEPOINT_BUCKET;
use crate::emulator::obs::ObjectPath;
use crate::emulator::server::{ApiError, Call, Reply, Service};
use crate::emulator::state::{FlinkJobRecord, RunRecord};

#[derive(Deserialize)]
struct RunBody {
    job_ids: Vec<i64>,
    #[serde(default)]
    resume_savepoint: bool,
}

#[derive(Deserialize)]
struct StopBody {
    job_ids: Vec<i64>,
    #[serde(default)]
    trigger_savepoint: bool,
}

pub(super) fn can_start(status: &str) -> bool {
    matches!(
        status,
        "job_init"
            | "job_cancel_success"
            | "job_submit_fail"
            | "job_running_exception"
            | "job_cancel_fail"
            | "job_finish"
            | "job_idle"
            | "job_arrearage_stopped"
    )
}

/// A batch request over `job_ids` inside one state change: `act` answers for each job; a job
/// that does not exist answers with a failure.
fn for_each_job(
    call: &Call<'_>,
    job_ids: &[i64],
    mut act: impl FnMut(&mut FlinkJobRecord, &i64) -> Value,
) -> Result<Reply, ApiError> {
    let results = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let project = project(state, call);
        let mut results = Vec::new();
        for job_id in job_ids {
            let Some(job) = project.flink_jobs.get_mut(job_id) else {
                results.push(failure(format!("The job does not exist: job_id={job_id}")));
                continue;
            };
            results.push(act(job, job_id));
        }
        Ok(results)
    })?;
    Ok(Reply::json(Value::Array(results)))
}

pub(super) fn run_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: RunBody = call.json_body(Service::Dli)?;
    check_job_ids(&body.job_ids)?;
    let delays = call.shared.config.delays;
    for_each_job(call, &body.job_ids, |job, job_id| {
        if !can_start(&job.status) {
            return failure(format!(
                "The job {job_id} cannot be started in status {}",
                job.status
            ));
        }
        let restored_from = if body.resume_savepoint {
            job.savepoint_path.clone()
        } else {
            None
        };
        // The run reads the savepoint's state now; one that is gone fails the start.
        let restored = restored_from
            .as_deref()
            .map(|path| savepoint_id_at(call, path));
        let restored_savepoint_id = match &restored {
            Some(Ok(id)) => Some(id.clone()),
            _ => None,
        };
        let restore_failure = match restored {
            Some(Err(reason)) => Some(format!(
                "DLI.0001: The job could not restore its state from the savepoint: {reason}."
            )),
            _ => None,
        };
        delete_taken_savepoints(call, job);
        let run_number = job
            .runs
            .last()
            .map_or(1, |run| run.run_number.saturating_add(1));
        job.push_run(RunRecord {
            run_number,
            started_at: call.now_ms,
            resume_savepoint: body.resume_savepoint,
            restored_from,
            stopped_at: None,
            stop_savepoint: None,
            restored_savepoint_id,
            stop_savepoint_id: None,
        });
        job.set_status(call.now_ms, "job_submitting", "");
        let needs_queue = job.config.run_mode == "exclusive_cluster";
        if let Some(desc) = &restore_failure {
            job.schedule(call.now_ms, &[(delays.submit_ms, "job_submit_fail", desc)]);
        } else if needs_queue && job.config.queue_name.is_none() {
            job.schedule(
                call.now_ms,
                &[(
                    delays.submit_ms,
                    "job_submit_fail",
                    "DLI.13024: No job-running queue selected. Set queue_name for exclusive_cluster jobs.",
                )],
            );
        } else if let Some(fault) = crate::emulator::faults::run_failure(
            &call.shared.config.faults,
            &job.name,
            job.config.sql_body.as_deref(),
        ) {
            // Injected failure (emulator config or a marker in the SQL): deterministic.
            let desc = format!("The job failed (emulator fault: {}).", fault.cause);
            if fault.after_ms == 0 {
                job.schedule(call.now_ms, &[(delays.submit_ms, "job_submit_fail", &desc)]);
            } else {
                job.schedule(
                    call.now_ms,
                    &[
                        (delays.submit_ms, "job_running", ""),
                        (fault.after_ms, "job_running_exception", &desc),
                    ],
                );
            }
        } else {
            job.schedule(call.now_ms, &[(delays.submit_ms, "job_running", "")]);
        }
        success("The request for submitting DLI jobs is delivered successfully.")
    })
}

/// Writes a savepoint `_metadata` for `job` and returns its directory (`obs://bucket/dir/`)
/// and the `savepoint_id` inside it. The job remembers the savepoint: the service deletes the
/// savepoints it took when the job is restarted ([`delete_taken_savepoints`]).
///
/// Without a requested directory (a stop), the directory is named to the second, as the
/// service names it: "the job status information will be saved in the OBS bucket under
/// jobs/savepoint/{job_id}/{yyyy-mm-dd_hH-mm-ss}/" (huaweicloud Terraform provider,
/// `resource_huaweicloud_dli_flinksql_job.go`, `updateFlinkSqlJobWithStop`). A second savepoint
/// of the job in the same second lands in the same directory and overwrites its `_metadata`,
/// as an upload under an existing name does on OBS (versioning off, the default).
pub(super) fn write_savepoint(
    call: &Call<'_>,
    job: &mut FlinkJobRecord,
    requested: Option<&str>,
) -> Result<(String, String), String> {
    let timestamp = chrono::DateTime::from_timestamp_millis(call.now_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d_%H-%M-%S")
        .to_string();
    let directory = match requested.filter(|path| !path.trim().is_empty()) {
        Some(requested) => ObjectPath::parse(requested)
            .map_err(|error| error.to_string())?
            .join(""),
        None => {
            let bucket = job
                .config
                .obs_bucket
                .clone()
                .unwrap_or_else(|| DEFAULT_SAVEPOINT_BUCKET.to_string());
            ObjectPath {
                bucket,
                key: format!("jobs/savepoint/{}/{timestamp}/", job.job_id),
            }
        }
    };
    let savepoint_id = format!(
        "{}-{}-{:08x}",
        job.job_id,
        call.now_ms,
        rand::random::<u32>()
    );
    let metadata = json!({
        "format": "dli-gitops-emulator-savepoint",
        "savepoint_id": savepoint_id,
        "job_id": job.job_id,
        "job_name": job.name,
        "run_number": job.runs.last().map_or(0, |run| run.run_number),
        "taken_at": call.now_ms,
    });
    call.shared
        .objects
        .write(
            &directory.join("_metadata"),
            metadata.to_string().as_bytes(),
        )
        .map_err(|error| error.to_string())?;
    let path = directory.obs_url();
    if !job.taken_savepoints.contains(&path) {
        job.taken_savepoints.push(path.clone());
    }
    Ok((path, savepoint_id))
}

/// The `savepoint_id` in the `_metadata` of the savepoint at `path`, or why it cannot be read.
fn savepoint_id_at(call: &Call<'_>, path: &str) -> Result<String, String> {
    let directory = ObjectPath::parse(path)
        .map_err(|error| error.to_string())?
        .join("");
    let bytes = call
        .shared
        .objects
        .read(&directory.join("_metadata"), 1 << 20)
        .map_err(|_| format!("{} holds no _metadata file", directory.obs_url()))?;
    let metadata: Value = serde_json::from_slice(&bytes)
        .map_err(|_| format!("the _metadata in {} does not parse", directory.obs_url()))?;
    Ok(metadata
        .get("savepoint_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string())
}

/// A restarted job's savepoints end their lifecycle: every savepoint the service took for the
/// job (at stop or triggered) since its last start is deleted from OBS (dli_01_0461). Savepoints
/// the job was given (import-savepoint) are not the service's and stay.
fn delete_taken_savepoints(call: &Call<'_>, job: &mut FlinkJobRecord) {
    for path in std::mem::take(&mut job.taken_savepoints) {
        let Ok(directory) = ObjectPath::parse(&path) else {
            continue;
        };
        if let Err(error) = call.shared.objects.remove_directory(&directory) {
            tracing::warn!(job_id = job.job_id, savepoint = %path, error = %error, "Could not delete a savepoint of a restarted job.");
        }
    }
}

pub(super) fn stop_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: StopBody = call.json_body(Service::Dli)?;
    check_job_ids(&body.job_ids)?;
    let delays = call.shared.config.delays;
    for_each_job(call, &body.job_ids, |job, job_id| {
        if !matches!(job.status.as_str(), "job_running" | "job_submitting") {
            return failure(format!(
                "Only running or submitting jobs can be stopped; job {job_id} is {}",
                job.status
            ));
        }
        let mut stop_savepoint = None;
        let mut stop_savepoint_id = None;
        if body.trigger_savepoint && job.status == "job_running" {
            match write_savepoint(call, job, None) {
                Ok((path, id)) => {
                    stop_savepoint = Some(path);
                    stop_savepoint_id = Some(id);
                }
                Err(reason) => {
                    return failure(format!(
                        "The savepoint of job {job_id} could not be written: {reason}"
                    ));
                }
            }
        }
        if let Some(run) = job.runs.last_mut() {
            run.stopped_at = Some(call.now_ms);
            run.stop_savepoint = stop_savepoint.clone();
            run.stop_savepoint_id = stop_savepoint_id;
        }
        if let Some(path) = stop_savepoint {
            job.savepoint_path = Some(path);
            job.set_status(call.now_ms, "job_savepointing", "");
            job.schedule(
                call.now_ms,
                &[
                    (delays.savepoint_ms, "job_canceling", ""),
                    (delays.cancel_ms, "job_cancel_success", ""),
                ],
            );
        } else {
            job.set_status(call.now_ms, "job_canceling", "");
            job.schedule(call.now_ms, &[(delays.cancel_ms, "job_cancel_success", "")]);
        }
        success("The request for stopping DLI jobs is delivered successfully.")
    })
}

/// `ExecuteFlinkJobSavepointRequestBody` (SDK 3.1.219): `action` (`TRIGGER`) and
/// `savepoint_path` ("obs桶路径", e.g. `bucket_name/file_name/`), both required in the Go SDK's
/// model (no `omitempty`). Terraform's `dli_flinksql_job_savepoint` sends the path only when set,
/// so the service's answer to a missing path is not documented: the emulator refuses it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavepointBody {
    action: String,
    #[serde(default)]
    savepoint_path: Option<String>,
}

pub(super) fn trigger_savepoint(call: &Call<'_>) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    let body: SavepointBody = call.json_body(Service::Dli)?;
    if body.action != "TRIGGER" {
        return Err(ApiError::dli_parameter(format!(
            "action {:?} is not supported; the only action is TRIGGER",
            body.action
        )));
    }
    let delays = call.shared.config.delays;
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job = project(state, call)
            .flink_jobs
            .get_mut(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        if job.status != "job_running" {
            return Err(ApiError::dli_parameter(format!(
                "A savepoint can only be triggered for a running job; job {job_id} is {}",
                job.status
            )));
        }
        let Some(requested) = body
            .savepoint_path
            .as_deref()
            .filter(|path| !path.trim().is_empty())
        else {
            return Err(ApiError::dli_parameter(
                "savepoint_path is required: the OBS directory to write the savepoint to (bucket_name/file_name/)",
            ));
        };
        let (path, _) = write_savepoint(call, job, Some(requested)).map_err(|reason| {
            ApiError::dli_parameter(format!("The savepoint could not be written: {reason}"))
        })?;
        job.savepoint_path = Some(path);
        job.set_status(call.now_ms, "job_savepointing", "");
        job.schedule(call.now_ms, &[(delays.savepoint_ms, "job_running", "")]);
        Ok(())
    })?;
    Ok(Reply::json(success(
        "The savepoint is triggered successfully.",
    )))
}

#[derive(Deserialize)]
struct ImportSavepointBody {
    #[serde(default)]
    job_id: Option<Value>,
    savepoint_path: String,
}

pub(super) fn import_savepoint(call: &Call<'_>) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 4)?;
    let body: ImportSavepointBody = call.json_body(Service::Dli)?;
    // The SDK sends a number, Terraform a string; both must name the job in the path.
    let body_job_id = match &body.job_id {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => number.as_i64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    if body.job_id.as_ref().is_some_and(|value| !value.is_null()) && body_job_id != Some(job_id) {
        return Err(ApiError::dli_parameter(format!(
            "job_id in the body ({}) does not match the job in the path ({job_id})",
            body.job_id
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default()
        )));
    }
    let directory = ObjectPath::parse(&body.savepoint_path)
        .map_err(|error| ApiError::dli_parameter(error.to_string()))?
        .join("");
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job = project(state, call)
            .flink_jobs
            .get_mut(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        if job.is_active() {
            return Err(ApiError::dli_parameter(format!(
                "Savepoints can only be imported into non-running jobs; job {job_id} is {}",
                job.status
            )));
        }
        if !call
            .shared
            .objects
            .object_exists(&directory.join("_metadata"))
        {
            return Err(ApiError::dli_parameter(format!(
                "No savepoint found: {} holds no _metadata file",
                directory.obs_url()
            )));
        }
        job.savepoint_path = Some(directory.obs_url());
        job.update_time = call.now_ms.max(job.update_time + 1);
        Ok(())
    })?;
    Ok(Reply::json(success("The job is successfully updated.")))
}
