//! The layer rule, checked: the crate's top-level modules stand in layers, and a module uses
//! only modules of lower layers (never one of its own layer, never one above it). The order is
//! the one ARCHITECTURE.md states under "Layers"; keep the two the same.
//!
//! The check reads every `src/**/*.rs` file as text and collects the `crate::<module>`
//! references of its code: `use` lines (with `crate::{a, b::c}` groups over several lines) and
//! inline paths. Comments, string and character literals and test code (`#[cfg(test)]`
//! modules, inline or in their own file) are left out: a test may build what it needs from
//! any layer.
//!
//! The same suite holds the code to its shape: no function in `src/` is longer than 120
//! lines (`function_length`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom to top. A module may use the modules of the layers below its own.
const LAYERS: &[&[&str]] = &[
    // Plain data and process-wide helpers.
    &["model", "memory", "terminal", "error_chain"],
    // The service client, job bundles, the journal.
    &["cloud", "bundle", "journal"],
    // The job repository (reads DLF bundles' resource types).
    &["desired"],
    // The planner (pure) and the service emulator.
    &["plan", "emulator"],
    &["config"],
    &["source"],
    &["savepoints"],
    &["apply"],
    &["promotion", "gc"],
    &["notify"],
    // What the daemon writes and the server reads: status, triggers, metrics, controls.
    &["status"],
    // One path for a pass, used by the CLI commands and the daemon.
    &["pass"],
    // The `doctor` command, and the HTTP server.
    &["doctor", "server"],
    &["daemon"],
];

