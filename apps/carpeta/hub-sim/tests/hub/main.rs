//! hub-sim against the hub contract, over HTTP, on SQLite and on the running PostgreSQL.

mod helpers;

mod bad_input;
mod citizens;
mod control;
mod documents;
mod operators;
