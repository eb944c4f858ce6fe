//! Durable sagas.
//!
//! **Orchestrated**: a [`Saga`] is an ordered list of named steps, each an async action with an
//! optional compensation. The [`SagaEngine`] writes the saga's state and every step's outcome
//! before the next step runs, so a killed process resumes (or compensates) on restart. A step
//! gets a stable idempotency key (`saga id:step`) and the outputs of earlier steps; it is run at
//! least once, so its effects must be keyed by that idempotency key. A failed step compensates
//! the completed ones in reverse; a compensation that keeps failing parks the saga as
//! `NeedsAttention` with the reason.

mod admin;
mod choreography;
mod definition;
mod engine;
mod error;
mod routes;
mod schema;
mod state;

pub use admin::SagaAdmin;
pub use choreography::{Choreography, Ending, LogFilter, SagaLogEntry, TrackedSaga, Tracker};
pub use definition::{RetryPolicy, Saga, Step, StepContext, StepError};
pub use engine::SagaEngine;
pub use error::{Error, Result};
pub use routes::{saga_log_routes, saga_routes};
pub use state::{SagaRecord, SagaStatus, StepLogEntry};
