//! The HTTP front of the DLI, DLF and IAM APIs: routing, body limits, faults, authentication,
//! request ids, and the service's error shapes. Handlers live in `dli`, `dlf`, `iam`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::{self, IssuedToken};
use super::config::EmulatorConfig;
use super::faults::{FaultDecision, FaultInjector};
use super::obs::ObjectStore;
use super::state::{self, EmulatorState, ProjectState};
use super::store::{ChangeRecord, StateStore};
use super::{dlf, dli, iam, introspection};

/// State shared by every request.
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub objects: ObjectStore,
    pub store: Mutex<StateStore>,
    pub tokens: Mutex<HashMap<String, IssuedToken>>,
    /// Consecutive signature failures and lock expiry per access key.
    pub lockouts: Mutex<HashMap<String, auth::Lockout>>,
    pub stats: Mutex<BTreeMap<&'static str, u64>>,
    pub faults: FaultInjector,
    /// Seals this data directory's Flink export zips; import accepts only zips it sealed.
    pub export_key: crate::emulator::dli::export_format::ExportKey,
    /// SMN messages published (`GET /_emulator/v1/smn/messages`).
    pub smn: super::smn::SmnMessages,
}

impl Shared {
    /// Runs `read` on a project's state after applying the transitions that are due. Applied
    /// transitions are logged like any change, so that a restart replays exactly what callers saw.
    pub fn read<T>(
        &self,
        project_id: &str,
        now_ms: i64,
        read: impl FnOnce(&ProjectState) -> T,
    ) -> T {
        let mut store = self
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = advance_durably(&mut store, project_id, now_ms) {
            tracing::error!(error = %error, "Logging due emulator transitions failed.");
        }
        let project = store
            .state
            .projects
            .entry(project_id.to_string())
            .or_default();
        read(project)
    }

    /// Runs `change` on a draft of the caller's project and commits it only if `change`
    /// succeeds and its change record is durable: a failed call leaves no partial change, in
    /// memory or on disk. Handlers see a state holding only their own project.
    pub fn mutate<T>(
        &self,
        project_id: &str,
        now_ms: i64,
        change: impl FnOnce(&mut EmulatorState) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let save_error = |error: state::StateError| {
            tracing::error!(error = %error, "Logging an emulator change failed; the change is rolled back.");
            ApiError::internal(Service::Dli, "the emulator could not save its state")
        };
        let mut store = self
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        advance_durably(&mut store, project_id, now_ms).map_err(save_error)?;
        let before = store.state.project_copy(project_id);
        let mut draft = store.state.clone_counters();
        draft
            .projects
            .insert(project_id.to_string(), before.clone());
        let output = change(&mut draft)?;
        let mut after = draft.projects.remove(project_id).unwrap_or_default();
        // Zero-delay transitions scheduled by the call take effect before it answers.
        after.advance(now_ms);
        let record = ChangeRecord::between(project_id, &draft, &before, &after);
        let counters_changed = draft.next_job_id != store.state.next_job_id
            || draft.next_task_number != store.state.next_task_number;
        if counters_changed || !record.is_empty() {
            store.append(&record).map_err(save_error)?;
        }
        store.state.next_job_id = draft.next_job_id;
        store.state.next_task_number = draft.next_task_number;
        store.state.projects.insert(project_id.to_string(), after);
        // On failure the log still holds every change; compaction is retried after the next one.
        if store.wants_compaction()
            && let Err(error) = store.compact()
        {
            tracing::error!(error = %error, "Compacting the emulator state failed.");
        }
        Ok(output)
    }

    /// Folds the change log into `state.json` (at shutdown).
    pub fn compact(&self) -> Result<(), state::StateError> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .compact()
    }
}

/// Applies and logs the transitions due in a project (nothing is written when none are due).
fn advance_durably(
    store: &mut StateStore,
    project_id: &str,
    now_ms: i64,
) -> Result<(), state::StateError> {
    let Some(project) = store.state.projects.get(project_id) else {
        return Ok(());
    };
    if !project.has_due(now_ms) {
        return Ok(());
    }
    let before = project.clone();
    let mut after = before.clone();
    after.advance(now_ms);
    let record = ChangeRecord::between(project_id, &store.state.clone_counters(), &before, &after);
    let appended = store.append(&record);
    // Applied even when logging failed (the caller logs the error): the transitions follow from
    // persisted timestamps, so a restart derives them again.
    store.state.projects.insert(project_id.to_string(), after);
    appended
}

/// Which API family a route belongs to; decides the error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Dli,
    Dlf,
    Iam,
    Emulator,
}

