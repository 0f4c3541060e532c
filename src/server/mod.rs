//! The HTTP server: `/healthz`, `/readyz`, `/metrics`, the status API under `/api/v1/targets`,
//! manual syncs (bearer token), git push webhooks, and a small read-only status page at `/`.
//! It only reads the status board and fires triggers; it never reconciles itself.
//!
//! # Design and invariants
//!
//! One axum router over the status board and the triggers (`status`); the daemon starts it, and it
//! never imports the daemon.
//!
//! | file | what it holds |
//! |---|---|
//! | `server/mod.rs` | the axum router: `/`, `/healthz`, `/readyz`, `/metrics`, `/api/v1/targets[/{t}[/sync|/promote|/suspend|/resume]]`, `/api/v1/pipeline`, `/api/v1/hooks/git` |
//! | `server/auth.rs`, `server/html.rs`, `server/client.rs` | bearer token (constant time), the escaped status page (one page of `JOBS_PER_PAGE` jobs per target, those that need a look first, `?target=T&page=N` for the rest; plan text and rejected-revision problems clipped), `dli-gitops status` |
//! | `server/listener.rs` | the accept loop (hyper http1 per connection, not `axum::serve`): `ServerLimits` — a header-read timeout that is also the keep-alive idle timeout (hyper's timer starts when the connection waits for a request head), a request timeout (408), a connection cap (default a quarter of `RLIMIT_NOFILE` read from `/proc/self/limits`, 8..=256); at the cap a new connection closes the oldest idle one (no request in flight), and only when all are busy is it answered 503; an `EMFILE`/`ENFILE` accept closes the oldest idle connection and retries. Security headers (CSP with the page's one stylesheet by hash, `nosniff`, `X-Frame-Options: DENY`, `no-referrer`) are a `map_response` layer on every route |
//!
//! Invariants:
//! * The server can never take the descriptors the rest of the daemon needs: it holds at most its
//!   cap of connections, closes idle ones first, and a crowd of idle clients cannot lock out
//!   `/healthz` (`tests/server_hardening.rs`: 600 idle connections and a steady stream more against
//!   a daemon limited to 128 descriptors; `/healthz` answers and a new git commit converges). An
//!   OS error opening a git mirror (`EMFILE`, `EACCES`: `git2::ErrorClass::Os`, or a probe open
//!   failing with `EMFILE`/`ENFILE`) is `SourceError::MirrorUnavailable` (retried), never taken for
//!   a damaged mirror to delete and re-clone.
//! * The server never reconciles: it reads the board and fires triggers. Mutating endpoints need the
//!   bearer token (compared as SHA-256 digests in constant time); with no token configured they
//!   answer 403. Webhooks are verified (per source secret) before their body is parsed.

mod auth;
mod client;
pub mod controls;
pub(crate) mod html;
mod listener;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use auth::{AuthFailure, tokens_match};
pub use client::{
    StatusClientError, StatusOptions, fetch_status, render_status_text, status_blocking,
    status_command,
};
pub use listener::{ServerLimits, default_max_connections, open_file_limit};

use crate::config::{GitTransport, git_transport};
use crate::source::webhook::{
    MAX_WEBHOOK_BODY_BYTES, PushEvent, WebhookError, WebhookEvent, verify_and_parse,
};
use crate::status::control::{ControlView, Controls};
use crate::status::{DaemonMetrics, StatusBoard, Trigger, TriggerKind};

/// What the handlers share.
pub struct ServerState {
    pub board: Arc<StatusBoard>,
    pub metrics: Arc<DaemonMetrics>,
    /// Each target's trigger, for manual syncs.
    pub triggers: BTreeMap<String, Arc<Trigger>>,
    /// The bearer token for mutating endpoints; `None` disables them.
    pub api_token: Option<Vec<u8>>,
    /// Git sources that accept push webhooks.
    pub webhooks: Vec<WebhookRoute>,
    pub suspended: bool,
    /// Promotion: the promote and pipeline endpoints; `None` without a pipeline.
    pub promotion: Option<Arc<crate::promotion::PromotionHook>>,
    /// Suspend, change windows, break-glass overrides.
    pub controls: Arc<Controls>,
}

impl fmt::Debug for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerState")
            .field("targets", &self.triggers.keys().collect::<Vec<_>>())
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("webhooks", &self.webhooks)
            .field("suspended", &self.suspended)
            .finish_non_exhaustive()
    }
}

