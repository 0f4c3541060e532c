//! The read-only status page at `/`: plain server-rendered HTML, no scripts, every value
//! escaped (job names, revisions, error messages and plans all come from outside).

use std::fmt::Write;

use crate::journal::JournalState;
use crate::savepoints;
use crate::status::{HealthStatus, SourceStatus, SyncStatus, TargetStatus};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

fn short_revision(revision: Option<&str>) -> String {
    match revision {
        // A git commit id or `sha256:<hex>`: the first 12 characters identify it.
        Some(revision) => revision.chars().take(19).collect(),
        None => "-".to_string(),
    }
}

fn sync_class(status: SyncStatus) -> &'static str {
    match status {
        SyncStatus::Synced => "ok",
        SyncStatus::OutOfSync => "warn",
        SyncStatus::Unknown => "unknown",
    }
}

fn health_class(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Healthy => "ok",
        HealthStatus::Progressing | HealthStatus::Suspended => "info",
        HealthStatus::Degraded | HealthStatus::Missing => "bad",
        HealthStatus::Unknown => "unknown",
    }
}

pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.ok{color:#17692b}.warn{color:#9a6700}.bad{color:#b42318}.info{color:#1f4e9c}.unknown{color:#666}\
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:30em}code{font-size:90%}.muted{color:#666}";

/// The promotion pipeline: each target with the revision it runs, the revision
/// promoted to it, what its gate says, and its latest promotion.
pub fn render_pipeline(view: &crate::promotion::PipelineView) -> String {
    let mut section = String::from(
        "<h2>Pipeline</h2><table><tr><th>target</th><th>from</th><th>applied</th>\
         <th>promoted</th><th>gate</th><th>last promotion</th></tr>",
    );
    for stage in &view.targets {
        let last = stage
            .recent_promotions
            .first()
            .map(|entry| {
                format!(
                    "<span class=\"{}\">{} {}</span> by {} <span class=\"muted\">({}, {})</span>",
                    if entry.ok { "ok" } else { "bad" },
                    if entry.ok { "promoted" } else { "refused" },
                    escape(&short_revision(Some(&entry.revision))),
                    escape(&entry.by),
                    escape(&entry.rule),
                    entry.time.format("%Y-%m-%d %H:%M:%S UTC")
                )
            })
            .unwrap_or_else(|| "-".to_string());
        let _ = write!(
            section,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&stage.target),
            escape(stage.promote_from.as_deref().unwrap_or("-")),
            escape(&short_revision(stage.applied_revision.as_deref())),
            escape(&short_revision(stage.promoted_revision.as_deref())),
            escape(
                stage
                    .gate
                    .as_ref()
                    .map(|gate| gate.message.as_str())
                    .unwrap_or("follows its branch")
            ),
            last
        );
    }
    section.push_str("</table>");
    section
}

/// Jobs shown per target on one page; the rest are one link away (`?target=T&page=N`).
pub const JOBS_PER_PAGE: usize = 100;
/// The most of a plan's text the page shows (the API has all of it).
pub const PLAN_TEXT_LIMIT: usize = 32 * 1024;
/// The most validation problems the page lists for a rejected revision.
pub const REJECTED_ERRORS_LIMIT: usize = 50;

/// Which page of jobs to show: `page` (from 1) of `target`, or the first page of every target.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PageView {
    pub target: Option<String>,
    pub page: Option<usize>,
}

impl PageView {
    fn page_of(&self, target: &str) -> usize {
        match (&self.target, self.page) {
            (Some(wanted), Some(page)) if wanted == target => page.max(1),
            _ => 1,
        }
    }
}

