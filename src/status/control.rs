//! Operating controls over the target loops: suspend (from the config, globally or per target,
//! forever or until a time, and at run time through the API), change windows for syncs (per
//! target, each in its own time zone), and the break-glass override that lets one sync
//! through a window.
//!
//! Run-time suspends, resumes and overrides are journaled (`kind: control`) with who asked and
//! why; a restart reads the latest suspend/resume of each target back, so a suspend survives
//! it. The window logic is pure ([`window_status`]): it takes `now`, and [`Controls`] reads its
//! time from an injectable [`Clock`].
//!
//! # Design and invariants
//!
//! | file | what it holds |
//! |---|---|
//! | `config/schedule.rs` | `CronSchedule` in a `chrono_tz::Tz` (UTC unless `timezone:`): `matches`, `window_closes`, `next_opening` (minute by minute of real time, read on the zone's wall clock), `parse_time_zone` |
//! | `config/control.rs` | `Suspend` (`false`, `true`, `{until}`), `NotificationSink` (`webhook` / `slack` / `smn`, `events`, `targets`, `policy_off_after`), `NOTIFICATION_EVENTS`, `redact_url` |
//! | `status/control.rs` | `window_status` (pure: `blocked`, `unblocks_at`, `blocks_at`, `open`, `next`); `Controls`: per target the config suspend, the run-time suspend (journaled), the windows, a pending break-glass; `gate(target, manual)` → `Open {closes_at}` / `Suspended` / `Window`; `next_change`; an injectable `Clock`; holds the `Notifier` |
//! | `server/controls.rs` | `POST .../suspend`, `.../resume`, the break-glass body of `.../sync`, the page's Controls section, and the CLI side of `sync`, `suspend`, `resume` (requests to a running daemon with the bearer token) |
//!
//! The worker asks `Controls::gate` before a pass that would change something (`execute`): a
//! suspended target, an open deny window, or (allow windows configured) no open allow window turns
//! the pass into a report-only pass whose operation message says why and until when; the loop's
//! next wake-up is `next_change` (when a suspend ends, a window closes or opens). A manual sync
//! held by a window is remembered and runs when the window lets it. A pass that may act gets
//! `closes_at` (when the windows next stop syncs): a watcher triggers the pass's own `Stop` at that
//! instant if the windows then block, so the `StoppingLedger` announces no new action and the
//! action in flight finishes (its stop savepoint imported and the job started) — the same path as
//! shutdown, never a half-applied job; the operation then says so and the result is
//! `window_stopped`. Break-glass: `request_override` journals `{action: window_override, by, reason,
//! window}` before it is accepted; the next manual pass that a window would hold consumes it
//! (`window_override_used`, journaled) and runs unstopped. Target `windows:` apply to syncs and, via
//! `TargetConfig::promotion()`, to promotions to that target; `promotion.windows` only to promotions.
//!
//! Suspend: effective = global config ∨ target config ∨ run-time (journaled `control` records
//! `suspend {until?, by, reason?}` / `resume {by}`; the latest per target is read back at start).
//! `resume` lifts only the run-time suspend. A suspended target's passes also skip automatic
//! rollback's watch (`PassRequest::watch_upgrades`), as under the global suspend. API callers are journaled as `api:<name>` (the CLI
//! sends `cli.$USER`), so no caller can pose as the daemon.
//!
//! Tests: `tests/windows.rs` (pure window logic across Europe/Berlin's spring-forward and
//! fall-back and New York business hours; an unknown zone refused at its YAML path; one daemon
//! whose clock starts 3 s before 03:00 CEST on the spring-forward day: the pass in flight stops at
//! 01:00 UTC, a manual sync waits, break-glass runs once and is journaled), `tests/suspend.rs` (API
//! and CLI suspend/resume, journaled, across a restart; a config `{until}` ending on its own),
//! `tests/notifications.rs` (webhook on a loopback port 0, Slack, and the emulator's SMN, each
//! exactly one message per transition over three daemon runs on one journal; retries then drop;
//! drift, automatic rollback, automatic sync off past its threshold across a restart; config
//! refusals at their location).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::schedule::LOOKAHEAD;
use crate::config::{Config, Suspend, WindowKind};
use crate::journal::{Journal, RecordBody, RecordFilter};
use crate::promotion::{ChangeWindow, WindowBlock, window_block};

/// The journal record kind of suspends, resumes and window overrides.
pub const CONTROL_KIND: &str = "control";

