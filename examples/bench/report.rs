//! The harness's table: one row per figure, with its goal and what it was measured on.

use std::fmt::Write as _;

/// One measured figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub section: String,
    pub measure: String,
    pub value: String,
    pub goal: String,
    pub note: String,
}

impl Row {
    pub fn new(
        section: &str,
        measure: &str,
        value: impl Into<String>,
        goal: impl Into<String>,
        note: impl Into<String>,
    ) -> Row {
        Row {
            section: section.to_string(),
            measure: measure.to_string(),
            value: value.into(),
            goal: goal.into(),
            note: note.into(),
        }
    }
}

/// Every row of one harness run, printed as a Markdown table (paste-ready for BENCHMARKS.md).
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Sections that could not be measured, and why.
    pub not_measured: Vec<(String, String)>,
    /// Goals that are counts, not timings (API calls, restarts), and whether each was met.
    pub checks: Vec<(String, bool)>,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        println!(
            "  {:<28} {:<34} {:>14}   {}",
            row.section, row.measure, row.value, row.note
        );
        self.rows.push(row);
    }

    pub fn not_measured(&mut self, section: &str, reason: String) {
        println!("  {section:<28} NOT MEASURED: {reason}");
        self.not_measured.push((section.to_string(), reason));
    }

    /// Records a count-based goal (never a timing: those vary with the machine).
    pub fn check(&mut self, goal: String, met: bool) {
        println!("  goal {}: {goal}", if met { "met" } else { "MISSED" });
        self.checks.push((goal, met));
    }

    pub fn missed_goals(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|(_, met)| !met)
            .map(|(goal, _)| goal.as_str())
            .collect()
    }

    pub fn to_markdown(&self) -> String {
        let mut text = String::from(
            "| section | measure | value | goal | measured on |\n|---|---|---:|---|---|\n",
        );
        for row in &self.rows {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} |",
                row.section, row.measure, row.value, row.goal, row.note
            );
        }
        for (section, reason) in &self.not_measured {
            let _ = writeln!(text, "| {section} | not measured | | | {reason} |");
        }
        if !self.checks.is_empty() {
            text.push_str("\nCount-based goals:\n\n");
            for (goal, met) in &self.checks {
                let _ = writeln!(
                    text,
                    "* {}: {goal}",
                    if *met { "met" } else { "**missed**" }
                );
            }
        }
        text
    }
}

/// The median of some samples (0 when there are none).
pub fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let middle = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[middle]
    } else {
        (samples[middle - 1] + samples[middle]) / 2.0
    }
}

/// The nearest-rank percentile (`fraction` in 0..=1) of some samples.
pub fn percentile(mut samples: Vec<f64>, fraction: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (fraction * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub fn format_duration_ms(milliseconds: f64) -> String {
    if milliseconds >= 10_000.0 {
        format!("{:.1} s", milliseconds / 1000.0)
    } else if milliseconds >= 100.0 {
        format!("{milliseconds:.0} ms")
    } else {
        format!("{milliseconds:.1} ms")
    }
}

pub fn format_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn format_bytes(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// `a / b` as `12.3×`, or `n/a` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        if a == 0.0 { "1×".into() } else { "∞".into() }
    } else {
        format!("{:.1}×", a / b)
    }
}
