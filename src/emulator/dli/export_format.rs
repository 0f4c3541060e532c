//! The emulator's own DLI Flink export zip: a layout private to this emulator, sealed with a key
//! of its data directory.
//!
//! The real layout of a DLI Flink export is published nowhere, and the DLI user guide
//! (dli_01_0461, "Managing Flink Jobs": "only jobs whose data format is the same as that of
//! Flink jobs exported from DLI can be imported") accepts only what DLI itself exported. So the
//! emulator behaves the same way: its export writes a versioned layout nobody else writes, and
//! its import accepts only zips that this emulator's export produced (an HMAC-SHA256 over the
//! document with a key kept in the data directory). A zip authored by anyone else, including
//! our own client, is refused with the service's message. That way the test suite proves that
//! the client treats export zips as opaque bytes and never depends on their inside.

use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::bundle::{ZipLimits, read_zip_entries, write_zip};
use crate::model::FlinkJobConfig;

/// The document entry of an export zip.
const DOCUMENT_ENTRY: &str = "dli-emulator-export/job.json";
/// The seal: lower-case hex HMAC-SHA256 of the document entry's bytes.
const SEAL_ENTRY: &str = "dli-emulator-export/seal";
const FORMAT_NAME: &str = "dli-emulator-export";
const FORMAT_VERSION: u32 = 1;
/// The key file in the emulator's data directory.
const KEY_FILE: &str = "export-key";

/// The message the import answers for a zip this emulator did not export (DLI's own wording in
/// the user guide).
pub(crate) const NOT_AN_EXPORT: &str = "only jobs exported from DLI can be imported (the data format must be the same as that of Flink jobs exported from DLI)";

/// One job as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportedJob {
    pub format: String,
    pub format_version: u32,
    pub job_id: i64,
    pub name: String,
    pub config: FlinkJobConfig,
}

/// The key that seals this data directory's exports.
#[derive(Clone)]
pub(crate) struct ExportKey([u8; 32]);

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ExportKey(..)")
    }
}

impl ExportKey {
    /// Reads `<data_dir>/export-key`, creating it (random, mode 0600) on first start.
    pub(crate) fn load_or_create(data_dir: &Path) -> std::io::Result<ExportKey> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => decode_key(text.trim()).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not 64 hex digits; delete it to make a new key (earlier exports then no longer import)",
                        path.display()
                    ),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let text = hex::encode(key);
                write_private(&path, text.as_bytes())?;
                Ok(ExportKey(key))
            }
            Err(error) => Err(error),
        }
    }

    fn seal(&self, document: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(document);
        hex::encode(mac.finalize().into_bytes())
    }

    fn verify(&self, document: &[u8], seal_hex: &str) -> bool {
        let Ok(seal) = hex::decode(seal_hex.trim()) else {
            return false;
        };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(document);
        mac.verify_slice(&seal).is_ok()
    }
}

fn decode_key(text: &str) -> Option<ExportKey> {
    let bytes = hex::decode(text).ok()?;
    Some(ExportKey(bytes.try_into().ok()?))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes one job's export zip.
pub(crate) fn write_export(
    key: &ExportKey,
    job_id: i64,
    name: &str,
    config: &FlinkJobConfig,
) -> Result<Vec<u8>, String> {
    let document = ExportedJob {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        job_id,
        name: name.to_string(),
        config: config.clone(),
    };
    let bytes = serde_json::to_vec(&document).map_err(|error| error.to_string())?;
    let seal = key.seal(&bytes);
    write_zip(&[
        (DOCUMENT_ENTRY.to_string(), bytes),
        (SEAL_ENTRY.to_string(), seal.into_bytes()),
    ])
    .map_err(|error| error.to_string())
}

/// Reads an export zip this emulator wrote; anything else is refused with the reason (a zip
/// that is not safe to read, one without the seal, one sealed by another key or altered).
pub(crate) fn read_export(
    key: &ExportKey,
    bytes: &[u8],
    limits: &ZipLimits,
) -> Result<ExportedJob, String> {
    let entries = read_zip_entries(bytes, limits)
        .map_err(|error| format!("{NOT_AN_EXPORT}: the zip cannot be read: {error}"))?;
    let entry = |name: &str| {
        entries
            .iter()
            .find(|entry| entry.path == name)
            .map(|entry| entry.bytes.as_slice())
    };
    let (Some(document), Some(seal)) = (entry(DOCUMENT_ENTRY), entry(SEAL_ENTRY)) else {
        return Err(format!("{NOT_AN_EXPORT}: the zip is not a DLI export"));
    };
    if entries.len() != 2 {
        return Err(format!(
            "{NOT_AN_EXPORT}: the zip holds entries a DLI export does not"
        ));
    }
    let seal = std::str::from_utf8(seal).unwrap_or_default();
    if !key.verify(document, seal) {
        return Err(format!(
            "{NOT_AN_EXPORT}: the zip was not exported by this DLI service, or was changed after its export"
        ));
    }
    let job: ExportedJob = serde_json::from_slice(document)
        .map_err(|error| format!("{NOT_AN_EXPORT}: the export cannot be read: {error}"))?;
    if job.format != FORMAT_NAME || job.format_version != FORMAT_VERSION {
        return Err(format!(
            "{NOT_AN_EXPORT}: export format {} v{} is not supported",
            job.format, job.format_version
        ));
    }
    Ok(job)
}

/// Entry points for the fuzz harnesses (`tests/reliability_fuzz.rs`): the import's reader under
/// a fixed key, over bytes from outside.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// An export of `name` (a default SQL job) sealed with `key`.
    pub fn write(key: [u8; 32], name: &str) -> Vec<u8> {
        let config = FlinkJobConfig::defaults_for(crate::model::JobKind::FlinkSql);
        write_export(&ExportKey(key), 1, name, &config).expect("an export writes")
    }

    /// What the import makes of `bytes`: the job's name, or why it refuses them.
    pub fn read(key: [u8; 32], bytes: &[u8], limits: &ZipLimits) -> Result<String, String> {
        read_export(&ExportKey(key), bytes, limits).map(|job| job.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobKind;

    #[test]
    fn only_zips_sealed_by_this_key_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = ExportKey::load_or_create(dir.path()).unwrap();
        let again = ExportKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.0, again.0, "the key is kept in the data directory");
        let config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        let zip = write_export(&key, 7, "agg", &config).unwrap();
        let read = read_export(&key, &zip, &ZipLimits::default()).unwrap();
        assert_eq!((read.job_id, read.name.as_str()), (7, "agg"));
        assert_eq!(read.config, config);

        let other_dir = tempfile::tempdir().unwrap();
        let other = ExportKey::load_or_create(other_dir.path()).unwrap();
        let refused = read_export(&other, &zip, &ZipLimits::default()).unwrap_err();
        assert!(refused.contains("only jobs exported from DLI"), "{refused}");

        // The same document with a seal computed under another key, or an unsealed zip.
        let forged = write_export(&other, 7, "agg", &config).unwrap();
        assert!(read_export(&key, &forged, &ZipLimits::default()).is_err());
        let unsealed = write_zip(&[(
            DOCUMENT_ENTRY.to_string(),
            serde_json::to_vec(&read).unwrap(),
        )])
        .unwrap();
        assert!(read_export(&key, &unsealed, &ZipLimits::default()).is_err());
        assert!(read_export(&key, b"not a zip", &ZipLimits::default()).is_err());
    }
}
