//! The loop end to end in-process: an in-memory source and a fake service behind the
//! reconciler interface, the real HTTP server on a loopback port. (`tests/daemon/` runs the
//! real binary against the emulator.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, oneshot};

use super::*;
use crate::cloud::RequestMetrics;
use crate::desired::snapshot::{RepoFile, RepoSnapshot};
use crate::model::{DesiredFlinkJob, DesiredJobs, FlinkJobStatus, ObservedJobs};
use crate::plan::test_support::{desired_sql, live_of, managed_view};
use crate::plan::{self, PlanPolicy};
use crate::server::test_support::TestClient;

// ---- an in-memory source -------------------------------------------------------------

#[derive(Default)]
struct MemorySource {
    files: Mutex<BTreeMap<String, String>>,
    polls: AtomicUsize,
}

impl MemorySource {
    fn set(&self, path: &str, content: &str) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), content.to_string());
    }
}

impl SnapshotSource for MemorySource {
    fn poll(&self, last_revision: Option<&str>) -> Result<Option<RepoSnapshot>, SourceFailure> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let files = self.files.lock().unwrap().clone();
        let revision = format!("rev-{:016x}", digest(&files));
        if last_revision == Some(revision.as_str()) {
            return Ok(None);
        }
        Ok(Some(RepoSnapshot {
            revision,
            files: files
                .into_iter()
                .map(|(path, content)| (path, RepoFile::Data(content.into_bytes())))
                .collect(),
        }))
    }

    fn next_poll_in(&self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }

    fn watch(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, SourceFailure> {
        Ok(None)
    }

    fn kind(&self) -> &'static str {
        "dir"
    }

    fn location(&self) -> String {
        "memory".to_string()
    }

    fn webhook_match(&self) -> Option<(String, String)> {
        None
    }
}

fn digest(files: &BTreeMap<String, String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}

/// `flink/<name>` files hold `cu=<n>`; a file called `broken` fails validation.
fn resolver() -> Resolver {
    Arc::new(|snapshot: &RepoSnapshot, _environment: &str| {
        let mut desired = DesiredJobs::default();
        let mut errors = Vec::new();
        for (path, file) in &snapshot.files {
            let RepoFile::Data(bytes) = file else {
                continue;
            };
            let text = String::from_utf8_lossy(bytes);
            if path == "broken" {
                errors.push(format!("broken:1:1: {text}"));
                continue;
            }
            let Some(name) = path.strip_prefix("flink/") else {
                continue;
            };
            let cu = text.trim().strip_prefix("cu=").and_then(|n| n.parse().ok());
            match cu {
                Some(cu) => desired.flink.push(desired_job(name, cu)),
                None => errors.push(format!("{path}:1:1: expected cu=<number>")),
            }
        }
        if errors.is_empty() {
            Ok(desired)
        } else {
            Err(errors)
        }
    })
}

/// The shared SQL job at `cu` compute units, its digest naming both.
fn desired_job(name: &str, cu: i32) -> DesiredFlinkJob {
    let mut job = desired_sql(name);
    job.config.cu_number = cu;
    job.digest = format!("{name}-{cu}");
    job
}

// ---- a fake service behind the reconciler interface ---------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct PassRecord {
    revision: Option<String>,
    execute: bool,
}

#[derive(Default)]
struct FakeTarget {
    live: Mutex<ObservedJobs>,
    passes: Mutex<Vec<PassRecord>>,
    applied: Mutex<Option<String>>,
    /// When set, each pass waits for a permit (or for shutdown) before it acts.
    gate: Option<Arc<Semaphore>>,
    waiting: AtomicUsize,
}

impl FakeTarget {
    fn gated() -> (Arc<FakeTarget>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (
            Arc::new(FakeTarget {
                gate: Some(gate.clone()),
                ..FakeTarget::default()
            }),
            gate,
        )
    }

    fn passes(&self) -> Vec<PassRecord> {
        self.passes.lock().unwrap().clone()
    }

