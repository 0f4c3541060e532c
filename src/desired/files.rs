//! Files inside a snapshot: joining a reference to the file that makes it, refusing paths
//! that leave the repository, following symbolic links only while they stay inside it, and
//! `${variable}` substitution in text.

use std::collections::BTreeMap;

use super::snapshot::{MAX_FILE_BYTES, RepoFile, RepoSnapshot};

/// How many links a chain may have before it is called a loop.
const MAX_LINK_HOPS: usize = 8;

/// Why a referenced file could not be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReadProblem {
    Missing,
    Directory,
    Oversized(u64),
    NotUtf8,
    LinkOutside {
        link: String,
        target: String,
    },
    LinkLoop,
    /// A named pipe, socket or device; the words say which.
    NotRegular(String),
}

impl ReadProblem {
    /// `(message, hint)` for a file at `path`.
    pub fn describe(&self, path: &str) -> (String, Option<String>) {
        match self {
            ReadProblem::Missing => (format!("`{path}` does not exist"), None),
            ReadProblem::Directory => (format!("`{path}` is a directory, not a file"), None),
            ReadProblem::Oversized(size) => (
                format!(
                    "`{path}` is {size} bytes, over the {MAX_FILE_BYTES}-byte limit; it was not read"
                ),
                Some(
                    "split it, or keep large artefacts (jars) in OBS and refer to them by URL"
                        .into(),
                ),
            ),
            ReadProblem::NotUtf8 => (format!("`{path}` is not UTF-8 text"), None),
            ReadProblem::NotRegular(kind) => (
                format!("`{path}` is not a regular file (it is {kind}); it was not read"),
                Some("replace it with a regular file committed to the repository".into()),
            ),
            ReadProblem::LinkOutside { link, target } => (
                format!("symbolic link `{link}` points outside the repository (`{target}`)"),
                Some("links may only point at files inside the repository".into()),
            ),
            ReadProblem::LinkLoop => (
                format!("`{path}` is a chain of more than {MAX_LINK_HOPS} symbolic links"),
                None,
            ),
        }
    }
}

/// Joins `reference` (as written in `base_file`) to the directory of `base_file`.
/// Refuses absolute paths and paths that climb out of the repository.
pub(crate) fn join_reference(base_file: &str, reference: &str) -> Result<String, String> {
    if reference.starts_with('/')
        || reference.starts_with('\\')
        || reference.as_bytes().get(1) == Some(&b':')
    {
        return Err(format!(
            "`{reference}` is an absolute path; references are relative to the YAML file"
        ));
    }
    let directory = match base_file.rfind('/') {
        Some(index) => &base_file[..index],
        None => "",
    };
    normalise(directory, reference)
        .ok_or_else(|| format!("`{reference}` points outside the repository"))
}

/// `directory` joined with `relative`, with `.` and `..` removed; `None` if it climbs above the root.
fn normalise(directory: &str, relative: &str) -> Option<String> {
    let mut parts: Vec<&str> = directory
        .split('/')
        .filter(|part| !part.is_empty())
        .collect();
    for part in relative.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// The text of the file at `path`, following links that stay inside the repository.
/// Returns the path finally read and the text.
pub(crate) fn read_text<'a>(
    snapshot: &'a RepoSnapshot,
    path: &str,
) -> Result<(String, &'a str), ReadProblem> {
    let mut current = path.to_string();
    for _ in 0..=MAX_LINK_HOPS {
        match snapshot.files.get(&current) {
            Some(RepoFile::Data(bytes)) => {
                let text = std::str::from_utf8(bytes).map_err(|_| ReadProblem::NotUtf8)?;
                return Ok((current, text));
            }
            Some(RepoFile::Oversized { size }) => return Err(ReadProblem::Oversized(*size)),
            Some(RepoFile::NotRegular { kind }) => {
                return Err(ReadProblem::NotRegular(kind.clone()));
            }
            Some(RepoFile::Symlink { target }) => {
                let outside = || ReadProblem::LinkOutside {
                    link: current.clone(),
                    target: target.clone(),
                };
                if target.starts_with('/') || target.as_bytes().get(1) == Some(&b':') {
                    return Err(outside());
                }
                let directory = current.rfind('/').map_or("", |index| &current[..index]);
                current = normalise(directory, target).ok_or_else(outside)?;
            }
            None => {
                let prefix = format!("{current}/");
                if snapshot
                    .files
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(key, _)| key.starts_with(&prefix))
                {
                    return Err(ReadProblem::Directory);
                }
                return Err(ReadProblem::Missing);
            }
        }
    }
    Err(ReadProblem::LinkLoop)
}

/// A `${name}` reference that no variable fills, at a byte offset of the text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnknownVariable {
    pub offset: usize,
    pub name: String,
}

