//! The `sources:` section: named git repositories and watched directories.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{ConfigDuration, SecretRef, secret_ref};

/// One named source: exactly one of `git` or `path`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(default)]
    pub git: Option<GitSourceConfig>,
    /// A plain local directory, watched for changes.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Quiet time after the last change in a watched directory before it counts (path sources).
    #[serde(default = "default_debounce")]
    pub debounce: ConfigDuration,
    /// Environment variable holding the webhook secret (HMAC key or GitLab token).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
}

fn default_debounce() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_millis(500))
}

impl SourceConfig {
    /// Where the webhook secret is read from, if webhooks are enabled for this source.
    pub fn webhook_secret(&self) -> Option<SecretRef> {
        secret_ref(&self.webhook_secret_env, &self.webhook_secret_file)
    }
}

/// A git repository followed at a branch or tag.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitSourceConfig {
    /// `https://…`, `ssh://…`, `user@host:path`, `file://…` or a local path.
    pub url: String,
    /// Branch to follow (default `main` when neither branch nor tag is given).
    #[serde(default)]
    pub branch: Option<String>,
    /// Tag to follow instead of a branch.
    #[serde(default)]
    pub tag: Option<String>,
    /// Subdirectory of the repository holding the jobs.
    #[serde(default = "default_subdirectory")]
    pub path: String,
    #[serde(default = "default_poll_interval")]
    pub poll_interval: ConfigDuration,
    /// Each poll waits `poll_interval` ± this fraction, so daemons do not poll in lock step.
    #[serde(default = "default_poll_jitter")]
    pub poll_jitter: f64,
    /// User name sent with the https token (any non-empty name works for GitHub and Gitea;
    /// GitLab wants `oauth2` for OAuth tokens).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub ssh: Option<SshConfig>,
}

fn default_subdirectory() -> String {
    ".".to_string()
}

fn default_poll_interval() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(60))
}

fn default_poll_jitter() -> f64 {
    0.1
}

impl GitSourceConfig {
    /// Where the https token is read from.
    pub fn token(&self) -> Option<SecretRef> {
        secret_ref(&self.token_env, &self.token_file)
    }

    /// The ref followed, `main` by default.
    pub fn git_ref(&self) -> GitRef {
        match (&self.tag, &self.branch) {
            (Some(tag), _) => GitRef::Tag(tag.clone()),
            (None, Some(branch)) => GitRef::Branch(branch.clone()),
            (None, None) => GitRef::Branch("main".to_string()),
        }
    }

    /// How the url will be reached.
    pub fn transport(&self) -> GitTransport {
        git_transport(&self.url)
    }
}

/// A branch or a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
}

impl GitRef {
    /// The full ref name, `refs/heads/…` or `refs/tags/…`.
    pub fn full_name(&self) -> String {
        match self {
            GitRef::Branch(name) => format!("refs/heads/{name}"),
            GitRef::Tag(name) => format!("refs/tags/{name}"),
        }
    }

    /// The short name.
    pub fn short_name(&self) -> &str {
        match self {
            GitRef::Branch(name) | GitRef::Tag(name) => name,
        }
    }
}

/// How a git url is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitTransport {
    Https,
    /// Plain http: allowed only without a token.
    Http,
    Ssh,
    Local,
}

/// Classifies a git url: scheme URLs by scheme, `user@host:path` as ssh, anything else local.
pub fn git_transport(url: &str) -> GitTransport {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        GitTransport::Https
    } else if lower.starts_with("http://") {
        GitTransport::Http
    } else if lower.starts_with("ssh://") || lower.starts_with("git+ssh://") {
        GitTransport::Ssh
    } else if lower.starts_with("file://") {
        GitTransport::Local
    } else if let Some((before, _)) = url.split_once(':')
        && !before.contains('/')
        && before.len() > 1
    {
        // scp-like `git@host:owner/repo.git`; a Windows drive letter is one character.
        GitTransport::Ssh
    } else {
        GitTransport::Local
    }
}

/// SSH access: a private key and the known_hosts file the server's key must be in.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Login name when the url has none (default `git`).
    #[serde(default)]
    pub user: Option<String>,
    pub key_file: PathBuf,
    /// Servers whose host key is not in this file are refused.
    pub known_hosts_file: PathBuf,
    #[serde(default)]
    pub passphrase_env: Option<String>,
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
}

impl SshConfig {
    pub fn passphrase(&self) -> Option<SecretRef> {
        secret_ref(&self.passphrase_env, &self.passphrase_file)
    }
}
