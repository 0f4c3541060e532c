//! The one place `spec` touches the file system: reading a directory into a [`RepoSnapshot`].
//! Everything else in `spec` is pure and works on the snapshot.
//!
//! Symbolic links are recorded, never followed (resolution checks they stay inside the
//! repository); files over [`MAX_FILE_BYTES`] are recorded by size, unread; `.git/` is skipped.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::snapshot::{MAX_FILE_BYTES, RepoFile, RepoSnapshot, special_file_kind};

/// Why a directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecIoError {
    #[error("reading job repository directory {path}: {error}")]
    ReadDirectory {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("reading {path} in the job repository: {error}")]
    ReadEntry {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} in the job repository has a name that is not UTF-8; rename it")]
    NonUtf8Name { path: PathBuf },
    #[error("job repository root {path} is not a directory")]
    NotADirectory { path: PathBuf },
}

/// Walks `root` and returns its files. The revision is a content digest: hex SHA-256 over the
/// sorted paths and contents, so the same tree always has the same revision.
pub fn read_directory(root: &Path) -> Result<RepoSnapshot, SpecIoError> {
    let metadata = fs::metadata(root).map_err(|source| SpecIoError::ReadDirectory {
        path: root.to_path_buf(),
        error: source,
    })?;
    if !metadata.is_dir() {
        return Err(SpecIoError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut snapshot = RepoSnapshot::default();
    walk(root, "", &mut snapshot)?;
    snapshot.revision = content_revision(&snapshot);
    tracing::debug!(
        root = %root.display(),
        files = snapshot.files.len(),
        revision = %snapshot.revision,
        "Read the job repository directory."
    );
    Ok(snapshot)
}

/// The content digest of a snapshot's files (hex SHA-256 over sorted paths and contents).
pub fn content_revision(snapshot: &RepoSnapshot) -> String {
    let mut hasher = Sha256::new();
    for (path, file) in &snapshot.files {
        hasher.update((path.len() as u64).to_be_bytes());
        hasher.update(path.as_bytes());
        match file {
            RepoFile::Data(bytes) => {
                hasher.update(b"D");
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
            RepoFile::Symlink { target } => {
                hasher.update(b"L");
                hasher.update((target.len() as u64).to_be_bytes());
                hasher.update(target.as_bytes());
            }
            RepoFile::Oversized { size } => {
                hasher.update(b"O");
                hasher.update(size.to_be_bytes());
            }
            RepoFile::NotRegular { kind } => {
                hasher.update(b"S");
                hasher.update((kind.len() as u64).to_be_bytes());
                hasher.update(kind.as_bytes());
            }
        }
    }
    hex::encode(hasher.finalize())
}

fn walk(directory: &Path, prefix: &str, snapshot: &mut RepoSnapshot) -> Result<(), SpecIoError> {
    let entries = fs::read_dir(directory).map_err(|source| SpecIoError::ReadDirectory {
        path: directory.to_path_buf(),
        error: source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| SpecIoError::ReadDirectory {
            path: directory.to_path_buf(),
            error: source,
        })?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(SpecIoError::NonUtf8Name { path });
        };
        if prefix.is_empty() && name == ".git" {
            continue;
        }
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // symlink_metadata does not follow links: a link is recorded as a link.
        let metadata = fs::symlink_metadata(&path).map_err(|source| SpecIoError::ReadEntry {
            path: path.clone(),
            error: source,
        })?;
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(|source| SpecIoError::ReadEntry {
                path: path.clone(),
                error: source,
            })?;
            let Some(target) = target.to_str() else {
                return Err(SpecIoError::NonUtf8Name { path });
            };
            snapshot.files.insert(
                relative,
                RepoFile::Symlink {
                    target: target.replace('\\', "/"),
                },
            );
        } else if file_type.is_dir() {
            walk(&path, &relative, snapshot)?;
        } else if file_type.is_file() {
            let file = if metadata.len() > MAX_FILE_BYTES {
                RepoFile::Oversized {
                    size: metadata.len(),
                }
            } else {
                RepoFile::Data(fs::read(&path).map_err(|source| SpecIoError::ReadEntry {
                    path: path.clone(),
                    error: source,
                })?)
            };
            snapshot.files.insert(relative, file);
        } else {
            // Sockets, fifos and devices have no place in a job repository: recorded, never
            // opened, so a reference to one is reported as what it is.
            snapshot.files.insert(
                relative,
                RepoFile::NotRegular {
                    kind: special_file_kind(&file_type).to_string(),
                },
            );
        }
    }
    Ok(())
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
        assert_eq!(snapshot.revision.len(), 64);

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
