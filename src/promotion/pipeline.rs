//! The pipeline the daemon runs: every `promote_from` target as a stage, the upstream trackers,
//! the automatic promotions and the failed-revision marks it journals, and the view the status
//! API and page show.
//!
//! The daemon owns one [`Pipeline`] (behind a mutex), calls [`Pipeline::observe`] after every
//! pass of every target, [`Pipeline::evaluate`] after that and on a short timer (the gate is
//! time-based), and asks [`followed_revision`] which revision a stage should converge to.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::gate::{
    BY_AUTO, GateDecision, GateInputs, HoldReason, ManualRequest, PolicyError, PromotionHistory,
    PromotionPolicy, RULE_UPSTREAM_FAILED, UpstreamSample, UpstreamTracker, evaluate,
};
use super::manual::{PromoteReport, PromotionError, promotion_record, record_manual_promotion};
use crate::config::Config;
use crate::journal::{Journal, JournalError, JournalState, PromotionEntry, RecordBody};

/// One `promote_from` target.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub target: String,
    pub upstream: String,
    pub policy: PromotionPolicy,
}

/// Something the pipeline journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PromotionEvent {
    Promoted {
        to: String,
        from: String,
        revision: String,
        by: String,
        rule: String,
        seq: u64,
    },
    /// A manual promotion was refused (failed revision, closed window).
    Refused { to: String, reason: String },
    /// A candidate that is ready upstream is held by something a person may act on: a change
    /// window (`window`) or `promotion.auto: false` (`manual`). Repeated on every gate run while
    /// it lasts; listeners keep one per (`to`, `revision`, `kind`).
    Held {
        to: String,
        from: String,
        revision: String,
        kind: &'static str,
        reason: String,
    },
    /// A revision was recorded as Degraded or failed upstream: it is never promoted to `to`.
    MarkedFailed {
        to: String,
        from: String,
        revision: String,
        reason: String,
        seq: u64,
    },
}

/// Promotion counts since the daemon started, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PromotionCounters {
    /// (to, by kind `auto`|`manual`, outcome `ok`|`refused`) → count.
    pub promotions: BTreeMap<(String, String, String), u64>,
    /// to → revisions marked failed upstream.
    pub failed_marks: BTreeMap<String, u64>,
}

/// The daemon's promotion state.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    stages: Vec<Stage>,
    trackers: BTreeMap<String, UpstreamTracker>,
    counters: PromotionCounters,
}

/// The pipeline as the status API shows it: every target, in config order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineView {
    pub targets: Vec<StageView>,
}

/// One target in the pipeline view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageView {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_from: Option<String>,
    /// The revision the target last converged on (journal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// Stages: the revision of the latest successful promotion, which the target follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_revision: Option<String>,
    /// Stages: what the gate says now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateView>,
    /// Stages: the latest promotion attempts, newest first (at most 10).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recent_promotions: Vec<PromotionEntry>,
}

/// The gate's verdict, with a sentence for the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateView {
    pub decision: GateDecision,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_healthy_since: Option<DateTime<Utc>>,
}

/// The revision a `promote_from` target follows: its latest successful promotion.
pub fn followed_revision(state: &JournalState, target: &str) -> Option<String> {
    PromotionHistory::from_entries(promotion_entries(state, target)).followed
}

fn promotion_entries<'s>(state: &'s JournalState, target: &str) -> &'s [PromotionEntry] {
    state
        .targets
        .get(target)
        .map(|t| t.promotions.as_slice())
        .unwrap_or_default()
}

