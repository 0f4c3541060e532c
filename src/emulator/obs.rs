//! The OBS side: objects as files under `<data>/obs/<bucket>/<key>`, read and written directly by
//! DLI and DLF, and served over S3 by `s3s-fs` with the accounts' AK/SK.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an object could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("OBS path {path:?} is not valid: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("OBS bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },
    #[error("OBS object {bucket}/{key} does not exist")]
    NoSuchKey { bucket: String, key: String },
    #[error("OBS object {bucket}/{key} is larger than {limit} bytes")]
    TooLarge {
        bucket: String,
        key: String,
        limit: u64,
    },
    #[error("file system error on OBS object {bucket}/{key}")]
    Io {
        bucket: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

/// A bucket and a key (the key may be empty for "the whole bucket", and may end in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    pub bucket: String,
    pub key: String,
}

impl ObjectPath {
    /// Parses `bucket/key`, `obs://bucket/key` or `s3://bucket/key`.
    pub fn parse(path: &str) -> Result<ObjectPath, ObjectError> {
        let invalid = |reason: &str| ObjectError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = path.trim();
        let without_scheme = trimmed
            .strip_prefix("obs://")
            .or_else(|| trimmed.strip_prefix("s3://"))
            .unwrap_or(trimmed);
        let without_scheme = without_scheme.trim_start_matches('/');
        let (bucket, key) = without_scheme
            .split_once('/')
            .unwrap_or((without_scheme, ""));
        check_bucket_name(bucket).map_err(|reason| invalid(&reason))?;
        check_key(key).map_err(|reason| invalid(&reason))?;
        Ok(ObjectPath {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// `bucket/key` (DLI's form).
    pub fn plain(&self) -> String {
        format!("{}/{}", self.bucket, self.key)
    }

    /// `obs://bucket/key` (DLF's and savepoints' form).
    pub fn obs_url(&self) -> String {
        format!("obs://{}/{}", self.bucket, self.key)
    }

    /// The key as a directory prefix: empty or ending in `/`.
    pub fn directory_key(&self) -> String {
        if self.key.is_empty() || self.key.ends_with('/') {
            self.key.clone()
        } else {
            format!("{}/", self.key)
        }
    }

    /// A child of this path taken as a directory.
    pub fn join(&self, child: &str) -> ObjectPath {
        ObjectPath {
            bucket: self.bucket.clone(),
            key: format!("{}{child}", self.directory_key()),
        }
    }
}

/// OBS bucket naming rules (3-63 of lower-case letters, digits, `-`, `.`; not starting with `.`).
pub fn check_bucket_name(bucket: &str) -> Result<(), String> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("a bucket name has 3 to 63 characters".into());
    }
    if !bucket.bytes().all(|byte| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
    }) {
        return Err("a bucket name holds only lower-case letters, digits, '-' and '.'".into());
    }
    if bucket.starts_with(['.', '-']) || bucket.ends_with(['.', '-']) {
        return Err("a bucket name starts and ends with a letter or digit".into());
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), String> {
    if key.len() > 1024 {
        return Err("an object key has at most 1024 bytes".into());
    }
    if key.contains(['\\', '\0']) || key.chars().any(char::is_control) {
        return Err("an object key may not hold '\\', NUL or control characters".into());
    }
    for segment in key.split('/') {
        if segment == ".." || segment == "." {
            return Err("an object key may not hold '.' or '..' segments".into());
        }
    }
    if key.contains("//") {
        return Err("an object key may not hold empty segments".into());
    }
    Ok(())
}

/// Objects on disk. Writes are atomic (temp file, fsync, rename).
#[derive(Debug, Clone)]
pub struct ObjectStore {
    root: PathBuf,
    temp_dir: PathBuf,
}

impl ObjectStore {
    /// `root` holds one directory per bucket; `temp_dir` must be on the same file system.
    pub fn new(root: PathBuf, temp_dir: PathBuf) -> ObjectStore {
        ObjectStore { root, temp_dir }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bucket_exists(&self, bucket: &str) -> bool {
        check_bucket_name(bucket).is_ok() && self.root.join(bucket).is_dir()
    }

    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(bucket))
    }

    fn file_path(&self, path: &ObjectPath) -> Result<PathBuf, ObjectError> {
        if !self.bucket_exists(&path.bucket) {
            return Err(ObjectError::NoSuchBucket {
                bucket: path.bucket.clone(),
            });
        }
        Ok(self
            .root
            .join(&path.bucket)
            .join(path.key.trim_end_matches('/')))
    }

    fn io_error(path: &ObjectPath, source: std::io::Error) -> ObjectError {
        ObjectError::Io {
            bucket: path.bucket.clone(),
            key: path.key.clone(),
            source,
        }
    }

