//! The emulated IAM: the password grant at `POST /v3/auth/tokens` (token in the
//! `X-Subject-Token` header) and `GET /v3/projects`, which the SDKs use to find a project id.

use http::{HeaderName, StatusCode};
use serde_json::{Value, json};

use super::auth::{Caller, IssuedToken, TOKEN_LIFETIME_MS};
use super::server::{ApiError, Reply, ReplyBody, Shared};

fn keystone_error(status: StatusCode, message: &str) -> Reply {
    ApiError {
        status,
        body: json!({"error": {"code": status.as_u16(), "message": message, "title": status.canonical_reason().unwrap_or("Error")}}),
    }
    .into()
}

fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// `POST /v3/auth/tokens` with the password method, scoped to a project by id or name.
pub(crate) fn create_token(shared: &Shared, body: &[u8], now_ms: i64) -> Reply {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return keystone_error(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
        );
    };
    let identity = &request["auth"]["identity"];
    let uses_password = identity["methods"]
        .as_array()
        .is_some_and(|methods| methods.iter().any(|method| method == "password"));
    if !uses_password {
        return keystone_error(
            StatusCode::BAD_REQUEST,
            "Only the password method is supported by the emulator.",
        );
    }
    let user = &identity["password"]["user"];
    let (Some(name), Some(password)) = (user["name"].as_str(), user["password"].as_str()) else {
        return keystone_error(
            StatusCode::BAD_REQUEST,
            "auth.identity.password.user needs a name and a password.",
        );
    };
    let domain = user["domain"]["name"].as_str().unwrap_or_default();
    let Some(account) = shared.config.users.iter().find(|candidate| {
        candidate.name == name
            && candidate.password == password
            && (domain.is_empty() || candidate.domain == domain)
    }) else {
        tracing::info!(user = %name, "A token request had a wrong user name or password.");
        return keystone_error(
            StatusCode::UNAUTHORIZED,
            "The username or password is wrong.",
        );
    };
    let scope = &request["auth"]["scope"]["project"];
    if let Some(project_id) = scope["id"].as_str()
        && project_id != account.project_id
    {
        return keystone_error(
            StatusCode::FORBIDDEN,
            "The user has no access to the requested project.",
        );
    }
    let token = format!("MIIEMU{}", hex::encode(rand::random::<[u8; 32]>()));
    let expires_at_ms = now_ms + TOKEN_LIFETIME_MS;
    let mut tokens = shared
        .tokens
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tokens.retain(|_, issued| issued.expires_at_ms > now_ms);
    tokens.insert(
        token.clone(),
        IssuedToken {
            user: account.name.clone(),
            project_id: account.project_id.clone(),
            expires_at_ms,
        },
    );
    drop(tokens);
    let project_name = scope["name"].as_str().unwrap_or("emulator");
    Reply {
        status: StatusCode::CREATED,
        body: ReplyBody::Json(json!({"token": {
            "expires_at": iso_time(expires_at_ms),
            "issued_at": iso_time(now_ms),
            "methods": ["password"],
            "project": {"id": account.project_id, "name": project_name,
                        "domain": {"id": account.domain, "name": account.domain}},
            "user": {"id": account.name, "name": account.name,
                     "domain": {"id": account.domain, "name": account.domain}},
            "catalog": []
        }})),
        headers: vec![(HeaderName::from_static("x-subject-token"), token)],
    }
}

/// `GET /v3/projects[?name=region]`: the caller's project, named as asked.
pub(crate) fn list_projects(caller: &Caller, query: &[(String, String)]) -> Reply {
    let name = query
        .iter()
        .find(|(key, _)| key == "name")
        .map(|(_, value)| value.as_str())
        .unwrap_or("emulator");
    Reply::json(json!({
        "projects": [{"id": caller.project_id(), "name": name, "enabled": true,
                      "domain_id": "emulator", "is_domain": false, "parent_id": "emulator",
                      "description": "dli-gitops emulator project"}],
        "links": {"self": "/v3/projects", "next": null, "previous": null}
    }))
}
