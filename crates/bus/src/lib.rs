//! The event bus: publish CloudEvents envelopes durably, consume them by topic pattern and
//! consumer group with retries and dead letters; a transactional outbox to publish from a
//! service's own transaction and an inbox to consume with exactly-once effects.
//!
//! Backends implement [`Backend`]; [`Bus`] is the cheap handle services hold. The embedded
//! backend is a SQLite log with group commit ([`EmbeddedBus`]).

mod admin;
mod broker;
mod bus;
mod config;
mod consume;
mod dead_letter;
mod dead_letter_sql;
mod embedded;
mod error;
mod handler;
mod inbox;
mod nats;
mod outbox;
mod policy;
mod rabbitmq;
mod topic;

pub use admin::admin_routes;
pub use bus::{Backend, Bus, SubscribeOptions, Subscription};
pub use config::{BusBackend, BusConfig};
pub use dead_letter::{Attempt, DeadLetter, DeadLetterFilter};
pub use embedded::{EmbeddedBus, EmbeddedConfig};
pub use error::{Error, Result};
pub use handler::{Delivery, Handler, Outcome};
pub use inbox::Inbox;
pub use nats::{NatsBus, NatsConfig};
pub use outbox::{Outbox, OutboxRelay};
pub use policy::RetryPolicy;
pub use rabbitmq::{RabbitBus, RabbitConfig};
pub use topic::TopicPattern;