/// An error as the service reports it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    /// `{"error_code": code, "error_msg": message}` with HTTP 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::with_status(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn with_status(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"error_code": code, "error_msg": message.into()}),
        }
    }

    /// A DLI parameter error (`DLI.0001`).
    pub fn dli_parameter(message: impl Into<String>) -> ApiError {
        ApiError::bad_request("DLI.0001", message)
    }

    /// A missing Flink job: HTTP 400 `DLI.16001`, as the real service answers.
    pub fn dli_missing_job(job_id: i64) -> ApiError {
        ApiError::bad_request(
            "DLI.16001",
            format!("The job does not exist or has been deleted: job_id={job_id}"),
        )
    }

    /// A DLF parameter error (`DLF.3051`).
    pub fn dlf_parameter(message: impl Into<String>) -> ApiError {
        ApiError::bad_request("DLF.3051", message)
    }

    /// An API-gateway error (`APIG.*`); `process` adds the `request_id` field gateway errors carry.
    pub fn gateway(status: StatusCode, code: &str, message: &str) -> ApiError {
        ApiError {
            status,
            body: json!({"error_code": code, "error_msg": message}),
        }
    }

    pub fn internal(service: Service, message: &str) -> ApiError {
        let code = match service {
            Service::Dlf => "DLF.0999",
            _ => "DLI.0999",
        };
        ApiError::with_status(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }
}

/// A successful answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: ReplyBody,
    pub headers: Vec<(HeaderName, String)>,
}

pub(crate) enum ReplyBody {
    Json(Value),
    Binary {
        bytes: Vec<u8>,
        file_name: String,
    },
    Empty,
    /// Close the connection without a complete response (an injected fault).
    Abort,
}

impl Reply {
    /// `204 No Content`: what the services answer to a change with nothing to say.
    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: ReplyBody::Empty,
            headers: Vec::new(),
        }
    }

    pub fn json(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
        }
    }
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Reply {
        Reply {
            status: error.status,
            body: ReplyBody::Json(error.body),
            headers: Vec::new(),
        }
    }
}

/// One authenticated call, as handlers see it.
pub(crate) struct Call<'a> {
    pub shared: &'a Shared,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    pub project_id: String,
    pub now_ms: i64,
}

