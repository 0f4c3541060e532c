//! Credentials and the `Secret` wrapper that keeps key material out of logs, errors and `Debug`.

use std::fmt;

/// A secret string (secret key, password, security token, IAM token). Its `Debug` and `Display`
/// print `[redacted]`; the only way to read it is [`Secret::expose`], called where the value is
/// put on the wire or into an HMAC.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's content. Call only to sign or to send it; never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Permanent or temporary access keys; requests are signed with `SDK-HMAC-SHA256`.
    /// `security_token` is set for temporary keys (STS, ECS metadata) and sent as
    /// `X-Security-Token`.
    AkSk {
        access_key: String,
        secret_key: Secret,
        security_token: Option<Secret>,
    },
    /// An IAM user: the client obtains an `X-Subject-Token` from IAM (password grant, project
    /// scope), caches it and renews it before its 24 h expiry. Needs
    /// [`ClientOptions::iam_endpoint`](super::ClientOptions::iam_endpoint).
    Password {
        user: String,
        password: Secret,
        /// The account (domain) name the user belongs to.
        domain: String,
    },
}

impl Credentials {
    /// AK/SK from the environment variables the official SDKs use
    /// (`HUAWEICLOUD_SDK_AK`, `HUAWEICLOUD_SDK_SK`, optional `HUAWEICLOUD_SDK_SECURITY_TOKEN`)
    /// or from the names given.
    pub fn aksk_from_env(
        access_key_env: &str,
        secret_key_env: &str,
        security_token_env: Option<&str>,
    ) -> Result<Credentials, super::CloudError> {
        let read = |name: &str| -> Result<String, super::CloudError> {
            match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
                _ => Err(super::CloudError::Config {
                    problem: format!(
                        "environment variable {name} is not set or empty; set it to the credential it names"
                    ),
                }),
            }
        };
        let access_key = read(access_key_env)?;
        let secret_key = Secret::new(read(secret_key_env)?);
        let security_token = match security_token_env {
            Some(name) => std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
                .map(|value| Secret::new(value.trim())),
            None => None,
        };
        Ok(Credentials::AkSk {
            access_key,
            secret_key,
            security_token,
        })
    }

    /// Every secret value these credentials hold (for redaction checks).
    #[cfg(test)]
    pub(crate) fn secrets(&self) -> Vec<&Secret> {
        match self {
            Credentials::AkSk {
                secret_key,
                security_token,
                ..
            } => std::iter::once(secret_key)
                .chain(security_token.iter())
                .collect(),
            Credentials::Password { password, .. } => vec![password],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_content() {
        let credentials = Credentials::AkSk {
            access_key: "AK-VISIBLE".into(),
            secret_key: Secret::new("sk-very-secret-123"),
            security_token: Some(Secret::new("token-very-secret-456")),
        };
        let debug = format!("{credentials:?}");
        assert!(debug.contains("AK-VISIBLE"));
        assert!(!debug.contains("sk-very-secret-123"), "{debug}");
        assert!(!debug.contains("token-very-secret-456"), "{debug}");
        let password = Credentials::Password {
            user: "alice".into(),
            password: Secret::new("hunter2-secret"),
            domain: "acme".into(),
        };
        assert!(!format!("{password:?}").contains("hunter2-secret"));
        let secret = Secret::new("plain-secret");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert!(!format!("{secret:?}").contains("plain-secret"));
        assert_eq!(secret.expose(), "plain-secret");
        assert_eq!(credentials.secrets().len(), 2);
    }
}
