//! Unit tests of the promotion gate: one test per gate, plus cron windows.

use super::*;
use crate::config::{ConfigDuration, WindowConfig};
use chrono::TimeZone;

const R1: &str = "1111111111111111111111111111111111111111";
const R2: &str = "2222222222222222222222222222222222222222";

fn at(h: u32, mi: u32) -> DateTime<Utc> {
    // 2026-11-23 is a Monday.
    Utc.with_ymd_and_hms(2026, 11, 23, h, mi, 0)
        .single()
        .unwrap()
}

fn policy(auto: bool, after_minutes: u64, windows: &[(WindowKind, &str, &str)]) -> PromotionPolicy {
    let config = PromotionConfig {
        auto,
        after: ConfigDuration::from_duration(Duration::from_secs(after_minutes * 60)),
        windows: windows
            .iter()
            .map(|(kind, schedule, duration)| WindowConfig {
                timezone: None,
                kind: *kind,
                schedule: schedule.to_string(),
                duration: ConfigDuration::parse(duration),
            })
            .collect(),
    };
    PromotionPolicy::from_config("prod", &config).unwrap()
}

fn sample(
    revision: &str,
    converged: bool,
    condition: UpstreamCondition,
    time: DateTime<Utc>,
) -> UpstreamSample {
    UpstreamSample {
        revision: Some(revision.to_string()),
        converged,
        condition,
        time,
    }
}

fn healthy_since(revision: &str, since: DateTime<Utc>) -> UpstreamTracker {
    let mut tracker = UpstreamTracker::default();
    assert_eq!(
        tracker.observe(&sample(revision, true, UpstreamCondition::Healthy, since)),
        None
    );
    tracker
}

fn decide(
    policy: &PromotionPolicy,
    tracker: &UpstreamTracker,
    history: &PromotionHistory,
    now: DateTime<Utc>,
) -> GateDecision {
    evaluate(&GateInputs {
        upstream: "dev",
        policy,
        tracker,
        history,
        now,
    })
}

fn hold_reason(decision: GateDecision) -> HoldReason {
    match decision {
        GateDecision::Hold { reason, .. } => reason,
        other => panic!("expected a hold, got {other:?}"),
    }
}

fn entry(revision: &str, ok: bool, rule: &str, seq: u64) -> PromotionEntry {
    PromotionEntry {
        from: "dev".into(),
        revision: revision.into(),
        by: "auto".into(),
        rule: rule.into(),
        ok,
        message: (!ok).then(|| "job x failed".to_string()),
        seq,
        time: at(0, 0),
    }
}

#[test]
fn promotes_after_the_upstream_stayed_healthy_long_enough() {
    let policy = policy(true, 10, &[]);
    let tracker = healthy_since(R1, at(10, 0));
    let history = PromotionHistory::default();
    assert_eq!(
        hold_reason(decide(&policy, &tracker, &history, at(10, 9))),
        HoldReason::NotHealthyLongEnough {
            healthy_since: at(10, 0),
            eligible_at: at(10, 10)
        }
    );
    match decide(&policy, &tracker, &history, at(10, 10)) {
        GateDecision::Promote { revision, rule } => {
            assert_eq!(revision, R1);
            assert_eq!(rule, "auto: converged and Healthy in `dev` for 10m");
        }
        other => panic!("expected a promotion, got {other:?}"),
    }
}

#[test]
fn a_break_in_health_restarts_the_clock() {
    let policy = policy(true, 10, &[]);
    let mut tracker = healthy_since(R1, at(10, 0));
    tracker.observe(&sample(R1, true, UpstreamCondition::Progressing, at(10, 5)));
    tracker.observe(&sample(R1, true, UpstreamCondition::Healthy, at(10, 6)));
    assert_eq!(tracker.healthy_since, Some(at(10, 6)));
    assert!(matches!(
        hold_reason(decide(
            &policy,
            &tracker,
            &PromotionHistory::default(),
            at(10, 12)
        )),
        HoldReason::NotHealthyLongEnough { .. }
    ));
    // Drift (not converged) breaks it too, and so does a new revision.
    tracker.observe(&sample(R1, false, UpstreamCondition::Healthy, at(10, 7)));
    assert_eq!(tracker.healthy_since, None);
    tracker.observe(&sample(R1, true, UpstreamCondition::Healthy, at(10, 8)));
    tracker.observe(&sample(R2, true, UpstreamCondition::Healthy, at(10, 9)));
    assert_eq!(tracker.healthy_since, Some(at(10, 9)));
    assert_eq!(tracker.revision.as_deref(), Some(R2));
}

