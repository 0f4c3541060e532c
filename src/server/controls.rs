//! The control endpoints (bearer token): `POST /api/v1/targets/{t}/suspend`, `.../resume`, and
//! the break-glass body of `.../sync`; the status page's controls section; and the CLI side
//! (`dli-gitops sync|suspend|resume TARGET`), which goes through a running daemon's API.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ServerState;
use crate::config::Config;
use crate::promotion::manual::{post_to_daemon, reachable};
use crate::status::control::{ControlError, ControlView, api_caller};

/// The body of `POST /api/v1/targets/{t}/sync` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    /// Break-glass: pass a closed change window once. Needs `reason`.
    #[serde(default)]
    pub override_window: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asks; journaled as `api:<by>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The body of `POST /api/v1/targets/{t}/suspend` and `.../resume`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendBody {
    /// RFC 3339; absent: until resumed. Ignored by resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

pub(super) fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn control_error(error: ControlError) -> Response {
    let status = match &error {
        ControlError::UnknownTarget(_) => StatusCode::NOT_FOUND,
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlError::Journal(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, error.to_string())
}

/// Parses an optional JSON body; empty means the default.
pub(super) fn parse_body<T: Default + for<'de> Deserialize<'de>>(
    body: &[u8],
    example: &str,
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|error| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            format!("the body does not parse ({error}); send e.g. {example}"),
        ))
    })
}

/// What a sync request does under the controls: `Ok(message)` to queue it, or the refusal.
pub(super) fn admit_sync(
    state: &ServerState,
    target: &str,
    body: &SyncBody,
) -> Result<String, Box<Response>> {
    let controls = &state.controls;
    let view = controls.view(target);
    if view.suspended {
        return Err(Box::new(error_response(
            StatusCode::CONFLICT,
            format!(
                "target `{target}` is suspended ({}); resume it first (`dli-gitops resume {target}`, or the config's `suspend`)",
                view.suspended_by.join(", ")
            ),
        )));
    }
    if body.override_window {
        let by = api_caller(body.by.as_deref());
        let granted = controls
            .request_override(target, &by, body.reason.as_deref().unwrap_or(""))
            .map_err(|error| Box::new(control_error(error)))?;
        return Ok(format!(
            "break-glass sync queued: the next pass passes the change windows once (journaled: by {}, reason {:?})",
            granted.by, granted.reason
        ));
    }
    if let Some(block) = &view.windows.blocked {
        let until = view.windows.unblocks_at.map_or_else(String::new, |until| {
            format!(" (until {})", until.to_rfc3339())
        });
        return Ok(format!(
            "sync queued; it waits: {block}{until}. To pass the window once, sync with --override-window --reason \"...\""
        ));
    }
    Ok("sync queued; it runs as soon as the target's current pass ends".to_string())
}

/// `POST /api/v1/targets/{t}/suspend` (after authorization and the target check).
pub(super) fn suspend(state: &Arc<ServerState>, target: &str, body: &[u8]) -> Response {
    let request: SuspendBody = match parse_body(
        body,
        r#"{"until": "2026-12-24T06:00:00Z", "reason": "...", "by": "..."}"#,
    ) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let until = match request
        .until
        .as_deref()
        .map(crate::config::control::parse_time)
    {
        Some(Ok(until)) => Some(until),
        Some(Err(problem)) => return error_response(StatusCode::BAD_REQUEST, problem),
        None => None,
    };
    let by = api_caller(request.by.as_deref());
    match state
        .controls
        .suspend(target, until, &by, request.reason.as_deref())
    {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(json!({
                "target": target,
                "suspended": true,
                "controls": state.controls.view(target),
            })),
        )
            .into_response(),
        Err(error) => control_error(error),
    }
}

/// `POST /api/v1/targets/{t}/resume`.
pub(super) fn resume(state: &Arc<ServerState>, target: &str, body: &[u8]) -> Response {
    let request: SuspendBody = match parse_body(body, r#"{"reason": "...", "by": "..."}"#) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let by = api_caller(request.by.as_deref());
    match state
        .controls
        .resume(target, &by, request.reason.as_deref())
    {
        Ok(view) => {
            let message = if view.suspended {
                format!(
                    "the run-time suspend is lifted, but the target stays suspended by {}",
                    view.suspended_by.join(", ")
                )
            } else {
                "resumed".to_string()
            };
            (
                StatusCode::OK,
                axum::Json(json!({
                    "target": target,
                    "suspended": view.suspended,
                    "message": message,
                    "controls": view,
                })),
            )
                .into_response()
        }
        Err(error) => control_error(error),
    }
}

/// Text for the page: control and bidi characters made visible, then HTML-escaped.
fn escape(text: &str) -> String {
    super::html::escape(&crate::terminal::escape(text))
}

/// The status page's section: per target, suspended or not, open and next windows.
pub(super) fn render_section(state: &ServerState) -> String {
    let mut rows = String::new();
    for target in state.triggers.keys() {
        let view = state.controls.view(target);
        let suspended = if view.suspended {
            let until = view.suspended_until.map_or_else(
                || "until resumed".to_string(),
                |t| format!("until {}", t.to_rfc3339()),
            );
            format!("suspended by {} {until}", view.suspended_by.join(", "))
        } else {
            "active".to_string()
        };
        let windows = describe_windows(&view);
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(target),
            escape(&suspended),
            escape(&windows)
        ));
    }
    format!(
        "<h2>Controls</h2><table><thead><tr><th>target</th><th>suspend</th><th>change windows</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// One line about a target's windows: what holds it, what is open, what opens next.
pub fn describe_windows(view: &ControlView) -> String {
    let windows = &view.windows;
    let mut parts = Vec::new();
    if let Some(block) = &windows.blocked {
        let until = windows
            .unblocks_at
            .map_or_else(String::new, |t| format!(" until {}", t.to_rfc3339()));
        parts.push(format!("syncs wait: {block}{until}"));
    }
    for open in &windows.open {
        parts.push(format!(
            "{} window `{}` open until {}",
            kind_name(open.kind),
            open.schedule,
            open.closes_at.to_rfc3339()
        ));
    }
    if let Some(next) = &windows.next {
        parts.push(format!(
            "next: {} window `{}` at {}",
            kind_name(next.kind),
            next.schedule,
            next.opens_at.to_rfc3339()
        ));
    }
    if let Some(pending) = &view.override_pending {
        parts.push(format!("break-glass pending (by {})", pending.by));
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join("; ")
    }
}

fn kind_name(kind: crate::config::WindowKind) -> &'static str {
    match kind {
        crate::config::WindowKind::Deny => "deny",
        crate::config::WindowKind::Allow => "allow",
    }
}

// ---- the CLI side ------------------------------------------------------------------------

/// Which control request `dli-gitops` sends.
#[derive(Debug, Clone)]
pub enum ControlRequest {
    Sync {
        override_window: bool,
        reason: Option<String>,
    },
    Suspend {
        until: Option<String>,
        reason: Option<String>,
    },
    Resume {
        reason: Option<String>,
    },
}

/// Why a control command failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlCommandError {
    #[error("loading the config")]
    Config(#[source] crate::config::ConfigError),
    #[error(
        "the config has no `api_token_env`/`api_token_file`: the daemon's control endpoints need the bearer token"
    )]
    NoApiToken,
    #[error("reading the API token")]
    ApiToken(#[source] crate::config::ConfigError),
    #[error("`--override-window` needs `--reason \"...\"` (it is journaled with who asked)")]
    NoReason,
    #[error("reaching the daemon at {url}; is `dli-gitops run` running with this config?")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the daemon refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
}

