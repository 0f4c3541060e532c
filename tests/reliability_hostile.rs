//! Hostile-input corpus tests: garbage and truncated service responses against the cloud
//! client (a raw TCP server that writes exactly the bytes each case scripts), hostile zips
//! against the emulator's import endpoints, malformed webhooks against the daemon, broken
//! configs and corrupted journals. Each case checks for a clear error, bounded retries and
//! nothing applied or lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dli_gitops::cloud::{
    ClientOptions, CloudError, Credentials, DlfClient, DlfListJobsQuery, DliClient, ListJobsQuery,
    RetryPolicy, Secret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

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

// ---------------------------------------------------------------------------------------------
// Hostile job repositories on disk, through the real binary

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Runs the binary with a deadline; a hang is a failure, not a stuck CI job.
fn run_binary(args: &[&str], deadline: Duration) -> (Option<i32>, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dli-gitops");
    // Drain both pipes while waiting: a child that fills a pipe nobody reads blocks forever.
    let mut stdout_pipe = child.stdout.take().expect("stdout pipe");
    let mut stderr_pipe = child.stderr.take().expect("stderr pipe");
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout_pipe, &mut bytes);
        bytes
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr_pipe, &mut bytes);
        bytes
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dli-gitops {args:?} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status,
        stdout: stdout_reader.join().unwrap_or_default(),
        stderr: stderr_reader.join().unwrap_or_default(),
    };
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A copy of the example repository with real hostile entries: job files that reference a
/// symlink to a secret outside the repository, a file over the size limit, a named pipe and a
/// path that climbs out; a symlink loop; a directory nested 1000 levels deep. `validate` must
/// finish, fail with every problem named, and never print the secret.
#[test]
fn hostile_repository_on_disk_is_refused_with_every_problem_and_no_leak() {
    let temp = tempfile::tempdir().expect("temp dir");
    let repo = temp.path().join("repo");
    copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs"),
        &repo,
    );
    let marker = "TOP-SECRET-MARKER-5b1c0e";
    let outside = temp.path().join("outside-secret.txt");
    std::fs::write(&outside, format!("{marker}\n")).expect("write secret");
    let flink = repo.join("flink");
    std::os::unix::fs::symlink(&outside, flink.join("stolen.sql")).expect("symlink");
    std::os::unix::fs::symlink("../../outside-secret.txt", flink.join("relative.sql"))
        .expect("relative symlink");
    std::os::unix::fs::symlink(".", flink.join("loop")).expect("loop symlink");
    let huge = std::fs::File::create(flink.join("huge.sql")).expect("huge file");
    huge.set_len(5 * 1024 * 1024).expect("grow huge file");
    let fifo = flink.join("pipe.sql");
    let made_fifo = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|status| status.success());
    let mut deep = repo.join("deep");
    for _ in 0..1000 {
        deep.push("d");
    }
    // Paths this long fail in some tools; the walk must report or skip them, not crash.
    let deep_made = std::fs::create_dir_all(&deep).is_ok();
    if deep_made {
        let _ = std::fs::write(deep.join("job.yaml"), "kind: FlinkSqlJob\nname: deep\n");
    }
    let jobs = [
        ("stolen", "stolen.sql"),
        ("relative", "relative.sql"),
        ("huge", "huge.sql"),
        ("piped", "pipe.sql"),
        ("climber", "../../outside-secret.txt"),
    ];
    for (name, sql_file) in jobs {
        std::fs::write(
            flink.join(format!("{name}.yaml")),
            format!(
                "kind: FlinkSqlJob\nname: {name}\nqueue_name: q\nsql_file: {sql_file}\ndesired_state: running\n"
            ),
        )
        .expect("write job");
    }

    let (code, stdout, stderr) = run_binary(
        &["validate", "--repo", repo.to_str().expect("utf-8 path")],
        Duration::from_secs(120),
    );
    let all = format!("{stdout}\n{stderr}");
    assert!(
        !all.contains(marker),
        "the secret outside the repository leaked:\n{all}"
    );
    assert_ne!(code, Some(0), "a hostile repository validated:\n{all}");
    assert!(code.is_some(), "validate was killed by a signal:\n{all}");
    if deep_made {
        assert!(
            all.contains("/d/d/d/job.yaml"),
            "the job file 1000 directories down was not read:\n{all}"
        );
    }
    for (name, _) in jobs {
        if name == "piped" && !made_fifo {
            continue;
        }
        assert!(
            all.contains(&format!("flink/{name}.yaml")),
            "no problem reported for flink/{name}.yaml:\n{all}"
        );
    }
    if made_fifo {
        assert!(
            all.contains("`flink/pipe.sql` is not a regular file (it is a named pipe)"),
            "the named pipe was not reported as what it is:\n{all}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile zips against the emulator's DLI import endpoint, over HTTP with the real client

use dli_gitops::bundle::{self, ZipLimits};
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, EmulatorHandle,
};
use dli_gitops::model::{FlinkJobConfig, JobKind};
use std::io::Write as _;

const STAGING_BUCKET: &str = "dli-gitops-staging";

fn emulator_client(handle: &EmulatorHandle) -> DliClient {
    let credentials = Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.into(),
        secret_key: Secret::new(DEV_SECRET_KEY),
        security_token: None,
    };
    let options = ClientOptions {
        requests_per_second: 0.0,
        retry: RetryPolicy {
            max_attempts: 2,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        },
        ..ClientOptions::default()
    };
    DliClient::new(
        Url::parse(&handle.dli_url()).expect("emulator url"),
        DEV_PROJECT_ID,
        credentials,
        options,
    )
    .expect("client")
}

