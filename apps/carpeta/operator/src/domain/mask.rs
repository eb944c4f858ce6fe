//! What a log may say about a person: enough to correlate, not enough to identify.

/// `1032456789` → `******6789`.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let keep = if chars.len() > 6 { 4 } else { 0 };
    let hidden = chars.len() - keep;
    "*".repeat(hidden) + &chars[hidden..].iter().collect::<String>()
}

/// `ana.perez@correo.co` → `a***@correo.co`; anything that is not an address is hidden whole.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_what_correlates() {
        assert_eq!(mask_id("1032456789"), "******6789");
        assert_eq!(mask_id("12"), "**");
        assert_eq!(mask_email("ana.perez@correo.co"), "a***@correo.co");
        assert_eq!(mask_email("nonsense"), "***");
    }
}