    fn plan(&self, desired: &DesiredJobs) -> crate::plan::Plan {
        let live = self.live.lock().unwrap().clone();
        let names: Vec<&str> = live.flink.iter().map(|job| job.name.as_str()).collect();
        plan::plan(
            desired,
            &live,
            &managed_view(&names),
            &PlanPolicy::default(),
        )
    }
}

impl TargetReconciler for FakeTarget {
    fn pass<'a>(
        &'a self,
        request: PassRequest<'a>,
    ) -> BoxFuture<'a, Result<PassReport, PassError>> {
        Box::pin(async move {
            self.passes.lock().unwrap().push(PassRecord {
                revision: request.revision.map(str::to_string),
                execute: request.execute,
            });
            if let Some(gate) = &self.gate {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    permit = gate.acquire() => permit.expect("gate open").forget(),
                    _ = request.stop.wait() => {
                        self.waiting.fetch_sub(1, Ordering::SeqCst);
                        return Ok(PassReport {
                            observed: self.live.lock().unwrap().clone(),
                            interrupted: true,
                            ..PassReport::default()
                        });
                    }
                }
                self.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            let Some(desired) = request.desired else {
                return Ok(PassReport {
                    observed: self.live.lock().unwrap().clone(),
                    ..PassReport::default()
                });
            };
            let plan = self.plan(desired);
            let mut outcomes = Vec::new();
            if request.execute {
                (request.on_applying)();
                let mut live = self.live.lock().unwrap();
                for action in plan.changes() {
                    outcomes.push(ActionOutcome {
                        kind: action.kind,
                        name: action.name.clone(),
                        class: action.class,
                        error: None,
                    });
                }
                live.flink = desired
                    .flink
                    .iter()
                    .enumerate()
                    .map(|(index, job)| live_of(job, index as i64 + 1, FlinkJobStatus::Running))
                    .collect();
            }
            let remaining = self.plan(desired);
            Ok(PassReport {
                observed: self.live.lock().unwrap().clone(),
                plan: Some(plan),
                remaining: Some(remaining),
                executed: request.execute,
                outcomes,
                interrupted: false,
                resolved: Vec::new(),
                held: Vec::new(),
                watching: 0,
            })
        })
    }

    fn applied_revision(&self) -> Option<String> {
        self.applied.lock().unwrap().clone()
    }

    fn record_applied<'a>(
        &'a self,
        revision: &'a str,
        _plan_id: Option<&'a str>,
        _summary: &'a str,
    ) -> BoxFuture<'a, Result<(), PassError>> {
        *self.applied.lock().unwrap() = Some(revision.to_string());
        Box::pin(std::future::ready(Ok(())))
    }

    fn request_metrics(&self) -> Option<RequestMetrics> {
        None
    }
}

// ---- harness ------------------------------------------------------------------------------

struct Running {
    client: TestClient,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl Running {
    async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        self.client.get_json(path).await
    }

    async fn post(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        self.client.post(path, token).await
    }

    /// The status of `target` once its sync status is `Synced`.
    async fn synced(&self, target: &str) -> serde_json::Value {
        let what = format!("{target} to sync");
        eventually_json(self, &format!("/api/v1/targets/{target}"), &what, |body| {
            body["sync"]["status"] == "Synced"
        })
        .await
    }

    /// The status of `target` once its first report is in (it is ready).
    async fn first_report(&self, target: &str) -> serde_json::Value {
        eventually_json(
            self,
            &format!("/api/v1/targets/{target}"),
            "the first report",
            |body| body["ready"] == true,
        )
        .await
    }

    async fn stop(mut self) -> Result<(), DaemonError> {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the daemon stopped in time")
            .expect("the daemon task did not panic")
    }
}

fn policy(auto_sync: bool, self_heal: bool) -> TargetPolicy {
    TargetPolicy {
        auto_sync,
        self_heal,
        prune: false,
        resync_interval: Duration::from_secs(3600),
        sync_timeout: Duration::from_secs(60),
        promote_from: None,
    }
}

