//! Job builders the unit tests share: a desired Flink SQL job, its live twin, and a journal view
//! that manages named jobs. The planner's tests use them, and so do the layers above it (status,
//! daemon), so one fixture serves every test that plans.

use crate::model::{
    DesiredFlinkJob, FlinkJobConfig, FlinkJobStatus, JobKind, Lifecycle, MANAGED_TAG_KEY,
    MANAGED_TAG_VALUE, ObservedFlinkJob, SourceLocation,
};
use crate::plan::{JournalFlinkJob, JournalView};

/// A Flink SQL job on `flink_queue` with the default lifecycle (running, savepoint upgrades,
/// prunable), declared in `flink/<name>.yaml`.
pub(crate) fn desired_sql(name: &str) -> DesiredFlinkJob {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("flink_queue".into());
    config.sql_body = Some("INSERT INTO sink\nSELECT * FROM source;\n".into());
    DesiredFlinkJob {
        name: name.into(),
        config,
        lifecycle: Lifecycle::default(),
        source: SourceLocation {
            file: format!("flink/{name}.yaml"),
            line: 1,
        },
        digest: format!("digest-{name}"),
        policy: Default::default(),
    }
}

/// The live twin of a desired job: same config, managed tag on, in `status`.
pub(crate) fn live_of(
    desired: &DesiredFlinkJob,
    id: i64,
    status: impl Into<FlinkJobStatus>,
) -> ObservedFlinkJob {
    let mut config = desired.config.clone();
    config
        .tags
        .insert(MANAGED_TAG_KEY.into(), MANAGED_TAG_VALUE.into());
    ObservedFlinkJob {
        id,
        name: desired.name.clone(),
        status: status.into(),
        update_time: 1_711_647_009_620,
        config,
        savepoint_path: None,
        status_desc: None,
    }
}

/// A journal that manages exactly the jobs `names`.
pub(crate) fn managed_view(names: &[&str]) -> JournalView {
    let mut view = JournalView::default();
    for name in names {
        view.flink.insert(
            name.to_string(),
            JournalFlinkJob {
                managed: true,
                ..JournalFlinkJob::default()
            },
        );
    }
    view
}
