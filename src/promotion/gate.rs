//! The promotion gate (pure): which revision a downstream target should follow, or why not yet.
//!
//! Nothing here reads a clock, a file or the network: the caller passes `now`, the upstream's
//! tracked health ([`UpstreamTracker`]) and the downstream's promotion history (from the
//! journal), and gets a [`GateDecision`] back.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{CronSchedule, PromotionConfig, WindowKind};
use crate::journal::PromotionEntry;

/// `by` of promotions the gate made on its own.
pub const BY_AUTO: &str = "auto";
/// `rule` of a refused promotion that marks a revision as failed upstream. Such a record is
/// the durable memory that the revision must never be promoted.
pub const RULE_UPSTREAM_FAILED: &str = "upstream-failed";
/// `rule` prefix of a manual promotion.
pub const RULE_MANUAL: &str = "manual";

/// A target's promotion settings with the schedules parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionPolicy {
    pub auto: bool,
    /// How long the upstream must have kept the revision converged and Healthy.
    pub after: Duration,
    pub windows: Vec<ChangeWindow>,
}

/// One change window: opens at every firing of `schedule` (UTC) and stays open `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeWindow {
    pub kind: WindowKind,
    pub schedule: CronSchedule,
    pub duration: Duration,
}

/// The promotion settings do not parse (a loaded config always does; this guards the rest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("promotion window {index} of target `{target}`: {problem}")]
pub struct PolicyError {
    pub target: String,
    pub index: usize,
    pub problem: String,
}