impl Pipeline {
    /// Every target with `promote_from` becomes a stage.
    pub fn from_config(config: &Config) -> Result<Pipeline, PolicyError> {
        let stages = config
            .targets
            .iter()
            .filter_map(|target| {
                let upstream = target.promote_from.clone()?;
                Some(
                    PromotionPolicy::from_config(&target.name, &target.promotion()).map(|policy| {
                        Stage {
                            target: target.name.clone(),
                            upstream,
                            policy,
                        }
                    }),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pipeline {
            stages,
            ..Pipeline::default()
        })
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage of `target`, when it is one.
    pub fn stage(&self, target: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.target == target)
    }

    pub fn tracker(&self, target: &str) -> Option<&UpstreamTracker> {
        self.trackers.get(target)
    }

    pub fn counters(&self) -> &PromotionCounters {
        &self.counters
    }

    /// Folds in an observation of `target` after one of its passes. When it shows the revision
    /// Degraded or failed, that is journaled once for every stage downstream of `target`.
    pub fn observe(
        &mut self,
        journal: &Journal,
        target: &str,
        sample: &UpstreamSample,
    ) -> Result<Vec<PromotionEvent>, JournalError> {
        let tracker = self.trackers.entry(target.to_string()).or_default();
        let Some(bad) = tracker.observe(sample) else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        let downstream: Vec<String> = self
            .stages
            .iter()
            .filter(|stage| stage.upstream == target)
            .map(|stage| stage.target.clone())
            .collect();
        for stage_target in downstream {
            let history = PromotionHistory::from_entries(promotion_entries(
                &journal.state_guard(),
                &stage_target,
            ));
            if history.failed_upstream.contains_key(&bad.revision) {
                continue;
            }
            let mut record = promotion_record(
                target,
                &stage_target,
                &bad.revision,
                BY_AUTO,
                RULE_UPSTREAM_FAILED,
                Some(bad.reason.clone()),
            );
            if let RecordBody::Promotion(promotion) = &mut record {
                promotion.ok = false;
            }
            let seq = journal.append(&stage_target, record)?;
            tracing::warn!(
                target = %stage_target,
                from = target,
                revision = %bad.revision,
                reason = %bad.reason,
                seq,
                "A revision failed upstream; it will not be promoted."
            );
            *self
                .counters
                .failed_marks
                .entry(stage_target.clone())
                .or_default() += 1;
            events.push(PromotionEvent::MarkedFailed {
                to: stage_target,
                from: target.to_string(),
                revision: bad.revision.clone(),
                reason: bad.reason.clone(),
                seq,
            });
        }
        Ok(events)
    }

    /// Runs the gate of every stage and journals the automatic promotions it allows.
    pub fn evaluate(
        &mut self,
        journal: &Journal,
        now: DateTime<Utc>,
    ) -> Result<Vec<PromotionEvent>, JournalError> {
        let mut events = Vec::new();
        for stage in &self.stages {
            let decision = {
                let state = journal.state_guard();
                let history =
                    PromotionHistory::from_entries(promotion_entries(&state, &stage.target));
                let empty = UpstreamTracker::default();
                evaluate(&GateInputs {
                    upstream: &stage.upstream,
                    policy: &stage.policy,
                    tracker: self.trackers.get(&stage.upstream).unwrap_or(&empty),
                    history: &history,
                    now,
                })
            };
            let (revision, rule) = match decision {
                GateDecision::Promote { revision, rule } => (revision, rule),
                GateDecision::Hold {
                    candidate: Some(candidate),
                    reason: reason @ (HoldReason::Window { .. } | HoldReason::ManualOnly),
                } => {
                    events.push(PromotionEvent::Held {
                        to: stage.target.clone(),
                        from: stage.upstream.clone(),
                        revision: candidate,
                        kind: if matches!(reason, HoldReason::ManualOnly) {
                            "manual"
                        } else {
                            "window"
                        },
                        reason: reason.to_string(),
                    });
                    continue;
                }
                GateDecision::Hold { .. } => continue,
            };
            let seq = journal.append(
                &stage.target,
                promotion_record(
                    &stage.upstream,
                    &stage.target,
                    &revision,
                    BY_AUTO,
                    &rule,
                    None,
                ),
            )?;
            tracing::info!(
                target = %stage.target,
                from = %stage.upstream,
                revision = %revision,
                rule = %rule,
                seq,
                "Promoted a revision automatically."
            );
            *self
                .counters
                .promotions
                .entry((stage.target.clone(), "auto".into(), "ok".into()))
                .or_default() += 1;
            events.push(PromotionEvent::Promoted {
                to: stage.target.clone(),
                from: stage.upstream.clone(),
                revision,
                by: BY_AUTO.to_string(),
                rule,
                seq,
            });
        }
        Ok(events)
    }

    /// A person's promotion (CLI or API), counted.
    pub fn promote_manually(
        &mut self,
        journal: &Journal,
        config: &Config,
        target: &str,
        request: &ManualRequest,
        now: DateTime<Utc>,
    ) -> Result<PromoteReport, PromotionError> {
        let result = record_manual_promotion(journal, config, target, request, now);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(PromotionError::Refused { .. } | PromotionError::Unpromotable { .. }) => "refused",
            Err(_) => return result,
        };
        self.count_manual(target, outcome);
        result
    }

    /// Counts a manual promotion's outcome (`ok` or `refused`) for the metrics.
    pub fn count_manual(&mut self, target: &str, outcome: &str) {
        *self
            .counters
            .promotions
            .entry((target.to_string(), "manual".into(), outcome.into()))
            .or_default() += 1;
    }

    /// The pipeline for the status API and page: every target of `config`, in order.
    pub fn view(&self, config: &Config, state: &JournalState, now: DateTime<Utc>) -> PipelineView {
        let targets = config
            .targets
            .iter()
            .map(|target| {
                let applied_revision = state
                    .targets
                    .get(&target.name)
                    .and_then(|t| t.applied_revision.as_ref())
                    .map(|applied| applied.revision.clone());
                let Some(stage) = self.stage(&target.name) else {
                    return StageView {
                        target: target.name.clone(),
                        promote_from: None,
                        applied_revision,
                        promoted_revision: None,
                        gate: None,
                        recent_promotions: Vec::new(),
                    };
                };
                let entries = promotion_entries(state, &stage.target);
                let history = PromotionHistory::from_entries(entries);
                let empty = UpstreamTracker::default();
                let tracker = self.trackers.get(&stage.upstream).unwrap_or(&empty);
                let decision = evaluate(&GateInputs {
                    upstream: &stage.upstream,
                    policy: &stage.policy,
                    tracker,
                    history: &history,
                    now,
                });
                let message = match &decision {
                    GateDecision::Promote { revision, .. } => {
                        format!("promoting {revision} now")
                    }
                    GateDecision::Hold { reason, .. } => reason.to_string(),
                };
                StageView {
                    target: target.name.clone(),
                    promote_from: Some(stage.upstream.clone()),
                    applied_revision,
                    promoted_revision: history.followed.clone(),
                    gate: Some(GateView {
                        decision,
                        message,
                        upstream_healthy_since: tracker.healthy_since,
                    }),
                    recent_promotions: entries.iter().rev().take(10).cloned().collect(),
                }
            })
            .collect();
        PipelineView { targets }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::journal::JournalOptions;
    use crate::promotion::gate::UpstreamCondition;
    use chrono::TimeZone;

    const R1: &str = "1111111111111111111111111111111111111111";
    const R2: &str = "2222222222222222222222222222222222222222";

    fn at(mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, mi, 0)
            .single()
            .unwrap()
    }

    /// A validated configuration with the `jobs` source, a `dev` target and `targets` (YAML
    /// list items) promoted from it.
    pub(in crate::promotion) fn config_with_targets(
        state_dir: &std::path::Path,
        targets: &str,
    ) -> Config {
        let text = format!(
            r#"
state_dir: {state}
sources:
  jobs: {{path: /tmp/jobs}}
targets:
  - {{name: dev, source: jobs, endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}}}
{targets}"#,
            state = state_dir.display()
        );
        let config = Config::from_yaml_str(&text, std::path::Path::new("config.yaml")).unwrap();
        config.validate().unwrap();
        config
    }

