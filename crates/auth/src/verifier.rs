//! Verifying tokens against an issuer's JWKS.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use telar_kit::SendTraced;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::claims::Claims;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, expired, wrong audience or issuer, unknown key, forbidden algorithm.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The issuer's keys could not be fetched.
    #[error("token keys unavailable: {0}")]
    Unavailable(String),
    #[error("signing keys: {0}")]
    Keys(String),
}

impl telar_types::Classify for AuthError {
    fn code(&self) -> telar_types::ErrorCode {
        match self {
            AuthError::Invalid(_) => telar_types::ErrorCode::Unauthenticated,
            AuthError::Unavailable(_) => telar_types::ErrorCode::Unavailable,
            AuthError::Keys(_) => telar_types::ErrorCode::Internal,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub issuer: String,
    pub audience: String,
    /// Where the issuer publishes its keys (`None`: only the keys given to `with_keys`).
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp` (at most 30 s).
    pub leeway: Duration,
    /// Unknown key ids refetch the JWKS at most this often.
    pub refetch_every: Duration,
    pub fetch_timeout: Duration,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        VerifierConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            leeway: Duration::from_secs(30),
            refetch_every: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(3),
        }
    }
}

/// Verifies access tokens. Cheap to clone; keys are shared.
#[derive(Clone)]
pub struct Verifier {
    config: Arc<VerifierConfig>,
    keys: Arc<RwLock<HashMap<String, DecodingKey>>>,
    /// When the JWKS was last fetched; held across a fetch, so requests with an unknown key id
    /// that arrive during it wait for its keys instead of being refused.
    last_fetch: Arc<tokio::sync::Mutex<Option<Instant>>>,
    client: reqwest::Client,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .unwrap_or_default();
        let mut config = config;
        config.leeway = config.leeway.min(Duration::from_secs(30));
        Verifier {
            config: Arc::new(config),
            keys: Arc::default(),
            last_fetch: Arc::default(),
            client,
        }
    }

    /// Trusts these keys (in-process issuers, tests) in addition to fetched ones.
    pub fn with_keys(self, jwks: &JwkSet) -> Self {
        self.install(jwks);
        self
    }

    /// Only Ed25519 keys are taken: the key type fixes the algorithm (EdDSA).
    fn install(&self, jwks: &JwkSet) -> usize {
        let Ok(mut keys) = self.keys.write() else {
            return 0;
        };
        let mut installed = 0;
        for jwk in &jwks.keys {
            let (Some(kid), AlgorithmParameters::OctetKeyPair(okp)) =
                (&jwk.common.key_id, &jwk.algorithm)
            else {
                continue;
            };
            if okp.curve != EllipticCurve::Ed25519 {
                continue;
            }
            if let Ok(key) = DecodingKey::from_ed_components(&okp.x) {
                keys.insert(kid.clone(), key);
                installed += 1;
            }
        }
        installed
    }

    /// Fetches the issuer's JWKS unless it was fetched less than `refetch_every` ago.
    async fn refetch(&self) -> Result<bool, AuthError> {
        let Some(url) = &self.config.jwks_url else {
            return Ok(false);
        };
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.config.refetch_every) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        let jwks: JwkSet = self
            .client
            .get(url)
            .send_traced()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::Unavailable(format!("{url}: {e}")))?
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(format!("{url}: {e}")))?;
        Ok(self.install(&jwks) > 0)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// The token's claims, if it is valid for this issuer and audience.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("header: {e}")))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted (EdDSA only)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("no key id (kid)".into()))?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refetch().await?;
                self.key(&kid)
                    .ok_or_else(|| AuthError::Invalid(format!("unknown key id {kid}")))?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}
