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
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
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
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
