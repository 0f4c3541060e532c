//! Journal records: the typed record kinds and their one-line, checksummed JSON encoding.
//!
//! A line is a JSON object whose last member is `"crc32c":"xxxxxxxx"` (8 lowercase hex digits).
//! The checksum is CRC32C (Castagnoli) over the exact bytes of the line with the 23-byte
//! suffix `,"crc32c":"xxxxxxxx"}` replaced by `}`, i.e. over the record as it would be written
//! without the checksum member. No canonical re-serialisation is involved, so a reader written
//! in any language can check a line with a byte slice and a CRC32C routine.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The journal and snapshot format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The largest encoded record accepted, so a runaway `detail` or `config` value cannot make a
/// line that takes a reader minutes to parse.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// The record kinds [`super::Journal::appended_by_kind`] counts (a bounded label set for
/// metrics): the kinds this build understands, then `unknown`.
pub const RECORD_KINDS: [&str; 9] = [
    "intent",
    "outcome",
    "observed",
    "revision_applied",
    "promotion",
    "backup",
    "savepoint",
    "drift_detected",
    "unknown",
];

/// Record kinds this build understands; anything else decodes as [`RecordBody::Unknown`].
pub const KNOWN_KINDS: &[&str] = match RECORD_KINDS.split_last() {
    Some((_, known)) => known,
    None => &[],
};

/// Kinds other modules write as untyped records ([`RecordBody::Unknown`]): the state reducer
/// does not fold them, and their writers read them back with `Journal::records`. Suspends,
/// resumes and window overrides (`status::control`), notification states and deliveries
/// (`notify`).
pub const UNTYPED_KINDS: &[&str] = &["control", "notification", "notification_sent"];

const CHECKSUM_PREFIX: &[u8] = b",\"crc32c\":\"";
const CHECKSUM_SUFFIX_LEN: usize = CHECKSUM_PREFIX.len() + 8 + 2;

/// One journal record: the envelope every line carries, plus the typed payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Format version the record was written in.
    pub v: u32,
    /// Position in the journal: 1, 2, 3, ... with no gaps, across compactions.
    pub seq: u64,
    /// When the record was appended, with millisecond precision.
    #[serde(serialize_with = "serialize_time")]
    pub time: DateTime<Utc>,
    /// The target (environment) the record is about.
    pub target: String,
    /// The payload, tagged by `kind`.
    #[serde(flatten)]
    pub body: RecordBody,
}

/// The payload of a record. Serialised with a `kind` tag next to the envelope fields.
///
/// Every payload keeps the fields it does not know in `extra`, so a record written by a newer
/// build of the same format version survives a round trip through an older one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordBody {
    /// Written and fsync'd before an action starts.
    Intent(Intent),
    /// Written after an action ends, successfully or not.
    Outcome(Outcome),
    /// A job's live state, written only when its `update_time` changed.
    Observed(Observed),
    /// A target converged on a revision.
    RevisionApplied(RevisionApplied),
    /// A promotion between targets was attempted.
    Promotion(Promotion),
    /// Backups exported before a live job was overwritten or deleted.
    Backup(Backup),
    /// A savepoint copied under dli-gitops's own prefix (the savepoint catalog).
    Savepoint(SavepointRecord),
    /// A job's live state moved away from a definition git still asks for (drift).
    DriftDetected(DriftDetected),
    /// A kind this build does not know (written by a newer build); kept as-is, ignored by
    /// the state reducer. The map includes `kind`.
    #[serde(untagged)]
    Unknown(Map<String, Value>),
}

