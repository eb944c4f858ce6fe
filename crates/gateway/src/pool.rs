//! Keep-alive connections to one upstream instance, pooled per gateway worker: a request takes
//! an idle connection of its own event loop (or opens one) and drives it itself — no connection
//! task, no channel — then gives it back once the response has been read to its end. No lock is
//! contended and nothing crosses threads.
//!
//! An idle connection the upstream has closed is noticed before it is used, without a system
//! call: the event loop marks it readable when the close arrives (an idle HTTP/1.1 connection has
//! nothing else to say), and only then is it read to confirm.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::h1::body::Conn;

/// Idle connections kept per worker and instance.
const MAX_IDLE: usize = 512;
/// Read buffer of a new upstream connection.
const BUFFER: usize = 8 * 1024;

/// An upstream connection taken from the pool or just opened.
pub struct Checkout {
    pub conn: Conn,
    /// It served requests before (and may have been closed by the upstream meanwhile).
    pub reused: bool,
}

pub struct InstancePool {
    /// `host:port`.
    pub address: String,
    connect_timeout: Duration,
    /// Idle connections, one list per worker.
    idle: Box<[Mutex<Vec<Conn>>]>,
}

impl InstancePool {
    pub fn new(address: String, connect_timeout: Duration, workers: usize) -> Self {
        InstancePool {
            address,
            connect_timeout,
            idle: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    fn idle(&self) -> &Mutex<Vec<Conn>> {
        &self.idle[crate::server::current_worker() % self.idle.len()]
    }

    /// An idle connection of this worker that is still open, or a new one.
    pub async fn checkout(&self) -> Result<Checkout, String> {
        if let Ok(mut idle) = self.idle().lock() {
            while let Some(mut conn) = idle.pop() {
                if still_open(&mut conn) {
                    return Ok(Checkout { conn, reused: true });
                }
            }
        }
        self.connect().await.map(|conn| Checkout {
            conn,
            reused: false,
        })
    }

    /// A new connection, within the connect timeout.
    pub async fn connect(&self) -> Result<Conn, String> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(Conn::new(stream, BUFFER))
    }

    /// Keeps a connection whose exchange ended cleanly for this worker's next request.
    pub fn give_back(&self, conn: Conn) {
        if !conn.buffer.is_empty() {
            return;
        }
        if let Ok(mut idle) = self.idle().lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

/// Whether an idle connection can carry a request: the event loop has not seen it become
/// readable (a close, or bytes nobody asked for), or a read finds nothing to read.
fn still_open(conn: &mut Conn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match conn.io.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(conn.io.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn idle_connections_closed_by_the_upstream_are_not_handed_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = InstancePool::new(
            listener.local_addr().unwrap().to_string(),
            Duration::from_secs(1),
            1,
        );
        let first = pool.checkout().await.unwrap();
        assert!(!first.reused);
        let (mut server_side, _) = listener.accept().await.unwrap();
        pool.give_back(first.conn);
        let again = pool.checkout().await.unwrap();
        assert!(again.reused, "an open idle connection is reused");
        pool.give_back(again.conn);
        // The upstream closes it while idle: the next checkout opens a new connection.
        server_side.shutdown().await.unwrap();
        drop(server_side);
        let fresh = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let checkout = pool.checkout().await.unwrap();
                if !checkout.reused {
                    break checkout;
                }
                // The close has not reached the event loop yet.
                pool.give_back(checkout.conn);
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(fresh.is_ok(), "the closed connection kept being handed out");
    }
}
