//! Authentication of cloud API calls: `SDK-HMAC-SHA256` AK/SK signatures (verified with the
//! shared `cloud::signer`, `X-Sdk-Date` within 15 minutes) or `X-Auth-Token` tokens issued by the
//! emulated IAM. Failures are HTTP 401 `APIG.0301`, as the API gateway answers.

use http::StatusCode;
use http::request::Parts;

use super::server::{ApiError, Shared};
use crate::cloud::signer::{self, Authorization, SignableRequest};

/// How far `X-Sdk-Date` may be from the emulator's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 15 * 60 * 1000;
/// How long an issued token is valid.
pub const TOKEN_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    AccessKey {
        access_key: String,
        project_id: String,
    },
    Token {
        user: String,
        project_id: String,
    },
}

impl Caller {
    pub fn project_id(&self) -> &str {
        match self {
            Caller::AccessKey { project_id, .. } | Caller::Token { project_id, .. } => project_id,
        }
    }
}

/// A token issued by `POST /v3/auth/tokens`. Kept in memory only: a restart logs users out,
/// as expiring a token does.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub user: String,
    pub project_id: String,
    pub expires_at_ms: i64,
}

/// Signature failures of one access key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lockout {
    pub consecutive_failures: u32,
    pub locked_until_ms: i64,
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::gateway(StatusCode::UNAUTHORIZED, "APIG.0301", message)
}

/// Authenticates one call.
pub(crate) fn authenticate(
    shared: &Shared,
    parts: &Parts,
    decoded_path: &str,
    query: &[(String, String)],
    body: &[u8],
    now_ms: i64,
) -> Result<Caller, ApiError> {
    if let Some(token) = parts.headers.get("x-auth-token") {
        let token = token.to_str().unwrap_or_default();
        let tokens = shared
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        return match tokens.get(token) {
            Some(issued) if issued.expires_at_ms > now_ms => Ok(Caller::Token {
                user: issued.user.clone(),
                project_id: issued.project_id.clone(),
            }),
            Some(_) => Err(unauthorized(
                "Incorrect IAM authentication information: token expires",
            )),
            None => Err(unauthorized(
                "Incorrect IAM authentication information: decrypt token fail",
            )),
        };
    }
    let Some(header) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Err(unauthorized(
            "Incorrect IAM authentication information: x-auth-token not found",
        ));
    };
    let authorization = header
        .to_str()
        .ok()
        .and_then(|value| Authorization::parse(value).ok())
        .ok_or_else(|| {
            unauthorized("Incorrect IAM authentication information: Authorization format error")
        })?;
    let Some(credential) = shared
        .config
        .credentials
        .iter()
        .find(|credential| credential.access_key == authorization.access_key)
    else {
        tracing::info!(access_key = %authorization.access_key, "A call used an unknown access key.");
        return Err(unauthorized(
            "Incorrect IAM authentication information: ak not exist",
        ));
    };
    let settings = shared.config.auth;
    let mut lockouts = shared
        .lockouts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lockout = lockouts.entry(credential.access_key.clone()).or_default();
    if settings.lockout_failures > 0 && lockout.locked_until_ms > now_ms {
        return Err(unauthorized(
            "Incorrect IAM authentication information: AK access failed to reach the limit, forbidden",
        ));
    }
    let result = verify_signature(
        parts,
        decoded_path,
        query,
        body,
        now_ms,
        &credential.secret_key,
    );
    match &result {
        Ok(()) => *lockout = Lockout::default(),
        Err(_) if settings.lockout_failures > 0 => {
            lockout.consecutive_failures += 1;
            if lockout.consecutive_failures >= settings.lockout_failures {
                let lock_ms = i64::try_from(settings.lockout_seconds.saturating_mul(1000))
                    .unwrap_or(i64::MAX);
                lockout.locked_until_ms = now_ms.saturating_add(lock_ms);
                lockout.consecutive_failures = 0;
                tracing::warn!(access_key = %credential.access_key, seconds = settings.lockout_seconds, "An access key is locked after repeated signature failures.");
            }
        }
        Err(_) => {}
    }
    result.map(|()| Caller::AccessKey {
        access_key: credential.access_key.clone(),
        project_id: credential.project_id.clone(),
    })
}

/// Checks the date window and the signature of an AK/SK call.
fn verify_signature(
    parts: &Parts,
    decoded_path: &str,
    query: &[(String, String)],
    body: &[u8],
    now_ms: i64,
    secret_key: &str,
) -> Result<(), ApiError> {
    let sdk_date = parts
        .headers
        .get(signer::HEADER_DATE)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            unauthorized("Incorrect IAM authentication information: x-sdk-date not found")
        })?;
    let signed_at = chrono::NaiveDateTime::parse_from_str(sdk_date, signer::DATE_FORMAT)
        .map_err(|_| {
            unauthorized("Incorrect IAM authentication information: x-sdk-date format error")
        })?
        .and_utc()
        .timestamp_millis();
    if (now_ms - signed_at).abs() > MAX_CLOCK_SKEW_MS {
        return Err(unauthorized(
            "Incorrect IAM authentication information: the request has expired (x-sdk-date is more than 15 minutes from the server time)",
        ));
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|value| (name.as_str().to_string(), value.to_string()))
        })
        .collect();
    let request = SignableRequest {
        method: parts.method.as_str(),
        path: decoded_path,
        query,
        headers: &headers,
        body,
    };
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Authorization::parse(value).ok())
        .ok_or_else(|| {
            unauthorized("Incorrect IAM authentication information: Authorization format error")
        })?;
    match signer::verify(&authorization, secret_key, &request) {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::info!(access_key = %authorization.access_key, reason = %error, "A call's signature was refused.");
            Err(unauthorized(
                "Incorrect IAM authentication information: verify aksk signature fail",
            ))
        }
    }
}
