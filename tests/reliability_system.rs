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
