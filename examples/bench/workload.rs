//! The benchmark workload: a job repository of N jobs (in memory or on disk), its live twin,
//! and the journal view of a target that already manages it. Shared by `benches/plan_scale.rs`
//! (through `#[path]`) and the `bench` example, so both measure the same jobs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use dli_gitops::desired::snapshot::{RepoFile, RepoSnapshot};
use dli_gitops::model::{DesiredJobs, FlinkJobStatus, ObservedFlinkJob, ObservedJobs, RunState};
use dli_gitops::plan::{JournalFlinkJob, JournalView};

/// The environment every generated repository defines.
pub const ENVIRONMENT: &str = "bench";

/// Job names: `job-00042`, zero-padded so that file order and name order agree.
pub fn job_name(index: usize) -> String {
    format!("job-{index:05}")
}

/// The repository-relative path of job `index`'s YAML file.
pub fn job_file(index: usize) -> String {
    format!("flink/team-{:02}/{}.yaml", index % 17, job_name(index))
}

/// The YAML of job `index`. `revision` is mixed into a hot field (`restart_when_exception`
/// flips with its parity) so that callers can produce a one-job change that needs no restart;
/// `cu_bump` changes a cold field (a restart with a savepoint).
pub fn job_yaml(index: usize, revision: u32, cu_bump: i32) -> String {
    let name = job_name(index);
    let team = index % 17;
    let restart = revision % 2 == 1;
    match index % 4 {
        // SQL in its own file, variables in both files.
        0 | 1 => format!(
            "kind: FlinkSqlJob\nname: {name}\ndesc: Generated job {index}\nqueue_name: ${{flink_queue}}\n\
             sql_file: {name}.sql\nrun_mode: exclusive_cluster\ncu_number: {cu}\nparallel_number: 2\n\
             checkpoint_enabled: true\ncheckpoint_mode: exactly_once\ncheckpoint_interval: 60\n\
             obs_bucket: ${{checkpoint_bucket}}\nlog_enabled: true\nflink_version: \"1.15\"\n\
             restart_when_exception: {restart}\n\
             runtime_config: {{table.exec.state.ttl: 1h, parallelism.default: 2}}\n\
             tags: {{team: team-{team}}}\n",
            cu = 2 + (index % 50) as i32 + cu_bump
        ),
        // Inline SQL, flow style.
        2 => format!(
            "kind: FlinkSqlJob\nname: {name}\nqueue_name: ${{flink_queue}}\ncu_number: {cu}\n\
             restart_when_exception: {restart}\n\
             sql_body: |\n  INSERT INTO sink_{index}\n  SELECT * FROM source_{index};\n",
            cu = 4 + cu_bump
        ),
        // A Jar job.
        _ => format!(
            "kind: FlinkJarJob\nname: {name}\nqueue_name: ${{flink_queue}}\n\
             entrypoint: obs://artifacts/{name}.jar\nmain_class: com.example.Job{index}\n\
             dependency_jars: [obs://artifacts/libs/a.jar, obs://artifacts/libs/b.jar]\ncu_number: {cu}\n\
             manager_cu_number: 2\nrestart_when_exception: {restart}\n",
            cu = 8 + cu_bump
        ),
    }
}

/// The SQL file of job `index`, when it has one.
pub fn job_sql(index: usize) -> Option<(String, String)> {
    if index % 4 > 1 {
        return None;
    }
    let name = job_name(index);
    Some((
        format!("flink/team-{:02}/{name}.sql", index % 17),
        format!(
            "CREATE TABLE src_{index} (id STRING, ts TIMESTAMP(3)) WITH ('connector' = 'kafka', \
             'topic' = 'topic-{index}', 'properties.bootstrap.servers' = '${{kafka_brokers}}', 'format' = 'json');\n\
             CREATE TABLE dst_{index} (id STRING, n BIGINT) WITH ('connector' = 'print');\n\
             INSERT INTO dst_{index} SELECT id, COUNT(*) FROM src_{index} GROUP BY id;\n"
        ),
    ))
}

