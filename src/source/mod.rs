//! Sources of desired state: git repositories mirrored with libgit2 ([`GitSource`]), watched
//! local directories ([`DirSource`]), and push webhooks ([`webhook`]). All file access here is
//! blocking; the daemon calls it through `spawn_blocking`.
//!
//! # Design and invariants
//!
//! * `git.rs`: `GitSource` mirrors one url into a bare repository at
//!   `state_dir/mirrors/<readable-url>-<sha256(url)[..12]>` (credentials stripped from the name), so
//!   sources that share a repository share a mirror; an in-process lock per mirror serialises fetches.
//!   `fetch` lists the remote's refs first and skips the fetch when the ref has not moved; it fetches
//!   only the configured ref (`+refs/heads/B:refs/heads/B` or the tag), never prunes, so earlier
//!   commits stay readable (the daemon can keep serving the last good revision). `snapshot` walks
//!   the commit's tree under the subdirectory: blobs → `Data`, mode 120000 → `Symlink`, blobs over
//!   `MAX_FILE_BYTES` → `Oversized` (size from the object header, content not read), submodules
//!   skipped; at most `MAX_SNAPSHOT_FILES` files / `MAX_SNAPSHOT_BYTES`. A damaged mirror is deleted
//!   and re-created. Secrets are read at each fetch (rotation works).
//! * `known_hosts.rs`: OpenSSH known_hosts matching (plain, `[host]:port`, hashed `|1|`, wildcards,
//!   negation, `@revoked`; `@cert-authority` lines are ignored). ssh fetches accept a server only
//!   when its key is listed; https certificate checks are left to libgit2/OpenSSL.
//! * `dir.rs`: `DirSource` snapshot (same `RepoFile` rules, `.git` skipped, revision
//!   `sha256:<hex>` over paths, kinds and contents; oversized files contribute size + mtime) and
//!   `watch(debounce)`: a `notify` watcher feeding a thread that emits one `()` per quiet period
//!   (trailing debounce, capped at 20 × debounce under continuous writes) into a capacity-1 tokio
//!   channel; reads and `.git` changes are ignored; the thread ends when the receiver is dropped.
//! * `webhook.rs`: pure `verify_and_parse(headers, body, secret)` → `Push | Ping | Other`; the
//!   signature or token is checked (constant time) before the body is parsed; `PushEvent::matches`
//!   compares repositories as lower-case `host/path` without scheme, user, port or `.git`.
//! * `mod.rs`: `Source` (one per `sources.<name>`: `from_config`, `poll(last_revision)` → a new
//!   snapshot or `None`), `SourceError` (with `is_retryable`), `jittered(interval, fraction)`.
//!   `set_git_network_timeouts` sets libgit2's process-global connect/read timeouts; it is `unsafe`
//!   and must be called once in `main` before the runtime starts.
//!
//! Invariants: `source` never parses job files (that is `desired`); it never writes outside
//! `state_dir/mirrors/`; it never trusts an ssh host that is not in the configured known_hosts file.

mod dir;
mod git;
pub mod known_hosts;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;

pub use dir::DirSource;
pub use git::{
    DEFAULT_TOKEN_USERNAME, GitSource, mirror_name, redact_url, set_git_network_timeouts,
};
pub use known_hosts::{HostKeyVerdict, KnownHosts};
pub use webhook::{PushEvent, WebhookError, WebhookEvent, verify_and_parse};

use crate::config::{ConfigError, SourceConfig};

/// A commit id (git) or `sha256:<hex>` content digest (directory).
pub type Revision = String;

pub use crate::desired::snapshot::{MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILES};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("opening git mirror {mirror}")]
    OpenMirror {
        mirror: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error(
        "opening git mirror {mirror}: the system refused (out of file descriptors, or no access); the mirror is kept and the next poll tries again"
    )]
    MirrorUnavailable {
        mirror: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("fetching {git_ref} from {url}")]
    Fetch {
        url: String,
        git_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error("{url} has no {git_ref}; check the branch or tag name in the source config")]
    RefNotFound { url: String, git_ref: String },
    #[error("resolving {git_ref} in git mirror {mirror}")]
    Resolve {
        mirror: PathBuf,
        git_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error("{}", host_key_message(.host, .verdict, .known_hosts_file))]
    HostKey {
        host: String,
        verdict: HostKeyVerdict,
        known_hosts_file: PathBuf,
    },
    #[error("reading commit {revision} from git mirror {mirror}; was it fetched?")]
    RevisionNotFound {
        mirror: PathBuf,
        revision: String,
        #[source]
        source: git2::Error,
    },
    #[error("commit {revision} has no directory `{subdir}`; check the source's `path`")]
    SubdirNotFound { revision: String, subdir: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{revision} contains a file name that is not UTF-8: {path}")]
    NonUtf8Path { revision: String, path: String },
    #[error(
        "{revision} is over the snapshot limit of {limit}; point the source's `path` at the jobs directory"
    )]
    SnapshotTooLarge { revision: String, limit: String },
    #[error("{action}: {path}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("watching {path} for changes")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("the source has neither `git:` nor `path:`; Config::load refuses such configs")]
    NeitherGitNorPath,
    #[error("reading a source credential")]
    Secret(#[from] ConfigError),
}

