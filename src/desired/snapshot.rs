//! An in-memory copy of a job repository at one revision: the input of every pure `desired`
//! function. Built by `source` (from a git tree or a watched directory) or by
//! [`read_directory`](super) for the CLI.

use std::collections::BTreeMap;

/// Files larger than this are not read; validation reports them.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// A snapshot with more files than this is refused: it is not a job repository.
pub const MAX_SNAPSHOT_FILES: usize = 20_000;
/// A snapshot whose readable files add up to more than this is refused.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

/// One entry of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoFile {
    /// A regular file's bytes.
    Data(Vec<u8>),
    /// A symbolic link, with its target as written (not followed).
    Symlink { target: String },
    /// A regular file over [`MAX_FILE_BYTES`], not read.
    Oversized { size: u64 },
    /// Something that is neither a regular file, a directory nor a link (a named pipe, a
    /// socket, a device), never opened: reading a pipe could block forever. `kind` says
    /// what it is (see [`special_file_kind`]), so a reference to it is reported as such.
    NotRegular { kind: String },
}

/// What a file type that is not a regular file, directory or link is, in words:
/// `a named pipe`, `a socket`, `a block device`, `a character device`, `a special file`.
pub fn special_file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
    }
    let _ = file_type;
    "a special file"
}

/// A repository (or its configured subdirectory) at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoSnapshot {
    /// A git commit id, or a content digest for a plain directory.
    pub revision: String,
    /// Keyed by path relative to the repository root, `/`-separated, no `./` or `..`.
    pub files: BTreeMap<String, RepoFile>,
}
