//! The bus conformance suite: every test runs against every backend (`conformance!` below).
//! Backends: the embedded SQLite bus and NATS JetStream (on the running server).

mod admin;
mod helpers;
mod outbox_inbox;
mod suite;