impl PromotionPolicy {
    /// Parses the windows of a target's `promotion:` section.
    pub fn from_config(target: &str, config: &PromotionConfig) -> Result<Self, PolicyError> {
        let windows = config
            .windows
            .iter()
            .enumerate()
            .map(|(index, window)| {
                let schedule = window.cron().map_err(|problem| PolicyError {
                    target: target.to_string(),
                    index,
                    problem,
                })?;
                Ok(ChangeWindow {
                    kind: window.kind,
                    schedule,
                    duration: window.duration.get(),
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Ok(PromotionPolicy {
            auto: config.auto,
            after: config.after.get(),
            windows,
        })
    }
}

/// Why the change windows block a promotion at some instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowBlock {
    /// A deny window is open.
    Deny { schedule: String, duration: String },
    /// Allow windows are configured and none is open.
    OutsideAllow { schedules: Vec<String> },
}

impl fmt::Display for WindowBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowBlock::Deny { schedule, duration } => {
                write!(f, "deny window `{schedule}` (for {duration}) is open")
            }
            WindowBlock::OutsideAllow { schedules } => write!(
                f,
                "outside every allow window ({})",
                schedules
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Whether the windows block a promotion at `now`: any open deny window blocks; when allow
/// windows exist, being outside all of them blocks (Argo CD's sync windows, deny winning).
pub fn window_block(windows: &[ChangeWindow], now: DateTime<Utc>) -> Option<WindowBlock> {
    if let Some(deny) = windows
        .iter()
        .find(|w| w.kind == WindowKind::Deny && w.schedule.window_active(now, w.duration))
    {
        return Some(WindowBlock::Deny {
            schedule: deny.schedule.to_string(),
            duration: humantime::format_duration(deny.duration).to_string(),
        });
    }
    let allows: Vec<&ChangeWindow> = windows
        .iter()
        .filter(|w| w.kind == WindowKind::Allow)
        .collect();
    if !allows.is_empty()
        && !allows
            .iter()
            .any(|w| w.schedule.window_active(now, w.duration))
    {
        return Some(WindowBlock::OutsideAllow {
            schedules: allows.iter().map(|w| w.schedule.to_string()).collect(),
        });
    }
    None
}

/// How the upstream looked in one observation, as the daemon reports it after a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSample {
    /// The revision the upstream is converging to (its desired revision), if it has one.
    pub revision: Option<String>,
    /// The upstream's jobs match `revision` (it converged: Synced).
    pub converged: bool,
    pub condition: UpstreamCondition,
    pub time: DateTime<Utc>,
}

/// The upstream's aggregate health in Argo CD's terms, plus a failed apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "message", rename_all = "snake_case")]
pub enum UpstreamCondition {
    Healthy,
    /// Jobs are starting, stopping, or the pass has not finished.
    Progressing,
    /// A job of the revision is failed or failing on the service.
    Degraded(String),
    /// Applying the revision failed (a permanent service error, a job that did not start).
    Failed(String),
    /// Not observed, suspended, missing jobs, or anything else that is not a verdict.
    Unknown(String),
}

impl UpstreamCondition {
    /// The condition as the end of a sentence (`it is Degraded: ...`).
    pub fn describe(&self) -> String {
        match self {
            UpstreamCondition::Healthy => "it is Healthy".to_string(),
            UpstreamCondition::Progressing => {
                "its jobs are still starting or stopping (Progressing)".to_string()
            }
            UpstreamCondition::Degraded(message) => format!("it is Degraded: {message}"),
            UpstreamCondition::Failed(message) => format!("its last pass failed: {message}"),
            UpstreamCondition::Unknown(message) => format!("its health is {message}"),
        }
    }
}

/// A revision found Degraded or failed upstream: journal it once, and it is never promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRevision {
    pub revision: String,
    pub reason: String,
}

/// What the daemon remembers of the upstream between passes: the revision it is on and since
/// when it has been converged and Healthy without a break.
///
/// Kept in memory only. After a restart the clock starts again at the first Healthy
/// observation, so a restart can delay a promotion by up to `after`, never hasten one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTracker {
    pub revision: Option<String>,
    /// Converged on `revision` and Healthy in every observation since this instant.
    pub healthy_since: Option<DateTime<Utc>>,
    pub last_condition: Option<UpstreamCondition>,
    pub last_observed: Option<DateTime<Utc>>,
}

impl UpstreamTracker {
    /// Folds one observation in. Returns the revision when this observation shows it Degraded
    /// or failed (the caller journals it, once).
    pub fn observe(&mut self, sample: &UpstreamSample) -> Option<BadRevision> {
        if self.revision != sample.revision {
            self.revision = sample.revision.clone();
            self.healthy_since = None;
        }
        self.last_observed = Some(sample.time);
        self.last_condition = Some(sample.condition.clone());
        let bad = match (&sample.condition, &sample.revision) {
            (UpstreamCondition::Degraded(reason), Some(revision)) => Some(BadRevision {
                revision: revision.clone(),
                reason: format!("Degraded: {reason}"),
            }),
            (UpstreamCondition::Failed(reason), Some(revision)) => Some(BadRevision {
                revision: revision.clone(),
                reason: format!("failed: {reason}"),
            }),
            _ => None,
        };
        if sample.converged && sample.condition == UpstreamCondition::Healthy {
            if self.healthy_since.is_none() {
                self.healthy_since = Some(sample.time);
            }
        } else {
            self.healthy_since = None;
        }
        bad
    }
}

/// What the journal says about promotions into one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromotionHistory {
    /// The revision of the latest successful promotion: what the target follows.
    pub followed: Option<String>,
    /// Every revision promoted successfully, ever (within the journal's history limit).
    pub promoted: Vec<String>,
    /// Revisions recorded as Degraded or failed upstream, with the reason.
    pub failed_upstream: BTreeMap<String, String>,
}

impl PromotionHistory {
    /// From the target's promotion entries in the journal state, oldest first.
    pub fn from_entries(entries: &[PromotionEntry]) -> PromotionHistory {
        let mut history = PromotionHistory::default();
        for entry in entries {
            if entry.ok {
                history.followed = Some(entry.revision.clone());
                if !history.promoted.contains(&entry.revision) {
                    history.promoted.push(entry.revision.clone());
                }
            } else if entry.rule == RULE_UPSTREAM_FAILED {
                history.failed_upstream.insert(
                    entry.revision.clone(),
                    entry.message.clone().unwrap_or_default(),
                );
            }
        }
        history
    }
}