/// The announcement of an action, fsync'd before the action is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// Unique id pairing this intent with its outcome.
    pub action_id: String,
    pub job: String,
    /// The action class (`create`, `upgrade`, `prune`, ...).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Whatever the applier needs to resolve the intent after a crash (savepoint dir, ...).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The end of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub action_id: String,
    pub job: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
    #[serde(default)]
    pub effects: Effects,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A failure as the service reported it. Callers pass messages that are already redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What an action changed, as far as the journal's state needs to know.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Effects {
    /// The job's live id after the action (DLI ids change on re-import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_id: Option<String>,
    /// The savepoint captured or imported by the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_path: Option<String>,
    /// Backups exported by the action (`obs://...zip`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_zips: Vec<String>,
    /// Digest of the desired spec now live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_digest: Option<String>,
    /// The restore key (`model::Restore::key`) now applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_key: Option<String>,
    /// The job was deleted; the state forgets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The job is (or is no longer) managed by dli-gitops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    /// The applied definition said `prune: false` (true) or not (false); prune spares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// Automatic rollback's memory of the job (the upgrade it watches, the revision it marked
    /// failed), replaced whole; `{}` forgets it. Opaque here: `apply::auto_rollback` owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<Value>,
    /// Garbage collection deleted these objects or directories (savepoint copies, backup zips):
    /// the state forgets them (the catalog and the backup sets no longer list them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gc_deleted: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A job's live state at observation time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_id: Option<String>,
    /// The service's `update_time` (13-digit epoch milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
    /// The job detail as observed (normalised JSON), cached so the next cycle can skip it.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A target converged on a revision of its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionApplied {
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A promotion attempt. The record's `target` is the target promoted to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub from: String,
    pub to: String,
    pub revision: String,
    /// Who asked: a user name, `api:<token name>`, or `auto`.
    pub by: String,
    /// The rule that allowed it (`manual`, `auto after 10m healthy`, ...).
    #[serde(default)]
    pub rule: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Backups taken for one job before a plan overwrote or deleted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    pub job: String,
    pub zip_paths: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of the savepoint catalog: a savepoint dli-gitops triggered, took at stop, or carried
/// from another target, copied under its own prefix (DLI deletes its own savepoints when the job
/// restarts). The record's `seq` is the catalog id, its `time` when the copy was verified.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SavepointRecord {
    /// The job's journal key.
    pub job: String,
    /// The copy (`obs://bucket/dir/`, the parent of `_metadata`).
    pub path: String,
    /// `triggered` (before a stop), `stop` (taken by the stop), `held` (what a stopped job
    /// held before a restart), `carried` (from another target).
    pub origin: String,
    /// The service's savepoint the copy was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    /// The revision of the source the target had applied when the savepoint was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The digest of the definition whose state this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_digest: Option<String>,
    /// The action the savepoint was taken in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_id: Option<String>,
    #[serde(default)]
    pub objects: u64,
    #[serde(default)]
    pub size_bytes: u64,
    /// The copy was read back and matched its source.
    #[serde(default)]
    pub verified: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Drift on a job, written when a pass first sees it (or sees other fields drift, or another
/// decision about it). The job's next successful action clears it in the state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DriftDetected {
    /// The job's journal key.
    pub job: String,
    /// The fields that drifted (`job`: the live job is gone; `desired_state`: only the run
    /// state differs).
    pub fields: Vec<String>,
    /// What the pass does about it: `revert` or `report`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RecordBody {
    /// The `kind` tag.
    pub fn kind(&self) -> &str {
        match self {
            RecordBody::Intent(_) => "intent",
            RecordBody::Outcome(_) => "outcome",
            RecordBody::Observed(_) => "observed",
            RecordBody::RevisionApplied(_) => "revision_applied",
            RecordBody::Promotion(_) => "promotion",
            RecordBody::Backup(_) => "backup",
            RecordBody::Savepoint(_) => "savepoint",
            RecordBody::DriftDetected(_) => "drift_detected",
            RecordBody::Unknown(fields) => fields
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
        }
    }

    /// The job the record is about, when it is about one.
    pub fn job(&self) -> Option<&str> {
        match self {
            RecordBody::Intent(intent) => Some(&intent.job),
            RecordBody::Outcome(outcome) => Some(&outcome.job),
            RecordBody::Observed(observed) => Some(&observed.job),
            RecordBody::Backup(backup) => Some(&backup.job),
            RecordBody::Savepoint(savepoint) => Some(&savepoint.job),
            RecordBody::DriftDetected(drift) => Some(&drift.job),
            RecordBody::RevisionApplied(_) | RecordBody::Promotion(_) => None,
            RecordBody::Unknown(fields) => fields.get("job").and_then(Value::as_str),
        }
    }

    /// Decodes a payload from the members of a record other than the envelope.
    fn from_map(mut fields: Map<String, Value>) -> Result<RecordBody, String> {
        let kind = match fields.get("kind") {
            Some(Value::String(kind)) => kind.clone(),
            Some(other) => return Err(format!("`kind` is not a string: {other}")),
            None => return Err("missing `kind`".to_string()),
        };
        if !KNOWN_KINDS.contains(&kind.as_str()) {
            return Ok(RecordBody::Unknown(fields));
        }
        fields.remove("kind");
        let payload = Value::Object(fields);
        let decoded = match kind.as_str() {
            "intent" => serde_json::from_value(payload).map(RecordBody::Intent),
            "outcome" => serde_json::from_value(payload).map(RecordBody::Outcome),
            "observed" => serde_json::from_value(payload).map(RecordBody::Observed),
            "revision_applied" => serde_json::from_value(payload).map(RecordBody::RevisionApplied),
            "promotion" => serde_json::from_value(payload).map(RecordBody::Promotion),
            "savepoint" => serde_json::from_value(payload).map(RecordBody::Savepoint),
            "drift_detected" => serde_json::from_value(payload).map(RecordBody::DriftDetected),
            _ => serde_json::from_value(payload).map(RecordBody::Backup),
        };
        decoded.map_err(|error| format!("{kind} record does not parse: {error}"))
    }
}

