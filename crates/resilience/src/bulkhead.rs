//! The bulkhead: at most N calls at once, at most Q waiting; beyond that a call is refused at
//! once instead of piling up (memory and latency stay bounded when an upstream slows down).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead `{0}` is full")]
pub struct BulkheadFull(pub String);

#[derive(Clone)]
pub struct Bulkhead {
    name: String,
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// Held while the call runs.
pub struct BulkheadPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Bulkhead {
    pub fn new(name: impl Into<String>, max_concurrent: usize, max_waiting: usize) -> Self {
        Bulkhead {
            name: name.into(),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
        }
    }

    /// A slot now, or after waiting in a queue that still has room, or `BulkheadFull`.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(BulkheadPermit(permit));
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("bulkhead_rejected", "bulkhead" => self.name.clone()).increment(1);
            return Err(BulkheadFull(self.name.clone()));
        }
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit
            .map(BulkheadPermit)
            .map_err(|_| BulkheadFull(self.name.clone()))
    }

    /// Runs `call` in a slot.
    pub async fn call<T>(&self, call: impl Future<Output = T>) -> Result<T, BulkheadFull> {
        let _permit = self.acquire().await?;
        Ok(call.await)
    }
}
