//! The one place the job repository is read from the file system: a directory into a
//! [`RepoSnapshot`]. `validate` reads with it, and so does the daemon's directory source
//! (`source::DirSource`), so both give the same directory the same revision. Everything else
//! in `desired` is pure and works on the snapshot.
//!
//! Symbolic links are recorded, never followed (resolution checks they stay inside the
//! repository); files over [`MAX_FILE_BYTES`] are recorded by size, unread; `.git` directories
//! are skipped at every depth (the directory watcher ignores them too). The walk stays bounded
//! on any directory it is pointed at: it stops at [`MAX_SNAPSHOT_FILES`] files or
//! [`MAX_SNAPSHOT_BYTES`] read.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::snapshot::{
    MAX_FILE_BYTES, MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILES, RepoFile, RepoSnapshot,
    special_file_kind,
};

/// Why a directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecIoError {
    /// The root itself could not be opened.
    #[error("reading job repository directory {path}: {error}")]
    OpenRoot {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("reading job repository directory {path}: {error}")]
    ReadDirectory {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("reading {path} in the job repository: {error}")]
    ReadEntry {
        path: PathBuf,
        /// What was being read: `reading file metadata`, `reading a symlink`, `reading a source file`.
        action: &'static str,
        error: std::io::Error,
    },
    #[error("{path} in the job repository has a name that is not UTF-8; rename it")]
    NonUtf8Name { path: PathBuf },
    #[error("job repository root {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "the job repository is over the snapshot limit of {limit}; point it at the jobs directory"
    )]
    TooLarge { limit: String },
}

/// Walks `root` and returns its files. The revision is `sha256:<hex>` over the sorted paths,
/// kinds and contents (an oversized file's size and modification time stand in for its
/// contents), so it changes exactly when the snapshot does. Blocking.
pub fn read_directory(root: &Path) -> Result<RepoSnapshot, SpecIoError> {
    let metadata = fs::metadata(root).map_err(|error| SpecIoError::OpenRoot {
        path: root.to_path_buf(),
        error,
    })?;
    if !metadata.is_dir() {
        return Err(SpecIoError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut walk = Walk::default();
    walk.directory(root, "")?;
    let mut snapshot = walk.snapshot;
    snapshot.revision = digest(&snapshot, &walk.oversized_stamps);
    tracing::debug!(
        root = %root.display(),
        files = snapshot.files.len(),
        revision = %snapshot.revision,
        "Read the job repository directory."
    );
    Ok(snapshot)
}

/// The revision of a snapshot built in memory: [`read_directory`]'s digest, with no
/// modification time for oversized files.
pub fn content_revision(snapshot: &RepoSnapshot) -> String {
    digest(snapshot, &BTreeMap::new())
}

/// The walk's state: the files so far, the bytes read, and the oversized files' stamps.
#[derive(Default)]
struct Walk {
    snapshot: RepoSnapshot,
    total_bytes: u64,
    /// Nanoseconds since the epoch of each oversized file's modification time (0: unknown).
    oversized_stamps: BTreeMap<String, u128>,
}

impl Walk {
    /// Records every entry of `directory`, whose paths start with `prefix`.
    fn directory(&mut self, directory: &Path, prefix: &str) -> Result<(), SpecIoError> {
        let listing_failed = |error| SpecIoError::ReadDirectory {
            path: directory.to_path_buf(),
            error,
        };
        for entry in fs::read_dir(directory).map_err(listing_failed)? {
            let entry = entry.map_err(listing_failed)?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                return Err(SpecIoError::NonUtf8Name { path });
            };
            let relative = format!("{prefix}{name}");
            // symlink_metadata does not follow links: a link is recorded as a link.
            let metadata = fs::symlink_metadata(&path)
                .map_err(|error| entry_error(&path, "reading file metadata", error))?;
            let file_type = metadata.file_type();
            if file_type.is_dir() {
                if name != ".git" {
                    self.directory(&path, &format!("{relative}/"))?;
                }
                continue;
            }
            let file = self.file(&path, &relative, &metadata)?;
            self.snapshot.files.insert(relative, file);
            if self.snapshot.files.len() > MAX_SNAPSHOT_FILES {
                return Err(SpecIoError::TooLarge {
                    limit: format!("{MAX_SNAPSHOT_FILES} files"),
                });
            }
        }
        Ok(())
    }

    /// One entry that is not a directory, as the snapshot records it.
    fn file(
        &mut self,
        path: &Path,
        relative: &str,
        metadata: &fs::Metadata,
    ) -> Result<RepoFile, SpecIoError> {
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            let target = fs::read_link(path)
                .map_err(|error| entry_error(path, "reading a symlink", error))?;
            return Ok(RepoFile::Symlink {
                target: target.to_string_lossy().into_owned(),
            });
        }
        if !file_type.is_file() {
            // Sockets, fifos and devices have no place in a job repository: recorded, never
            // opened, so a reference to one is reported as what it is rather than as missing.
            return Ok(RepoFile::NotRegular {
                kind: special_file_kind(&file_type).to_string(),
            });
        }
        let size = metadata.len();
        if size > MAX_FILE_BYTES {
            let stamp = metadata
                .modified()
                .ok()
                .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_nanos());
            self.oversized_stamps.insert(relative.to_string(), stamp);
            return Ok(RepoFile::Oversized { size });
        }
        self.total_bytes += size;
        if self.total_bytes > MAX_SNAPSHOT_BYTES {
            return Err(SpecIoError::TooLarge {
                limit: format!("{MAX_SNAPSHOT_BYTES} bytes"),
            });
        }
        fs::read(path)
            .map(RepoFile::Data)
            .map_err(|error| entry_error(path, "reading a source file", error))
    }
}

