//! JSON values written as XML, and XML request bodies read into typed values.
//!
//! Mapping: an object is an element per key; an array repeats its parent's element name (a
//! top-level array becomes `<item>` children); scalars are text; `null` is an empty element with
//! `nil="true"`. Keys that are not XML names are made into one (`1x` → `_1x`, `a b` → `a_b`).

use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Writes `value` as an XML document under `root`.
pub(crate) fn to_xml(root: &str, namespace: Option<&str>, value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    match value {
        Value::Array(items) => {
            open(&mut out, root, namespace, false);
            for item in items {
                element(&mut out, "item", item);
            }
            close(&mut out, root);
        }
        other => {
            write_element(&mut out, root, namespace, other);
        }
    }
    out
}

fn open(out: &mut String, name: &str, namespace: Option<&str>, nil: bool) {
    out.push('<');
    out.push_str(name);
    if let Some(ns) = namespace {
        let _ = write!(out, " xmlns=\"{}\"", escape(ns));
    }
    if nil {
        out.push_str(" nil=\"true\"/>");
    } else {
        out.push('>');
    }
}

fn close(out: &mut String, name: &str) {
    let _ = write!(out, "</{name}>");
}

fn element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            for item in items {
                element(out, name, item);
            }
        }
        other => write_element(out, name, None, other),
    }
}

fn write_element(out: &mut String, name: &str, namespace: Option<&str>, value: &Value) {
    if value.is_null() {
        open(out, name, namespace, true);
        return;
    }
    open(out, name, namespace, false);
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                element(out, &xml_name(key), child);
            }
        }
        Value::String(text) => out.push_str(&escape(text)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Array(items) => {
            for item in items {
                element(out, "item", item);
            }
        }
        Value::Null => {}
    }
    close(out, name);
}

fn xml_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_');
    if !starts_well || name.to_ascii_lowercase().starts_with("xml") {
        name.insert(0, '_');
    }
    name
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry are dropped rather than producing a broken document.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Reads an XML document into `T`; the root element's name is not checked.
pub(crate) fn from_xml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    quick_xml::de::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_arrays_and_escaping() {
        let value =
            json!({"name": "Ana & <Luis>", "tags": ["a", "b"], "n": 3, "none": null, "1st": true});
        let xml = to_xml("response", None, &value);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><response><name>Ana &amp; &lt;Luis&gt;</name>\
             <tags>a</tags><tags>b</tags><n>3</n><none nil=\"true\"/><_1st>true</_1st></response>"
        );
    }

    #[test]
    fn top_level_strings_and_arrays() {
        assert!(to_xml("response", None, &json!("hola")).ends_with("<response>hola</response>"));
        assert!(
            to_xml("response", None, &json!([1, 2]))
                .ends_with("<response><item>1</item><item>2</item></response>")
        );
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Citizen {
        id: i64,
        name: String,
        tags: Vec<String>,
    }

    #[test]
    fn reads_typed_values_from_xml() {
        let parsed: Citizen = from_xml(
            "<citizen><id>1032456789</id><name>Ana</name><tags>x</tags><tags>y</tags></citizen>",
        )
        .expect("valid");
        assert_eq!(
            parsed,
            Citizen {
                id: 1_032_456_789,
                name: "Ana".into(),
                tags: vec!["x".into(), "y".into()]
            }
        );
        assert!(from_xml::<Citizen>("<citizen><id>abc</id></citizen>").is_err());
        assert!(from_xml::<Citizen>("<citizen><id>1").is_err());
    }
}
