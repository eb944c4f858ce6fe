//! The kit's behaviour as a client sees it, over real HTTP on a loopback port.

mod helpers;

mod docs;
mod errors;
mod lifecycle;
mod limits;
mod negotiation;
mod observability;
