//! Import/export zip formats of DLI Flink jobs and DataArts Factory (DLF) jobs, and safe zip
//! reading. Pure: bytes in, values out; no I/O.
//!
//! [`dli`] holds the typed body of a DLI Flink job create/update request; no DLI export zip is
//! written or read here (DLI imports only what it exported itself, so the client keeps exports
//! opaque). The DLF layouts live in [`dlf`]. docs/service-fidelity.md documents them and their sources.
//!
//! # Design and invariants
//!
//! Pure formats: the DLF zip layouts (documented by DataArts), the DLI create/update body document,
//! and safe zip reading. No DLI export layout lives here (see docs/service-fidelity.md, "Export and import zips").
//! `safe_zip.rs` reads untrusted archives: refuses more than `max_entries`, `..`/absolute/drive-letter/NUL
//! paths, symlinks, duplicate entries, and entries or archives that inflate past their limits or past
//! `max_compression_ratio` (sizes measured while inflating, never taken from headers).
//!
//! The DLI export zip (never written by the client), the emulator's sealed export layout and the DLF zip layouts, with their sources: docs/service-fidelity.md ("Export and import zips").

mod dlf;
mod dli;
mod safe_zip;

pub use dlf::{
    DlfJobEntry, RESOURCE_TYPES as DLF_RESOURCE_TYPES, read_dlf_zip, write_dlf_batch_zip,
    write_dlf_zip,
};
pub use dli::{DliJobDocument, DliTag};
pub use safe_zip::{ZipEntry, ZipLimits, read_zip_entries};

/// Why a bundle could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("zip archive is malformed: {reason}")]
    MalformedZip { reason: String },
    #[error("zip archive has {entries} entries, more than the limit of {limit}")]
    TooManyEntries { entries: usize, limit: usize },
    #[error(
        "zip entry {entry:?} has an unsafe path (absolute, drive letter, `..` or NUL); refusing to read it"
    )]
    UnsafePath { entry: String },
    #[error("zip entry {entry:?} is a symbolic link; bundles may only hold regular files")]
    SymlinkEntry { entry: String },
    #[error("zip entry {entry:?} expands past the per-entry limit of {limit} bytes")]
    EntryTooLarge { entry: String, limit: u64 },
    #[error("zip archive expands past the total limit of {limit} bytes (at entry {entry:?})")]
    TotalTooLarge { entry: String, limit: u64 },
    #[error(
        "zip entry {entry:?} expands more than {limit}x its compressed size; refusing a compression bomb"
    )]
    CompressionRatio { entry: String, limit: u64 },
    #[error("zip archive holds entry {entry:?} twice")]
    DuplicateEntry { entry: String },
    #[error("zip entry {entry:?} is not valid {expected}: {reason}")]
    InvalidDocument {
        entry: String,
        expected: &'static str,
        reason: String,
    },
    #[error("job {job:?} has an invalid value for {field}: {reason}")]
    InvalidField {
        job: String,
        field: &'static str,
        reason: String,
    },
    #[error("name {name:?} cannot be used in a bundle path: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("bundle holds no {what}")]
    Empty { what: &'static str },
    #[error("bundle holds two {what} named {name:?} with different contents")]
    DuplicateName { what: &'static str, name: String },
    #[error("could not write zip archive: {reason}")]
    Write { reason: String },
}

/// Checks that a job, script or resource name can become one path segment inside a zip.
pub fn check_entry_name(name: &str) -> Result<(), BundleError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("it is a relative path component")
    } else if name.contains(['/', '\\', '\0']) {
        Some("it contains a path separator or NUL")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BundleError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn write_error(error: impl std::fmt::Display) -> BundleError {
    BundleError::Write {
        reason: error.to_string(),
    }
}

/// Writes `files` (path, bytes) into a deflated zip with fixed timestamps, so equal input gives
/// equal bytes.
pub(crate) fn write_zip(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, BundleError> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (path, bytes) in files {
        writer.start_file(path, options).map_err(write_error)?;
        writer.write_all(bytes).map_err(write_error)?;
    }
    Ok(writer.finish().map_err(write_error)?.into_inner())
}
