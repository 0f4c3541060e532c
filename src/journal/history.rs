//! Read-only access for `journal show` and `journal verify`: no lock, safe beside a running
//! daemon, never writes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::JournalError;
use super::files::{Paths, read_or_empty, read_snapshot};
use super::record::{Outcome, Record, RecordBody, UNTYPED_KINDS};
use super::scan::{LineStatus, recover, scan_lines};
use super::state::JournalState;
use serde_json::{Map, Value};

/// Which records `journal show` and [`super::Journal::records`] return.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub target: Option<String>,
    /// Records with this seq or later.
    pub since: Option<u64>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<String>,
    /// At most this many, the newest.
    pub limit: Option<usize>,
}

/// Options of `dli-gitops journal show`.
#[derive(Debug, Clone)]
pub struct ShowOptions {
    pub state_dir: PathBuf,
    pub target: Option<String>,
    pub since: Option<u64>,
    /// One JSON record per line instead of a table.
    pub json: bool,
}

/// The result of `journal verify`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Damage: each names the file and line. Any problem fails verification.
    pub problems: Vec<String>,
    /// Worth knowing, not damage (a torn tail that the next open will cut, unknown kinds).
    pub warnings: Vec<String>,
    pub snapshot_seq: Option<u64>,
    pub archived_segments: usize,
    pub archived_records: usize,
    pub journal_records: usize,
    pub last_seq: Option<u64>,
    pub pending_intents: usize,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for problem in &self.problems {
            writeln!(formatter, "problem: {problem}")?;
        }
        for warning in &self.warnings {
            writeln!(formatter, "warning: {warning}")?;
        }
        let snapshot = match self.snapshot_seq {
            Some(seq) => format!("snapshot up to seq {seq}"),
            None => "no snapshot".to_string(),
        };
        let last = self
            .last_seq
            .map_or_else(|| "none".to_string(), |seq| seq.to_string());
        writeln!(
            formatter,
            "{}: {snapshot}, {} journal record(s), {} archived record(s) in {} segment(s), \
             last seq {last}, {} pending intent(s)",
            if self.is_ok() { "ok" } else { "FAILED" },
            self.journal_records,
            self.archived_records,
            self.archived_segments,
            self.pending_intents
        )
    }
}

/// Reads records from the archive and the live journal without taking the lock. A torn
/// tail (possibly an append in flight) is left out; damage in the middle is an error.
pub fn read_records(state_dir: &Path, filter: &RecordFilter) -> Result<Vec<Record>, JournalError> {
    require_directory(state_dir)?;
    let paths = Paths::new(state_dir);
    let mut by_seq = BTreeMap::new();
    let since = filter.since.unwrap_or(0);
    let segments = |paths: &Paths| -> Result<Vec<PathBuf>, JournalError> {
        Ok(paths
            .archive_segments()?
            .into_iter()
            .filter(|(_, last, _)| *last >= since)
            .map(|(_, _, path)| path)
            .collect())
    };
    let listed = segments(&paths)?;
    for path in listed.iter().chain([&paths.journal]) {
        collect_records(path, since, filter, &mut by_seq)?;
    }
    // A compaction between the listing and the journal read moves records into a new segment:
    // list again so they are not missed (duplicates collapse by seq).
    for path in segments(&paths)? {
        if !listed.contains(&path) {
            collect_records(&path, since, filter, &mut by_seq)?;
        }
    }
    let mut records: Vec<Record> = by_seq.into_values().collect();
    if let Some(limit) = filter.limit
        && records.len() > limit
    {
        records.drain(..records.len() - limit);
    }
    Ok(records)
}

/// The journal's reduced state, read without taking the lock (beside a running daemon): the
/// snapshot, then every record of the live journal after it. A torn tail is left out.
pub fn read_state(state_dir: &Path) -> Result<JournalState, JournalError> {
    require_directory(state_dir)?;
    let paths = Paths::new(state_dir);
    // A compaction between the two reads leaves a journal that starts after the snapshot read:
    // read both again.
    for _ in 0..5 {
        let mut state = read_snapshot(&paths.snapshot)?.unwrap_or_default();
        let bytes = read_or_empty(&paths.journal)?;
        let recovered = recover(&paths.journal, &bytes, scan_lines(&bytes))?;
        if recovered
            .records
            .first()
            .is_some_and(|first| first.seq > state.last_seq + 1)
        {
            continue;
        }
        for record in &recovered.records {
            state.apply(record);
        }
        return Ok(state);
    }
    let bytes = read_or_empty(&paths.journal)?;
    let recovered = recover(&paths.journal, &bytes, scan_lines(&bytes))?;
    let snapshot_seq = read_snapshot(&paths.snapshot)?.map_or(0, |state| state.last_seq);
    let first = recovered.records.first().map_or(0, |record| record.seq);
    Err(JournalError::MissingRecords {
        journal: paths.journal.clone(),
        journal_first_seq: first,
        snapshot_description: format!("the snapshot covers up to seq {snapshot_seq}"),
        missing_from: snapshot_seq + 1,
        missing_to: first.saturating_sub(1),
    })
}