impl Call<'_> {
    /// The JSON body as `T`; malformed JSON or wrong types are the service's parameter error.
    pub fn json_body<T: DeserializeOwned>(&self, service: Service) -> Result<T, ApiError> {
        let error = |message: String| match service {
            Service::Dlf => ApiError::dlf_parameter(message),
            _ => ApiError::dli_parameter(message),
        };
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(error(
                "The request body is empty; a JSON object is required.".into(),
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|parse_error| error(format!("The request body is not valid: {parse_error}")))
    }

    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The operations the emulator serves, named as the official SDKs name them (the stats keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    ListFlinkJobs,
    ShowFlinkJob,
    CreateFlinkSqlJob,
    UpdateFlinkSqlJob,
    CreateFlinkJarJob,
    UpdateFlinkJarJob,
    BatchRunFlinkJobs,
    BatchStopFlinkJobs,
    DeleteFlinkJob,
    BatchDeleteFlinkJobs,
    ExportFlinkJobs,
    ImportFlinkJobs,
    ExecuteFlinkJobSavepoint,
    ImportFlinkJobSavepoint,
    RegisterBucket,
    ListFlinkJobTags,
    CreateFlinkJobTags,
    DeleteFlinkJobTags,
    ListResourcesByTags,
    DlfImportJob,
    DlfListJobs,
    DlfShowJob,
    DlfExportJob,
    DlfExportJobList,
    DlfListSystemTasks,
    DlfStartJob,
    DlfStopJob,
    DlfDeleteJob,
    IamCreateToken,
    IamListProjects,
    ListQueues,
    EmulatorStats,
    EmulatorJobRuns,
    SmnPublishMessage,
    EmulatorSmnMessages,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::ListFlinkJobs => "ListFlinkJobs",
            Operation::ShowFlinkJob => "ShowFlinkJob",
            Operation::CreateFlinkSqlJob => "CreateFlinkSqlJob",
            Operation::UpdateFlinkSqlJob => "UpdateFlinkSqlJob",
            Operation::CreateFlinkJarJob => "CreateFlinkJarJob",
            Operation::UpdateFlinkJarJob => "UpdateFlinkJarJob",
            Operation::BatchRunFlinkJobs => "BatchRunFlinkJobs",
            Operation::BatchStopFlinkJobs => "BatchStopFlinkJobs",
            Operation::DeleteFlinkJob => "DeleteFlinkJob",
            Operation::BatchDeleteFlinkJobs => "BatchDeleteFlinkJobs",
            Operation::ExportFlinkJobs => "ExportFlinkJobs",
            Operation::ImportFlinkJobs => "ImportFlinkJobs",
            Operation::ExecuteFlinkJobSavepoint => "ExecuteFlinkJobSavepoint",
            Operation::ImportFlinkJobSavepoint => "ImportFlinkJobSavepoint",
            Operation::RegisterBucket => "RegisterBucket",
            Operation::ListFlinkJobTags => "ListFlinkJobTags",
            Operation::CreateFlinkJobTags => "CreateFlinkJobTags",
            Operation::DeleteFlinkJobTags => "DeleteFlinkJobTags",
            Operation::ListResourcesByTags => "ListResourcesByTags",
            Operation::DlfImportJob => "DlfImportJob",
            Operation::DlfListJobs => "DlfListJobs",
            Operation::DlfShowJob => "DlfShowJob",
            Operation::DlfExportJob => "DlfExportJob",
            Operation::DlfExportJobList => "DlfExportJobList",
            Operation::DlfListSystemTasks => "DlfListSystemTasks",
            Operation::DlfStartJob => "DlfStartJob",
            Operation::DlfStopJob => "DlfStopJob",
            Operation::DlfDeleteJob => "DlfDeleteJob",
            Operation::IamCreateToken => "IamCreateToken",
            Operation::IamListProjects => "IamListProjects",
            Operation::ListQueues => "ListQueues",
            Operation::EmulatorStats => "EmulatorStats",
            Operation::EmulatorJobRuns => "EmulatorJobRuns",
            Operation::SmnPublishMessage => "SmnPublishMessage",
            Operation::EmulatorSmnMessages => "EmulatorSmnMessages",
        }
    }

    pub fn service(self) -> Service {
        match self {
            Operation::DlfImportJob
            | Operation::DlfListJobs
            | Operation::DlfShowJob
            | Operation::DlfExportJob
            | Operation::DlfExportJobList
            | Operation::DlfListSystemTasks
            | Operation::DlfStartJob
            | Operation::DlfStopJob
            | Operation::DlfDeleteJob => Service::Dlf,
            Operation::IamCreateToken | Operation::IamListProjects => Service::Iam,
            Operation::EmulatorStats
            | Operation::EmulatorJobRuns
            | Operation::EmulatorSmnMessages => Service::Emulator,
            _ => Service::Dli,
        }
    }
}

