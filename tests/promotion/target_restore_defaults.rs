//! The target-level `restore: {from_target, on_missing_savepoint}` defaults.

use dli_gitops::apply::{self, ApplyOptions, TargetContext};
use dli_gitops::config::Config;
use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
use dli_gitops::emulator::{Emulator, EmulatorConfig};
use dli_gitops::journal::{Journal, JournalOptions};
use dli_gitops::pass::carry_for_target;
use dli_gitops::promotion::RestoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_nothing_upstream_fails_or_starts_stateless_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let dev_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("dev-cloud")))
        .await
        .unwrap();
    let prod_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("prod-cloud")))
        .await
        .unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir_all(jobs.join("flink")).unwrap();
    std::fs::create_dir_all(jobs.join("environments")).unwrap();
    for environment in ["dev", "prod"] {
        std::fs::write(
            jobs.join(format!("environments/{environment}.yaml")),
            "variables: {}
",
        )
        .unwrap();
    }
    std::fs::write(
        jobs.join("flink/fresh.yaml"),
        "kind: FlinkSqlJob\nname: fresh\nqueue_name: q1\nsql_body: \"SELECT 1\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
    std::fs::write(dir.path().join("sk"), DEV_SECRET_KEY).unwrap();
    let write_config = |missing: &str| {
        let target = |name: &str, cloud: &dli_gitops::emulator::EmulatorHandle, extra: &str| {
            format!(
                "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n{extra}",
                api = cloud.dli_url(),
                s3 = cloud.s3_url()
            )
        };
        let path = dir.path().join(format!("config-{missing}.yaml"));
        std::fs::write(
            &path,
            format!(
                "state_dir: state-{missing}\nsources:\n  jobs: {{path: jobs}}\ntargets:\n{}{}",
                target("dev", &dev_cloud, ""),
                target(
                    "prod",
                    &prod_cloud,
                    &format!(
                        "    restore: {{from_target: dev, on_missing_savepoint: {missing}}}\n"
                    )
                ),
            ),
        )
        .unwrap();
        Config::load(&path).unwrap()
    };

    // The default (`fail`): nothing to carry is an error that names the job and the fix.
    let config = write_config("fail");
    let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
    let prod = TargetContext::with_shared(&config, "prod", journal.clone(), None)
        .await
        .unwrap();
    let (desired, _) = dli_gitops::pass::desired_for(&prod, None).await.unwrap();
    assert!(
        desired.flink[0]
            .lifecycle
            .restore
            .as_ref()
            .is_some_and(|restore| restore.from_target.as_deref() == Some("dev")),
        "the target's default applies to a job without a restore of its own"
    );
    let error = carry_for_target(&config, &journal, &prod, &desired)
        .await
        .unwrap_err();
    assert!(matches!(error, RestoreError::Carry { .. }), "{error}");
    assert!(
        dli_gitops::promotion::error_text(&error).contains("the job is not live there"),
        "{error}"
    );
    prod.shutdown().await;
    drop(journal);

    // `stateless`: the job starts empty, and the restore counts as done.
    let config = write_config("stateless");
    let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
    let mut prod = TargetContext::with_shared(&config, "prod", journal.clone(), None)
        .await
        .unwrap();
    prod.options.poll_interval = std::time::Duration::from_millis(5);
    let (desired, _) = dli_gitops::pass::desired_for(&prod, None).await.unwrap();
    let carried = carry_for_target(&config, &journal, &prod, &desired)
        .await
        .unwrap();
    assert!(carried.is_empty());
    let report = apply::reconcile_once(
        &prod,
        &desired,
        &ApplyOptions {
            carried_savepoints: carried,
            ..prod.options.clone()
        },
    )
    .await
    .unwrap();
    assert!(report.converged(), "{}", report.render_text());
    let again = apply::reconcile_once(
        &prod,
        &desired,
        &ApplyOptions {
            dry_run: true,
            ..prod.options.clone()
        },
    )
    .await
    .unwrap();
    assert!(again.plan.is_empty(), "{}", again.plan.render_text());
    prod.shutdown().await;
    dev_cloud.shutdown().await;
    prod_cloud.shutdown().await;
}
