//! The bus conformance suite: every test runs against every backend (`conformance!` below).
//! Today: the embedded SQLite bus. NATS JetStream and RabbitMQ join with one line each.

mod admin;
mod helpers;
mod outbox_inbox;
mod suite;