fn put_object(handle: &EmulatorHandle, key: &str, bytes: &[u8]) {
    let path = handle.data_dir().join("obs").join(STAGING_BUCKET).join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("object directory");
    std::fs::write(path, bytes).expect("write object");
}

fn sql_config() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("q1".into());
    config.sql_body = Some("SELECT 1;".into());
    config
}

/// The entries of a genuine export (made once per test run by `export_entries`), to which a
/// case adds its hostile entries: the emulator, like DLI, imports only what it exported.
static GENUINE_EXPORT: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();

/// Exports a job named "smuggled" from the emulator, keeps its zip's entries and deletes the
/// job again, so that an import of those entries alone would create it.
async fn export_entries(client: &DliClient, handle: &EmulatorHandle) {
    let job_id = client
        .create_sql_job("smuggled", &sql_config())
        .await
        .expect("create the job to export");
    let zips = client
        .export_jobs(&format!("obs://{STAGING_BUCKET}/genuine/"), Some(&[job_id]))
        .await
        .expect("export");
    let bytes = std::fs::read(handle.data_dir().join("obs").join(&zips[0])).expect("read export");
    client
        .delete_job(job_id)
        .await
        .expect("delete the exported job");
    let entries = bundle::read_zip_entries(&bytes, &ZipLimits::default())
        .expect("read back")
        .into_iter()
        .map(|entry| (entry.path, entry.bytes))
        .collect();
    let _ = GENUINE_EXPORT.set(entries);
}

/// The entries of a valid (genuinely exported) bundle.
fn valid_entries(_names: &[&str]) -> Vec<(String, Vec<u8>)> {
    GENUINE_EXPORT
        .get()
        .expect("export_entries ran first")
        .clone()
}

#[derive(Clone, Copy)]
enum Packing {
    Stored,
    Deflated,
}

enum HostileEntry {
    File(String, Vec<u8>, Packing),
    Symlink(String, String),
}

fn build_zip(entries: &[HostileEntry]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for entry in entries {
        match entry {
            HostileEntry::File(name, bytes, packing) => {
                let method = match packing {
                    Packing::Stored => zip::CompressionMethod::Stored,
                    Packing::Deflated => zip::CompressionMethod::Deflated,
                };
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(method)
                    .large_file(bytes.len() > u32::MAX as usize);
                writer
                    .start_file(name.as_str(), options)
                    .expect("start entry");
                writer.write_all(bytes).expect("write entry");
            }
            HostileEntry::Symlink(name, target) => {
                writer
                    .add_symlink(
                        name.as_str(),
                        target.as_str(),
                        zip::write::SimpleFileOptions::default(),
                    )
                    .expect("symlink entry");
            }
        }
    }
    writer.finish().expect("finish zip").into_inner()
}

