//! `dli-gitops savepoints list`: the catalog, read from the journal without its lock (so it
//! works beside a running daemon).

use std::io::Write;
use std::path::PathBuf;

use super::{CatalogEntry, catalog};
use crate::terminal::escape;

/// What `savepoints list` was asked.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub state_dir: PathBuf,
    pub target: Option<String>,
    pub job: Option<String>,
    pub json: bool,
}

/// Why the catalog could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("writing the list: {0}")]
    Write(#[from] std::io::Error),
}

/// Prints the catalog, oldest first: a table, or one JSON array.
pub fn list_command(options: &ListOptions, out: &mut dyn Write) -> Result<(), ListError> {
    let state = crate::journal::read_state(&options.state_dir)?;
    let entries = catalog(&state, options.target.as_deref(), options.job.as_deref());
    if options.json {
        serde_json::to_writer_pretty(&mut *out, &entries).map_err(std::io::Error::other)?;
        writeln!(out)?;
        return Ok(());
    }
    out.write_all(render_text(&entries).as_bytes())?;
    Ok(())
}

/// The catalog as a table (escaped for a terminal).
pub fn render_text(entries: &[CatalogEntry]) -> String {
    if entries.is_empty() {
        return "No savepoints in the catalog.\n".to_string();
    }
    let mut text = String::from("SEQ\tTIME\tTARGET\tJOB\tORIGIN\tREVISION\tSIZE\tVERIFIED\tPATH\n");
    for entry in entries {
        let record = &entry.entry.record;
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            entry.entry.seq,
            entry
                .entry
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            escape(&entry.target).into_owned(),
            escape(&record.job).into_owned(),
            escape(&record.origin).into_owned(),
            record.revision.as_deref().map_or_else(
                || "-".to_string(),
                |rev| escape(rev.get(..12).unwrap_or(rev)).into_owned()
            ),
            human_size(record.size_bytes),
            if record.verified { "yes" } else { "no" },
            escape(&record.path).into_owned(),
        ));
    }
    text
}

/// 1536 → `1.5 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
