//! A git repository followed at a branch or tag, fetched with libgit2 into a bare mirror under
//! the state directory, and read as a [`RepoSnapshot`] at any fetched commit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions,
    ObjectType, Oid, ProxyOptions, RemoteCallbacks, Repository, TreeWalkMode, TreeWalkResult,
};
use sha2::{Digest, Sha256};

use super::known_hosts::{HostKeyVerdict, KnownHosts};
use super::{MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILES, Revision, SourceError};
use crate::config::{Config, GitRef, GitSourceConfig, GitTransport, SecretRef, SshConfig};
use crate::desired::snapshot::{MAX_FILE_BYTES, RepoFile, RepoSnapshot};

/// User name sent with an https token when none is configured. GitHub and Gitea accept any
/// non-empty name with a token as the password.
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

/// One followed repository ref and its mirror.
#[derive(Debug, Clone)]
pub struct GitSource {
    url: String,
    redacted_url: String,
    git_ref: GitRef,
    mirror_dir: PathBuf,
    token: Option<SecretRef>,
    username: String,
    ssh: Option<SshConfig>,
}

impl GitSource {
    /// Prepares a source; nothing touches the network or the disk until [`GitSource::fetch`].
    pub fn new(spec: &GitSourceConfig, state_dir: &Path) -> GitSource {
        let redacted_url = redact_url(&spec.url);
        GitSource {
            mirror_dir: state_dir.join("mirrors").join(mirror_name(&spec.url)),
            url: spec.url.clone(),
            redacted_url,
            git_ref: spec.git_ref(),
            token: spec.token(),
            username: spec
                .username
                .clone()
                .unwrap_or_else(|| DEFAULT_TOKEN_USERNAME.to_string()),
            ssh: spec.ssh.clone(),
        }
    }

    /// The url without any credentials, for logs and status.
    pub fn display_url(&self) -> &str {
        &self.redacted_url
    }

    pub fn git_ref(&self) -> &GitRef {
        &self.git_ref
    }

    /// The bare mirror this source fetches into.
    pub fn mirror_dir(&self) -> &Path {
        &self.mirror_dir
    }

