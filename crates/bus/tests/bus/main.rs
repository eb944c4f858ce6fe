//! The bus conformance suite: every test runs against every backend (`conformance!` below).
//! Backends: the embedded SQLite bus, NATS JetStream and RabbitMQ (on the running servers).

mod admin;
mod helpers;
mod kill;
mod outbox_inbox;
mod reconnect;
mod suite;
