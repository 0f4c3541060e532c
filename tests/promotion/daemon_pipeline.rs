//! The real daemon (`dli-gitops run`, a child process) over a git repository and two emulated
//! accounts: it promotes dev's healthy revision to prod by itself and stops a failing one.

use std::time::{Duration, Instant};

use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};
use dli_gitops::emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

use super::pipeline_end_to_end::{DEV_ENV, NIGHTLY_JOB, NIGHTLY_YAML, PROD_ENV, clicks, commit};

const TOKEN: &str = "pipeline-e2e-token";
const TOKEN_ENV: &str = "DLI_GITOPS_PIPELINE_E2E_TOKEN";
/// Generous: two CPU cores are shared by many builds while this runs.
const TIMEOUT: Duration = Duration::from_secs(120);

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    log: &std::path::Path,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        // Connection refused until the daemon listens.
        let pipeline = match http.get(format!("{base}/api/v1/pipeline")).send().await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if check(&pipeline) {
            return pipeline;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {pipeline:#}\nlog:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_promotes_a_healthy_revision_and_holds_a_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    let dev_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("dev-cloud")))
        .await
        .unwrap();
    let prod_cloud = Emulator::start(EmulatorConfig::for_tests(dir.path().join("prod-cloud")))
        .await
        .unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let first = clicks("SELECT 1", false);
    let c1 = commit(
        &repo,
        &[
            ("environments/dev.yaml", DEV_ENV),
            ("environments/prod.yaml", PROD_ENV),
            ("dlf/nightly.yaml", NIGHTLY_YAML),
            ("dlf/nightly.job", NIGHTLY_JOB),
            ("flink/clicks.yaml", &first),
        ],
        "clicks and nightly",
    );
    std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
    std::fs::write(dir.path().join("sk"), DEV_SECRET_KEY).unwrap();
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let target = |name: &str, cloud: &dli_gitops::emulator::EmulatorHandle, extra: &str| {
        format!(
            "  - name: {name}\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n    endpoints: {{dli: \"{api}\", dlf: \"{api}\", iam: \"{api}\", obs: \"{s3}\"}}\n    credentials: {{access_key_file: ak, secret_key_file: sk}}\n    staging: obs://dli-gitops-staging/{name}/\n    backups: obs://dli-gitops-backups/{name}/\n    policy: {{resync_interval: 10s}}\n{extra}",
            api = cloud.dli_url(),
            s3 = cloud.s3_url()
        )
    };
    let config_path = dir.path().join("dli-gitops.yaml");
    std::fs::write(
            &config_path,
            format!(
                "state_dir: state\nlisten: {listen}\napi_token_env: {TOKEN_ENV}\nsources:\n  jobs:\n    git: {{url: \"{repo}\", branch: master, poll_interval: 1s}}\ntargets:\n{}{}",
                target("dev", &dev_cloud, ""),
                target(
                    "prod",
                    &prod_cloud,
                    "    promote_from: dev\n    promotion: {auto: true, after: 1s}\n"
                ),
                repo = repo.display()
            ),
        )
        .unwrap();
    let log_path = dir.path().join("daemon.log");
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .env(TOKEN_ENV, TOKEN)
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("daemon.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = dir.path().join("daemon.err");
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");

    // C1: dev converges, stays Healthy for `after`, and the daemon promotes it to prod,
    // which converges on it with its own environment and dev's carried state.
    let pipeline = wait_for(&http, &base, &log, "C1 live in prod", |pipeline| {
        pipeline["targets"][1]["applied_revision"] == c1.as_str()
    })
    .await;
    assert_eq!(pipeline["targets"][0]["applied_revision"], c1.as_str());
    assert_eq!(pipeline["targets"][1]["promoted_revision"], c1.as_str());
    assert_eq!(
        pipeline["targets"][1]["recent_promotions"][0]["by"], "auto",
        "{pipeline:#}"
    );
    let prod = super::clients(&prod_cloud);
    let listed = prod
        .dli
        .list_jobs(&dli_gitops::cloud::ListJobsQuery::default())
        .await
        .unwrap();
    let live = prod
        .dli
        .job_detail(listed.iter().find(|job| job.name == "clicks").unwrap().id)
        .await
        .unwrap();
    assert_eq!(live.config.queue_name.as_deref(), Some("prod_flink"));
    assert_eq!(live.config.cu_number, 4);
    let nightly = prod.dlf.job_detail("nightly").await.unwrap().to_string();
    assert!(
        nightly.contains("prod_dws") && !nightly.contains("dev_dws"),
        "{nightly}"
    );

    // C3 fails in dev: marked, and prod stays on C1.
    let broken = clicks("SELECT 3", true);
    let c3 = commit(&repo, &[("flink/clicks.yaml", &broken)], "broken");
    wait_for(
        &http,
        &base,
        &log,
        "C3 marked failed for prod",
        |pipeline| {
            pipeline["targets"][1]["recent_promotions"]
                .as_array()
                .is_some_and(|entries| {
                    entries.iter().any(|entry| {
                        entry["revision"] == c3.as_str()
                            && entry["ok"] == false
                            && entry["rule"] == "upstream-failed"
                    })
                })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pipeline = get(&http, &format!("{base}/api/v1/pipeline")).await;
    assert_eq!(pipeline["targets"][1]["promoted_revision"], c1.as_str());
    assert_eq!(pipeline["targets"][1]["applied_revision"], c1.as_str());

    // By hand: the failed revision is refused; the API needs the token.
    let refused = http
        .post(format!("{base}/api/v1/targets/prod/promote"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"revision": c3, "by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    // A revision the repository does not have: 404 with the reason, nothing journaled.
    let unknown = http
            .post(format!("{base}/api/v1/targets/prod/promote"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"revision": "0123456789abcdef0123456789abcdef01234567", "by": "alice"}))
            .send()
            .await
            .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| error.contains("is not in source `jobs`")),
        "{body}"
    );
    let anonymous = http
        .post(format!("{base}/api/v1/targets/prod/promote"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // `dli-gitops promote` finds the daemon holding the journal and goes through its API.
    let promoted = tokio::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["promote", "--json", "--by", "alice", "--config"])
        .arg(&config_path)
        .args(["prod", "--revision", &c1])
        .env(TOKEN_ENV, TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    let report: Value = serde_json::from_slice(&promoted.stdout).unwrap();
    assert_eq!(report["via"], "daemon");
    assert_eq!(report["by"], "api:cli:alice");

    let page = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<h2>Pipeline</h2>") && page.contains(&c1[..12]),
        "{page}"
    );
    assert!(page.contains("failed upstream"), "{page}");

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"dli_gitops_promotions_total{target="prod",by="auto",result="promoted"} 1"#,
        r#"dli_gitops_promotions_total{target="prod",by="auto",result="failed_upstream"} 1"#,
        r#"dli_gitops_promotions_total{target="prod",by="manual",result="refused"} 2"#,
        r#"dli_gitops_promotions_total{target="prod",by="manual",result="promoted"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    let stopped = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
        .await
        .expect("the daemon stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    dev_cloud.shutdown().await;
    prod_cloud.shutdown().await;
}
