//! The breaker as a tower layer around any HTTP client service (the gateway's upstream calls,
//! a hub client): one breaker per key taken from the request (upstream, endpoint); transport
//! errors and 5xx answers (but 501) count as failures; an open breaker answers at once.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::breaker::{Breakers, Open};
use crate::retry::status_is_transient;

/// What a breaker-wrapped service fails with.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    #[error(transparent)]
    Open(Open),
    #[error(transparent)]
    Inner(E),
}

/// `BreakerLayer::new(breakers, |request| request.uri().host().unwrap_or("").to_owned())`.
pub struct BreakerLayer<K> {
    breakers: Breakers,
    key: Arc<K>,
}

impl<K> Clone for BreakerLayer<K> {
    fn clone(&self) -> Self {
        BreakerLayer {
            breakers: self.breakers.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K> BreakerLayer<K> {
    pub fn new(breakers: Breakers, key: K) -> Self {
        BreakerLayer {
            breakers,
            key: Arc::new(key),
        }
    }
}

impl<S, K> Layer<S> for BreakerLayer<K> {
    type Service = BreakerService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breakers: self.breakers.clone(),
            key: self.key.clone(),
        }
    }
}

pub struct BreakerService<S, K> {
    inner: S,
    breakers: Breakers,
    key: Arc<K>,
}

impl<S: Clone, K> Clone for BreakerService<S, K> {
    fn clone(&self) -> Self {
        BreakerService {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, B, RB> Service<Request<B>> for BreakerService<S, K>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    K: Fn(&Request<B>) -> String + Send + Sync + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BreakerError<S::Error>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context).map_err(BreakerError::Inner)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let breaker = self.breakers.get(&(self.key)(&request));
        // The readied service answers this call; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let permit = breaker.try_acquire().map_err(BreakerError::Open)?;
            match inner.call(request).await {
                Ok(response) => {
                    if status_is_transient(response.status().as_u16()) {
                        permit.failure();
                    } else {
                        permit.success();
                    }
                    Ok(response)
                }
                Err(error) => {
                    permit.failure();
                    Err(BreakerError::Inner(error))
                }
            }
        })
    }
}
