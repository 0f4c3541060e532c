//! The v3 tag API Terraform uses for Flink jobs (`/v3/{project_id}/dli_flink_job/{id}/tags`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::{path_job_id, project};
use crate::bundle::DliTag;
use crate::emulator::server::{ApiError, Call, Operation, Reply, ReplyBody, Service};

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<TagBody>,
}

#[derive(Deserialize)]
struct TagBody {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

/// The v3 tag API Terraform uses for Flink jobs (`resource_type = dli_flink_job`).
pub(super) fn tags(call: &Call<'_>, operation: Operation) -> Result<Reply, ApiError> {
    let job_id = path_job_id(call, 3)?;
    if operation == Operation::ListFlinkJobTags {
        let tags = call.shared.read(&call.project_id, call.now_ms, |project| {
            project
                .flink_jobs
                .get(&job_id)
                .map(|job| job.config.tags.clone())
        });
        let tags = tags.ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        let tags: Vec<DliTag> = tags
            .into_iter()
            .map(|(key, value)| DliTag { key, value })
            .collect();
        return Ok(Reply::json(json!({"tags": tags})));
    }
    let body: TagsBody = call.json_body(Service::Dli)?;
    call.shared.mutate(&call.project_id, call.now_ms, |state| {
        let job = project(state, call)
            .flink_jobs
            .get_mut(&job_id)
            .ok_or_else(|| ApiError::dli_missing_job(job_id))?;
        let mut tags: BTreeMap<String, String> = job.config.tags.clone();
        for tag in &body.tags {
            if operation == Operation::CreateFlinkJobTags {
                let value = tag.value.clone().unwrap_or_default();
                if tag.key.is_empty() || tag.key.len() > 128 || value.len() > 255 {
                    return Err(ApiError::dli_parameter(format!(
                        "tag {:?} needs a key of 1-128 and a value of 0-255 characters",
                        tag.key
                    )));
                }
                tags.insert(tag.key.clone(), value);
            } else {
                tags.remove(&tag.key);
            }
        }
        job.config.tags = tags;
        job.update_time = call.now_ms.max(job.update_time + 1);
        Ok(())
    })?;
    Ok(Reply {
        status: http::StatusCode::NO_CONTENT,
        body: ReplyBody::Empty,
        headers: Vec::new(),
    })
}
