//! A citizen's id (the national id number, 10 digits) and email, validated once.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Exactly 10 digits, no sign, no spaces. The hub wants it as a JSON number, peers sometimes send
/// it as a numeric string: both are read, it is always written as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CitizenId(u64);

impl CitizenId {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be exactly 10 digits");
        }
        if text.starts_with('0') {
            // As a JSON number (what the hub stores) a leading zero would be lost.
            return Err("must not start with 0");
        }
        text.parse()
            .map(CitizenId)
            .map_err(|_| "must be exactly 10 digits")
    }

    pub fn from_number(number: u64) -> Result<Self, &'static str> {
        Self::parse(&number.to_string())
    }

    pub fn number(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for CitizenId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for CitizenId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => CitizenId::from_number(n),
            Either::Text(s) => CitizenId::parse(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for CitizenId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[1-9][0-9]{9}$"))
            .description(Some("The citizen's national id: 10 digits"))
            .examples([serde_json::json!("1032456789")])
            .into()
    }
}

impl utoipa::ToSchema for CitizenId {}

/// The hub's own rule (so a registration it would refuse is refused here first): one `@`, a
/// local part, a domain whose labels are letters, digits or `-`, and a last label (the TLD) of
/// two or three letters.
pub fn validate_email(email: &str) -> Result<(), &'static str> {
    if email.len() > 254 {
        return Err("is longer than 254 characters");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("must contain @");
    };
    if local.is_empty() || domain.contains('@') {
        return Err("must have one @ with text before it");
    }
    if !local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b))
    {
        return Err("has characters not allowed before the @");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels
            .iter()
            .any(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err("must have a domain such as example.com");
    }
    let tld = labels[labels.len() - 1];
    if !(2..=3).contains(&tld.len()) || !tld.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("must end in a 2- or 3-letter domain (.co, .com)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ten_digits_read_from_numbers_or_strings() {
        assert_eq!(
            CitizenId::parse("1032456789").map(CitizenId::number),
            Ok(1_032_456_789)
        );
        for bad in [
            "",
            "123",
            "10324567890",
            "103245678a",
            "0032456789",
            "-032456789",
        ] {
            assert!(CitizenId::parse(bad).is_err(), "{bad} accepted");
        }
        let from_number: CitizenId = serde_json::from_str("1032456789").unwrap_or(CitizenId(0));
        let from_text: CitizenId = serde_json::from_str("\"1032456789\"").unwrap_or(CitizenId(0));
        assert_eq!(from_number, from_text);
        assert!(serde_json::from_str::<CitizenId>("12").is_err());
    }

    #[test]
    fn emails_follow_the_hubs_rule() {
        for good in ["ana@correo.co", "ana.perez+x@mail.gov.co", "a@b.com"] {
            assert_eq!(validate_email(good), Ok(()), "{good}");
        }
        for bad in [
            "ana",
            "@x.co",
            "ana@x",
            "ana@x.info",
            "ana@x.c",
            "a b@x.co",
            "a@@x.co",
            "ana@x.c0",
        ] {
            assert!(validate_email(bad).is_err(), "{bad} accepted");
        }
    }
}