/// Fills `${name}` from `variables`. `$${` writes a literal `${`. Names for which `passthrough`
/// is true are left as written (DataArts job parameters use the same syntax). Text that is not
/// a well-formed reference (`${` without a name and `}`) is left alone.
pub(crate) fn substitute(
    text: &str,
    variables: &BTreeMap<String, String>,
    passthrough: &dyn Fn(&str) -> bool,
) -> (String, Vec<UnknownVariable>) {
    if !text.contains("${") {
        return (text.to_string(), Vec::new());
    }
    let mut output = String::with_capacity(text.len());
    let mut unknown = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(index) = rest.find('$') {
        output.push_str(&rest[..index]);
        let after = &rest[index..];
        if let Some(escaped) = after.strip_prefix("$${") {
            output.push_str("${");
            consumed += index + 3;
            rest = escaped;
            continue;
        }
        if let Some(body) = after.strip_prefix("${")
            && let Some(end) = body.find('}')
            && is_variable_name(&body[..end])
        {
            let name = &body[..end];
            match variables.get(name) {
                Some(value) => output.push_str(value),
                None => {
                    if !passthrough(name) {
                        unknown.push(UnknownVariable {
                            offset: consumed + index,
                            name: name.to_string(),
                        });
                    }
                    output.push_str(&after[..end + 3]);
                }
            }
            consumed += index + end + 3;
            rest = &body[end + 1..];
            continue;
        }
        output.push('$');
        consumed += index + 1;
        rest = &after[1..];
    }
    output.push_str(rest);
    (output, unknown)
}

/// `[A-Za-z_][A-Za-z0-9_.-]*`
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before[line_start..].chars().count() as u32 + 1;
    (line, column)
}

/// Writes `${` as `$${` so that [`substitute`] gives the text back unchanged, except for
/// references for which `keep` is true.
pub(crate) fn escape_variables(text: &str, keep: &dyn Fn(&str) -> bool) -> String {
    if !text.contains('$') {
        return text.to_string();
    }
    let mut output = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(index) = rest.find("${") {
        output.push_str(&rest[..index]);
        let body = &rest[index + 2..];
        let kept = body
            .find('}')
            .map(|end| &body[..end])
            .is_some_and(|name| is_variable_name(name) && keep(name));
        // A kept reference right after a `$` would read as the `$${` escape: escape it instead.
        if kept && !output.ends_with('$') {
            output.push_str("${");
        } else {
            output.push_str("$${");
        }
        rest = body;
    }
    output.push_str(rest);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(files: &[(&str, RepoFile)]) -> RepoSnapshot {
        RepoSnapshot {
            revision: "r".into(),
            files: files
                .iter()
                .map(|(path, file)| (path.to_string(), file.clone()))
                .collect(),
        }
    }

    #[test]
    fn references_are_relative_and_stay_inside() {
        assert_eq!(
            join_reference("flink/a.yaml", "a.sql").unwrap(),
            "flink/a.sql"
        );
        assert_eq!(
            join_reference("flink/a.yaml", "../sql/./a.sql").unwrap(),
            "sql/a.sql"
        );
        assert!(join_reference("flink/a.yaml", "../../etc/passwd").is_err());
        assert!(join_reference("a.yaml", "/etc/passwd").is_err());
    }

    #[test]
    fn links_are_followed_only_inside_the_repository() {
        let files = snapshot(&[
            ("sql/a.sql", RepoFile::Data(b"SELECT 1".to_vec())),
            (
                "flink/a.sql",
                RepoFile::Symlink {
                    target: "../sql/a.sql".into(),
                },
            ),
            (
                "flink/b.sql",
                RepoFile::Symlink {
                    target: "../../x".into(),
                },
            ),
            (
                "flink/c.sql",
                RepoFile::Symlink {
                    target: "c.sql".into(),
                },
            ),
        ]);
        assert_eq!(read_text(&files, "flink/a.sql").unwrap().1, "SELECT 1");
        assert!(matches!(
            read_text(&files, "flink/b.sql"),
            Err(ReadProblem::LinkOutside { .. })
        ));
        assert_eq!(read_text(&files, "flink/c.sql"), Err(ReadProblem::LinkLoop));
        assert_eq!(read_text(&files, "flink"), Err(ReadProblem::Directory));
        assert_eq!(read_text(&files, "nope"), Err(ReadProblem::Missing));
    }

    #[test]
    fn substitution_fills_escapes_and_reports_unknown_names() {
        let variables = BTreeMap::from([("queue".to_string(), "prod_flink".to_string())]);
        let (text, unknown) = substitute(
            "q=${queue} lit=$${queue} bad=${nope} odd=${ x} $5",
            &variables,
            &|_| false,
        );
        assert_eq!(text, "q=prod_flink lit=${queue} bad=${nope} odd=${ x} $5");
        assert_eq!(
            unknown,
            vec![UnknownVariable {
                offset: 29,
                name: "nope".into()
            }]
        );
        let (_, unknown) = substitute("${bizdate}", &variables, &|name| name == "bizdate");
        assert!(unknown.is_empty());
    }

    #[test]
    fn escaping_round_trips_through_substitution() {
        let variables = BTreeMap::new();
        for text in [
            "${a}",
            "$${a}",
            "$${a} ${b}",
            "cost: $$${x}",
            "plain $ text",
            "${",
        ] {
            let escaped = escape_variables(text, &|_| false);
            let (back, unknown) = substitute(&escaped, &variables, &|_| false);
            assert_eq!(back, text, "escaped as {escaped}");
            assert!(unknown.is_empty());
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncdé${x}", 7), (2, 4));
    }
}
