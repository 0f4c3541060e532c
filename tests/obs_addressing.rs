//! OBS addressing and OBS authorisation against the in-process emulator on loopback.
//!
//! The emulator serves virtual-hosted buckets under `obs.test` and refuses path style the way
//! Huawei OBS's public endpoints do (403 `VirtualHostDomainRequired`). The client reaches
//! `http://{bucket}.obs.test:{port}` through its pinned-hosts DNS override (`obs.test` and
//! `*.obs.test` → 127.0.0.1), so every request below is a real virtual-hosted request over TCP.
//! The target-level tests apply jobs with `authorize_obs: true` and count the emulator's
//! `RegisterBucket` calls.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use dli_gitops::apply::{self, ApplyOptions, TargetContext};
use dli_gitops::cloud::{
    ClientOptions, Credentials, DliClient, ObjectStore, ObsAddressing, ObsOptions, Secret,
};
use dli_gitops::config::Config;
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_DOMAIN_NAME, DEV_PROJECT_ID, DEV_SECRET_KEY, DEV_USER_NAME,
    DEV_USER_PASSWORD, Emulator, EmulatorConfig, EmulatorHandle, EmulatorS3,
};
use serde_json::Value;
use url::Url;

const DOMAIN: &str = "obs.test";

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn dev_keys() -> Credentials {
    Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.into(),
        secret_key: Secret::new(DEV_SECRET_KEY),
        security_token: None,
    }
}

/// An emulator in `dir` whose S3 endpoint serves `{bucket}.obs.test`; `refuse_path_style` as
/// OBS's public endpoints.
async fn start(dir: &std::path::Path, refuse_path_style: bool) -> EmulatorHandle {
    let mut config = EmulatorConfig::for_tests(dir.join("emulator"));
    config.s3 = EmulatorS3 {
        domain: Some(DOMAIN.into()),
        refuse_path_style,
    };
    Emulator::start(config)
        .await
        .expect("the emulator starts on loopback")
}

/// `http://obs.test:{port}`: the emulator's S3 listener under its service domain.
fn domain_endpoint(handle: &EmulatorHandle) -> Url {
    Url::parse(&format!("http://{DOMAIN}:{}", handle.s3_address().port())).unwrap()
}

fn options(endpoint: Url, addressing: ObsAddressing) -> ObsOptions {
    ObsOptions {
        endpoint: Some(endpoint),
        region: "cn-north-4".into(),
        credentials: Some(dev_keys()),
        addressing,
        pinned_hosts: vec![(DOMAIN.into(), loopback())],
    }
}

