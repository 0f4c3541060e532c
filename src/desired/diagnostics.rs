//! Validation problems: each points at a file, line and column, and most carry a hint saying
//! what to do. Displayed as `path:line:col: message` (the compiler convention editors link).

use std::fmt;

use serde::Serialize;

/// One problem found in a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    /// Path relative to the repository root, `/`-separated.
    pub file: String,
    /// 1-based; 1 for problems with a whole file.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            for line in hint.lines() {
                write!(f, "\n    hint: {line}")?;
            }
        }
        Ok(())
    }
}

/// Every problem found in one pass, sorted by file and position.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file, line and column and drops exact repeats, so output is stable.
    pub(crate) fn finish(mut self) -> Diagnostics {
        self.0.sort();
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// "did you mean `x`?" for the closest candidate, when one is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lowered = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&lowered, &candidate.to_ascii_lowercase());
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|left, right| left.0.total_cmp(&right.0))
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_each_hint_line_under_the_message() {
        let diagnostic = Diagnostic {
            file: "flink/a.yaml".into(),
            line: 3,
            column: 5,
            message: "unknown field `cu_numbr`".into(),
            hint: Some("did you mean `cu_number`?\nsecond".into()),
        };
        assert_eq!(
            diagnostic.to_string(),
            "flink/a.yaml:3:5: unknown field `cu_numbr`\n    hint: did you mean `cu_number`?\n    hint: second"
        );
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let fields = ["cu_number", "parallel_number", "queue_name"];
        assert_eq!(
            did_you_mean("cu_numbr", fields).as_deref(),
            Some("did you mean `cu_number`?")
        );
        assert_eq!(did_you_mean("zzz", fields), None);
    }
}
