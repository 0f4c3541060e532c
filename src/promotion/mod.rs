//! Promotion between environments: the gate a revision passes from one target to the next
//! (`promote_from`), manual promotions, and carrying Flink state across accounts.
//!
//! * [`gate`] is pure: upstream health over time, change windows and history → a decision.
//! * The journal's `promotion` records are the only memory of promotions: the revision a
//!   downstream target follows is the revision of its latest successful promotion record.

pub mod gate;

pub use gate::{
    BY_AUTO, BadRevision, ChangeWindow, GateDecision, GateInputs, HoldReason, ManualAccepted,
    ManualRefusal, ManualRequest, PolicyError, PromotionHistory, PromotionPolicy, RULE_MANUAL,
    RULE_UPSTREAM_FAILED, UpstreamCondition, UpstreamSample, UpstreamTracker, WindowBlock,
    check_manual, evaluate, looks_like_revision, window_block,
};
pub mod manual;

pub use manual::{
    PromoteBody, PromoteOptions, PromoteReport, PromotionError, check_requested_revision,
    pipeline_target, promote_blocking, promote_command, promotion_record, record_manual_promotion,
};
pub mod carry;

pub use carry::{
    CarriedSavepoint, CarryEnds, CarryError, PendingCarry, carry_savepoint, pending_carries,
};
pub mod pipeline;

pub use pipeline::{
    GateView, Pipeline, PipelineView, PromotionCounters, PromotionEvent, Stage, StageView,
    followed_revision,
};
pub mod endpoint;

pub use endpoint::PromotionEndpoint;
pub mod restore;

pub use restore::{RestoreError, apply_target_restore, carry_for_target};
pub mod revision;

pub use revision::{PromotedRevisionError, RevisionCheckError, check_promotable, snapshot_at};

/// An error and its sources, `: `-joined, for callers that hand a single line to a person.
pub fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
pub mod hook;

pub use hook::{DEFAULT_TICK, HookError, PromotionHook, PromotionListener, sample_of};
