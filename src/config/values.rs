//! Small config value types that parse leniently and are checked by `Config::validate`, so that
//! one pass reports every bad duration, endpoint or storage location instead of the first one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as text (`30s`, `5m`, `1h30m`, `500ms`). An unparseable value is kept and
/// reported by `Config::validate`; `Config::load` never returns a config holding one.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigDuration {
    raw: String,
    parsed: Option<Duration>,
}

impl ConfigDuration {
    /// A duration known to be valid (used for defaults).
    pub fn from_duration(duration: Duration) -> ConfigDuration {
        ConfigDuration {
            raw: humantime::format_duration(duration).to_string(),
            parsed: Some(duration),
        }
    }

    /// Parses `text`; a bad value is kept for `validate` to report.
    pub fn parse(text: &str) -> ConfigDuration {
        ConfigDuration {
            raw: text.to_string(),
            parsed: parse_duration(text),
        }
    }

    /// The duration. Zero only for a value that failed validation, which a loaded config never has.
    pub fn get(&self) -> Duration {
        self.parsed.unwrap_or(Duration::ZERO)
    }

    /// The text as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Whether the text parsed.
    pub fn is_valid(&self) -> bool {
        self.parsed.is_some()
    }
}

/// Parses `30s`, `5m`, `1h`, `1h30m`, `500ms`, `2d`. Bare numbers are refused: `60` is ambiguous.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    humantime::parse_duration(trimmed).ok()
}

impl fmt::Debug for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raw)
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = StringOrNumber::deserialize(deserializer)?;
        Ok(ConfigDuration::parse(&value.0))
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

/// Accepts a YAML string or number as text, so `poll_interval: 60` reaches validation and gets a
/// helpful message ("write 60s") instead of a type error.
struct StringOrNumber(String);

impl<'de> Deserialize<'de> for StringOrNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StringOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `30s`, `5m` or `1h`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrNumber(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(StringOrNumber(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(StringOrNumber(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(StringOrNumber(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Where a service is reached: the in-process emulator or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The emulator, started in-process by the daemon.
    Embedded,
    /// An `https://` (or, for local test services, `http://`) base URL without a trailing `/`.
    Url(String),
    /// Neither; reported by `validate`.
    Invalid(String),
}

impl Endpoint {
    /// Parses `embedded` or an http(s) URL with a host.
    pub fn parse(text: &str) -> Endpoint {
        let trimmed = text.trim();
        if trimmed == "embedded" {
            return Endpoint::Embedded;
        }
        match url::Url::parse(trimmed) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https")
                    && parsed.host_str().is_some_and(|host| !host.is_empty())
                    && parsed.query().is_none() =>
            {
                Endpoint::Url(trimmed.trim_end_matches('/').to_string())
            }
            _ => Endpoint::Invalid(text.to_string()),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Endpoint::Embedded)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Endpoint::parse(&String::deserialize(deserializer)?))
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Endpoint::Embedded => serializer.serialize_str("embedded"),
            Endpoint::Url(text) | Endpoint::Invalid(text) => serializer.serialize_str(text),
        }
    }
}

/// An OBS prefix or a local directory for staging bundles and backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    /// `obs://bucket/prefix/`; `prefix` is empty or ends with `/`.
    Obs { bucket: String, prefix: String },
    /// `file:///abs/dir/` or `file://relative/dir` (relative to the config file's directory).
    File(PathBuf),
    /// Neither; reported by `validate`.
    Invalid(String),
}

impl StorageLocation {
    /// Parses `obs://bucket/prefix/` or `file://path`.
    pub fn parse(text: &str) -> StorageLocation {
        let trimmed = text.trim();
        if let Some(rest) = trimmed.strip_prefix("obs://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if is_valid_bucket(bucket)
                && (prefix.is_empty() || prefix.ends_with('/'))
                && !prefix.starts_with('/')
                && !prefix.split('/').any(|part| part == "." || part == "..")
            {
                return StorageLocation::Obs {
                    bucket: bucket.to_string(),
                    prefix: prefix.to_string(),
                };
            }
        } else if let Some(rest) = trimmed.strip_prefix("file://")
            && !rest.is_empty()
        {
            return StorageLocation::File(PathBuf::from(rest));
        }
        StorageLocation::Invalid(text.to_string())
    }
}

/// OBS bucket names: 3–63 characters of lowercase letters, digits, `-` and `.`, starting and
/// ending with a letter or digit.
fn is_valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl<'de> Deserialize<'de> for StorageLocation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(StorageLocation::parse(&String::deserialize(deserializer)?))
    }
}

impl Serialize for StorageLocation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageLocation::Obs { bucket, prefix } => write!(f, "obs://{bucket}/{prefix}"),
            StorageLocation::File(path) => write!(f, "file://{}", path.display()),
            StorageLocation::Invalid(text) => f.write_str(text),
        }
    }
}

/// Where a secret is read from at run time. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SecretRef {
    /// An environment variable's name.
    Env(String),
    /// A file's path; one trailing newline is trimmed.
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) if super::validate::is_valid_env_name(name) => {
                write!(f, "environment variable {name}")
            }
            // Not a name, so likely a pasted secret: say only how long it is.
            SecretRef::Env(name) => write!(
                f,
                "an environment variable whose name is not valid ({} characters, not shown)",
                name.chars().count()
            ),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Builds a [`SecretRef`] from an `X_env` / `X_file` pair; both set is a validation problem.
pub(crate) fn secret_ref(env: &Option<String>, file: &Option<PathBuf>) -> Option<SecretRef> {
    match (env, file) {
        (Some(name), _) => Some(SecretRef::Env(name.clone())),
        (None, Some(path)) => Some(SecretRef::File(path.clone())),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("60"), None);
        assert_eq!(parse_duration("five minutes"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn endpoints() {
        assert_eq!(Endpoint::parse("embedded"), Endpoint::Embedded);
        assert_eq!(
            Endpoint::parse("https://dli.cn-north-4.myhuaweicloud.com/"),
            Endpoint::Url("https://dli.cn-north-4.myhuaweicloud.com".into())
        );
        assert!(matches!(
            Endpoint::parse("dli.example.com"),
            Endpoint::Invalid(_)
        ));
        assert!(matches!(Endpoint::parse("ftp://x"), Endpoint::Invalid(_)));
    }

    #[test]
    fn storage_locations() {
        assert_eq!(
            StorageLocation::parse("obs://dli-gitops-staging/dev/"),
            StorageLocation::Obs {
                bucket: "dli-gitops-staging".into(),
                prefix: "dev/".into()
            }
        );
        assert_eq!(
            StorageLocation::parse("obs://bucket"),
            StorageLocation::Obs {
                bucket: "bucket".into(),
                prefix: "".into()
            }
        );
        assert!(matches!(
            StorageLocation::parse("obs://bucket/dev"),
            StorageLocation::Invalid(_)
        ));
        assert!(matches!(
            StorageLocation::parse("obs://Bucket/dev/"),
            StorageLocation::Invalid(_)
        ));
        assert!(matches!(
            StorageLocation::parse("s3://bucket/dev/"),
            StorageLocation::Invalid(_)
        ));
        assert!(matches!(
            StorageLocation::parse("obs://b/../x/"),
            StorageLocation::Invalid(_)
        ));
        assert_eq!(
            StorageLocation::parse("file:///var/lib/x/"),
            StorageLocation::File(PathBuf::from("/var/lib/x/"))
        );
    }
}