impl SourceError {
    /// Whether trying again later may succeed (network trouble), as opposed to a problem a
    /// person must fix (wrong ref, untrusted host, missing secret).
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Fetch { source, .. } => !matches!(
                source.code(),
                git2::ErrorCode::Auth | git2::ErrorCode::Certificate | git2::ErrorCode::NotFound
            ),
            SourceError::Io { .. }
            | SourceError::Watch { .. }
            | SourceError::MirrorUnavailable { .. } => true,
            _ => false,
        }
    }
}

fn host_key_message(
    host: &str,
    verdict: &HostKeyVerdict,
    known_hosts_file: &std::path::Path,
) -> String {
    let file = known_hosts_file.display();
    match verdict {
        HostKeyVerdict::Trusted => format!("ssh host {host} is trusted"),
        HostKeyVerdict::Unknown if known_hosts_file.as_os_str().is_empty() => format!(
            "refusing ssh host {host}: no known_hosts_file is configured; set ssh.known_hosts_file"
        ),
        HostKeyVerdict::Unknown => format!(
            "refusing ssh host {host}: its key is not in {file}; verify the fingerprint out of band, then add it (`ssh-keyscan {host} >> {file}`)"
        ),
        HostKeyVerdict::Mismatch => format!(
            "refusing ssh host {host}: its key differs from the one in {file}; the key was changed or someone is intercepting the connection, so verify before editing the file"
        ),
        HostKeyVerdict::Revoked => {
            format!("refusing ssh host {host}: its key is marked @revoked in {file}")
        }
    }
}

/// A configured source, ready to poll: the daemon builds one per `sources.<name>` entry.
// One value per configured source, so the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Source {
    Git {
        source: GitSource,
        /// The subdirectory holding the jobs.
        subdir: String,
        poll_interval: Duration,
        poll_jitter: f64,
    },
    Dir {
        source: DirSource,
        debounce: Duration,
    },
}

impl Source {
    /// Builds the source described by `config`; `git` wins if both are set (validation refuses
    /// that), and neither is an error.
    pub fn from_config(
        config: &SourceConfig,
        state_dir: &std::path::Path,
    ) -> Result<Source, SourceError> {
        Ok(match (&config.git, &config.path) {
            (Some(git), _) => Source::Git {
                source: GitSource::new(git, state_dir),
                subdir: git.path.clone(),
                poll_interval: git.poll_interval.get(),
                poll_jitter: git.poll_jitter,
            },
            (None, Some(path)) => Source::Dir {
                source: DirSource::new(path),
                debounce: config.debounce.get(),
            },
            (None, None) => return Err(SourceError::NeitherGitNorPath),
        })
    }

    /// Looks for a new revision: fetches (git) or re-reads (directory), and returns the snapshot
    /// when its revision differs from `last_revision`, `None` when nothing changed. Blocking.
    pub fn poll(
        &self,
        last_revision: Option<&str>,
    ) -> Result<Option<crate::desired::snapshot::RepoSnapshot>, SourceError> {
        match self {
            Source::Git { source, subdir, .. } => {
                let revision = source.fetch()?;
                if last_revision == Some(revision.as_str()) {
                    return Ok(None);
                }
                source.snapshot(&revision, subdir).map(Some)
            }
            Source::Dir { source, .. } => {
                let snapshot = source.snapshot()?;
                if last_revision == Some(snapshot.revision.as_str()) {
                    return Ok(None);
                }
                Ok(Some(snapshot))
            }
        }
    }
}

/// `interval` scattered uniformly within ± `fraction` (clamped to [0, 1]), so many daemons or
/// sources do not poll in lock step.
pub fn jittered(interval: Duration, fraction: f64) -> Duration {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if fraction == 0.0 || interval.is_zero() {
        return interval;
    }
    let factor = rand::thread_rng().gen_range((1.0 - fraction)..=(1.0 + fraction));
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds() {
        let interval = Duration::from_secs(60);
        let mut seen_different = false;
        for _ in 0..200 {
            let value = jittered(interval, 0.1);
            assert!(value >= Duration::from_secs(54) && value <= Duration::from_secs(66));
            seen_different |= value != interval;
        }
        assert!(seen_different);
        assert_eq!(jittered(interval, 0.0), interval);
        assert_eq!(jittered(interval, f64::NAN), interval);
        assert!(jittered(interval, 5.0) <= Duration::from_secs(120));
    }
}