/// A valid bundle for `names` plus `extra` entries.
fn bundle_with(names: &[&str], extra: Vec<HostileEntry>) -> Vec<u8> {
    let mut entries: Vec<HostileEntry> = valid_entries(names)
        .into_iter()
        .map(|(path, bytes)| HostileEntry::File(path, bytes, Packing::Deflated))
        .collect();
    entries.extend(extra);
    build_zip(&entries)
}

fn file(name: &str, bytes: Vec<u8>, packing: Packing) -> HostileEntry {
    HostileEntry::File(name.to_string(), bytes, packing)
}

/// Every hostile zip (each also carrying a valid job, "smuggled-N"), for the DLI import and for
/// the DLF import, is refused with a client error; nothing is imported, not even the valid job beside the hostile entry; the existing
/// job is untouched; no file appears outside the emulator's data directory; the service keeps
/// serving.
#[tokio::test]
async fn hostile_zips_are_refused_by_the_import_endpoint_and_change_nothing() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let handle = Emulator::start(EmulatorConfig::for_tests(data_dir.clone()))
        .await
        .expect("emulator starts");
    let client = emulator_client(&handle);

    export_entries(&client, &handle).await;
    let keeper_id = client
        .create_sql_job("keeper", &sql_config())
        .await
        .expect("create the keeper");
    let before = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect("list");
    let keeper_before = client.job_detail(keeper_id).await.expect("keeper detail");

    let zeros = |bytes: usize| vec![0u8; bytes];
    let limits = ZipLimits::default();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "path traversal",
            bundle_with(
                &["smuggled-1"],
                vec![file(
                    "jobs/../../../../evil-traversal.json",
                    b"{}".to_vec(),
                    Packing::Stored,
                )],
            ),
        ),
        (
            "backslash traversal",
            bundle_with(
                &["smuggled-2"],
                vec![file(
                    "jobs\\..\\..\\evil-backslash.json",
                    b"{}".to_vec(),
                    Packing::Stored,
                )],
            ),
        ),
        (
            "absolute path",
            bundle_with(
                &["smuggled-3"],
                vec![file(
                    "/tmp/evil-absolute.json",
                    b"{}".to_vec(),
                    Packing::Stored,
                )],
            ),
        ),
        (
            "drive letter",
            bundle_with(
                &["smuggled-4"],
                vec![file("C:/evil-drive.json", b"{}".to_vec(), Packing::Stored)],
            ),
        ),
        (
            "symlink entry",
            bundle_with(
                &["smuggled-5"],
                vec![HostileEntry::Symlink(
                    "jobs/link.json".into(),
                    "/etc/passwd".into(),
                )],
            ),
        ),
        (
            "zip bomb by ratio (4 MiB of zeros, deflated)",
            bundle_with(
                &["smuggled-6"],
                vec![file("jobs/bomb.json", zeros(4 << 20), Packing::Deflated)],
            ),
        ),
        (
            "zip bomb by size (one entry over the per-entry limit)",
            bundle_with(
                &["smuggled-7"],
                vec![file(
                    "jobs/big.json",
                    // Low-entropy text, below the ratio limit, above the entry limit.
                    (0..limits.max_entry_bytes + 4096)
                        .map(|i| {
                            b"0123456789abcdef"[((i * 7919) % 16) as usize] ^ ((i >> 12) as u8 & 1)
                        })
                        .collect(),
                    Packing::Deflated,
                )],
            ),
        ),
        (
            "thousands of entries",
            bundle_with(
                &["smuggled-8"],
                (0..limits.max_entries + 500)
                    .map(|index| {
                        file(
                            &format!("extra/{index}.txt"),
                            b"x".to_vec(),
                            Packing::Stored,
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "duplicate entry (the same path spelled `./` and with `\\`)",
            bundle_with(
                &["smuggled-9"],
                valid_entries(&["smuggled-9"])
                    .into_iter()
                    .flat_map(|(path, bytes)| {
                        let mut spellings =
                            vec![file(&format!("./{path}"), bytes.clone(), Packing::Stored)];
                        if path.contains('/') {
                            spellings.push(file(&path.replace('/', "\\"), bytes, Packing::Stored));
                        }
                        spellings
                    })
                    .collect(),
            ),
        ),
        ("truncated archive", {
            let whole = bundle_with(&["smuggled-10"], vec![]);
            whole[..whole.len() / 2].to_vec()
        }),
        (
            "not a zip at all",
            b"PK\x03\x04 this is not really a zip".to_vec(),
        ),
        ("empty object", Vec::new()),
    ];

    let mut failures = Vec::new();
    for (index, (name, bytes)) in cases.iter().enumerate() {
        let key = format!("hostile/case-{index}.zip");
        put_object(&handle, &key, bytes);
        match client
            .import_jobs(&format!("{STAGING_BUCKET}/{key}"), true)
            .await
        {
            Ok(mapping) => failures.push(format!("{name}: imported {mapping:?}")),
            Err(error) => {
                let status = error.status();
                if !status.is_some_and(|status| (400..500).contains(&status)) {
                    failures.push(format!("{name}: not a client error: {error}"));
                }
                if error.is_retryable() {
                    failures.push(format!("{name}: refused as retryable: {error}"));
                }
            }
        }
    }

    // A folder import where one zip is fine and the next is hostile: all or nothing.
    put_object(
        &handle,
        "folder/a-good.zip",
        &bundle_with(&["smuggled-11"], vec![]),
    );
    put_object(&handle, "folder/b-bad.zip", &cases[0].1);
    if let Ok(mapping) = client
        .import_jobs(&format!("{STAGING_BUCKET}/folder"), true)
        .await
    {
        failures.push(format!("folder with one hostile zip: imported {mapping:?}"));
    }

    // The same attacks on a DataArts Factory bundle, through the DLF import.
    let dlf = dli_gitops::cloud::DlfClient::new(
        Url::parse(&handle.dlf_url()).expect("dlf url"),
        DEV_PROJECT_ID,
        Credentials::AkSk {
            access_key: DEV_ACCESS_KEY.into(),
            secret_key: Secret::new(DEV_SECRET_KEY),
            security_token: None,
        },
        ClientOptions {
            requests_per_second: 0.0,
            ..ClientOptions::default()
        },
        None,
    )
    .expect("dlf client");
    let dlf_valid: Vec<HostileEntry> = {
        let job = dli_gitops::bundle::DlfJobEntry {
            name: "smuggled-dlf".into(),
            job: serde_json::json!({"name": "smuggled-dlf", "processType": "BATCH", "nodes": []}),
            scripts: Default::default(),
            resources: Default::default(),
        };
        let zip = bundle::write_dlf_zip(&[job]).expect("dlf bundle");
        bundle::read_zip_entries(&zip, &ZipLimits::default())
            .expect("read back")
            .into_iter()
            .map(|entry| file(&entry.path, entry.bytes, Packing::Deflated))
            .collect()
    };
    let dlf_cases: Vec<(&str, Vec<HostileEntry>)> = vec![
        (
            "dlf path traversal",
            vec![file(
                "jobs/../../evil-dlf.job",
                b"{}".to_vec(),
                Packing::Stored,
            )],
        ),
        (
            "dlf absolute path",
            vec![file(
                "/tmp/evil-dlf-absolute.job",
                b"{}".to_vec(),
                Packing::Stored,
            )],
        ),
        (
            "dlf symlink",
            vec![HostileEntry::Symlink(
                "scripts/evil.script".into(),
                "/etc/shadow".into(),
            )],
        ),
        (
            "dlf ratio bomb",
            vec![file(
                "scripts/bomb.script",
                zeros(4 << 20),
                Packing::Deflated,
            )],
        ),
        (
            "dlf thousands of entries",
            (0..limits.max_entries + 10)
                .map(|index| {
                    file(
                        &format!("resources/{index}.res"),
                        b"x".to_vec(),
                        Packing::Stored,
                    )
                })
                .collect(),
        ),
    ];
    for (index, (name, extra)) in dlf_cases.into_iter().enumerate() {
        let mut entries: Vec<HostileEntry> = dlf_valid
            .iter()
            .map(|entry| match entry {
                HostileEntry::File(path, bytes, packing) => {
                    HostileEntry::File(path.clone(), bytes.clone(), *packing)
                }
                HostileEntry::Symlink(path, target) => {
                    HostileEntry::Symlink(path.clone(), target.clone())
                }
            })
            .collect();
        entries.extend(extra);
        let key = format!("hostile/dlf-{index}.zip");
        put_object(&handle, &key, &build_zip(&entries));
        let request = dli_gitops::cloud::DlfImportRequest {
            path: format!("obs://{STAGING_BUCKET}/{key}"),
            same_name_policy: "OVERWRITE".into(),
            jobs_params: Vec::new(),
            settings: Default::default(),
        };
        match dlf.import_jobs(&request).await {
            Ok(task) => {
                // Accepted for processing: the task itself must fail and import nothing.
                if let Ok(done) = dlf.wait_system_task(&task, Duration::from_secs(30)).await {
                    failures.push(format!("{name}: import task {task} ended {done:?}"));
                }
            }
            Err(error) => {
                if !error
                    .status()
                    .is_some_and(|status| (400..500).contains(&status))
                    || error.is_retryable()
                {
                    failures.push(format!("{name}: not a permanent client error: {error}"));
                }
            }
        }
    }
    let dlf_jobs = dlf
        .list_jobs(&dli_gitops::cloud::DlfListJobsQuery::default())
        .await
        .expect("dlf list");
    if !dlf_jobs.is_empty() {
        failures.push(format!("DLF jobs were imported: {dlf_jobs:?}"));
    }

    let after = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect("the emulator still serves");
    let names = |jobs: &[dli_gitops::cloud::ListedFlinkJob]| {
        jobs.iter().map(|job| job.name.clone()).collect::<Vec<_>>()
    };
    if names(&after) != names(&before) {
        failures.push(format!(
            "jobs changed: before {:?}, after {:?}",
            names(&before),
            names(&after)
        ));
    }
    let keeper_after = client.job_detail(keeper_id).await.expect("keeper detail");
    if keeper_after != keeper_before {
        failures.push("the existing job changed".to_string());
    }
    let mut escaped = Vec::new();
    find_files_named_evil(temp.path(), &mut escaped);
    if !escaped.is_empty() {
        failures.push(format!("files written by hostile entries: {escaped:?}"));
    }
    for path in ["/tmp/evil-absolute.json", "/evil-traversal.json"] {
        if std::path::Path::new(path).exists() {
            failures.push(format!("{path} exists"));
        }
    }
    handle.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn find_files_named_evil(directory: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            find_files_named_evil(&path, found);
        } else if entry.file_name().to_string_lossy().starts_with("evil") {
            found.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Corrupted journals through `dli-gitops journal verify` and `journal show`

use dli_gitops::journal::{
    Intent, JOURNAL_FILE, Journal, JournalOptions, RecordBody, SNAPSHOT_FILE,
};

fn write_valid_journal(state_dir: &std::path::Path, records: usize) -> Vec<u8> {
    let (journal, _) = Journal::open(state_dir, JournalOptions::default()).expect("open");
    for index in 0..records {
        journal
            .append(
                "dev",
                RecordBody::Intent(Intent {
                    action_id: format!("action-{index}"),
                    job: format!("job-{index}"),
                    action: "create".into(),
                    plan_id: None,
                    detail: serde_json::Value::Null,
                    extra: serde_json::Map::new(),
                }),
            )
            .expect("append");
    }
    drop(journal);
    std::fs::read(state_dir.join(JOURNAL_FILE)).expect("journal bytes")
}

/// A damaged state directory: name, journal bytes, snapshot bytes, whether `verify` must fail,
/// and a fragment its report must contain.
type JournalCase<'a> = (&'a str, Vec<u8>, Option<Vec<u8>>, bool, &'a str);

/// Each damaged state directory: `journal verify` and `journal show` finish (no panic, no
/// hang), exit non-zero where there is damage, name the file (and the line where there is
/// one), and leave every file exactly as it was: inspection never repairs.
#[test]
fn corrupted_journals_are_reported_by_the_cli_and_never_modified() {
    let temp = tempfile::tempdir().expect("temp dir");
    let template = temp.path().join("template");
    let valid = write_valid_journal(&template, 6);
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            valid
                .iter()
                .enumerate()
                .filter(|(_, byte)| **byte == b'\n')
                .map(|(at, _)| at + 1),
        )
        .collect();
    let flip = |line: usize| {
        let mut bytes = valid.clone();
        bytes[line_starts[line - 1] + 12] ^= 0x04;
        bytes
    };
    let mut long_line = valid.clone();
    long_line.extend(std::iter::repeat_n(b'x', 9 * 1024 * 1024));
    long_line.push(b'\n');
    long_line.extend_from_slice(&valid[line_starts[5]..]);

    // (name, journal bytes, snapshot bytes, damaged, a fragment the report must contain)
    let cases: Vec<JournalCase<'_>> = vec![
        ("byte flipped in line 3", flip(3), None, true, ":3"),
        ("byte flipped in line 1", flip(1), None, true, ":1"),
        (
            "a record line 9 MiB long in the middle",
            long_line,
            None,
            true,
            "journal.jsonl",
        ),
        // A crash tears only the final line: garbage of many lines is damage from its first
        // line on, never a torn tail (RELIABILITY.md, finding 4).
        (
            "binary garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            None,
            true,
            ":1:",
        ),
        (
            "two garbage lines after intact records",
            [valid.clone(), b"\x00\x00garbage\n{\"v\":1}\n".to_vec()].concat(),
            None,
            true,
            ":7:",
        ),
        (
            "one garbage line after intact records",
            [valid.clone(), b"\x00\x00garbage\n".to_vec()].concat(),
            None,
            false,
            "torn tail",
        ),
        (
            "snapshot that is not JSON",
            valid.clone(),
            Some(b"{\"seq\": 3, ".to_vec()),
            true,
            "snapshot",
        ),
        (
            "snapshot ahead of a journal that starts later",
            valid[line_starts[3]..].to_vec(),
            Some(b"{}".to_vec()),
            true,
            "snapshot",
        ),
    ];
    let mut failures = Vec::new();
    for (index, (name, journal, snapshot, damaged, says)) in cases.into_iter().enumerate() {
        let state_dir = temp.path().join(format!("case-{index}"));
        std::fs::create_dir_all(&state_dir).expect("state dir");
        std::fs::write(state_dir.join(JOURNAL_FILE), &journal).expect("journal");
        if let Some(snapshot) = &snapshot {
            std::fs::write(state_dir.join(SNAPSHOT_FILE), snapshot).expect("snapshot");
        }
        let state_arg = state_dir.to_str().expect("utf-8");
        for command in [
            vec!["journal", "verify", "--state-dir", state_arg],
            vec!["journal", "show", "--state-dir", state_arg],
        ] {
            let (code, stdout, stderr) = run_binary(&command, Duration::from_secs(60));
            let all = format!("{stdout}{stderr}");
            if code == Some(101) || all.contains("panicked") {
                failures.push(format!("{name}: `{}` panicked:\n{all}", command[1]));
            }
            if code.is_none() {
                failures.push(format!("{name}: `{}` killed by a signal", command[1]));
            }
            if command[1] == "verify" && damaged && code == Some(0) {
                failures.push(format!("{name}: verify passed:\n{all}"));
            }
            if command[1] == "verify" && !all.contains(says) {
                failures.push(format!(
                    "{name}: verify's report does not say {says:?}:\n{all}"
                ));
            }
        }
        if std::fs::read(state_dir.join(JOURNAL_FILE)).ok().as_ref() != Some(&journal) {
            failures.push(format!("{name}: the journal file was modified"));
        }
        if let Some(snapshot) = &snapshot
            && std::fs::read(state_dir.join(SNAPSHOT_FILE)).ok().as_ref() != Some(snapshot)
        {
            failures.push(format!("{name}: the snapshot was modified"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
