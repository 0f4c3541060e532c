//! Git push webhooks from GitHub, GitLab and Gitea: verify the signature or token, then parse
//! the push. Pure: the server hands in headers and body and decides what to fetch.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bodies larger than this are refused before verification. GitHub caps payloads at 25 MB, but a
/// push payload worth acting on is far smaller; the server should enforce the same limit.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
        }
    }
}

/// A verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A push of a branch or tag.
    Push(PushEvent),
    /// GitHub's `ping` when a hook is created.
    Ping { provider: Provider },
    /// Any other event type: verified, nothing to do.
    Other { provider: Provider, event: String },
}

/// A verified push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    pub provider: Provider,
    /// Every url the payload gives for the repository (https clone, ssh, web).
    pub repository_urls: Vec<String>,
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    pub git_ref: String,
    /// The new commit; `None` when the ref was deleted or the payload has none.
    pub after: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "webhook request names no known provider: expected an X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header"
    )]
    UnknownProvider,
    #[error(
        "no webhook secret is configured for this source; set webhook_secret_env or webhook_secret_file"
    )]
    NoSecret,
    #[error(
        "{provider:?} webhook has no {header} header; configure the hook's secret in the git server"
    )]
    MissingSignature {
        provider: Provider,
        header: &'static str,
    },
    #[error("{provider:?} webhook {header} header is malformed: {reason}")]
    MalformedSignature {
        provider: Provider,
        header: &'static str,
        reason: &'static str,
    },
    #[error(
        "{provider:?} webhook signature does not match; check that both sides use the same secret"
    )]
    BadSignature { provider: Provider },
    #[error("{provider:?} push payload is not valid: {reason}")]
    MalformedPayload { provider: Provider, reason: String },
}

impl WebhookError {
    /// Whether the sender failed to authenticate (401) rather than sent a bad request (400).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            WebhookError::MissingSignature { .. } | WebhookError::BadSignature { .. }
        )
    }
}

/// Verifies a delivery against `secret` (the HMAC key for GitHub and Gitea, the token for
/// GitLab) in constant time, then parses it. Verification always happens before parsing.
pub fn verify_and_parse(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<WebhookEvent, WebhookError> {
    if body.len() > MAX_WEBHOOK_BODY_BYTES {
        return Err(WebhookError::TooLarge {
            size: body.len(),
            limit: MAX_WEBHOOK_BODY_BYTES,
        });
    }
    if secret.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    // Gitea also sends X-GitHub-Event for compatibility, so it is recognised first.
    let (provider, event) = if let Some(event) = header("x-gitea-event") {
        (Provider::Gitea, event)
    } else if let Some(event) = header("x-gitlab-event") {
        (Provider::GitLab, event)
    } else if let Some(event) = header("x-github-event") {
        (Provider::GitHub, event)
    } else {
        return Err(WebhookError::UnknownProvider);
    };
    match provider {
        Provider::GitHub => verify_hmac(
            provider,
            "X-Hub-Signature-256",
            header("x-hub-signature-256"),
            Some("sha256="),
            body,
            secret,
        )?,
        Provider::Gitea => {
            // Newer Gitea also sends X-Hub-Signature-256; X-Gitea-Signature is bare hex.
            verify_hmac(
                provider,
                "X-Gitea-Signature",
                header("x-gitea-signature"),
                None,
                body,
                secret,
            )?
        }
        Provider::GitLab => {
            let token = header("x-gitlab-token").ok_or(WebhookError::MissingSignature {
                provider,
                header: "X-Gitlab-Token",
            })?;
            // Comparing digests keeps the comparison constant-time whatever the lengths.
            let expected = Sha256::digest(secret);
            let given = Sha256::digest(token.as_bytes());
            if !bool::from(expected.ct_eq(&given)) {
                return Err(WebhookError::BadSignature { provider });
            }
        }
    }
    let event = event.trim();
    let is_push = match provider {
        Provider::GitHub | Provider::Gitea => event == "push",
        Provider::GitLab => event == "Push Hook" || event == "Tag Push Hook",
    };
    if provider == Provider::GitHub && event == "ping" {
        return Ok(WebhookEvent::Ping { provider });
    }
    if !is_push {
        return Ok(WebhookEvent::Other {
            provider,
            event: event.to_string(),
        });
    }
    parse_push(provider, body).map(WebhookEvent::Push)
}

fn verify_hmac(
    provider: Provider,
    header_name: &'static str,
    value: Option<&str>,
    prefix: Option<&str>,
    body: &[u8],
    secret: &[u8],
) -> Result<(), WebhookError> {
    let value = value.ok_or(WebhookError::MissingSignature {
        provider,
        header: header_name,
    })?;
    let hex_digest = match prefix {
        Some(prefix) => {
            value
                .trim()
                .strip_prefix(prefix)
                .ok_or(WebhookError::MalformedSignature {
                    provider,
                    header: header_name,
                    reason: "expected `sha256=` followed by hex",
                })?
        }
        None => value.trim(),
    };
    let given = hex::decode(hex_digest).map_err(|_| WebhookError::MalformedSignature {
        provider,
        header: header_name,
        reason: "not hexadecimal",
    })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::NoSecret)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature { provider })
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    checkout_sha: Option<String>,
    repository: Option<RepositoryPayload>,
    project: Option<RepositoryPayload>,
}