/// Upward references known and not yet straightened, as (module, module it uses, what is
/// left to do). The check fails when one of them no longer occurs, so the list only shrinks.
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// Files that are no module of a layer: the crate root and the binary (which sits on top).
const NOT_LAYERED: &[&str] = &["lib.rs", "main.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The text with comments, string literals and character literals blanked out (each replaced
/// by spaces, newlines kept), so that only code is searched.
fn code_of(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !is_ident(prev(&chars, i))
        {
            // A raw string: r"...", r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            out.extend(chars[i..j.min(chars.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}', '{'); a lifetime ('a) stays.
            let literal_end = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match literal_end {
                Some(end) => {
                    out.extend(std::iter::repeat_n(' ', end + 1 - i));
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev(chars: &[char], i: usize) -> char {
    if i == 0 { ' ' } else { chars[i - 1] }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The code with every `#[cfg(test)]` item written inline (`mod tests { ... }`) removed, and
/// the names of the test modules declared with their own file (`#[cfg(test)] mod tests;`).
fn without_test_code(code: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(code.len());
    let mut test_files = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let item = after.trim_start();
        let head_end = item.find(['{', ';']).unwrap_or(item.len());
        let head: Vec<&str> = item[..head_end].split_whitespace().collect();
        let module_name = head
            .iter()
            .position(|word| *word == "mod")
            .and_then(|at| head.get(at + 1));
        let is_mod = module_name.is_some();
        let semicolon = item.find(';');
        let brace = item.find('{');
        let skip_to = match (semicolon, brace) {
            // `mod name;`: the module is a file of its own.
            (Some(s), b) if is_mod && b.is_none_or(|b| s < b) => {
                if let Some(name) = module_name {
                    test_files.push(name.to_string());
                }
                s + 1
            }
            // An item with a body: skip to its closing brace.
            (_, Some(b)) => {
                let mut depth = 0;
                let mut end = item.len();
                for (offset, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + offset + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(s), None) => s + 1,
            (None, None) => item.len(),
        };
        // Keep the line count, so that reported line numbers stay true.
        let skipped = &after[..after.len() - item.len() + skip_to];
        out.extend(skipped.chars().filter(|&c| c == '\n'));
        rest = &item[skip_to..];
    }
    out.push_str(rest);
    (out, test_files)
}

/// Every top-level module named after `crate::` in `code`, with its line (1-based):
/// `crate::name`, and each head of a group `crate::{a, b::c, d::{e, f}}`.
fn crate_references(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut search = 0;
    while let Some(offset) = code[search..].find("crate::") {
        let at = search + offset;
        search = at + "crate::".len();
        if at > 0 && is_ident(bytes[at - 1] as char) {
            continue; // the end of a longer name
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = code[search..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // The heads of a group: the first word of each element at depth 1.
            let mut depth = 1;
            let mut expecting_head = true;
            let mut word = String::new();
            let skipped = code[search..].len() - rest.len();
            let mut line_here = line + code[search..search + skipped].matches('\n').count();
            for c in group.chars() {
                if c == '\n' {
                    line_here += 1;
                }
                if is_ident(c) {
                    if expecting_head && depth == 1 {
                        word.push(c);
                    }
                    continue;
                }
                if !word.is_empty() {
                    found.push((line_here, std::mem::take(&mut word)));
                    expecting_head = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expecting_head = true,
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                found.push((line, name));
            }
        }
    }
    found
}

/// The top-level module a file under `src/` belongs to (`src/apply/live/mod.rs` → `apply`).
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .expect("a path under src/")
        .as_os_str()
        .to_string_lossy()
        .to_string();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

fn known(module: &str, used: &str) -> bool {
    KNOWN_EXCEPTIONS
        .iter()
        .any(|(from, to, _)| *from == module && *to == used)
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Files that hold test code only: declared `#[cfg(test)] mod name;` in a file of the same
/// directory (`tests.rs`, `gate_tests.rs`, `test_support.rs`, `status/tests.rs`).
fn test_only_files(root: &Path, files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut test_only = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let (_, test_modules) = without_test_code(&code_of(&text));
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let parent = file.parent().unwrap();
        // `a/mod.rs` and `lib.rs` declare children beside them; `a/b.rs` declares them in `a/b/`.
        let base = if stem == "mod" || (stem == "lib" && parent == root) || stem == "main" {
            parent.to_path_buf()
        } else {
            parent.join(&stem)
        };
        for name in test_modules {
            let beside = base.join(format!("{name}.rs"));
            let nested = base.join(&name).join("mod.rs");
            test_only.insert(beside);
            test_only.insert(nested);
        }
    }
    test_only
}

/// Every reference from a module to a module of its own layer or one above, as messages.
fn violations(root: &Path) -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under src/",
        files.len()
    );
    let test_only = test_only_files(root, &files);
    let mut problems = Vec::new();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen_exceptions: BTreeSet<(String, String)> = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(root).expect("a file under src/");
        if test_only.contains(file) || NOT_LAYERED.contains(&relative.to_string_lossy().as_ref()) {
            continue;
        }
        let module = module_of(relative);
        let Some(layer) = layer_of(&module) else {
            problems.push(format!(
                "src/{}: module `{module}` is in no layer; add it to LAYERS (tests/layers.rs) and to ARCHITECTURE.md's \"Layers\"",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        let (code, _) = without_test_code(&code_of(&text));
        for (line, used) in crate_references(&code) {
            if used == module {
                continue;
            }
            let Some(used_layer) = layer_of(&used) else {
                // `crate::SomeRootItem` or a module not declared here; lib.rs names nothing else.
                continue;
            };
            uses.entry(module.clone()).or_default().insert(used.clone());
            let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
            if used_layer < layer {
                continue;
            }
            if known(&module, &used) {
                seen_exceptions.insert((module.clone(), used.clone()));
                continue;
            }
            if used_layer == layer {
                problems.push(format!(
                    "src/{}:{line}: `{module}` uses `{used}` of its own layer: {source_line}",
                    relative.display()
                ));
            } else {
                problems.push(format!(
                    "src/{}:{line}: `{module}` (layer {layer}) uses `{used}` from a higher layer ({used_layer}): {source_line}",
                    relative.display()
                ));
            }
        }
    }
    for (module, used, _) in KNOWN_EXCEPTIONS {
        if !seen_exceptions.contains(&(module.to_string(), used.to_string())) {
            problems.push(format!(
                "`{module}` no longer uses `{used}`: remove the pair from KNOWN_EXCEPTIONS"
            ));
        }
    }
    (problems, uses)
}

#[test]
fn the_reader_finds_references_in_code_only() {
    let text = "use crate::model::Job;\n\
                use crate::{\n    plan::{self, Plan},\n    journal,\n};\n\
                // crate::daemon in a comment\n\
                let s = \"crate::server\";\n\
                let c = '{';\n\
                fn f() -> crate::cloud::Call { todo!() }\n\
                #[cfg(test)]\nmod tests {\n    use crate::daemon::Stop;\n}\n\
                #[cfg(test)]\nmod more;\n\
                let t = crate::status::Trigger::new();\n";
    let (code, test_modules) = without_test_code(&code_of(text));
    assert_eq!(test_modules, vec!["more".to_string()]);
    let found = crate_references(&code);
    assert_eq!(
        found,
        vec![
            (1, "model".to_string()),
            (3, "plan".to_string()),
            (4, "journal".to_string()),
            (9, "cloud".to_string()),
            (16, "status".to_string()),
        ]
    );
}

#[test]
fn every_module_is_placed_once() {
    let mut seen = BTreeSet::new();
    for module in LAYERS.iter().flat_map(|layer| layer.iter()) {
        assert!(seen.insert(*module), "`{module}` is in two layers");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("read src/lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';'))
        .collect();
    let layered: BTreeSet<&str> = seen.iter().copied().collect();
    assert_eq!(
        declared, layered,
        "src/lib.rs declares these modules; LAYERS must name exactly them"
    );
}

#[test]
fn no_module_uses_a_module_of_its_own_layer_or_above() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (problems, uses) = violations(&root);
    // The check has something to check: the daemon uses the layers below it.
    assert!(
        uses.get("daemon")
            .is_some_and(|used| used.contains("status") && used.contains("server")),
        "the reader found no references from the daemon: {uses:?}"
    );
    assert!(
        problems.is_empty(),
        "imports that break the layer rule (a module uses only lower layers; see ARCHITECTURE.md, \"Layers\"):\n{}",
        problems.join("\n")
    );
}

/// The other half of the code's shape: no function in `src/` runs over
/// [`MAX_FUNCTION_LINES`](function_length::MAX_FUNCTION_LINES) lines; a longer one is split
/// into named steps. Counted on the code alone (comments and literals blanked out): from the
/// line that opens a `fn` to the line that closes its body.
mod function_length {
    use std::path::Path;

    /// The longest a function may be, in lines, signature to closing brace.
    pub const MAX_FUNCTION_LINES: usize = 120;

    /// The name of the function a line of code opens, if it opens one.
    fn function_name(line: &str) -> Option<&str> {
        let mut words = line.split_whitespace().peekable();
        while let Some(word) = words.peek() {
            if word.starts_with("pub") || matches!(*word, "async" | "const" | "unsafe" | "extern") {
                words.next();
            } else {
                break;
            }
        }
        if words.next()? != "fn" {
            return None;
        }
        let rest = words.next()?;
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// Every function with a body in `text`, as (first line, length in lines, name).
    pub fn functions(text: &str) -> Vec<(usize, usize, String)> {
        let code = super::code_of(text);
        let lines: Vec<&str> = code.lines().collect();
        let mut found = Vec::new();
        for (start, line) in lines.iter().enumerate() {
            let Some(name) = function_name(line) else {
                continue;
            };
            let mut depth = 0i64;
            let mut opened = false;
            for (offset, body) in lines[start..].iter().enumerate() {
                if !opened && body.contains(';') && !body.contains('{') {
                    break; // a declaration without a body (a trait's method)
                }
                for c in body.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if opened && depth == 0 {
                    found.push((start + 1, offset + 1, name.to_string()));
                    break;
                }
            }
        }
        found
    }

    #[test]
    fn the_counter_measures_bodies_and_skips_literals_and_declarations() {
        let text = "fn a() {\n    let s = \"}\";\n    let c = '{';\n    // }\n}\nfn b();\npub(crate) async fn c<'x>(v: &'x str) -> &'x str {\n    v\n}\n";
        assert_eq!(
            functions(text),
            vec![(1, 5, "a".to_string()), (7, 3, "c".to_string())]
        );
    }

    #[test]
    fn no_function_in_src_is_over_the_limit() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        super::rust_files(&manifest.join("src"), &mut files);
        assert!(
            files.len() > 50,
            "found only {} files under src/",
            files.len()
        );
        let mut long = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read a source file");
            for (line, length, name) in functions(&text) {
                if length > MAX_FUNCTION_LINES {
                    let shown = file.strip_prefix(manifest).unwrap_or(file);
                    long.push(format!(
                        "{}:{line} `{name}`: {length} lines",
                        shown.display()
                    ));
                }
            }
        }
        assert!(
            long.is_empty(),
            "functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n{}",
            long.join("\n")
        );
    }
}
