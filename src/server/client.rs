//! `dli-gitops status`: reads a running daemon's status API and prints sync and health per
//! target and job.

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;

use crate::status::control::ControlView;
use crate::status::{TargetOverview, TargetStatus};

/// What `dli-gitops status` was asked for.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The daemon's base URL, e.g. `http://127.0.0.1:9464`.
    pub server: String,
    /// Only this target.
    pub target: Option<String>,
    /// Print the JSON documents instead of text.
    pub json: bool,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusClientError {
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(
        "asking the daemon at {url}; is `dli-gitops run` running and listening there (see `listen:` in its config)?"
    )]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the daemon at {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "reading the daemon's answer from {url}; is the server a dli-gitops daemon of the same version?"
    )]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the daemon at {url} answered a status this version does not read; is it a dli-gitops daemon of the same version?"
    )]
    Shape {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the status")]
    Write(#[source] std::io::Error),
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
}

#[derive(Deserialize)]
struct TargetList {
    targets: Vec<TargetOverview>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Fetches the full status of every target (or of one).
pub async fn fetch_status(
    server: &str,
    target: Option<&str>,
    timeout: Duration,
) -> Result<Vec<TargetStatus>, StatusClientError> {
    fetch_status_values(server, target, timeout)
        .await?
        .into_iter()
        .map(|value| {
            serde_json::from_value(value).map_err(|source| StatusClientError::Shape {
                url: format!("{}/api/v1/targets", server.trim_end_matches('/')),
                source,
            })
        })
        .collect()
}

/// The targets' status objects as the daemon sent them, with the parts read live at the
/// request (`controls`: suspend and change windows; `savepoints`: the catalog) that the typed
/// [`TargetStatus`] of the last pass does not carry.
pub async fn fetch_status_values(
    server: &str,
    target: Option<&str>,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, StatusClientError> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(StatusClientError::Client)?;
    let base = server.trim_end_matches('/');
    let names = match target {
        Some(name) => vec![name.to_string()],
        None => {
            let list: TargetList = get_json(&client, &format!("{base}/api/v1/targets")).await?;
            list.targets.into_iter().map(|target| target.name).collect()
        }
    };
    let mut statuses = Vec::with_capacity(names.len());
    for name in names {
        let encoded =
            percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
        statuses.push(get_json(&client, &format!("{base}/api/v1/targets/{encoded}")).await?);
    }
    Ok(statuses)
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, StatusClientError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|source| StatusClientError::Request {
            url: url.to_string(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| body.error)
            .unwrap_or_else(|_| text.chars().take(300).collect());
        return Err(StatusClientError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        });
    }
    response
        .json()
        .await
        .map_err(|source| StatusClientError::Decode {
            url: url.to_string(),
            source,
        })
}

/// A table per target: its sync, health and revisions, then one line per job.
pub fn render_status_text(targets: &[TargetStatus]) -> String {
    render_status_text_with(targets, &[])
}

/// [`render_status_text`] with each target's live controls (suspend, change windows), in the
/// order of `targets`; a missing entry shows none.
pub fn render_status_text_with(
    targets: &[TargetStatus],
    controls: &[Option<ControlView>],
) -> String {
    // Job names, messages and errors come from git or the service: escaped for the terminal.
    crate::terminal::escape(&render_status_text_unescaped(targets, controls)).into_owned()
}

/// The controls' lines of one target: a suspend and the change windows, when any apply.
fn render_controls(view: &ControlView, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut text = String::new();
    if view.suspended {
        text.push_str(&format!(
            "  suspended by {}{}\n",
            if view.suspended_by.is_empty() {
                "config".to_string()
            } else {
                view.suspended_by.join(", ")
            },
            view.suspended_until
                .map(|until| format!(" until {}", crate::terminal::human_time(until, now)))
                .unwrap_or_default()
        ));
    }
    let windows = &view.windows;
    if let Some(block) = &windows.blocked {
        text.push_str(&format!(
            "  change window: syncs wait ({}){}\n",
            block,
            windows
                .unblocks_at
                .map(|at| format!("; they may run {}", crate::terminal::human_time(at, now)))
                .unwrap_or_default()
        ));
    } else if let Some(at) = windows.blocks_at {
        text.push_str(&format!(
            "  change window: open; syncs will wait from {}\n",
            crate::terminal::human_time(at, now)
        ));
    }
    if let Some(pending) = &view.override_pending {
        text.push_str(&format!(
            "  break-glass override pending (by {}): {}\n",
            pending.by, pending.reason
        ));
    }
    text
}

fn render_status_text_unescaped(
    targets: &[TargetStatus],
    controls: &[Option<ControlView>],
) -> String {
    let mut text = String::new();
    for (index, target) in targets.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str(&format!(
            "TARGET {}  sync={}  health={}  revision={}  applied={}{}\n",
            target.name,
            target.sync.status.as_str(),
            target.health.status.as_str(),
            short(target.sync.revision.as_deref()),
            short(target.sync.applied_revision.as_deref()),
            if target.ready {
                ""
            } else {
                "  (not observed yet)"
            },
        ));
        if let Some(operation) = &target.operation {
            text.push_str(&format!(
                "  last pass: {:?} ({}, {}){}\n",
                operation.phase,
                operation.mode,
                crate::terminal::human_time(
                    operation.finished_at.unwrap_or(operation.started_at),
                    chrono::Utc::now()
                ),
                operation
                    .message
                    .as_deref()
                    .map(|message| format!(": {message}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(Some(view)) = controls.get(index) {
            text.push_str(&render_controls(view, chrono::Utc::now()));
        }
        if let Some(error) = &target.last_error {
            text.push_str(&format!(
                "  error: {}\n",
                with_code(&error.code, &error.message)
            ));
        }
        if let Some(rejected) = &target.rejected_revision {
            text.push_str(&format!(
                "  revision {} does not validate and is not applied:\n",
                short(Some(&rejected.revision))
            ));
            for error in &rejected.errors {
                text.push_str(&format!("    {error}\n"));
            }
        }
        if target.jobs.is_empty() {
            text.push_str("  (no jobs)\n");
            continue;
        }
        let width = target
            .jobs
            .iter()
            .map(|job| job.name.chars().count())
            .max()
            .unwrap_or(3)
            .max(3);
        text.push_str(&format!(
            "  {:<width$}  {:<11}  {:<9}  {:<11}  {:<22}  {}\n",
            "JOB", "KIND", "SYNC", "HEALTH", "LIVE", "DETAIL"
        ));
        for job in &target.jobs {
            let detail = match (&job.last_error, &job.action) {
                (_, _) if job.step.is_some() => job.step.clone().unwrap_or_default(),
                (Some(error), _) => format!("error: {}", with_code(&error.code, &error.message)),
                (None, Some(action)) => format!(
                    "{action}{}",
                    job.reason
                        .as_deref()
                        .map(|reason| format!(": {reason}"))
                        .unwrap_or_default()
                ),
                (None, None) => job.reason.clone().unwrap_or_default(),
            };
            text.push_str(&format!(
                "  {:<width$}  {:<11}  {:<9}  {:<11}  {:<22}  {}\n",
                job.name,
                job.kind.as_str(),
                job.sync_status.as_str(),
                job.health.status.as_str(),
                job.live_status.as_deref().unwrap_or("-"),
                detail
            ));
            if let Some(savepoint) = &job.savepoint {
                text.push_str(&format!("  {:<width$}  savepoint: {savepoint}\n", ""));
            }
            for backup in &job.backups {
                text.push_str(&format!("  {:<width$}  backup: {backup}\n", ""));
            }
        }
    }
    text
}

fn short(revision: Option<&str>) -> String {
    revision
        .map(|revision| revision.chars().take(19).collect())
        .unwrap_or_else(|| "-".to_string())
}

fn with_code(code: &Option<String>, message: &str) -> String {
    match code {
        Some(code) => format!("{code}: {message}"),
        None => message.to_string(),
    }
}

/// `dli-gitops status`: fetch and print.
pub async fn status_command(
    options: &StatusOptions,
    out: &mut dyn Write,
) -> Result<(), StatusClientError> {
    let values =
        fetch_status_values(&options.server, options.target.as_deref(), options.timeout).await?;
    let text = if options.json {
        // One target asked for: its object; all of them: the list.
        let mut json = match (&options.target, values.as_slice()) {
            (Some(_), [only]) => serde_json::to_string_pretty(only),
            _ => serde_json::to_string_pretty(&values),
        }
        .unwrap_or_default();
        json.push('\n');
        json
    } else {
        let mut statuses = Vec::with_capacity(values.len());
        let mut controls = Vec::with_capacity(values.len());
        for value in values {
            controls.push(serde_json::from_value::<ControlView>(value["controls"].clone()).ok());
            statuses.push(
                serde_json::from_value::<TargetStatus>(value).map_err(|source| {
                    StatusClientError::Shape {
                        url: format!("{}/api/v1/targets", options.server.trim_end_matches('/')),
                        source,
                    }
                })?,
            );
        }
        render_status_text_with(&statuses, &controls)
    };
    out.write_all(text.as_bytes())
        .map_err(StatusClientError::Write)
}

/// [`status_command`] on a private single-threaded runtime, for the CLI.
pub fn status_blocking(
    options: &StatusOptions,
    out: &mut dyn Write,
) -> Result<(), StatusClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StatusClientError::Runtime)?;
    runtime.block_on(status_command(options, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotion::WindowBlock;

    #[test]
    fn the_controls_lines_say_who_suspended_until_when_and_why_syncs_wait() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T17:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut view = ControlView {
            suspended: true,
            suspended_by: vec!["api:alice".into()],
            suspended_until: Some(now + chrono::Duration::hours(2)),
            ..ControlView::default()
        };
        view.windows.blocked = Some(WindowBlock::Deny {
            schedule: "0 22 * * *".into(),
            duration: "8h".into(),
        });
        view.windows.unblocks_at = Some(now + chrono::Duration::hours(5));
        let text = render_controls(&view, now);
        assert!(
            text.contains("suspended by api:alice until 2026-12-04 19:00:00 UTC"),
            "{text}"
        );
        assert!(
            text.contains("change window: syncs wait (deny window `0 22 * * *` (for 8h) is open); they may run 2026-12-04 22:00:00 UTC"),
            "{text}"
        );
        // Nothing to say: no lines.
        assert_eq!(render_controls(&ControlView::default(), now), "");
        let open = ControlView {
            windows: crate::status::control::WindowStatus {
                blocks_at: Some(now + chrono::Duration::minutes(30)),
                ..Default::default()
            },
            ..ControlView::default()
        };
        assert!(
            render_controls(&open, now)
                .contains("open; syncs will wait from 2026-12-04 17:30:00 UTC"),
            "{}",
            render_controls(&open, now)
        );
    }
}