/// Where the controls read the time. Production: the system clock; tests move it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// A suspend asked for at run time (API or CLI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSuspend {
    /// `None`: until resumed.
    pub until: Option<DateTime<Utc>>,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
}

/// A break-glass override waiting for the next pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowOverride {
    pub by: String,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
}

/// One window open now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWindow {
    pub kind: WindowKind,
    pub schedule: String,
    pub closes_at: DateTime<Utc>,
}

/// The next window to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextWindow {
    pub kind: WindowKind,
    pub schedule: String,
    pub opens_at: DateTime<Utc>,
}

/// What a target's windows say at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WindowStatus {
    /// Why syncs wait now, if they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<WindowBlock>,
    /// When a waiting sync may run (within the look-ahead), while blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unblocks_at: Option<DateTime<Utc>>,
    /// When syncs will next have to wait, while not blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextWindow>,
}

/// Pure: what `windows` say at `now` (deny wins; allow windows, when any exist, must be open).
pub fn window_status(windows: &[ChangeWindow], now: DateTime<Utc>) -> WindowStatus {
    if windows.is_empty() {
        return WindowStatus::default();
    }
    let open: Vec<OpenWindow> = windows
        .iter()
        .filter_map(|window| {
            window
                .schedule
                .window_closes(now, window.duration)
                .map(|closes_at| OpenWindow {
                    kind: window.kind,
                    schedule: window.schedule.to_string(),
                    closes_at,
                })
        })
        .collect();
    let next = windows
        .iter()
        .filter_map(|window| {
            let after = now + chrono::Duration::seconds(1);
            window
                .schedule
                .next_opening(after, LOOKAHEAD)
                .map(|opens_at| NextWindow {
                    kind: window.kind,
                    schedule: window.schedule.to_string(),
                    opens_at,
                })
        })
        .min_by_key(|next| next.opens_at);
    let blocked = window_block(windows, now);
    let (unblocks_at, blocks_at) = if blocked.is_some() {
        (unblocked_at(windows, now), None)
    } else {
        (None, next_block(windows, now))
    };
    WindowStatus {
        blocked,
        unblocks_at,
        blocks_at,
        open,
        next,
    }
}

