//! Operating controls in the daemon's config: `suspend:` (global and per target, forever or
//! until a time) and `notifications:` (sinks and the events each wants).

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigDuration;

/// `suspend:`: `false` (default), `true` (until the config says otherwise) or
/// `{until: <RFC 3339 time>}`. A suspended target is observed and reported, never changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Suspend {
    #[default]
    Off,
    Always,
    Until(DateTime<Utc>),
}

impl Suspend {
    /// Whether it suspends at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        match self {
            Suspend::Off => false,
            Suspend::Always => true,
            Suspend::Until(until) => now < *until,
        }
    }

    /// The time it ends, for `Until`.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            Suspend::Until(until) => Some(*until),
            _ => None,
        }
    }
}

/// Parses an RFC 3339 time (`2026-12-24T06:00:00Z`, `2026-12-24T07:00:00+01:00`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            format!(
                "`{text}` is not an RFC 3339 time ({error}); write e.g. `2026-12-24T06:00:00Z` or `2026-12-24T07:00:00+01:00`"
            )
        })
}

impl<'de> Deserialize<'de> for Suspend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct UntilForm {
            until: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Flag(bool),
            Until(UntilForm),
        }
        match Form::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "`suspend` is `true`, `false` or `{until: <RFC 3339 time>}`, e.g. `{until: 2026-12-24T06:00:00Z}`",
            )
        })? {
            Form::Flag(true) => Ok(Suspend::Always),
            Form::Flag(false) => Ok(Suspend::Off),
            Form::Until(form) => parse_time(&form.until)
                .map(Suspend::Until)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Suspend {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Suspend::Off => serializer.serialize_bool(false),
            Suspend::Always => serializer.serialize_bool(true),
            Suspend::Until(until) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("until", &until.to_rfc3339())?;
                map.end()
            }
        }
    }
}

impl fmt::Display for Suspend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suspend::Off => f.write_str("not suspended"),
            Suspend::Always => f.write_str("suspended"),
            Suspend::Until(until) => write!(f, "suspended until {}", until.to_rfc3339()),
        }
    }
}

/// Every event a sink can ask for.
pub const NOTIFICATION_EVENTS: &[&str] = &[
    "sync_failed",
    "sync_recovered",
    "health_degraded",
    "health_recovered",
    "drift_detected",
    "drift_corrected",
    "promotion_done",
    "promotion_held",
    "promotion_refused",
    "auto_rollback",
    "auto_sync_off",
    "self_heal_off",
    "started_after_crash",
];

/// One notification sink: where to send, and which events.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSink {
    /// The sink's name, in logs and in the journal's delivery records.
    pub name: String,
    /// The events it wants (see [`NOTIFICATION_EVENTS`]).
    pub events: Vec<String>,
    /// Only these targets' events (empty: every target).
    #[serde(default)]
    pub targets: Vec<String>,
    /// A generic JSON webhook, HMAC-SHA256 signed.
    #[serde(default)]
    pub webhook: Option<WebhookSink>,
    /// A Slack-compatible incoming webhook.
    #[serde(default)]
    pub slack: Option<SlackSink>,
    /// Huawei Cloud SMN: publish to a topic.
    #[serde(default)]
    pub smn: Option<SmnSink>,
    /// `auto_sync_off` / `self_heal_off` fire once a target has had it off this long.
    /// Default 24h.
    #[serde(default = "default_policy_off_after")]
    pub policy_off_after: ConfigDuration,
}

fn default_policy_off_after() -> ConfigDuration {
    ConfigDuration::from_duration(std::time::Duration::from_secs(24 * 3600))
}

/// A generic webhook: `POST url` with the event as JSON and `X-DLI-GitOps-Signature:
/// sha256=<hex HMAC-SHA256 of the body>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    pub url: String,
    /// Environment variable holding the HMAC key.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the HMAC key.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// A Slack-compatible incoming webhook. Its url is a credential: give it by `url_env` or
/// `url_file` (or `url` for a receiver that needs no secret).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSink {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
}

/// Huawei Cloud SMN: `POST /v2/{project_id}/notifications/topics/{topic_urn}/publish`,
/// signed with the credentials of `target`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmnSink {
    /// The target whose region, project and credentials publish.
    pub target: String,
    /// `urn:smn:<region>:<project id>:<topic name>`.
    pub topic_urn: String,
    /// The SMN endpoint (default `https://smn.<region>.myhuaweicloud.com`).
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl NotificationSink {
    /// `webhook`, `slack` or `smn` (the first set).
    pub fn kind(&self) -> &'static str {
        if self.webhook.is_some() {
            "webhook"
        } else if self.slack.is_some() {
            "slack"
        } else {
            "smn"
        }
    }
}

/// A url for messages: the scheme, host and port only (a path or query may hold a token).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.host_str() {
            Some(host) => match parsed.port() {
                Some(port) => format!("{}://{host}:{port}/…", parsed.scheme()),
                None => format!("{}://{host}/…", parsed.scheme()),
            },
            None => format!("{}:…", parsed.scheme()),
        },
        Err(_) => format!("({} characters)", url.chars().count()),
    }
}
