//! Bearer-token authorisation for the mutating endpoints, compared in constant time.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a mutating request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token is configured: mutating endpoints are off.
    Disabled,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that does not match.
    Wrong,
}

impl AuthFailure {
    /// A short reason for logs (never the token).
    pub fn log_reason(self) -> &'static str {
        match self {
            AuthFailure::Disabled => "mutating endpoints are disabled",
            AuthFailure::Missing => "no bearer token",
            AuthFailure::Wrong => "wrong bearer token",
        }
    }
}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AuthFailure::Disabled => (
                StatusCode::FORBIDDEN,
                "mutating endpoints are disabled because no API token is configured; set api_token_env (or api_token_file) in the daemon config, provide the token, restart, and send it as `Authorization: Bearer <token>`",
            ),
            AuthFailure::Missing => (
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer <token>` with the token from the daemon's api_token_env",
            ),
            AuthFailure::Wrong => (
                StatusCode::UNAUTHORIZED,
                "the bearer token does not match the daemon's API token",
            ),
        };
        let mut response = (status, axum::Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dli-gitops\""),
            );
        }
        response
    }
}

/// Checks `Authorization: Bearer <token>` against `expected`.
pub fn authorize(expected: Option<&[u8]>, headers: &HeaderMap) -> Result<(), AuthFailure> {
    let Some(expected) = expected else {
        return Err(AuthFailure::Disabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or(AuthFailure::Missing)?;
    if tokens_match(given.as_bytes(), expected) {
        Ok(())
    } else {
        Err(AuthFailure::Wrong)
    }
}

/// Constant-time comparison that also hides the expected token's length: both sides are
/// hashed first, so the time taken depends on neither the content nor the length.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    bool::from(given.ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let token = b"s3cret-token".as_slice();
        assert_eq!(
            authorize(Some(token), &headers("Bearer s3cret-token")),
            Ok(())
        );
        assert_eq!(
            authorize(Some(token), &headers("bearer s3cret-token")),
            Ok(())
        );
        assert_eq!(
            authorize(Some(token), &headers("Bearer s3cret-tokeN")),
            Err(AuthFailure::Wrong)
        );
        assert_eq!(
            authorize(Some(token), &headers("Bearer s3cret-token-and-more")),
            Err(AuthFailure::Wrong)
        );
        assert_eq!(
            authorize(Some(token), &headers("Basic czNjcmV0")),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            authorize(Some(token), &headers("Bearer ")),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            authorize(Some(token), &HeaderMap::new()),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn without_a_configured_token_mutations_are_disabled_whatever_is_sent() {
        assert_eq!(
            authorize(None, &headers("Bearer anything")),
            Err(AuthFailure::Disabled)
        );
        let response = AuthFailure::Disabled.into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = AuthFailure::Wrong.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
