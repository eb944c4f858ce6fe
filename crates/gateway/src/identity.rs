//! Identity at the edge: bearer tokens verified against the identity service's JWKS (remembered
//! until they expire, so a client's next requests skip the signature check), the verified
//! identity turned into `x-telar-*` headers for upstreams, and the same headers removed from
//! whatever a client sends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use telar_auth::{AuthError, Claims, Verifier};
use telar_resilience::Rule;

use crate::limits::RoleRules;

/// Every header the gateway sets about the caller starts with this; clients cannot send them.
pub const IDENTITY_PREFIX: &str = "x-telar-";
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-telar-user");
pub const ROLES_HEADER: HeaderName = HeaderName::from_static("x-telar-roles");
pub const PERMISSIONS_HEADER: HeaderName = HeaderName::from_static("x-telar-permissions");
pub const ORG_HEADER: HeaderName = HeaderName::from_static("x-telar-org");

/// A verified caller, with what every request of theirs needs precomputed.
#[derive(Debug)]
pub struct Identity {
    /// The token this identity was verified from (a cache hit must match it exactly).
    token: Box<str>,
    pub claims: Claims,
    /// The `x-telar-*` headers sent upstream.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Where this caller's requests are counted, and under which rule.
    pub bucket: String,
    pub rule: Rule,
}

impl Identity {
    fn new(token: &str, claims: Claims, rules: &RoleRules) -> Self {
        let mut headers = Vec::with_capacity(4);
        let mut push = |name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.push((name, value));
            }
        };
        push(USER_HEADER, &claims.sub);
        push(ROLES_HEADER, &claims.roles.join(","));
        push(PERMISSIONS_HEADER, &claims.permissions.join(","));
        if let Some(org) = &claims.org_id {
            push(ORG_HEADER, org);
        }
        let (bucket, rule) = rules.for_user(&claims.sub, &claims.roles);
        Identity {
            token: token.into(),
            claims,
            headers,
            bucket,
            rule,
        }
    }
}

/// Identities remembered per thread (at most this many), in front of the shared cache.
const LOCAL_ENTRIES: usize = 1024;

thread_local! {
    /// Each event loop's own copy of the identities it met, keyed by cache and token hash: a
    /// request then reads no lock that the other cores write to.
    static LOCAL: RefCell<HashMap<(usize, u64), Arc<Identity>>> = RefCell::new(HashMap::new());
}

static NEXT_CACHE: AtomicUsize = AtomicUsize::new(0);

/// Verifies tokens and remembers the good ones until they expire.
#[derive(Clone)]
pub struct EdgeAuth {
    /// Tells this cache's entries apart in the per-thread copies.
    id: usize,
    verifier: Verifier,
    rules: Arc<RoleRules>,
    /// Keyed by a hash of the token's signature (its last bytes): cheap to compute on every
    /// request, and a hit still compares the whole token, so a collision is only a miss.
    cache: Arc<RwLock<HashMap<u64, Arc<Identity>>>>,
    hasher: RandomState,
    capacity: usize,
}

impl EdgeAuth {
    pub fn new(verifier: Verifier, rules: Arc<RoleRules>, capacity: usize) -> Self {
        EdgeAuth {
            id: NEXT_CACHE.fetch_add(1, Ordering::Relaxed),
            verifier,
            rules,
            cache: Arc::default(),
            hasher: RandomState::new(),
            capacity: capacity.max(1),
        }
    }

    /// The identity behind `token`. A remembered token is good until its `exp`; after that it
    /// is verified again (and refused once past the verifier's leeway).
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        let now = now_secs();
        let tail = &token.as_bytes()[token.len().saturating_sub(32)..];
        let key = self.hasher.hash_one(tail);
        let usable =
            |identity: &Arc<Identity>| identity.claims.exp > now && *identity.token == *token;
        let local =
            LOCAL.with_borrow(|local| local.get(&(self.id, key)).filter(|i| usable(i)).cloned());
        if let Some(identity) = local {
            return Ok(identity);
        }
        let shared = self
            .cache
            .read()
            .ok()
            .and_then(|cache| cache.get(&key).filter(|i| usable(i)).cloned());
        if let Some(identity) = shared {
            self.remember_here(key, &identity);
            return Ok(identity);
        }
        let claims = self.verifier.verify(token).await?;
        let identity = Arc::new(Identity::new(token, claims, &self.rules));
        if identity.claims.exp > now
            && let Ok(mut cache) = self.cache.write()
        {
            if cache.len() >= self.capacity {
                cache.retain(|_, identity| identity.claims.exp > now);
                if cache.len() >= self.capacity {
                    cache.clear();
                }
            }
            cache.insert(key, identity.clone());
            drop(cache);
            self.remember_here(key, &identity);
        }
        Ok(identity)
    }

    fn remember_here(&self, key: u64, identity: &Arc<Identity>) {
        LOCAL.with_borrow_mut(|local| {
            if local.len() >= LOCAL_ENTRIES {
                local.clear();
            }
            local.insert((self.id, key), identity.clone());
        });
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_value(headers.get(header::AUTHORIZATION)?.as_bytes())
}

/// The token of an `Authorization` value `Bearer …`.
pub fn bearer_value(value: &[u8]) -> Option<&str> {
    // UTF-8 check rather than `to_str`'s byte-by-byte one: the token is long and this runs on
    // every request; the verifier refuses anything that is not base64url anyway.
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bEaReR abc.def"),
        );
        assert_eq!(bearer(&headers), Some("abc.def"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
