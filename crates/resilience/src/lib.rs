//! Resilience for outbound calls, written once: circuit breakers (per key), retries with
//! exponential backoff, full jitter and a retry budget, timeouts, bulkheads and fallbacks; keyed
//! rate limiters in memory and in Redis.
//!
//! Time is tokio's clock, so tests drive it with `tokio::time::pause` instead of sleeping.

mod breaker;
mod bulkhead;
mod cache;
mod calls;
mod idempotency;
mod layer;
mod limit;
mod lock;
mod penalty;
mod retry;

pub use breaker::{
    BreakerConfig, BreakerEvent, BreakerState, Breakers, CircuitBreaker, Open, Permit,
};
pub use bulkhead::{Bulkhead, BulkheadFull, BulkheadPermit};
pub use cache::{Cache, CacheStore, MemoryCache, RedisCache};
pub use idempotency::{
    Begin, IDEMPOTENCY_MIGRATION, Idempotency, IdempotencyStore, RedisIdempotency, SqlIdempotency,
    StoredResponse, idempotent,
};
pub use layer::{BreakerError, BreakerLayer, BreakerService};
pub use limit::{Algorithm, Decision, LimitError, Limiter, MemoryLimiter, RedisLimiter, Rule};
pub use lock::{
    Fences, LOCK_MIGRATION, Lease, LockStore, Locks, MemoryLocks, RedisLocks, SqlLocks,
};
pub use penalty::{
    Allowlist, Guard, KeyStatus, MemoryPenalties, PenaltyPolicy, PenaltyStore, RedisPenalties,
    Verdict,
};
pub use retry::{
    Retry, RetryBudget, TimedOut, Transient, fallback, status_is_transient, with_timeout,
};
