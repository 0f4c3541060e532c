//! Status fixtures the unit tests share: the status module's own tests, its metrics tests and the
//! server's tests (which serve a status board).

use crate::model::JobKind;
use crate::status::{HealthInfo, HealthStatus, JobStatus, PolicyView, SyncStatus, TargetStatus};

/// Auto-sync on, self-heal and prune off, a five-minute resync, not suspended, not promoted.
pub(crate) fn policy_view() -> PolicyView {
    PolicyView {
        auto_sync: true,
        self_heal: false,
        prune: false,
        resync_interval_seconds: 300,
        suspended: false,
        promote_from: None,
    }
}

/// Target `dev` following source `jobs` in environment `dev`, under `policy_view()`.
pub(crate) fn dev_target() -> TargetStatus {
    TargetStatus::new("dev", "jobs", "dev", policy_view())
}

/// A synced Flink SQL job `name` in `health` (no message), with nothing else known about it.
pub(crate) fn synced_job(name: &str, health: HealthStatus) -> JobStatus {
    let health = HealthInfo {
        status: health,
        message: None,
    };
    JobStatus::bare(JobKind::FlinkSql, name, SyncStatus::Synced, health)
}
