//! The typed DLI Flink job client: list (paged), detail, create/update SQL and Jar jobs, run,
//! stop, delete, export, import, import-savepoint and trigger-savepoint.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};
use url::Url;

use super::dli_wire::{self, BodyFor};
use super::error::BatchFailure;
use super::http::{Call, ServiceClient};
use super::wire::{
    epoch_millis, field, first_field, flexible_bool, flexible_i64, non_empty_string,
};
use super::{ClientOptions, CloudError, Credentials, RequestMetrics};
use crate::model::{FlinkJobConfig, FlinkJobStatus, JobKind, ObservedFlinkJob, UpdateScope};

/// The largest page the list endpoint serves.
pub const MAX_PAGE_SIZE: u32 = 100;
/// A bound on pages per listing, so a misbehaving server cannot keep us paging forever.
const MAX_PAGES: u32 = 10_000;

/// Filters for [`DliClient::list_jobs`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListJobsQuery {
    /// Exact job name. The service may match it fuzzily; the client keeps exact matches only.
    pub name: Option<String>,
    pub job_type: Option<String>,
    pub status: Option<String>,
    pub queue_name: Option<String>,
    /// `k=v,k2=v2`.
    pub tags: Option<String>,
    /// Page size; 0 or more than 100 means 100.
    pub page_size: u32,
    /// Ask for each job's configuration (`show_detail=true`, SDK `ListFlinkJobsRequest`): each
    /// entry then carries [`ListedConfig`].
    pub show_detail: bool,
}

/// What a listing with `show_detail=true` said about one job's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedConfig {
    /// The listing was not asked for configurations.
    NotAsked,
    /// The entry's `job_config` read as a complete job (tags empty: a list entry carries none;
    /// they come from the tag API).
    Read(Box<ObservedFlinkJob>),
    /// The entry has no `job_config`: never read as "no configuration".
    Missing,
    /// The entry's `job_config` could not be read (what was wrong).
    Unreadable(String),
}

/// One entry of the job list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFlinkJob {
    pub id: i64,
    pub name: String,
    pub status: FlinkJobStatus,
    /// 13-digit epoch milliseconds (the create time when the service sent no update time).
    pub update_time: i64,
    pub job_type: Option<String>,
    pub queue_name: Option<String>,
    /// The configuration the entry carried (`show_detail`).
    pub config: ListedConfig,
}

/// A complete listing and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedJobs {
    pub jobs: Vec<ListedFlinkJob>,
    /// HTTP calls (pages) the listing took.
    pub pages: u32,
    /// `total_count` as the service reported it on the last page.
    pub total_count: Option<i64>,
}

/// Every Flink job's tags, by job id, and the calls (pages) it took.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobTagListing {
    pub tags: BTreeMap<i64, BTreeMap<String, String>>,
    pub pages: u32,
}

/// Page size of the bulk tag read (`resource-instances/filter`): its documented default.
const TAG_PAGE_SIZE: i64 = 1000;

/// One entry of an import's `job_mapping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMapping {
    pub old_job_id: Option<i64>,
    /// `-1` when the job was not imported (same name exists and `is_cover` was false).
    pub new_job_id: i64,
    pub remark: Option<String>,
}

/// The DLI client of one project.
#[derive(Debug)]
pub struct DliClient {
    core: ServiceClient,
}

