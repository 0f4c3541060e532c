//! The commands a person runs, as child processes: `apply` dev, `promote` prod (refused for a
//! revision that is not in the source or does not validate for prod, nothing journaled), then
//! `apply` prod, which must apply the plan it showed although carrying dev's state journals
//! records of its own (a restore started without state).

use std::path::Path;
use std::process::Output;

use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
use dli_gitops::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::Value;

use super::pipeline_end_to_end::commit;

const DEV_ENV: &str =
    "variables: {flink_queue: dev_flink}\noverrides:\n  idle: {desired_state: stopped}\n";
const PROD_ENV: &str =
    "variables: {flink_queue: prod_flink}\noverrides:\n  clicks: {cu_number: 4}\n";
const CLICKS: &str = "kind: FlinkSqlJob\nname: clicks\nqueue_name: ${flink_queue}\nsql_body: \"SELECT 1\"\ncu_number: 2\ndesired_state: running\nupgrade_mode: savepoint\n";
const IDLE: &str = "kind: FlinkSqlJob\nname: idle\nqueue_name: ${flink_queue}\nsql_body: \"SELECT 2\"\ncu_number: 2\ndesired_state: running\n";

async fn run(config: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Two accounts (dev and prod emulators, prod started from `prod_config`), a repository
/// with `clicks` and `idle` (returned with its first commit) and a config where prod is
/// promoted from dev by hand and restores from dev's state.
async fn two_clouds(
    dir: &Path,
    prod_config: EmulatorConfig,
) -> (
    EmulatorHandle,
    EmulatorHandle,
    std::path::PathBuf,
    String,
    std::path::PathBuf,
) {
    let dev_cloud = Emulator::start(EmulatorConfig::for_tests(dir.join("dev-cloud")))
        .await
        .unwrap();
    let prod_cloud = Emulator::start(prod_config).await.unwrap();
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let c1 = commit(
        &repo,
        &[
            ("environments/dev.yaml", DEV_ENV),
            ("environments/prod.yaml", PROD_ENV),
            ("flink/clicks.yaml", CLICKS),
            ("flink/idle.yaml", IDLE),
        ],
        "clicks and idle",
    );
    std::fs::write(dir.join("ak"), DEV_ACCESS_KEY).unwrap();
    std::fs::write(dir.join("sk"), DEV_SECRET_KEY).unwrap();
    let target = |name: &str, cloud: &EmulatorHandle, extra: &str| {
        format!(
            "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n{extra}",
            api = cloud.dli_url(),
            s3 = cloud.s3_url()
        )
    };
    let config = dir.join("dli-gitops.yaml");
    std::fs::write(
            &config,
            format!(
                "state_dir: state\nsources:\n  jobs:\n    git: {{url: \"{repo}\", branch: master}}\ntargets:\n{}{}",
                target("dev", &dev_cloud, ""),
                target(
                    "prod",
                    &prod_cloud,
                    "    promote_from: dev\n    promotion: {auto: false}\n    restore: {from_target: dev, on_missing_savepoint: stateless}\n"
                ),
                repo = repo.display()
            ),
        )
        .unwrap();
    (dev_cloud, prod_cloud, repo, c1, config)
}

async fn promotions(state_dir: &Path) -> Vec<Value> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args([
            "journal",
            "show",
            "--json",
            "--target",
            "prod",
            "--state-dir",
        ])
        .arg(state_dir)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["kind"] == "promotion")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_what_prod_cannot_read_and_the_first_apply_applies_the_plan_shown() {
    let dir = tempfile::tempdir().unwrap();
    let prod_config = EmulatorConfig::for_tests(dir.path().join("prod-cloud"));
    let (dev_cloud, prod_cloud, repo, c1, config) = two_clouds(dir.path(), prod_config).await;
    let state_dir = dir.path().join("state");

    let dev = run(&config, &["apply", "--auto-approve", "--target", "dev"]).await;
    assert!(dev.status.success(), "{}", text(&dev));

    // A commit id the repository does not have: refused, nothing journaled.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let refused = run(&config, &["promote", "prod", "--revision", missing]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("is not in source `jobs`"),
        "{}",
        text(&refused)
    );
    // A commit that does not validate for prod (an override of a job that does not exist):
    // refused with the problem, nothing journaled.
    let broken = commit(
        &repo,
        &[(
            "environments/prod.yaml",
            "variables: {flink_queue: prod_flink}\noverrides:\n  clickz: {cu_number: 4}\n",
        )],
        "prod override of a job that does not exist",
    );
    let refused = run(&config, &["promote", "prod", "--revision", &broken]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not validate for environment `prod`") && stderr.contains("clickz"),
        "{}",
        text(&refused)
    );
    assert!(promotions(&state_dir).await.is_empty());

    // dev's converged revision (C1) is promoted.
    let promoted = run(&config, &["promote", "prod"]).await;
    assert!(promoted.status.success(), "{}", text(&promoted));
    let recorded = promotions(&state_dir).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["revision"], c1.as_str());

    // The first apply after the promotion applies the plan it showed: carrying dev's state
    // (and journaling that `idle`, stopped without a savepoint in dev, starts empty) happens
    // before the plan is shown.
    let applied = run(&config, &["apply", "--auto-approve", "--target", "prod"]).await;
    assert!(applied.status.success(), "{}", text(&applied));
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(
        stdout.contains("2 succeeded, 0 failed"),
        "{}",
        text(&applied)
    );
    let again = run(
        &config,
        &["plan", "--detailed-exitcode", "--target", "prod"],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // prod's clicks started from dev's carried state; idle started empty.
    let prod = super::clients(&prod_cloud);
    let listed = prod
        .dli
        .list_jobs(&dli_gitops::cloud::ListJobsQuery::default())
        .await
        .unwrap();
    let clicks = listed.iter().find(|job| job.name == "clicks").unwrap();
    assert!(clicks.status.is_running(), "{listed:?}");
    let runs: Value = reqwest::get(format!(
        "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{}/runs",
        prod_cloud.dli_url(),
        clicks.id
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        runs["runs"][0]["restored_from"]
            .as_str()
            .unwrap_or_default()
            .starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/"),
        "{runs}"
    );
    let idle = listed.iter().find(|job| job.name == "idle").unwrap();
    assert!(idle.status.is_running(), "{listed:?}");
    dev_cloud.shutdown().await;
    prod_cloud.shutdown().await;
}

/// `apply prod` killed at random moments, again and again, right after a promotion that
/// carries dev's state: the carried savepoint is restored exactly once (a restore applied
/// again after a crash would start a second run from it), both jobs end running, and the
/// journal verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_after_a_promotion_restores_the_carried_savepoint_once() {
    use rand::Rng;
    let (seed, mut rng) = crate::support::crash::crash_seed("promotion crash test");
    let dir = tempfile::tempdir().unwrap();
    let mut slow = EmulatorConfig::for_tests(dir.path().join("prod-cloud"));
    slow.delays.submit_ms = 150;
    slow.delays.cancel_ms = 150;
    slow.delays.savepoint_ms = 150;
    let (dev_cloud, prod_cloud, _, _, config) = two_clouds(dir.path(), slow).await;
    let dev = run(&config, &["apply", "--auto-approve", "--target", "dev"]).await;
    assert!(dev.status.success(), "{}", text(&dev));
    let promoted = run(&config, &["promote", "prod"]).await;
    assert!(promoted.status.success(), "{}", text(&promoted));

    let kills = 12;
    for _ in 0..kills {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
            .args(["apply", "--auto-approve", "--target", "prod", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(rng.gen_range(30..1500))).await;
        let _ = child.kill().await;
    }
    let mut converged = false;
    let mut last = String::new();
    for _ in 0..15 {
        let applied = run(&config, &["apply", "--auto-approve", "--target", "prod"]).await;
        last = text(&applied);
        let plan = run(
            &config,
            &["plan", "--detailed-exitcode", "--target", "prod"],
        )
        .await;
        if plan.status.code() == Some(0) {
            converged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(converged, "seed {seed}: prod did not converge:\n{last}");

    let prod = super::clients(&prod_cloud);
    let listed = prod
        .dli
        .list_jobs(&dli_gitops::cloud::ListJobsQuery::default())
        .await
        .unwrap();
    for name in ["clicks", "idle"] {
        let job = listed.iter().find(|job| job.name == name).unwrap();
        assert!(job.status.is_running(), "seed {seed}: {listed:?}");
    }
    let clicks = listed.iter().find(|job| job.name == "clicks").unwrap();
    let runs: Value = reqwest::get(format!(
        "{}/_emulator/v1/{DEV_PROJECT_ID}/jobs/{}/runs",
        prod_cloud.dli_url(),
        clicks.id
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let carried = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|run| {
            run["restored_from"]
                .as_str()
                .unwrap_or_default()
                .starts_with("obs://dli-gitops-staging/prod/carried-savepoints/dev/clicks/")
        })
        .count();
    assert_eq!(
        carried, 1,
        "seed {seed}: the carried savepoint restored {carried} times: {runs}"
    );
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["journal", "verify", "--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .await
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    eprintln!(
        "promotion crash test: {kills} SIGKILLs of apply prod; runs of clicks: {}",
        runs["runs"].as_array().unwrap().len()
    );
    dev_cloud.shutdown().await;
    prod_cloud.shutdown().await;
}