    /// Journals that `target` converged to `revision`.
    pub(in crate::promotion) fn record_applied(journal: &Journal, target: &str, revision: &str) {
        journal
            .append(
                target,
                RecordBody::RevisionApplied(crate::journal::RevisionApplied {
                    revision: revision.into(),
                    plan_id: None,
                    summary: String::new(),
                    extra: Default::default(),
                }),
            )
            .unwrap();
    }

    fn config(dir: &std::path::Path) -> Config {
        config_with_targets(
            dir,
            r#"  - name: staging
    source: jobs
    promote_from: dev
    endpoints: {dli: embedded, dlf: embedded, obs: embedded}
    promotion: {auto: true, after: 5m}
  - name: prod
    source: jobs
    promote_from: staging
    endpoints: {dli: embedded, dlf: embedded, obs: embedded}
    promotion: {auto: false}
"#,
        )
    }

    fn sample(revision: &str, condition: UpstreamCondition, minute: u32) -> UpstreamSample {
        UpstreamSample {
            revision: Some(revision.into()),
            converged: true,
            condition,
            time: at(minute),
        }
    }

    #[test]
    fn a_healthy_revision_moves_down_the_pipeline_and_a_failed_one_stops() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (journal, _) = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let mut pipeline = Pipeline::from_config(&config).unwrap();
        assert_eq!(pipeline.stages().len(), 2);

