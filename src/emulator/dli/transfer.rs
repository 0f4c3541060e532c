//! Export and import of DLI Flink jobs through OBS zips, and bucket authorisation.
//!
//! Export writes the emulator's private layout (`export_format`); import accepts only zips that
//! this emulator exported, as the DLI user guide says of the real service.

use serde::Deserialize;
use serde_json::json;

use super::export_format::{ExportedJob, read_export, write_export};
use super::{check_job_name, new_record, project};
use crate::emulator::obs::{ObjectError, ObjectPath};
use crate::emulator::server::{ApiError, Call, Reply, Service};
use crate::emulator::state::FlinkJobRecord;

#[derive(Deserialize)]
struct ExportBody {
    obs_dir: String,
    is_selected: bool,
    #[serde(default)]
    job_selected: Option<Vec<i64>>,
}

fn object_error(error: ObjectError) -> ApiError {
    match error {
        ObjectError::NoSuchKey { .. } => ApiError::bad_request("DLI.0002", error.to_string()),
        ObjectError::Io { .. } => ApiError::internal(Service::Dli, &error.to_string()),
        _ => ApiError::dli_parameter(error.to_string()),
    }
}

pub(super) fn export_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: ExportBody = call.json_body(Service::Dli)?;
    let directory = ObjectPath::parse(&body.obs_dir)
        .map_err(|error| ApiError::dli_parameter(error.to_string()))?;
    if !call.shared.objects.bucket_exists(&directory.bucket) {
        return Err(ApiError::dli_parameter(format!(
            "OBS bucket {} does not exist",
            directory.bucket
        )));
    }
    let selected = match (body.is_selected, &body.job_selected) {
        (true, Some(ids)) if !ids.is_empty() => Some(ids.clone()),
        (true, _) => {
            return Err(ApiError::dli_parameter(
                "job_selected is required when is_selected is true",
            ));
        }
        (false, _) => None,
    };
    let documents = call.shared.read(&call.project_id, call.now_ms, |project| {
        let jobs: Vec<&FlinkJobRecord> = match &selected {
            Some(ids) => {
                let mut jobs = Vec::new();
                for job_id in ids {
                    jobs.push(
                        project
                            .flink_jobs
                            .get(job_id)
                            .ok_or_else(|| ApiError::dli_missing_job(*job_id))?,
                    );
                }
                jobs
            }
            None => project.flink_jobs.values().collect(),
        };
        Ok::<_, ApiError>(
            jobs.into_iter()
                .map(|job| (job.job_id, job.name.clone(), job.config.clone()))
                .collect::<Vec<_>>(),
        )
    })?;
    let mut zip_files = Vec::new();
    for (job_id, name, config) in documents {
        let bytes = write_export(&call.shared.export_key, job_id, &name, &config)
            .map_err(|error| ApiError::internal(Service::Dli, &error))?;
        // One zip per job, `{job_name}_{epoch_ms}.zip`, as in the API reference's example answer
        // (dli_02_0254: `"zip_file": ["obs-test/aggregate_1582677879475.zip"]`).
        let path = directory.join(&format!("{name}_{}.zip", call.now_ms));
        call.shared
            .objects
            .write(&path, &bytes)
            .map_err(object_error)?;
        zip_files.push(path.plain());
    }
    Ok(Reply::json(json!({
        "is_success": "true",
        "message": "The job is exported successfully.",
        "zip_file": zip_files
    })))
}

#[derive(Deserialize)]
struct ImportBody {
    zip_file: String,
    #[serde(default)]
    is_cover: bool,
}

