//! Job definitions the process tests commit.

/// The Flink SQL job `clicks` on `dev_flink` with `cu_number` CUs, checkpointing, upgraded
/// through a savepoint.
pub fn clicks_savepoint_job(cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: clicks\nqueue_name: dev_flink\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\ncu_number: {cu_number}\nparallel_number: 1\n\
         obs_bucket: dli-gitops-savepoints\ncheckpoint_enabled: true\n\
         desired_state: running\nupgrade_mode: savepoint\n"
    )
}