/// `environments/bench.yaml`, with an override for every tenth job. The checkpoint bucket is
/// one the emulator creates, so stops with a savepoint can write it.
pub fn environment_yaml(jobs: usize) -> String {
    let mut text = String::from(
        "variables: {flink_queue: bench_flink, checkpoint_bucket: dli-gitops-savepoints, kafka_brokers: 'k1:9092,k2:9092'}\n\
         overrides:\n",
    );
    for index in (0..jobs).step_by(10) {
        text.push_str(&format!("  {}: {{parallel_number: 3}}\n", job_name(index)));
    }
    text
}

/// Every file of a repository of `jobs` jobs, path → text.
pub fn repository_files(jobs: usize) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for index in 0..jobs {
        files.insert(job_file(index), job_yaml(index, 0, 0));
        if let Some((path, text)) = job_sql(index) {
            files.insert(path, text);
        }
    }
    files.insert(
        format!("environments/{ENVIRONMENT}.yaml"),
        environment_yaml(jobs),
    );
    files
}

/// The repository as an in-memory snapshot.
pub fn repository_snapshot(jobs: usize) -> RepoSnapshot {
    let mut snapshot = RepoSnapshot::default();
    for (path, text) in repository_files(jobs) {
        snapshot
            .files
            .insert(path, RepoFile::Data(text.into_bytes()));
    }
    snapshot.revision = dli_gitops::desired::content_revision(&snapshot);
    snapshot
}

/// Writes the repository under `root` (which must exist).
pub fn write_repository(root: &Path, jobs: usize) -> std::io::Result<()> {
    for (path, text) in repository_files(jobs) {
        let full = root.join(&path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(full, text)?;
    }
    Ok(())
}

/// Resolves the generated repository; it is valid by construction.
pub fn desired_jobs(jobs: usize) -> DesiredJobs {
    match dli_gitops::desired::resolve(&repository_snapshot(jobs), Some(ENVIRONMENT)) {
        Ok(desired) => desired,
        Err(diagnostics) => panic!("the generated repository does not resolve:\n{diagnostics}"),
    }
}

/// The live twin of `desired`: every job present with the same config, managed, in the state
/// git asks for.
pub fn live_twin(desired: &DesiredJobs) -> ObservedJobs {
    let flink = desired
        .flink
        .iter()
        .enumerate()
        .map(|(index, job)| ObservedFlinkJob {
            id: 100_000 + index as i64,
            name: job.name.clone(),
            status: FlinkJobStatus::new(match job.lifecycle.desired_state {
                RunState::Running => "job_running",
                RunState::Stopped => "job_cancel_success",
            }),
            update_time: 1_711_647_009_620,
            config: job.config.clone(),
            savepoint_path: None,
            status_desc: None,
        })
        .collect();
    ObservedJobs {
        flink,
        dlf: Vec::new(),
    }
}

/// A live twin where every hundredth job drifted: half of those on a cold field (an upgrade with
/// a savepoint), half on a hot field (an update in place).
pub fn live_with_drift(desired: &DesiredJobs) -> ObservedJobs {
    let mut observed = live_twin(desired);
    for (index, job) in observed.flink.iter_mut().enumerate() {
        if index % 100 == 0 {
            if index % 200 == 0 {
                job.config.cu_number += 1;
            } else {
                job.config.restart_when_exception = !job.config.restart_when_exception;
            }
        }
    }
    observed
}

/// The journal of a target that manages every desired job.
pub fn managed_view(desired: &DesiredJobs) -> JournalView {
    let mut view = JournalView::default();
    for job in &desired.flink {
        view.flink.insert(
            job.name.clone(),
            JournalFlinkJob {
                managed: true,
                ..JournalFlinkJob::default()
            },
        );
    }
    view
}
