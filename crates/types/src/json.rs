//! Writing JSON fast where it is written most: strings copied in one go when they need no
//! escaping (checked eight bytes at a time), values written without serde's per-byte escaper.
//! Output is byte-for-byte what `serde_json` writes (compact form).

use serde_json::Value;

/// Whether `text` has a byte JSON must escape (a control character, `"` or `\`), eight bytes
/// at a time (the bit tricks of "Bit Twiddling Hacks": hasless / haszero, exact as a boolean).
pub fn needs_escape(text: &str) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut chunks = text.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        if control
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A JSON string. Most logged strings (ids, paths, routes, messages) need no escaping: they are
/// copied in one go, and only the others go through serde_json's escaper.
pub fn push_json_str(line: &mut Vec<u8>, value: &str) {
    if !needs_escape(value) {
        line.reserve(value.len() + 2);
        line.push(b'"');
        line.extend_from_slice(value.as_bytes());
        line.push(b'"');
    } else if serde_json::to_writer(&mut *line, value).is_err() {
        line.extend_from_slice(b"null");
    }
}

/// `value` as compact JSON, strings through [`push_json_str`].
pub fn push_json_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if serde_json::to_writer(&mut *out, number).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        Value::String(text) => push_json_str(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_str(out, name);
                out.push(b':');
                push_json_value(out, item);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        for value in [
            json!(null),
            json!({"a": [1, -2, 3.5, true, false, null], "é\"\n": "x\u{1}y", "k": {"n": "ñ/\\"}}),
            json!("x".repeat(1000)),
            json!([
                [],
                {},
                "",
                18446744073709551615u64,
                -9223372036854775808i64,
                1e300
            ]),
        ] {
            let mut ours = Vec::new();
            push_json_value(&mut ours, &value);
            assert_eq!(
                String::from_utf8(ours).expect("utf-8"),
                serde_json::to_string(&value).expect("json")
            );
        }
    }
}
