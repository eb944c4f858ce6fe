//! The gateway's HTTP/1.1 server: one event loop per core, each serving its connections the way
//! an nginx worker does — read a head (within the header-read timeout, within the size cap), let
//! the gateway answer it, keep the connection for the next one — and a graceful stop that lets
//! in-flight requests finish.
//!
//! The acceptor hands each new connection to the next worker thread, which runs a
//! single-threaded runtime and keeps its own pool of upstream connections: a request never
//! crosses threads, so no task is woken on another core. The protocol itself is in `h1`; why the
//! gateway speaks it itself rather than through hyper is in ADR 0014.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::error::GatewayError;
use crate::gateway::{Gateway, Peer};
use crate::h1::body::Conn;
use crate::h1::head::{HeadError, RequestHead};

thread_local! {
    /// The worker serving on this thread (0 outside workers).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker this code runs on, to pick that worker's upstream connection pool.
pub(crate) fn current_worker() -> usize {
    WORKER.with(Cell::get)
}

/// How many event loops serve connections by default: one per core.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Read buffer of a client connection (grows for larger heads, up to the cap).
const BUFFER: usize = 8 * 1024;
/// How long a closing connection keeps reading (and dropping) what the client still sends, so
/// that the answer is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Open connections, and a signal when the last one closes.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    closed: Notify,
}

/// Counts one open connection until dropped.
struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

type Connection = (std::net::TcpStream, std::net::SocketAddr, OpenGuard);

impl Gateway {
    /// Serves on `listener` until `shutdown` resolves; then stops accepting, fails `/ready`,
    /// closes idle connections and waits up to the grace period for open requests.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let open = Arc::new(Open::default());
        let (drain_tx, drain_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for index in 0..self.inner.workers {
            let (tx, rx) = mpsc::unbounded_channel::<Connection>();
            let signals = (drain_rx.clone(), stop_rx.clone());
            let gateway = self.clone();
            let thread = std::thread::Builder::new()
                .name(format!("telar-gateway-{index}"))
                .spawn(move || gateway.worker(index, rx, signals))?;
            workers.push(tx);
            threads.push(thread);
        }
        tokio::pin!(shutdown);
        let mut next = 0;
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            open.count.fetch_add(1, Ordering::AcqRel);
            next = (next + 1) % workers.len();
            let _ = workers[next].send((stream, peer, OpenGuard(open.clone())));
        }
        drop(listener);
        drop(workers);
        self.inner.draining.store(true, Ordering::Relaxed);
        let _ = drain_tx.send(true);
        tracing::info!(
            service = crate::gateway::NAME,
            "draining in-flight requests"
        );
        let grace = Duration::from_millis(self.inner.kit.shutdown_grace_ms);
        let drained = tokio::time::timeout(grace, async {
            loop {
                let closed = open.closed.notified();
                if open.count.load(Ordering::Acquire) == 0 {
                    break;
                }
                closed.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                service = crate::gateway::NAME,
                "grace period over; closing remaining connections"
            );
        }
        let _ = stop_tx.send(true);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        Ok(())
    }

    /// One event loop: serves the connections it is handed until told to stop.
    fn worker(
        self,
        index: usize,
        mut connections: mpsc::UnboundedReceiver<Connection>,
        (drain, mut stop): (watch::Receiver<bool>, watch::Receiver<bool>),
    ) {
        WORKER.with(|worker| worker.set(index));
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "gateway worker could not start");
                return;
            }
        };
        runtime.block_on(async move {
            // This loop's own copy of the drain signal: connections wait on it between requests
            // without touching a lock another core holds.
            let (local_tx, local_rx) = watch::channel(false);
            let mut drain = drain;
            let forward = async move {
                let _ = drain.wait_for(|draining| *draining).await;
                let _ = local_tx.send(true);
                // Keep the sender alive: a closed channel would read as a change.
                std::future::pending::<()>().await;
            };
            tokio::spawn(forward);
            while let Some((stream, peer, guard)) = connections.recv().await {
                let _ = stream.set_nodelay(true);
                let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                    continue;
                };
                let gateway = self.clone();
                let drain = local_rx.clone();
                tokio::spawn(async move {
                    gateway.connection(stream, Peer::new(peer), drain).await;
                    drop(guard);
                });
            }
            // No more connections: serve the open ones until the drain is over.
            let _ = stop.wait_for(|stop| *stop).await;
        });
    }

    /// Serves one client connection: request after request while both sides keep it open.
    async fn connection(
        self,
        stream: tokio::net::TcpStream,
        peer: Peer,
        mut drain: watch::Receiver<bool>,
    ) {
        let edge = self.inner.config.edge;
        let header_timeout = Duration::from_millis(edge.header_read_timeout_ms);
        let max_head = edge.max_header_bytes.max(1024);
        let mut client = Conn::new(stream, BUFFER);
        let mut out = Vec::with_capacity(BUFFER);
        loop {
            let head = match read_head(&mut client, header_timeout, max_head, &mut drain).await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(error) => {
                    let response = self.inner.errors.render(&error, "");
                    let _ = crate::h1::write::response(
                        &mut client.io,
                        response,
                        false,
                        true,
                        &mut out,
                        header_timeout,
                    )
                    .await;
                    linger(&mut client).await;
                    return;
                }
            };
            let keep = self.serve(&mut client, head, &peer, &mut out).await;
            if !keep || self.inner.draining.load(Ordering::Relaxed) {
                linger(&mut client).await;
                return;
            }
        }
    }
}

/// The next request head: `None` when the client closes, goes quiet for the header-read timeout
/// (mid-head or between requests) or the gateway drains while the connection is idle.
async fn read_head(
    client: &mut Conn,
    timeout: Duration,
    max_head: usize,
    drain: &mut watch::Receiver<bool>,
) -> Result<Option<RequestHead>, GatewayError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let too_large = || GatewayError::HeadersTooLarge { limit: max_head };
    loop {
        if !client.buffer.is_empty() {
            let before = client.buffer.len();
            match RequestHead::parse(&mut client.buffer) {
                Ok(Some(_)) if before - client.buffer.len() > max_head => return Err(too_large()),
                Ok(Some(head)) => return Ok(Some(head)),
                Ok(None) if before > max_head => return Err(too_large()),
                Ok(None) => {}
                Err(HeadError::TooManyFields) => return Err(too_large()),
                Err(HeadError::Invalid(reason)) => {
                    return Err(GatewayError::BadRequest(reason.to_owned()));
                }
            }
        }
        let idle = client.buffer.is_empty();
        tokio::select! {
            biased;
            read = tokio::time::timeout_at(deadline, client.fill(BUFFER)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
                Ok(Ok(_)) => {}
            },
            _ = drain.changed(), if idle => return Ok(None),
        }
    }
}

/// Closes the sending side, then reads and drops what the client still sends for a moment, so
/// that a response sent before its request's body was read is not destroyed by a reset.
async fn linger(client: &mut Conn) {
    let _ = client.io.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(client.io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