fn user() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|user| !user.trim().is_empty())
}

/// Sends one control request to the daemon the config describes; returns its JSON answer.
pub fn control_blocking(
    config_path: &std::path::Path,
    target: &str,
    request: &ControlRequest,
) -> Result<serde_json::Value, ControlCommandError> {
    let config = Config::load(config_path).map_err(ControlCommandError::Config)?;
    let token_ref = config.api_token().ok_or(ControlCommandError::NoApiToken)?;
    let token = Config::resolve_secret(&token_ref).map_err(ControlCommandError::ApiToken)?;
    let by = user().map(|user| format!("cli.{user}"));
    let (path, body) = match request {
        ControlRequest::Sync {
            override_window,
            reason,
        } => {
            if *override_window && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(ControlCommandError::NoReason);
            }
            (
                "sync",
                serde_json::to_value(SyncBody {
                    override_window: *override_window,
                    reason: reason.clone(),
                    by,
                })
                .unwrap_or_default(),
            )
        }
        ControlRequest::Suspend { until, reason } => (
            "suspend",
            serde_json::to_value(SuspendBody {
                until: until.clone(),
                reason: reason.clone(),
                by,
            })
            .unwrap_or_default(),
        ),
        ControlRequest::Resume { reason } => (
            "resume",
            serde_json::to_value(SuspendBody {
                until: None,
                reason: reason.clone(),
                by,
            })
            .unwrap_or_default(),
        ),
    };
    let url = format!(
        "http://{}/api/v1/targets/{target}/{path}",
        reachable(config.listen)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ControlCommandError::Runtime)?;
    runtime.block_on(async {
        let unreachable = |source| ControlCommandError::Unreachable {
            url: url.clone(),
            source,
        };
        let (status, text) = post_to_daemon(&url, token.trim(), &body)
            .await
            .map_err(unreachable)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": text }));
        if !status.is_success() {
            let message = value
                .get("error")
                .or_else(|| value.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(500).collect());
            return Err(ControlCommandError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        Ok(value)
    })
}
