//! Signing keys: Ed25519, identified by `kid`, rotated without breaking tokens in flight — a
//! retired key stays published until every token it signed has expired.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::verifier::AuthError;

/// One key pair. `pkcs8` is secret: persist it encrypted or in the service's secret store.
#[derive(Clone, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    /// PKCS#8 document, base64.
    pkcs8: String,
    /// The public key, base64url (the JWK's `x`).
    pub x: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Stops being published after this (set when it is rotated out).
    pub published_until: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate(now: i64) -> Result<Self, AuthError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| AuthError::Keys("key generation failed".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
            .map_err(|e| AuthError::Keys(e.to_string()))?;
        Ok(SigningKey {
            kid: telar_types::new_id().simple().to_string(),
            pkcs8: STANDARD.encode(document.as_ref()),
            x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            created_at: now,
            published_until: None,
        })
    }

    fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(self.kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: self.x.clone(),
            }),
        }
    }
}

/// The identity service's keys: the newest signs, the others are published until retired.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    /// Longest token lifetime, seconds: how long a rotated-out key stays published.
    pub max_token_lifetime: i64,
}

impl KeyRing {
    pub fn generate(now: i64, max_token_lifetime: i64) -> Result<Self, AuthError> {
        Ok(KeyRing {
            keys: vec![SigningKey::generate(now)?],
            max_token_lifetime,
        })
    }

    fn current(&self) -> Result<&SigningKey, AuthError> {
        self.keys
            .last()
            .ok_or_else(|| AuthError::Keys("no signing key".into()))
    }

    /// Seconds since the current key was created.
    pub fn current_age(&self, now: i64) -> Option<i64> {
        self.keys.last().map(|k| now - k.created_at)
    }

    pub fn current_kid(&self) -> Option<&str> {
        self.keys.last().map(|k| k.kid.as_str())
    }

    /// A new key signs from now on; the old one stays published for `max_token_lifetime`.
    pub fn rotate(&mut self, now: i64) -> Result<(), AuthError> {
        let lifetime = self.max_token_lifetime;
        if let Some(old) = self.keys.last_mut() {
            old.published_until = Some(now + lifetime);
        }
        self.keys.push(SigningKey::generate(now)?);
        Ok(())
    }

    /// Drops keys no longer published.
    pub fn prune(&mut self, now: i64) {
        self.keys
            .retain(|k| k.published_until.is_none_or(|until| until > now));
    }

    /// The public keys to serve at `/.well-known/jwks.json`.
    pub fn jwks(&self, now: i64) -> JwkSet {
        JwkSet {
            keys: self
                .keys
                .iter()
                .filter(|k| k.published_until.is_none_or(|until| until > now))
                .map(SigningKey::jwk)
                .collect(),
        }
    }

    /// Signs `claims` with the current key (`kid` in the header).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let key = self.current()?;
        let der = STANDARD
            .decode(&key.pkcs8)
            .map_err(|e| AuthError::Keys(e.to_string()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
            .map_err(|e| AuthError::Keys(e.to_string()))
    }
}