fn collect_records(
    path: &Path,
    since: u64,
    filter: &RecordFilter,
    by_seq: &mut BTreeMap<u64, Record>,
) -> Result<(), JournalError> {
    // Missing reads as empty: a concurrent compaction may have just deleted an old segment.
    let bytes = read_or_empty(path)?;
    let recovered = recover(path, &bytes, scan_lines(&bytes))?;
    for record in recovered.records {
        if record.seq >= since
            && filter
                .target
                .as_ref()
                .is_none_or(|target| *target == record.target)
            && (filter.kinds.is_empty()
                || filter.kinds.iter().any(|kind| kind == record.body.kind()))
        {
            by_seq.insert(record.seq, record);
        }
    }
    Ok(())
}

/// Checks every checksum and sequence number in the snapshot, the archive and the journal.
/// `Err` only when the directory cannot be read at all.
pub fn verify(state_dir: &Path) -> Result<VerifyReport, JournalError> {
    require_directory(state_dir)?;
    let paths = Paths::new(state_dir);
    let mut report = VerifyReport::default();
    let mut state = match read_snapshot(&paths.snapshot) {
        Ok(Some(state)) => {
            report.snapshot_seq = Some(state.last_seq);
            state
        }
        Ok(None) => JournalState::default(),
        Err(error) => {
            report
                .problems
                .push(crate::error_chain::error_chain(&error));
            JournalState::default()
        }
    };

    let mut previous_archive_last: Option<u64> = None;
    for (first, last, path) in paths.archive_segments()? {
        report.archived_segments += 1;
        let bytes = read_or_empty(&path)?;
        let records = check_file(&path, &bytes, false, &mut report);
        report.archived_records += records.len();
        match (records.first(), records.last()) {
            (Some(head), Some(tail)) if head.seq != first || tail.seq != last => {
                report.problems.push(format!(
                    "{}: holds seq {}..{}, but its name says {first}..{last}",
                    path.display(),
                    head.seq,
                    tail.seq
                ));
            }
            _ => {}
        }
        if let Some(previous) = previous_archive_last
            && first != previous + 1
        {
            report.problems.push(format!(
                "{}: starts at seq {first}, but the previous segment ends at {previous}",
                path.display()
            ));
        }
        previous_archive_last = Some(last);
    }
    if let (Some(archived), Some(snapshot)) = (previous_archive_last, report.snapshot_seq)
        && archived > snapshot
    {
        report.problems.push(format!(
            "archived records reach seq {archived}, beyond the snapshot (seq {snapshot})"
        ));
    }

    let bytes = read_or_empty(&paths.journal)?;
    let records = check_file(&paths.journal, &bytes, true, &mut report);
    report.journal_records = records.len();
    if let Some(first) = records.first()
        && first.seq > state.last_seq + 1
    {
        let covered = match report.snapshot_seq {
            Some(seq) => format!("the snapshot covers up to seq {seq}"),
            None => "there is no snapshot".to_string(),
        };
        report.problems.push(format!(
            "{}: starts at seq {}, but {covered}: records {}..{} are missing",
            paths.journal.display(),
            first.seq,
            state.last_seq + 1,
            first.seq - 1
        ));
    }
    let mut unknown_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        if let RecordBody::Unknown(_) = record.body
            && !UNTYPED_KINDS.contains(&record.body.kind())
        {
            *unknown_kinds
                .entry(record.body.kind().to_string())
                .or_default() += 1;
        }
        state.apply(record);
    }
    for (kind, count) in unknown_kinds {
        report.warnings.push(format!(
            "{count} record(s) of kind {kind:?}, unknown to this build, are kept but ignored"
        ));
    }
    report.last_seq = (state.last_seq > 0).then_some(state.last_seq);
    report.pending_intents = state.pending_intent_count();
    Ok(report)
}

/// `dli-gitops journal verify`: prints the report; returns whether the journal is sound.
pub fn verify_command(state_dir: &Path, out: &mut dyn Write) -> Result<bool, JournalError> {
    let report = verify(state_dir)?;
    write!(out, "{report}").map_err(|source| JournalError::io("write to", "stdout", source))?;
    Ok(report.is_ok())
}

