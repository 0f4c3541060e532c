//! A small YAML document tree that keeps the line and column of every node, built from
//! `saphyr-parser` events, so that every problem can point at its place in the file.
//!
//! `serde_yaml` stops at the first error and its values carry no positions, hence this tree.
//! It refuses what a job file never needs and an attacker could use: anchors and aliases
//! (the "billion laughs" expansion), custom tags, and nesting deeper than [`MAX_DEPTH`].

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

/// Deeper nesting than this is refused (a job file needs four levels at most).
pub(crate) const MAX_DEPTH: usize = 64;

/// A position in a file, both 1-based, columns counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Mark {
    pub line: u32,
    pub column: u32,
}

impl Mark {
    fn from_span(span: &Span) -> Mark {
        Mark {
            line: span.start.line() as u32,
            column: span.start.col() as u32 + 1,
        }
    }
}

/// One node of a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: NodeValue,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    /// Entries in file order; keys are scalars (others are refused while parsing).
    Mapping(Vec<(Node, Node)>),
}

/// A scalar as written: its text and whether it was quoted (quoted scalars are always strings).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    pub quoted: bool,
    /// Where the text starts after the node's mark (1 for quoted scalars), when every source
    /// character is a text character, so positions inside the text can be computed exactly.
    pub inline_offset: Option<u32>,
}

/// The type a scalar has under YAML 1.2's core schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typed<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Scalar {
    /// Interprets the scalar per the YAML 1.2 core schema (plain scalars only; quoted ones are strings).
    pub fn typed(&self) -> Typed<'_> {
        if self.quoted {
            return Typed::Str(&self.text);
        }
        let text = self.text.as_str();
        match text {
            "" | "~" | "null" | "Null" | "NULL" => return Typed::Null,
            "true" | "True" | "TRUE" => return Typed::Bool(true),
            "false" | "False" | "FALSE" => return Typed::Bool(false),
            _ => {}
        }
        if let Some(int) = parse_int(text) {
            return Typed::Int(int);
        }
        if looks_like_float(text)
            && let Ok(float) = text.parse::<f64>()
        {
            return Typed::Float(float);
        }
        Typed::Str(text)
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(octal) = digits.strip_prefix("0o") {
        i64::from_str_radix(octal, 8).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn looks_like_float(text: &str) -> bool {
    let body = text.trim_start_matches(['-', '+']);
    matches!(body, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN")
        || (body.bytes().any(|byte| byte.is_ascii_digit())
            && body.bytes().all(|byte| {
                byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'-' | b'+')
            }))
}

impl Node {
    /// A short name of the node's type, for messages ("a mapping", "an integer", ...).
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            NodeValue::Sequence(_) => "a list",
            NodeValue::Mapping(_) => "a mapping",
            NodeValue::Scalar(scalar) => match scalar.typed() {
                Typed::Null => "nothing (null)",
                Typed::Bool(_) => "a boolean",
                Typed::Int(_) => "an integer",
                Typed::Float(_) => "a number",
                Typed::Str(_) => "a string",
            },
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            NodeValue::Scalar(scalar) => Some(scalar),
            _ => None,
        }
    }

    pub fn as_mapping(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Mapping(entries) => Some(entries),
            _ => None,
        }
    }

    /// The text of a scalar key (keys are always scalars in a parsed tree).
    pub fn key_text(&self) -> &str {
        match &self.value {
            NodeValue::Scalar(scalar) => &scalar.text,
            _ => "",
        }
    }

    /// A plain empty document (only comments, or a trailing `---`).
    pub fn is_empty_document(&self) -> bool {
        matches!(&self.value, NodeValue::Scalar(scalar) if !scalar.quoted && scalar.text.is_empty())
    }
}

/// Why a file could not be parsed, with where.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct YamlError {
    pub mark: Mark,
    pub message: String,
    pub hint: Option<String>,
}