impl DliClient {
    /// `endpoint` is `https://dli.{region}.myhuaweicloud.com` or the emulator's URL.
    pub fn new(
        endpoint: Url,
        project_id: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<DliClient, CloudError> {
        validate_project_id(project_id)?;
        Ok(DliClient {
            core: ServiceClient::new("dli", endpoint, project_id, credentials, options)?,
        })
    }

    /// The project every call of this client names.
    pub fn project_id(&self) -> &str {
        self.core.project_id()
    }

    /// The request counters this client records into (shared by every client built from the
    /// same options), for the daemon's `/metrics`.
    pub fn request_metrics(&self) -> RequestMetrics {
        self.core.options().metrics.clone()
    }

    fn call(&self, operation: &'static str, method: Method, tail: &[&str]) -> Call {
        let mut segments = vec!["v1.0", self.core.project_id(), "streaming"];
        segments.extend_from_slice(tail);
        Call::new(operation, method, &segments)
    }

    /// Every job matching `query`, paging with `limit=100`.
    pub async fn list_jobs(
        &self,
        query: &ListJobsQuery,
    ) -> Result<Vec<ListedFlinkJob>, CloudError> {
        Ok(self.list_jobs_paged(query).await?.jobs)
    }

    /// Like [`list_jobs`](Self::list_jobs), also saying how many calls it took.
    pub async fn list_jobs_paged(&self, query: &ListJobsQuery) -> Result<ListedJobs, CloudError> {
        let limit = if query.page_size == 0 || query.page_size > MAX_PAGE_SIZE {
            MAX_PAGE_SIZE
        } else {
            query.page_size
        };
        let mut jobs = Vec::new();
        let mut seen = BTreeSet::new();
        let mut offset: i64 = 0;
        let mut pages = 0;
        let mut total_count = None;
        loop {
            pages += 1;
            let mut call = self
                .call("list_jobs", Method::GET, &["jobs"])
                .query("limit", limit)
                .query("offset", offset)
                .query("order", "asc");
            if query.show_detail {
                call = call.query("show_detail", "true");
            }
            for (key, value) in [
                ("name", &query.name),
                ("job_type", &query.job_type),
                ("status", &query.status),
                ("queue_name", &query.queue_name),
                ("tags", &query.tags),
            ] {
                if let Some(value) = value {
                    call = call.query(key, value);
                }
            }
            if let Some(name) = &query.name {
                call = call.target(format!("name {name}"));
            }
            let response = self.core.send(&call).await?;
            let body = response.successful_json()?;
            let list = first_field(&body, &["job_list", "jobs"]);
            let page_total = flexible_i64(field(list, "total_count"));
            // An answer without the list (empty body, `null`, `{}`, a bare `is_success`) is
            // not "no jobs": read as such, the planner would see every live job as missing.
            // Only an explicit `total_count: 0` may stand for an omitted empty `jobs`.
            let entries = match first_field(list, &["jobs"]) {
                Value::Array(entries) => entries.clone(),
                Value::Null if list.is_array() => list.as_array().cloned().unwrap_or_default(),
                Value::Null if list.is_object() && page_total == Some(0) => Vec::new(),
                Value::Null => {
                    return Err(response.decode_error(format!(
                        "a 2xx answer without job_list.jobs (got {}); refusing to read it as \
                         no jobs live",
                        super::wire::shorten(&body.to_string())
                    )));
                }
                other => {
                    return Err(
                        response.decode_error(format!("job_list.jobs is not a list: {other}"))
                    );
                }
            };
            total_count = page_total.or(total_count);
            let page_len = entries.len() as i64;
            let mut new_ids = 0usize;
            for entry in &entries {
                let mut listed =
                    listed_job(entry).map_err(|problem| response.decode_error(problem))?;
                if query.show_detail {
                    listed.config = listed_config(entry);
                }
                // Jobs created while we page can shift offsets and repeat an entry. Every id
                // counts as seen, matched by name or not, so the loop check below is fair.
                if !seen.insert(listed.id) {
                    continue;
                }
                new_ids += 1;
                if query
                    .name
                    .as_deref()
                    .is_some_and(|name| name != listed.name)
                {
                    continue;
                }
                jobs.push(listed);
            }
            offset += page_len;
            let full_page = page_len >= i64::from(limit);
            if full_page && new_ids == 0 {
                // A shifted offset repeats a few entries, never a whole page; a full page of
                // ids already listed means the server ignores `offset`, and paging on would
                // only repeat it until MAX_PAGES.
                tracing::warn!(
                    pages,
                    offset,
                    page_len,
                    "DLI job list repeats itself; stopping."
                );
                return Err(response.decode_error(format!(
                    "page {pages} (offset {}) holds {page_len} jobs, all already listed on \
                     earlier pages; the service ignores the page offset, so listing stopped \
                     rather than loop (check the endpoint or a proxy in between)",
                    offset - page_len
                )));
            }
            let done = !full_page || total_count.is_some_and(|total| offset >= total);
            if done || pages >= MAX_PAGES {
                break;
            }
        }
        tracing::debug!(jobs = jobs.len(), pages, "Listed DLI Flink jobs.");
        Ok(ListedJobs {
            jobs,
            pages,
            total_count,
        })
    }

    /// The job's detail in canonical form. Tags come from the detail when it carries them,
    /// otherwise from the tag API (`/v3/{project_id}/dli_flink_job/{id}/tags`).
    pub async fn job_detail(&self, job_id: i64) -> Result<ObservedFlinkJob, CloudError> {
        let id = job_id.to_string();
        let call = self
            .call("job_detail", Method::GET, &["jobs", &id])
            .target(format!("job {job_id}"));
        let response = self.core.send(&call).await?;
        let body = response.successful_json()?;
        let detail = first_field(&body, &["job_detail", "job"]);
        let has_tags = !field(detail, "tags").is_null()
            || !field(field(detail, "job_config"), "tags").is_null();
        let tags = if has_tags {
            None
        } else {
            Some(self.job_tags(job_id).await?)
        };
        dli_wire::observed_from_detail(detail, tags)
            .map_err(|problem| response.decode_error(problem))
    }

    /// The job's tags from the tag API. A 404 (a service or emulator without the tag API) reads
    /// as no tags, logged, so detail still works; other failures are errors.
    pub async fn job_tags(&self, job_id: i64) -> Result<BTreeMap<String, String>, CloudError> {
        let id = job_id.to_string();
        let call = Call::new(
            "job_tags",
            Method::GET,
            &["v3", self.core.project_id(), "dli_flink_job", &id, "tags"],
        )
        .target(format!("job {job_id}"));
        match self.core.send(&call).await {
            Ok(response) => {
                let body = response.json()?;
                dli_wire::key_value_map(field(&body, "tags"), "tags")
                    .map_err(|problem| response.decode_error(problem))
            }
            Err(error) if error.status() == Some(404) && !error.is_not_found_code() => {
                tracing::warn!(job_id, error = %error, "The tag API is not available; reading the job as untagged.");
                Ok(BTreeMap::new())
            }
            Err(error) => Err(error),
        }
    }

    /// The tags of every Flink job in one paged read: `POST
    /// /v3/{project_id}/dli_flink_job/resource-instances/filter` (SDK `ListResourcesByTags`,
    /// API reference dli_02_0399) with an empty filter, which lists every resource of the type,
    /// tagged or not, `limit` 1000 per page (the documented default). Each resource is
    /// `{resource_id, resource_name, tags: [{key, value}]}`, the page `{resources, total_count}`.
    pub async fn list_all_job_tags(&self) -> Result<JobTagListing, CloudError> {
        let mut tags = BTreeMap::new();
        let mut offset: i64 = 0;
        let mut pages = 0;
        loop {
            pages += 1;
            let call = Call::new(
                "list_job_tags_bulk",
                Method::POST,
                &[
                    "v3",
                    self.core.project_id(),
                    "dli_flink_job",
                    "resource-instances",
                    "filter",
                ],
            )
            .query("limit", TAG_PAGE_SIZE)
            .query("offset", offset)
            .json(json!({}));
            let response = self.core.send(&call).await?;
            let body = response.json()?;
            let total = flexible_i64(field(&body, "total_count"));
            let resources = match field(&body, "resources") {
                Value::Array(resources) => resources,
                Value::Null if total == Some(0) => &Vec::new(),
                other => {
                    return Err(response.decode_error(format!(
                        "resources is not a list (got {}); refusing to read it as no tags",
                        super::wire::shorten(&other.to_string())
                    )));
                }
            };
            let page_len = resources.len() as i64;
            let mut new_ids = 0usize;
            for resource in resources {
                let id = flexible_i64(field(resource, "resource_id")).ok_or_else(|| {
                    response.decode_error(format!(
                        "resource without a numeric resource_id: {}",
                        super::wire::shorten(&resource.to_string())
                    ))
                })?;
                let job_tags = dli_wire::key_value_map(field(resource, "tags"), "tags")
                    .map_err(|problem| response.decode_error(problem))?;
                if tags.insert(id, job_tags).is_none() {
                    new_ids += 1;
                }
            }
            offset += page_len;
            let full_page = page_len >= TAG_PAGE_SIZE;
            if full_page && new_ids == 0 {
                return Err(response.decode_error(format!(
                    "tag page {pages} (offset {}) repeats resources already listed; the service \
                     ignores the page offset",
                    offset - page_len
                )));
            }
            if !full_page || total.is_some_and(|total| offset >= total) || pages >= MAX_PAGES {
                break;
            }
        }
        tracing::debug!(jobs = tags.len(), pages, "Listed DLI Flink job tags.");
        Ok(JobTagListing { tags, pages })
    }

    /// Adds or replaces tags through the tag API
    /// (`POST /v3/{project_id}/dli_flink_job/{id}/tags/create`); no restart.
    pub async fn create_job_tags(
        &self,
        job_id: i64,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        if tags.is_empty() {
            return Ok(());
        }
        let body = json!({"tags": tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect::<Vec<_>>()});
        self.tag_call("create_job_tags", "create", job_id, body)
            .await
    }

    /// Removes tags by key through the tag API (`.../tags/delete`).
    pub async fn delete_job_tags(&self, job_id: i64, keys: &[String]) -> Result<(), CloudError> {
        if keys.is_empty() {
            return Ok(());
        }
        let body = json!({"tags": keys.iter().map(|key| json!({"key": key})).collect::<Vec<_>>()});
        self.tag_call("delete_job_tags", "delete", job_id, body)
            .await
    }

    async fn tag_call(
        &self,
        operation: &'static str,
        action: &str,
        job_id: i64,
        body: Value,
    ) -> Result<(), CloudError> {
        let id = job_id.to_string();
        let call = Call::new(
            operation,
            Method::POST,
            &[
                "v3",
                self.core.project_id(),
                "dli_flink_job",
                &id,
                "tags",
                action,
            ],
        )
        .target(format!("job {job_id}"))
        .json(body);
        // The tag API answers 204 without a body.
        self.core.send(&call).await?;
        Ok(())
    }

    /// Creates a Flink SQL job (a draft); returns its id. Fields only the update body has
    /// (`operator_config`, `static_estimator_config`) follow in an update right after, as
    /// Terraform does.
    pub async fn create_sql_job(
        &self,
        name: &str,
        config: &FlinkJobConfig,
    ) -> Result<i64, CloudError> {
        let body = dli_wire::sql_job_body(Some(name), config, BodyFor::Create);
        let job_id = self
            .create(name, "create_sql_job", &["sql-jobs"], body)
            .await?;
        if let Some(followup) = dli_wire::sql_followup_update_body(config) {
            self.update(job_id, "update_sql_job", "sql-jobs", followup)
                .await?;
        }
        Ok(job_id)
    }

    /// Creates a Flink Jar job (a draft); returns its id.
    pub async fn create_jar_job(
        &self,
        name: &str,
        config: &FlinkJobConfig,
    ) -> Result<i64, CloudError> {
        let body = dli_wire::jar_job_body(Some(name), config, BodyFor::Create);
        self.create(name, "create_jar_job", &["flink-jobs"], body)
            .await
    }

    /// A create is never resent blindly: after a transient failure the job may exist already, so
    /// the client looks it up by name and returns its id, and only resends when it is absent.
    async fn create(
        &self,
        name: &str,
        operation: &'static str,
        tail: &[&str],
        body: Value,
    ) -> Result<i64, CloudError> {
        validate_job_name(name)?;
        let call = self
            .call(operation, Method::POST, tail)
            .target(format!("job {name}"))
            .json(body)
            .not_idempotent();
        let policy = &self.core.options().retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.core.send(&call).await {
                Ok(response) => {
                    let value = response.successful_json()?;
                    let job = field(&value, "job");
                    return flexible_i64(first_field(job, &["job_id", "id"]))
                        .or_else(|| flexible_i64(field(&value, "job_id")))
                        .ok_or_else(|| {
                            response.decode_error("create answered without job.job_id")
                        });
                }
                Err(mut error) if error.is_retryable() && attempt < policy.max_attempts.max(1) => {
                    let query = ListJobsQuery {
                        name: Some(name.to_string()),
                        ..ListJobsQuery::default()
                    };
                    let existing = self.list_jobs(&query).await?;
                    if let Some(job) = existing.first() {
                        tracing::info!(job = name, job_id = job.id, error = %error,
                            "The create call failed in transit but the job exists; using it.");
                        return Ok(job.id);
                    }
                    let mut delay =
                        super::http::full_jitter(policy.base_backoff, policy.max_backoff, attempt);
                    if let Some(retry_after) = error.retry_after() {
                        if retry_after > policy.max_retry_after {
                            return Err(error);
                        }
                        delay = delay.max(retry_after);
                    }
                    tracing::warn!(job = name, attempt, error = %error,
                        "The create call failed in transit and the job does not exist; sending it again.");
                    if let Some(context) = error.context_mut() {
                        context.attempts = attempt;
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(mut error) => {
                    if let Some(context) = error.context_mut() {
                        context.attempts = attempt;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Updates a Flink SQL job in place.
    pub async fn update_sql_job(
        &self,
        job_id: i64,
        config: &FlinkJobConfig,
    ) -> Result<(), CloudError> {
        let body = dli_wire::sql_job_body(None, config, BodyFor::Update);
        self.update(job_id, "update_sql_job", "sql-jobs", body)
            .await
    }

    /// Updates a Flink Jar job in place.
    pub async fn update_jar_job(
        &self,
        job_id: i64,
        config: &FlinkJobConfig,
    ) -> Result<(), CloudError> {
        let body = dli_wire::jar_job_body(None, config, BodyFor::Update);
        self.update(job_id, "update_jar_job", "flink-jobs", body)
            .await
    }

    /// Updates a job in place with the body `scope` asks for: the full update body of its type,
    /// or only the fields a running job accepts ([`dli_wire::running_update_body`]).
    pub async fn update_job(
        &self,
        job_id: i64,
        config: &FlinkJobConfig,
        scope: &UpdateScope,
    ) -> Result<(), CloudError> {
        let (operation, collection) = match config.kind() {
            JobKind::FlinkJar => ("update_jar_job", "flink-jobs"),
            _ => ("update_sql_job", "sql-jobs"),
        };
        let body = match scope {
            UpdateScope::Running { changed } => dli_wire::running_update_body(config, changed),
            UpdateScope::Full | UpdateScope::Clearing { .. } => {
                let mut body = match config.kind() {
                    JobKind::FlinkJar => dli_wire::jar_job_body(None, config, BodyFor::Update),
                    _ => dli_wire::sql_job_body(None, config, BodyFor::Update),
                };
                if let UpdateScope::Clearing { fields } = scope {
                    dli_wire::clear_fields(&mut body, config, fields);
                }
                body
            }
        };
        self.update(job_id, operation, collection, body).await
    }

    async fn update(
        &self,
        job_id: i64,
        operation: &'static str,
        collection: &str,
        body: Value,
    ) -> Result<(), CloudError> {
        let id = job_id.to_string();
        let call = self
            .call(operation, Method::PUT, &[collection, &id])
            .target(format!("job {job_id}"))
            .json(body);
        self.core.send(&call).await?.successful_json()?;
        Ok(())
    }

    /// Starts jobs (asynchronously: poll the detail for the status).
    pub async fn run_jobs(
        &self,
        job_ids: &[i64],
        resume_savepoint: bool,
    ) -> Result<(), CloudError> {
        let body = json!({"job_ids": job_ids, "resume_savepoint": resume_savepoint});
        self.batch("run_jobs", "run", job_ids, body).await
    }

    /// Stops jobs, optionally taking a savepoint first.
    pub async fn stop_jobs(
        &self,
        job_ids: &[i64],
        trigger_savepoint: bool,
    ) -> Result<(), CloudError> {
        let body = json!({"job_ids": job_ids, "trigger_savepoint": trigger_savepoint});
        self.batch("stop_jobs", "stop", job_ids, body).await
    }

    /// Deletes jobs in one batch call.
    pub async fn delete_jobs(&self, job_ids: &[i64]) -> Result<(), CloudError> {
        let body = json!({"job_ids": job_ids});
        self.batch("delete_jobs", "delete", job_ids, body).await
    }

    async fn batch(
        &self,
        operation: &'static str,
        action: &str,
        job_ids: &[i64],
        body: Value,
    ) -> Result<(), CloudError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let target = format!(
            "jobs {}",
            job_ids
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut call = self
            .call(operation, Method::POST, &["jobs", action])
            .target(target)
            .json(body);
        if action != "delete" {
            // Run and stop change a job's lifecycle: a resend after a timeout or a lost answer
            // could land after the first one and after later steps (a late stop stopping a job
            // that was started again). The caller observes the job and decides instead.
            call = call.not_idempotent();
        }
        let response = self.core.send(&call).await?;
        let value = response.json()?;
        let failures = batch_failures(&value, job_ids);
        if failures.is_empty() {
            return Ok(());
        }
        Err(CloudError::BatchFailed {
            context: response.context.clone(),
            total: job_ids.len(),
            failures,
        })
    }

    /// Deletes one job. Job records stay in the service's history.
    pub async fn delete_job(&self, job_id: i64) -> Result<(), CloudError> {
        let id = job_id.to_string();
        let call = self
            .call("delete_job", Method::DELETE, &["jobs", &id])
            .target(format!("job {job_id}"));
        self.core.send(&call).await?.successful_json()?;
        Ok(())
    }

    /// Exports jobs (all when `job_ids` is `None`) as zips under `obs_dir` (`bucket/dir`, no
    /// scheme; an `obs://` prefix is removed). Returns the zip paths (`bucket/dir/x.zip`).
    pub async fn export_jobs(
        &self,
        obs_dir: &str,
        job_ids: Option<&[i64]>,
    ) -> Result<Vec<String>, CloudError> {
        let obs_dir = super::obs::strip_obs_scheme(obs_dir);
        let body = match job_ids {
            Some(ids) => json!({"obs_dir": obs_dir, "is_selected": true, "job_selected": ids}),
            None => json!({"obs_dir": obs_dir, "is_selected": false}),
        };
        let call = self
            .call("export_jobs", Method::POST, &["jobs", "export"])
            .target(obs_dir.to_string())
            .json(body);
        let response = self.core.send(&call).await?;
        let value = response.successful_json()?;
        match field(&value, "zip_file") {
            Value::Array(items) => Ok(items.iter().filter_map(non_empty_string).collect()),
            Value::String(single) if !single.is_empty() => Ok(vec![single.clone()]),
            Value::Null => Ok(Vec::new()),
            other => Err(response.decode_error(format!("zip_file is not a list: {other}"))),
        }
    }

    /// Imports jobs from a zip (or a folder of zips), `bucket/dir/x.zip`; `is_cover` overwrites
    /// same-name jobs (and leaves them in draft).
    pub async fn import_jobs(
        &self,
        zip_file: &str,
        is_cover: bool,
    ) -> Result<Vec<JobMapping>, CloudError> {
        let zip_file = super::obs::strip_obs_scheme(zip_file);
        // Never resent: an import with `is_cover` resets the job to draft and detaches its
        // savepoint, so a first attempt landing late (after a resend and the savepoint import)
        // would wipe the state. The caller observes the job and decides.
        let call = self
            .call("import_jobs", Method::POST, &["jobs", "import"])
            .target(zip_file.to_string())
            .json(json!({"zip_file": zip_file, "is_cover": is_cover}))
            .not_idempotent();
        let response = self.core.send(&call).await?;
        let value = response.successful_json()?;
        let entries = match field(&value, "job_mapping") {
            Value::Array(entries) => entries.clone(),
            Value::Null => Vec::new(),
            other => {
                return Err(response.decode_error(format!("job_mapping is not a list: {other}")));
            }
        };
        entries
            .iter()
            .map(|entry| {
                Ok(JobMapping {
                    old_job_id: flexible_i64(field(entry, "old_job_id")),
                    new_job_id: flexible_i64(field(entry, "new_job_id")).ok_or_else(|| {
                        response
                            .decode_error(format!("job_mapping entry without new_job_id: {entry}"))
                    })?,
                    remark: non_empty_string(field(entry, "remark")),
                })
            })
            .collect()
    }

    /// Imports a savepoint (`obs://bucket/dir/`, the parent of `_metadata`) into a stopped job.
    pub async fn import_savepoint(
        &self,
        job_id: i64,
        savepoint_path: &str,
    ) -> Result<(), CloudError> {
        let id = job_id.to_string();
        let path = super::obs::with_obs_scheme(savepoint_path);
        let call = self
            .call(
                "import_savepoint",
                Method::POST,
                &["jobs", &id, "import-savepoint"],
            )
            .target(format!("job {job_id}"))
            .json(json!({"job_id": job_id, "savepoint_path": path}));
        self.core.send(&call).await?.successful_json()?;
        Ok(())
    }

    /// Triggers a savepoint of a running job into `savepoint_path` (`bucket/dir/`).
    pub async fn trigger_savepoint(
        &self,
        job_id: i64,
        savepoint_path: &str,
    ) -> Result<(), CloudError> {
        let id = job_id.to_string();
        let path = super::obs::strip_obs_scheme(savepoint_path);
        let call = self
            .call(
                "trigger_savepoint",
                Method::POST,
                &["jobs", &id, "savepoint"],
            )
            .target(format!("job {job_id}"))
            .json(json!({"action": "TRIGGER", "savepoint_path": path}));
        self.core.send(&call).await?.successful_json()?;
        Ok(())
    }
}

/// OBS authorisation (`RegisterBucket` in the SDK): one self-contained block.
impl DliClient {
    /// Grants DLI access to OBS buckets (`POST /v1.0/{project_id}/dli/obs-authorize`, body
    /// `{"obs_buckets": [...]}`), for checkpoints, logs, exports and imports. The answer is
    /// `{is_success, message}`; `is_success` may be a boolean or a string.
    pub async fn authorize_obs_buckets(&self, buckets: &[String]) -> Result<(), CloudError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let call = Call::new(
            "authorize_obs_buckets",
            Method::POST,
            &["v1.0", self.core.project_id(), "dli", "obs-authorize"],
        )
        .target(format!("OBS buckets {}", buckets.join(", ")))
        .json(json!({ "obs_buckets": buckets }));
        self.core.send(&call).await?.successful_json()?;
        Ok(())
    }
}

/// One DLI queue as the queue list reports it (SDK `QueueDetails`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DliQueue {
    pub name: String,
    /// `sql` or `general` (Flink jobs run on `general` queues).
    pub queue_type: Option<String>,
    pub cu_count: Option<i64>,
}

/// The queue list (`ListQueues` in the SDK) and the raw call the doctor's probe uses: one
/// self-contained block.
impl DliClient {
    /// Every queue of the project, of every type: `GET /v1.0/{project_id}/queues?queue_type=all`
    /// (SDK `ListQueuesRequest`: `queue_type` defaults to `sql`, which would hide the `general`
    /// queues Flink jobs run on). The answer is `{is_success, message, queues: [QueueDetails]}`.
    pub async fn list_queues(&self) -> Result<Vec<DliQueue>, CloudError> {
        let call = Call::new(
            "list_queues",
            Method::GET,
            &["v1.0", self.core.project_id(), "queues"],
        )
        .query("queue_type", "all");
        let response = self.core.send(&call).await?;
        let value = response.successful_json()?;
        let entries = match field(&value, "queues") {
            Value::Array(entries) => entries.clone(),
            Value::Null => Vec::new(),
            other => return Err(response.decode_error(format!("queues is not a list: {other}"))),
        };
        entries
            .iter()
            .map(|entry| {
                Ok(DliQueue {
                    name: non_empty_string(field(entry, "queue_name")).ok_or_else(|| {
                        response.decode_error(format!("queue without queue_name: {entry}"))
                    })?,
                    queue_type: non_empty_string(field(entry, "queue_type")),
                    cu_count: flexible_i64(field(entry, "cu_count")),
                })
            })
            .collect()
    }

    /// Sends one call exactly as given, once (never resent), below `/v1.0/{project_id}/` and
    /// returns the decoded JSON answer. For `dli-gitops doctor --probe`, which asks the service
    /// questions the typed calls deliberately avoid (a duplicate create without the by-name
    /// check, an `obs://` export path).
    pub async fn send_once_for_probe(
        &self,
        operation: &'static str,
        method: Method,
        tail: &[&str],
        body: Option<Value>,
    ) -> Result<Value, CloudError> {
        let mut segments = vec!["v1.0", self.core.project_id()];
        segments.extend_from_slice(tail);
        let mut call = Call::new(operation, method, &segments).not_idempotent();
        if let Some(body) = body {
            call = call.json(body);
        }
        self.core.send(&call).await?.json()
    }
}

impl CloudError {
    /// A 404 that carries one of the "no such job" codes (as opposed to a missing route).
    fn is_not_found_code(&self) -> bool {
        self.error_code().is_some() && self.is_not_found()
    }
}

fn listed_job(entry: &Value) -> Result<ListedFlinkJob, String> {
    Ok(ListedFlinkJob {
        id: flexible_i64(first_field(entry, &["job_id", "id"]))
            .ok_or_else(|| format!("job without job_id: {entry}"))?,
        name: non_empty_string(field(entry, "name"))
            .ok_or_else(|| format!("job without name: {entry}"))?,
        status: FlinkJobStatus::from(
            non_empty_string(field(entry, "status")).unwrap_or_else(|| "unknown".into()),
        ),
        update_time: epoch_millis(first_field(entry, &["update_time", "create_time"])).unwrap_or(0),
        job_type: non_empty_string(field(entry, "job_type")),
        queue_name: non_empty_string(field(entry, "queue_name")),
        config: ListedConfig::NotAsked,
    })
}

/// The configuration a `show_detail` list entry carries (SDK `FlinkJob.job_config`, a
/// `FlinkJobConfig`, next to `sql_body`, `main_class`, `queue_name`, ... of `FlinkJob`). An
/// entry without a `job_config` object is `Missing`, one that does not read is `Unreadable`:
/// the caller reads those jobs' details instead.
fn listed_config(entry: &Value) -> ListedConfig {
    match field(entry, "job_config") {
        Value::Null => ListedConfig::Missing,
        Value::Object(_) => match dli_wire::observed_from_detail(entry, Some(BTreeMap::new())) {
            Ok(job) => ListedConfig::Read(Box::new(job)),
            Err(problem) => ListedConfig::Unreadable(problem),
        },
        other => ListedConfig::Unreadable(format!(
            "job_config is not an object: {}",
            super::wire::shorten(&other.to_string())
        )),
    }
}

/// Per-job failures in a batch answer: an array of `{is_success, message}` in request order, or
/// an object with `is_success` for the whole batch, or an array of error objects.
fn batch_failures(value: &Value, job_ids: &[i64]) -> Vec<BatchFailure> {
    let failure_of = |item: &Value| -> Option<String> {
        let code = non_empty_string(first_field(item, &["error_code", "code"]));
        let message = non_empty_string(first_field(item, &["message", "error_msg", "msg"]))
            .unwrap_or_default();
        match flexible_bool(field(item, "is_success")) {
            Some(false) => Some(message),
            Some(true) => None,
            None => code.map(|code| format!("{code}: {message}")),
        }
    };
    match value {
        Value::Array(items) => {
            let mut failures = Vec::new();
            for (index, item) in items.iter().enumerate() {
                if let Some(message) = failure_of(item) {
                    // The service answers in request order; an unmatched extra entry is job 0.
                    let job_id = flexible_i64(field(item, "job_id"))
                        .or_else(|| job_ids.get(index).copied())
                        .unwrap_or(0);
                    failures.push(BatchFailure {
                        job_id,
                        message: super::wire::shorten(&message),
                    });
                }
            }
            failures
        }
        Value::Object(_) => match failure_of(value) {
            Some(message) => job_ids
                .iter()
                .map(|job_id| BatchFailure {
                    job_id: *job_id,
                    message: super::wire::shorten(&message),
                })
                .collect(),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn validate_project_id(project_id: &str) -> Result<(), CloudError> {
    if project_id.is_empty()
        || !project_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(CloudError::Config {
            problem: format!(
                "project id {project_id:?} is not a project id (expected letters and digits, e.g. 0a1b2c...)"
            ),
        });
    }
    Ok(())
}

fn validate_job_name(name: &str) -> Result<(), CloudError> {
    if name.is_empty() || name.chars().count() > 57 {
        return Err(CloudError::Config {
            problem: format!("job name {name:?} must be 1 to 57 characters"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_answers_in_every_shape() {
        let ids = [1, 2, 3];
        let all_ok = json!([{"is_success": "true", "message": "ok"}, {"is_success": true}, {"is_success": "true"}]);
        assert!(batch_failures(&all_ok, &ids).is_empty());
        let one_bad = json!([{"is_success": "true"}, {"is_success": "false", "message": "not running"}, {"is_success": true}]);
        assert_eq!(
            batch_failures(&one_bad, &ids),
            vec![BatchFailure {
                job_id: 2,
                message: "not running".into()
            }]
        );
        let error_array =
            json!([{"error_code": "DLI.13024", "error_msg": "No job-running queue selected"}]);
        let failures = batch_failures(&error_array, &[9]);
        assert_eq!(failures[0].job_id, 9);
        assert!(failures[0].message.contains("DLI.13024"));
        let whole = json!({"is_success": false, "message": "quota"});
        assert_eq!(batch_failures(&whole, &ids).len(), 3);
        assert!(batch_failures(&json!({"is_success": "true"}), &ids).is_empty());
    }

    #[test]
    fn names_and_projects_are_checked_before_any_call() {
        assert!(validate_job_name(&"x".repeat(58)).is_err());
        assert!(validate_job_name("ok").is_ok());
        assert!(validate_project_id("abc/../x").is_err());
        assert!(validate_project_id("0a1b2c").is_ok());
    }
}
