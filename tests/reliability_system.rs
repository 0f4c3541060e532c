//! System-level reliability and security tests: TLS verification in the cloud client, secrets
//! kept out of every output of a real run, bearer tokens on mutating endpoints, project
//! isolation in the emulator, convergence under injected service faults, and crash consistency
//! under SIGKILL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dli_gitops::cloud::{
    ClientOptions, CloudError, Credentials, DliClient, ListJobsQuery, RetryPolicy, Secret,
    TransportFailure,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

// ---------------------------------------------------------------------------------------------
// TLS verification is on by default

/// A self-signed certificate for `localhost` and 127.0.0.1, valid until 2126. Test-only: it
/// is trusted by nothing, which is the point.
const SELF_SIGNED_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUY8AUmV6lA6rSn9BivauxGfs/h0cwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMjIzMzAzM1oYDzIxMjYxMDI5
MjMzMDMzWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATlwdvoMZuXMtW0YVbdBx8w8L3CYUZXAWD9LQLmMW/TrTvVse/ZwCly
x1hfYlqY1PimWmdd87kRMNznDf+LSazBo28wbTAdBgNVHQ4EFgQUAtwbhoTNEfnE
qUPfvy6L+lRlbhEwHwYDVR0jBBgwFoAUAtwbhoTNEfnEqUPfvy6L+lRlbhEwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDRwAwRAIgKMn2S5bK6008IrwD4tpyWSbYozvVuiZWMg+OqgRGCAUCIAan
3FK5U33vMlEnp2m5+cQ4nzR1LCJl8sNNPfI5/b0J
-----END CERTIFICATE-----
";
const SELF_SIGNED_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNl8eyc7huuJBtlk5
ulig9yGsa/tR31g7nkMjYX1qazihRANCAATlwdvoMZuXMtW0YVbdBx8w8L3CYUZX
AWD9LQLmMW/TrTvVse/ZwClyx1hfYlqY1PimWmdd87kRMNznDf+LSazB
-----END PRIVATE KEY-----
";

const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const ACCESS_KEY: &str = "SYSTEMTESTACCESSKEY1";
const SECRET_KEY: &str = "system-test-secret-key-0123456789abcdef";

/// An HTTPS server on loopback with the self-signed certificate. It counts the HTTP requests
/// that got through the handshake and answers each with an empty job list.
struct TlsServer {
    url: Url,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_tls_server() -> TlsServer {
    let certificate = CertificateDer::from_pem_slice(SELF_SIGNED_CERT.as_bytes()).expect("cert");
    let key = PrivateKeyDer::from_pem_slice(SELF_SIGNED_KEY.as_bytes()).expect("key");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buffer = vec![0u8; 16 * 1024];
                let mut received = Vec::new();
                while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => received.extend_from_slice(&buffer[..read]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = br#"{"is_success": true, "job_list": {"total_count": 0, "jobs": []}}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer {
        url: Url::parse(&format!("https://localhost:{port}/")).expect("url"),
        requests,
        task,
    }
}

fn tls_client(url: &Url, options: ClientOptions) -> DliClient {
    let credentials = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new(SECRET_KEY),
        security_token: None,
    };
    DliClient::new(url.clone(), PROJECT, credentials, options).expect("client")
}

fn quick_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 2,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        },
        requests_per_second: 0.0,
        ..ClientOptions::default()
    }
}

