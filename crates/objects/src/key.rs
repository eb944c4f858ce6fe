//! Object keys: `/`-separated segments of letters, digits, `-`, `_`, `.` (no `..`, no empty
//! segment, no leading `/`), at most 512 bytes. What a key can name is decided here, once, for
//! every backend.

use std::fmt;

/// A validated key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

pub const MAX_KEY_BYTES: usize = 512;

impl ObjectKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("is empty".into());
        }
        if text.len() > MAX_KEY_BYTES {
            return Err(format!("is longer than {MAX_KEY_BYTES} bytes"));
        }
        if text.starts_with('/') {
            return Err("must not start with `/` (keys are relative)".into());
        }
        for segment in text.split('/') {
            if segment.is_empty() {
                return Err("has an empty segment (`//` or a trailing `/`)".into());
            }
            if segment == "." || segment == ".." {
                return Err("has a `.` or `..` segment".into());
            }
            if let Some(bad) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            {
                return Err(format!(
                    "has the character {bad:?} (letters, digits, `-`, `_`, `.` and `/` only)"
                ));
            }
        }
        Ok(ObjectKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_or_confuse_are_refused() {
        assert!(ObjectKey::parse("citizens/1032456789/diploma-2024.pdf").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "a/",
            "a\\b",
            "a b",
            "a/./b",
            "ñ",
            "a?x=1",
            "a%2e",
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ObjectKey::parse(&"a".repeat(513)).is_err());
        assert!(ObjectKey::parse(&"a".repeat(512)).is_ok());
    }
}
