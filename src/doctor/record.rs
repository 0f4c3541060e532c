//! `doctor --probe --record DIR`: every request and answer of the probe, one JSON file per
//! exchange (`0001-dli-list_jobs.json`, ...), plus `probe.json` (the scratch job's name, the
//! spec that created it, the findings). Redacted before anything is written:
//! * credential headers never reach the recorder (`cloud::Exchange` drops `Authorization`,
//!   `X-Auth-Token`, `X-Security-Token`);
//! * the project id (path, `X-Project-Id`, bodies), the access key, the DLF `workspace` header
//!   and the IAM user/domain names become placeholders;
//! * values of identity keys in bodies (`owner`, `user_name`, `user_id`, `domain_id`,
//!   `domain_name`, `project_id`, `tenant_id`, `tenant`) become `{redacted}`;
//! * any 32-hex string (the shape of project, domain and user ids) becomes `{redacted-id}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::apply::TargetContext;
use crate::model::FlinkJobConfig;

/// One recorded exchange, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedExchange {
    pub service: String,
    pub operation: String,
    pub method: String,
    /// The path with the project id as `{project_id}`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Option<Value>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    /// The answer as JSON, or `{"non_json_bytes": N}`.
    pub response_body: Value,
}

/// Reads every `NNNN-*.json` exchange of a recording directory, in order.
pub fn load(dir: &Path) -> Result<Vec<RecordedExchange>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| format!("{}: {error}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") && n.as_bytes()[0].is_ascii_digit())
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
        })
        .collect()
}