/// A git source that accepts push webhooks.
pub struct WebhookRoute {
    pub source: String,
    /// The repository url the push must name.
    pub url: String,
    /// The branch or tag (full `refs/...` name) the push must name.
    pub git_ref: String,
    /// HMAC key (GitHub, Gitea) or token (GitLab).
    pub secret: Vec<u8>,
    /// Wakes the source's fetch loop.
    pub fetch_now: Arc<Notify>,
}

impl fmt::Debug for WebhookRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRoute")
            .field("source", &self.source)
            .field("url", &self.url)
            .field("git_ref", &self.git_ref)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Serves until `shutdown` resolves, then drains connections, with the default
/// [`ServerLimits`] (timeouts and a connection cap).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, state, ServerLimits::default(), shutdown).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with_limits(
    listener: TcpListener,
    state: Arc<ServerState>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::debug!(
        max_connections = limits.max_connections,
        header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        "HTTP server limits"
    );
    listener::serve_router(listener, router(state), limits, shutdown).await
}

/// The status page's only inline content is its `<style>` element; the policy allows that one
/// stylesheet by its hash, and nothing else (no scripts, frames, forms, images, fonts).
fn content_security_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(html::STYLE.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'none'"
        )
    })
}

/// Security headers on every response: a strict CSP, no MIME sniffing, no framing, no referrer.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(content_security_policy()),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Every route.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/targets", get(list_targets))
        .route("/api/v1/targets/{target}", get(get_target))
        .route("/api/v1/targets/{target}/sync", post(sync_target))
        .route("/api/v1/targets/{target}/promote", post(promote_target))
        .route("/api/v1/targets/{target}/suspend", post(suspend_target))
        .route("/api/v1/targets/{target}/resume", post(resume_target))
        .route("/api/v1/pipeline", get(pipeline))
        .route(
            "/api/v1/hooks/git",
            post(git_webhook).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY_BYTES)),
        )
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// A JSON error body: `{"error": "..."}`.
fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /, /api/v1/targets, /healthz, /readyz, /metrics",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<ServerState>>) -> Response {
    let waiting = state.board.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, axum::Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "ready": false,
                "message": "the first observation of these targets is not done yet",
                "waiting_for": waiting,
            })),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn list_targets(State(state): State<Arc<ServerState>>) -> Response {
    let controls: BTreeMap<&String, ControlView> = state
        .triggers
        .keys()
        .map(|target| (target, state.controls.view(target)))
        .collect();
    axum::Json(json!({
        "suspended": state.suspended,
        "targets": state.board.overviews(),
        "sources": state.board.sources(),
        "controls": controls,
    }))
    .into_response()
}

async fn get_target(State(state): State<Arc<ServerState>>, Path(target): Path<String>) -> Response {
    match state.board.target(&target) {
        Some(status) => {
            // Suspend and change windows are read live, not from the last pass.
            let view = state.controls.view(&target);
            let mut value = serde_json::to_value(status).unwrap_or_default();
            if view.suspended {
                value["policy"]["suspended"] = json!(true);
            }
            value["controls"] = serde_json::to_value(view).unwrap_or_default();
            // The savepoint catalog of the target, newest first, from the journal.
            if let Some(journal) = state.controls.journal() {
                value["savepoints"] = crate::savepoints::status_section(&journal.state(), &target);
            }
            axum::Json(value).into_response()
        }
        None => unknown_target(&state, &target),
    }
}

/// `POST /api/v1/targets/{t}/suspend`: body `{"until", "reason", "by"}`, all optional.
async fn suspend_target(
    State(state): State<Arc<ServerState>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorized_target(&state, &target, &headers, "Suspend refused.") {
        return response;
    }
    run_control(&state, &target, body, "suspend", controls::suspend).await
}

/// `POST /api/v1/targets/{t}/resume`: body `{"reason", "by"}`, optional.
async fn resume_target(
    State(state): State<Arc<ServerState>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let trigger = match authorized_target(&state, &target, &headers, "Resume refused.") {
        Ok(trigger) => trigger,
        Err(response) => return response,
    };
    let answer = run_control(&state, &target, body, "resume", controls::resume).await;
    // A resumed target looks again at once.
    trigger.fire(TriggerKind::Resync);
    answer
}

/// Runs a suspend or resume (it journals, so it blocks) off the async threads; a change that
/// did not finish answers 500 naming `what`.
async fn run_control(
    state: &Arc<ServerState>,
    target: &str,
    body: Bytes,
    what: &str,
    change: fn(&Arc<ServerState>, &str, &[u8]) -> Response,
) -> Response {
    let answer = {
        let state = state.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || change(&state, &target, &body)).await
    };
    answer.unwrap_or_else(|error| {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the {what} did not finish: {error}"),
        )
    })
}

