//! Turns YAML text into a [`Config`] with errors a person can act on: the YAML path and line of
//! a bad key, "did you mean" for misspellings, and a refusal of inline secrets that names every
//! one of them and says where the secret should come from instead.

use std::path::Path;

use serde_yaml::Value;

use super::{Config, ConfigError, ConfigProblem, ParseFailure};

/// Keys that would hold a secret value inline. Each is refused wherever it appears; the message
/// points at `<key>_env` / `<key>_file`.
const INLINE_SECRET_KEYS: &[&str] = &[
    "access_key",
    "secret_key",
    "security_token",
    "password",
    "passphrase",
    "token",
    "api_token",
    "webhook_secret",
    "private_key",
    "ak",
    "sk",
];

pub(super) fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let document: Value = serde_yaml::from_str(text).map_err(|error| {
        let location = error.location();
        ConfigError::Parse(Box::new(ParseFailure {
            path: origin.to_path_buf(),
            yaml_path: String::new(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message: format!("not valid YAML: {error}"),
            hint: None,
        }))
    })?;
    if !matches!(document, Value::Mapping(_)) {
        return Err(ConfigError::Parse(Box::new(ParseFailure {
            path: origin.to_path_buf(),
            yaml_path: String::new(),
            line: None,
            column: None,
            message:
                "the config must be a YAML mapping (keys such as `state_dir`, `sources`, `targets`)"
                    .to_string(),
            hint: None,
        })));
    }
    let mut problems = Vec::new();
    find_inline_secrets(&document, String::new(), &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: origin.to_path_buf(),
            problems,
        });
    }
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let yaml_path = render_path(error.path());
        let inner = error.into_inner();
        let location = inner.location();
        let mut message = inner.to_string();
        // serde_yaml appends " at line L column C"; we print the location ourselves.
        if let Some(index) = message.find(" at line ") {
            message.truncate(index);
        }
        // serde_yaml also prefixes the parent's path, which we print separately.
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.contains(' ')
        {
            message = rest.to_string();
        }
        ConfigError::Parse(Box::new(ParseFailure {
            path: origin.to_path_buf(),
            hint: hint_for(&message),
            yaml_path,
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }))
    })
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

fn find_inline_secrets(value: &Value, path: String, problems: &mut Vec<ConfigProblem>) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping {
                let key_text = match key {
                    Value::String(text) => text.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child_path = if path.is_empty() {
                    key_text.clone()
                } else {
                    format!("{path}.{key_text}")
                };
                if INLINE_SECRET_KEYS.contains(&key_text.as_str()) {
                    problems.push(ConfigProblem {
                        yaml_path: child_path.clone(),
                        message: format!(
                            "secrets are never written in the config file; remove `{key_text}` and use \
                             `{key_text}_env: VARIABLE` or `{key_text}_file: /path/to/file` instead"
                        ),
                    });
                    continue;
                }
                find_inline_secrets(child, child_path, problems);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                find_inline_secrets(item, format!("{path}[{index}]"), problems);
            }
        }
        Value::Tagged(tagged) => find_inline_secrets(&tagged.value, path, problems),
        _ => {}
    }
}

/// "did you mean" for serde's unknown-field and unknown-variant messages.
fn hint_for(message: &str) -> Option<String> {
    let (unknown, expected) =
        ["unknown field `", "unknown variant `"]
            .iter()
            .find_map(|prefix| {
                let rest = &message[message.find(prefix)? + prefix.len()..];
                let (unknown, rest) = rest.split_once('`')?;
                Some((unknown, rest))
            })?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if candidates.is_empty() {
        return Some(format!("`{unknown}` is not an option here; remove it"));
    }
    let best = candidates
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(unknown, candidate), *candidate))
        .min()?;
    let close_enough = best.0 <= 2.max(unknown.len() / 3)
        || candidates
            .iter()
            .any(|c| c.starts_with(unknown) || unknown.starts_with(c));
    if close_enough {
        let suggestion = if best.0 <= 2.max(unknown.len() / 3) {
            best.1
        } else {
            candidates
                .iter()
                .find(|c| c.starts_with(unknown) || unknown.starts_with(*c))
                .copied()
                .unwrap_or(best.1)
        };
        Some(format!("did you mean `{suggestion}`?"))
    } else {
        Some(format!("valid keys here: {}", candidates.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys() {
        assert_eq!(
            hint_for(
                "unknown field `auto_synk`, expected one of `auto_sync`, `self_heal`, `prune`"
            )
            .as_deref(),
            Some("did you mean `auto_sync`?")
        );
        assert_eq!(
            hint_for("unknown variant `imports`, expected `import` or `api`").as_deref(),
            Some("did you mean `import`?")
        );
        assert_eq!(
            hint_for("unknown field `zzzzzzzz`, expected `a` or `b`").as_deref(),
            Some("valid keys here: a, b")
        );
        assert_eq!(hint_for("invalid type: string"), None);
    }
}
