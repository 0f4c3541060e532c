//! Reading untrusted zip archives: entry count, path, symlink, size and ratio checks, with sizes
//! measured while inflating rather than taken from the headers.

use std::collections::BTreeSet;
use std::io::Read;

use super::BundleError;

/// Bounds on what reading one archive may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZipLimits {
    /// Most entries (files and directories) an archive may hold.
    pub max_entries: usize,
    /// Most bytes one entry may inflate to.
    pub max_entry_bytes: u64,
    /// Most bytes all entries together may inflate to.
    pub max_total_bytes: u64,
    /// Highest inflated/compressed ratio allowed once an entry passes `ratio_floor_bytes`.
    pub max_compression_ratio: u64,
    /// Entries smaller than this are never refused for their ratio (tiny files compress well).
    pub ratio_floor_bytes: u64,
}

impl Default for ZipLimits {
    fn default() -> ZipLimits {
        ZipLimits {
            max_entries: 1000,
            max_entry_bytes: 16 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_compression_ratio: 200,
            ratio_floor_bytes: 1024 * 1024,
        }
    }
}

/// One regular file read out of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The entry's path with `\` turned into `/` and any leading `./` removed.
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Reads every regular file of an archive, refusing anything unsafe. Directory entries are
/// skipped. Nothing is returned unless the whole archive passes.
pub fn read_zip_entries(bytes: &[u8], limits: &ZipLimits) -> Result<Vec<ZipEntry>, BundleError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|error| {
        BundleError::MalformedZip {
            reason: error.to_string(),
        }
    })?;
    if archive.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries {
            entries: archive.len(),
            limit: limits.max_entries,
        });
    }
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|error| BundleError::MalformedZip {
                reason: format!("entry {index}: {error}"),
            })?;
        let raw_name = file.name().to_string();
        let path = normalise_entry_path(&raw_name)?;
        if file.is_symlink() {
            return Err(BundleError::SymlinkEntry { entry: raw_name });
        }
        if file.is_dir() {
            continue;
        }
        if !seen.insert(path.clone()) {
            return Err(BundleError::DuplicateEntry { entry: raw_name });
        }
        let compressed = file.compressed_size().max(1);
        let mut content = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let read = file
                .read(&mut chunk)
                .map_err(|error| BundleError::MalformedZip {
                    reason: format!("entry {raw_name:?}: {error}"),
                })?;
            if read == 0 {
                break;
            }
            let inflated = (content.len() as u64).saturating_add(read as u64);
            if inflated > limits.max_entry_bytes {
                return Err(BundleError::EntryTooLarge {
                    entry: raw_name,
                    limit: limits.max_entry_bytes,
                });
            }
            if total.saturating_add(inflated) > limits.max_total_bytes {
                return Err(BundleError::TotalTooLarge {
                    entry: raw_name,
                    limit: limits.max_total_bytes,
                });
            }
            if inflated > limits.ratio_floor_bytes
                && inflated > compressed.saturating_mul(limits.max_compression_ratio)
            {
                return Err(BundleError::CompressionRatio {
                    entry: raw_name,
                    limit: limits.max_compression_ratio,
                });
            }
            content.extend_from_slice(&chunk[..read]);
        }
        total = total.saturating_add(content.len() as u64);
        entries.push(ZipEntry {
            path,
            bytes: content,
        });
    }
    Ok(entries)
}