#[test]
fn an_unhealthy_upstream_holds_and_says_why() {
    let policy = policy(true, 0, &[]);
    let mut tracker = UpstreamTracker::default();
    assert_eq!(
        hold_reason(decide(
            &policy,
            &tracker,
            &PromotionHistory::default(),
            at(10, 0)
        )),
        HoldReason::NoUpstreamRevision
    );
    tracker.observe(&sample(
        R1,
        false,
        UpstreamCondition::Progressing,
        at(10, 0),
    ));
    assert_eq!(
        hold_reason(decide(
            &policy,
            &tracker,
            &PromotionHistory::default(),
            at(11, 0)
        )),
        HoldReason::UpstreamNotHealthy {
            condition: "its jobs are still starting or stopping (Progressing)".into()
        }
    );
}

#[test]
fn a_degraded_or_failed_revision_is_reported_once_and_never_promoted() {
    let policy = policy(true, 0, &[]);
    let mut tracker = UpstreamTracker::default();
    let bad = tracker.observe(&sample(
        R2,
        true,
        UpstreamCondition::Degraded("job clicks is job_running_exception".into()),
        at(10, 0),
    ));
    assert_eq!(
        bad,
        Some(BadRevision {
            revision: R2.into(),
            reason: "Degraded: job clicks is job_running_exception".into()
        })
    );
    assert!(matches!(
        hold_reason(decide(
            &policy,
            &tracker,
            &PromotionHistory::default(),
            at(10, 1)
        )),
        HoldReason::FailedUpstream { .. }
    ));
    // Once journaled, the revision stays barred even after it turns Healthy again.
    let history = PromotionHistory::from_entries(&[entry(R2, false, RULE_UPSTREAM_FAILED, 1)]);
    tracker.observe(&sample(R2, true, UpstreamCondition::Healthy, at(10, 2)));
    assert_eq!(
        hold_reason(decide(&policy, &tracker, &history, at(12, 0))),
        HoldReason::FailedUpstream {
            message: "job x failed".into()
        }
    );
    let failed = tracker.observe(&sample(
        R1,
        false,
        UpstreamCondition::Failed("DLI.0001: queue missing".into()),
        at(10, 3),
    ));
    assert_eq!(failed.unwrap().reason, "failed: DLI.0001: queue missing");
}

#[test]
fn each_revision_is_promoted_automatically_at_most_once() {
    let policy = policy(true, 0, &[]);
    let tracker = healthy_since(R2, at(10, 0));
    // R2 was promoted, then a person went back to R1: the gate leaves R1 in place.
    let history =
        PromotionHistory::from_entries(&[entry(R2, true, "auto", 1), entry(R1, true, "manual", 2)]);
    assert_eq!(history.followed.as_deref(), Some(R1));
    assert_eq!(
        hold_reason(decide(&policy, &tracker, &history, at(11, 0))),
        HoldReason::AlreadyPromoted
    );
}

#[test]
fn auto_off_waits_for_a_person() {
    let policy = policy(false, 0, &[]);
    let tracker = healthy_since(R1, at(10, 0));
    assert_eq!(
        decide(&policy, &tracker, &PromotionHistory::default(), at(11, 0)),
        GateDecision::Hold {
            candidate: Some(R1.into()),
            reason: HoldReason::ManualOnly
        }
    );
}

#[test]
fn a_deny_window_blocks_while_open_only() {
    // Weekday nights 22:00 for 2h.
    let policy = policy(true, 0, &[(WindowKind::Deny, "0 22 * * mon-fri", "2h")]);
    let tracker = healthy_since(R1, at(9, 0));
    let history = PromotionHistory::default();
    assert_eq!(
        hold_reason(decide(&policy, &tracker, &history, at(23, 30))),
        HoldReason::Window {
            block: WindowBlock::Deny {
                schedule: "0 22 * * mon-fri".into(),
                duration: "2h".into()
            }
        }
    );
    assert!(matches!(
        decide(&policy, &tracker, &history, at(21, 59)),
        GateDecision::Promote { .. }
    ));
    // Sunday 23:30 is outside the weekday schedule.
    let sunday = Utc
        .with_ymd_and_hms(2026, 11, 29, 23, 30, 0)
        .single()
        .unwrap();
    let on_sunday = decide(&policy, &tracker, &history, sunday);
    assert!(
        matches!(on_sunday, GateDecision::Promote { .. }),
        "{on_sunday:?}"
    );
}