/// Reads every exported job named by an import's `zip_file` (one zip, or a folder of zips).
fn read_import_documents(call: &Call<'_>, zip_file: &str) -> Result<Vec<ExportedJob>, ApiError> {
    let objects = &call.shared.objects;
    let limits = &call.shared.config.limits;
    let path =
        ObjectPath::parse(zip_file).map_err(|error| ApiError::dli_parameter(error.to_string()))?;
    if !objects.bucket_exists(&path.bucket) {
        return Err(ApiError::dli_parameter(format!(
            "OBS bucket {} does not exist",
            path.bucket
        )));
    }
    let zips = if objects.object_exists(&path) {
        vec![path]
    } else if objects.is_directory(&path) {
        let children = objects.list_directory(&path).map_err(object_error)?;
        if children.is_empty() {
            return Err(ApiError::dli_parameter(format!(
                "The folder {} is empty",
                path.plain()
            )));
        }
        for child in &children {
            if !child.key.to_ascii_lowercase().ends_with(".zip") || !objects.object_exists(child) {
                return Err(ApiError::dli_parameter(format!(
                    "The folder {} can contain only .zip files; found {}",
                    path.plain(),
                    child.plain()
                )));
            }
        }
        children
    } else {
        return Err(ApiError::bad_request(
            "DLI.0002",
            format!("The zip file {} does not exist", path.plain()),
        ));
    };
    let mut documents: Vec<ExportedJob> = Vec::new();
    for zip in zips {
        let bytes = objects
            .read(&zip, limits.max_zip_bytes)
            .map_err(object_error)?;
        let document =
            read_export(&call.shared.export_key, &bytes, &limits.zip).map_err(|error| {
                ApiError::dli_parameter(format!(
                    "The zip file {} cannot be imported: {error}",
                    zip.plain()
                ))
            })?;
        // Terraform's dli_flink_job_import docs: several exports of one job in one folder fail
        // with "The job name already exists", even with is_cover.
        if documents.iter().any(|known| known.name == document.name) {
            return Err(ApiError::dli_parameter(format!(
                "The job name already exists: {} appears more than once in {zip_file}",
                document.name
            )));
        }
        documents.push(document);
    }
    Ok(documents)
}

pub(super) fn import_jobs(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: ImportBody = call.json_body(Service::Dli)?;
    let documents = read_import_documents(call, &body.zip_file)?;
    let mut configs = Vec::new();
    for document in &documents {
        check_job_name(&document.name)?;
        configs.push(document.config.clone());
    }
    let mapping = call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let mut mapping = Vec::new();
        for (document, config) in documents.iter().zip(configs) {
            let old_job_id = document.job_id;
            let existing = project(state, call)
                .flink_jobs
                .values()
                .find(|job| job.name == document.name)
                .map(|job| (job.job_id, job.is_active(), job.status.clone()));
            match existing {
                Some((job_id, active, status)) if body.is_cover => {
                    if active {
                        return Err(ApiError::dli_parameter(format!(
                            "The job {} ({job_id}) is {status}; stop it before importing over it",
                            document.name
                        )));
                    }
                    let job = project(state, call)
                        .flink_jobs
                        .get_mut(&job_id)
                        .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
                    job.config = config;
                    job.pending.clear();
                    job.savepoint_path = None;
                    job.start_time = None;
                    job.set_status(call.now_ms, "job_init", "");
                    job.update_time = call.now_ms.max(job.update_time + 1);
                    mapping.push(json!({"old_job_id": old_job_id, "new_job_id": job_id,
                                        "remark": "The job is overwritten and is in draft state."}));
                }
                Some(_) => mapping.push(json!({"old_job_id": old_job_id, "new_job_id": -1,
                                               "remark": "The job name already exists."})),
                None => {
                    let job_id = state.next_job_id;
                    state.next_job_id += 1;
                    project(state, call).flink_jobs.insert(
                        job_id,
                        new_record(job_id, document.name.clone(), config, call.now_ms),
                    );
                    mapping.push(json!({"old_job_id": old_job_id, "new_job_id": job_id,
                                        "remark": "Job successfully created"}));
                }
            }
        }
        Ok(mapping)
    })?;
    Ok(Reply::json(json!({
        "is_success": "true",
        "message": "The job is imported successfully.",
        "job_mapping": mapping
    })))
}

/// The body of `POST /v1.0/{project_id}/dli/obs-authorize` (SDK `RegisterBucketRequestBody`:
/// one required field, `obs_buckets: list[str]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBucketBody {
    obs_buckets: Vec<String>,
}

/// Grants DLI access to existing buckets. Refuses an empty list, a malformed bucket name and a
/// bucket that does not exist; answers like the API reference's example (the SDK's
/// `RegisterBucketResponse` types `is_success` as a boolean).
pub(super) fn register_buckets(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body: RegisterBucketBody = call.json_body(Service::Dli)?;
    if body.obs_buckets.is_empty() {
        return Err(ApiError::dli_parameter(
            "obs_buckets is empty; name at least one OBS bucket",
        ));
    }
    for bucket in &body.obs_buckets {
        crate::emulator::obs::check_bucket_name(bucket).map_err(|reason| {
            ApiError::dli_parameter(format!(
                "obs_buckets: {bucket:?} is not a bucket name: {reason}"
            ))
        })?;
        if !call.shared.objects.bucket_exists(bucket) {
            return Err(ApiError::dli_parameter(format!(
                "OBS bucket {bucket} does not exist"
            )));
        }
    }
    Ok(Reply::json(json!({
        "is_success": true,
        "message": format!(
            "The following OBS bucket is authorized successfully, {}.",
            body.obs_buckets.join(", ")
        )
    })))
}
