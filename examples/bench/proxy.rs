//! A byte-counting TCP proxy on loopback: every client and the emulator talk through it, so
//! "bytes moved" is what crossed the wire (HTTP headers, bodies, S3 uploads), counted the same
//! way for dli-gitops and for the baselines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes counted so far, both directions.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client → service.
    pub sent: AtomicU64,
    /// Service → client.
    pub received: AtomicU64,
}

impl Counters {
    pub fn total(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) + self.received.load(Ordering::Relaxed)
    }
}

/// A running proxy; dropping the handle leaves it running until [`CountingProxy::stop`].
pub struct CountingProxy {
    pub address: SocketAddr,
    pub counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on `127.0.0.1:0` and forwards every new connection to the address `upstream`
    /// holds at that moment (so the service behind it can be restarted on another port).
    pub async fn start(upstream: Arc<Mutex<SocketAddr>>) -> std::io::Result<CountingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (stop, mut stopped) = watch::channel(false);
        let task_counters = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        let counters = Arc::clone(&task_counters);
                        let upstream = *upstream.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        let mut connection_stopped = stopped.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = connection_stopped.changed() => {}
                                _ = forward(client, upstream, counters) => {}
                            }
                        });
                    }
                }
            }
        });
        Ok(CountingProxy {
            address,
            counters,
            stop,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn total_bytes(&self) -> u64 {
        self.counters.total()
    }

    /// Stops accepting and drops every open connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, counters: Arc<Counters>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let sent = pump(client_read, server_write, Arc::clone(&counters), true);
    let received = pump(server_read, client_write, counters, false);
    // Either side closing ends the connection, as a plain TCP proxy would.
    tokio::select! {
        _ = sent => {}
        _ = received => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counters: Arc<Counters>,
    client_to_server: bool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let counter = if client_to_server {
            &counters.sent
        } else {
            &counters.received
        };
        counter.fetch_add(read as u64, Ordering::Relaxed);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
