//! The v3 tag API Terraform uses for Flink jobs (`/v3/{project_id}/dli_flink_job/{id}/tags`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::{path_job_id, project};
use crate::bundle::DliTag;
use crate::emulator::server::{ApiError, Call, Operation, Reply, Service};

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
    Ok(Reply::no_content())
}

/// The filter body of `ListResourcesByTags` (SDK `ListResourcesByTagsRequestBody`:
/// `without_any_tag`, `tags: [TagWithValues]`, `matches: [Match]`; API reference dli_02_0399).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    #[serde(default)]
    without_any_tag: Option<bool>,
    #[serde(default)]
    tags: Option<Vec<TagWithValues>>,
    #[serde(default)]
    matches: Option<Vec<MatchBody>>,
}

/// `TagWithValues`: `values` is required ("may be an empty list, never left out"; an empty
/// list matches any value of the key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagWithValues {
    key: String,
    values: Vec<String>,
}

/// `Match`: only `resource_name` is documented, a prefix search.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchBody {
    key: String,
    value: String,
}

/// Most tags one filter may name (dli_02_0399).
const MAX_FILTER_TAGS: usize = 20;
/// Largest page of the filter (`limit` defaults to 1000, dli_02_0399; the TMS filters of other
/// services document 1000 as the maximum too).
const MAX_FILTER_LIMIT: i64 = 1000;

/// `POST /v3/{project_id}/dli_flink_job/resource-instances/filter` (`ListResourcesByTags`):
/// the Flink jobs matching the filter, each `{resource_id, resource_name, resource_detail,
/// tags: [{key, value}]}`, paged by `limit`/`offset`, in job id order, with `total_count`. No
/// filter lists every job, tagged or not.
pub(super) fn filter(call: &Call<'_>) -> Result<Reply, ApiError> {
    let number = |name: &str, default: i64| -> Result<i64, ApiError> {
        match call.query_value(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| ApiError::dli_parameter(format!("{name} {text:?} is not a number"))),
        }
    };
    let limit = number("limit", MAX_FILTER_LIMIT)?;
    let offset = number("offset", 0)?;
    if !(1..=MAX_FILTER_LIMIT).contains(&limit) {
        return Err(ApiError::dli_parameter(format!(
            "limit must be between 1 and {MAX_FILTER_LIMIT}"
        )));
    }
    if offset < 0 {
        return Err(ApiError::dli_parameter("offset must be 0 or more"));
    }
    let body: FilterBody = call.json_body(Service::Dli)?;
    let wanted = body.tags.unwrap_or_default();
    if wanted.len() > MAX_FILTER_TAGS {
        return Err(ApiError::dli_parameter(format!(
            "at most {MAX_FILTER_TAGS} tags may be given"
        )));
    }
    let mut keys = std::collections::BTreeSet::new();
    for tag in &wanted {
        if tag.key.is_empty() || tag.key.chars().count() > 128 || !keys.insert(tag.key.as_str()) {
            return Err(ApiError::dli_parameter(format!(
                "tag key {:?} must be 1-128 characters and given once",
                tag.key
            )));
        }
        if tag.values.iter().any(|value| value.chars().count() > 255) {
            return Err(ApiError::dli_parameter(format!(
                "a value of tag {:?} is longer than 255 characters",
                tag.key
            )));
        }
    }
    let mut name_prefix = None;
    for matching in body.matches.unwrap_or_default() {
        if matching.key != "resource_name" || matching.value.chars().count() > 255 {
            return Err(ApiError::dli_parameter(format!(
                "match key {:?} is not resource_name (the only one documented), or its value is \
                 longer than 255 characters",
                matching.key
            )));
        }
        name_prefix = Some(matching.value);
    }
    let without_any_tag = body.without_any_tag.unwrap_or(false);
    let answer = call.shared.read(&call.project_id, call.now_ms, |project| {
        let matching: Vec<_> = project
            .flink_jobs
            .values()
            .filter(|job| {
                name_prefix
                    .as_deref()
                    .is_none_or(|prefix| job.name.starts_with(prefix))
            })
            .filter(|job| {
                if without_any_tag {
                    return job.config.tags.is_empty();
                }
                wanted.iter().all(|tag| {
                    job.config.tags.get(&tag.key).is_some_and(|value| {
                        tag.values.is_empty() || tag.values.iter().any(|wanted| wanted == value)
                    })
                })
            })
            .collect();
        let total = matching.len();
        let resources: Vec<serde_json::Value> = matching
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|job| {
                let tags: Vec<DliTag> = job
                    .config
                    .tags
                    .iter()
                    .map(|(key, value)| DliTag {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect();
                json!({
                    "resource_id": job.job_id.to_string(),
                    "resource_name": job.name,
                    "resource_detail": null,
                    "tags": tags,
                })
            })
            .collect();
        json!({"resources": resources, "total_count": total})
    });
    Ok(Reply::json(answer))
}