    /// Whether `path` names an existing object (not a directory).
    pub fn object_exists(&self, path: &ObjectPath) -> bool {
        !path.key.is_empty()
            && self
                .file_path(path)
                .map(|file| file.is_file())
                .unwrap_or(false)
    }

    /// Whether `path` names a "directory": a prefix with objects under it.
    pub fn is_directory(&self, path: &ObjectPath) -> bool {
        self.file_path(path)
            .map(|file| file.is_dir())
            .unwrap_or(false)
    }

    /// Reads an object, refusing objects larger than `limit` before reading them.
    pub fn read(&self, path: &ObjectPath, limit: u64) -> Result<Vec<u8>, ObjectError> {
        let file = self.file_path(path)?;
        let no_such_key = || ObjectError::NoSuchKey {
            bucket: path.bucket.clone(),
            key: path.key.clone(),
        };
        if path.key.is_empty() || !file.is_file() {
            return Err(no_such_key());
        }
        let length = std::fs::metadata(&file)
            .map_err(|error| Self::io_error(path, error))?
            .len();
        if length > limit {
            return Err(ObjectError::TooLarge {
                bucket: path.bucket.clone(),
                key: path.key.clone(),
                limit,
            });
        }
        std::fs::read(&file).map_err(|error| Self::io_error(path, error))
    }

    /// Writes an object atomically, creating its "directories".
    pub fn write(&self, path: &ObjectPath, bytes: &[u8]) -> Result<(), ObjectError> {
        let file = self.file_path(path)?;
        if path.key.is_empty() || path.key.ends_with('/') {
            return Err(ObjectError::InvalidPath {
                path: path.plain(),
                reason: "an object key cannot be empty or end in '/'".into(),
            });
        }
        let io = |error| Self::io_error(path, error);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::create_dir_all(&self.temp_dir).map_err(io)?;
        write_file_atomically(&self.temp_dir, &file, bytes).map_err(io)
    }

    /// Deletes a "directory" and every object under it; a missing one is not an error.
    pub fn remove_directory(&self, path: &ObjectPath) -> Result<(), ObjectError> {
        let directory = self.file_path(path)?;
        if path.key.trim_matches('/').is_empty() {
            return Err(ObjectError::InvalidPath {
                path: path.plain(),
                reason: "a whole bucket is never removed as a directory".into(),
            });
        }
        match std::fs::remove_dir_all(&directory) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Self::io_error(path, error)),
        }
    }

    /// The keys of the objects directly inside a directory, sorted.
    pub fn list_directory(&self, path: &ObjectPath) -> Result<Vec<ObjectPath>, ObjectError> {
        let directory = self.file_path(path)?;
        let entries = std::fs::read_dir(&directory).map_err(|error| Self::io_error(path, error))?;
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| Self::io_error(path, error))?;
            if let Some(name) = entry.file_name().to_str() {
                children.push(path.join(name));
            }
        }
        children.sort_by(|left, right| left.key.cmp(&right.key));
        Ok(children)
    }
}

/// Writes `bytes` to a temp file in `temp_dir`, fsyncs it, and renames it over `target`.
pub(crate) fn write_file_atomically(
    temp_dir: &Path,
    target: &Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    let temp = temp_dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, target)?;
        if let Some(parent) = target.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_in_every_form_and_refuse_traversal() {
        let expected = ObjectPath {
            bucket: "dli-gitops-staging".into(),
            key: "dev/a.zip".into(),
        };
        for text in [
            "dli-gitops-staging/dev/a.zip",
            "obs://dli-gitops-staging/dev/a.zip",
            "s3://dli-gitops-staging/dev/a.zip",
        ] {
            assert_eq!(ObjectPath::parse(text).unwrap(), expected);
        }
        for bad in [
            "b/../x",
            "Bad_Bucket/x",
            "ab/x",
            "bucket/a\\b",
            "bucket/a//b",
        ] {
            assert!(ObjectPath::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(ObjectPath::parse("bucket").unwrap().key, "");
    }

    #[test]
    fn objects_write_read_and_list() {
        let temp = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(temp.path().join("obs"), temp.path().join("tmp"));
        store.create_bucket("bucket-a").unwrap();
        let path = ObjectPath::parse("bucket-a/dir/one.zip").unwrap();
        store.write(&path, b"zip").unwrap();
        assert_eq!(store.read(&path, 10).unwrap(), b"zip");
        assert!(matches!(
            store.read(&path, 2),
            Err(ObjectError::TooLarge { .. })
        ));
        let directory = ObjectPath::parse("bucket-a/dir").unwrap();
        assert!(store.is_directory(&directory));
        assert_eq!(store.list_directory(&directory).unwrap(), vec![path]);
        assert!(matches!(
            store.read(&ObjectPath::parse("nobucket/x").unwrap(), 10),
            Err(ObjectError::NoSuchBucket { .. })
        ));
    }
}