fn entry_error(path: &Path, action: &'static str, error: std::io::Error) -> SpecIoError {
    SpecIoError::ReadEntry {
        path: path.to_path_buf(),
        action,
        error,
    }
}

/// `sha256:<hex>` over each path, kind and content, lengths little-endian. This is the
/// revision the daemon has journaled for directory sources since they exist: changing it
/// would make every journaled directory revision look new.
fn digest(snapshot: &RepoSnapshot, oversized_stamps: &BTreeMap<String, u128>) -> String {
    let mut hasher = Sha256::new();
    for (path, file) in &snapshot.files {
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        match file {
            RepoFile::Data(bytes) => {
                hasher.update(b"D");
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
            RepoFile::Symlink { target } => {
                hasher.update(b"L");
                hasher.update((target.len() as u64).to_le_bytes());
                hasher.update(target.as_bytes());
            }
            RepoFile::Oversized { size } => {
                // Not read, so its modification time stands in for its contents.
                hasher.update(b"O");
                hasher.update(size.to_le_bytes());
                let stamp = oversized_stamps.get(path).copied().unwrap_or(0);
                hasher.update(stamp.to_le_bytes());
            }
            RepoFile::NotRegular { kind } => {
                hasher.update(b"S");
                hasher.update((kind.len() as u64).to_le_bytes());
                hasher.update(kind.as_bytes());
            }
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_links_and_oversized_files_and_skips_git() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        fs::create_dir_all(root.join("flink")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join(".git/HEAD"), "ref").unwrap();
        fs::write(root.join("flink/a.yaml"), "kind: FlinkSqlJob\n").unwrap();
        let big = fs::File::create(root.join("flink/big.sql")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("../../etc/passwd", root.join("flink/link.sql")).unwrap();

        let snapshot = read_directory(root).unwrap();
        assert_eq!(
            snapshot.files.get("flink/a.yaml"),
            Some(&RepoFile::Data(b"kind: FlinkSqlJob\n".to_vec()))
        );
        assert_eq!(
            snapshot.files.get("flink/big.sql"),
            Some(&RepoFile::Oversized {
                size: MAX_FILE_BYTES + 1
            })
        );
        #[cfg(unix)]
        assert_eq!(
            snapshot.files.get("flink/link.sql"),
            Some(&RepoFile::Symlink {
                target: "../../etc/passwd".into()
            })
        );
        assert!(!snapshot.files.keys().any(|path| path.starts_with(".git")));
        assert!(
            snapshot.revision.starts_with("sha256:"),
            "{}",
            snapshot.revision
        );
        assert_eq!(snapshot.revision.len(), "sha256:".len() + 64);

        let again = read_directory(root).unwrap();
        assert_eq!(again.revision, snapshot.revision);
        fs::write(root.join("flink/a.yaml"), "kind: FlinkJarJob\n").unwrap();
        assert_ne!(read_directory(root).unwrap().revision, snapshot.revision);
    }

    /// A named pipe is recorded as what it is (never opened), and a job that names it as its
    /// `sql_file` is told it is not a regular file, not that it does not exist.
    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_recorded_and_reported_as_not_a_regular_file() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        fs::create_dir_all(root.join("flink")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("flink/pipe.sql"))
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo failed");
        fs::write(
            root.join("flink/piped.yaml"),
            "kind: FlinkSqlJob\nname: piped\nqueue_name: q\nsql_file: pipe.sql\n",
        )
        .unwrap();

        let snapshot = read_directory(root).unwrap();
        assert_eq!(
            snapshot.files.get("flink/pipe.sql"),
            Some(&RepoFile::NotRegular {
                kind: "a named pipe".into()
            })
        );
        let problems = super::super::resolve(&snapshot, None)
            .expect_err("a pipe as sql_file is refused")
            .to_string();
        assert!(
            problems.contains("`flink/pipe.sql` is not a regular file (it is a named pipe)"),
            "{problems}"
        );
        assert!(!problems.contains("does not exist"), "{problems}");
    }

    #[test]
    fn a_missing_root_is_a_clear_error() {
        let error = read_directory(Path::new("/nonexistent/jobs")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/jobs"), "{error}");
    }
}
