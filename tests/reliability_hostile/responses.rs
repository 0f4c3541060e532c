//! Hostile service responses from a raw TCP server: garbage, truncated and non-HTTP answers,
//! lying headers, repeated pages, wrong types.

use super::*;

// ---------------------------------------------------------------------------------------------
// A raw TCP server: reads one HTTP request per connection, writes the scripted bytes, closes.

struct RawServer {
    url: Url,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawServer {
    async fn start(reply: Vec<u8>) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let reply = Arc::new(reply);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = reply.clone();
                tokio::spawn(async move {
                    if read_request(&mut stream).await.is_some() {
                        let _ = stream.write_all(&reply).await;
                        let _ = stream.flush().await;
                    }
                    // Dropping the stream closes the connection, which ends any body the
                    // scripted headers promised but did not send.
                });
            }
        });
        RawServer {
            url: Url::parse(&format!("http://{address}/")).expect("loopback url"),
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads a request head and its `Content-Length` body; `None` when the peer went away.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(buffer)
}

fn http_reply(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut reply = format!("HTTP/1.1 {status}\r\nConnection: close\r\n").into_bytes();
    for header in headers {
        reply.extend_from_slice(header.as_bytes());
        reply.extend_from_slice(b"\r\n");
    }
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-length"))
        && !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding"))
    {
        reply.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    reply.extend_from_slice(b"\r\n");
    reply.extend_from_slice(body);
    reply
}

const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const ACCESS_KEY: &str = "HOSTILEACCESSKEY0001";
const SECRET_KEY: &str = "hostile-secret-key-never-printed-0123456789";

const MAX_ATTEMPTS: u32 = 3;

fn dli_client(server: &RawServer) -> DliClient {
    let options = ClientOptions {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(10),
            max_retry_after: Duration::from_secs(1),
        },
        requests_per_second: 0.0,
        ..ClientOptions::default()
    };
    let credentials = Credentials::AkSk {
        access_key: ACCESS_KEY.into(),
        secret_key: Secret::new(SECRET_KEY),
        security_token: None,
    };
    DliClient::new(server.url.clone(), PROJECT, credentials, options).expect("client")
}

/// How a case must fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A permanent error after exactly one request.
    Permanent,
    /// A retryable error after exactly `MAX_ATTEMPTS` requests.
    RetriedThenRetryable,
}

struct Case {
    name: &'static str,
    reply: Vec<u8>,
    expect: Expect,
    /// A fragment the error message must contain, so the operator learns what went wrong.
    says: &'static str,
}

fn nested_json(depth: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(depth * 2);
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body
}