/// Everything the gate looks at for one downstream target.
#[derive(Debug, Clone)]
pub struct GateInputs<'a> {
    pub upstream: &'a str,
    pub policy: &'a PromotionPolicy,
    pub tracker: &'a UpstreamTracker,
    pub history: &'a PromotionHistory,
    pub now: DateTime<Utc>,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum GateDecision {
    /// Record an automatic promotion of `revision` now.
    Promote { revision: String, rule: String },
    /// Nothing to promote now; `candidate` is the upstream's revision when there is one.
    Hold {
        candidate: Option<String>,
        reason: HoldReason,
    },
}

/// Why the gate holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HoldReason {
    /// The upstream has no revision yet.
    NoUpstreamRevision,
    /// The candidate was promoted into this target before (it is followed now, or a person
    /// moved the target to another revision since, which the gate respects).
    AlreadyPromoted,
    /// The candidate was Degraded or failed upstream.
    FailedUpstream { message: String },
    /// The upstream is not converged and Healthy on the candidate.
    UpstreamNotHealthy { condition: String },
    /// Healthy, but not for `after` yet.
    NotHealthyLongEnough {
        healthy_since: DateTime<Utc>,
        eligible_at: DateTime<Utc>,
    },
    /// The change windows block promotions now.
    Window { block: WindowBlock },
    /// `promotion.auto` is off: the candidate is ready for a person to promote.
    ManualOnly,
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::NoUpstreamRevision => f.write_str("the upstream has no revision yet"),
            HoldReason::AlreadyPromoted => f.write_str("already promoted"),
            HoldReason::FailedUpstream { message } => {
                write!(
                    f,
                    "the revision failed upstream ({message}); it is never promoted"
                )
            }
            HoldReason::UpstreamNotHealthy { condition } => {
                write!(
                    f,
                    "the upstream is not converged and Healthy yet: {condition}"
                )
            }
            HoldReason::NotHealthyLongEnough {
                healthy_since,
                eligible_at,
            } => write!(
                f,
                "Healthy upstream since {}, eligible at {}",
                healthy_since.to_rfc3339(),
                eligible_at.to_rfc3339()
            ),
            HoldReason::Window { block } => write!(f, "{block}"),
            HoldReason::ManualOnly => {
                f.write_str("ready; waiting for a manual promotion (promotion.auto is off)")
            }
        }
    }
}

/// Decides whether the downstream gets a new automatic promotion now.
///
/// Order of the gates: an upstream revision exists; it was not promoted here before (each
/// revision is promoted automatically at most once, so a person's promotion of an older
/// revision is not undone by the gate); it is not recorded as failed upstream; the upstream is
/// converged and Healthy on it, and has been for `after`; no change window blocks; `auto` is on.
pub fn evaluate(inputs: &GateInputs<'_>) -> GateDecision {
    let hold = |candidate: Option<&String>, reason| GateDecision::Hold {
        candidate: candidate.cloned(),
        reason,
    };
    let Some(candidate) = inputs.tracker.revision.as_ref() else {
        return hold(None, HoldReason::NoUpstreamRevision);
    };
    if inputs.history.promoted.contains(candidate) {
        return hold(Some(candidate), HoldReason::AlreadyPromoted);
    }
    if let Some(message) = inputs.history.failed_upstream.get(candidate) {
        return hold(
            Some(candidate),
            HoldReason::FailedUpstream {
                message: message.clone(),
            },
        );
    }
    let Some(healthy_since) = inputs.tracker.healthy_since else {
        let condition = inputs
            .tracker
            .last_condition
            .as_ref()
            .map(UpstreamCondition::describe)
            .unwrap_or_else(|| "not observed yet".to_string());
        if let Some(UpstreamCondition::Degraded(message) | UpstreamCondition::Failed(message)) =
            &inputs.tracker.last_condition
        {
            return hold(
                Some(candidate),
                HoldReason::FailedUpstream {
                    message: message.clone(),
                },
            );
        }
        return hold(
            Some(candidate),
            HoldReason::UpstreamNotHealthy { condition },
        );
    };
    let eligible_at = healthy_since
        + chrono::Duration::from_std(inputs.policy.after).unwrap_or(chrono::TimeDelta::MAX);
    if inputs.now < eligible_at {
        return hold(
            Some(candidate),
            HoldReason::NotHealthyLongEnough {
                healthy_since,
                eligible_at,
            },
        );
    }
    if let Some(block) = window_block(&inputs.policy.windows, inputs.now) {
        return hold(Some(candidate), HoldReason::Window { block });
    }
    if !inputs.policy.auto {
        return hold(Some(candidate), HoldReason::ManualOnly);
    }
    GateDecision::Promote {
        revision: candidate.clone(),
        rule: format!(
            "auto: converged and Healthy in `{}` for {}",
            inputs.upstream,
            humantime::format_duration(inputs.policy.after)
        ),
    }
}