#[tokio::test]
async fn virtual_hosted_requests_reach_their_bucket_where_path_style_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(dir.path(), true).await;
    // `auto` on a host name is virtual-hosted: PUT http://dli-gitops-staging.obs.test:PORT/dev/...
    let store = ObjectStore::from_url(
        "obs://dli-gitops-staging/dev/",
        &options(domain_endpoint(&handle), ObsAddressing::Auto),
    )
    .unwrap();
    let bundle = Bytes::from(vec![42u8; 200_000]);
    store
        .put("bundles/rev-1.zip", bundle.clone())
        .await
        .expect("a virtual-hosted PUT is accepted");
    store
        .put("bundles/rev-2.zip", Bytes::from_static(b"PK-2"))
        .await
        .unwrap();
    assert_eq!(store.get("bundles/rev-1.zip").await.unwrap(), bundle);
    assert_eq!(
        store.list("bundles").await.unwrap(),
        vec!["bundles/rev-1.zip", "bundles/rev-2.zip"]
    );
    // The bucket came from the host name: the object is in that bucket on disk.
    let on_disk = handle
        .data_dir()
        .join("obs/dli-gitops-staging/dev/bundles/rev-1.zip");
    assert_eq!(std::fs::read(&on_disk).unwrap().len(), 200_000);
    store.delete("bundles/rev-2.zip").await.unwrap();
    assert!(
        store
            .get("bundles/rev-2.zip")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // The same store forced to path style is refused, on the domain and on the IP alike.
    for endpoint in [
        domain_endpoint(&handle),
        Url::parse(&handle.s3_url()).unwrap(),
    ] {
        let path_style = ObjectStore::from_url(
            "obs://dli-gitops-staging/dev/",
            &options(endpoint.clone(), ObsAddressing::Path),
        )
        .unwrap();
        let refused = path_style
            .put("bundles/rev-3.zip", Bytes::from_static(b"PK-3"))
            .await
            .expect_err("a path-style PUT is refused");
        // The message says what to change.
        let text = refused.to_string();
        assert!(
            text.contains("VirtualHostDomainRequired")
                && text.contains("obs_addressing")
                && text.contains("obs://dli-gitops-staging/dev/bundles/rev-3.zip"),
            "{endpoint}: {text}"
        );
    }
    assert!(
        !handle
            .data_dir()
            .join("obs/dli-gitops-staging/dev/bundles/rev-3.zip")
            .exists()
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn the_refusal_has_the_obs_error_shape_and_comes_before_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(dir.path(), true).await;
    let http = reqwest::Client::new();
    // Unsigned, path-style, straight to the listener's IP: OBS's answer, not a signature error.
    let response = http
        .put(format!("{}/dli-gitops-staging/x.zip", handle.s3_url()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .unwrap(),
        "application/xml"
    );
    let body = response.text().await.unwrap();
    assert!(
        body.contains("<Code>VirtualHostDomainRequired</Code>")
            && body.contains("<Message>Virtual hosting access domain name is not used.</Message>")
            && body.contains("<Resource>/dli-gitops-staging</Resource>")
            && body.contains("<RequestId>"),
        "{body}"
    );
    // The service root (ListBuckets) names no bucket and is not refused as path style: it gets
    // as far as authentication.
    let root = http
        .get(format!("{}/", handle.s3_url()))
        .send()
        .await
        .unwrap();
    let root_body = root.text().await.unwrap();
    assert!(
        !root_body.contains("VirtualHostDomainRequired"),
        "{root_body}"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn without_refusal_both_styles_reach_the_same_objects() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(dir.path(), false).await;
    let virtual_hosted = ObjectStore::from_url(
        "obs://dli-gitops-backups/dev/",
        &options(domain_endpoint(&handle), ObsAddressing::VirtualHosted),
    )
    .unwrap();
    // `auto` on 127.0.0.1 is path style (the embedded default's case).
    let path_style = ObjectStore::from_url(
        "obs://dli-gitops-backups/dev/",
        &options(Url::parse(&handle.s3_url()).unwrap(), ObsAddressing::Auto),
    )
    .unwrap();
    virtual_hosted
        .put("a.zip", Bytes::from_static(b"PK-a"))
        .await
        .unwrap();
    assert_eq!(
        path_style.get("a.zip").await.unwrap(),
        Bytes::from_static(b"PK-a")
    );
    path_style
        .put("b.zip", Bytes::from_static(b"PK-b"))
        .await
        .unwrap();
    assert_eq!(
        virtual_hosted.list("").await.unwrap(),
        vec!["a.zip", "b.zip"]
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn obs_authorize_accepts_existing_buckets_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(dir.path(), false).await;
    let dli = DliClient::new(
        Url::parse(&handle.dli_url()).unwrap(),
        DEV_PROJECT_ID,
        dev_keys(),
        ClientOptions {
            requests_per_second: 0.0,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    dli.authorize_obs_buckets(&[
        "dli-gitops-staging".to_string(),
        "dli-gitops-backups".to_string(),
    ])
    .await
    .expect("existing buckets are authorised");
    // Nothing to authorise: no call.
    dli.authorize_obs_buckets(&[]).await.unwrap();
    let missing = dli
        .authorize_obs_buckets(&["no-such-bucket".to_string()])
        .await
        .expect_err("an unknown bucket is refused");
    assert!(missing.to_string().contains("no-such-bucket"), "{missing}");
    let malformed = dli
        .authorize_obs_buckets(&["Bad_Bucket".to_string()])
        .await
        .expect_err("a malformed bucket name is refused");
    assert!(malformed.to_string().contains("Bad_Bucket"), "{malformed}");
    let metrics = dli.request_metrics();
    assert_eq!(metrics.total("dli", "authorize_obs_buckets"), 3);
    handle.shutdown().await;
}

/// The request body is checked the way the SDK model defines it (`RegisterBucketRequestBody`:
/// one required `obs_buckets: list[str]`), with raw requests under an IAM token.
#[tokio::test]
async fn obs_authorize_refuses_bodies_the_sdk_model_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let handle = start(dir.path(), false).await;
    let http = reqwest::Client::new();
    let token_request = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": DEV_USER_NAME, "password": DEV_USER_PASSWORD,
            "domain": {"name": DEV_DOMAIN_NAME}}}},
        "scope": {"project": {"id": DEV_PROJECT_ID}}}});
    let token = http
        .post(format!("{}/v3/auth/tokens", handle.iam_url()))
        .json(&token_request)
        .send()
        .await
        .unwrap()
        .headers()
        .get("X-Subject-Token")
        .expect("a token")
        .to_str()
        .unwrap()
        .to_string();
    let url = format!(
        "{}/v1.0/{DEV_PROJECT_ID}/dli/obs-authorize",
        handle.dli_url()
    );
    let post = |body: Value| {
        http.post(&url)
            .header("X-Auth-Token", &token)
            .json(&body)
            .send()
    };
    let granted = post(serde_json::json!({"obs_buckets": ["dli-gitops-staging"]}))
        .await
        .unwrap();
    assert_eq!(granted.status(), reqwest::StatusCode::OK);
    let granted: Value = granted.json().await.unwrap();
    assert_eq!(granted["is_success"], true);
    assert_eq!(
        granted["message"],
        "The following OBS bucket is authorized successfully, dli-gitops-staging."
    );
    for (body, expected) in [
        (serde_json::json!({}), "obs_buckets"),
        (serde_json::json!({"obs_buckets": []}), "empty"),
        (
            serde_json::json!({"obs_buckets": "dli-gitops-staging"}),
            "expected a sequence",
        ),
        (
            serde_json::json!({"buckets": ["dli-gitops-staging"], "obs_buckets": ["dli-gitops-staging"]}),
            "buckets",
        ),
    ] {
        let refused = post(body.clone()).await.unwrap();
        assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST, "{body}");
        let refused: Value = refused.json().await.unwrap();
        let text = refused.to_string();
        assert!(
            text.contains("DLI.0001") && text.contains(expected),
            "{body}: {text}"
        );
    }
    handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A target with `authorize_obs: true`, its OBS endpoint under the emulator's domain
