//! The vocabulary every telar crate shares: the CloudEvents 1.0 envelope, identifiers and the
//! error classification (`ErrorCode` + `Classify`) that the service kit maps to HTTP once.

mod envelope;
mod envelope_json;
mod error;
mod id;
pub mod json;

pub use envelope::{Envelope, EnvelopeError, SPEC_VERSION};
pub use error::{Classify, ErrorCode};
pub use id::new_id;