/// With default options the client refuses a server whose certificate no trusted authority
/// signed: no request (and so no signature) reaches it. Only the explicit, logged opt-out
/// connects, which shows the server itself works.
#[tokio::test]
async fn cloud_client_verifies_tls_certificates_by_default() {
    assert!(!ClientOptions::default().danger_accept_invalid_certs);
    let server = start_tls_server().await;

    let verifying = tls_client(&server.url, quick_options());
    let error = verifying
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect_err("a self-signed certificate must be refused");
    assert!(
        matches!(
            error,
            CloudError::Transport {
                failure: TransportFailure::Connect,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error_chain(&error).to_lowercase().contains("certificate"),
        "the error should say the certificate was the problem: {}",
        error_chain(&error)
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "no request may pass an unverified handshake"
    );

    let trusting = tls_client(
        &server.url,
        ClientOptions {
            danger_accept_invalid_certs: true,
            ..quick_options()
        },
    );
    let jobs = trusting
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect("the opt-out reaches the same server");
    assert!(jobs.is_empty());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

// ---------------------------------------------------------------------------------------------
// The emulator keeps projects apart

use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, EmulatorCredential,
    EmulatorHandle,
};
use dli_gitops::model::{FlinkJobConfig, JobKind};

const OTHER_ACCESS_KEY: &str = "RELIABILITYOTHERKEY1";
const OTHER_SECRET_KEY: &str = "reliability-other-account-secret-key";
const OTHER_PROJECT_ID: &str = "11111111111111111111111111111111";

fn emulator_client(
    handle: &EmulatorHandle,
    access_key: &str,
    secret_key: &str,
    project_id: &str,
) -> DliClient {
    let credentials = Credentials::AkSk {
        access_key: access_key.into(),
        secret_key: Secret::new(secret_key),
        security_token: None,
    };
    DliClient::new(
        Url::parse(&handle.dli_url()).expect("emulator url"),
        project_id,
        credentials,
        quick_options(),
    )
    .expect("client")
}

fn sql_config(body: &str) -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("q1".into());
    config.sql_body = Some(body.into());
    config
}

/// Two accounts in one emulator, through the real cloud client: every read and write the
/// other account aims at a job of this one, by id, is refused; a key used with the other
/// account's project is refused; and this account's job is exactly as it was.
#[tokio::test]
async fn emulator_refuses_every_cross_project_read_and_write() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut config = EmulatorConfig::for_tests(temp.path().join("data"));
    config.credentials.push(EmulatorCredential {
        access_key: OTHER_ACCESS_KEY.into(),
        secret_key: OTHER_SECRET_KEY.into(),
        project_id: OTHER_PROJECT_ID.into(),
    });
    let handle = Emulator::start(config).await.expect("emulator starts");
    let owner = emulator_client(&handle, DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_PROJECT_ID);
    let intruder = emulator_client(
        &handle,
        OTHER_ACCESS_KEY,
        OTHER_SECRET_KEY,
        OTHER_PROJECT_ID,
    );
    let job_id = owner
        .create_sql_job("private-job", &sql_config("SELECT 'owner';"))
        .await
        .expect("create");
    owner.run_jobs(&[job_id], false).await.expect("run");
    let before = owner.job_detail(job_id).await.expect("detail");

    let mut failures = Vec::new();
    let mut refused = |operation: &str, result: Result<(), CloudError>| {
        failures.extend(cross_project_failure(operation, result))
    };
    refused("job_detail", intruder.job_detail(job_id).await.map(|_| ()));
    refused("job_tags", intruder.job_tags(job_id).await.map(|_| ()));
    refused(
        "update_sql_job",
        intruder
            .update_sql_job(job_id, &sql_config("SELECT 'intruder';"))
            .await,
    );
    refused("stop_jobs", intruder.stop_jobs(&[job_id], false).await);
    refused("run_jobs", intruder.run_jobs(&[job_id], false).await);
    refused("delete_jobs", intruder.delete_jobs(&[job_id]).await);
    refused(
        "export_jobs",
        intruder
            .export_jobs("dli-gitops-backups/stolen/", Some(&[job_id]))
            .await
            .map(|_| ()),
    );
    refused(
        "trigger_savepoint",
        intruder
            .trigger_savepoint(job_id, "dli-gitops-savepoints/stolen/")
            .await,
    );
    refused(
        "import_savepoint",
        intruder
            .import_savepoint(job_id, "obs://dli-gitops-savepoints/stolen/")
            .await,
    );
    let listed = intruder
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect("the other account lists its own project");
    // A valid key for account B, signing requests to account A's project.
    let wrong_project =
        emulator_client(&handle, OTHER_ACCESS_KEY, OTHER_SECRET_KEY, DEV_PROJECT_ID);
    refused(
        "list_jobs with another project's id",
        wrong_project
            .list_jobs(&ListJobsQuery::default())
            .await
            .map(|_| ()),
    );
    refused(
        "job_detail with another project's id",
        wrong_project.job_detail(job_id).await.map(|_| ()),
    );

    if !listed.is_empty() {
        failures.push(format!("the other project lists {listed:?}"));
    }
    let after = owner.job_detail(job_id).await.expect("detail");
    if after != before {
        failures.push(format!(
            "the job changed:\nbefore {before:?}\nafter  {after:?}"
        ));
    }
    handle.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn cross_project_failure(operation: &str, result: Result<(), CloudError>) -> Option<String> {
    match result {
        Ok(()) => Some(format!("{operation}: allowed across projects")),
        Err(error) if error.is_retryable() => {
            Some(format!("{operation}: refused as retryable: {error}"))
        }
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Whole-system harness: the real binary as the emulator (its own process) and as the daemon,
// a real git repository, blocking HTTP over loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_dli-gitops");

/// A child process, killed on drop so a failed assertion leaks nothing.
struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn spawn(mut command: Command, log: PathBuf) -> Process {
        let child = command
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn dli-gitops");
        Process {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// SIGKILL: no handler runs, nothing is flushed.
    fn kill_hard(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "no exit within 60 s of SIGTERM; log:\n{}",
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The emulator as its own process, so it outlives every daemon the tests kill.
struct EmulatorProcess {
    process: Process,
    endpoints: Value,
}

impl EmulatorProcess {
    fn start(dir: &Path, config_yaml: &str) -> EmulatorProcess {
        EmulatorProcess::start_on(dir, config_yaml, 0, 0)
    }

    /// Starts on fixed ports (0: any), so a restarted emulator keeps its endpoints.
    fn start_on(dir: &Path, config_yaml: &str, api_port: u16, s3_port: u16) -> EmulatorProcess {
        let config = dir.join("emulator.yaml");
        std::fs::write(&config, config_yaml).expect("emulator config");
        let mut command = Command::new(BINARY);
        command
            .args([
                "emulator",
                "--listen",
                &format!("127.0.0.1:{api_port}"),
                "--s3-listen",
                &format!("127.0.0.1:{s3_port}"),
            ])
            .arg("--data")
            .arg(dir.join("emulator-data"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped());
        let mut process = Process::spawn(command, dir.join("emulator.log"));
        let stdout = process
            .child
            .as_mut()
            .and_then(|child| child.stdout.take())
            .expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the emulator prints its endpoints");
        let endpoints: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("endpoints line {line:?}; log:\n{}", process.log()));
        EmulatorProcess { process, endpoints }
    }

    fn port(&self, service: &str) -> u16 {
        Url::parse(&self.url(service))
            .ok()
            .and_then(|url| url.port())
            .expect("a port")
    }

    /// SIGTERM: the emulator persists its state and exits.
    fn stop(self) {
        assert!(
            self.process.terminate().success(),
            "the emulator did not exit cleanly"
        );
    }

    fn url(&self, service: &str) -> String {
        self.endpoints[service]
            .as_str()
            .unwrap_or_else(|| panic!("no {service} in {}", self.endpoints))
            .to_string()
    }

    fn client(&self, access_key: &str, secret_key: &str, project_id: &str) -> DliClient {
        DliClient::new(
            Url::parse(&self.url("dli")).expect("url"),
            project_id,
            Credentials::AkSk {
                access_key: access_key.into(),
                secret_key: Secret::new(secret_key),
                security_token: None,
            },
            // The checks read through whatever faults the test injected: enough attempts that a
            // run of injected 500s never fails a check (0.35^15 per call at the fault mix).
            ClientOptions {
                requests_per_second: 0.0,
                retry: RetryPolicy {
                    max_attempts: 15,
                    base_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(200),
                    ..ClientOptions::default().retry
                },
                ..ClientOptions::default()
            },
        )
        .expect("client")
    }

    fn stats_total(&self) -> u64 {
        let (code, body) = http(
            "GET",
            &format!("{}/_emulator/v1/stats", self.url("dli")),
            &[],
            "",
        )
        .expect("stats");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("stats json")["total"]
            .as_u64()
            .expect("total")
    }

    fn runs(&self, project_id: &str, job_id: i64) -> Value {
        let (code, body) = http(
            "GET",
            &format!(
                "{}/_emulator/v1/{project_id}/jobs/{job_id}/runs",
                self.url("dli")
            ),
            &[],
            "",
        )
        .expect("runs");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("runs json")
    }
}

/// One blocking HTTP/1.1 request over a fresh connection.
fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(u16, String), String> {
    http_bytes(method, url, headers, body.as_bytes())
}

fn http_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (413) and close before reading a large body.
    let _ = stream.write_all(&bytes);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    out
}

struct JobsRepo {
    path: PathBuf,
    repository: git2::Repository,
}

impl JobsRepo {
    fn init(path: &Path) -> JobsRepo {
        let mut options = git2::RepositoryInitOptions::new();
        options.initial_head("main");
        JobsRepo {
            path: path.to_path_buf(),
            repository: git2::Repository::init_opts(path, &options).expect("init repo"),
        }
    }

    /// Replaces the whole tree with `files` and commits it on main.
    fn commit_tree(&self, message: &str, files: &[(String, String)]) -> String {
        for entry in std::fs::read_dir(&self.path).expect("read repo") {
            let entry = entry.expect("entry");
            if entry.file_name() != ".git" {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).expect("clear dir");
                } else {
                    std::fs::remove_file(&path).expect("clear file");
                }
            }
        }
        for (path, content) in files {
            let full = self.path.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, content).expect("write");
        }
        let mut index = self.repository.index().expect("index");
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.update_all(["*"].iter(), None).expect("update");
        index.write().expect("write index");
        let tree = self
            .repository
            .find_tree(index.write_tree().expect("tree"))
            .expect("find tree");
        let signature =
            git2::Signature::now("reliability", "reliability@example.com").expect("sig");
        let parent = self
            .repository
            .head()
            .ok()
            .and_then(|head| head.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repository
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .expect("commit")
            .to_string()
    }
}

fn job_yaml(name: &str, cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: {name}\ndesc: reliability job\nqueue_name: ${{flink_queue}}\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\nrun_mode: exclusive_cluster\n\
         cu_number: {cu_number}\nparallel_number: 1\ncheckpoint_enabled: true\n\
         checkpoint_interval: 60\ndesired_state: running\nupgrade_mode: savepoint\n"
    )
}

const ENVIRONMENT_YAML: &str = "variables: {flink_queue: dev_flink}\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// The daemon config for one target `dev` against `emulator`, reading `repo` over git.
struct DaemonSetup {
    dir: PathBuf,
    port: u16,
    config: PathBuf,
    env: Vec<(String, String)>,
}

struct DaemonOptions<'a> {
    project_id: &'a str,
    prune: bool,
    poll_interval: &'a str,
    extra_source: &'a str,
}

impl DaemonSetup {
    fn new(
        dir: &Path,
        repo: &JobsRepo,
        emulator: &EmulatorProcess,
        options: &DaemonOptions<'_>,
        env: Vec<(String, String)>,
    ) -> DaemonSetup {
        let port = free_port();
        let config = dir.join("config.yaml");
        let text = format!(
            "state_dir: ./state\n\
             listen: 127.0.0.1:{port}\n\
             api_token_env: REL_API_TOKEN\n\
             sources:\n  jobs:\n    git: {{url: {repo}, branch: main, poll_interval: {poll}, poll_jitter: 0{extra}}}\n    webhook_secret_env: REL_WEBHOOK_SECRET\n\
             targets:\n  - name: dev\n    source: jobs\n    environment: dev\n    region: cn-north-4\n    project_id: {project}\n\
             \x20   endpoints: {{dli: {dli}, dlf: {dlf}, obs: {obs}, iam: {iam}}}\n\
             \x20   credentials: {{access_key_env: REL_AK, secret_key_env: REL_SK}}\n\
             \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
             \x20   policy: {{auto_sync: true, self_heal: true, prune: {prune}, resync_interval: 10s}}\n\
             \x20   timeouts: {{job_transition: 60s, savepoint: 60s, request: 20s}}\n",
            repo = repo.path.display(),
            poll = options.poll_interval,
            extra = options.extra_source,
            project = options.project_id,
            prune = options.prune,
            dli = emulator.url("dli"),
            dlf = emulator.url("dlf"),
            obs = emulator.url("s3"),
            iam = emulator.url("iam"),
        );
        std::fs::write(&config, text).expect("write config");
        DaemonSetup {
            dir: dir.to_path_buf(),
            port,
            config,
            env,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn spawn(&self, tag: &str) -> Process {
        let command = self.command(&[
            "--log-format",
            "json",
            "run",
            "--config",
            self.config.to_str().expect("utf-8"),
        ]);
        Process::spawn(command, self.dir.join(format!("daemon-{tag}.log")))
    }

    fn target(&self) -> Option<Value> {
        let (code, body) = http(
            "GET",
            &format!("{}/api/v1/targets/dev", self.base()),
            &[],
            "",
        )
        .ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Waits until the target status satisfies `check`; returns it and the statuses seen.
    fn wait_for(
        &self,
        process: &mut Process,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            if let Some(status) = self.target() {
                if check(&status) {
                    return (status, seen);
                }
                seen.push(status);
            }
            if let Some(exit) = process.exited() {
                panic!(
                    "the daemon exited ({exit}) waiting for {what}; log:\n{}",
                    tail(&process.log(), 60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last status: {:#}\nlog:\n{}",
                seen.last().cloned().unwrap_or(Value::Null),
                tail(&process.log(), 60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn synced_at(status: &Value, revision: &str) -> bool {
    status["sync"]["status"] == "Synced"
        && status["sync"]["applied_revision"] == revision
        && status["health"]["status"] == "Healthy"
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the fault and crash tests

/// What git says, for `check_live_equals_git`.
struct Desired {
    jobs: Vec<(String, u32)>,
}

/// Live jobs equal git: the same names, each exactly once, running, with git's `cu_number`;
/// and every run of each job after its first restored from the savepoint its previous run was
/// stopped with (no savepoint lost). Returns every violation.
fn live_violations(
    emulator: &EmulatorProcess,
    access_key: &str,
    secret_key: &str,
    project_id: &str,
    desired: &Desired,
) -> Vec<String> {
    let client = emulator.client(access_key, secret_key, project_id);
    let listed = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list live jobs");
    let mut problems = Vec::new();
    let mut live_names: Vec<String> = listed.iter().map(|job| job.name.clone()).collect();
    live_names.sort();
    let mut deduplicated = live_names.clone();
    deduplicated.dedup();
    if deduplicated.len() != live_names.len() {
        problems.push(format!("duplicate live jobs: {live_names:?}"));
    }
    let mut wanted: Vec<String> = desired.jobs.iter().map(|(name, _)| name.clone()).collect();
    wanted.sort();
    if deduplicated != wanted {
        problems.push(format!("live jobs {deduplicated:?} but git has {wanted:?}"));
    }
    for (name, cu_number) in &desired.jobs {
        let Some(listed_job) = listed.iter().find(|job| &job.name == name) else {
            continue;
        };
        let detail = block_on(client.job_detail(listed_job.id)).expect("detail");
        if detail.status.as_str() != "job_running" {
            problems.push(format!(
                "{name} is {:?}, git wants it running",
                detail.status
            ));
        }
        if detail.config.cu_number != *cu_number as i32 {
            problems.push(format!(
                "{name} has cu_number {}, git says {cu_number}",
                detail.config.cu_number
            ));
        }
        let runs = emulator.runs(project_id, listed_job.id);
        let runs = runs["runs"].as_array().cloned().unwrap_or_default();
        problems.extend(savepoint_chain_breaks(name, &runs));
    }
    problems
}

/// Where a job's runs (the emulator's run records, oldest first) break the state chain: a run
/// stopped without a savepoint, or a run that did not resume from the stop savepoint of the
/// run before it. Compared by the `savepoint_id` inside `_metadata`, so a run that resumed
/// from a verified copy of the stop savepoint (the service deletes its own at the restart)
/// keeps the chain.
fn savepoint_chain_breaks(name: &str, runs: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for pair in runs.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        let stop_savepoint = previous["stop_savepoint"].as_str();
        let same_state = match (
            previous["stop_savepoint_id"].as_str(),
            next["restored_savepoint_id"].as_str(),
        ) {
            (Some(stopped), Some(restored)) => stopped == restored,
            _ => next["restored_from"].as_str() == stop_savepoint,
        };
        if stop_savepoint.is_none() {
            problems.push(format!(
                "{name}: run {} was stopped without a savepoint: {previous}",
                previous["run_number"]
            ));
        } else if !same_state {
            problems.push(format!(
                "{name}: run {} restored from {} instead of the stop savepoint {:?} of run {}",
                next["run_number"], next["restored_from"], stop_savepoint, previous["run_number"]
            ));
        }
    }
    problems
}

/// Ends a crash test: with failures, keeps its directory (the journal, the emulator's state and
/// every log) and fails naming the seed that replays it.
fn fail_keeping_evidence(temp: tempfile::TempDir, seed: u64, failures: &[String]) {
    if !failures.is_empty() {
        let kept = temp.keep();
        panic!(
            "seed {seed} (state kept in {}):\n{}",
            kept.display(),
            failures.join("\n")
        );
    }
}

/// What the journal holds: intents, outcomes, and outcomes written by recovery for intents a
/// killed process left open.
#[derive(Debug, Default)]
struct JournalCounts {
    intents: usize,
    outcomes: usize,
    interrupted: usize,
}

fn journal_counts(setup: &DaemonSetup) -> JournalCounts {
    let records = dli_gitops::journal::read_records(
        &setup.dir.join("state"),
        &dli_gitops::journal::RecordFilter::default(),
    )
    .expect("read the journal");
    let mut counts = JournalCounts::default();
    for record in &records {
        match &record.body {
            dli_gitops::journal::RecordBody::Intent(_) => counts.intents += 1,
            dli_gitops::journal::RecordBody::Outcome(outcome) => {
                counts.outcomes += 1;
                if outcome
                    .error
                    .as_ref()
                    .is_some_and(|error| error.code.as_deref() == Some("INTERRUPTED"))
                {
                    counts.interrupted += 1;
                }
            }
            _ => {}
        }
    }
    counts
}

/// `journal verify` passes and every intent in the journal has an outcome.
fn journal_violations(setup: &DaemonSetup) -> Vec<String> {
    let state_dir = setup.dir.join("state");
    let output = setup
        .command(&[
            "journal",
            "verify",
            "--state-dir",
            state_dir.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("journal verify runs");
    let mut problems = Vec::new();
    if !output.status.success() {
        problems.push(format!(
            "journal verify failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let records = dli_gitops::journal::read_records(
        &state_dir,
        &dli_gitops::journal::RecordFilter::default(),
    )
    .expect("read the journal");
    let mut open_intents = std::collections::BTreeMap::new();
    for record in &records {
        match &record.body {
            dli_gitops::journal::RecordBody::Intent(intent) => {
                open_intents.insert(
                    intent.action_id.clone(),
                    (record.seq, intent.job.clone(), intent.action.clone()),
                );
            }
            dli_gitops::journal::RecordBody::Outcome(outcome) => {
                open_intents.remove(&outcome.action_id);
            }
            _ => {}
        }
    }
    for (action_id, (seq, job, action)) in open_intents {
        problems.push(format!(
            "intent {action_id} (seq {seq}, {action} {job}) has no outcome"
        ));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Secrets, bearer tokens and hostile webhooks against a running daemon

const LEAK_ACCESS_KEY: &str = "RELLEAKACCESSKEY0001";
const LEAK_SECRET_KEY: &str = "sk-LEAK-3f9a1c7e5b2d4086";
const LEAK_API_TOKEN: &str = "tok-LEAK-8c2e4a6f1b3d5079";
const LEAK_WEBHOOK_SECRET: &str = "wh-LEAK-5d7f9b1c3e2a4068";
const LEAK_GIT_TOKEN: &str = "git-LEAK-1a3c5e7b9d2f4608";
const LEAK_WRONG_SECRET_KEY: &str = "sk-WRONG-LEAK-77aa55cc";
const LEAK_PROJECT_ID: &str = "2a2b2c2d2e2f30313233343536373839";

fn leak_emulator_yaml(faults: &str) -> String {
    format!(
        "delays: {{submit_ms: 50, cancel_ms: 50, savepoint_ms: 50, dlf_task_ms: 50}}\n\
         credentials:\n  - {{access_key: {LEAK_ACCESS_KEY}, secret_key: {LEAK_SECRET_KEY}, project_id: {LEAK_PROJECT_ID}}}\n\
         auth: {{lockout_failures: 0}}\n{faults}"
    )
}

fn leak_env(secret_key: &str) -> Vec<(String, String)> {
    vec![
        ("REL_AK".into(), LEAK_ACCESS_KEY.into()),
        ("REL_SK".into(), secret_key.into()),
        ("REL_API_TOKEN".into(), LEAK_API_TOKEN.into()),
        ("REL_WEBHOOK_SECRET".into(), LEAK_WEBHOOK_SECRET.into()),
        ("REL_GIT_TOKEN".into(), LEAK_GIT_TOKEN.into()),
    ]
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Every place a secret could end up, by name, with its contents.
struct Evidence {
    places: Vec<(String, Vec<u8>)>,
}

impl Evidence {
    fn add(&mut self, place: impl Into<String>, contents: impl AsRef<[u8]>) {
        self.places.push((place.into(), contents.as_ref().to_vec()));
    }

    fn add_tree(&mut self, root: &Path) {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                self.add_tree(&path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.add(path.display().to_string(), bytes);
            }
        }
    }

    fn leaks(&self, secrets: &[(&str, &str)]) -> Vec<String> {
        let mut found = Vec::new();
        for (place, contents) in &self.places {
            for (name, secret) in secrets {
                if contents
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes())
                {
                    found.push(format!("{name} found in {place}"));
                }
            }
        }
        found
    }
}

/// A full run with known secret values: the daemon converges two commits, takes a webhook
/// corpus (malformed payloads, bad and missing signatures, oversize bodies, a wrong GitLab
/// token) and a set of bad bearer tokens; a second target's git source, with a token, fails
/// to fetch; the CLI fails once with a wrong secret key. Afterwards no secret appears in the
/// daemon's stderr, the CLI output, any HTTP answer (status JSON, page, metrics, errors) or any
/// file of the state directory (journal, snapshot, mirrors).
#[test]
fn secrets_never_leak_and_mutating_endpoints_need_the_token() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(""));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |cu: u32| {
        vec![
            ("flink/clicks.yaml".to_string(), job_yaml("clicks", cu)),
            ("flink/views.yaml".to_string(), job_yaml("views", 2)),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ]
    };
    let first = repo.commit_tree("two jobs", &tree(2));
    let setup = DaemonSetup::new(
        dir,
        &repo,
        &emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: false,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    );
    // A second source over https with a token, pointing at a closed port: it fails to fetch,
    // and its error must not carry the token.
    let closed = free_port();
    let mut config = std::fs::read_to_string(&setup.config).expect("config");
    config = config.replace(
        "targets:\n",
        &format!(
            "  remote:\n    git: {{url: \"https://127.0.0.1:{closed}/data/jobs.git\", branch: main, poll_interval: 1s, token_env: REL_GIT_TOKEN}}\ntargets:\n"
        ),
    );
    let probe_target = config
        .split_once("targets:\n")
        .expect("targets")
        .1
        .replace("name: dev", "name: probe")
        .replace("source: jobs", "source: remote")
        .replace(
            "staging: obs://dli-gitops-staging/dev/",
            "staging: obs://dli-gitops-staging/probe/",
        )
        .replace(
            "backups: obs://dli-gitops-backups/dev/",
            "backups: obs://dli-gitops-backups/probe/",
        );
    config.push_str(&probe_target);
    std::fs::write(&setup.config, &config).expect("config with probe");

    let mut evidence = Evidence { places: Vec::new() };
    let mut failures = Vec::new();
    let mut daemon = setup.spawn("secrets");
    setup.wait_for(
        &mut daemon,
        "the first commit to converge",
        Duration::from_secs(120),
        |status| synced_at(status, &first),
    );
    let base = setup.base();

    // Webhooks: each answer is a 4xx (never a 5xx, never a 2xx for a bad request).
    let hook = format!("{base}/api/v1/hooks/git");
    let push = serde_json::json!({
        "ref": "refs/heads/main",
        "after": first,
        "repository": {"clone_url": repo.path.display().to_string()},
    })
    .to_string()
    .into_bytes();
    let signed = |body: &[u8]| {
        vec![
            ("X-GitHub-Event", "push".to_string()),
            (
                "X-Hub-Signature-256",
                github_signature(LEAK_WEBHOOK_SECRET, body),
            ),
            ("Content-Type", "application/json".to_string()),
        ]
    };
    let oversize = vec![b' '; 6 * 1024 * 1024];
    let webhook_cases: Vec<WebhookCase<'_>> = vec![
        ("no provider header", vec![], push.clone(), &[400, 401]),
        (
            "unsigned",
            vec![("X-GitHub-Event", "push".into())],
            push.clone(),
            &[401],
        ),
        (
            "wrong signature",
            vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature-256",
                    github_signature("not-the-secret", &push),
                ),
            ],
            push.clone(),
            &[401],
        ),
        (
            "signature not hex",
            vec![
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", "sha256=zzzz".into()),
            ],
            push.clone(),
            &[400, 401],
        ),
        (
            "sha1 signature only",
            vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature",
                    "sha1=0000000000000000000000000000000000000000".into(),
                ),
            ],
            push.clone(),
            &[400, 401],
        ),
        (
            "signed garbage",
            signed(b"\xff\xfe{{{"),
            b"\xff\xfe{{{".to_vec(),
            &[400],
        ),
        (
            "signed JSON without a ref",
            signed(br#"{"repository": {"clone_url": "x"}}"#),
            br#"{"repository": {"clone_url": "x"}}"#.to_vec(),
            &[400],
        ),
        (
            "signed JSON nested 100000 deep",
            signed(&nested(100_000)),
            nested(100_000),
            &[400],
        ),
        (
            "oversize body",
            signed(&oversize),
            oversize.clone(),
            &[400, 413],
        ),
        (
            "wrong GitLab token",
            vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", "wrong".into()),
            ],
            push.clone(),
            &[401],
        ),
        (
            "GitLab token, garbage payload",
            vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", LEAK_WEBHOOK_SECRET.into()),
            ],
            b"[1,2".to_vec(),
            &[400],
        ),
    ];
    for (name, headers, body, expected) in &webhook_cases {
        match http_bytes("POST", &hook, headers, body) {
            Ok((code, answer)) => {
                evidence.add(format!("webhook answer ({name})"), &answer);
                if !expected.contains(&code) {
                    failures.push(format!(
                        "webhook {name}: HTTP {code}, expected one of {expected:?}: {answer}"
                    ));
                }
            }
            Err(error) => failures.push(format!("webhook {name}: {error}")),
        }
    }
    let (code, answer) = http_bytes("POST", &hook, &signed(&push), &push).expect("valid hook");
    evidence.add("webhook answer (valid)", &answer);
    if !(200..300).contains(&code) {
        failures.push(format!("the valid webhook got HTTP {code}: {answer}"));
    }

    // Bearer tokens on the mutating endpoint.
    let sync = format!("{base}/api/v1/targets/dev/sync");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("x:{LEAK_API_TOKEN}"),
    );
    let bearer_cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no Authorization", vec![]),
        ("empty bearer", vec![("Authorization", "Bearer ".into())]),
        (
            "wrong token",
            vec![("Authorization", "Bearer not-the-token".into())],
        ),
        (
            "token with a suffix",
            vec![("Authorization", format!("Bearer {LEAK_API_TOKEN}x"))],
        ),
        (
            "token prefix",
            vec![(
                "Authorization",
                format!("Bearer {}", &LEAK_API_TOKEN[..LEAK_API_TOKEN.len() - 1]),
            )],
        ),
        (
            "basic auth with the token",
            vec![("Authorization", format!("Basic {basic}"))],
        ),
        (
            "token in another header",
            vec![("X-Api-Token", LEAK_API_TOKEN.into())],
        ),
    ];
    for (name, headers) in &bearer_cases {
        let (code, answer) = http("POST", &sync, headers, "").expect("sync");
        evidence.add(format!("sync answer ({name})"), &answer);
        if code != 401 && code != 403 {
            failures.push(format!(
                "sync with {name}: HTTP {code}, expected 401: {answer}"
            ));
        }
    }
    let (code, answer) =
        http("POST", &format!("{sync}?token={LEAK_API_TOKEN}"), &[], "").expect("sync");
    if code != 401 && code != 403 {
        failures.push(format!(
            "sync with the token in the query: HTTP {code}: {answer}"
        ));
    }
    let (code, answer) = http(
        "POST",
        &sync,
        &[("Authorization", format!("Bearer {LEAK_API_TOKEN}"))],
        "",
    )
    .expect("sync");
    evidence.add("sync answer (valid)", &answer);
    if !(200..300).contains(&code) {
        failures.push(format!("sync with the right token: HTTP {code}: {answer}"));
    }

    // A second commit: an upgrade with a savepoint, so the journal has intents and outcomes.
    let second = repo.commit_tree("more CUs", &tree(3));
    setup.wait_for(
        &mut daemon,
        "the second commit to converge",
        Duration::from_secs(120),
        |status| synced_at(status, &second),
    );
    for path in [
        "/",
        "/metrics",
        "/healthz",
        "/readyz",
        "/api/v1/targets",
        "/api/v1/targets/dev",
        "/api/v1/targets/probe",
    ] {
        let (code, body) = http("GET", &format!("{base}{path}"), &[], "").expect("GET");
        evidence.add(format!("GET {path} (HTTP {code})"), &body);
    }
    let exit = daemon.terminate();
    if !exit.success() {
        failures.push(format!("the daemon exited with {exit}"));
    }
    let daemon_log = std::fs::read(dir.join("daemon-secrets.log")).unwrap_or_default();
    if daemon_log.is_empty() {
        failures.push("the daemon wrote no log at all".to_string());
    }
    evidence.add("daemon stderr", &daemon_log);

    // The CLI, once with the right secrets and once with a wrong secret key.
    let state_dir = dir.join("state");
    let state_arg = state_dir.to_str().expect("utf-8").to_string();
    let config_arg = setup.config.to_str().expect("utf-8").to_string();
    for (name, args, secret_key) in [
        (
            "journal show",
            vec!["journal", "show", "--state-dir", &state_arg],
            LEAK_SECRET_KEY,
        ),
        (
            "journal show --json",
            vec!["journal", "show", "--json", "--state-dir", &state_arg],
            LEAK_SECRET_KEY,
        ),
        (
            "journal verify",
            vec!["journal", "verify", "--state-dir", &state_arg],
            LEAK_SECRET_KEY,
        ),
        (
            "plan",
            vec!["plan", "--config", &config_arg, "--target", "dev"],
            LEAK_SECRET_KEY,
        ),
        (
            "plan with a wrong secret key",
            vec!["plan", "--config", &config_arg, "--target", "dev"],
            LEAK_WRONG_SECRET_KEY,
        ),
        (
            "plan for the target whose source fails",
            vec!["plan", "--config", &config_arg, "--target", "probe"],
            LEAK_SECRET_KEY,
        ),
    ] {
        let mut command = setup.command(&args);
        command
            .env("REL_SK", secret_key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = command.output().expect("CLI runs");
        evidence.add(format!("`{name}` stdout"), &output.stdout);
        evidence.add(format!("`{name}` stderr"), &output.stderr);
        if name == "plan with a wrong secret key" && output.status.success() {
            failures.push("plan succeeded with a wrong secret key".to_string());
        }
    }
    evidence.add_tree(&state_dir);
    evidence.add(
        "config file",
        std::fs::read(&setup.config).unwrap_or_default(),
    );

    let secrets = [
        ("secret key", LEAK_SECRET_KEY),
        ("wrong secret key", LEAK_WRONG_SECRET_KEY),
        ("API token", LEAK_API_TOKEN),
        ("webhook secret", LEAK_WEBHOOK_SECRET),
        ("git token", LEAK_GIT_TOKEN),
    ];
    failures.extend(evidence.leaks(&secrets));
    assert!(
        evidence.places.len() > 30,
        "too little evidence gathered: {}",
        evidence.places.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A webhook case: name, headers, body, the status codes that are right.
type WebhookCase<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, &'a [u16]);

fn nested(depth: usize) -> Vec<u8> {
    let mut body = vec![b'['; depth];
    body.extend(std::iter::repeat_n(b']', depth));
    body
}

// ---------------------------------------------------------------------------------------------
// Service faults

/// Three phases against one emulator data directory. (1) With 20% of calls failing with
/// 500s, 5% of connections dropped, 10% throttled with 429 and latency on every call, four
/// jobs are created and two upgraded; both commits converge within a bounded time and the
/// calls made stay bounded. (2) A full outage (every call a 500) while a new commit arrives:
/// the status names the failure, the calls made stay bounded. (3) The service recovers (the
/// fault mix again): the commit converges. Afterwards live jobs equal git, every stop had a
/// savepoint the next run restored, the journal verifies, every intent has an outcome.
#[test]
fn changes_converge_under_injected_service_faults() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let mix = "faults: {error_rate: 0.2, drop_rate: 0.05, throttle_rate: 0.1, latency_ms: 20, retry_after_seconds: 1, seed: 11}\n";
    let outage = "faults: {error_rate: 1.0, latency_ms: 20, seed: 12}\n";
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(mix));
    let (api_port, s3_port) = (emulator.port("dli"), emulator.port("s3"));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let names = ["alpha", "bravo", "charlie", "delta"];
    let tree = |cus: &[u32]| {
        let mut files: Vec<(String, String)> = names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (format!("flink/{name}.yaml"), job_yaml(name, *cu)))
            .collect();
        files.push(("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()));
        files
    };
    let setup = DaemonSetup::new(
        dir,
        &repo,
        &emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: false,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    );
    let mut failures = Vec::new();
    let mut daemon = setup.spawn("faults");

    // (1) The fault mix.
    let first = repo.commit_tree("four jobs", &tree(&[2, 2, 2, 2]));
    let started = Instant::now();
    setup.wait_for(
        &mut daemon,
        "convergence under faults",
        Duration::from_secs(300),
        |status| synced_at(status, &first),
    );
    let first_took = started.elapsed();
    let second = repo.commit_tree("upgrade two", &tree(&[3, 2, 4, 2]));
    let started = Instant::now();
    setup.wait_for(
        &mut daemon,
        "the upgrade under faults",
        Duration::from_secs(300),
        |status| synced_at(status, &second),
    );
    let second_took = started.elapsed();
    let mix_calls = emulator.stats_total();
    // Four creates with starts and two upgrades take about a hundred calls without faults;
    // unbounded retries would run into the thousands.
    if mix_calls > 2000 {
        failures.push(format!(
            "{mix_calls} calls reached the emulator under the fault mix"
        ));
    }

    // (2) A full outage while git moves on.
    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(outage), api_port, s3_port);
    let third = repo.commit_tree("upgrade during the outage", &tree(&[3, 3, 4, 3]));
    let outage_started = Instant::now();
    let (failing, _) = setup.wait_for(
        &mut daemon,
        "the status to name the outage",
        Duration::from_secs(120),
        |status| {
            let mut errors = Vec::new();
            collect_errors(status, &mut errors);
            errors
                .iter()
                .any(|error| error.contains("500") || error.contains("DLI.0999"))
        },
    );
    let named_after = outage_started.elapsed();
    std::thread::sleep(Duration::from_secs(15));
    let outage_calls = emulator.stats_total();
    let outage_took = outage_started.elapsed();
    if failing["sync"]["status"] == "Synced" && failing["sync"]["applied_revision"] == third {
        failures.push("the target claims to be synced at the commit made during the outage".into());
    }
    // Each pass's calls are retried at most `max_attempts` (5) times with backoff: a pass every
    // few seconds cannot make more than a few dozen calls a second.
    let budget = 40 * outage_took.as_secs().max(1);
    if outage_calls > budget {
        failures.push(format!(
            "{outage_calls} calls in a {outage_took:?} outage (budget {budget})"
        ));
    }

    // (3) Recovery.
    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(mix), api_port, s3_port);
    let started = Instant::now();
    setup.wait_for(
        &mut daemon,
        "convergence after the outage",
        Duration::from_secs(300),
        |status| synced_at(status, &third),
    );
    let recovery_took = started.elapsed();
    assert!(
        daemon.terminate().success(),
        "the daemon did not exit cleanly"
    );

    let desired = Desired {
        jobs: vec![
            ("alpha".into(), 3),
            ("bravo".into(), 3),
            ("charlie".into(), 4),
            ("delta".into(), 3),
        ],
    };
    failures.extend(live_violations(
        &emulator,
        LEAK_ACCESS_KEY,
        LEAK_SECRET_KEY,
        LEAK_PROJECT_ID,
        &desired,
    ));
    failures.extend(journal_violations(&setup));
    let mut named = Vec::new();
    collect_errors(&failing, &mut named);
    eprintln!(
        "faults: mix: first commit {first_took:?}, second {second_took:?}, {mix_calls} calls; \
         outage: named after {named_after:?}, {outage_calls} calls in {outage_took:?}; \
         recovery: {recovery_took:?}; status said: {:?}",
        named.first()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every non-empty `error`/`last_error`/`message` string anywhere in a status document.
fn collect_errors(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key.contains("error") {
                    match inner {
                        Value::String(text) if !text.is_empty() => out.push(text.clone()),
                        Value::Object(_) | Value::Array(_)
                            if !inner.to_string().is_empty() && inner != &Value::Null =>
                        {
                            let text = inner.to_string();
                            if text != "{}" && text != "[]" {
                                out.push(text);
                            }
                        }
                        _ => {}
                    }
                }
                collect_errors(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_errors(item, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Crash consistency

/// How many times the daemon is killed. At least 50; `RELIABILITY_CRASH_RUNS`
/// raises it for a longer run.
/// The seed of a crash test (`RELIABILITY_CRASH_SEED` replays one) and its RNG; says which.
fn crash_seed(test: &str) -> (u64, rand::rngs::StdRng) {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("RELIABILITY_CRASH_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("{test} seed {seed} (RELIABILITY_CRASH_SEED={seed} replays it)");
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

/// The leak-test emulator with 20 ms transitions, for crash loops.
fn fast_emulator_yaml() -> String {
    leak_emulator_yaml("").replace(
        "submit_ms: 50, cancel_ms: 50, savepoint_ms: 50",
        "submit_ms: 20, cancel_ms: 20, savepoint_ms: 20",
    )
}

/// The setup every crash loop runs the daemon or the CLI from: the leak-test account, prune on.
fn crash_setup(dir: &Path, repo: &JobsRepo, emulator: &EmulatorProcess) -> DaemonSetup {
    DaemonSetup::new(
        dir,
        repo,
        emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: true,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    )
}

fn crash_runs() -> usize {
    std::env::var("RELIABILITY_CRASH_RUNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(50)
        .max(1)
}

/// The daemon is killed with SIGKILL at a random moment of each of 50 runs while git keeps
/// changing under it (upgrades with savepoints, a job added and pruned). Then one last start
/// converges, and: live jobs equal git, none duplicated, all running, every stop had a
/// savepoint that the next run restored, `journal verify` passes, every intent has an outcome.
#[test]
fn daemon_killed_at_random_moments_loses_nothing() {
    crash_loop(CrashMode::Daemon);
}

// ---------------------------------------------------------------------------------------------
// The same checks through the `plan` and `apply` commands (one reconcile pass each), which share
// the reconcile path with the daemon.

impl DaemonSetup {
    /// Runs a CLI command to completion (120 s deadline), with `env` over the setup's own.
    fn run_cli(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the CLI");
        let output = wait_with_deadline(child, Duration::from_secs(120), args);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn config_arg(&self) -> String {
        self.config.to_str().expect("utf-8 path").to_string()
    }

    /// `plan --detailed-exitcode`: 0 in sync, 2 changes pending, 1 error.
    fn plan_code(&self) -> (Option<i32>, String) {
        let config = self.config_arg();
        let (code, stdout, stderr) = self.run_cli(
            &[
                "plan",
                "--config",
                &config,
                "--target",
                "dev",
                "--detailed-exitcode",
            ],
            &[],
        );
        (code, format!("{stdout}{stderr}"))
    }

    /// Runs `apply --auto-approve` passes until `plan` finds nothing to do; returns the passes
    /// it took, or the last output when `max_passes` were not enough.
    fn apply_until_converged(&self, max_passes: usize) -> Result<usize, String> {
        let config = self.config_arg();
        let mut last = String::new();
        for pass in 1..=max_passes {
            let (_, stdout, stderr) = self.run_cli(
                &[
                    "apply",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ],
                &[],
            );
            last = format!("{stdout}{stderr}");
            let (code, plan) = self.plan_code();
            if code == Some(0) {
                return Ok(pass);
            }
            last.push_str(&plan);
            // Jobs move through their statuses between passes.
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(tail(&last, 40))
    }
}

fn wait_with_deadline(mut child: Child, deadline: Duration, what: &[&str]) -> std::process::Output {
    use std::io::Read;
    // Drain both pipes while waiting: a child that fills a pipe nobody reads blocks forever.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "dli-gitops {what:?} did not finish within {deadline:?}:\n{}",
                tail(&String::from_utf8_lossy(&stderr), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// `apply` is killed with SIGKILL at a random moment of each of 50 passes while git keeps
/// changing (upgrades with savepoints, a job added and pruned). Then passes run to the end,
/// and: live jobs equal git, none duplicated, all running, every stop had a savepoint the next
/// run restored, `journal verify` passes, every intent has an outcome.
#[test]
fn apply_killed_at_random_moments_loses_nothing() {
    crash_loop(CrashMode::ApplyCommand);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashMode {
    ApplyCommand,
    Daemon,
}

fn crash_loop(mode: CrashMode) {
    use rand::Rng;
    let (seed, mut rng) = crash_seed(&format!("crash test ({mode:?})"));
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &fast_emulator_yaml());
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let base_names = ["orders", "payments", "sessions"];
    let mut cus = [2u32, 2, 2];
    let tree = |cus: &[u32; 3], with_extra: bool| {
        let mut files: Vec<(String, String)> = base_names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (format!("flink/{name}.yaml"), job_yaml(name, *cu)))
            .collect();
        if with_extra {
            files.push(("flink/extra.yaml".into(), job_yaml("extra", 2)));
        }
        files.push(("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()));
        files
    };
    let mut with_extra = true;
    let mut revision = repo.commit_tree("start", &tree(&cus, with_extra));
    let setup = crash_setup(dir, &repo, &emulator);
    let config = setup.config_arg();
    let runs = crash_runs();
    let started = Instant::now();
    for run in 0..runs {
        // Git moves on most runs: an upgrade of one job, and every eighth run the extra job
        // comes or goes (a create or a prune).
        if run % 8 == 7 {
            with_extra = !with_extra;
        }
        if rng.gen_bool(0.7) {
            let index = rng.gen_range(0..cus.len());
            // cu_number must stay in 2..=400.
            cus[index] = if cus[index] >= 5 { 2 } else { cus[index] + 1 };
        }
        revision = repo.commit_tree(&format!("run {run}"), &tree(&cus, with_extra));
        let process = match mode {
            CrashMode::Daemon => setup.spawn(&format!("crash-{run}")),
            CrashMode::ApplyCommand => Process::spawn(
                {
                    let mut command = setup.command(&[
                        "apply",
                        "--config",
                        &config,
                        "--target",
                        "dev",
                        "--auto-approve",
                    ]);
                    command.stdout(Stdio::null());
                    command
                },
                dir.join(format!("apply-{run}.log")),
            ),
        };
        let upper = match mode {
            CrashMode::Daemon => 2500,
            CrashMode::ApplyCommand => 1500,
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..upper)));
        process.kill_hard();
    }
    let crash_phase = started.elapsed();
    let started = Instant::now();
    let passes = match mode {
        CrashMode::Daemon => {
            let mut daemon = setup.spawn("final");
            setup.wait_for(
                &mut daemon,
                "convergence after the crashes",
                Duration::from_secs(240),
                |status| {
                    synced_at(status, &revision)
                        && status["jobs"].as_array().is_some_and(|jobs| {
                            jobs.iter().all(|job| job["live_status"] == "job_running")
                        })
                },
            );
            assert!(
                daemon.terminate().success(),
                "the final daemon did not exit cleanly"
            );
            None
        }
        CrashMode::ApplyCommand => Some(
            setup
                .apply_until_converged(30)
                .unwrap_or_else(|last| panic!("seed {seed}: no convergence in 30 passes:\n{last}")),
        ),
    };
    let converge = started.elapsed();
    let mut desired = Desired {
        jobs: base_names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (name.to_string(), cu))
            .collect(),
    };
    if with_extra {
        desired.jobs.push(("extra".into(), 2));
    }
    let mut failures = live_violations(
        &emulator,
        LEAK_ACCESS_KEY,
        LEAK_SECRET_KEY,
        LEAK_PROJECT_ID,
        &desired,
    );
    failures.extend(journal_violations(&setup));
    let counts = journal_counts(&setup);
    let client = emulator.client(LEAK_ACCESS_KEY, LEAK_SECRET_KEY, LEAK_PROJECT_ID);
    let live = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list");
    let runs_per_job: Vec<(String, usize)> = live
        .iter()
        .map(|job| {
            let runs = emulator.runs(LEAK_PROJECT_ID, job.id);
            (
                job.name.clone(),
                runs["runs"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    eprintln!(
        "crash test ({mode:?}): {runs} SIGKILLs in {crash_phase:?}; converged in {converge:?} \
         ({passes:?} apply passes); journal: {counts:?}; runs per live job: {runs_per_job:?}"
    );
    // The kills must have landed in the middle of actions, or this test proves little.
    if counts.interrupted == 0 {
        failures.push(format!(
            "no kill interrupted an action ({counts:?}); the timing no longer exercises crashes"
        ));
    }
    fail_keeping_evidence(temp, seed, &failures);
}

/// The fault test through `apply` passes: under the fault mix, four creates and then two
/// upgrades each converge within a bounded number of passes and calls; during a full outage a
/// pass fails and says why (and `plan` does too) after a bounded number of calls; after it the
/// pending commit converges. Live jobs then equal git with their savepoints carried, the
/// journal verifies, every intent has an outcome.
#[test]
fn apply_passes_converge_under_injected_service_faults() {
    const MAX_PASSES: usize = 15;
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let mix = "faults: {error_rate: 0.2, drop_rate: 0.05, throttle_rate: 0.1, latency_ms: 20, retry_after_seconds: 1, seed: 21}\n";
    let outage = "faults: {error_rate: 1.0, latency_ms: 20, seed: 22}\n";
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(mix));
    let (api_port, s3_port) = (emulator.port("dli"), emulator.port("s3"));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let names = ["alpha", "bravo", "charlie", "delta"];
    let tree = |cus: &[u32]| {
        let mut files: Vec<(String, String)> = names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (format!("flink/{name}.yaml"), job_yaml(name, *cu)))
            .collect();
        files.push(("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()));
        files
    };
    let setup = DaemonSetup::new(
        dir,
        &repo,
        &emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: false,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    );
    let config = setup.config_arg();
    let mut failures = Vec::new();

    repo.commit_tree("four jobs", &tree(&[2, 2, 2, 2]));
    let create_passes = setup
        .apply_until_converged(MAX_PASSES)
        .unwrap_or_else(|last| {
            panic!("the creates did not converge in {MAX_PASSES} passes:\n{last}")
        });
    repo.commit_tree("upgrade two", &tree(&[3, 2, 4, 2]));
    let upgrade_passes = setup
        .apply_until_converged(MAX_PASSES)
        .unwrap_or_else(|last| {
            panic!("the upgrades did not converge in {MAX_PASSES} passes:\n{last}")
        });
    let mix_calls = emulator.stats_total();
    // Creating and starting four jobs and upgrading two take about a hundred calls without
    // faults (plus one list per `plan`); unbounded retries would run into the thousands.
    if mix_calls > 2000 {
        failures.push(format!(
            "{mix_calls} calls reached the emulator under the fault mix"
        ));
    }

    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(outage), api_port, s3_port);
    repo.commit_tree("upgrade during the outage", &tree(&[3, 3, 4, 3]));
    let (apply_code, stdout, stderr) = setup.run_cli(
        &[
            "apply",
            "--config",
            &config,
            "--target",
            "dev",
            "--auto-approve",
        ],
        &[],
    );
    let apply_said = format!("{stdout}{stderr}");
    if apply_code == Some(0) {
        failures.push(format!(
            "apply succeeded during a full outage:\n{}",
            tail(&apply_said, 20)
        ));
    }
    if !(apply_said.contains("HTTP 500") && apply_said.contains("DLI.0999")) {
        failures.push(format!(
            "apply did not say what failed:\n{}",
            tail(&apply_said, 20)
        ));
    }
    let (plan_code, plan_said) = setup.plan_code();
    if plan_code != Some(1) || !plan_said.contains("DLI.0999") {
        failures.push(format!(
            "plan during the outage exited {plan_code:?}:\n{}",
            tail(&plan_said, 20)
        ));
    }
    let outage_calls = emulator.stats_total();
    // Two commands, each giving up after at most `max_attempts` (5) tries of its first call.
    if outage_calls > 20 {
        failures.push(format!(
            "{outage_calls} calls during the outage for one apply and one plan"
        ));
    }

    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(mix), api_port, s3_port);
    let recovery_passes = setup
        .apply_until_converged(MAX_PASSES)
        .unwrap_or_else(|last| {
            panic!("no convergence after the outage in {MAX_PASSES} passes:\n{last}")
        });
    let desired = Desired {
        jobs: vec![
            ("alpha".into(), 3),
            ("bravo".into(), 3),
            ("charlie".into(), 4),
            ("delta".into(), 3),
        ],
    };
    failures.extend(live_violations(
        &emulator,
        LEAK_ACCESS_KEY,
        LEAK_SECRET_KEY,
        LEAK_PROJECT_ID,
        &desired,
    ));
    failures.extend(journal_violations(&setup));
    eprintln!(
        "apply under faults: creates {create_passes} passes, upgrades {upgrade_passes} passes, \
         {mix_calls} calls; outage: apply exit {apply_code:?}, {outage_calls} calls; \
         recovery {recovery_passes} passes"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The CLI with known secrets: `plan`, `apply`, `journal show`/`verify` with the right keys,
/// `plan` with a wrong secret key, and `plan` for a target whose https git source (with a
/// token) cannot be reached. No secret appears in any output or any file of the state
/// directory.
#[test]
fn secrets_never_leak_from_the_commands() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(""));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    repo.commit_tree(
        "two jobs",
        &[
            ("flink/clicks.yaml".to_string(), job_yaml("clicks", 2)),
            ("flink/views.yaml".to_string(), job_yaml("views", 2)),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ],
    );
    let setup = DaemonSetup::new(
        dir,
        &repo,
        &emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: false,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    );
    add_probe_target(&setup);
    let mut evidence = Evidence { places: Vec::new() };
    let mut failures = Vec::new();
    let state = dir.join("state").to_str().expect("utf-8").to_string();
    let config = setup.config_arg();
    let commands: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "plan",
            vec!["plan", "--config", &config, "--target", "dev"],
            LEAK_SECRET_KEY,
        ),
        (
            "apply",
            vec![
                "apply",
                "--config",
                &config,
                "--target",
                "dev",
                "--auto-approve",
            ],
            LEAK_SECRET_KEY,
        ),
        (
            "apply again",
            vec![
                "apply",
                "--config",
                &config,
                "--target",
                "dev",
                "--auto-approve",
            ],
            LEAK_SECRET_KEY,
        ),
        (
            "plan --json",
            vec!["plan", "--config", &config, "--target", "dev", "--json"],
            LEAK_SECRET_KEY,
        ),
        (
            "plan with a wrong secret key",
            vec!["plan", "--config", &config, "--target", "dev"],
            LEAK_WRONG_SECRET_KEY,
        ),
        (
            "apply with a wrong secret key",
            vec![
                "apply",
                "--config",
                &config,
                "--target",
                "dev",
                "--auto-approve",
            ],
            LEAK_WRONG_SECRET_KEY,
        ),
        (
            "plan for the unreachable https source",
            vec!["plan", "--config", &config, "--target", "probe"],
            LEAK_SECRET_KEY,
        ),
        (
            "journal show",
            vec!["journal", "show", "--state-dir", &state],
            LEAK_SECRET_KEY,
        ),
        (
            "journal show --json",
            vec!["journal", "show", "--json", "--state-dir", &state],
            LEAK_SECRET_KEY,
        ),
        (
            "journal verify",
            vec!["journal", "verify", "--state-dir", &state],
            LEAK_SECRET_KEY,
        ),
    ];
    for (name, args, secret_key) in &commands {
        let (code, stdout, stderr) = setup.run_cli(args, &[("REL_SK", secret_key)]);
        evidence.add(format!("`{name}` stdout"), &stdout);
        evidence.add(format!("`{name}` stderr"), &stderr);
        let wrong = name.contains("wrong secret key") || name.contains("unreachable");
        if wrong && code == Some(0) {
            failures.push(format!("`{name}` succeeded"));
        }
        if !wrong && code != Some(0) && code != Some(2) {
            failures.push(format!(
                "`{name}` exited {code:?}:\n{}",
                tail(&format!("{stdout}{stderr}"), 20)
            ));
        }
    }
    evidence.add_tree(&dir.join("state"));
    let secrets = [
        ("secret key", LEAK_SECRET_KEY),
        ("wrong secret key", LEAK_WRONG_SECRET_KEY),
        ("API token", LEAK_API_TOKEN),
        ("webhook secret", LEAK_WEBHOOK_SECRET),
        ("git token", LEAK_GIT_TOKEN),
    ];
    failures.extend(evidence.leaks(&secrets));
    assert!(
        evidence.places.len() > 20,
        "too little evidence: {}",
        evidence.places.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Adds a second source, over https with a token, at a closed loopback port, and a target
/// `probe` that reads it: its fetch fails, and the token must not appear in the failure.
fn add_probe_target(setup: &DaemonSetup) {
    let closed = free_port();
    let mut config = std::fs::read_to_string(&setup.config).expect("config");
    config = config.replace(
        "targets:\n",
        &format!(
            "  remote:\n    git: {{url: \"https://127.0.0.1:{closed}/data/jobs.git\", branch: main, poll_interval: 1s, token_env: REL_GIT_TOKEN}}\ntargets:\n"
        ),
    );
    let probe_target = config
        .split_once("targets:\n")
        .expect("targets")
        .1
        .replace("name: dev", "name: probe")
        .replace("source: jobs", "source: remote")
        .replace(
            "staging: obs://dli-gitops-staging/dev/",
            "staging: obs://dli-gitops-staging/probe/",
        )
        .replace(
            "backups: obs://dli-gitops-backups/dev/",
            "backups: obs://dli-gitops-backups/probe/",
        );
    config.push_str(&probe_target);
    std::fs::write(&setup.config, &config).expect("config with probe");
}

// ---------------------------------------------------------------------------------------------
// DLF: a scheduled job's schedule survives kills between its stop and its start

/// `apply` is killed with SIGKILL at a random moment of each of 30 passes while git keeps
/// changing a scheduled DLF job whose YAML leaves `desired_state` unset: every change stops the
/// schedule (DataArts imports only over a stopped job), imports, and starts it again. Kills land
/// between the stop and the start. Then `apply` converges, and: the job holds git's last
/// definition, its schedule runs again, `journal verify` passes, every intent has an outcome.
#[test]
fn apply_killed_around_a_dlf_schedule_stop_leaves_the_schedule_running() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("DLF crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(""));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |statement: usize| -> Vec<(String, String)> {
        vec![
            (
                "dlf/nightly.yaml".into(),
                "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\n".into(),
            ),
            (
                "dlf/nightly.job".into(),
                format!(
                    r#"{{"name": "nightly", "processType": "BATCH", "nodes": [{{"name": "n", "type": "DWSSQL", "properties": [{{"name": "statement", "value": "SELECT {statement}"}}]}}], "schedule": {{"type": "CRON", "cron": {{"expression": "0 0 2 * * ?"}}}}}}"#
                ),
            ),
            ("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()),
        ]
    };
    repo.commit_tree("start", &tree(0));
    let setup = crash_setup(dir, &repo, &emulator);
    setup
        .apply_until_converged(5)
        .unwrap_or_else(|last| panic!("the DLF job is not created:\n{last}"));
    let dlf = dli_gitops::cloud::DlfClient::new(
        Url::parse(&emulator.url("dlf")).expect("url"),
        LEAK_PROJECT_ID,
        Credentials::AkSk {
            access_key: LEAK_ACCESS_KEY.into(),
            secret_key: Secret::new(LEAK_SECRET_KEY),
            security_token: None,
        },
        ClientOptions {
            requests_per_second: 0.0,
            ..ClientOptions::default()
        },
        None,
    )
    .expect("client");
    // Scheduled by hand: git leaves the schedule to whoever runs the job.
    block_on(dlf.start_job("nightly")).expect("start the schedule");

    let config = setup.config_arg();
    let runs = (crash_runs() * 3 / 5).max(1);
    for run in 1..=runs {
        repo.commit_tree(&format!("run {run}"), &tree(run));
        let process = Process::spawn(
            {
                let mut command = setup.command(&[
                    "apply",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ]);
                command.stdout(Stdio::null());
                command
            },
            dir.join(format!("apply-dlf-{run}.log")),
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..900)));
        process.kill_hard();
    }
    let passes = setup
        .apply_until_converged(20)
        .unwrap_or_else(|last| panic!("seed {seed}: no convergence in 20 passes:\n{last}"));

    let mut failures = Vec::new();
    let definition = block_on(dlf.job_detail("nightly")).expect("the job exists");
    if !definition.to_string().contains(&format!("SELECT {runs}\"")) {
        failures.push(format!(
            "the live job is not git's last definition: {definition}"
        ));
    }
    let (listed, _) = block_on(dlf.list_every_job(Some("nightly"))).expect("list");
    let status = listed.first().and_then(|job| job.status.clone());
    if status.as_deref() != Some("NORMAL") {
        failures.push(format!(
            "the schedule was stopped for an import and never started again: {status:?}"
        ));
    }
    failures.extend(journal_violations(&setup));
    let counts = journal_counts(&setup);
    eprintln!(
        "DLF crash test: {runs} SIGKILLs; converged in {passes} apply pass(es); journal: {counts:?}"
    );
    if counts.interrupted == 0 {
        failures.push(format!(
            "no kill interrupted an action ({counts:?}); the timing no longer exercises crashes"
        ));
    }
    fail_keeping_evidence(temp, seed, &failures);
}

// ---------------------------------------------------------------------------------------------
// Restores under SIGKILL: a restore is a one-shot step, never applied twice.

/// `apply` is killed at random moments while git alternates upgrades with explicit restores
/// (`restore: {savepoint_path, nonce}` naming an earlier stop savepoint of the job). After one
/// last converging pass: the job runs with git's definition, every run resumed either from the
/// stop savepoint of the run before it or from a restore path, no restore path was restored
/// more often than restores named it (a restore re-applied after a crash would show here), the
/// last restore was applied, and every intent has an outcome.
#[test]
fn apply_killed_around_restores_applies_each_restore_at_most_once() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("restore crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &fast_emulator_yaml());
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |cu: u32, restore: Option<&(String, u64)>| {
        let mut job = job_yaml("orders", cu);
        if let Some((path, nonce)) = restore {
            job.push_str(&format!(
                "restore: {{savepoint_path: \"{path}\", nonce: {nonce}}}\n"
            ));
        }
        vec![
            ("flink/orders.yaml".to_string(), job),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ]
    };
    let mut cu = 2u32;
    repo.commit_tree("start", &tree(cu, None));
    let setup = crash_setup(dir, &repo, &emulator);
    setup
        .apply_until_converged(10)
        .unwrap_or_else(|last| panic!("seed {seed}: the job was not created:\n{last}"));
    let client = emulator.client(LEAK_ACCESS_KEY, LEAK_SECRET_KEY, LEAK_PROJECT_ID);
    let job_id = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list")[0].id;
    // The service deletes its own stop savepoints when the job restarts (the emulator models
    // it): restores name our verified copies of them, from the savepoint catalog.
    let state_dir = setup.dir.join("state");
    let stop_savepoints = |_: &EmulatorProcess| -> Vec<String> {
        let state = dli_gitops::journal::read_state(&state_dir).expect("read the journal");
        dli_gitops::savepoints::catalog(&state, Some("dev"), Some("orders"))
            .iter()
            .filter(|entry| entry.entry.record.origin == "stop" && entry.entry.record.verified)
            .map(|entry| entry.path().to_string())
            .collect()
    };
    let config = setup.config_arg();
    let runs = (crash_runs() / 2).max(10);
    let mut restores: Vec<(String, u64)> = Vec::new();
    let mut current: Option<(String, u64)> = None;
    for run in 0..runs {
        let known = stop_savepoints(&emulator);
        // An older stop savepoint than the latest, so that a restore is told apart from the
        // ordinary resume of an upgrade.
        if run % 3 == 2 && known.len() >= 2 {
            let path = known[rng.gen_range(0..known.len() - 1)].clone();
            let restore = (path, run as u64 + 1);
            restores.push(restore.clone());
            current = Some(restore);
        } else {
            cu = if cu >= 5 { 2 } else { cu + 1 };
        }
        repo.commit_tree(&format!("run {run}"), &tree(cu, current.as_ref()));
        let process = Process::spawn(
            {
                let mut command = setup.command(&[
                    "apply",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ]);
                command.stdout(Stdio::null());
                command
            },
            dir.join(format!("apply-{run}.log")),
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..1500)));
        process.kill_hard();
    }
    let passes = setup
        .apply_until_converged(30)
        .unwrap_or_else(|last| panic!("seed {seed}: no convergence in 30 passes:\n{last}"));

    let mut failures = journal_violations(&setup);
    let detail = block_on(client.job_detail(job_id)).expect("detail");
    if detail.status.as_str() != "job_running" || detail.config.cu_number != cu as i32 {
        failures.push(format!(
            "orders is {} with cu_number {}; git wants it running with {cu}",
            detail.status, detail.config.cu_number
        ));
    }
    let job_runs = emulator.runs(LEAK_PROJECT_ID, job_id)["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let restore_paths: std::collections::BTreeMap<&str, usize> =
        restores
            .iter()
            .fold(Default::default(), |mut counts, (path, _)| {
                *counts.entry(path.as_str()).or_default() += 1;
                counts
            });
    let mut restored: std::collections::BTreeMap<String, usize> = Default::default();
    for pair in job_runs.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        let from = next["restored_from"].as_str();
        let stop = previous["stop_savepoint"].as_str();
        // The state of the previous stop, resumed from the service's savepoint or our copy.
        let resumed_the_stop = previous["stop_savepoint_id"].is_string()
            && next["restored_savepoint_id"] == previous["stop_savepoint_id"];
        match from {
            Some(path) if !resumed_the_stop && restore_paths.contains_key(path) => {
                *restored.entry(path.to_string()).or_default() += 1;
            }
            _ if resumed_the_stop => {}
            _ => failures.push(format!(
                "run {} resumed from {from:?}, neither the stop savepoint {stop:?} of run {} nor a restore",
                next["run_number"], previous["run_number"]
            )),
        }
    }
    for (path, times) in &restored {
        let named = restore_paths.get(path.as_str()).copied().unwrap_or(0);
        if *times > named {
            failures.push(format!(
                "{path} was restored {times} times but restores named it {named} times: a restore was applied twice"
            ));
        }
    }
    if let Some((path, _)) = &current
        && !job_runs
            .iter()
            .any(|run| run["restored_from"].as_str() == Some(path.as_str()))
    {
        failures.push(format!("the last restore ({path}) was never applied"));
    }
    let counts = journal_counts(&setup);
    eprintln!(
        "restore crash test: {runs} SIGKILLs, {} restores, converged in {passes} passes; \
         restored: {restored:?}; journal: {counts:?}",
        restores.len()
    );
    fail_keeping_evidence(temp, seed, &failures);
}

// ---------------------------------------------------------------------------------------------
// Rollback under SIGKILL: the job is never left down, the state chain never breaks.

/// `rollback` is killed at random moments, again and again, then run to its end. Its stop
/// savepoint is journaled before the backup is imported, and a rerun restarts, from that
/// savepoint, a job an interrupted run had stopped. Afterwards: the job runs the backup's
/// definition, every run resumed from the stop savepoint of the run before it, and every intent
/// has an outcome.
#[test]
fn rollback_killed_at_random_moments_never_leaves_the_job_down() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("rollback crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &fast_emulator_yaml());
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |cu: u32| {
        vec![
            ("flink/orders.yaml".to_string(), job_yaml("orders", cu)),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ]
    };
    repo.commit_tree("start", &tree(2));
    let setup = crash_setup(dir, &repo, &emulator);
    // cu 2 → 3 → 4: two applies that took backups.
    for cu in [2, 3, 4] {
        repo.commit_tree(&format!("cu {cu}"), &tree(cu));
        setup
            .apply_until_converged(10)
            .unwrap_or_else(|last| panic!("seed {seed}: cu {cu} did not converge:\n{last}"));
    }
    let config = setup.config_arg();
    let rollback = |tag: &str| {
        Process::spawn(
            {
                let mut command = setup.command(&[
                    "rollback",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ]);
                command.stdout(Stdio::null());
                command
            },
            dir.join(format!("rollback-{tag}.log")),
        )
    };
    let runs = (crash_runs() / 3).max(10);
    for run in 0..runs {
        let process = rollback(&run.to_string());
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..1200)));
        process.kill_hard();
    }
    let (code, stdout, stderr) = setup.run_cli(
        &[
            "rollback",
            "--config",
            &config,
            "--target",
            "dev",
            "--auto-approve",
        ],
        &[],
    );
    let mut failures = Vec::new();
    if code != Some(0) {
        failures.push(format!(
            "the last rollback exited {code:?}:\n{stdout}{stderr}"
        ));
    }
    failures.extend(journal_violations(&setup));
    let client = emulator.client(LEAK_ACCESS_KEY, LEAK_SECRET_KEY, LEAK_PROJECT_ID);
    let listed = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list");
    let job = listed
        .iter()
        .find(|job| job.name == "orders")
        .expect("orders is live");
    let detail = block_on(client.job_detail(job.id)).expect("detail");
    if detail.status.as_str() != "job_running" {
        failures.push(format!(
            "orders is {} after the rollback; it ran before",
            detail.status
        ));
    }
    if detail.config.cu_number != 3 {
        failures.push(format!(
            "orders has cu_number {}; the latest backup (taken before cu 4) has 3",
            detail.config.cu_number
        ));
    }
    let job_runs = emulator.runs(LEAK_PROJECT_ID, job.id)["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    failures.extend(savepoint_chain_breaks("orders", &job_runs));
    let counts = journal_counts(&setup);
    eprintln!(
        "rollback crash test: {runs} SIGKILLs; {} runs of the job; journal: {counts:?}",
        job_runs.len()
    );
    fail_keeping_evidence(temp, seed, &failures);
}
