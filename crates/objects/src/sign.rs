//! Signed URLs of the embedded backend: HMAC-SHA256 (aws-lc-rs) over the operation, key, expiry,
//! content type and size limit, compared in constant time. Any failure — tampered, expired,
//! another operation — is the same 403: the answer says nothing about which check failed.

use aws_lc_rs::hmac;

/// What a signed URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `put` or `get`.
    pub op: String,
    pub key: String,
    /// Unix seconds.
    pub expires: i64,
    pub content_type: String,
    /// Largest body a `put` may carry.
    pub max_bytes: u64,
}

impl Grant {
    fn message(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.op, self.key, self.expires, self.content_type, self.max_bytes
        )
    }
}

#[derive(Clone)]
pub struct UrlSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(…)")
    }
}

impl UrlSigner {
    pub fn new(secret: &[u8]) -> Self {
        UrlSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn sign(&self, grant: &Grant) -> String {
        hex::encode(hmac::sign(&self.key, grant.message().as_bytes()).as_ref())
    }

    /// Whether `signature` is this signer's for `grant` and the grant has not expired at `now`.
    pub fn check(&self, grant: &Grant, signature: &str, now: i64) -> bool {
        let Ok(signature) = hex::decode(signature) else {
            return false;
        };
        let genuine = hmac::verify(&self.key, grant.message().as_bytes(), &signature).is_ok();
        genuine && now <= grant.expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            op: "put".into(),
            key: "a/b.pdf".into(),
            expires: 1000,
            content_type: "application/pdf".into(),
            max_bytes: 10,
        }
    }

    #[test]
    fn only_the_signed_grant_passes_and_only_in_time() {
        let signer = UrlSigner::new(b"secret");
        let signature = signer.sign(&grant());
        assert!(signer.check(&grant(), &signature, 999));
        assert!(!signer.check(&grant(), &signature, 1001));
        for changed in [
            Grant {
                op: "get".into(),
                ..grant()
            },
            Grant {
                key: "a/c.pdf".into(),
                ..grant()
            },
            Grant {
                expires: 2000,
                ..grant()
            },
            Grant {
                content_type: "text/html".into(),
                ..grant()
            },
            Grant {
                max_bytes: 11,
                ..grant()
            },
        ] {
            assert!(!signer.check(&changed, &signature, 0), "{changed:?}");
        }
        assert!(!UrlSigner::new(b"other").check(&grant(), &signature, 0));
        assert!(!signer.check(&grant(), "zz", 0));
    }
}