    /// The repository's anonymous remote for this source's URL.
    fn anonymous_remote<'r>(
        &self,
        repository: &'r Repository,
        full_name: &str,
    ) -> Result<git2::Remote<'r>, SourceError> {
        repository
            .remote_anonymous(&self.url)
            .map_err(|source| SourceError::Fetch {
                url: self.redacted_url.clone(),
                git_ref: full_name.to_string(),
                source,
            })
    }

    /// Brings the mirror up to date with the remote ref and returns the commit it points at.
    /// Asks the remote for its refs first and skips the fetch when the ref has not moved, so a
    /// poll with no new commit costs one round trip. Blocking.
    pub fn fetch(&self) -> Result<Revision, SourceError> {
        let lock = mirror_lock(&self.mirror_dir);
        let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let repository = self.open_mirror()?;
        let full_name = self.git_ref.full_name();
        let host_key_problem = RefCell::new(None);
        let advertised = {
            let mut remote = self.anonymous_remote(&repository, &full_name)?;
            let connection = remote
                .connect_auth(
                    Direction::Fetch,
                    Some(self.callbacks(&host_key_problem)?),
                    None,
                )
                .map_err(|source| self.fetch_error(source, &host_key_problem))?;
            let heads = connection
                .list()
                .map_err(|source| self.fetch_error(source, &host_key_problem))?;
            heads
                .iter()
                .find(|head| head.name() == full_name)
                .map(|head| head.oid())
        };
        let Some(advertised) = advertised else {
            return Err(SourceError::RefNotFound {
                url: self.redacted_url.clone(),
                git_ref: full_name,
            });
        };
        let local = repository
            .find_reference(&full_name)
            .ok()
            .and_then(|reference| reference.target());
        if local == Some(advertised) {
            tracing::debug!(url = %self.redacted_url, git_ref = %full_name, commit = %advertised, "Git ref unchanged; fetch skipped.");
        } else {
            let refspec = format!("+{full_name}:{full_name}");
            let mut options = FetchOptions::new();
            options
                .remote_callbacks(self.callbacks(&host_key_problem)?)
                .proxy_options(proxy_options())
                .download_tags(AutotagOption::None);
            let mut remote = self.anonymous_remote(&repository, &full_name)?;
            remote
                .fetch(&[refspec.as_str()], Some(&mut options), None)
                .map_err(|source| self.fetch_error(source, &host_key_problem))?;
            tracing::info!(url = %self.redacted_url, git_ref = %full_name, previous = ?local.map(|oid| oid.to_string()), fetched = %advertised, "Fetched new commits.");
        }
        let commit = repository
            .find_reference(&full_name)
            .and_then(|reference| reference.peel_to_commit())
            .map_err(|source| SourceError::Resolve {
                mirror: self.mirror_dir.clone(),
                git_ref: full_name.clone(),
                source,
            })?;
        Ok(commit.id().to_string())
    }

    /// The files under `subdir` at `revision` (a commit id this source fetched), keyed relative
    /// to `subdir`. Symlinks are recorded, not followed; files over [`MAX_FILE_BYTES`] are
    /// recorded as oversized without being read; submodules are skipped. Blocking.
    pub fn snapshot(&self, revision: &str, subdir: &str) -> Result<RepoSnapshot, SourceError> {
        let repository =
            Repository::open_bare(&self.mirror_dir).map_err(|source| SourceError::OpenMirror {
                mirror: self.mirror_dir.clone(),
                source,
            })?;
        snapshot_of(&repository, &self.mirror_dir, revision, subdir)
    }

    fn open_mirror(&self) -> Result<Repository, SourceError> {
        match Repository::open_bare(&self.mirror_dir) {
            Ok(repository) => Ok(repository),
            Err(error)
                if self.mirror_dir.exists() && !mirror_is_damaged(&error, &self.mirror_dir) =>
            {
                Err(SourceError::MirrorUnavailable {
                    mirror: self.mirror_dir.clone(),
                    source: error,
                })
            }
            Err(error) => {
                if self.mirror_dir.exists() {
                    // The mirror is a cache: a damaged one is rebuilt from the remote.
                    tracing::warn!(mirror = %self.mirror_dir.display(), error = %error, "Git mirror unreadable; recreating it.");
                    std::fs::remove_dir_all(&self.mirror_dir).map_err(|source| {
                        SourceError::Io {
                            path: self.mirror_dir.clone(),
                            action: "removing a damaged git mirror",
                            source,
                        }
                    })?;
                }
                std::fs::create_dir_all(&self.mirror_dir).map_err(|source| SourceError::Io {
                    path: self.mirror_dir.clone(),
                    action: "creating the git mirror directory",
                    source,
                })?;
                Repository::init_bare(&self.mirror_dir).map_err(|source| SourceError::OpenMirror {
                    mirror: self.mirror_dir.clone(),
                    source,
                })
            }
        }
    }

    fn callbacks<'a>(
        &'a self,
        host_key_problem: &'a RefCell<Option<SourceError>>,
    ) -> Result<RemoteCallbacks<'a>, SourceError> {
        // Secrets are read on every fetch so that a rotated token or key passphrase is picked up.
        let token = self
            .token
            .as_ref()
            .map(Config::resolve_secret)
            .transpose()?;
        let passphrase = self
            .ssh
            .as_ref()
            .and_then(SshConfig::passphrase)
            .map(|secret| Config::resolve_secret(&secret))
            .transpose()?;
        let known_hosts = match &self.ssh {
            Some(ssh) => Some(load_known_hosts(&ssh.known_hosts_file)?),
            None => None,
        };
        let port = url_port(&self.url);
        let mut callbacks = RemoteCallbacks::new();
        let mut attempts = 0;
        callbacks.credentials(move |_url, username_from_url, allowed| {
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str(
                    "authentication failed: the server refused the configured credentials",
                ));
            }
            if allowed.contains(CredentialType::SSH_KEY)
                && let Some(ssh) = &self.ssh
            {
                let user = ssh.user.as_deref().or(username_from_url).unwrap_or("git");
                // libssh2 can derive the public key, but uses `<key>.pub` when present, as ssh does.
                let mut public_key = ssh.key_file.clone().into_os_string();
                public_key.push(".pub");
                let public_key = PathBuf::from(public_key);
                let public_key = public_key.is_file().then_some(public_key.as_path());
                return Cred::ssh_key(user, public_key, &ssh.key_file, passphrase.as_deref());
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && let Some(token) = &token
            {
                return Cred::userpass_plaintext(&self.username, token);
            }
            if allowed.contains(CredentialType::USERNAME) {
                let user = self
                    .ssh
                    .as_ref()
                    .and_then(|ssh| ssh.user.as_deref())
                    .or(username_from_url)
                    .unwrap_or("git");
                return Cred::username(user);
            }
            Err(git2::Error::from_str(
                "the server asks for credentials and none are configured (token_env/token_file for https, ssh.key_file for ssh)",
            ))
        });
        callbacks.certificate_check(move |certificate, host| {
            let Some(host_key) = certificate.as_hostkey() else {
                // TLS: libgit2 verifies the certificate chain and host name itself.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(known_hosts) = &known_hosts else {
                *host_key_problem.borrow_mut() = Some(SourceError::HostKey {
                    host: host.to_string(),
                    verdict: HostKeyVerdict::Unknown,
                    known_hosts_file: PathBuf::new(),
                });
                return Err(git2::Error::from_str("no known_hosts file configured"));
            };
            let verdict = match host_key.hostkey() {
                Some(key) => known_hosts.check(host, port, key),
                None => HostKeyVerdict::Unknown,
            };
            if verdict == HostKeyVerdict::Trusted {
                return Ok(CertificateCheckStatus::CertificateOk);
            }
            let known_hosts_file = self
                .ssh
                .as_ref()
                .map(|ssh| ssh.known_hosts_file.clone())
                .unwrap_or_default();
            *host_key_problem.borrow_mut() = Some(SourceError::HostKey {
                host: host.to_string(),
                verdict,
                known_hosts_file,
            });
            Err(git2::Error::from_str("host key not trusted"))
        });
        Ok(callbacks)
    }

    fn fetch_error(
        &self,
        source: git2::Error,
        host_key_problem: &RefCell<Option<SourceError>>,
    ) -> SourceError {
        if let Some(problem) = host_key_problem.borrow_mut().take() {
            return problem;
        }
        SourceError::Fetch {
            url: self.redacted_url.clone(),
            git_ref: self.git_ref.full_name(),
            source,
        }
    }
}