#[test]
fn allow_windows_block_outside_them_and_deny_wins_inside() {
    let policy = policy(
        true,
        0,
        &[
            (WindowKind::Allow, "0 9 * * *", "8h"),
            (WindowKind::Deny, "0 12 * * *", "1h"),
        ],
    );
    let tracker = healthy_since(R1, at(0, 0));
    let history = PromotionHistory::default();
    assert!(matches!(
        hold_reason(decide(&policy, &tracker, &history, at(8, 59))),
        HoldReason::Window {
            block: WindowBlock::OutsideAllow { .. }
        }
    ));
    assert!(matches!(
        decide(&policy, &tracker, &history, at(9, 0)),
        GateDecision::Promote { .. }
    ));
    assert!(matches!(
        hold_reason(decide(&policy, &tracker, &history, at(12, 30))),
        HoldReason::Window {
            block: WindowBlock::Deny { .. }
        }
    ));
    assert!(matches!(
        hold_reason(decide(&policy, &tracker, &history, at(17, 0))),
        HoldReason::Window {
            block: WindowBlock::OutsideAllow { .. }
        }
    ));
}

#[test]
fn manual_promotions_skip_the_timer_but_not_failures_or_windows() {
    let open = policy(false, 60, &[]);
    let history = PromotionHistory::from_entries(&[entry(R2, false, RULE_UPSTREAM_FAILED, 1)]);
    let request = |revision: Option<&str>| ManualRequest {
        revision: revision.map(str::to_string),
        by: "cli:alice".into(),
    };
    let accepted =
        check_manual("dev", &request(None), Some(R1), &open, &history, at(10, 0)).unwrap();
    assert_eq!(accepted.revision, R1);
    assert_eq!(accepted.rule, "manual: the revision `dev` converged on");
    let older = check_manual(
        "dev",
        &request(Some(R1)),
        Some(R2),
        &open,
        &history,
        at(10, 0),
    )
    .unwrap();
    assert_eq!(older.rule, "manual: not the revision `dev` is on now");
    assert!(matches!(
        check_manual(
            "dev",
            &request(Some(R2)),
            Some(R2),
            &open,
            &history,
            at(10, 0)
        ),
        Err(ManualRefusal::FailedUpstream { .. })
    ));
    assert!(matches!(
        check_manual("dev", &request(None), None, &open, &history, at(10, 0)),
        Err(ManualRefusal::NoRevision { .. })
    ));
    assert!(matches!(
        check_manual(
            "dev",
            &request(Some("abc123")),
            None,
            &open,
            &history,
            at(10, 0)
        ),
        Err(ManualRefusal::BadRevision { .. })
    ));
    let frozen = policy(false, 0, &[(WindowKind::Deny, "* * * * *", "1m")]);
    let refusal = check_manual(
        "dev",
        &request(Some(R1)),
        None,
        &frozen,
        &history,
        at(10, 0),
    )
    .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "promotions are blocked: deny window `* * * * *` (for 1m) is open; retry when the window allows"
    );
}

#[test]
fn revisions_must_be_full_ids_or_digests() {
    assert!(looks_like_revision(R1));
    assert!(looks_like_revision(&format!("sha256:{}", "ab".repeat(32))));
    assert!(!looks_like_revision("sha256:abc"));
    assert!(!looks_like_revision("main"));
    assert!(!looks_like_revision(&"g".repeat(40)));
}

#[test]
fn a_bad_window_schedule_is_an_error_not_a_panic() {
    let config = PromotionConfig {
        auto: true,
        after: ConfigDuration::parse("1m"),
        windows: vec![WindowConfig {
            timezone: None,
            kind: WindowKind::Deny,
            schedule: "61 * * * *".into(),
            duration: ConfigDuration::parse("1h"),
        }],
    };
    let error = PromotionPolicy::from_config("prod", &config).unwrap_err();
    assert_eq!(error.index, 0);
    assert!(
        error
            .to_string()
            .starts_with("promotion window 0 of target `prod`: minute value 61")
    );
}