/// What every mutating endpoint checks first: the bearer token (a refusal is logged as
/// `refused`) and that the target exists. Returns the target's trigger, or the answer.
fn authorized_target(
    state: &ServerState,
    target: &str,
    headers: &HeaderMap,
    refused: &str,
) -> Result<Arc<Trigger>, Response> {
    if let Err(failure) = auth::authorize(state.api_token.as_deref(), headers) {
        tracing::warn!(target = %target.chars().take(100).collect::<String>(), reason = failure.log_reason(), "{refused}");
        return Err(failure.into_response());
    }
    state
        .triggers
        .get(target)
        .cloned()
        .ok_or_else(|| unknown_target(state, target))
}

fn unknown_target(state: &ServerState, target: &str) -> Response {
    let known: Vec<&str> = state.triggers.keys().map(String::as_str).collect();
    error_response(
        StatusCode::NOT_FOUND,
        format!(
            "no target named `{}`; configured targets: {}",
            target.chars().take(100).collect::<String>(),
            known.join(", ")
        ),
    )
}

/// `POST /api/v1/targets/{t}/promote`: body `{"revision": "...", "by": "..."}`, both
/// optional; the revision defaults to the one the upstream converged on.
async fn promote_target(
    State(state): State<Arc<ServerState>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(response) = authorized_target(&state, &target, &headers, "Promotion refused.") {
        return response;
    }
    let Some(hook) = state.promotion.clone() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "target `{target}` has no `promote_from`; only targets of a pipeline are promoted"
            ),
        );
    };
    let request: crate::promotion::PromoteBody = if body.iter().all(u8::is_ascii_whitespace) {
        crate::promotion::PromoteBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body is not a promotion request ({error}); send {{\"revision\": \"<commit>\", \"by\": \"<name>\"}}, both optional"
                    ),
                );
            }
        }
    };
    let answered =
        tokio::task::spawn_blocking(move || hook.promote_manually(&target, request)).await;
    match answered {
        Ok((status, json)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(json),
        )
            .into_response(),
        Err(error) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the promotion did not finish: {error}"),
        ),
    }
}

/// `GET /api/v1/pipeline`: every target with its applied and promoted revision and
/// what its gate says.
async fn pipeline(State(state): State<Arc<ServerState>>) -> Response {
    match &state.promotion {
        Some(hook) => axum::Json(hook.endpoint().pipeline(chrono::Utc::now())).into_response(),
        None => axum::Json(json!({ "targets": [] })).into_response(),
    }
}

async fn sync_target(
    State(state): State<Arc<ServerState>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let trigger = match authorized_target(&state, &target, &headers, "Manual sync refused.") {
        Ok(trigger) => trigger,
        Err(response) => return response,
    };
    if let Some(upstream) = state
        .board
        .target(&target)
        .and_then(|status| status.policy.promote_from)
        .filter(|_| state.promotion.is_none())
    {
        return error_response(
            StatusCode::CONFLICT,
            format!(
                "target `{target}` is promoted from `{upstream}` and this daemon runs no promotion pipeline, so this target is held and a sync would skip the promotion gate"
            ),
        );
    }
    if state.suspended {
        return error_response(
            StatusCode::CONFLICT,
            "the daemon is suspended (`suspend: true` in the config), so nothing is changed; set it to false and restart to sync",
        );
    }
    // Suspend and change windows; a break-glass body passes a window once, journaled.
    let request: controls::SyncBody = match controls::parse_body(
        &body,
        r#"{"override_window": true, "reason": "...", "by": "..."}"#,
    ) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let admitted = {
        let state = state.clone();
        let target = target.clone();
        tokio::task::spawn_blocking(move || controls::admit_sync(&state, &target, &request)).await
    };
    let message = match admitted {
        Ok(Ok(message)) => message,
        Ok(Err(response)) => return *response,
        Err(error) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the sync request did not finish: {error}"),
            );
        }
    };
    trigger.fire(TriggerKind::Manual);
    tracing::info!(%target, "Manual sync requested.");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "target": target,
            "accepted": true,
            "message": message,
        })),
    )
        .into_response()
}

/// The provider named by the delivery's headers, for metrics and logs only.
fn provider_label(headers: &HeaderMap) -> &'static str {
    if headers.contains_key("x-gitea-event") {
        "gitea"
    } else if headers.contains_key("x-gitlab-event") {
        "gitlab"
    } else if headers.contains_key("x-github-event") {
        "github"
    } else {
        "unknown"
    }
}