impl<'de> Deserialize<'de> for RecordBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = Map::<String, Value>::deserialize(deserializer)?;
        RecordBody::from_map(fields).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = Map::<String, Value>::deserialize(deserializer)?;
        match record_from_map(fields) {
            Ok(record) => Ok(record),
            Err(DecodeError::Newer { found }) => Err(serde::de::Error::custom(format!(
                "record format v{found} is newer than this build reads (v{FORMAT_VERSION})"
            ))),
            Err(DecodeError::Invalid(reason)) => Err(serde::de::Error::custom(reason)),
        }
    }
}

/// Why a line did not decode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DecodeError {
    /// The line is intact but written in a newer format version.
    Newer { found: u64 },
    /// The line is damaged or not a record.
    Invalid(String),
}

/// Encodes a record as one line, checksum included, without the trailing newline.
pub(crate) fn encode_line(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let unsealed = serde_json::to_vec(record)?;
    Ok(seal(unsealed))
}

/// Decodes one line (without its newline): checksum first, then the JSON, then the version.
pub(crate) fn decode_line(line: &[u8]) -> Result<Record, DecodeError> {
    verify_seal(line).map_err(DecodeError::Invalid)?;
    let fields: Map<String, Value> = serde_json::from_slice(line)
        .map_err(|error| DecodeError::Invalid(format!("not a JSON object: {error}")))?;
    record_from_map(fields)
}

/// Appends the checksum member to a serialised JSON object.
pub(crate) fn seal(mut object: Vec<u8>) -> Vec<u8> {
    debug_assert_eq!(object.last(), Some(&b'}'));
    let checksum = crc32c::crc32c(&object);
    object.pop();
    // An empty object cannot carry a leading comma; records and snapshots are never empty.
    object.extend_from_slice(CHECKSUM_PREFIX);
    object.extend_from_slice(format!("{checksum:08x}\"}}").as_bytes());
    object
}

/// Checks the checksum member of a sealed object (see the module comment for the rule).
pub(crate) fn verify_seal(sealed: &[u8]) -> Result<(), String> {
    if sealed.len() < CHECKSUM_SUFFIX_LEN + 2 {
        return Err(format!("too short to be a record ({} bytes)", sealed.len()));
    }
    let split = sealed.len() - CHECKSUM_SUFFIX_LEN;
    let (body, suffix) = sealed.split_at(split);
    let hex_digits = &suffix[CHECKSUM_PREFIX.len()..CHECKSUM_PREFIX.len() + 8];
    let well_formed = suffix.starts_with(CHECKSUM_PREFIX)
        && suffix.ends_with(b"\"}")
        && hex_digits
            .iter()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte));
    if !well_formed {
        return Err("does not end with a `\"crc32c\":\"<8 lowercase hex digits>\"` member".into());
    }
    // The digits are ASCII hex, checked above.
    let stored = u32::from_str_radix(std::str::from_utf8(hex_digits).unwrap_or("x"), 16)
        .map_err(|_| "checksum is not hexadecimal".to_string())?;
    let computed = crc32c::crc32c_append(crc32c::crc32c(body), b"}");
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        ));
    }
    Ok(())
}