/// Maps a method and decoded path segments to an operation and the project id in the path.
pub(crate) fn route(method: &Method, segments: &[&str]) -> Option<(Operation, Option<String>)> {
    use Operation::*;
    let get = method == Method::GET;
    let post = method == Method::POST;
    let put = method == Method::PUT;
    let delete = method == Method::DELETE;
    let project = |id: &str| Some(id.to_string());
    let operation = match segments {
        ["v1.0", pid, "streaming", rest @ ..] => {
            let found = match rest {
                ["jobs"] if get => ListFlinkJobs,
                ["jobs", "run"] if post => BatchRunFlinkJobs,
                ["jobs", "stop"] if post => BatchStopFlinkJobs,
                ["jobs", "delete"] if post => BatchDeleteFlinkJobs,
                ["jobs", "export"] if post => ExportFlinkJobs,
                ["jobs", "import"] if post => ImportFlinkJobs,
                ["jobs", _] if get => ShowFlinkJob,
                ["jobs", _] if delete => DeleteFlinkJob,
                ["jobs", _, "savepoint"] if post => ExecuteFlinkJobSavepoint,
                ["jobs", _, "import-savepoint"] if post => ImportFlinkJobSavepoint,
                ["sql-jobs"] if post => CreateFlinkSqlJob,
                ["sql-jobs", _] if put => UpdateFlinkSqlJob,
                ["flink-jobs"] if post => CreateFlinkJarJob,
                ["flink-jobs", _] if put => UpdateFlinkJarJob,
                _ => return None,
            };
            return Some((found, project(pid)));
        }
        ["v1.0", pid, "dli", "obs-authorize"] if post => {
            return Some((RegisterBucket, project(pid)));
        }
        ["v1.0", pid, "queues"] if get => return Some((ListQueues, project(pid))),
        ["v3", "auth", "tokens"] if post => return Some((IamCreateToken, None)),
        ["v3", "projects"] if get => return Some((IamListProjects, None)),
        ["v3", pid, "dli_flink_job", "resource-instances", "filter"] if post => {
            return Some((ListResourcesByTags, project(pid)));
        }
        ["v3", pid, "dli_flink_job", _, "tags"] if get => {
            return Some((ListFlinkJobTags, project(pid)));
        }
        ["v3", pid, "dli_flink_job", _, "tags", "create"] if post => {
            return Some((CreateFlinkJobTags, project(pid)));
        }
        ["v3", pid, "dli_flink_job", _, "tags", "delete"] if post => {
            return Some((DeleteFlinkJobTags, project(pid)));
        }
        ["v1", pid, "jobs"] if get => (DlfListJobs, pid),
        ["v1", pid, "jobs", "import"] if post => (DlfImportJob, pid),
        ["v1", pid, "jobs", "batch-export"] if post => (DlfExportJobList, pid),
        ["v1", pid, "jobs", _] if get => (DlfShowJob, pid),
        ["v1", pid, "jobs", _] if delete => (DlfDeleteJob, pid),
        ["v1", pid, "jobs", _, "export"] if post => (DlfExportJob, pid),
        ["v1", pid, "jobs", _, "start"] if post => (DlfStartJob, pid),
        ["v1", pid, "jobs", _, "stop"] if post => (DlfStopJob, pid),
        ["v1", pid, "system-tasks", _] if get => (DlfListSystemTasks, pid),
        ["_emulator", "v1", "stats"] if get => return Some((EmulatorStats, None)),
        ["_emulator", "v1", "smn", "messages"] if get => return Some((EmulatorSmnMessages, None)),
        ["v2", pid, "notifications", "topics", _, "publish"] if post => {
            return Some((SmnPublishMessage, project(pid)));
        }
        ["_emulator", "v1", pid, "jobs", _, "runs"] if get => {
            return Some((EmulatorJobRuns, project(pid)));
        }
        _ => return None,
    };
    Some((operation.0, project(operation.1)))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The single entry point of the API listener.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let request_id = new_request_id();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // A service goes on with a request its caller gave up on: the handler runs on a task of its
    // own, so a client's timeout or disconnect never cancels a call half-way (late delivery).
    let task = {
        let shared = Arc::clone(&shared);
        let request_id = request_id.clone();
        tokio::spawn(async move { process(&shared, request, &request_id).await })
    };
    let reply = match task.await {
        Ok(reply) => reply,
        Err(_) => ApiError::internal(Service::Dli, "the handler failed").into(),
    };
    tracing::debug!(method = %method, path = %path, status = reply.status.as_u16(), request_id = %request_id, "Emulator call answered.");
    into_response(reply, &request_id)
}

async fn process(shared: &Shared, request: Request, request_id: &str) -> Reply {
    let (parts, body) = request.into_parts();
    let Ok(decoded_path) = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8()
    else {
        return ApiError::gateway(
            StatusCode::BAD_REQUEST,
            "APIG.0101",
            "The request path is not valid UTF-8",
        )
        .into();
    };
    let decoded_path = decoded_path.into_owned();
    let segments: Vec<&str> = decoded_path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let Some((operation, path_project)) = route(&parts.method, &segments) else {
        return with_request_id(
            ApiError::gateway(
                StatusCode::NOT_FOUND,
                "APIG.0101",
                "The API does not exist or has not been published in the environment",
            ),
            request_id,
        );
    };
    let service = operation.service();
    if service != Service::Emulator {
        *shared
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(operation.name())
            .or_insert(0) += 1;
    }
    let limit = shared.config.limits.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            let error = ApiError::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                if service == Service::Dlf {
                    "DLF.3051"
                } else {
                    "DLI.0001"
                },
                format!("The request body is larger than {limit} bytes."),
            );
            return error.into();
        }
    };
    if service != Service::Emulator
        && let Some(reply) = inject_fault(shared, service, request_id).await
    {
        return reply;
    }
    if let Some(hold) = shared.faults.hold(operation.name()) {
        tracing::info!(
            operation = operation.name(),
            hold_ms = hold.as_millis() as u64,
            "Holding a call before applying it (injected late delivery)."
        );
        tokio::time::sleep(hold).await;
    }
    let lose_answer = shared.faults.lose_answer(operation.name());
    let reply = process_after_faults(
        shared,
        parts,
        body,
        operation,
        path_project,
        (&decoded_path, &segments),
        request_id,
    )
    .await;
    if lose_answer {
        tracing::info!(
            operation = operation.name(),
            "Applied a call and dropping its answer (injected lost answer)."
        );
        return Reply {
            status: StatusCode::OK,
            body: ReplyBody::Abort,
            headers: Vec::new(),
        };
    }
    reply
}

