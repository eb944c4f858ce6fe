//! Tokens for telar systems: Ed25519 signing keys with rotation and a published JWKS (the
//! identity service signs with a [`KeyRing`]), and a [`Verifier`] every other service uses —
//! JWKS fetched and cached, refetched (rate-limited) on an unknown key id; `exp`, `iss` and `aud`
//! required; clock skew at most 30 s; only EdDSA accepted (never `none`, never an HMAC keyed with a
//! published key).

mod claims;
mod extract;
mod keys;
mod verifier;

pub use claims::Claims;
pub use extract::{Authenticated, Permission, RequirePermission, RequireRole, Role, authenticate};
pub use jsonwebtoken::jwk::{AlgorithmParameters as JwkAlgorithm, JwkSet};
pub use keys::{KeyRing, SigningKey};
pub use verifier::{AuthError, Verifier, VerifierConfig};
