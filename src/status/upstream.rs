//! A target's status as the promotion gate reads it (an upstream sample).

use chrono::Utc;

use super::{HealthStatus, OperationPhase, SyncStatus, TargetStatus};
use crate::promotion::{UpstreamCondition, UpstreamSample};

/// How a target looked after a pass, in the gate's terms: converged (Synced on the revision
/// it last recorded as applied) and its health; a failed pass whose failing jobs carry a
/// service error code is `Failed` (a permanent error), any other failure `Unknown` (it holds
/// the gate without marking the revision).
pub fn sample_of(status: &TargetStatus) -> UpstreamSample {
    let revision = status.sync.revision.clone();
    let converged = status.sync.status == SyncStatus::Synced
        && revision.is_some()
        && status.sync.applied_revision == revision;
    let phase = status.operation.as_ref().map(|operation| operation.phase);
    let operation_message = status
        .operation
        .as_ref()
        .and_then(|operation| operation.message.clone())
        .unwrap_or_default();
    let health_message = status.health.message.clone().unwrap_or_default();
    let condition = match phase {
        Some(OperationPhase::Failed) => {
            let coded: Vec<String> = status
                .jobs
                .iter()
                .filter_map(|job| {
                    let error = job.last_error.as_ref()?;
                    let code = error.code.as_ref()?;
                    Some(format!("{}: {code}: {}", job.name, error.message))
                })
                .collect();
            if coded.is_empty() {
                UpstreamCondition::Unknown(operation_message)
            } else {
                UpstreamCondition::Failed(coded.join("; "))
            }
        }
        Some(OperationPhase::Error) => UpstreamCondition::Unknown(operation_message),
        _ => match status.health.status {
            HealthStatus::Healthy => UpstreamCondition::Healthy,
            HealthStatus::Progressing => UpstreamCondition::Progressing,
            HealthStatus::Degraded => UpstreamCondition::Degraded(health_message),
            // The target's health message already names the health ("Suspended: clicks").
            other if health_message.is_empty() => {
                UpstreamCondition::Unknown(other.as_str().to_string())
            }
            _ => UpstreamCondition::Unknown(health_message),
        },
    };
    UpstreamSample {
        revision,
        converged,
        condition,
        time: status.observed_at.unwrap_or_else(Utc::now),
    }
}
