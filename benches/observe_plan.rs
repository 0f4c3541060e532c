//! One steady-state pass (observe + plan, nothing to apply) over a target of many jobs on the
//! in-process emulator: wall time and the calls it makes. The cold pass reads every job's
//! detail once; later passes are served from the journal's cache and cost one list call per 100
//! jobs. Run with `cargo bench --profile dev --bench observe_plan` (`-- --jobs N` to resize).

use std::time::{Duration, Instant};

use dli_gitops::apply::{self, ApplyOptions, LiveService, TargetContext};
use dli_gitops::config::Config;
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig,
};
use dli_gitops::model::{
    DesiredFlinkJob, DesiredJobs, FlinkJobConfig, JobKind, Lifecycle, RunState, SourceLocation,
};

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let jobs: usize = arguments
        .windows(2)
        .find(|pair| pair[0] == "--jobs")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(jobs));
}

async fn run(jobs: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let emulator = Emulator::start(EmulatorConfig::for_tests(dir.path().join("emulator")))
        .await
        .expect("the emulator starts");
    std::fs::create_dir_all(dir.path().join("repo/environments")).unwrap();
    std::fs::write(
        dir.path().join("repo/environments/dev.yaml"),
        "variables: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
    std::fs::write(dir.path().join("sk"), DEV_SECRET_KEY).unwrap();
    let config_path = dir.path().join("dli-gitops.yaml");
    std::fs::write(
        &config_path,
        format!(
            "state_dir: state\nsources: {{jobs: {{path: repo}}}}\ntargets:\n  - name: dev\n    source: jobs\n    environment: dev\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n    rate_limit: {{requests_per_second: 100000, burst: 100000}}\n",
            api = emulator.dli_url(),
            s3 = emulator.s3_url()
        ),
    )
    .unwrap();
    let config = Config::load(&config_path).expect("the config loads");
    let context = TargetContext::open(&config, "dev")
        .await
        .expect("the target opens");

    let mut desired = DesiredJobs::default();
    for number in 0..jobs {
        let name = format!("job-{number:05}");
        let mut job_config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        job_config.sql_body = Some(format!("SELECT {number}"));
        job_config
            .tags
            .insert("managed-by".to_string(), "dli-gitops".to_string());
        context
            .live
            .create_flink_job(&name, &job_config)
            .await
            .expect("create");
        job_config.tags.clear();
        // Live drafts, desired stopped: in sync, so every pass plans no change.
        job_config.tm_slot_num = None;
        desired.flink.push(DesiredFlinkJob {
            name,
            config: job_config,
            lifecycle: Lifecycle {
                desired_state: RunState::Stopped,
                ..Lifecycle::default()
            },
            source: SourceLocation::default(),
            digest: format!("digest-{number}"),
            policy: Default::default(),
        });
    }
    let options = ApplyOptions {
        dry_run: true,
        ..context.options.clone()
    };
    println!("observe + plan, {jobs} live jobs, nothing to change");
    println!(
        "{:>6}  {:>10}  {:>10}  {:>12}  {:>7}",
        "pass", "list calls", "details", "wall time", "changes"
    );
    let mut steady = Vec::new();
    for pass in 0..6 {
        let started = Instant::now();
        let report = apply::reconcile_once(&context, &desired, &options)
            .await
            .expect("a pass");
        let elapsed = started.elapsed();
        println!(
            "{:>6}  {:>10}  {:>10}  {:>12?}  {:>7}",
            if pass == 0 {
                "cold".to_string()
            } else {
                pass.to_string()
            },
            report.observe.flink_list_calls,
            report.observe.flink_detail_calls,
            elapsed,
            report.plan.changes().count()
        );
        if pass > 0 {
            steady.push(elapsed);
        }
    }
    steady.sort();
    let median: Duration = steady[steady.len() / 2];
    println!("steady-state median: {median:?}");
    context.shutdown().await;
    emulator.shutdown().await;
}