/// A syntactically valid list answer padded past the client's 16 MiB body limit.
fn oversized_json_body() -> Vec<u8> {
    let mut body = br#"{"is_success": true, "padding": ""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 17 * 1024 * 1024));
    body.extend_from_slice(br#"", "job_list": {"total_count": 0, "jobs": []}}"#);
    body
}

/// `body` in HTTP/1.1 chunked transfer coding, 64 KiB per chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
    for piece in body.chunks(64 * 1024) {
        encoded.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        encoded.extend_from_slice(piece);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

fn garbage_cases() -> Vec<Case> {
    let json = ["Content-Type: application/json"];
    vec![
        Case {
            name: "an HTML page with status 200",
            reply: http_reply(
                "200 OK",
                &["Content-Type: text/html"],
                b"<html><body>Service Unavailable</body></html>",
            ),
            expect: Expect::Permanent,
            says: "not JSON",
        },
        Case {
            name: "JSON cut in the middle, with a matching Content-Length",
            reply: http_reply(
                "200 OK",
                &json,
                br#"{"is_success": true, "job_list": {"total_count": 2, "jobs": [{"job_id": 1, "na"#,
            ),
            expect: Expect::Permanent,
            says: "not JSON",
        },
        Case {
            name: "JSON that is not UTF-8",
            reply: http_reply("200 OK", &json, b"{\"job_list\": {\"jobs\": [\"\xff\xfe\"]}}"),
            expect: Expect::Permanent,
            says: "not JSON",
        },
        Case {
            name: "JSON nested 100000 levels deep",
            reply: http_reply("200 OK", &json, &nested_json(100_000)),
            expect: Expect::Permanent,
            says: "not JSON",
        },
        Case {
            name: "the job list is a string",
            reply: http_reply("200 OK", &json, br#"{"job_list": {"jobs": "none"}}"#),
            expect: Expect::Permanent,
            says: "not a list",
        },
        Case {
            name: "a job id that is an object",
            reply: http_reply(
                "200 OK",
                &json,
                br#"{"job_list": {"total_count": 1, "jobs": [{"job_id": {"x": 1}, "name": "a", "status": "job_running"}]}}"#,
            ),
            expect: Expect::Permanent,
            says: "unexpected response",
        },
        Case {
            name: "is_success false with status 200",
            reply: http_reply(
                "200 OK",
                &json,
                br#"{"is_success": "false", "message": "queue is being deleted"}"#,
            ),
            expect: Expect::Permanent,
            says: "queue is being deleted",
        },
        Case {
            name: "a Content-Length longer than the body, then the connection closes",
            reply: http_reply(
                "200 OK",
                &["Content-Type: application/json", "Content-Length: 4096"],
                br#"{"job_list": {"jobs": ["#,
            ),
            expect: Expect::RetriedThenRetryable,
            says: "connection failed",
        },
        Case {
            name: "a Content-Length that is not a number",
            reply: http_reply(
                "200 OK",
                &["Content-Type: application/json", "Content-Length: lots"],
                b"{}",
            ),
            expect: Expect::RetriedThenRetryable,
            says: "connection failed",
        },
        Case {
            name: "a chunked body with a bad chunk size",
            reply: http_reply(
                "200 OK",
                &["Transfer-Encoding: chunked"],
                b"zz\r\n{\"job_list\": {}}\r\n0\r\n\r\n",
            ),
            expect: Expect::RetriedThenRetryable,
            says: "connection failed",
        },
        Case {
            name: "a chunked body cut before its last chunk",
            reply: http_reply(
                "200 OK",
                &["Transfer-Encoding: chunked"],
                b"10\r\n{\"job_list\": {\"j",
            ),
            expect: Expect::RetriedThenRetryable,
            says: "connection failed",
        },
        Case {
            name: "not HTTP at all",
            reply: b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec(),
            expect: Expect::RetriedThenRetryable,
            says: "connection failed",
        },
        Case {
            name: "the connection closed without an answer",
            reply: Vec::new(),
            expect: Expect::RetriedThenRetryable,
            says: "connection failed",
        },
        Case {
            name: "a gateway's HTML 502",
            reply: http_reply(
                "502 Bad Gateway",
                &["Content-Type: text/html"],
                b"<html><h1>502 Bad Gateway</h1></html>",
            ),
            expect: Expect::RetriedThenRetryable,
            says: "HTTP 502",
        },
        Case {
            name: "a 500 whose error body is an array of garbage",
            reply: http_reply("500 Internal Server Error", &json, br#"[1, "x", {"error_code": 7}]"#),
            expect: Expect::RetriedThenRetryable,
            says: "HTTP 500",
        },
        Case {
            name: "an unknown status code",
            reply: http_reply("599 Whatever", &json, b""),
            expect: Expect::RetriedThenRetryable,
            says: "HTTP 599",
        },
        Case {
            name: "a 429 with a Retry-After that is not a number",
            reply: http_reply(
                "429 Too Many Requests",
                &["Content-Type: application/json", "Retry-After: soon"],
                br#"{"error_code": "APIG.0308", "error_msg": "throttled"}"#,
            ),
            expect: Expect::RetriedThenRetryable,
            says: "HTTP 429",
        },
        Case {
            name: "a 200 body of 17 MiB with its Content-Length",
            reply: http_reply("200 OK", &json, &oversized_json_body()),
            expect: Expect::Permanent,
            says: "16 MiB limit",
        },
        Case {
            name: "a chunked 200 body of 17 MiB (no Content-Length)",
            reply: http_reply(
                "200 OK",
                &["Content-Type: application/json", "Transfer-Encoding: chunked"],
                &chunked(&oversized_json_body()),
            ),
            expect: Expect::Permanent,
            says: "16 MiB limit",
        },
        Case {
            name: "a 200 with an empty body",
            reply: http_reply("200 OK", &json, b""),
            expect: Expect::Permanent,
            says: "without job_list.jobs",
        },
        Case {
            name: "a 200 with `null`",
            reply: http_reply("200 OK", &json, b"null"),
            expect: Expect::Permanent,
            says: "without job_list.jobs",
        },
        Case {
            name: "a 200 with `{}`",
            reply: http_reply("200 OK", &json, b"{}"),
            expect: Expect::Permanent,
            says: "without job_list.jobs",
        },
        Case {
            name: "a 200 with only is_success",
            reply: http_reply("200 OK", &json, br#"{"is_success": true}"#),
            expect: Expect::Permanent,
            says: "without job_list.jobs",
        },
        Case {
            name: "a 200 with a job_list that has neither jobs nor a zero total",
            reply: http_reply("200 OK", &json, br#"{"is_success": true, "job_list": {}}"#),
            expect: Expect::Permanent,
            says: "without job_list.jobs",
        },
        Case {
            name: "a 400 with an error code",
            reply: http_reply(
                "400 Bad Request",
                &json,
                br#"{"error_code": "DLI.0001", "error_msg": "parameter limit is invalid"}"#,
            ),
            expect: Expect::Permanent,
            says: "DLI.0001",
        },
    ]
}

/// Every garbage answer ends in a typed error that names the call and the problem, after a
/// bounded number of requests (one for permanent errors, the policy's maximum for transient
/// ones), never a panic or a hang, and never an error that carries the secret key.
#[tokio::test]
async fn garbage_and_truncated_service_responses_fail_cleanly_with_bounded_retries() {
    let mut failures = Vec::new();
    for case in garbage_cases() {
        let server = RawServer::start(case.reply.clone()).await;
        let client = dli_client(&server);
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            client.list_jobs(&ListJobsQuery::default()),
        )
        .await;
        let error = match result {
            Err(_) => {
                failures.push(format!("{}: hung for 30 s", case.name));
                continue;
            }
            Ok(Ok(jobs)) => {
                failures.push(format!("{}: accepted as {jobs:?}", case.name));
                continue;
            }
            Ok(Err(error)) => error,
        };
        let message = error_chain(&error);
        let (expected_requests, retryable) = match case.expect {
            Expect::Permanent => (1, false),
            Expect::RetriedThenRetryable => (MAX_ATTEMPTS as usize, true),
        };
        if server.connections() != expected_requests {
            failures.push(format!(
                "{}: {} requests, expected {expected_requests} ({message})",
                case.name,
                server.connections()
            ));
        }
        if error.is_retryable() != retryable {
            failures.push(format!(
                "{}: retryable = {}, expected {retryable} ({message})",
                case.name,
                error.is_retryable()
            ));
        }
        if !message.contains("dli list_jobs") || !message.contains(case.says) {
            failures.push(format!(
                "{}: message {message:?} should name `dli list_jobs` and say {:?}",
                case.name, case.says
            ));
        }
        if message.contains(SECRET_KEY) || format!("{error:?}").contains(SECRET_KEY) {
            failures.push(format!("{}: the secret key leaked", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A server that ignores `offset` and answers every request with the same full page is caught
/// on the second page (its ids are all already listed), not paged 10,000 times.
#[tokio::test]
async fn a_list_that_repeats_the_same_full_page_stops_with_an_error_on_the_second_page() {
    let jobs: Vec<String> = (1..=100)
        .map(|id| {
            format!(
                r#"{{"job_id": {id}, "name": "job-{id}", "status": "job_running", "job_type": "flink_opensource_sql_job", "update_time": 1711647009620}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"is_success": true, "job_list": {{"total_count": 1000000, "jobs": [{}]}}}}"#,
        jobs.join(", ")
    );
    let server = RawServer::start(http_reply(
        "200 OK",
        &["Content-Type: application/json"],
        body.as_bytes(),
    ))
    .await;
    let client = dli_client(&server);
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        client.list_jobs(&ListJobsQuery::default()),
    )
    .await
    .expect("list_jobs must not page for a minute");
    let error = match result {
        Ok(jobs) => panic!(
            "a looping list was accepted as {} jobs after {} requests",
            jobs.len(),
            server.connections()
        ),
        Err(error) => error,
    };
    assert!(matches!(error, CloudError::Decode { .. }), "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("dli list_jobs") && message.contains("already listed"),
        "{message}"
    );
    assert_eq!(server.connections(), 2, "{message}");
}

/// A DLF list answer without its `jobs` list is refused, never read as "no jobs live"; an
/// explicit empty list (what the emulator answers for an empty project) is accepted.
#[tokio::test]
async fn dlf_list_answers_without_jobs_are_refused_and_an_empty_list_is_not() {
    let dlf_client = |server: &RawServer| {
        DlfClient::new(
            server.url.clone(),
            PROJECT,
            Credentials::AkSk {
                access_key: ACCESS_KEY.into(),
                secret_key: Secret::new(SECRET_KEY),
                security_token: None,
            },
            ClientOptions {
                request_timeout: Duration::from_secs(3),
                requests_per_second: 0.0,
                ..ClientOptions::default()
            },
            None,
        )
        .expect("dlf client")
    };
    let json = ["Content-Type: application/json"];
    let refused: [&[u8]; 5] = [
        b"",
        b"null",
        b"{}",
        br#"{"is_success": true}"#,
        br#"{"total": 3}"#,
    ];
    for body in refused {
        let server = RawServer::start(http_reply("200 OK", &json, body)).await;
        let result = dlf_client(&server)
            .list_jobs(&DlfListJobsQuery::default())
            .await;
        let shown = String::from_utf8_lossy(body);
        let error = match result {
            Ok(jobs) => panic!("DLF list {shown:?} accepted as {jobs:?}"),
            Err(error) => error,
        };
        assert!(
            matches!(error, CloudError::Decode { .. }),
            "{shown:?}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("dlf list_jobs") && message.contains("without jobs"),
            "{shown:?}: {message}"
        );
        assert_eq!(server.connections(), 1, "{shown:?}: {message}");
    }
    for body in [&br#"{"total": 0, "jobs": []}"#[..], br#"{"total": 0}"#] {
        let server = RawServer::start(http_reply("200 OK", &json, body)).await;
        let jobs = dlf_client(&server)
            .list_jobs(&DlfListJobsQuery::default())
            .await
            .unwrap_or_else(|error| panic!("{:?}: {error}", String::from_utf8_lossy(body)));
        assert!(jobs.is_empty(), "{jobs:?}");
    }
}

/// A job detail whose fields have the wrong types is refused (a guess would make the planner
/// restart a job), and the error says which field.
#[tokio::test]
async fn job_detail_with_wrong_types_is_refused() {
    let details: [&[u8]; 4] = [
        br#"{"is_success": true, "job_detail": {"job_id": 1, "name": "a", "status": "job_running", "job_type": "flink_opensource_sql_job", "update_time": 1711647009620, "job_config": {"checkpoint_mode": "sometimes", "tags": []}}}"#,
        br#"{"is_success": true, "job_detail": {"job_id": 1, "name": "a", "status": "job_running", "job_type": "flink_opensource_sql_job", "update_time": 1711647009620, "job_config": {"runtime_config": "[{\"key\": ", "tags": []}}}"#,
        br#"{"is_success": true, "job_detail": "gone"}"#,
        br#"{"is_success": true}"#,
    ];
    for detail in details {
        let server = RawServer::start(http_reply(
            "200 OK",
            &["Content-Type: application/json"],
            detail,
        ))
        .await;
        let client = dli_client(&server);
        let result = client.job_detail(1).await;
        let error = match result {
            Ok(job) => panic!("accepted {:?} as {job:?}", String::from_utf8_lossy(detail)),
            Err(error) => error,
        };
        assert!(
            matches!(error, CloudError::Decode { .. }),
            "{}: {error:?}",
            String::from_utf8_lossy(detail)
        );
        assert!(
            error.to_string().contains("dli job_detail (job 1)"),
            "{error}"
        );
    }
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
