//! Breakers, retries, timeouts, bulkheads — on tokio's paused clock (no real waiting).

mod breaker;
mod cache;
mod idempotency;
mod limit;
mod lock;
mod penalty;
mod retry;