// ---------------------------------------------------------------------------------------------

struct Target {
    dir: tempfile::TempDir,
    emulator: EmulatorHandle,
    context: TargetContext,
}

impl Target {
    async fn start(jobs: &[(&str, &str)]) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let emulator = start(dir.path(), true).await;
        std::fs::create_dir_all(dir.path().join("repo/environments")).unwrap();
        std::fs::write(
            dir.path().join("repo/environments/dev.yaml"),
            "variables: {}\n",
        )
        .unwrap();
        for (relative, content) in jobs {
            let path = dir.path().join("repo").join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        std::fs::write(dir.path().join("ak"), DEV_ACCESS_KEY).unwrap();
        std::fs::write(dir.path().join("sk"), DEV_SECRET_KEY).unwrap();
        let api = emulator.dli_url();
        let obs = domain_endpoint(&emulator);
        let obs = obs.as_str().trim_end_matches('/');
        let config_text = format!(
            r#"state_dir: state
sources:
  jobs:
    path: repo
targets:
  - name: dev
    source: jobs
    region: cn-north-4
    project_id: {DEV_PROJECT_ID}
    endpoints: {{dli: "{api}", dlf: "{api}", iam: "{api}", obs: "{obs}"}}
    credentials: {{access_key_file: ak, secret_key_file: sk}}
    staging: obs://dli-gitops-staging/dev/
    backups: obs://dli-gitops-backups/dev/
    authorize_obs: true
    rate_limit: {{requests_per_second: 100000, burst: 100000}}
    retry: {{max_attempts: 2, initial_backoff: 10ms, max_backoff: 50ms}}
    timeouts: {{job_transition: 20s, savepoint: 10s, import_task: 20s}}
"#
        );
        let config_path = dir.path().join("dli-gitops.yaml");
        std::fs::write(&config_path, config_text).unwrap();
        let config = Config::load(&config_path).expect("config loads");
        config.validate().expect("config validates");
        let mut context = TargetContext::open(&config, "dev")
            .await
            .expect("target opens");
        context.options.poll_interval = Duration::from_millis(5);
        // `obs.test` exists only for this process: pin it (and the bucket hosts) to loopback.
        assert_eq!(context.live.clients.obs.addressing, ObsAddressing::Auto);
        context.live.clients.obs.pinned_hosts = vec![(DOMAIN.into(), loopback())];
        context.live.staging = Some(
            context
                .live
                .clients
                .object_store("obs://dli-gitops-staging/dev/")
                .unwrap(),
        );
        Target {
            dir,
            emulator,
            context,
        }
    }

