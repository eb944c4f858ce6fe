//! Topic patterns, NATS style: `.`-separated tokens, `*` matches one token, `>` (last) matches
//! one or more. Topics are CloudEvents types (`carpeta.citizen.registered`).

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    One,
    Rest,
}

impl TopicPattern {
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Pattern {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        let parts: Vec<&str> = text.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let token = match *part {
                "" => return Err(invalid("empty token")),
                "*" => Token::One,
                ">" if index + 1 == parts.len() => Token::Rest,
                ">" => return Err(invalid("`>` must be the last token")),
                literal if literal.contains(['*', '>', ' ']) => {
                    return Err(invalid("wildcards must be whole tokens; no spaces"));
                }
                literal => Token::Literal(literal.to_owned()),
            };
            tokens.push(token);
        }
        Ok(TopicPattern {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for token in &self.tokens {
            match token {
                Token::Rest => return parts.next().is_some(),
                Token::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(literal) => {
                    if parts.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, topic: &str) -> bool {
        TopicPattern::parse(pattern)
            .map(|p| p.matches(topic))
            .unwrap_or(false)
    }

    #[test]
    fn wildcards_match_whole_tokens() {
        assert!(matches(
            "carpeta.citizen.registered",
            "carpeta.citizen.registered"
        ));
        assert!(matches("carpeta.citizen.*", "carpeta.citizen.registered"));
        assert!(!matches("carpeta.citizen.*", "carpeta.citizen"));
        assert!(!matches("carpeta.citizen.*", "carpeta.citizen.a.b"));
        assert!(matches("carpeta.>", "carpeta.citizen.registered"));
        assert!(!matches("carpeta.>", "carpeta"));
        assert!(matches("*.document.*", "carpeta.document.uploaded"));
        assert!(!matches("carpeta.citizen", "carpeta.citizens"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "a..b", "a.>.b", "a.b*", "a b"] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