/// Jobs that need a look come first (out of sync, or not Healthy/Suspended), then by name, so
/// the first page of a large target shows what matters.
fn attention_first(jobs: &[crate::status::JobStatus]) -> Vec<&crate::status::JobStatus> {
    let mut ordered: Vec<_> = jobs.iter().collect();
    ordered.sort_by_key(|job| {
        let calm = job.sync_status == SyncStatus::Synced
            && matches!(
                job.health.status,
                HealthStatus::Healthy | HealthStatus::Suspended
            );
        (calm, job.name.clone())
    });
    ordered
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
fn clip(text: &str, limit: usize) -> (&str, bool) {
    if text.len() <= limit {
        return (text, false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// The whole page, first page of every target's jobs.
#[cfg(test)]
pub fn render_page(targets: &[TargetStatus], sources: &[SourceStatus], suspended: bool) -> String {
    render_page_view(targets, sources, suspended, &PageView::default())
}

/// The whole page: a summary of every target, one page of each target's jobs (problems first),
/// and the sources. Its size is bounded whatever the number of jobs.
pub fn render_page_view(
    targets: &[TargetStatus],
    sources: &[SourceStatus],
    suspended: bool,
    view: &PageView,
) -> String {
    let mut page = String::new();
    // Writing to a String never fails.
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>dli-gitops status</title><style>{STYLE}</style></head><body>\
         <h1>dli-gitops</h1>"
    );
    if suspended {
        page.push_str(
            "<p class=\"warn\"><strong>Suspended:</strong> the daemon observes and reports, and changes nothing.</p>",
        );
    }
    page.push_str(
        "<h2>Targets</h2><table><tr><th>target</th><th>sync</th><th>health</th><th>revision</th>\
         <th>applied</th><th>jobs</th><th>last pass</th></tr>",
    );
    for target in targets {
        let operation = target
            .operation
            .as_ref()
            .map(|operation| {
                format!(
                    "{:?} ({}) {}",
                    operation.phase,
                    operation.mode,
                    operation.message.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_else(|| "not run yet".to_string());
        let _ = write!(
            page,
            "<tr><td><a href=\"#target-{id}\">{name}</a></td><td class=\"{sc}\">{sync}</td>\
             <td class=\"{hc}\">{health}</td><td><code>{rev}</code></td><td><code>{applied}</code></td>\
             <td>{jobs}</td><td>{operation}</td></tr>",
            id = escape(&target.name),
            name = escape(&target.name),
            sc = sync_class(target.sync.status),
            sync = target.sync.status.as_str(),
            hc = health_class(target.health.status),
            health = target.health.status.as_str(),
            rev = escape(&short_revision(target.sync.revision.as_deref())),
            applied = escape(&short_revision(target.sync.applied_revision.as_deref())),
            jobs = target.counts.total,
            operation = escape(&operation),
        );
    }
    page.push_str("</table>");

    for target in targets {
        render_target(&mut page, target, view.page_of(&target.name));
    }

    page.push_str(
        "<h2>Sources</h2><table><tr><th>source</th><th>kind</th><th>location</th><th>revision</th><th>last poll</th><th>error</th></tr>",
    );
    for source in sources {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"bad\">{}</td></tr>",
            escape(&source.name),
            escape(&source.kind),
            escape(&source.location),
            escape(&short_revision(source.revision.as_deref())),
            source
                .last_poll
                .map(|time| crate::terminal::human_time(time, chrono::Utc::now()))
                .unwrap_or_else(|| "-".to_string()),
            escape(
                source
                    .last_error
                    .as_ref()
                    .map(|error| error.message.as_str())
                    .unwrap_or("")
            ),
        );
    }
    page.push_str(
        "</table><p class=\"muted\">Read-only. JSON: <a href=\"/api/v1/targets\">/api/v1/targets</a> · \
         <a href=\"/metrics\">/metrics</a>. Refreshes every 10 s.</p></body></html>",
    );
    page
}

/// One target's section of the status page: its heading and policy, its problems, its jobs
/// (one page of them) and its last plan.
fn render_target(page: &mut String, target: &TargetStatus, page_number: usize) {
    let _ = write!(
        page,
        "<h2 id=\"target-{id}\">{name}</h2><p>source <code>{source}</code>, environment <code>{env}</code>; \
         auto_sync {auto}, self_heal {heal}, prune {prune}, resync every {resync}s</p>",
        id = escape(&target.name),
        name = escape(&target.name),
        source = escape(&target.source),
        env = escape(&target.environment),
        auto = target.policy.auto_sync,
        heal = target.policy.self_heal,
        prune = target.policy.prune,
        resync = target.policy.resync_interval_seconds,
    );
    render_target_problems(page, target);
    let shown = render_job_counts(page, target, page_number);
    render_jobs(page, &shown);
    render_last_plan(page, target);
}

/// The target's last error and its rejected revision, with the first problems of it.
fn render_target_problems(page: &mut String, target: &TargetStatus) {
    if let Some(error) = &target.last_error {
        let _ = write!(
            page,
            "<p class=\"bad\"><strong>Error:</strong> {}{}</p>",
            error
                .code
                .as_deref()
                .map(|code| format!("[{}] ", escape(code)))
                .unwrap_or_default(),
            escape(&error.message)
        );
    }
    if let Some(rejected) = &target.rejected_revision {
        let _ = write!(
            page,
            "<p class=\"bad\"><strong>Revision <code>{}</code> does not validate and is not applied</strong> \
             (the previous valid revision stays in use):</p><ul>",
            escape(&short_revision(Some(&rejected.revision)))
        );
        for error in rejected.errors.iter().take(REJECTED_ERRORS_LIMIT) {
            let _ = write!(page, "<li><code>{}</code></li>", escape(error));
        }
        if rejected.errors.len() > REJECTED_ERRORS_LIMIT {
            let _ = write!(
                page,
                "<li class=\"muted\">and {} more (see <a href=\"/api/v1/targets/{}\">the API</a>)</li>",
                rejected.errors.len() - REJECTED_ERRORS_LIMIT,
                escape(&target.name)
            );
        }
        page.push_str("</ul>");
    }
}

/// The target's job counts and, when its jobs take more than one page, where this page is;
/// returns the jobs of page `page_number` (those that need a look first).
fn render_job_counts<'a>(
    page: &mut String,
    target: &'a TargetStatus,
    page_number: usize,
) -> Vec<&'a crate::status::JobStatus> {
    let counts = |map: &std::collections::BTreeMap<String, usize>| {
        map.iter()
            .map(|(status, count)| format!("{count} {}", escape(status)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let total = target.jobs.len();
    let pages = total.div_ceil(JOBS_PER_PAGE).max(1);
    let page_number = page_number.min(pages);
    let first = (page_number - 1) * JOBS_PER_PAGE;
    let shown: Vec<_> = attention_first(&target.jobs)
        .into_iter()
        .skip(first)
        .take(JOBS_PER_PAGE)
        .collect();
    let _ = write!(
        page,
        "<p>{total} jobs: {}; {}.",
        counts(&target.counts.sync),
        counts(&target.counts.health)
    );
    if pages > 1 {
        let link = |number: usize, label: &str| {
            format!(
                " <a href=\"/?target={id}&amp;page={number}#target-{id}\">{label}</a>",
                id = escape(&target.name)
            )
        };
        let _ = write!(
            page,
            " Showing {}-{} (jobs that need a look first), page {page_number} of {pages}:",
            first + 1,
            first + shown.len()
        );
        if page_number > 1 {
            page.push_str(&link(page_number - 1, "previous"));
        }
        if page_number < pages {
            page.push_str(&link(page_number + 1, "next"));
        }
    }
    page.push_str("</p>");
    shown
}

/// The table of jobs.
fn render_jobs(page: &mut String, shown: &[&crate::status::JobStatus]) {
    page.push_str(
        "<table><tr><th>job</th><th>kind</th><th>sync</th><th>health</th><th>live status</th><th>planned</th><th>last savepoint</th><th>backups</th><th>last error</th></tr>",
    );
    for job in shown.iter().copied() {
        let planned = match (&job.action, &job.reason) {
            _ if job.step.is_some() => job.step.clone().unwrap_or_default(),
            (Some(action), Some(reason)) => format!("{action}: {reason}"),
            (Some(action), None) => action.clone(),
            (None, Some(reason)) => reason.clone(),
            (None, None) => String::new(),
        };
        let error = job
            .last_error
            .as_ref()
            .map(|error| match &error.code {
                Some(code) => format!("[{code}] {}", error.message),
                None => error.message.clone(),
            })
            .unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\" title=\"{}\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"bad\">{}</td></tr>",
            escape(&job.name),
            job.kind.as_str(),
            sync_class(job.sync_status),
            job.sync_status.as_str(),
            health_class(job.health.status),
            escape(job.health.message.as_deref().unwrap_or("")),
            job.health.status.as_str(),
            escape(job.live_status.as_deref().unwrap_or("-")),
            escape(&planned),
            escape(job.savepoint.as_deref().unwrap_or("-")),
            job.backups
                .iter()
                .map(|backup| format!("<code>{}</code>", escape(backup)))
                .collect::<Vec<_>>()
                .join("<br>"),
            escape(&error),
        );
    }
    page.push_str("</table>");
}

/// The target's last plan, folded, cut at [`PLAN_TEXT_LIMIT`].
fn render_last_plan(page: &mut String, target: &TargetStatus) {
    if let Some(plan) = &target.last_plan {
        let _ = write!(
            page,
            "<details><summary>Last plan <code>{}</code> ({})</summary><pre>{}</pre>{}</details>",
            escape(&plan.id.chars().take(12).collect::<String>()),
            crate::terminal::human_time(plan.time, chrono::Utc::now()),
            escape(clip(&plan.text, PLAN_TEXT_LIMIT).0),
            if clip(&plan.text, PLAN_TEXT_LIMIT).1 {
                format!(
                    "<p class=\"muted\">The plan is cut here; <a href=\"/api/v1/targets/{}\">the API</a> has all of it.</p>",
                    escape(&target.name)
                )
            } else {
                String::new()
            }
        );
    }
}

/// The status page's savepoint section: per target, the newest catalog entries (escaped HTML).
pub fn savepoints_section(state: &JournalState, targets: &[String]) -> String {
    let mut page = String::from(
        "<h2>Savepoints</h2><table><tr><th>target</th><th>seq</th><th>time</th><th>job</th>\
         <th>origin</th><th>revision</th><th>size</th><th>verified</th><th>path</th></tr>",
    );
    let mut any = false;
    for target in targets {
        let entries = savepoints::catalog(state, Some(target), None);
        for entry in entries.iter().rev().take(savepoints::STATUS_ENTRIES) {
            any = true;
            let record = &entry.entry.record;
            page.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>\
                 <td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                escape(target),
                entry.entry.seq,
                entry
                    .entry
                    .time
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                escape(&record.job),
                escape(&record.origin),
                escape(
                    record
                        .revision
                        .as_deref()
                        .map_or("-", |rev| rev.get(..12).unwrap_or(rev))
                ),
                savepoints::command::human_size(record.size_bytes),
                if record.verified { "yes" } else { "no" },
                escape(&record.path),
            ));
        }
    }
    if !any {
        page.push_str(
            "<tr><td colspan=\"9\" class=\"muted\">No savepoints in the catalog yet.</td></tr>",
        );
    }
    page.push_str("</table>");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobKind;
    use crate::status::{ErrorInfo, HealthInfo, JobStatus, PolicyView, RejectedRevision};

    #[test]
    fn everything_from_outside_is_escaped() {
        let hostile = "<script>alert('x')</script>&\"";
        let mut target = TargetStatus::new(
            hostile,
            hostile,
            hostile,
            PolicyView {
                auto_sync: true,
                self_heal: false,
                prune: false,
                resync_interval_seconds: 60,
                suspended: false,
                promote_from: None,
            },
        );
        target.last_error = Some(ErrorInfo {
            code: Some(hostile.into()),
            message: hostile.into(),
            time: None,
        });
        target.rejected_revision = Some(RejectedRevision {
            revision: hostile.into(),
            errors: vec![hostile.into()],
            time: chrono::Utc::now(),
        });
        target.set_jobs(
            vec![JobStatus {
                kind: JobKind::FlinkSql,
                name: hostile.into(),
                sync_status: SyncStatus::OutOfSync,
                health: HealthInfo {
                    status: HealthStatus::Degraded,
                    message: Some(hostile.into()),
                },
                live_status: Some(hostile.into()),
                live_id: Some(1),
                action: Some(hostile.into()),
                reason: Some(hostile.into()),
                last_error: Some(ErrorInfo {
                    code: Some(hostile.into()),
                    message: hostile.into(),
                    time: None,
                }),
                step: Some(hostile.into()),
                savepoint: Some(hostile.into()),
                backups: vec![hostile.into()],
            }],
            true,
        );
        let source = SourceStatus {
            name: hostile.into(),
            kind: "git".into(),
            location: hostile.into(),
            revision: Some(hostile.into()),
            last_poll: None,
            last_change: None,
            last_error: Some(ErrorInfo {
                code: None,
                message: hostile.into(),
                time: None,
            }),
        };
        let page = render_page(&[target], &[source], true);
        assert!(!page.contains("<script"), "unescaped markup in:\n{page}");
        assert!(!page.contains("alert('x')"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        assert!(page.contains("Suspended"));
    }

    #[test]
    fn escape_covers_the_five_special_characters() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
        assert_eq!(escape("plain"), "plain");
    }
}