/// `dli-gitops journal show`: a readable history, or JSON lines with `--json`.
pub fn show(options: &ShowOptions, out: &mut dyn Write) -> Result<(), JournalError> {
    let filter = RecordFilter {
        target: options.target.clone(),
        since: options.since,
        ..RecordFilter::default()
    };
    let records = read_records(&options.state_dir, &filter)?;
    let text = if options.json {
        let mut text = String::new();
        for record in &records {
            let line = serde_json::to_string(record).map_err(|source| JournalError::Encode {
                target: record.target.clone(),
                source,
            })?;
            text.push_str(&line);
            text.push('\n');
        }
        text
    } else {
        crate::terminal::escape(&render_history(&records)).into_owned()
    };
    out.write_all(text.as_bytes())
        .map_err(|source| JournalError::io("write to", "stdout", source))
}

/// Renders records as a table: seq, time, target, kind, job, what, result.
pub(crate) fn render_history(records: &[Record]) -> String {
    if records.is_empty() {
        return "no records\n".to_string();
    }
    let mut actions: HashMap<&str, &str> = HashMap::new();
    let mut outcomes: HashMap<&str, (u64, bool)> = HashMap::new();
    for record in records {
        match &record.body {
            RecordBody::Intent(intent) => {
                actions.insert(&intent.action_id, &intent.action);
            }
            RecordBody::Outcome(outcome) => {
                outcomes.insert(&outcome.action_id, (record.seq, outcome.ok));
            }
            _ => {}
        }
    }
    let header = ["SEQ", "TIME", "TARGET", "KIND", "JOB", "WHAT", "RESULT"].map(String::from);
    let mut rows = vec![header];
    for record in records {
        let (what, result) = describe(record, &actions, &outcomes);
        rows.push([
            record.seq.to_string(),
            record.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            record.target.clone(),
            record.body.kind().to_string(),
            record.body.job().unwrap_or("-").to_string(),
            what,
            result,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index == row.len() - 1 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn describe(
    record: &Record,
    actions: &HashMap<&str, &str>,
    outcomes: &HashMap<&str, (u64, bool)>,
) -> (String, String) {
    match &record.body {
        RecordBody::Intent(intent) => {
            let result = match outcomes.get(intent.action_id.as_str()) {
                Some((seq, true)) => format!("ok (seq {seq})"),
                Some((seq, false)) => format!("failed (seq {seq})"),
                None => "no outcome yet".to_string(),
            };
            (format!("{} [{}]", intent.action, intent.action_id), result)
        }
        RecordBody::Outcome(outcome) => describe_outcome(outcome, actions),
        RecordBody::Observed(observed) => (
            format!(
                "observed {}",
                observed.status.as_deref().unwrap_or("(no status)")
            ),
            observed
                .live_id
                .as_ref()
                .map_or_else(String::new, |id| format!("live_id={id}")),
        ),
        RecordBody::RevisionApplied(applied) => (
            format!("revision {}", shorten(&applied.revision, 12)),
            shorten(&applied.summary, 100),
        ),
        RecordBody::Promotion(promotion) => (
            format!(
                "promote {} -> {} {} by {}{}",
                promotion.from,
                promotion.to,
                shorten(&promotion.revision, 12),
                promotion.by,
                if promotion.rule.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", promotion.rule)
                }
            ),
            match (&promotion.ok, &promotion.message) {
                (true, _) => "ok".to_string(),
                (false, Some(message)) => format!("failed: {}", shorten(message, 100)),
                (false, None) => "failed".to_string(),
            },
        ),
        RecordBody::Backup(backup) => (
            format!("backup {} zip(s)", backup.zip_paths.len()),
            backup
                .plan_id
                .as_ref()
                .map_or_else(String::new, |plan| format!("plan {plan}")),
        ),
        RecordBody::Savepoint(savepoint) => (
            format!(
                "savepoint {} ({}, {} bytes{})",
                savepoint.origin,
                savepoint.path,
                savepoint.size_bytes,
                if savepoint.verified { ", verified" } else { "" }
            ),
            savepoint
                .action_id
                .as_ref()
                .map_or_else(String::new, |id| format!("action {id}")),
        ),
        RecordBody::DriftDetected(drift) => (
            format!("drift in {} ({})", drift.fields.join(", "), drift.mode),
            drift
                .plan_id
                .as_ref()
                .map_or_else(String::new, |plan| format!("plan {plan}")),
        ),
        RecordBody::Unknown(fields) if UNTYPED_KINDS.contains(&record.body.kind()) => {
            describe_untyped(record.body.kind(), fields)
        }
        RecordBody::Unknown(_) => (
            "(a kind this build does not know)".to_string(),
            String::new(),
        ),
    }
}

/// An outcome's row: its action and id; `ok` with its effects, or the error.
fn describe_outcome(outcome: &Outcome, actions: &HashMap<&str, &str>) -> (String, String) {
    let action = actions
        .get(outcome.action_id.as_str())
        .copied()
        .unwrap_or("action");
    let what = format!("{action} [{}]", outcome.action_id);
    let result = if outcome.ok {
        let effects = &outcome.effects;
        let mut parts = vec!["ok".to_string()];
        if let Some(live_id) = &effects.live_id {
            parts.push(format!("live_id={live_id}"));
        }
        if let Some(path) = &effects.savepoint_path {
            parts.push(format!("savepoint={path}"));
        }
        if !effects.backup_zips.is_empty() {
            parts.push(format!("backups={}", effects.backup_zips.len()));
        }
        if effects.deleted {
            parts.push("deleted".into());
        }
        parts.join(" ")
    } else {
        match &outcome.error {
            Some(error) => format!(
                "failed: {}{}",
                error
                    .code
                    .as_ref()
                    .map_or(String::new(), |code| format!("{code} ")),
                shorten(&error.message, 100)
            ),
            None => "failed".to_string(),
        }
    };
    (what, result)
}

/// The row of a record kind written untyped (controls and notifications).
fn describe_untyped(kind: &str, fields: &Map<String, Value>) -> (String, String) {
    let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let summary = match kind {
        "control" => format!("{} by {}", text("action"), text("by")),
        "notification" if !text("event").is_empty() => {
            format!(
                "notify {} ({} -> {})",
                text("event"),
                text("family"),
                text("state")
            )
        }
        "notification" => format!("{} -> {}", text("family"), text("state")),
        _ => format!(
            "sent {} to {}: {}",
            text("event"),
            text("sink"),
            if fields.get("ok").and_then(|v| v.as_bool()) == Some(true) {
                "ok"
            } else {
                "dropped"
            }
        ),
    };
    let detail = [text("reason"), text("until"), text("id")]
        .into_iter()
        .find(|value| !value.is_empty())
        .unwrap_or("")
        .to_string();
    (summary, detail)
}

fn shorten(text: &str, limit: usize) -> String {
    let single_line = text.replace(['\n', '\r'], " ");
    if single_line.chars().count() <= limit {
        single_line
    } else {
        let cut: String = single_line.chars().take(limit).collect();
        format!("{cut}…")
    }
}

/// Checks one file, recording problems in `report`; returns its valid records.
fn check_file(
    path: &Path,
    bytes: &[u8],
    torn_tail_allowed: bool,
    report: &mut VerifyReport,
) -> Vec<Record> {
    let lines = scan_lines(bytes);
    // Only the final line can be torn (see `scan::recover`); a bad line with more after it
    // is damage.
    let final_index = lines.len().saturating_sub(1);
    let mut records: Vec<Record> = Vec::new();
    let mut torn_lines = Vec::new();
    for (index, line) in lines.into_iter().enumerate() {
        let in_tail = index == final_index;
        match line.status {
            LineStatus::Good(record) => {
                if let Some(previous) = records.last().map(|record| record.seq)
                    && record.seq != previous + 1
                {
                    report.problems.push(format!(
                        "{}:{}: expected seq {} but found {}",
                        path.display(),
                        line.number,
                        previous + 1,
                        record.seq
                    ));
                }
                records.push(*record);
            }
            LineStatus::Newer { found } => report.problems.push(format!(
                "{}:{}: written in format v{found}, newer than this build reads",
                path.display(),
                line.number
            )),
            LineStatus::Bad { reason } if in_tail && torn_tail_allowed => {
                torn_lines.push((line.number, reason));
            }
            LineStatus::Bad { reason } => {
                report
                    .problems
                    .push(format!("{}:{}: {reason}", path.display(), line.number))
            }
        }
    }
    if let Some((first_line, reason)) = torn_lines.first() {
        report.warnings.push(format!(
            "{}:{first_line}: torn tail of {} line(s) ({reason}); the next open cuts it \
             (or it is an append in flight)",
            path.display(),
            torn_lines.len()
        ));
    }
    records
}

fn require_directory(state_dir: &Path) -> Result<(), JournalError> {
    match std::fs::metadata(state_dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(JournalError::io(
            "read the state directory",
            state_dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        )),
        Err(source) => Err(JournalError::io(
            "read the state directory",
            state_dir,
            source,
        )),
    }
}