/// The part of a call after its faults: parsing, authentication, the handler.
async fn process_after_faults(
    shared: &Shared,
    parts: http::request::Parts,
    body: Bytes,
    operation: Operation,
    path_project: Option<String>,
    (decoded_path, segments): (&str, &[&str]),
    request_id: &str,
) -> Reply {
    let service = operation.service();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let now = now_ms();
    if operation == Operation::IamCreateToken {
        return iam::create_token(shared, &body, now);
    }
    if service == Service::Emulator {
        return introspection::handle(shared, operation, segments, now);
    }
    let caller = match auth::authenticate(shared, &parts, decoded_path, &query, &body, now) {
        Ok(caller) => caller,
        Err(error) => return with_request_id(error, request_id),
    };
    if operation == Operation::IamListProjects {
        return iam::list_projects(&caller, &query);
    }
    let Some(project_id) = path_project else {
        return ApiError::internal(service, "route without a project").into();
    };
    if project_id != caller.project_id() {
        return with_request_id(
            ApiError::gateway(
                StatusCode::FORBIDDEN,
                "APIG.0302",
                "The IAM user is not authorized to access the project in the request path",
            ),
            request_id,
        );
    }
    if shared
        .config
        .faults
        .forbidden
        .iter()
        .any(|name| name == operation.name())
    {
        // An IAM policy without the action: refused after authentication, nothing applied.
        // DLI documents `DLI.0003` for a failed permission check (dli_02_0056); the status is
        // the gateway's 403. DLF documents no such code, so the emulator sends its own.
        let code = if service == Service::Dlf {
            "DLF.0003"
        } else {
            "DLI.0003"
        };
        return with_request_id(
            ApiError::with_status(
                StatusCode::FORBIDDEN,
                code,
                format!(
                    "Permission denied: the IAM policy does not allow {} (injected by the emulator)",
                    operation.name()
                ),
            ),
            request_id,
        );
    }
    let call = Call {
        shared,
        segments: segments.iter().map(|segment| segment.to_string()).collect(),
        query,
        body,
        project_id,
        now_ms: now,
    };
    let result = match service {
        Service::Dlf => dlf::handle(&call, operation),
        _ if operation == Operation::ListQueues => super::dli_queues::list(&call),
        _ if operation == Operation::SmnPublishMessage => super::smn::publish(&call),
        _ => dli::handle(&call, operation),
    };
    match result {
        Ok(reply) => reply,
        Err(error) => error.into(),
    }
}

fn with_request_id(mut error: ApiError, request_id: &str) -> Reply {
    if let Value::Object(object) = &mut error.body {
        object.insert("request_id".into(), Value::String(request_id.to_string()));
    }
    error.into()
}

async fn inject_fault(shared: &Shared, service: Service, request_id: &str) -> Option<Reply> {
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match shared.faults.decide() {
        FaultDecision::None => None,
        FaultDecision::ServerError => Some(
            ApiError::internal(service, "Internal server error (injected by the emulator)").into(),
        ),
        FaultDecision::Throttle {
            retry_after_seconds,
        } => {
            let mut reply = with_request_id(
                ApiError::gateway(
                    StatusCode::TOO_MANY_REQUESTS,
                    "APIG.0308",
                    "The throttling threshold has been reached: policy user over ratelimit",
                ),
                request_id,
            );
            reply
                .headers
                .push((http::header::RETRY_AFTER, retry_after_seconds.to_string()));
            Some(reply)
        }
        FaultDecision::DropConnection => Some(Reply {
            status: StatusCode::OK,
            body: ReplyBody::Abort,
            headers: Vec::new(),
        }),
    }
}

fn into_response(reply: Reply, request_id: &str) -> Response {
    let mut extra_headers = Vec::new();
    let (content_type, body) = match reply.body {
        ReplyBody::Json(value) => (
            Some("application/json;charset=UTF-8".to_string()),
            Body::from(value.to_string()),
        ),
        ReplyBody::Binary { bytes, file_name } => {
            if let Ok(value) =
                HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
            {
                extra_headers.push((http::header::CONTENT_DISPOSITION, value));
            }
            (
                Some("application/octet-stream".to_string()),
                Body::from(bytes),
            )
        }
        ReplyBody::Empty => (None, Body::empty()),
        ReplyBody::Abort => {
            let failing = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "connection dropped by the emulator's fault injection",
                ))
            });
            (None, Body::from_stream(failing))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if let Some(content_type) = content_type
        && let Ok(value) = HeaderValue::from_str(&content_type)
    {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    for (name, value) in extra_headers {
        headers.insert(name, value);
    }
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}