/// A person's request to promote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualRequest {
    /// The revision to promote; by default the upstream's last converged revision.
    #[serde(default)]
    pub revision: Option<String>,
    /// Who asks (`cli:<user>`, `api`, ...).
    pub by: String,
}

/// A manual promotion the gate accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualAccepted {
    pub revision: String,
    pub rule: String,
}

/// Why a manual promotion is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum ManualRefusal {
    #[error(
        "no revision given and `{upstream}` has not converged on any revision yet; pass --revision"
    )]
    NoRevision { upstream: String },
    #[error(
        "revision {revision} failed in `{upstream}` ({message}); a failed revision is never promoted, fix it upstream first"
    )]
    FailedUpstream {
        upstream: String,
        revision: String,
        message: String,
    },
    #[error("promotions are blocked: {block}; retry when the window allows")]
    Window { block: WindowBlock },
    #[error(
        "`{revision}` is not a full revision (expected a 40-digit commit id or a `sha256:` digest); `git rev-parse` gives the full id"
    )]
    BadRevision { revision: String },
}

/// Checks a manual promotion. `upstream_applied` is the revision the upstream last converged
/// on, per the journal. Manual promotions skip `after` and `auto` (a person decided), but not
/// failed revisions nor change windows.
pub fn check_manual(
    upstream: &str,
    request: &ManualRequest,
    upstream_applied: Option<&str>,
    policy: &PromotionPolicy,
    history: &PromotionHistory,
    now: DateTime<Utc>,
) -> Result<ManualAccepted, ManualRefusal> {
    let revision = match (&request.revision, upstream_applied) {
        (Some(revision), _) => revision.trim().to_string(),
        (None, Some(applied)) => applied.to_string(),
        (None, None) => {
            return Err(ManualRefusal::NoRevision {
                upstream: upstream.to_string(),
            });
        }
    };
    if !looks_like_revision(&revision) {
        return Err(ManualRefusal::BadRevision { revision });
    }
    if let Some(message) = history.failed_upstream.get(&revision) {
        return Err(ManualRefusal::FailedUpstream {
            upstream: upstream.to_string(),
            revision,
            message: message.clone(),
        });
    }
    if let Some(block) = window_block(&policy.windows, now) {
        return Err(ManualRefusal::Window { block });
    }
    let rule = match upstream_applied {
        Some(applied) if applied == revision => {
            format!("{RULE_MANUAL}: the revision `{upstream}` converged on")
        }
        _ => format!("{RULE_MANUAL}: not the revision `{upstream}` is on now"),
    };
    Ok(ManualAccepted { revision, rule })
}

/// Revisions are full git commit ids (40 or 64 hex digits; the daemon reads the commit by id, so
/// an abbreviation would not do) or directory digests (`sha256:<64 hex>`). Refusing anything else
/// keeps a typo from being journaled as a promotion.
pub fn looks_like_revision(text: &str) -> bool {
    let hex_digits = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match text.strip_prefix("sha256:") {
        Some(digest) => digest.len() == 64 && hex_digits(digest),
        None => matches!(text.len(), 40 | 64) && hex_digits(text),
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