    async fn pass(&self, dry_run: bool) -> Result<apply::ApplyReport, apply::ApplyError> {
        let (desired, revision) = dli_gitops::pass::desired_for(&self.context, None)
            .await
            .expect("repository resolves");
        let options = ApplyOptions {
            dry_run,
            revision: Some(revision),
            ..self.context.options.clone()
        };
        apply::reconcile_once(&self.context, &desired, &options).await
    }

    async fn stats(&self) -> BTreeMap<String, u64> {
        let url = format!("{}/_emulator/v1/stats", self.emulator.dli_url());
        let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        serde_json::from_value(body["operations"].clone()).unwrap()
    }

    async fn registered(&self) -> u64 {
        self.stats()
            .await
            .get("RegisterBucket")
            .copied()
            .unwrap_or(0)
    }

    async fn shutdown(self) {
        self.context.shutdown().await;
        self.emulator.shutdown().await;
        drop(self.dir);
    }
}

const SQL_JOB: &str = "kind: FlinkSqlJob\nname: clicks\nsql_body: \"SELECT 1 AS v;\"\nqueue_name: flink\n\
                       obs_bucket: dli-gitops-savepoints\nlog_enabled: true\n";

#[tokio::test]
async fn a_target_authorizes_its_buckets_once_before_the_first_apply() {
    let target = Target::start(&[("flink/clicks.yaml", SQL_JOB)]).await;
    // `plan` neither uses nor authorises buckets.
    let planned = target.pass(true).await.expect("plan runs");
    assert!(!planned.plan.is_empty());
    assert_eq!(target.registered().await, 0);
    let applied = target.pass(false).await.expect("apply runs");
    assert!(
        applied.converged(),
        "{}\n{}",
        applied.plan.render_text(),
        applied.render_text()
    );
    // One call for staging, backups and the job's obs_bucket together.
    assert_eq!(target.registered().await, 1);
    let metrics = target.context.live.clients.dli.request_metrics();
    assert_eq!(metrics.total("dli", "authorize_obs_buckets"), 1);
    // Later passes of the same process do not authorise again.
    target.pass(false).await.expect("second apply runs");
    assert_eq!(target.registered().await, 1);
    target.shutdown().await;
}

#[tokio::test]
async fn a_bucket_dli_cannot_be_granted_stops_the_pass_with_the_reason() {
    let job = "kind: FlinkSqlJob\nname: clicks\nqueue_name: q1\nsql_body: \"SELECT 1 AS v;\"\n\
               obs_bucket: no-such-bucket\nlog_enabled: true\n";
    let target = Target::start(&[("flink/clicks.yaml", job)]).await;
    let error = target
        .pass(false)
        .await
        .expect_err("the pass stops before acting");
    let text = error.to_string();
    assert!(
        text.contains("authorize_obs") && text.contains("no-such-bucket"),
        "{text}"
    );
    let stats = target.stats().await;
    assert_eq!(stats.get("CreateFlinkSqlJob").copied().unwrap_or(0), 0);
    target.shutdown().await;
}

#[tokio::test]
async fn a_dlf_import_stages_its_bundle_virtual_hosted() {
    let target = Target::start(&[
        (
            "dlf/nightly.yaml",
            "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\n",
        ),
        (
            "dlf/nightly.job",
            r#"{"name": "nightly", "processType": "BATCH", "nodes": [{"name": "load", "type": "DWSSQL", "properties": [{"name": "statement", "value": "SELECT 1"}, {"name": "connectionName", "value": "dev_dws"}]}], "schedule": {"type": "EXECUTE_ONCE"}}"#,
        ),
    ])
    .await;
    let applied = target.pass(false).await.expect("apply runs");
    assert!(
        applied.converged(),
        "{}\n{}",
        applied.plan.render_text(),
        applied.render_text()
    );
    let stats = target.stats().await;
    assert_eq!(stats.get("DlfImportJob").copied().unwrap_or(0), 1);
    assert_eq!(target.registered().await, 1);
    target.shutdown().await;
}

