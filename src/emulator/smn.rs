//! Simple Message Notification (SMN) v2: `PublishMessage`, `POST
//! /v2/{project_id}/notifications/topics/{topic_urn}/publish` (SDK `huaweicloudsdksmn` v2,
//! `smn_client.py` `publish_message`, `publish_message_request_body.py`,
//! `publish_message_response.py`), signed like every other call. Published messages are kept
//! in memory and read back with `GET /_emulator/v1/smn/messages`.
//!
//! Checked as the SDK model documents: the topic URN is `urn:smn:<region>:<project id>:<name>`
//! and names the caller's project; the body is an object with only the documented members;
//! at least one of `message`, `message_structure`, `message_template_name` (the template
//! needs `tags`); `subject` at most 512 bytes; `message` UTF-8, at most 256 KB;
//! `message_structure` a JSON object string with a `default` member; `time_to_live` a string
//! of a whole number of seconds in 1..=86400. Any topic with a well-formed URN of the
//! caller's project is taken to exist (the emulator has no topic management).

use std::sync::Mutex;

use serde_json::{Map, Value, json};

use super::server::{ApiError, Call, Reply};

/// The documented members of the publish body.
const MEMBERS: &[&str] = &[
    "subject",
    "message",
    "message_structure",
    "message_template_name",
    "tags",
    "time_to_live",
];
const SUBJECT_MAX_BYTES: usize = 512;
const MESSAGE_MAX_BYTES: usize = 256 * 1024;

/// Messages published, in order.
#[derive(Debug, Default)]
pub(crate) struct SmnMessages {
    messages: Mutex<Vec<Value>>,
}

impl SmnMessages {
    pub fn all(&self) -> Vec<Value> {
        self.messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    // The emulator's own code: the SDK names no SMN error codes.
    ApiError::bad_request("SMN.0001", message)
}

/// `POST /v2/{project_id}/notifications/topics/{topic_urn}/publish`.
pub(crate) fn publish(call: &Call<'_>) -> Result<Reply, ApiError> {
    let topic_urn = call
        .segments
        .get(4)
        .cloned()
        .ok_or_else(|| invalid("missing topic_urn"))?;
    let parts: Vec<&str> = topic_urn.split(':').collect();
    if parts.len() != 5
        || parts[0] != "urn"
        || parts[1] != "smn"
        || parts.iter().any(|p| p.is_empty())
    {
        return Err(invalid(format!(
            "topic_urn {topic_urn:?} is not urn:smn:<region>:<project_id>:<topic name>"
        )));
    }
    if parts[3] != call.project_id {
        return Err(ApiError::with_status(
            http::StatusCode::NOT_FOUND,
            "SMN.0002",
            format!(
                "The topic {topic_urn} does not exist in project {}",
                call.project_id
            ),
        ));
    }
    let body: Value = serde_json::from_slice(&call.body)
        .map_err(|error| invalid(format!("the body is not JSON: {error}")))?;
    let Value::Object(body) = body else {
        return Err(invalid("the body is not a JSON object"));
    };
    if let Some(unknown) = body.keys().find(|key| !MEMBERS.contains(&key.as_str())) {
        return Err(invalid(format!(
            "unknown member {unknown:?}; a publish body has {}",
            MEMBERS.join(", ")
        )));
    }
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(_) => Err(invalid(format!("{name} must be a string"))),
        }
    };
    let subject = text("subject")?;
    let message = text("message")?;
    let structure = text("message_structure")?;
    let template = text("message_template_name")?;
    let ttl = text("time_to_live")?;
    if message.is_none() && structure.is_none() && template.is_none() {
        return Err(invalid(
            "one of message, message_structure or message_template_name is required",
        ));
    }
    if let Some(subject) = subject
        && subject.len() > SUBJECT_MAX_BYTES
    {
        return Err(invalid(format!(
            "subject is {} bytes; at most {SUBJECT_MAX_BYTES}",
            subject.len()
        )));
    }
    if let Some(message) = message
        && message.len() > MESSAGE_MAX_BYTES
    {
        return Err(invalid(format!(
            "message is {} bytes; at most {MESSAGE_MAX_BYTES}",
            message.len()
        )));
    }
    if let Some(structure) = structure {
        let parsed: Option<Map<String, Value>> = serde_json::from_str(structure).ok();
        if !parsed.is_some_and(|object| object.contains_key("default")) {
            return Err(invalid(
                "message_structure must be a JSON object string with a \"default\" member",
            ));
        }
    }
    if template.is_some() && !matches!(body.get("tags"), Some(Value::Object(_))) {
        return Err(invalid("message_template_name needs tags"));
    }
    if let Some(tags) = body.get("tags")
        && !matches!(tags, Value::Object(map) if map.values().all(Value::is_string))
    {
        return Err(invalid("tags must be an object of strings"));
    }
    if let Some(ttl) = ttl
        && !ttl
            .parse::<u32>()
            .is_ok_and(|seconds| (1..=86_400).contains(&seconds))
    {
        return Err(invalid(format!(
            "time_to_live {ttl:?} must be a whole number of seconds from 1 to 86400"
        )));
    }
    let message_id = hex::encode(rand::random::<[u8; 16]>());
    let request_id = hex::encode(rand::random::<[u8; 16]>());
    let mut record = Map::new();
    record.insert("message_id".into(), json!(message_id));
    record.insert("topic_urn".into(), json!(topic_urn));
    record.insert("project_id".into(), json!(call.project_id));
    record.insert("time_ms".into(), json!(call.now_ms));
    for (key, value) in &body {
        record.insert(key.clone(), value.clone());
    }
    call.shared
        .smn
        .messages
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Value::Object(record));
    Ok(Reply::json(json!({
        "request_id": request_id,
        "message_id": message_id,
    })))
}
