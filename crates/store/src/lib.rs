//! The event store: append-only streams with optimistic concurrency and one global order.
//!
//! `append(stream, expected, events)` is atomic: every event lands or none does, and a version
//! mismatch is [`Error::Conflict`] (HTTP 409 through the kit). Each event gets its stream
//! version (1, 2, …, no gaps) and a global `position`; `read_all(from)` returns events in
//! position order, and a reader never sees position *n + 1* before *n* (appends are serialized:
//! SQLite's write lock, a transaction-scoped advisory lock on PostgreSQL), so a checkpoint
//! "everything up to n" is always true.

mod aggregate;
mod checkpoint;
mod error;
mod event;
mod projection;
mod relay;
mod schema;
mod shred;
mod snapshot;
mod store;
mod stream_index;
pub mod testing;
mod upcast;

pub use aggregate::{Aggregate, CommandError, Loaded, Repository, decode, encode};
pub use checkpoint::{Checkpoint, checkpoints};
pub use error::{Error, Result};
pub use event::{ExpectedVersion, Metadata, NewEvent, RecordedEvent};
pub use projection::{OnError, Projection, ProjectionStatus, Projector, Rebuilt};
pub use relay::{Publish, StoreRelay, envelope};
pub use shred::{REDACTED, Shredder, open_sealed, seal_fields, sealed_key_ids};
pub use store::{Appended, EventStore};
pub use stream_index::StreamIndex;
pub use upcast::{Upcaster, Upcasters};