/// The first instant from `now` at which the windows let a sync run.
fn unblocked_at(windows: &[ChangeWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut time = now;
    for _ in 0..32 {
        match window_block(windows, time) {
            None => return Some(time),
            Some(WindowBlock::Deny { .. }) => {
                time = windows
                    .iter()
                    .filter(|w| w.kind == WindowKind::Deny)
                    .filter_map(|w| w.schedule.window_closes(time, w.duration))
                    .max()?;
            }
            Some(WindowBlock::OutsideAllow { .. }) => {
                time = windows
                    .iter()
                    .filter(|w| w.kind == WindowKind::Allow)
                    .filter_map(|w| w.schedule.next_opening(time, LOOKAHEAD))
                    .min()?;
            }
        }
    }
    None
}

/// The next instant after `now` at which the windows stop syncs: a deny window opens, or the
/// last open allow window closes.
fn next_block(windows: &[ChangeWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let after = now + chrono::Duration::seconds(1);
    let deny = windows
        .iter()
        .filter(|w| w.kind == WindowKind::Deny)
        .filter_map(|w| w.schedule.next_opening(after, LOOKAHEAD))
        .min();
    let mut allow_end = None;
    if windows.iter().any(|w| w.kind == WindowKind::Allow) {
        // Follow overlapping allow windows to the end of the run.
        let mut time = now;
        for _ in 0..32 {
            let close = windows
                .iter()
                .filter(|w| w.kind == WindowKind::Allow)
                .filter_map(|w| w.schedule.window_closes(time, w.duration))
                .max();
            match close {
                Some(close) if close > time => time = close,
                _ => break,
            }
        }
        allow_end = Some(time).filter(|time| *time > now);
    }
    match (deny, allow_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the controls say about one target, for status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControlView {
    /// Nothing is changed now.
    pub suspended: bool,
    /// Why, when suspended: `config (global)`, `config`, or who suspended it at run time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspended_by: Vec<String>,
    /// When the suspend ends on its own (the latest of the active ones), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_suspend: Option<RuntimeSuspend>,
    #[serde(default)]
    pub windows: WindowStatus,
    /// A break-glass override the next pass will use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_pending: Option<WindowOverride>,
}

/// Whether a pass may change things now, and if not, why and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open {
        /// A break-glass override was used for this pass.
        overridden: Option<WindowOverride>,
        /// When a window will stop syncs (an action in flight then finishes, and the pass
        /// starts no other).
        closes_at: Option<DateTime<Utc>>,
    },
    Suspended {
        why: String,
        until: Option<DateTime<Utc>>,
    },
    Window {
        block: WindowBlock,
        until: Option<DateTime<Utc>>,
    },
}

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no target named `{0}`")]
    UnknownTarget(String),
    #[error("{0}")]
    Invalid(String),
    #[error("journaling the request failed ({0}); nothing was changed")]
    Journal(#[source] crate::journal::JournalError),
}

#[derive(Debug, Clone, Default)]
struct TargetControl {
    config: Suspend,
    runtime: Option<RuntimeSuspend>,
    windows: Vec<ChangeWindow>,
    pending_override: Option<WindowOverride>,
}

/// The controls of every target.
pub struct Controls {
    clock: Clock,
    journal: Option<Journal>,
    global: Suspend,
    targets: Mutex<BTreeMap<String, TargetControl>>,
    /// Notifications: the loop reports each pass here.
    notifier: Mutex<Option<Arc<crate::notify::Notifier>>>,
}

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controls")
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

impl Controls {
    /// Controls without targets; `journal` keeps run-time changes (without one they last
    /// until the process ends).
    pub fn new(clock: Clock, journal: Option<Journal>, global: Suspend) -> Controls {
        Controls {
            clock,
            journal,
            global,
            targets: Mutex::new(BTreeMap::new()),
            notifier: Mutex::new(None),
        }
    }

    /// Sends notifications through `notifier` from now on.
    pub fn set_notifier(&self, notifier: Option<Arc<crate::notify::Notifier>>) {
        *self.notifier.lock().unwrap_or_else(PoisonError::into_inner) = notifier;
    }

    /// The notifier, when sinks are configured. Other parts of the daemon (automatic rollback,
    /// promotion) emit their events through it: [`crate::notify::Notifier::emit`].
    pub fn notifier(&self) -> Option<Arc<crate::notify::Notifier>> {
        self.notifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether automatic sync is held off for `target` now (suspended), for the
    /// `auto_sync_off` notification.
    pub fn suspended_now(&self, target: &str) -> bool {
        let now = self.now();
        self.lock()
            .get(target)
            .is_some_and(|control| suspension(self.global, control, now).0)
    }

    /// The daemon's journal, when it has one (read-only views: the savepoint catalog).
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Every target of `config`: its `suspend`, its `windows` (parsed), and the run-time
    /// suspend the journal holds for it.
    pub fn from_config(
        config: &Config,
        journal: Option<Journal>,
        clock: Clock,
    ) -> Result<Controls, String> {
        let controls = Controls::new(clock, journal, config.suspend);
        let mut runtime = controls.runtime_suspends(None);
        for target in &config.targets {
            let windows = parse_windows(&target.name, &target.windows)?;
            let suspended = runtime.remove(&target.name).flatten();
            controls.insert_target(&target.name, target.suspend, windows, suspended);
        }
        Ok(controls)
    }

    /// Adds a target; reads its latest run-time suspend or resume from the journal.
    pub fn add_target(&self, name: &str, config: Suspend, windows: Vec<ChangeWindow>) {
        let runtime = self.runtime_suspends(Some(name)).remove(name).flatten();
        self.insert_target(name, config, windows, runtime);
    }

    fn insert_target(
        &self,
        name: &str,
        config: Suspend,
        windows: Vec<ChangeWindow>,
        runtime: Option<RuntimeSuspend>,
    ) {
        self.lock().insert(
            name.to_string(),
            TargetControl {
                config,
                runtime,
                windows,
                pending_override: None,
            },
        );
    }

    /// The latest run-time suspend (or `None` after a resume) per target, from the journal's
    /// `control` records (one read for every target).
    fn runtime_suspends(&self, target: Option<&str>) -> BTreeMap<String, Option<RuntimeSuspend>> {
        let mut latest = BTreeMap::new();
        let Some(journal) = &self.journal else {
            return latest;
        };
        let records = journal
            .records(&RecordFilter {
                target: target.map(str::to_string),
                kinds: vec![CONTROL_KIND.to_string()],
                ..RecordFilter::default()
            })
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "Reading the journaled suspends failed; starting without run-time suspends.");
                Vec::new()
            });
        for record in records {
            let RecordBody::Unknown(fields) = &record.body else {
                continue;
            };
            match fields.get("action").and_then(Value::as_str) {
                Some("suspend") => {
                    latest.insert(
                        record.target.clone(),
                        Some(RuntimeSuspend {
                            until: fields
                                .get("until")
                                .and_then(Value::as_str)
                                .and_then(|text| crate::config::control::parse_time(text).ok()),
                            by: text_field(fields, "by"),
                            reason: fields
                                .get("reason")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            since: record.time,
                        }),
                    );
                }
                Some("resume") => {
                    latest.insert(record.target.clone(), None);
                }
                _ => {}
            }
        }
        latest
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TargetControl>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `target` is known.
    pub fn knows(&self, target: &str) -> bool {
        self.lock().contains_key(target)
    }

    /// Whether a pass of `target` may change things at `now`; consumes a pending override
    /// when the windows would hold the pass and `manual` is set.
    pub fn gate(&self, target: &str, manual: bool) -> Gate {
        let now = self.now();
        let mut targets = self.lock();
        let Some(control) = targets.get_mut(target) else {
            return Gate::Open {
                overridden: None,
                closes_at: None,
            };
        };
        let view = suspension(self.global, control, now);
        if view.0 {
            return Gate::Suspended {
                why: format!("suspended ({})", view.1.join(", ")),
                until: view.2,
            };
        }
        let status = window_status(&control.windows, now);
        match status.blocked {
            Some(block) => {
                if manual && let Some(used) = control.pending_override.take() {
                    drop(targets);
                    self.journal_control(
                        target,
                        json!({
                            "action": "window_override_used",
                            "by": used.by,
                            "reason": used.reason,
                            "window": block.to_string(),
                        }),
                    );
                    // Break-glass passes the window for this whole pass.
                    return Gate::Open {
                        overridden: Some(used),
                        closes_at: None,
                    };
                }
                Gate::Window {
                    block,
                    until: status.unblocks_at,
                }
            }
            None => Gate::Open {
                overridden: None,
                closes_at: status.blocks_at,
            },
        }
    }

    /// The earliest instant after which [`Controls::gate`] may answer differently (a suspend
    /// ends, a window opens or closes), for the loop's next wake-up.
    pub fn next_change(&self, target: &str) -> Option<DateTime<Utc>> {
        let now = self.now();
        let targets = self.lock();
        let control = targets.get(target)?;
        let (suspended, _, until) = suspension(self.global, control, now);
        if suspended {
            return until;
        }
        let status = window_status(&control.windows, now);
        status.unblocks_at.or(status.blocks_at)
    }

    /// Whether the windows block `target` at this instant (for a pass in flight).
    pub fn window_blocks_now(&self, target: &str) -> Option<WindowBlock> {
        let now = self.now();
        let targets = self.lock();
        let control = targets.get(target)?;
        window_block(&control.windows, now)
    }

    /// The status view of `target`.
    pub fn view(&self, target: &str) -> ControlView {
        let now = self.now();
        let targets = self.lock();
        let Some(control) = targets.get(target) else {
            return ControlView::default();
        };
        let (suspended, suspended_by, suspended_until) = suspension(self.global, control, now);
        ControlView {
            suspended,
            suspended_by,
            suspended_until,
            runtime_suspend: control
                .runtime
                .clone()
                .filter(|runtime| runtime.until.is_none_or(|until| now < until)),
            windows: window_status(&control.windows, now),
            override_pending: control.pending_override.clone(),
        }
    }

    /// Suspends `target` until `until` (or until resumed); journaled.
    pub fn suspend(
        &self,
        target: &str,
        until: Option<DateTime<Utc>>,
        by: &str,
        reason: Option<&str>,
    ) -> Result<RuntimeSuspend, ControlError> {
        let now = self.now();
        if !self.knows(target) {
            return Err(ControlError::UnknownTarget(target.to_string()));
        }
        if let Some(until) = until
            && until <= now
        {
            return Err(ControlError::Invalid(format!(
                "`until` ({}) is not in the future (now {})",
                until.to_rfc3339_opts(SecondsFormat::Secs, true),
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            )));
        }
        let mut fields = json!({ "action": "suspend", "by": by });
        if let Some(until) = until {
            fields["until"] = json!(until.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
        if let Some(reason) = reason {
            fields["reason"] = json!(reason);
        }
        self.append(target, fields)?;
        let runtime = RuntimeSuspend {
            until,
            by: by.to_string(),
            reason: reason.map(str::to_string),
            since: now,
        };
        if let Some(control) = self.lock().get_mut(target) {
            control.runtime = Some(runtime.clone());
        }
        tracing::info!(target_name = %target, %by, until = ?until, "Target suspended.");
        Ok(runtime)
    }

    /// Ends a run-time suspend of `target`; journaled. A suspend from the config stays (the
    /// answer says so).
    pub fn resume(
        &self,
        target: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<ControlView, ControlError> {
        if !self.knows(target) {
            return Err(ControlError::UnknownTarget(target.to_string()));
        }
        let mut fields = json!({ "action": "resume", "by": by });
        if let Some(reason) = reason {
            fields["reason"] = json!(reason);
        }
        self.append(target, fields)?;
        if let Some(control) = self.lock().get_mut(target) {
            control.runtime = None;
        }
        tracing::info!(target_name = %target, %by, "Target resumed.");
        Ok(self.view(target))
    }

    /// Records a break-glass override for the next sync of `target`; journaled with who and
    /// why before it is accepted.
    pub fn request_override(
        &self,
        target: &str,
        by: &str,
        reason: &str,
    ) -> Result<WindowOverride, ControlError> {
        if !self.knows(target) {
            return Err(ControlError::UnknownTarget(target.to_string()));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ControlError::Invalid(
                "a window override needs a reason (`--reason \"...\"`); it is journaled with who asked".to_string(),
            ));
        }
        let window = self
            .window_blocks_now(target)
            .map(|block| block.to_string());
        self.append(
            target,
            json!({
                "action": "window_override",
                "by": by,
                "reason": reason,
                "window": window,
            }),
        )?;
        let granted = WindowOverride {
            by: by.to_string(),
            reason: reason.to_string(),
            requested_at: self.now(),
        };
        if let Some(control) = self.lock().get_mut(target) {
            control.pending_override = Some(granted.clone());
        }
        tracing::warn!(target_name = %target, %by, %reason, window = window.as_deref().unwrap_or("none open"), "Break-glass: the next sync passes the change windows once.");
        Ok(granted)
    }

    fn append(&self, target: &str, fields: Value) -> Result<(), ControlError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let Value::Object(mut map) = fields else {
            return Ok(());
        };
        map.insert("kind".to_string(), json!(CONTROL_KIND));
        map.retain(|_, value| !value.is_null());
        journal
            .append(target, RecordBody::Unknown(map))
            .map(|_| ())
            .map_err(ControlError::Journal)
    }

    fn journal_control(&self, target: &str, fields: Value) {
        if let Err(error) = self.append(target, fields) {
            tracing::error!(target_name = %target, %error, "Journaling a control record failed.");
        }
    }
}

fn text_field(fields: &Map<String, Value>, name: &str) -> String {
    fields
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// (suspended, by whom, until when) at `now`.
fn suspension(
    global: Suspend,
    control: &TargetControl,
    now: DateTime<Utc>,
) -> (bool, Vec<String>, Option<DateTime<Utc>>) {
    let mut by = Vec::new();
    let mut until: Vec<Option<DateTime<Utc>>> = Vec::new();
    if global.active(now) {
        by.push("config (global)".to_string());
        until.push(global.until());
    }
    if control.config.active(now) {
        by.push("config".to_string());
        until.push(control.config.until());
    }
    if let Some(runtime) = &control.runtime
        && runtime.until.is_none_or(|end| now < end)
    {
        by.push(runtime.by.clone());
        until.push(runtime.until);
    }
    let suspended = !by.is_empty();
    // Suspended until the last of them ends; forever if one has no end.
    let end = if until.iter().any(Option::is_none) {
        None
    } else {
        until.into_iter().flatten().max()
    };
    (suspended, by, end)
}

/// Parses a target's `windows:`.
pub fn parse_windows(
    target: &str,
    windows: &[crate::config::WindowConfig],
) -> Result<Vec<ChangeWindow>, String> {
    windows
        .iter()
        .enumerate()
        .map(|(index, window)| {
            let schedule = window
                .cron()
                .map_err(|problem| format!("window {index} of target `{target}`: {problem}"))?;
            Ok(ChangeWindow {
                kind: window.kind,
                schedule,
                duration: window.duration.get(),
            })
        })
        .collect()
}

/// A caller's name for the journal: `api:<name>` (letters, digits, `-_.@` kept), `api` when
/// absent, so no API caller can pose as the daemon.
pub fn api_caller(by: Option<&str>) -> String {
    let cleaned: String = by
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "api".to_string()
    } else {
        format!("api:{cleaned}")
    }
}