/// What is replaced, longest first.
struct Redactions(Vec<(String, &'static str)>);

impl Redactions {
    fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (secret, placeholder) in &self.0 {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), placeholder);
            }
        }
        redact_hex_ids(&out)
    }

    fn value(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.text(text)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| {
                        let identity = [
                            "owner",
                            "user_name",
                            "user_id",
                            "domain_id",
                            "domain_name",
                            "project_id",
                            "tenant_id",
                            "tenant",
                        ]
                        .contains(&key.as_str());
                        let value = if identity && !value.is_null() {
                            Value::String("{redacted}".into())
                        } else {
                            self.value(value)
                        };
                        (key.clone(), value)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Replaces every run of exactly 32 hex digits (ids of projects, domains, users).
fn redact_hex_ids(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if run == 32 && starts_word {
            out.push_str("{redacted-id}");
            i += run;
        } else if run > 0 {
            out.push_str(&text[i..i + run]);
            i += run;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Writes exchanges to a directory as they happen.
pub struct Recorder {
    dir: PathBuf,
    redactions: Arc<Redactions>,
    count: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    spec: Mutex<Option<(String, FlinkJobConfig)>>,
}

impl Recorder {
    /// Creates `dir` (it must not exist or be empty).
    pub fn create(dir: &Path, context: &TargetContext) -> Result<Recorder, String> {
        if dir.exists()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(format!("{} exists and is not empty", dir.display()));
        }
        std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let mut secrets: Vec<(String, &'static str)> = Vec::new();
        if let Some(project) = context.target.project_id() {
            secrets.push((project.to_string(), "{project_id}"));
        }
        if let Ok(credentials) = crate::config::Config::resolve_credentials(&context.target) {
            match credentials {
                crate::config::Credentials::AkSk {
                    access_key,
                    secret_key,
                    security_token,
                } => {
                    secrets.push((access_key, "{access_key}"));
                    secrets.push((secret_key, "{secret_key}"));
                    if let Some(token) = security_token {
                        secrets.push((token, "{security_token}"));
                    }
                }
                crate::config::Credentials::Password {
                    user,
                    password,
                    domain,
                } => {
                    secrets.push((password, "{password}"));
                    secrets.push((user, "{user}"));
                    secrets.push((domain, "{domain}"));
                }
            }
        }
        if let Some(workspace) = &context.target.workspace {
            secrets.push((workspace.clone(), "{workspace}"));
        }
        secrets.sort_by_key(|(secret, _)| std::cmp::Reverse(secret.len()));
        Ok(Recorder {
            dir: dir.to_path_buf(),
            redactions: Arc::new(Redactions(secrets)),
            count: Arc::new(AtomicUsize::new(0)),
            errors: Arc::new(Mutex::new(Vec::new())),
            spec: Mutex::new(None),
        })
    }

    /// The scratch job's name and the spec that created it (written to `probe.json`).
    pub fn set_spec(&self, name: &str, config: &FlinkJobConfig) {
        *self.spec.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((name.to_string(), config.clone()));
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The observer that writes each exchange.
    pub fn observer(&self) -> crate::cloud::ExchangeObserver {
        let dir = self.dir.clone();
        let redactions = Arc::clone(&self.redactions);
        let count = Arc::clone(&self.count);
        let errors = Arc::clone(&self.errors);
        Arc::new(move |exchange: &crate::cloud::Exchange| {
            let recorded = redact(&redactions, exchange);
            let index = count.fetch_add(1, Ordering::SeqCst) + 1;
            let file = dir.join(format!(
                "{index:04}-{}-{}.json",
                exchange.service, exchange.operation
            ));
            let text = serde_json::to_string_pretty(&recorded).unwrap_or_default();
            if let Err(error) = std::fs::write(&file, text + "\n") {
                errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{}: {error}", file.display()));
            }
        })
    }

    /// Writes `probe.json`; returns a problem if any file could not be written.
    pub fn finish(&self, findings: &Value) -> Option<String> {
        let spec = self.spec.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let document = json!({
            "recorded_by": format!("dli-gitops {}", env!("CARGO_PKG_VERSION")),
            "job_name": spec.as_ref().map(|(name, _)| name.clone()),
            "spec": spec.as_ref().map(|(_, config)| serde_json::to_value(config).unwrap_or(Value::Null)),
            "findings": findings,
        });
        let document = self.redactions.value(&document);
        let file = self.dir.join("probe.json");
        if let Err(error) = std::fs::write(
            &file,
            serde_json::to_string_pretty(&document).unwrap_or_default() + "\n",
        ) {
            return Some(format!("{}: {error}", file.display()));
        }
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}

fn redact(redactions: &Redactions, exchange: &crate::cloud::Exchange) -> RecordedExchange {
    let headers = |headers: &[(String, String)]| -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| {
                let value = if name.eq_ignore_ascii_case("x-project-id") {
                    "{project_id}".to_string()
                } else if name.eq_ignore_ascii_case("workspace") {
                    "{workspace}".to_string()
                } else if name.eq_ignore_ascii_case("x-request-id") {
                    // Not an account id: what support asks for.
                    value.clone()
                } else {
                    redactions.text(value)
                };
                (name.to_ascii_lowercase(), value)
            })
            .collect()
    };
    let response_body = match serde_json::from_slice::<Value>(&exchange.response_body) {
        Ok(value) => redactions.value(&value),
        Err(_) if exchange.response_body.is_empty() => Value::Null,
        Err(_) => json!({"non_json_bytes": exchange.response_body.len()}),
    };
    RecordedExchange {
        service: exchange.service.to_string(),
        operation: exchange.operation.to_string(),
        method: exchange.method.clone(),
        path: redactions.text(&exchange.path),
        query: exchange
            .query
            .iter()
            .map(|(k, v)| (k.clone(), redactions.text(v)))
            .collect(),
        request_headers: headers(&exchange.request_headers),
        request_body: exchange.request_body.as_ref().map(|b| redactions.value(b)),
        status: exchange.status,
        response_headers: headers(&exchange.response_headers),
        response_body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_and_named_secrets_are_replaced() {
        let redactions = Redactions(vec![("AKEXAMPLE".to_string(), "{access_key}")]);
        let text = redactions.text(
            "/v1.0/0a1b2c3d4e5f60718293a4b5c6d7e8f9/streaming/jobs AKEXAMPLE 0a1b2c3d4e5f60718293a4b5c6d7e8f9aa",
        );
        assert_eq!(
            text,
            "/v1.0/{redacted-id}/streaming/jobs {access_key} 0a1b2c3d4e5f60718293a4b5c6d7e8f9aa"
        );
        let value =
            redactions.value(&json!({"owner": "alice", "queues": [{"owner": "bob", "cu": 16}]}));
        assert_eq!(
            value,
            json!({"owner": "{redacted}", "queues": [{"owner": "{redacted}", "cu": 16}]})
        );
    }
}
