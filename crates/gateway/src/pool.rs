//! Keep-alive connections to one upstream instance, pooled per gateway worker: a request takes an
//! idle connection of its own event loop (or opens one), and the connection goes back when the
//! response body has been read to its end. No shared lock is contended and no task crosses
//! threads (hyper-util's general-purpose pool costs about a tenth of a proxied request).

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// Idle connections kept per worker and instance.
const MAX_IDLE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened: nothing was sent.
    #[error("connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    /// The exchange failed after the request started.
    #[error("upstream exchange: {0}")]
    Exchange(#[from] hyper::Error),
}

impl SendError {
    /// Whether the request body was cut off for being too large (the client's fault).
    pub fn body_too_large(&self) -> bool {
        let mut source = self.source();
        while let Some(cause) = source {
            if cause.is::<http_body_util::LengthLimitError>() {
                return true;
            }
            source = cause.source();
        }
        false
    }
}

type Idle = Mutex<Vec<SendRequest<Body>>>;

pub struct InstancePool {
    /// `host:port`.
    address: String,
    connect_timeout: Duration,
    /// Idle connections, one list per worker.
    idle: Box<[Idle]>,
}

impl InstancePool {
    pub fn new(address: String, connect_timeout: Duration, workers: usize) -> Self {
        InstancePool {
            address,
            connect_timeout,
            idle: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    fn idle(&self) -> &Idle {
        &self.idle[crate::server::current_worker() % self.idle.len()]
    }

    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle().lock().ok()?;
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle().lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let failed = |reason: String| SendError::Connect {
            address: self.address.clone(),
            reason,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection closed");
            }
        });
        Ok(sender)
    }

    /// Sends `request` (origin-form URI, `Host` set) on a pooled or new connection. A pooled
    /// connection that turns out closed before the request left is replaced transparently.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(SendError::Connect {
                    address: self.address.clone(),
                    reason: "connection closed at once".into(),
                });
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = PooledBody::new(body, sender, self.clone());
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: safe to send again, on another connection.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Exchange(error.into_error())),
                },
            }
        }
    }
}

/// An upstream response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    sender: Option<(SendRequest<Body>, Arc<InstancePool>)>,
}

impl PooledBody {
    fn new(inner: Incoming, sender: SendRequest<Body>, pool: Arc<InstancePool>) -> Self {
        let mut body = PooledBody {
            inner,
            sender: Some((sender, pool)),
        };
        if hyper::body::Body::is_end_stream(&body.inner) {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((sender, pool)) = self.sender.take() {
            pool.give_back(sender);
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            // A broken exchange: the connection is not reused (dropping the sender closes it).
            Poll::Ready(Some(Err(_))) => self.sender = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
