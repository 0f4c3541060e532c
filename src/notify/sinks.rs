//! The three sinks: a generic JSON webhook (HMAC-SHA256 signed), a Slack-compatible incoming
//! webhook, and Huawei Cloud SMN (publish to a topic, signed like every other call).

use std::collections::BTreeSet;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Message, NotifyError, SIGNATURE_HEADER};
use crate::config::{Config, NotificationSink};

/// Where a sink sends, with its secrets read.
pub(crate) enum SinkKind {
    Webhook {
        url: String,
        secret: Vec<u8>,
    },
    Slack {
        url: String,
    },
    Smn {
        client: Box<crate::cloud::ServiceClient>,
        project_id: String,
        topic_urn: String,
    },
}

/// A configured sink, ready to send.
pub struct ResolvedSink {
    pub name: String,
    pub events: BTreeSet<String>,
    /// Empty: every target.
    pub targets: Vec<String>,
    pub policy_off_after: Duration,
    pub(crate) kind: SinkKind,
}

/// Why one delivery failed (no secret in it: urls are shown without path and query).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("reaching {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("SMN publish: {0}")]
    Smn(#[source] crate::cloud::CloudError),
}

/// `sha256=<hex HMAC-SHA256 of body with key>`: the webhook signature header's value.
pub fn sign_body(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An SMN subject is at most 512 bytes (SDK `publish_message_request_body.py`).
const SMN_SUBJECT_MAX: usize = 512;

fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl ResolvedSink {
    /// Reads the sink's secrets (and, for SMN, builds the signed client of its target).
    pub fn resolve(sink: &NotificationSink, config: &Config) -> Result<ResolvedSink, NotifyError> {
        let problem = |problem: String| NotifyError {
            sink: sink.name.clone(),
            problem,
        };
        let read = |env: &Option<String>, file: &Option<std::path::PathBuf>, what: &str| {
            let reference = crate::config::values::secret_ref(env, file)
                .ok_or_else(|| problem(format!("no {what} (`*_env` or `*_file`)")))?;
            Config::resolve_secret(&reference).map_err(|error| problem(format!("{what}: {error}")))
        };
        let kind = if let Some(webhook) = &sink.webhook {
            let secret = read(&webhook.secret_env, &webhook.secret_file, "HMAC secret")?;
            SinkKind::Webhook {
                url: webhook.url.clone(),
                secret: secret.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
            }
        } else if let Some(slack) = &sink.slack {
            let url = match &slack.url {
                Some(url) => url.clone(),
                None => read(&slack.url_env, &slack.url_file, "Slack url")?
                    .trim()
                    .to_string(),
            };
            match url::Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                _ => {
                    return Err(problem(
                        "the Slack url read from its variable or file is not an http(s) url"
                            .to_string(),
                    ));
                }
            }
            SinkKind::Slack { url }
        } else if let Some(smn) = &sink.smn {
            let target = config
                .targets
                .iter()
                .find(|target| target.name == smn.target)
                .ok_or_else(|| problem(format!("unknown target `{}`", smn.target)))?;
            let urn_project = smn.topic_urn.split(':').nth(3).unwrap_or_default();
            let project_id = target.project_id().unwrap_or(urn_project).to_string();
            let endpoint = match &smn.endpoint {
                Some(endpoint) => endpoint.clone(),
                None => format!("https://smn.{}.myhuaweicloud.com", target.region()),
            };
            let endpoint = url::Url::parse(&endpoint)
                .map_err(|error| problem(format!("endpoint: {error}")))?;
            let credentials = match Config::resolve_credentials(target)
                .map_err(|error| problem(format!("credentials of `{}`: {error}", smn.target)))?
            {
                crate::config::Credentials::AkSk {
                    access_key,
                    secret_key,
                    security_token,
                } => crate::cloud::Credentials::AkSk {
                    access_key,
                    secret_key: crate::cloud::Secret::new(secret_key),
                    security_token: security_token.map(crate::cloud::Secret::new),
                },
                crate::config::Credentials::Password { .. } => {
                    return Err(problem(format!(
                        "target `{}` uses password credentials; the SMN sink signs with AK/SK (give that target access_key_env/secret_key_env)",
                        smn.target
                    )));
                }
            };
            let options = crate::cloud::ClientOptions {
                connect_timeout: target.timeouts.connect.get(),
                request_timeout: target.timeouts.request.get(),
                ..crate::cloud::ClientOptions::default()
            };
            let client = crate::cloud::ServiceClient::new(
                "smn",
                endpoint,
                &project_id,
                credentials,
                options,
            )
            .map_err(|error| problem(error.to_string()))?;
            SinkKind::Smn {
                client: Box::new(client),
                project_id,
                topic_urn: smn.topic_urn.clone(),
            }
        } else {
            return Err(problem(
                "no `webhook:`, `slack:` or `smn:` section".to_string(),
            ));
        };
        Ok(ResolvedSink {
            name: sink.name.clone(),
            events: sink.events.iter().cloned().collect(),
            targets: sink.targets.clone(),
            policy_off_after: sink.policy_off_after.get(),
            kind,
        })
    }

    /// Whether the sink wants `event` from `target`.
    pub fn wants(&self, event: &str, target: &str) -> bool {
        self.events.contains(event)
            && (self.targets.is_empty() || self.targets.iter().any(|t| t == target))
    }

    /// One attempt.
    pub(super) async fn deliver(
        &self,
        http: &reqwest::Client,
        message: &Message,
        body: &Value,
    ) -> Result<(), SinkError> {
        match &self.kind {
            SinkKind::Webhook { url, secret } => {
                let bytes = serde_json::to_vec(body).unwrap_or_default();
                let request = http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("X-DLI-GitOps-Event", &message.event)
                    .header("X-DLI-GitOps-Delivery", &message.id)
                    .header(SIGNATURE_HEADER, sign_body(secret, &bytes))
                    .body(bytes);
                send(request, url).await
            }
            SinkKind::Slack { url } => {
                let request = http.post(url).json(&json!({ "text": message.summary }));
                send(request, url).await
            }
            SinkKind::Smn {
                client,
                project_id,
                topic_urn,
            } => {
                let subject = truncate_bytes(
                    &format!("dli-gitops {}: {}", message.event, message.target),
                    SMN_SUBJECT_MAX,
                );
                let text = format!(
                    "{}\n\n{}",
                    message.summary,
                    serde_json::to_string_pretty(body).unwrap_or_default()
                );
                let call = crate::cloud::Call::new(
                    "PublishMessage",
                    reqwest::Method::POST,
                    &[
                        "v2",
                        project_id,
                        "notifications",
                        "topics",
                        topic_urn,
                        "publish",
                    ],
                )
                .json(json!({ "subject": subject, "message": text }))
                .not_idempotent();
                let response = client.send(&call).await.map_err(SinkError::Smn)?;
                response
                    .successful_json()
                    .map(|_| ())
                    .map_err(SinkError::Smn)
            }
        }
    }
}

async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<(), SinkError> {
    let shown = crate::config::control::redact_url(url);
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(SinkError::Status {
            url: shown,
            status: response.status().as_u16(),
        }),
        Err(error) => Err(SinkError::Transport {
            url: shown,
            reason: if error.is_timeout() {
                "timed out".to_string()
            } else if error.is_connect() {
                "connection failed".to_string()
            } else {
                "request failed".to_string()
            },
        }),
    }
}