/// Refuses absolute paths, drive letters, `..` components and NUL; normalises separators.
fn normalise_entry_path(raw_name: &str) -> Result<String, BundleError> {
    let unsafe_path = || BundleError::UnsafePath {
        entry: raw_name.to_string(),
    };
    if raw_name.is_empty() || raw_name.contains('\0') {
        return Err(unsafe_path());
    }
    let unified = raw_name.replace('\\', "/");
    if unified.starts_with('/') {
        return Err(unsafe_path());
    }
    let bytes = unified.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(unsafe_path());
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            ".." => return Err(unsafe_path()),
            "" | "." => continue,
            other if other.contains(':') => return Err(unsafe_path()),
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_path());
    }
    let mut path = parts.join("/");
    if unified.ends_with('/') {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn options() -> zip::write::SimpleFileOptions {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in files {
            writer.start_file(*name, options()).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_regular_files_and_normalises_paths() {
        let bytes = zip_of(&[("./jobs/a.json", b"{}"), ("jobs\\b.json", b"[]")]);
        let entries = read_zip_entries(&bytes, &ZipLimits::default()).unwrap();
        let paths: Vec<_> = entries.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, vec!["jobs/a.json", "jobs/b.json"]);
        assert_eq!(entries[1].bytes, b"[]");
    }

    #[test]
    fn refuses_parent_directory_entries() {
        let bytes = zip_of(&[("jobs/../../etc/passwd", b"x")]);
        assert!(matches!(
            read_zip_entries(&bytes, &ZipLimits::default()),
            Err(BundleError::UnsafePath { entry }) if entry == "jobs/../../etc/passwd"
        ));
    }

    #[test]
    fn refuses_absolute_and_drive_letter_paths() {
        for name in [
            "/etc/passwd",
            "C:/Windows/win.ini",
            "c:evil",
            "\\\\server\\share",
        ] {
            let bytes = zip_of(&[(name, b"x")]);
            assert!(
                matches!(
                    read_zip_entries(&bytes, &ZipLimits::default()),
                    Err(BundleError::UnsafePath { .. })
                ),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn refuses_symlink_entries() {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .add_symlink("jobs/link.json", "/etc/passwd", options())
            .unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        assert!(matches!(
            read_zip_entries(&bytes, &ZipLimits::default()),
            Err(BundleError::SymlinkEntry { .. })
        ));
    }

    #[test]
    fn refuses_too_many_entries() {
        let names: Vec<String> = (0..6).map(|index| format!("f{index}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let limits = ZipLimits {
            max_entries: 5,
            ..ZipLimits::default()
        };
        assert_eq!(
            read_zip_entries(&zip_of(&files), &limits),
            Err(BundleError::TooManyEntries {
                entries: 6,
                limit: 5
            })
        );
    }

    #[test]
    fn refuses_an_entry_over_the_size_limit_measured_while_inflating() {
        let big = vec![b'a'; 10_000];
        let limits = ZipLimits {
            max_entry_bytes: 4096,
            ..ZipLimits::default()
        };
        assert!(matches!(
            read_zip_entries(&zip_of(&[("big", &big)]), &limits),
            Err(BundleError::EntryTooLarge { limit: 4096, .. })
        ));
    }

    #[test]
    fn refuses_archives_over_the_total_limit() {
        let part = vec![b'a'; 3000];
        let limits = ZipLimits {
            max_total_bytes: 5000,
            ..ZipLimits::default()
        };
        assert!(matches!(
            read_zip_entries(&zip_of(&[("one", &part), ("two", &part)]), &limits),
            Err(BundleError::TotalTooLarge { entry, .. }) if entry == "two"
        ));
    }

    #[test]
    fn refuses_compression_bombs() {
        let zeros = vec![0u8; 2 * 1024 * 1024];
        let limits = ZipLimits {
            max_compression_ratio: 50,
            ratio_floor_bytes: 64 * 1024,
            ..ZipLimits::default()
        };
        assert!(matches!(
            read_zip_entries(&zip_of(&[("bomb", &zeros)]), &limits),
            Err(BundleError::CompressionRatio { limit: 50, .. })
        ));
    }

    #[test]
    fn refuses_garbage_and_duplicate_entries() {
        assert!(matches!(
            read_zip_entries(b"not a zip at all", &ZipLimits::default()),
            Err(BundleError::MalformedZip { .. })
        ));
        let bytes = zip_of(&[("a.json", b"1"), ("./a.json", b"2")]);
        assert!(matches!(
            read_zip_entries(&bytes, &ZipLimits::default()),
            Err(BundleError::DuplicateEntry { .. })
        ));
    }
}
