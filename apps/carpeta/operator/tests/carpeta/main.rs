//! Carpeta's services against the hub simulator, on SQLite and the embedded bus.

#![allow(clippy::unwrap_used)]

mod citizen;
mod documents;
mod helpers;
mod hub;
mod operator;
mod signing;
mod transfer;