/// Parses every document of a YAML stream. Stops at the first syntax error (the parser cannot
/// recover); structural problems it refuses are reported with their position.
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|error| {
            let at = Mark {
                line: error.marker().line() as u32,
                column: error.marker().col() as u32 + 1,
            };
            // A flow collection left open (`queue_name: [dev_flink`) makes the parser fail
            // somewhere later; the place to fix is where it was opened.
            let unclosed = stack.iter().rev().find_map(|frame| {
                let opener = char_at(text, frame.mark)?;
                matches!(opener, '[' | '{').then_some((opener, frame.mark))
            });
            match unclosed {
                Some((opener, opened)) => YamlError {
                    mark: opened,
                    message: format!(
                        "unclosed `{opener}`: this flow collection is never closed (the parser gave up at {}:{}: {})",
                        at.line,
                        at.column,
                        error.info()
                    ),
                    hint: Some(format!(
                        "close it with `{}` on the same line, or quote the value",
                        if opener == '[' { ']' } else { '}' }
                    )),
                },
                None => YamlError {
                    mark: at,
                    message: format!("YAML syntax error: {}", error.info()),
                    hint: None,
                },
            }
        })?;
        let mark = Mark::from_span(&span);
        let node = match event {
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => continue,
            Event::Alias(_) => return Err(refused_alias(mark)),
            Event::Scalar(text, style, anchor, tag) => {
                refuse_anchor(anchor, mark)?;
                let quoted = style != ScalarStyle::Plain || is_string_tag(tag.as_ref(), mark)?;
                // Positions inside a scalar are exact only when the source is the text itself
                // (plus quotes): no escapes, no folded lines.
                let source_chars = span.end.index().saturating_sub(span.start.index());
                let text_chars = text.chars().count();
                let inline_offset = match style {
                    ScalarStyle::Plain if source_chars == text_chars => Some(0),
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
                        if source_chars == text_chars + 2 =>
                    {
                        Some(1)
                    }
                    _ => None,
                };
                Node {
                    value: NodeValue::Scalar(Scalar {
                        text: text.into_owned(),
                        quoted,
                        inline_offset,
                    }),
                    mark,
                }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_anchor(anchor, mark)?;
                refuse_tag(tag.as_ref(), mark)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        mark,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                        hint: Some("job files need only a few levels; flatten the document".into()),
                    });
                }
                let is_mapping = matches!(event, Event::MappingStart(..));
                stack.push(Frame {
                    mark,
                    is_mapping,
                    items: Vec::new(),
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else { continue };
                frame.finish()?
            }
        };
        match stack.last_mut() {
            Some(frame) => frame.items.push(node),
            None => documents.push(node),
        }
    }
    Ok(documents)
}

/// The character at a 1-based line and column of `text`.
fn char_at(text: &str, mark: Mark) -> Option<char> {
    text.lines()
        .nth(mark.line.checked_sub(1)? as usize)?
        .chars()
        .nth(mark.column.checked_sub(1)? as usize)
}

struct Frame {
    mark: Mark,
    is_mapping: bool,
    items: Vec<Node>,
}

impl Frame {
    fn finish(self) -> Result<Node, YamlError> {
        if !self.is_mapping {
            return Ok(Node {
                value: NodeValue::Sequence(self.items),
                mark: self.mark,
            });
        }
        let mut entries: Vec<(Node, Node)> = Vec::with_capacity(self.items.len() / 2);
        let mut items = self.items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            if key.as_scalar().is_none() {
                return Err(YamlError {
                    mark: key.mark,
                    message: format!("mapping keys must be plain text, found {}", key.type_name()),
                    hint: None,
                });
            }
            if let Some((first, _)) = entries
                .iter()
                .find(|(existing, _)| existing.key_text() == key.key_text())
            {
                return Err(YamlError {
                    mark: key.mark,
                    message: format!("duplicate key `{}`", key.key_text()),
                    hint: Some(format!("first given at line {}", first.mark.line)),
                });
            }
            entries.push((key, value));
        }
        Ok(Node {
            value: NodeValue::Mapping(entries),
            mark: self.mark,
        })
    }
}

fn refused_alias(mark: Mark) -> YamlError {
    YamlError {
        mark,
        message: "YAML aliases (`*name`) are not allowed".into(),
        hint: Some(
            "write the value out; aliases can expand without bound (\"billion laughs\")".into(),
        ),
    }
}

