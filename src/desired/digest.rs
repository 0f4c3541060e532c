//! Stable content digests of resolved jobs: SHA-256 over a canonical JSON form (object keys
//! sorted, no whitespace), so the digest depends on meaning only, never on how the YAML was
//! written or in which order keys came.

use sha2::{Digest, Sha256};

use crate::model::{DesiredDlfJob, FlinkJobConfig, JobKind, Lifecycle};

/// The digest of a Flink job: kind, name, canonical config and lifecycle.
pub fn flink_job_digest(name: &str, config: &FlinkJobConfig, lifecycle: &Lifecycle) -> String {
    let value = serde_json::json!({
        "kind": config.kind().as_str(),
        "name": name,
        "config": config,
        "lifecycle": lifecycle,
    });
    digest_of(&value)
}

/// The digest of a DLF job: name, definition, scripts, import settings and prune flag.
pub fn dlf_job_digest(job: &DesiredDlfJob) -> String {
    let value = serde_json::json!({
        "kind": JobKind::Dlf.as_str(),
        "name": job.name,
        "definition": job.definition,
        "scripts": job.scripts,
        "import": job.import,
        "prune": job.prune,
    });
    // `desired_state` is left out: it is no part of what is imported, and the planner
    // compares it with the live schedule itself (a change starts or stops, never re-imports).
    digest_of(&value)
}

/// Hex SHA-256 of the canonical JSON text of `value`.
pub fn digest_of(value: &serde_json::Value) -> String {
    let mut text = String::new();
    write_canonical(value, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// JSON with object keys sorted by their UTF-8 bytes. Written by hand because serde_json's map
/// order depends on a crate feature (`preserve_order`) another dependency may switch on.
pub fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        serde_json::Value::String(text) => write_string(text, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A JSON string literal, escaped as RFC 8259 requires (and as serde_json writes it).
fn write_string(text: &str, out: &mut String) {
    out.reserve(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does() {
        for text in [
            "plain",
            "quote \" and \\ back",
            "tab\tnew\nline\r",
            "\u{1}\u{1f}\u{8}\u{c}",
            "ünï ☃",
        ] {
            let mut out = String::new();
            write_string(text, &mut out);
            assert_eq!(out, serde_json::Value::String(text.into()).to_string());
        }
    }

    #[test]
    fn key_order_does_not_matter_but_values_do() {
        let left: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#).unwrap();
        let right: serde_json::Value =
            serde_json::from_str(r#"{ "b": {"y": "z", "x": [1, 2]}, "a": 1 }"#).unwrap();
        assert_eq!(digest_of(&left), digest_of(&right));
        let changed: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"x":[2,1],"y":"z"}}"#).unwrap();
        assert_ne!(digest_of(&left), digest_of(&changed));
    }
}
