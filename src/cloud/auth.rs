//! Authentication state: the AK/SK or IAM-token authenticator of a client, the IAM token cache,
//! and the process-wide registry of refused credentials.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::CloudError;
use super::http::{Call, ServiceClient};
use super::secret::Secret;

/// How long requests are refused locally after the service rejected our credentials. APIG locks
/// an access key for 5 minutes after 5 bad signatures; one refusal per window can never get there.
pub(crate) const AUTH_FAILURE_BACKOFF: Duration = Duration::from_secs(300);

/// Credentials the services refused, by identity and endpoint, process-wide: a daemon that
/// rebuilds its clients every cycle still sends at most one request per back-off window with a
/// refused key.
pub(crate) fn refusals() -> &'static Mutex<HashMap<String, (std::time::Instant, String)>> {
    static REFUSALS: OnceLock<Mutex<HashMap<String, (std::time::Instant, String)>>> =
        OnceLock::new();
    REFUSALS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A short one-way digest that tells two secrets apart without revealing either.
pub(crate) fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(secret.as_bytes())[..8])
}

/// How one client authenticates its requests.
pub(crate) enum Authenticator {
    AkSk {
        access_key: String,
        secret_key: Secret,
        security_token: Option<Secret>,
    },
    Token(Box<TokenSource>),
    /// IAM's own token request carries the password in its body.
    Anonymous,
}

/// IAM password credentials and the token they last obtained.
pub(crate) struct TokenSource {
    pub user: String,
    pub password: Secret,
    pub domain: String,
    pub project_id: String,
    pub iam: Option<ServiceClient>,
    pub renew_before: Duration,
    pub cache: tokio::sync::Mutex<Option<CachedToken>>,
}

/// A token and when to stop using it (before its real expiry).
pub(crate) struct CachedToken {
    token: Secret,
    renew_at: Instant,
}

impl TokenSource {
    /// The cached token, or a new one from IAM when none is cached or it is due for renewal.
    pub(crate) async fn token(&self) -> Result<Secret, CloudError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache
            .as_ref()
            .filter(|cached| Instant::now() < cached.renew_at)
        {
            return Ok(cached.token.clone());
        }
        let iam = self.iam.as_ref().ok_or_else(|| CloudError::Config {
            problem: "password credentials need an IAM endpoint: set ClientOptions.iam_endpoint (ServiceEndpoints.iam)".into(),
        })?;
        let body = serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {
                        "name": self.user,
                        "password": self.password.expose(),
                        "domain": {"name": self.domain}
                    }}
                },
                "scope": {"project": {"id": self.project_id}}
            }
        });
        let call = Call::new("issue_token", Method::POST, &["v3", "auth", "tokens"])
            .target(format!("user {}", self.user))
            .json(body);
        let response = iam.send(&call).await?;
        let token = response
            .headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                response.decode_error("IAM answered without an X-Subject-Token header")
            })?;
        let value = response.json().unwrap_or(Value::Null);
        let lifetime = value
            .pointer("/token/expires_at")
            .and_then(Value::as_str)
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .map(|expires| {
                (expires.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::from_secs(24 * 3600))
            .min(Duration::from_secs(24 * 3600));
        let renew_at = Instant::now() + lifetime.saturating_sub(self.renew_before);
        tracing::info!(user = %self.user, valid_for_s = lifetime.as_secs(), "Obtained an IAM token.");
        *cache = Some(CachedToken {
            token: token.clone(),
            renew_at,
        });
        Ok(token)
    }
}