async fn git_webhook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let provider = provider_label(&headers);
    if state.webhooks.is_empty() {
        state.metrics.count_webhook(provider, "rejected");
        return error_response(
            StatusCode::NOT_FOUND,
            "no git source accepts webhooks; set webhook_secret_env (or webhook_secret_file) on a git source",
        );
    }
    let mut verified = false;
    let mut all_unauthorized = true;
    let mut matched = Vec::new();
    let mut push_described = None;
    let mut refusal: Option<WebhookError> = None;
    // Each source has its own secret: the delivery is for whichever sources it verifies with.
    for route in &state.webhooks {
        match verify_and_parse(&headers, &body, &route.secret) {
            Ok(WebhookEvent::Push(push)) => {
                verified = true;
                all_unauthorized = false;
                if push_matches(&push, &route.url, &route.git_ref) {
                    route.fetch_now.notify_one();
                    matched.push(route.source.clone());
                }
                push_described = Some(format!(
                    "{} {}",
                    push.repository_urls
                        .first()
                        .map(String::as_str)
                        .unwrap_or("(no repository url)"),
                    push.git_ref
                ));
            }
            Ok(WebhookEvent::Ping { .. } | WebhookEvent::Other { .. }) => {
                verified = true;
                all_unauthorized = false;
            }
            Err(error) => {
                all_unauthorized &= error.is_unauthorized();
                // Keep the most telling refusal: a payload that verified but did not parse
                // says more than a signature made with another source's secret.
                let replace = refusal
                    .as_ref()
                    .is_none_or(|previous| previous.is_unauthorized() && !error.is_unauthorized());
                if replace {
                    refusal = Some(error);
                }
            }
        }
    }
    if !matched.is_empty() {
        state.metrics.count_webhook(provider, "accepted");
        tracing::info!(provider, sources = ?matched, "Webhook accepted; fetching now.");
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "accepted": true, "sources": matched })),
        )
            .into_response();
    }
    if verified {
        state.metrics.count_webhook(provider, "ignored");
        let message = match push_described {
            Some(push) => format!("verified, but no configured source follows {push}"),
            None => "verified; not a push event, nothing to do".to_string(),
        };
        tracing::info!(provider, %message, "Webhook ignored.");
        return (
            StatusCode::OK,
            axum::Json(json!({ "accepted": false, "message": message })),
        )
            .into_response();
    }
    state.metrics.count_webhook(provider, "rejected");
    let error = refusal.map_or_else(|| "webhook refused".to_string(), |error| error.to_string());
    tracing::warn!(provider, %error, "Webhook rejected.");
    let status = if all_unauthorized {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    error_response(status, error)
}

/// Whether a verified push is for this source. Remote urls compare as `host/path` (any scheme,
/// user, port or `.git`); a local repository (a path or `file://` url) has no host, so its
/// path must be named exactly.
fn push_matches(push: &PushEvent, url: &str, git_ref: &str) -> bool {
    if push.matches(url, git_ref) {
        return true;
    }
    if git_transport(url) != GitTransport::Local || push.git_ref != git_ref {
        return false;
    }
    let local = |text: &str| {
        let path = text.strip_prefix("file://").unwrap_or(text);
        let path = path.trim_end_matches('/');
        path.strip_suffix(".git").unwrap_or(path).to_string()
    };
    let wanted = local(url);
    push.repository_urls.iter().any(|candidate| {
        git_transport(candidate) == GitTransport::Local && local(candidate) == wanted
    })
}

async fn status_page(
    State(state): State<Arc<ServerState>>,
    axum::extract::Query(view): axum::extract::Query<html::PageView>,
) -> Html<String> {
    let page = html::render_page_view(
        &state.board.targets(),
        &state.board.sources(),
        state.suspended,
        &view,
    );
    // The savepoint catalog goes above the sources.
    let page = match state.controls.journal() {
        Some(journal) => {
            let targets: Vec<String> = state.triggers.keys().cloned().collect();
            let section = html::savepoints_section(&journal.state(), &targets);
            page.replacen("<h2>Sources</h2>", &format!("{section}<h2>Sources</h2>"), 1)
        }
        None => page,
    };
    // Suspend and change windows go above the targets.
    let page = page.replacen(
        "<h2>Targets</h2>",
        &format!("{}<h2>Targets</h2>", controls::render_section(&state)),
        1,
    );
    // Promotion: the pipeline goes above the targets.
    match &state.promotion {
        Some(hook) => {
            let pipeline = html::render_pipeline(&hook.endpoint().pipeline(chrono::Utc::now()));
            Html(page.replacen(
                "<h2>Targets</h2>",
                &format!("{pipeline}<h2>Targets</h2>"),
                1,
            ))
        }
        None => Html(page),
    }
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
