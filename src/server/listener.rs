//! The accept loop behind the HTTP server, hardened against clients that hold connections open:
//!
//! * a **header-read timeout**: a connection that has not sent a complete request head within
//!   `header_read_timeout` of connecting, or of its previous response (an idle keep-alive
//!   connection), is closed;
//! * a **request timeout**: a handler (including reading a request body) that takes longer than
//!   `request_timeout` is answered 408;
//! * a **connection cap**: at most `max_connections` connections are served at once. At the cap,
//!   a new connection closes the oldest *idle* one (no request in flight), so a crowd of idle
//!   connections can never lock out `/healthz`; when every connection is busy, the new one is
//!   answered 503 and closed. The default cap is a quarter of the process's open-file limit
//!   (at most 256), so the server alone can never exhaust the descriptors git and the journal need;
//! * an accept that fails for want of descriptors (`EMFILE`, `ENFILE`) closes the oldest idle
//!   connection and retries after a short pause, instead of spinning or giving up.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; more close the oldest idle one.
    pub max_connections: usize,
    /// Time allowed for a complete request head, from the connection's start or its previous
    /// response (so also the idle timeout of a keep-alive connection).
    pub header_read_timeout: Duration,
    /// Time allowed for a handler, body included; then 408.
    pub request_timeout: Duration,
    /// After shutdown is asked, time allowed for requests in flight before the rest are cut.
    pub drain_timeout: Duration,
}

/// The most connections the default cap allows, whatever the open-file limit.
pub const MAX_CONNECTIONS_CEILING: usize = 256;
/// The fewest connections the default cap allows, whatever the open-file limit.
pub const MAX_CONNECTIONS_FLOOR: usize = 8;

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_connections: default_max_connections(open_file_limit()),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// A quarter of the open-file limit, within `MAX_CONNECTIONS_FLOOR..=MAX_CONNECTIONS_CEILING`.
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => usize::try_from(limit / 4)
            .unwrap_or(MAX_CONNECTIONS_CEILING)
            .clamp(MAX_CONNECTIONS_FLOOR, MAX_CONNECTIONS_CEILING),
        None => MAX_CONNECTIONS_CEILING / 2,
    }
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc/self/limits` (Linux); `None` when
/// unknown or unlimited.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One served connection, as the accept loop sees it.
struct Entry {
    /// Requests being handled on it now; 0 is idle.
    in_flight: Arc<AtomicUsize>,
    /// Closes it at once.
    close: Arc<Notify>,
}

#[derive(Default)]
struct Connections {
    next_id: u64,
    /// By id, so by age: the first idle entry is the oldest idle connection.
    open: BTreeMap<u64, Entry>,
}

impl Connections {
    /// Closes the oldest idle connection; false when every connection is busy.
    fn evict_oldest_idle(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .find(|(_, entry)| entry.in_flight.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(entry) => {
                entry.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight while alive.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether an accept error means the process (or system) ran out of descriptors or buffers.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux numbering; other systems map these
    // through `raw_os_error` too, and an unmatched code only means a plain retry).
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Serves `router` on `listener` with `limits` until `shutdown` resolves, then lets requests in
/// flight finish (at most `drain_timeout`) and closes every connection.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let connections = Arc::new(Mutex::new(Connections::default()));
    let (stop_sender, stop) = watch::channel(false);
    let live = Arc::new(AtomicUsize::new(0));
    let all_closed = Arc::new(Notify::new());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_resource_exhaustion(&error) => {
                let evicted = connections
                    .lock()
                    .expect("not poisoned")
                    .evict_oldest_idle();
                tracing::warn!(
                    %error,
                    evicted_idle_connection = evicted,
                    "the HTTP server could not accept a connection: out of file descriptors"
                );
                tokio::time::sleep(Duration::from_millis(if evicted { 10 } else { 200 })).await;
                continue;
            }
            // A connection reset before it was accepted, and the like: the next one is fine.
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        let id = {
            let mut open = connections.lock().expect("not poisoned");
            if open.open.len() >= limits.max_connections && !open.evict_oldest_idle() {
                drop(open);
                tokio::spawn(refuse_busy(stream));
                continue;
            }
            let id = open.next_id;
            open.next_id += 1;
            open.open.insert(
                id,
                Entry {
                    in_flight: in_flight.clone(),
                    close: close.clone(),
                },
            );
            id
        };
        live.fetch_add(1, Ordering::SeqCst);
        let task = ConnectionTask {
            stream,
            router: router.clone(),
            limits,
            in_flight,
            close,
            stop: stop.clone(),
        };
        let connections = connections.clone();
        let live = live.clone();
        let all_closed = all_closed.clone();
        tokio::spawn(async move {
            task.run().await;
            connections.lock().expect("not poisoned").open.remove(&id);
            if live.fetch_sub(1, Ordering::SeqCst) == 1 {
                all_closed.notify_waiters();
            }
        });
    }
    drop(listener);
    let _ = stop_sender.send(true);
    let drained = async {
        loop {
            let notified = all_closed.notified();
            if live.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(limits.drain_timeout, drained)
        .await
        .is_err()
    {
        let mut open = connections.lock().expect("not poisoned");
        for (_, entry) in std::mem::take(&mut open.open) {
            entry.close.notify_one();
        }
    }
    Ok(())
}

/// Every connection is busy: a short 503 and close, without reading the request.
async fn refuse_busy(mut stream: TcpStream) {
    let body = "every connection of this server is busy; retry in a moment\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

struct ConnectionTask {
    stream: TcpStream,
    router: Router,
    limits: ServerLimits,
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
    stop: watch::Receiver<bool>,
}

impl ConnectionTask {
    async fn run(self) {
        let ConnectionTask {
            stream,
            router,
            limits,
            in_flight,
            close,
            mut stop,
        } = self;
        let inner = TowerToHyperService::new(router);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = InFlight::new(&in_flight);
            let call = hyper::service::Service::call(&inner, request.map(Body::new));
            async move {
                let _guard = guard;
                match tokio::time::timeout(limits.request_timeout, call).await {
                    Ok(Ok(response)) => Ok::<_, Infallible>(response),
                    Ok(Err(never)) => match never {},
                    Err(_) => Ok(request_timed_out(limits.request_timeout)),
                }
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let mut draining = *stop.borrow();
        if draining {
            connection.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                () = close.notified() => return,
                changed = stop.changed(), if !draining => {
                    draining = true;
                    if changed.is_ok() {
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

fn request_timed_out(limit: Duration) -> Response<Body> {
    let mut response = Response::new(Body::from(format!(
        "{{\"error\":\"the request took longer than {} s and was cut off\"}}",
        limit.as_secs()
    )));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_a_quarter_of_the_descriptors_within_bounds() {
        assert_eq!(default_max_connections(Some(256)), 64);
        assert_eq!(default_max_connections(Some(1024)), 256);
        assert_eq!(
            default_max_connections(Some(1 << 20)),
            MAX_CONNECTIONS_CEILING
        );
        assert_eq!(default_max_connections(Some(16)), MAX_CONNECTIONS_FLOOR);
        assert_eq!(default_max_connections(None), 128);
    }

    #[test]
    fn the_open_file_limit_is_read() {
        if std::path::Path::new("/proc/self/limits").exists() {
            assert!(open_file_limit().is_some_and(|limit| limit > 0));
        }
    }
}