/// Proxies from git config (`http.proxy`) or the usual `https_proxy` variables, as `git` does.
fn proxy_options() -> ProxyOptions<'static> {
    let mut options = ProxyOptions::new();
    options.auto();
    options
}

/// Sets libgit2's network timeouts for every later fetch: `connect` for establishing a
/// connection, `io` for each read or write on it. Without them a stalled server holds a fetch
/// (and the blocking thread running it) indefinitely.
///
/// # Safety
/// libgit2 keeps these in unsynchronised globals: call this once at start-up, before any other
/// thread exists (before the async runtime is built).
pub unsafe fn set_git_network_timeouts(connect: Duration, io: Duration) {
    let millis = |duration: Duration| duration.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the caller guarantees no other thread uses libgit2 yet. Neither call can fail.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect));
        let _ = git2::opts::set_server_timeout_in_milliseconds(millis(io));
    }
}

fn load_known_hosts(path: &Path) -> Result<KnownHosts, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        action: "reading the ssh known_hosts file",
        source,
    })?;
    let known_hosts = KnownHosts::parse(&text);
    if known_hosts.skipped_lines > 0 {
        tracing::warn!(file = %path.display(), skipped = known_hosts.skipped_lines, "Ignored malformed known_hosts lines.");
    }
    Ok(known_hosts)
}