#[test]
fn the_embedded_default_keeps_path_style() {
    // The embedded emulator listens on 127.0.0.1, so `auto` must not try `{bucket}.127.0.0.1`.
    let embedded = Url::parse("http://127.0.0.1:8481").unwrap();
    assert!(!ObsAddressing::Auto.virtual_hosted_for(&embedded));
}

/// The daemon grants access to each bucket once per start, however many passes act: the first
/// pass grants staging, backups and the job's bucket; a later commit that brings a job with a new
/// checkpoint bucket grants only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_authorizes_each_bucket_once_per_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut emulator_config = EmulatorConfig::for_tests(dir.path().join("emulator"));
    emulator_config
        .buckets
        .push("dli-gitops-checkpoints".into());
    let emulator = Emulator::start(emulator_config)
        .await
        .expect("the emulator starts");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("environments")).unwrap();
    std::fs::create_dir_all(repo.join("flink")).unwrap();
    std::fs::write(repo.join("environments/dev.yaml"), "variables: {}\n").unwrap();
    std::fs::write(repo.join("flink/clicks.yaml"), SQL_JOB).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = emulator.dli_url();
    let s3 = emulator.s3_url();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: ./state\nlisten: 127.0.0.1:{port}\napi_token_env: OBS_TEST_API_TOKEN\n\
             sources:\n  jobs: {{path: {repo}}}\n\
             targets:\n  - name: dev\n    source: jobs\n    region: cn-north-4\n    project_id: {DEV_PROJECT_ID}\n\
             \x20   endpoints: {{dli: {api}, dlf: {api}, obs: {s3}, iam: {api}}}\n\
             \x20   credentials: {{access_key_env: OBS_TEST_AK, secret_key_env: OBS_TEST_SK}}\n\
             \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
             \x20   authorize_obs: true\n\
             \x20   policy: {{auto_sync: true, self_heal: true}}\n",
            repo = repo.display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("OBS_TEST_AK", DEV_ACCESS_KEY)
        .env("OBS_TEST_SK", DEV_SECRET_KEY)
        .env("OBS_TEST_API_TOKEN", "obs-test-token")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the daemon starts");
    let stats = || async {
        let url = format!("{}/_emulator/v1/stats", emulator.dli_url());
        let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        let counts: BTreeMap<String, u64> =
            serde_json::from_value(body["operations"].clone()).unwrap();
        counts
    };
    let count = |counts: &BTreeMap<String, u64>, operation: &str| {
        counts.get(operation).copied().unwrap_or(0)
    };
    // Waits until `runs` jobs were started; the counts then, or why not.
    let mut wait_for_runs = async |runs: u64| -> Result<BTreeMap<String, u64>, String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let counts = stats().await;
            if count(&counts, "BatchRunFlinkJobs") >= runs {
                return Ok(counts);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("timed out: {counts:?}"));
            }
            if let Some(status) = daemon.try_wait().unwrap() {
                return Err(format!("the daemon exited: {status}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let first = wait_for_runs(1).await;
    let second = match &first {
        Ok(_) => {
            std::fs::write(
                repo.join("flink/views.yaml"),
                SQL_JOB
                    .replace("name: clicks", "name: views")
                    .replace("dli-gitops-savepoints", "dli-gitops-checkpoints"),
            )
            .unwrap();
            wait_for_runs(2).await
        }
        Err(why) => Err(why.clone()),
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let first = first.unwrap_or_else(|why| panic!("the first job never ran: {why}\n{log}"));
    assert_eq!(count(&first, "RegisterBucket"), 1, "{first:?}\n{log}");
    let second = second.unwrap_or_else(|why| panic!("the second job never ran: {why}\n{log}"));
    assert!(
        count(&second, "ListFlinkJobs") > count(&first, "ListFlinkJobs"),
        "{second:?}"
    );
    assert_eq!(count(&second, "RegisterBucket"), 2, "{second:?}\n{log}");
    let grants: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("Granted DLI access to OBS buckets"))
        .collect();
    assert_eq!(grants.len(), 2, "{log}");
    assert!(
        grants[0].contains("dli-gitops-staging")
            && grants[0].contains("dli-gitops-backups")
            && grants[0].contains("dli-gitops-savepoints"),
        "{log}"
    );
    assert!(
        grants[1].contains("dli-gitops-checkpoints") && !grants[1].contains("dli-gitops-staging"),
        "{log}"
    );
    emulator.shutdown().await;
}
