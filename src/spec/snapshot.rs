//! An in-memory copy of a job repository at one revision: the input of every pure `spec`
//! function. Built by `source` (from a git tree or a watched directory) or by
//! [`read_directory`](super) for the CLI.

use std::collections::BTreeMap;

/// Files larger than this are not read; validation reports them.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One entry of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoFile {
    /// A regular file's bytes.
    Data(Vec<u8>),
    /// A symbolic link, with its target as written (not followed).
    Symlink { target: String },
    /// A regular file over [`MAX_FILE_BYTES`], not read.
    Oversized { size: u64 },
}

/// A repository (or its configured subdirectory) at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoSnapshot {
    /// A git commit id, or a content digest for a plain directory.
    pub revision: String,
    /// Keyed by path relative to the repository root, `/`-separated, no `./` or `..`.
    pub files: BTreeMap<String, RepoFile>,
}