fn record_from_map(mut fields: Map<String, Value>) -> Result<Record, DecodeError> {
    fields.remove("crc32c");
    let version = match fields.remove("v") {
        Some(Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| DecodeError::Invalid(format!("`v` is not a version: {number}")))?,
        Some(other) => {
            return Err(DecodeError::Invalid(format!(
                "`v` is not a number: {other}"
            )));
        }
        None => return Err(DecodeError::Invalid("missing `v`".into())),
    };
    if version > u64::from(FORMAT_VERSION) {
        return Err(DecodeError::Newer { found: version });
    }
    if version == 0 {
        return Err(DecodeError::Invalid("`v` is 0".into()));
    }
    let seq = fields
        .remove("seq")
        .and_then(|value| value.as_u64())
        .filter(|seq| *seq > 0)
        .ok_or_else(|| DecodeError::Invalid("missing or invalid `seq`".into()))?;
    let time = match fields.remove("time") {
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(&text)
            .map_err(|error| DecodeError::Invalid(format!("`time` {text:?}: {error}")))?
            .with_timezone(&Utc),
        _ => return Err(DecodeError::Invalid("missing or invalid `time`".into())),
    };
    let target = match fields.remove("target") {
        Some(Value::String(target)) => target,
        _ => return Err(DecodeError::Invalid("missing or invalid `target`".into())),
    };
    let body = RecordBody::from_map(fields).map_err(DecodeError::Invalid)?;
    Ok(Record {
        // Checked above to be between 1 and FORMAT_VERSION.
        v: version as u32,
        seq,
        time,
        target,
        body,
    })
}