/// Reads the tree of `revision` under `subdir` from `repository`.
pub(super) fn snapshot_of(
    repository: &Repository,
    mirror: &Path,
    revision: &str,
    subdir: &str,
) -> Result<RepoSnapshot, SourceError> {
    let not_found = |source| SourceError::RevisionNotFound {
        mirror: mirror.to_path_buf(),
        revision: revision.to_string(),
        source,
    };
    let tree = subtree_of(repository, revision, subdir, &not_found)?;
    let object_database = repository.odb().map_err(not_found)?;
    let mut snapshot = RepoSnapshot {
        revision: revision.to_string(),
        files: Default::default(),
    };
    let mut total_bytes: u64 = 0;
    let mut failure: Option<SourceError> = None;
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let mode = entry.filemode();
        let is_tree = mode & 0o170000 == 0o040000;
        if is_tree {
            return TreeWalkResult::Ok;
        }
        let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
            failure = Some(SourceError::NonUtf8Path {
                revision: revision.to_string(),
                path: format!("{parent}{}", String::from_utf8_lossy(entry.name_bytes())),
            });
            return TreeWalkResult::Abort;
        };
        let path = format!("{parent}{name}");
        let file = match mode & 0o170000 {
            0o120000 => match repository.find_blob(entry.id()) {
                Ok(blob) => RepoFile::Symlink {
                    target: String::from_utf8_lossy(blob.content()).into_owned(),
                },
                Err(source) => {
                    failure = Some(not_found(source));
                    return TreeWalkResult::Abort;
                }
            },
            0o100000 => match read_file(
                repository,
                &object_database,
                entry.id(),
                revision,
                &mut total_bytes,
                &not_found,
            ) {
                Ok(file) => file,
                Err(error) => {
                    failure = Some(error);
                    return TreeWalkResult::Abort;
                }
            },
            _ => {
                // Submodules (gitlinks) point into other repositories; jobs never live there.
                tracing::debug!(revision, path = %path, "Skipped a submodule entry.");
                return TreeWalkResult::Ok;
            }
        };
        snapshot.files.insert(path, file);
        if snapshot.files.len() > MAX_SNAPSHOT_FILES {
            failure = Some(SourceError::SnapshotTooLarge {
                revision: revision.to_string(),
                limit: format!("{MAX_SNAPSHOT_FILES} files"),
            });
            return TreeWalkResult::Abort;
        }
        TreeWalkResult::Ok
    })
    .or_else(|error| {
        if failure.is_some() {
            Ok(())
        } else {
            Err(not_found(error))
        }
    })?;
    match failure {
        Some(error) => Err(error),
        None => Ok(snapshot),
    }
}

/// The tree of `revision` at `subdir` (the root for an empty subdir or `.`).
fn subtree_of<'r>(
    repository: &'r Repository,
    revision: &str,
    subdir: &str,
    not_found: &dyn Fn(git2::Error) -> SourceError,
) -> Result<git2::Tree<'r>, SourceError> {
    let oid = Oid::from_str(revision).map_err(not_found)?;
    let commit = repository.find_commit(oid).map_err(not_found)?;
    let root = commit.tree().map_err(not_found)?;
    let subdir_clean = subdir.trim_matches('/');
    if subdir_clean.is_empty() || subdir_clean == "." {
        return Ok(root);
    }
    let entry =
        root.get_path(Path::new(subdir_clean))
            .map_err(|_| SourceError::SubdirNotFound {
                revision: revision.to_string(),
                subdir: subdir.to_string(),
            })?;
    if entry.kind() != Some(ObjectType::Tree) {
        return Err(SourceError::SubdirNotFound {
            revision: revision.to_string(),
            subdir: subdir.to_string(),
        });
    }
    entry
        .to_object(repository)
        .and_then(|object| object.peel_to_tree())
        .map_err(not_found)
}

/// A regular file's content, or [`RepoFile::Oversized`] past [`MAX_FILE_BYTES`]; counts its
/// size into `total_bytes` and refuses a snapshot past [`MAX_SNAPSHOT_BYTES`].
fn read_file(
    repository: &Repository,
    object_database: &git2::Odb<'_>,
    id: Oid,
    revision: &str,
    total_bytes: &mut u64,
    not_found: &dyn Fn(git2::Error) -> SourceError,
) -> Result<RepoFile, SourceError> {
    let size = object_database.read_header(id).map_err(not_found)?.0 as u64;
    if size > MAX_FILE_BYTES {
        return Ok(RepoFile::Oversized { size });
    }
    *total_bytes += size;
    if *total_bytes > MAX_SNAPSHOT_BYTES {
        return Err(SourceError::SnapshotTooLarge {
            revision: revision.to_string(),
            limit: format!("{MAX_SNAPSHOT_BYTES} bytes"),
        });
    }
    let blob = repository.find_blob(id).map_err(not_found)?;
    Ok(RepoFile::Data(blob.content().to_vec()))
}

