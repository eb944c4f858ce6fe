//! The signing keys at rest: AES-256-GCM with a secret from the service's configuration
//! (`keys_secret`, base64 of 32 bytes), so a copy of the database does not carry usable keys.
//! Without a secret (a laptop) they are stored as is, and the service says so at start.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const PREFIX: &str = "enc:v1:";

fn fail(reason: &str) -> telar_sql::Error {
    telar_sql::Error::Config(format!("identity signing keys: {reason}"))
}

/// The configured secret, checked.
pub(crate) fn secret(text: Option<&str>) -> Result<Option<Aes256Gcm>, telar_sql::Error> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| fail("keys_secret must be base64"))?;
    Aes256Gcm::new_from_slice(&bytes)
        .map(Some)
        .map_err(|_| fail("keys_secret must be 32 bytes (base64)"))
}

pub(crate) fn seal(cipher: Option<&Aes256Gcm>, plain: &str) -> Result<String, telar_sql::Error> {
    let Some(cipher) = cipher else {
        return Ok(plain.to_owned());
    };
    let nonce_bytes: [u8; 12] = rand::random();
    let sealed = cipher
        .encrypt(&Nonce::from(nonce_bytes), plain.as_bytes())
        .map_err(|_| fail("encryption failed"))?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&sealed);
    Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
}

pub(crate) fn open(cipher: Option<&Aes256Gcm>, stored: &str) -> Result<String, telar_sql::Error> {
    let Some(encoded) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_owned());
    };
    let cipher =
        cipher.ok_or_else(|| fail("they are encrypted and no keys_secret is configured"))?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| fail("stored form damaged"))?;
    if bytes.len() < 12 {
        return Err(fail("stored form damaged"));
    }
    let (nonce, body) = bytes.split_at(12);
    let nonce = Nonce::try_from(nonce).map_err(|_| fail("stored form damaged"))?;
    let plain = cipher
        .decrypt(&nonce, body)
        .map_err(|_| fail("they do not open with this keys_secret"))?;
    String::from_utf8(plain).map_err(|_| fail("stored form damaged"))
}