fn target(name: &str, reconciler: Arc<FakeTarget>, policy: TargetPolicy) -> TargetParts {
    TargetParts {
        spec: TargetSpec {
            name: name.into(),
            source: "jobs".into(),
            environment: name.into(),
            policy,
        },
        reconciler,
    }
}

async fn start(
    source: Arc<MemorySource>,
    targets: Vec<TargetParts>,
    api_token: Option<&str>,
    suspended: bool,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let parts = DaemonParts {
        targets,
        sources: vec![SourceParts {
            name: "jobs".into(),
            source,
            webhook_secret: None,
        }],
        resolver: resolver(),
        suspended,
        api_token: api_token.map(|token| token.as_bytes().to_vec()),
        metrics: Arc::new(DaemonMetrics::new()),
        progress_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
        promotion: None,
        controls: None,
    };
    let (shutdown, shutdown_receiver) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(parts, listener, async move {
        let _ = shutdown_receiver.await;
    }));
    Running {
        client: TestClient::new(address),
        shutdown: Some(shutdown),
        task,
    }
}

/// A source holding one job, `flink/clicks` at 2 CU.
fn clicks_source() -> Arc<MemorySource> {
    let source = Arc::new(MemorySource::default());
    source.set("flink/clicks", "cu=2");
    source
}

