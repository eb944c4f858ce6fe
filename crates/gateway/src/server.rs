//! The gateway's HTTP/1.1 server: a header-read timeout against slow clients, a cap on header
//! size (431), keep-alive, and a graceful stop that lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::gateway::{Gateway, Peer};

impl Gateway {
    /// Serves on `listener` until `shutdown` resolves; then stops accepting, fails `/ready`, and
    /// waits up to the grace period for open requests.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let edge = self.inner.config.edge;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(edge.header_read_timeout_ms))
            .max_buf_size(edge.max_header_bytes.max(8192))
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
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
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            let peer = Arc::new(Peer::new(peer));
            let service = service_fn(move |request| {
                let (gateway, peer) = (gateway.clone(), peer.clone());
                async move { Ok::<_, Infallible>(gateway.handle(request, &peer).await) }
            });
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "connection closed with an error");
                }
            });
        }
        drop(listener);
        self.inner.draining.store(true, Ordering::Relaxed);
        let grace = Duration::from_millis(self.inner.kit.shutdown_grace_ms);
        tracing::info!(
            service = crate::gateway::NAME,
            "draining in-flight requests"
        );
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                service = crate::gateway::NAME,
                "grace period over; closing remaining connections"
            );
        }
        Ok(())
    }
}
