//! The DLI queue list: `GET /v1.0/{project_id}/queues` (SDK `ListQueues`,
//! `list_queues_request.py` / `list_queues_response.py` / `queue_details.py`, huaweicloudsdkdli
//! 3.1.219). The queues are the emulator config's `queues`, the same in every project.
//!
//! Strict where the SDK model is explicit: `queue_type` is `sql`, `general` or `all` and defaults
//! to `sql` (so a Flink queue, type `general`, is listed only when the request asks for
//! `general` or `all`); `page-size` and `current-page` are positive integers; `order` is one of
//! the four documented orders; `with-priv` / `with-charge-info` are booleans. The answer is
//! `{is_success, message, queues: [QueueDetails]}` with the SDK's field names and types.

use serde_json::{Value, json};

use super::server::{ApiError, Call, Reply};

/// A fixed creation time for the configured queues (they exist before the emulator starts).
const QUEUE_CREATE_TIME_MS: i64 = 1_700_000_000_000;

pub(crate) fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let value = |name: &str| {
        call.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let queue_type = value("queue_type").unwrap_or("sql");
    if !matches!(queue_type, "sql" | "general" | "all") {
        return Err(ApiError::dli_parameter(format!(
            "queue_type {queue_type:?} is not one of sql, general, all"
        )));
    }
    for flag in ["with-priv", "with-charge-info"] {
        if let Some(text) = value(flag)
            && !matches!(text, "true" | "false")
        {
            return Err(ApiError::dli_parameter(format!(
                "{flag} {text:?} is not a boolean"
            )));
        }
    }
    let positive = |name: &str, default: usize| -> Result<usize, ApiError> {
        match value(name) {
            None => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(number) if number > 0 => Ok(number),
                _ => Err(ApiError::dli_parameter(format!(
                    "{name} {text:?} is not a positive integer"
                ))),
            },
        }
    };
    let page_size = positive("page-size", i32::MAX as usize)?;
    let current_page = positive("current-page", 1)?;
    let order = value("order").unwrap_or("queue_name_asc");
    let mut queues: Vec<&crate::emulator::config::EmulatorQueue> = call
        .shared
        .config
        .queues
        .iter()
        .filter(|queue| queue_type == "all" || queue.queue_type == queue_type)
        .collect();
    match order {
        "queue_name_asc" => queues.sort_by(|a, b| a.name.cmp(&b.name)),
        "queue_name_desc" => queues.sort_by(|a, b| b.name.cmp(&a.name)),
        "cu_asc" => queues.sort_by(|a, b| a.cu_count.cmp(&b.cu_count).then(a.name.cmp(&b.name))),
        "cu_desc" => queues.sort_by(|a, b| b.cu_count.cmp(&a.cu_count).then(a.name.cmp(&b.name))),
        other => {
            return Err(ApiError::dli_parameter(format!(
                "order {other:?} is not one of queue_name_asc, queue_name_desc, cu_asc, cu_desc"
            )));
        }
    }
    let details: Vec<Value> = queues
        .iter()
        .skip(page_size.saturating_mul(current_page - 1))
        .take(page_size)
        .map(|queue| {
            let index = call
                .shared
                .config
                .queues
                .iter()
                .position(|q| q.name == queue.name)
                .unwrap_or(0) as i64;
            json!({
                "queue_id": 1000 + index,
                "queue_name": queue.name,
                "description": "",
                "owner": crate::emulator::config::DEV_USER_NAME,
                "create_time": QUEUE_CREATE_TIME_MS,
                "queue_type": queue.queue_type,
                "cu_count": queue.cu_count,
                "charging_mode": 1,
                "resource_id": format!("emulator-queue-{}", queue.name),
                "enterprise_project_id": "0",
                "resource_mode": 1,
                "platform": "x86_64",
                "is_restarting": false,
                "feature": "basic",
                "resource_type": "vm",
                "cu_spec": queue.cu_count,
                "cu_scale_out_limit": queue.cu_count,
                "cu_scale_in_limit": queue.cu_count,
            })
        })
        .collect();
    Ok(Reply::json(json!({
        "is_success": true,
        "message": "",
        "queues": details,
    })))
}