/// The daemon with one target `name` served by `service`, following `clicks_source()`.
async fn start_one(
    name: &str,
    service: Arc<FakeTarget>,
    policy: TargetPolicy,
    api_token: Option<&str>,
    suspended: bool,
) -> (Arc<MemorySource>, Running) {
    let source = clicks_source();
    let targets = vec![target(name, service, policy)];
    let running = start(source.clone(), targets, api_token, suspended).await;
    (source, running)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn eventually_json(
    running: &Running,
    path: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = running.get_json(path).await;
        if check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test]
async fn a_new_revision_is_applied_reported_synced_and_ready() {
    let service = Arc::new(FakeTarget::default());
    let (source, running) =
        start_one("dev", service.clone(), policy(true, false), None, false).await;

    let status = eventually_json(&running, "/api/v1/targets/dev", "dev to sync", |body| {
        body["sync"]["status"] == "Synced" && body["ready"] == true
    })
    .await;
    assert_eq!(status["health"]["status"], "Healthy");
    assert_eq!(status["jobs"][0]["name"], "clicks");
    assert_eq!(status["jobs"][0]["sync_status"], "Synced");
    assert_eq!(
        status["sync"]["applied_revision"],
        status["sync"]["revision"]
    );
    assert!(
        service.passes()[0].execute,
        "the first pass applies a new revision"
    );

    let (code, ready) = running.get_json("/readyz").await;
    assert_eq!(
        (code, ready["ready"].clone()),
        (200, serde_json::json!(true))
    );
    let (code, list) = running.get_json("/api/v1/targets").await;
    assert_eq!(code, 200);
    assert_eq!(list["targets"][0]["name"], "dev");
    assert_eq!(list["sources"][0]["name"], "jobs");
    let (code, _) = running.get_json("/api/v1/targets/nope").await;
    assert_eq!(code, 404);

    // An edit converges too.
    source.set("flink/clicks", "cu=4");
    eventually("the edit to be applied", || {
        service
            .live
            .lock()
            .unwrap()
            .flink
            .first()
            .map(|job| job.config.cu_number)
            == Some(4)
    })
    .await;
    let metrics = running.client.get_text("/metrics").await;
    assert!(metrics.contains("dli_gitops_sync_total{target=\"dev\",result=\"succeeded\"}"));
    assert!(metrics.contains("dli_gitops_git_fetches_total{source=\"jobs\",result=\"succeeded\"}"));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_invalid_revision_is_refused_and_the_previous_one_stays() {
    let service = Arc::new(FakeTarget::default());
    let (source, running) =
        start_one("dev", service.clone(), policy(true, true), None, false).await;
    let first = running.synced("dev").await;
    let good_revision = first["sync"]["revision"].clone();

    source.set("flink/clicks", "cu=8");
    source.set("broken", "unknown field `cu_nmber`");
    let status = eventually_json(&running, "/api/v1/targets/dev", "the rejection", |body| {
        body["rejected_revision"].is_object()
    })
    .await;
    assert_eq!(status["sync"]["revision"], good_revision);
    assert_eq!(
        status["rejected_revision"]["errors"][0],
        "broken:1:1: unknown field `cu_nmber`"
    );
    assert_eq!(
        service.live.lock().unwrap().flink[0].config.cu_number,
        2,
        "the invalid revision's change was applied"
    );
    let page = running.client.get_text("/").await;
    assert!(page.contains("does not validate"));
    assert!(page.contains("unknown field `cu_nmber`"));

    // Fixing it applies the fixed revision.
    source.files.lock().unwrap().remove("broken");
    eventually("the fixed revision to be applied", || {
        service.live.lock().unwrap().flink[0].config.cu_number == 8
    })
    .await;
    eventually_json(
        &running,
        "/api/v1/targets/dev",
        "the rejection to clear",
        |body| body.get("rejected_revision").is_none(),
    )
    .await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn auto_sync_off_reports_only_and_a_manual_sync_needs_the_token() {
    let service = Arc::new(FakeTarget::default());
    let (_source, running) = start_one(
        "dev",
        service.clone(),
        policy(false, false),
        Some("t0ken"),
        false,
    )
    .await;
    let status = running.first_report("dev").await;
    assert_eq!(status["sync"]["status"], "OutOfSync");
    assert_eq!(status["jobs"][0]["health"]["status"], "Missing");
    assert_eq!(status["jobs"][0]["action"], "create");
    assert_eq!(status["operation"]["mode"], "report");
    assert!(service.live.lock().unwrap().flink.is_empty());
    assert!(service.passes().iter().all(|pass| !pass.execute));

    let (code, body) = running.post("/api/v1/targets/dev/sync", None).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = running
        .post("/api/v1/targets/dev/sync", Some("wrong"))
        .await;
    assert_eq!(code, 401);
    let (code, _) = running
        .post("/api/v1/targets/nope/sync", Some("t0ken"))
        .await;
    assert_eq!(code, 404);
    let (code, body) = running
        .post("/api/v1/targets/dev/sync", Some("t0ken"))
        .await;
    assert_eq!(code, 202, "{body}");
    eventually_json(&running, "/api/v1/targets/dev", "the manual sync", |body| {
        body["sync"]["status"] == "Synced"
    })
    .await;
    assert!(service.passes().last().unwrap().execute);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_token_mutations_are_forbidden_and_suspend_changes_nothing() {
    let service = Arc::new(FakeTarget::default());
    let (_source, running) =
        start_one("dev", service.clone(), policy(true, true), None, true).await;
    let status = running.first_report("dev").await;
    assert_eq!(status["policy"]["suspended"], true);
    assert_eq!(status["sync"]["status"], "OutOfSync");
    assert!(service.passes().iter().all(|pass| !pass.execute));
    let (code, body) = running.post("/api/v1/targets/dev/sync", Some("x")).await;
    assert_eq!(code, 403);
    assert!(body["error"].as_str().unwrap().contains("api_token_env"));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn drift_is_reported_without_self_heal_and_corrected_with_it() {
    for self_heal in [false, true] {
        let service = Arc::new(FakeTarget::default());
        let mut policy = policy(true, self_heal);
        policy.resync_interval = Duration::from_millis(100);
        let (_source, running) = start_one("dev", service.clone(), policy, None, false).await;
        running.synced("dev").await;
        // Someone changes the job by hand.
        service.live.lock().unwrap().flink[0].config.cu_number = 16;
        if self_heal {
            eventually("self-heal to correct the drift", || {
                service.live.lock().unwrap().flink[0].config.cu_number == 2
            })
            .await;
        } else {
            let status =
                eventually_json(&running, "/api/v1/targets/dev", "drift to show", |body| {
                    body["sync"]["status"] == "OutOfSync"
                })
                .await;
            assert_eq!(status["jobs"][0]["action"], "upgrade");
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                service.live.lock().unwrap().flink[0].config.cu_number,
                16,
                "drift was corrected with self_heal off"
            );
        }
        running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn triggers_during_a_pass_coalesce_and_targets_run_concurrently() {
    let source = clicks_source();
    let (blocked, gate) = FakeTarget::gated();
    let free = Arc::new(FakeTarget::default());
    let running = start(
        source.clone(),
        vec![
            target("blocked", blocked.clone(), policy(true, false)),
            target("free", free.clone(), policy(true, false)),
        ],
        Some("t"),
        false,
    )
    .await;
    eventually("the blocked target's first pass to start", || {
        blocked.waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    // The other target is not held up by it.
    running.synced("free").await;
    // One fetch served both targets' first pass.
    assert_eq!(blocked.passes().len(), 1);
    for _ in 0..5 {
        let (code, _) = running
            .post("/api/v1/targets/blocked/sync", Some("t"))
            .await;
        assert_eq!(code, 202);
    }
    source.set("flink/clicks", "cu=3");
    eventually("the source to see the edit", || {
        running_source_revision_count(&free) >= 2
    })
    .await;
    gate.add_permits(10);
    eventually("the coalesced pass", || blocked.passes().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let passes = blocked.passes();
    assert_eq!(
        passes.len(),
        2,
        "five syncs and a revision became one pass: {passes:?}"
    );
    assert!(passes[1].execute);
    running.stop().await.unwrap();
}

fn running_source_revision_count(target: &FakeTarget) -> usize {
    let mut revisions: Vec<Option<String>> = target
        .passes()
        .into_iter()
        .map(|pass| pass.revision)
        .collect();
    revisions.dedup();
    revisions.len()
}

#[tokio::test]
async fn shutdown_stops_a_pass_in_flight_and_exits_cleanly() {
    let (blocked, _gate) = FakeTarget::gated();
    let (_source, running) =
        start_one("dev", blocked.clone(), policy(true, false), None, false).await;
    eventually("the pass to start", || {
        blocked.waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    running.stop().await.expect("a clean shutdown");
    assert_eq!(blocked.waiting.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_target_naming_an_unknown_source_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut parts = target("dev", Arc::new(FakeTarget::default()), policy(true, false));
    parts.spec.source = "missing".into();
    let result = serve(
        DaemonParts {
            targets: vec![parts],
            sources: vec![],
            resolver: resolver(),
            suspended: false,
            api_token: None,
            metrics: Arc::new(DaemonMetrics::new()),
            progress_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
            promotion: None,
            controls: None,
        },
        listener,
        std::future::pending(),
    )
    .await;
    assert!(matches!(result, Err(DaemonError::UnknownSource { .. })));
}

#[tokio::test]
async fn a_target_promoted_from_another_is_held_without_a_promotion_pipeline() {
    let service = Arc::new(FakeTarget::default());
    let mut held = policy(true, true);
    held.promote_from = Some("dev".into());
    let (_source, running) = start_one("prod", service.clone(), held, Some("t"), false).await;
    let status = running.first_report("prod").await;
    assert_eq!(status["sync"]["status"], "OutOfSync");
    assert_eq!(status["policy"]["promote_from"], "dev");
    assert!(
        status["operation"]["message"]
            .as_str()
            .unwrap()
            .contains("this daemon runs no promotion pipeline")
    );
    let (code, body) = running.post("/api/v1/targets/prod/sync", Some("t")).await;
    assert_eq!(code, 409, "{body}");
    assert!(service.passes().iter().all(|pass| !pass.execute));
    assert!(service.live.lock().unwrap().flink.is_empty());
    running.stop().await.unwrap();
}
