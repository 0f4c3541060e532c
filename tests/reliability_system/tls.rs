//! TLS verification is on by default in the cloud client.

use super::*;

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