/// One lock per mirror directory, so that sources sharing a repository never fetch into it at
/// the same time.
/// Whether a failure to open an existing mirror means the mirror itself is damaged (so the
/// cache may be rebuilt), rather than that the process could not open files just now. An
/// operating-system error (`EMFILE`, `ENFILE`, `EACCES`, ...) is never taken for damage: removing
/// a sound mirror because descriptors ran out would turn a moment's shortage into a full clone.
fn mirror_is_damaged(error: &git2::Error, mirror: &Path) -> bool {
    if error.class() == git2::ErrorClass::Os {
        return false;
    }
    let message = error.message().to_ascii_lowercase();
    if message.contains("too many open files") || message.contains("file table overflow") {
        return false;
    }
    // libgit2 does not always classify a failed open(2) as an OS error: probe whether this
    // process can open a file at all right now.
    match std::fs::File::open(mirror) {
        Err(probe) => !matches!(probe.raw_os_error(), Some(23 | 24)),
        Ok(_) => true,
    }
}

fn mirror_lock(mirror: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.entry(mirror.to_path_buf()).or_default().clone()
}

/// A directory name for a url: readable, credential-free, and unique per url.
pub fn mirror_name(url: &str) -> String {
    let redacted = redact_url(url);
    let readable: String = redacted
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("ssh://")
        .trim_start_matches("file://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches(|c| c == '_' || c == '.')
        .chars()
        .rev()
        .take(48)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let digest = Sha256::digest(url.as_bytes());
    format!("{readable}-{}", &hex::encode(digest)[..12])
}

/// The url without a password or token in its user-info part.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() || !parsed.username().is_empty() => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(None);
                // `https://TOKEN@host` carries the token as the user name.
                if matches!(parsed.scheme(), "http" | "https") {
                    let _ = parsed.set_username("");
                }
            } else if matches!(parsed.scheme(), "http" | "https") {
                let _ = parsed.set_username("");
            }
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The explicit port of an `ssh://` url, for `[host]:port` known_hosts entries.
fn url_port(url: &str) -> Option<u16> {
    if crate::config::git_transport(url) != GitTransport::Ssh {
        return None;
    }
    url::Url::parse(url.trim_start_matches("git+"))
        .ok()
        .and_then(|parsed| parsed.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("https://user:secret@git.example.com/a/b.git"),
            "https://git.example.com/a/b.git"
        );
        assert_eq!(
            redact_url("https://ghp_token@github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(
            redact_url("ssh://git@git.example.com/a/b.git"),
            "ssh://git@git.example.com/a/b.git"
        );
        assert_eq!(
            redact_url("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
    }

    #[test]
    fn out_of_descriptors_is_not_a_damaged_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let emfile = git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Os,
            "failed to open directory: Too many open files",
        );
        assert!(!mirror_is_damaged(&emfile, dir.path()));
        let unclassified = git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Repository,
            "could not open 'objects': Too many open files",
        );
        assert!(!mirror_is_damaged(&unclassified, dir.path()));
        // A directory that is not a repository at all is damage, and is rebuilt.
        std::fs::write(dir.path().join("HEAD"), "garbage").unwrap();
        let Err(damaged) = Repository::open_bare(dir.path()) else {
            panic!("a directory with a garbage HEAD opened as a repository");
        };
        assert!(mirror_is_damaged(&damaged, dir.path()), "{damaged}");
    }

    #[test]
    fn mirror_names_are_safe_and_distinct() {
        let one = mirror_name("https://git.example.com/data/jobs.git");
        let two = mirror_name("https://git.example.com/data/jobs2.git");
        assert_ne!(one, two);
        assert!(one.starts_with("git.example.com_data_jobs.git-"), "{one}");
        let hidden = mirror_name("https://user:secret@host/x.git");
        assert!(!hidden.contains("secret"));
        assert!(mirror_name("/tmp/../../etc").chars().all(|c| c != '/'));
        assert!(!mirror_name("/tmp/../../etc").starts_with('.'));
    }

    #[test]
    fn ssh_ports() {
        assert_eq!(url_port("ssh://git@host:2222/a.git"), Some(2222));
        assert_eq!(url_port("ssh://git@host/a.git"), None);
        assert_eq!(url_port("git@host:a.git"), None);
        assert_eq!(url_port("https://host:8443/a.git"), None);
    }
}