fn serialize_time<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The current time at the precision records keep, so a record equals its decoded copy.
pub(crate) fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn intent_record() -> Record {
        Record {
            v: FORMAT_VERSION,
            seq: 7,
            time: DateTime::from_timestamp_millis(1_790_000_000_123).unwrap(),
            target: "dev".into(),
            body: RecordBody::Intent(Intent {
                action_id: "a-1".into(),
                job: "clickstream-agg".into(),
                action: "upgrade".into(),
                plan_id: Some("p-1".into()),
                detail: json!({"savepoint_dir": "obs://b/sp/"}),
                extra: Map::new(),
            }),
        }
    }

    #[test]
    fn encoded_line_has_envelope_first_and_checksum_last() {
        let line = String::from_utf8(encode_line(&intent_record()).unwrap()).unwrap();
        assert!(
            line.starts_with(
                r#"{"v":1,"seq":7,"time":"2026-09-21T14:13:20.123Z","target":"dev","kind":"intent","#
            ),
            "{line}"
        );
        assert!(line.contains(r#","crc32c":""#));
        assert!(line.ends_with("\"}"));
        assert_eq!(decode_line(line.as_bytes()).unwrap(), intent_record());
    }

    #[test]
    fn checksum_rule_is_crc32c_of_the_line_without_the_checksum_member() {
        let line = encode_line(&intent_record()).unwrap();
        let without = serde_json::to_vec(&intent_record()).unwrap();
        let expected = format!("{:08x}", crc32c::crc32c(&without));
        assert!(
            String::from_utf8(line)
                .unwrap()
                .ends_with(&format!("\"crc32c\":\"{expected}\"}}"))
        );
    }

    #[test]
    fn uppercase_checksum_digits_are_rejected() {
        let line = String::from_utf8(encode_line(&intent_record()).unwrap()).unwrap();
        let upper = format!(
            "{}{}",
            &line[..line.len() - 10],
            line[line.len() - 10..].to_uppercase()
        );
        if upper != line {
            assert!(decode_line(upper.as_bytes()).is_err());
        }
    }

    #[test]
    fn unknown_fields_and_kinds_survive_a_round_trip() {
        let unsealed = br#"{"v":1,"seq":3,"time":"2026-01-01T00:00:00.000Z","target":"prod","kind":"outcome","action_id":"a","job":"j","ok":true,"effects":{"live_id":"42","future_effect":[1]},"future_top":"x"}"#;
        let line = seal(unsealed.to_vec());
        let record = decode_line(&line).unwrap();
        let RecordBody::Outcome(outcome) = &record.body else {
            panic!("expected an outcome, got {record:?}");
        };
        assert_eq!(outcome.extra.get("future_top"), Some(&json!("x")));
        assert_eq!(
            outcome.effects.extra.get("future_effect"),
            Some(&json!([1]))
        );
        assert_eq!(decode_line(&encode_line(&record).unwrap()).unwrap(), record);

        let unsealed = br#"{"v":1,"seq":4,"time":"2026-01-01T00:00:00.000Z","target":"prod","kind":"drift_alert","job":"j","level":3}"#;
        let record = decode_line(&seal(unsealed.to_vec())).unwrap();
        assert_eq!(record.body.kind(), "drift_alert");
        assert_eq!(record.body.job(), Some("j"));
        assert_eq!(decode_line(&encode_line(&record).unwrap()).unwrap(), record);
    }

    fn arbitrary_record() -> impl proptest::strategy::Strategy<Value = Record> {
        use proptest::prelude::*;
        let text = "\\PC{0,24}|[\\n\\t\"\\\\{},:]{0,8}";
        (
            1u64..u64::MAX / 2,
            0i64..4_000_000_000_000,
            text,
            text,
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            proptest::collection::btree_map("[a-z_]{1,8}", any::<i32>(), 0..4),
        )
            .prop_map(|(seq, millis, target, job, ok, update_time, extra)| {
                let extra: Map<String, Value> = extra
                    .into_iter()
                    .map(|(key, value)| (format!("future_{key}"), Value::from(value)))
                    .collect();
                let body = if ok {
                    RecordBody::Observed(Observed {
                        job: job.clone(),
                        live_id: Some(job),
                        update_time,
                        config: json!({"cu_number": update_time, "nested": [1, {"a": null}]}),
                        status: None,
                        managed: Some(ok),
                        extra,
                    })
                } else {
                    RecordBody::Outcome(Outcome {
                        action_id: job.clone(),
                        job,
                        ok,
                        error: Some(RecordedError {
                            code: None,
                            message: target.clone(),
                            request_id: None,
                            extra: Map::new(),
                        }),
                        effects: Effects {
                            backup_zips: vec![target.clone()],
                            extra,
                            ..Effects::default()
                        },
                        plan_id: None,
                        extra: Map::new(),
                    })
                };
                Record {
                    v: FORMAT_VERSION,
                    seq,
                    time: DateTime::from_timestamp_millis(millis).unwrap(),
                    target,
                    body,
                }
            })
    }

    proptest::proptest! {
        /// Any record encodes to one line that decodes to the same record.
        #[test]
        fn any_record_round_trips_through_one_line(record in arbitrary_record()) {
            let line = encode_line(&record).unwrap();
            proptest::prop_assert!(!line.contains(&b'\n'));
            proptest::prop_assert_eq!(decode_line(&line), Ok(record));
        }

        /// Changing any one byte of a line is detected: the line never decodes to a record
        /// other than the one written.
        #[test]
        fn any_single_byte_change_is_detected(
            record in arbitrary_record(),
            position in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut line = encode_line(&record).unwrap();
            let index = position.index(line.len());
            line[index] ^= flip;
            proptest::prop_assert!(decode_line(&line).is_err(), "byte {} changed undetected", index);
        }
    }

    #[test]
    fn newer_format_is_refused_and_malformed_known_kind_is_an_error() {
        let unsealed =
            br#"{"v":2,"seq":1,"time":"2026-01-01T00:00:00.000Z","target":"t","kind":"intent"}"#;
        assert_eq!(
            decode_line(&seal(unsealed.to_vec())),
            Err(DecodeError::Newer { found: 2 })
        );
        let unsealed = br#"{"v":1,"seq":1,"time":"2026-01-01T00:00:00.000Z","target":"t","kind":"intent","job":"j"}"#;
        let error = decode_line(&seal(unsealed.to_vec())).unwrap_err();
        assert!(
            matches!(&error, DecodeError::Invalid(reason) if reason.contains("action_id")),
            "{error:?}"
        );
    }
}
