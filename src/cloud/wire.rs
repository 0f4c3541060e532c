//! Tolerant decoding of the services' JSON: booleans as `true` or `"true"`, ids as numbers or
//! strings, 13-digit millisecond times, error bodies as an object or an array, and both
//! `error_code`/`error_msg` and `code`/`message` spellings.

use serde_json::Value;

/// A boolean the service may write as `true`, `"true"`, `1` or `"1"`.
pub fn flexible_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        Value::Number(number) => number.as_i64().map(|n| n != 0),
        _ => None,
    }
}

/// An integer the service may write as a number or a string (`100`, `"100"`, `1.7e12`).
pub fn flexible_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// A string, treating `""` and `null` as unset; numbers and booleans are rendered as text.
pub fn non_empty_string(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// An epoch time in milliseconds. 10-digit second values are scaled up, so callers always see
/// 13-digit milliseconds.
pub fn epoch_millis(value: &Value) -> Option<i64> {
    let raw = flexible_i64(value)?;
    if raw > 0 && raw < 100_000_000_000 {
        Some(raw * 1000)
    } else {
        Some(raw)
    }
}

/// The field of an object, `Null` when absent or when `value` is not an object.
pub fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

/// The first field present (non-null) among several spellings.
pub fn first_field<'a>(value: &'a Value, names: &[&str]) -> &'a Value {
    names
        .iter()
        .map(|name| field(value, name))
        .find(|found| !found.is_null())
        .unwrap_or(&Value::Null)
}

/// A service error parsed from a response body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceErrorBody {
    pub error_code: Option<String>,
    pub error_msg: String,
}

/// Parses an error body: `{"error_code","error_msg"}`, `{"code","message"}`,
/// `{"errorCode","errorMsg"}`, APIG's `{"error":{"code","message"}}`, or an array of any of
/// those (batch endpoints). Non-JSON bodies become the message, trimmed and shortened.
pub fn parse_error_body(body: &[u8]) -> ServiceErrorBody {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => error_from_value(&value).unwrap_or_else(|| ServiceErrorBody {
            error_code: None,
            error_msg: shorten(&String::from_utf8_lossy(body)),
        }),
        Err(_) => ServiceErrorBody {
            error_code: None,
            error_msg: shorten(&String::from_utf8_lossy(body)),
        },
    }
}

fn error_from_value(value: &Value) -> Option<ServiceErrorBody> {
    match value {
        Value::Array(items) => {
            let parsed: Vec<ServiceErrorBody> = items.iter().filter_map(error_from_value).collect();
            let first = parsed.first()?.clone();
            let messages: Vec<String> = parsed
                .iter()
                .map(|e| e.error_msg.clone())
                .filter(|m| !m.is_empty())
                .collect();
            Some(ServiceErrorBody {
                error_code: first.error_code,
                error_msg: messages.join("; "),
            })
        }
        Value::Object(_) => {
            if let Some(parsed) = value
                .get("error")
                .filter(|inner| inner.is_object())
                .and_then(error_from_value)
            {
                return Some(parsed);
            }
            let code = non_empty_string(first_field(value, &["error_code", "errorCode", "code"]));
            let message = non_empty_string(first_field(
                value,
                &[
                    "error_msg",
                    "errorMsg",
                    "message",
                    "msg",
                    "error_description",
                ],
            ));
            if code.is_none() && message.is_none() {
                return None;
            }
            Some(ServiceErrorBody {
                error_code: code,
                error_msg: message.map(|m| shorten(&m)).unwrap_or_default(),
            })
        }
        _ => None,
    }
}

/// Keeps messages readable in logs: one line, at most 500 characters.
pub fn shorten(text: &str) -> String {
    let single_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if single_line.chars().count() > 500 {
        let mut cut: String = single_line.chars().take(500).collect();
        cut.push('…');
        cut
    } else {
        single_line
    }
}

/// The `is_success` verdict of a 2xx body: `Some(false)` when the service said it failed.
pub fn is_success(value: &Value) -> Option<bool> {
    flexible_bool(field(value, "is_success"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_ids_and_times_in_every_spelling() {
        assert_eq!(flexible_bool(&json!(true)), Some(true));
        assert_eq!(flexible_bool(&json!("true")), Some(true));
        assert_eq!(flexible_bool(&json!("False")), Some(false));
        assert_eq!(flexible_bool(&json!("maybe")), None);
        assert_eq!(flexible_i64(&json!(100)), Some(100));
        assert_eq!(flexible_i64(&json!("100")), Some(100));
        assert_eq!(flexible_i64(&json!(" 7 ")), Some(7));
        assert_eq!(flexible_i64(&json!("x")), None);
        assert_eq!(epoch_millis(&json!(1711647009620_i64)), Some(1711647009620));
        assert_eq!(epoch_millis(&json!("1711647009620")), Some(1711647009620));
        assert_eq!(epoch_millis(&json!(1711647009)), Some(1711647009000));
        assert_eq!(non_empty_string(&json!("")), None);
        assert_eq!(non_empty_string(&json!(null)), None);
    }

    #[test]
    fn error_bodies_in_every_shape() {
        let object = parse_error_body(br#"{"error_code":"DLI.16001","error_msg":"job not found"}"#);
        assert_eq!(object.error_code.as_deref(), Some("DLI.16001"));
        assert_eq!(object.error_msg, "job not found");
        let alternate = parse_error_body(br#"{"code":"DLF.0100","message":"no such job"}"#);
        assert_eq!(alternate.error_code.as_deref(), Some("DLF.0100"));
        assert_eq!(alternate.error_msg, "no such job");
        let array = parse_error_body(
            br#"[{"error_code":"DLI.13024","error_msg":"No job-running queue selected"}]"#,
        );
        assert_eq!(array.error_code.as_deref(), Some("DLI.13024"));
        assert_eq!(array.error_msg, "No job-running queue selected");
        let nested = parse_error_body(
            br#"{"error":{"code":"APIG.0301","message":"verify aksk signature fail"}}"#,
        );
        assert_eq!(nested.error_code.as_deref(), Some("APIG.0301"));
        let apig = parse_error_body(
            br#"{"error_msg":"Incorrect IAM authentication information","error_code":"APIG.0301","request_id":"abc"}"#,
        );
        assert_eq!(apig.error_code.as_deref(), Some("APIG.0301"));
        let text = parse_error_body(b"<html>Bad Gateway</html>\n");
        assert_eq!(text.error_code, None);
        assert_eq!(text.error_msg, "<html>Bad Gateway</html>");
        let long = parse_error_body("x".repeat(2000).as_bytes());
        assert!(long.error_msg.chars().count() <= 501);
    }
}