        pipeline
            .observe(&journal, "dev", &sample(R1, UpstreamCondition::Healthy, 0))
            .unwrap();
        assert!(pipeline.evaluate(&journal, at(4)).unwrap().is_empty());
        let events = pipeline.evaluate(&journal, at(5)).unwrap();
        assert!(
            matches!(&events[..], [PromotionEvent::Promoted { to, revision, .. }] if to == "staging" && revision == R1),
            "{events:?}"
        );
        assert_eq!(
            followed_revision(&journal.state(), "staging").as_deref(),
            Some(R1)
        );
        // Promoted once only.
        assert!(pipeline.evaluate(&journal, at(9)).unwrap().is_empty());

        // Staging converges and stays Healthy: prod waits for a person.
        pipeline
            .observe(
                &journal,
                "staging",
                &sample(R1, UpstreamCondition::Healthy, 6),
            )
            .unwrap();
        let events = pipeline.evaluate(&journal, at(30)).unwrap();
        assert!(
            matches!(&events[..], [PromotionEvent::Held { to, revision, kind: "manual", .. }] if to == "prod" && revision == R1),
            "{events:?}"
        );
        let view = pipeline.view(&config, &journal.state(), at(30));
        let prod = &view.targets[2];
        assert_eq!(prod.promote_from.as_deref(), Some("staging"));
        assert_eq!(
            prod.gate.as_ref().unwrap().message,
            "ready; waiting for a manual promotion (promotion.auto is off)"
        );
        assert_eq!(
            view.targets[1].promoted_revision.as_deref(),
            Some(R1),
            "{view:?}"
        );

        // R2 degrades in dev: marked once, never promoted, even when Healthy again later.
        let marked = pipeline
            .observe(
                &journal,
                "dev",
                &sample(R2, UpstreamCondition::Degraded("clicks failed".into()), 10),
            )
            .unwrap();
        assert_eq!(marked.len(), 1);
        let again = pipeline
            .observe(
                &journal,
                "dev",
                &sample(R2, UpstreamCondition::Degraded("clicks failed".into()), 11),
            )
            .unwrap();
        assert!(again.is_empty(), "marked once: {again:?}");
        pipeline
            .observe(&journal, "dev", &sample(R2, UpstreamCondition::Healthy, 12))
            .unwrap();
        // Nothing promoted; prod's ready candidate is still held for a person.
        let events = pipeline.evaluate(&journal, at(59)).unwrap();
        assert!(
            events
                .iter()
                .all(|event| matches!(event, PromotionEvent::Held { to, .. } if to == "prod")),
            "{events:?}"
        );
        assert_eq!(
            followed_revision(&journal.state(), "staging").as_deref(),
            Some(R1)
        );

        // A person promotes staging's converged revision to prod.
        record_applied(&journal, "staging", R1);
        let report = pipeline
            .promote_manually(
                &journal,
                &config,
                "prod",
                &ManualRequest {
                    revision: None,
                    by: "cli:alice".into(),
                },
                at(40),
            )
            .unwrap();
        assert_eq!(report.revision, R1);
        assert_eq!(
            pipeline.counters().promotions
                [&("prod".to_string(), "manual".to_string(), "ok".to_string())],
            1
        );
        assert_eq!(pipeline.counters().failed_marks["staging"], 1);
    }
}
