//! A raw HTTP/1.1 client over std's TcpStream (no client library between the test and the wire).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// One blocking HTTP/1.1 GET of `path` on `address` over a fresh connection: status and body.
pub fn get(address: &str, path: &str) -> Result<(u16, String), String> {
    http("GET", &format!("http://{address}{path}"), &[], "")
}

/// One blocking HTTP/1.1 request with a text body over a fresh connection, as [`http_bytes`].
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(u16, String), String> {
    http_bytes(method, url, headers, body.as_bytes())
}

/// One blocking HTTP/1.1 request to an `http://host:port/path` URL over a fresh connection
/// (`Connection: close`, `Content-Length`, then `headers`): the status and the body, de-chunked
/// when the answer is chunked. Reads wait up to 30 s. A failed write is not an error by itself:
/// the server may answer (413) and close before reading a large body.
pub fn http_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
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

/// The payload of a chunked transfer-encoded body.
pub fn dechunk(mut text: &str) -> String {
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

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /api/v1/targets/dev` on the daemon at `address`: the target's status, when it answers
/// 200 with JSON.
pub fn target_status(address: &str) -> Option<Value> {
    let (code, body) = get(address, "/api/v1/targets/dev").ok()?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}