fn refuse_anchor(anchor: usize, mark: Mark) -> Result<(), YamlError> {
    if anchor == 0 {
        return Ok(());
    }
    Err(YamlError {
        mark,
        message: "YAML anchors (`&name`) are not allowed".into(),
        hint: Some(
            "write the value out; anchors and aliases can expand without bound (\"billion laughs\")"
                .into(),
        ),
    })
}

fn refuse_tag(tag: Option<&Cow<'_, Tag>>, mark: Mark) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(tag) => Err(YamlError {
            mark,
            message: format!("YAML tag `{tag}` is not supported"),
            hint: Some("remove the tag".into()),
        }),
    }
}

/// `!!str` forces a string; every other tag is refused.
fn is_string_tag(tag: Option<&Cow<'_, Tag>>, mark: Mark) -> Result<bool, YamlError> {
    match tag {
        None => Ok(false),
        Some(tag) if tag.is_yaml_core_schema() && tag.suffix == "str" => Ok(true),
        Some(_) => refuse_tag(tag, mark).map(|()| false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(text: &str) -> Node {
        parse_documents(text).unwrap().remove(0)
    }

    #[test]
    fn marks_are_one_based_and_point_at_values() {
        let document = first("kind: FlinkSqlJob\nname:   clicks\n");
        let entries = document.as_mapping().unwrap();
        assert_eq!(entries[1].0.mark, Mark { line: 2, column: 1 });
        assert_eq!(entries[1].1.mark, Mark { line: 2, column: 9 });
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let document = first("a: 1\nb: '1'\nc: true\nd: 1.15\ne: ~\nf: text\ng: 0x10\n");
        let typed: Vec<_> = document
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(_, value)| format!("{:?}", value.as_scalar().unwrap().typed()))
            .collect();
        assert_eq!(
            typed,
            [
                "Int(1)",
                "Str(\"1\")",
                "Bool(true)",
                "Float(1.15)",
                "Null",
                "Str(\"text\")",
                "Int(16)"
            ]
        );
    }

    #[test]
    fn aliases_anchors_and_tags_are_refused_with_their_position() {
        let error = parse_documents("a: &x [1, 2]\nb: *x\n").unwrap_err();
        assert_eq!(error.mark.line, 1);
        assert!(error.message.contains("anchors"), "{}", error.message);
        let error = parse_documents("a: !custom 1\n").unwrap_err();
        assert!(error.message.contains("tag"), "{}", error.message);
        assert!(parse_documents("a: !!str 1\n").is_ok());
    }

    #[test]
    fn duplicate_keys_and_deep_nesting_are_refused() {
        let error = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(error.mark, Mark { line: 3, column: 1 });
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(
            parse_documents(&deep)
                .unwrap_err()
                .message
                .contains("nesting")
        );
    }

    #[test]
    fn an_unclosed_flow_collection_is_reported_where_it_was_opened() {
        let error = parse_documents(
            "kind: FlinkSqlJob\nname: clicks\nqueue_name: [dev_flink\nsql_file: a.sql\n",
        )
        .unwrap_err();
        assert_eq!((error.mark.line, error.mark.column), (3, 13), "{error:?}");
        assert!(
            error.message.starts_with("unclosed `[`"),
            "{}",
            error.message
        );
        let error = parse_documents("a: {b: 1\nc: 2\n").unwrap_err();
        assert_eq!((error.mark.line, error.mark.column), (1, 4), "{error:?}");
        assert!(
            error.message.starts_with("unclosed `{`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let error = parse_documents("a: b: c\n").unwrap_err();
        assert!(
            error.message.starts_with("YAML syntax error"),
            "{}",
            error.message
        );
        assert!(error.mark.line >= 1);
    }

    #[test]
    fn inline_offsets_only_where_source_and_text_agree() {
        let document =
            first("a: plain ${x}\nb: \"quoted ${x}\"\nc: \"esc\\\"aped\"\nd: |\n  block\n");
        let offsets: Vec<_> = document
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(_, value)| value.as_scalar().unwrap().inline_offset)
            .collect();
        assert_eq!(offsets, [Some(0), Some(1), None, None]);
    }

    #[test]
    fn several_documents_are_returned_in_order() {
        let documents = parse_documents("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(documents.len(), 3);
        assert!(documents[2].is_empty_document());
    }
}