#[derive(Deserialize, Default)]
struct RepositoryPayload {
    clone_url: Option<String>,
    ssh_url: Option<String>,
    html_url: Option<String>,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
    url: Option<String>,
    homepage: Option<String>,
}

fn parse_push(provider: Provider, body: &[u8]) -> Result<PushEvent, WebhookError> {
    let payload: PushPayload =
        serde_json::from_slice(body).map_err(|error| WebhookError::MalformedPayload {
            provider,
            reason: error.to_string(),
        })?;
    let git_ref = payload
        .git_ref
        .filter(|value| value.starts_with("refs/"))
        .ok_or_else(|| WebhookError::MalformedPayload {
            provider,
            reason: "no `ref` of the form refs/heads/… or refs/tags/…".to_string(),
        })?;
    let mut repository_urls = Vec::new();
    for repository in [payload.repository, payload.project].into_iter().flatten() {
        for url in [
            repository.clone_url,
            repository.ssh_url,
            repository.html_url,
            repository.git_http_url,
            repository.git_ssh_url,
            repository.web_url,
            repository.url,
            repository.homepage,
        ]
        .into_iter()
        .flatten()
        {
            if !url.is_empty() && !repository_urls.contains(&url) {
                repository_urls.push(url);
            }
        }
    }
    if repository_urls.is_empty() {
        return Err(WebhookError::MalformedPayload {
            provider,
            reason: "no repository url in the payload".to_string(),
        });
    }
    let is_commit = |sha: &String| {
        sha.len() >= 40
            && sha.chars().all(|c| c.is_ascii_hexdigit())
            && sha.chars().any(|c| c != '0')
    };
    let after = payload
        .after
        .filter(is_commit)
        .or(payload.checkout_sha.filter(is_commit));
    Ok(PushEvent {
        provider,
        repository_urls,
        git_ref,
        after,
    })
}

impl PushEvent {
    /// Whether this push is for the repository at `url` (any of https, ssh, scp-like forms, with
    /// or without `.git`, any host case) and the branch or tag `branch_or_tag` (a short name, or
    /// a full `refs/heads/…` / `refs/tags/…` name).
    pub fn matches(&self, url: &str, branch_or_tag: &str) -> bool {
        let ref_matches = if branch_or_tag.starts_with("refs/") {
            self.git_ref == branch_or_tag
        } else {
            self.git_ref == format!("refs/heads/{branch_or_tag}")
                || self.git_ref == format!("refs/tags/{branch_or_tag}")
        };
        let Some(wanted) = normalize_repository_url(url) else {
            return false;
        };
        ref_matches
            && self
                .repository_urls
                .iter()
                .filter_map(|candidate| normalize_repository_url(candidate))
                .any(|candidate| candidate == wanted)
    }
}

/// `host/owner/repo` in lower case, from `https://Host/owner/repo.git`, `ssh://git@host:22/owner/repo`,
/// `git@host:owner/repo.git` and the like. Ports, users and a trailing `.git` or `/` are dropped:
/// the same repository is served over https and ssh on different ports.
pub fn normalize_repository_url(url: &str) -> Option<String> {
    let trimmed = url.trim();
    let (host, path) = if let Some((_, rest)) = trimmed.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host_port = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let host = if host_port.starts_with('[') {
            host_port
                .split_once(']')
                .map_or(host_port, |(h, _)| h)
                .trim_start_matches('[')
        } else {
            host_port.split(':').next().unwrap_or(host_port)
        };
        (host.to_string(), path.to_string())
    } else if let Some((user_host, path)) = trimmed.split_once(':') {
        let host = user_host
            .rsplit_once('@')
            .map_or(user_host, |(_, host)| host);
        (host.to_string(), path.to_string())
    } else {
        return None;
    };
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!(
        "{}/{}",
        host.to_ascii_lowercase(),
        path.to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_url_forms() {
        let expected = Some("git.example.com/data/jobs".to_string());
        for form in [
            "https://git.example.com/data/jobs.git",
            "https://Git.Example.com/data/jobs",
            "https://user@git.example.com:8443/data/jobs/",
            "ssh://git@git.example.com:2222/data/jobs.git",
            "git@git.example.com:data/jobs.git",
            "http://git.example.com/data/jobs",
        ] {
            assert_eq!(normalize_repository_url(form), expected, "{form}");
        }
        assert_ne!(
            normalize_repository_url("https://git.example.com/data/jobs2"),
            expected
        );
        assert_eq!(normalize_repository_url("/local/path"), None);
    }
}
