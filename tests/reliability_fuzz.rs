//! Property-based fuzzing of the parsers that read untrusted bytes: the webhook parser, the
//! daemon config, the spec parser, the bundle reader and journal recovery. Each harness starts
//! from a valid input, mutates it at the byte level (flips, inserts, deletes, truncations,
//! splices of tokens the format cares about) and checks that the parser never panics and that
//! what it accepts still satisfies the format's invariants.
//!
//! Bounded for CI: every harness runs `DEFAULT_CASES` cases. For a longer run set
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=200000 cargo test --test reliability_fuzz`
//! (RELIABILITY.md lists the figures of the last long run).

use std::path::Path;

use dli_gitops::bundle::{self, DlfJobEntry, ZipEntry, ZipLimits};
use dli_gitops::config::Config;
use dli_gitops::desired::snapshot::{RepoFile, RepoSnapshot};
use dli_gitops::desired::{self, read_directory};
use dli_gitops::emulator::flink_export_fuzzing;
use dli_gitops::journal::{
    Effects, Intent, JOURNAL_FILE, Journal, JournalError, JournalOptions, Outcome, RecordBody,
    RecoveryReport, verify,
};
use dli_gitops::source::webhook::{
    MAX_WEBHOOK_BODY_BYTES, normalize_repository_url, verify_and_parse,
};
use dli_gitops::source::{WebhookError, WebhookEvent};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sha2::Sha256;

/// Cases per harness in a plain `cargo test`: a few seconds in all on a shared CI machine.
const DEFAULT_CASES: u32 = 256;

fn fuzz_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        // Shrinking a byte-level mutation list is cheap and makes failures readable.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// byte-level mutations, shared by every harness

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    SetByte { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
    Token { at: usize, token: usize },
}

fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, token)| Mutation::Token { at, token }),
    ];
    proptest::collection::vec(one, 1..max)
}

/// Applies `mutations` in order; positions wrap around the current length, and `tokens` is the
/// dictionary `Token` splices from.
fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation], tokens: &[&[u8]]) {
    for mutation in mutations {
        let len = bytes.len();
        let position = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
        match mutation {
            Mutation::FlipBit { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
            Mutation::SetByte { at, byte } if len > 0 => bytes[at % len] = *byte,
            Mutation::FlipBit { .. } | Mutation::SetByte { .. } => {}
            Mutation::Insert {
                at,
                bytes: inserted,
            } => {
                let at = position(*at);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Delete { at, len: count } => {
                let at = position(*at);
                let end = (at + count).min(len);
                bytes.drain(at..end);
            }
            Mutation::Truncate { at } => bytes.truncate(position(*at)),
            Mutation::Duplicate { at, len: count } => {
                let at = position(*at);
                let end = (at + count).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Mutation::Token { at, token } if !tokens.is_empty() => {
                let at = position(*at);
                let token = tokens[token % tokens.len()];
                bytes.splice(at..at, token.iter().copied());
            }
            Mutation::Token { .. } => {}
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// webhook parser

const WEBHOOK_SECRET: &[u8] = b"fuzz-webhook-secret";

const JSON_TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\\u0000",
    b"\\ud800",
    b"\"ref\":",
    b"\"after\":",
    b"\"repository\":{",
    b"refs/heads/",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
];

fn github_push_body() -> Vec<u8> {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "8f2c4a1e9b7d6c5f4e3d2c1b0a99887766554433",
        "repository": {
            "clone_url": "https://git.example.com/data/jobs.git",
            "ssh_url": "git@git.example.com:data/jobs.git",
            "html_url": "https://git.example.com/data/jobs",
        },
        "pusher": {"name": "someone"},
    })
    .to_string()
    .into_bytes()
}

fn gitlab_push_body() -> Vec<u8> {
    serde_json::json!({
        "object_kind": "push",
        "ref": "refs/tags/v1.2.0",
        "checkout_sha": "8f2c4a1e9b7d6c5f4e3d2c1b0a99887766554433",
        "project": {
            "git_http_url": "https://gitlab.example.com/data/jobs.git",
            "git_ssh_url": "git@gitlab.example.com:data/jobs.git",
        },
    })
    .to_string()
    .into_bytes()
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Debug, Clone, Copy)]
enum Sender {
    GitHub,
    Gitea,
    GitLab,
}

fn signed_headers(sender: Sender, body: &[u8], secret: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("ascii header"));
    };
    match sender {
        Sender::GitHub => {
            set("x-github-event", "push".to_string());
            set(
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(secret, body)),
            );
        }
        Sender::Gitea => {
            set("x-gitea-event", "push".to_string());
            set("x-github-event", "push".to_string());
            set("x-gitea-signature", hmac_hex(secret, body));
        }
        Sender::GitLab => {
            set("x-gitlab-event", "Push Hook".to_string());
            set("x-gitlab-token", text(secret));
        }
    }
    headers
}

fn sender() -> impl Strategy<Value = Sender> {
    prop_oneof![
        Just(Sender::GitHub),
        Just(Sender::Gitea),
        Just(Sender::GitLab)
    ]
}

/// Arbitrary header sets made of the names the parser reads, with arbitrary visible values.
fn hostile_headers() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    proptest::collection::vec(
        (
            0usize..8,
            proptest::collection::vec(prop_oneof![32u8..127, Just(b'\t'), 128u8..=255], 0..90),
        ),
        0..6,
    )
}

const HEADER_NAMES: [&str; 8] = [
    "x-github-event",
    "x-gitlab-event",
    "x-gitea-event",
    "x-hub-signature-256",
    "x-gitea-signature",
    "x-gitlab-token",
    "content-type",
    "x-hub-signature",
];

fn build_headers(pairs: &[(usize, Vec<u8>)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(HEADER_NAMES[*name]), value);
        }
    }
    headers
}

/// What every accepted push must look like, whatever the body was.
fn check_accepted(event: &WebhookEvent) -> Result<(), TestCaseError> {
    if let WebhookEvent::Push(push) = event {
        prop_assert!(push.git_ref.starts_with("refs/"), "{push:?}");
        prop_assert!(!push.repository_urls.is_empty(), "{push:?}");
        if let Some(after) = &push.after {
            prop_assert!(after.len() >= 40, "{push:?}");
            prop_assert!(after.chars().all(|c| c.is_ascii_hexdigit()), "{push:?}");
        }
        // Matching must not panic on any url the payload carried.
        for url in &push.repository_urls {
            let _ = push.matches(url, "main");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// Any header set and any body with a secret we never signed with: never a panic, never
    /// accepted unless the parser was told nothing is signed (it is always told something is).
    #[test]
    fn webhook_unsigned_garbage_is_refused(
        pairs in hostile_headers(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let headers = build_headers(&pairs);
        match verify_and_parse(&headers, &body, WEBHOOK_SECRET) {
            // A 1-in-2^256 HMAC guess or the exact token string: the generator cannot make either.
            Ok(event) => prop_assert!(false, "accepted without the secret: {event:?}"),
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.is_empty());
                prop_assert!(!message.contains(&text(WEBHOOK_SECRET)), "{message}");
            }
        }
    }

    /// Correctly signed but mutated payloads: never a panic; an accepted push is well formed;
    /// a refusal is a payload error (never a signature error, since the signature is right).
    #[test]
    fn webhook_signed_mutated_payloads_parse_or_fail_cleanly(
        sender in sender(),
        edits in mutations(12),
    ) {
        let mut body = match sender {
            Sender::GitLab => gitlab_push_body(),
            Sender::GitHub | Sender::Gitea => github_push_body(),
        };
        mutate(&mut body, &edits, JSON_TOKENS);
        let headers = signed_headers(sender, &body, WEBHOOK_SECRET);
        match verify_and_parse(&headers, &body, WEBHOOK_SECRET) {
            Ok(event) => check_accepted(&event)?,
            Err(WebhookError::MalformedPayload { reason, .. }) => prop_assert!(!reason.is_empty()),
            Err(other) => prop_assert!(false, "signed body refused for the wrong reason: {other}"),
        }
    }

    /// A body changed after signing, or a signature made with another secret, is refused as
    /// unauthorized whatever the change.
    #[test]
    fn webhook_tampered_bodies_and_wrong_secrets_are_unauthorized(
        sender in sender(),
        edits in mutations(6),
        wrong_secret in proptest::collection::vec(33u8..127, 1..64),
    ) {
        let original = match sender {
            Sender::GitLab => gitlab_push_body(),
            Sender::GitHub | Sender::Gitea => github_push_body(),
        };
        // Tampering: signed over the original, delivered mutated (GitLab's token does not
        // cover the body, so only the wrong-secret half applies to it).
        let mut tampered = original.clone();
        mutate(&mut tampered, &edits, JSON_TOKENS);
        if tampered != original && !matches!(sender, Sender::GitLab) {
            let headers = signed_headers(sender, &original, WEBHOOK_SECRET);
            let result = verify_and_parse(&headers, &tampered, WEBHOOK_SECRET);
            let refused = matches!(&result, Err(error) if error.is_unauthorized());
            prop_assert!(refused || matches!(result, Err(WebhookError::TooLarge { .. })), "{result:?}");
        }
        if wrong_secret != WEBHOOK_SECRET {
            let headers = signed_headers(sender, &original, &wrong_secret);
            let result = verify_and_parse(&headers, &original, WEBHOOK_SECRET);
            prop_assert!(matches!(&result, Err(error) if error.is_unauthorized()), "{result:?}");
        }
    }

    /// The url normaliser is fed payload strings: any string, no panic, and a result is
    /// `host/path` in ASCII lower case with no `.git` suffix.
    #[test]
    fn repository_url_normaliser_takes_any_string(url in "\\PC{0,120}|[a-z]{1,5}://[^/]{0,20}/[^ ]{0,40}|[^:]{0,20}:[^ ]{0,40}") {
        if let Some(normalized) = normalize_repository_url(&url) {
            prop_assert!(normalized.contains('/'), "{normalized}");
            prop_assert_eq!(normalized.to_ascii_lowercase(), normalized.clone());
            prop_assert!(!normalized.ends_with(".git"), "{normalized}");
        }
    }
}

#[test]
fn webhook_body_limit_is_checked_before_the_signature() {
    let body = vec![b'{'; MAX_WEBHOOK_BODY_BYTES + 1];
    let headers = signed_headers(Sender::GitHub, &body, WEBHOOK_SECRET);
    assert!(matches!(
        verify_and_parse(&headers, &body, WEBHOOK_SECRET),
        Err(WebhookError::TooLarge { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// daemon config

const YAML_TOKENS: &[&[u8]] = &[
    b"\n",
    b": ",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"!!binary ",
    b"!tag ",
    b"\"",
    b"'",
    b"|\n",
    b">-\n",
    b"---\n",
    b"...\n",
    b"\t",
    b"~",
    b"0x7fffffffffffffff",
    b"1e400",
    b"-1",
    b"\xef\xbb\xbf",
    b"secret_key: x\n",
    b"token: y\n",
    b"${a}",
    b"%YAML 1.1\n",
];

fn example_config_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml"))
        .expect("config.example.yaml at the crate root")
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// Mutated versions of the documented example config: parsing and validation never panic,
    /// and an error names where it is (a config path, a line or the file).
    #[test]
    fn config_parser_survives_mutations(edits in mutations(10)) {
        let mut bytes = example_config_text().into_bytes();
        mutate(&mut bytes, &edits, YAML_TOKENS);
        let origin = Path::new("/nonexistent/fuzz/config.yaml");
        match Config::from_yaml_str(&text(&bytes), origin) {
            Ok(config) => {
                if let Err(problems) = config.validate() {
                    prop_assert!(!problems.is_empty());
                    for problem in problems {
                        prop_assert!(!problem.to_string().is_empty());
                    }
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// spec parser

fn example_repository() -> &'static RepoSnapshot {
    static EXAMPLE: std::sync::OnceLock<RepoSnapshot> = std::sync::OnceLock::new();
    EXAMPLE.get_or_init(|| {
        read_directory(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/example-jobs"))
            .expect("the example-jobs fixture reads as a snapshot")
    })
}

const ENVIRONMENTS: [Option<&str>; 3] = [None, Some("dev"), Some("prod")];

/// Resolves `snapshot` for `environment` twice: the result must be the same both times (the
/// parser is pure), and an error must be a list of positioned, non-empty diagnostics.
fn check_resolve(snapshot: &RepoSnapshot, environment: Option<&str>) -> Result<(), TestCaseError> {
    let first = desired::resolve(snapshot, environment);
    let second = desired::resolve(snapshot, environment);
    prop_assert_eq!(&first, &second, "resolve is not deterministic");
    match first {
        Ok(desired) => {
            for job in &desired.flink {
                prop_assert!(!job.name.is_empty());
            }
            for job in &desired.dlf {
                prop_assert!(!job.name.is_empty());
            }
        }
        Err(diagnostics) => {
            prop_assert!(!diagnostics.is_empty(), "an error with no diagnostics");
            for diagnostic in diagnostics.iter() {
                prop_assert!(!diagnostic.file.is_empty(), "{diagnostic:?}");
                prop_assert!(
                    diagnostic.line >= 1 && diagnostic.column >= 1,
                    "{diagnostic:?}"
                );
                prop_assert!(!diagnostic.message.trim().is_empty(), "{diagnostic:?}");
                prop_assert!(!diagnostic.to_string().is_empty());
            }
        }
    }
    Ok(())
}

fn yaml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("~".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("${flink_queue}".to_string()),
        Just("${".to_string()),
        Just("${missing}".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("/etc/passwd".to_string()),
        "[a-z_]{1,12}",
        "[0-9]{1,6}",
        "\\PC{0,40}".prop_map(|text| format!("{text:?}")),
    ]
}

const SPEC_KEYS: &[&str] = &[
    "kind",
    "name",
    "desc",
    "queue_name",
    "sql_file",
    "sql_body",
    "run_mode",
    "cu_number",
    "parallel_number",
    "checkpoint_enabled",
    "checkpoint_mode",
    "checkpoint_interval",
    "obs_bucket",
    "log_enabled",
    "smn_topic",
    "restart_when_exception",
    "flink_version",
    "runtime_config",
    "tags",
    "desired_state",
    "upgrade_mode",
    "restore",
    "prune",
    "entrypoint",
    "main_class",
    "entrypoint_args",
    "dependency_jars",
    "definition_file",
    "tm_cus",
    "tm_slot_num",
    "manager_cu_number",
    "unknown_field",
    "variables",
    "overrides",
];

/// A YAML document built from the real field names with random values, so the harness gets
/// past the YAML layer and into field checking, variables and overrides.
fn structured_document() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("FlinkSqlJob"),
            Just("FlinkJarJob"),
            Just("DlfJob"),
            Just("Unknown")
        ],
        "[a-z][a-z0-9-]{0,70}",
        proptest::collection::vec((0..SPEC_KEYS.len(), yaml_scalar()), 0..12),
    )
        .prop_map(|(kind, name, fields)| {
            let mut document = format!("kind: {kind}\nname: {name}\n");
            for (key, value) in fields {
                document.push_str(&format!("{}: {value}\n", SPEC_KEYS[key]));
            }
            document
        })
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// One file of the example repository mutated at the byte level (YAML tokens, anchors,
    /// aliases, tags, truncations, stray bytes): resolve never panics, is deterministic, and
    /// every problem points at a file, line and column.
    #[test]
    fn spec_resolve_survives_mutated_repository_files(
        file in any::<usize>(),
        edits in mutations(10),
        environment in 0usize..3,
    ) {
        let mut snapshot = example_repository().clone();
        let path = snapshot.files.keys().nth(file % snapshot.files.len()).cloned().expect("a file");
        if let Some(RepoFile::Data(bytes)) = snapshot.files.get_mut(&path) {
            mutate(bytes, &edits, YAML_TOKENS);
        }
        check_resolve(&snapshot, ENVIRONMENTS[environment])?;
    }

    /// Random job documents made of real field names (and a few unknown ones), several per
    /// file and across files, with hostile references (`../`, absolute paths, symlinks that
    /// leave the repository, oversized files).
    #[test]
    fn spec_resolve_survives_random_documents(
        documents in proptest::collection::vec(structured_document(), 1..6),
        split in 1usize..4,
        hostile in proptest::collection::vec((0usize..4, "[a-z]{1,8}"), 0..3),
        environment in 0usize..3,
    ) {
        let mut snapshot = example_repository().clone();
        for (index, chunk) in documents.chunks(split).enumerate() {
            snapshot.files.insert(
                format!("fuzz/job-{index}.yaml"),
                RepoFile::Data(chunk.join("---\n").into_bytes()),
            );
        }
        for (kind, name) in hostile {
            let (path, file) = match kind {
                0 => (format!("fuzz/{name}.sql"), RepoFile::Symlink { target: "../../../etc/passwd".into() }),
                1 => (format!("fuzz/{name}.sql"), RepoFile::Symlink { target: "/etc/shadow".into() }),
                2 => (format!("fuzz/{name}.sql"), RepoFile::Oversized { size: u64::MAX }),
                _ => (format!("fuzz/{name}.yaml"), RepoFile::Symlink { target: format!("{name}.yaml") }),
            };
            snapshot.files.insert(path, file);
        }
        check_resolve(&snapshot, ENVIRONMENTS[environment])?;
    }
}

/// "Billion laughs": nine levels of aliases, each doubling ten times, would expand to 10^9
/// nodes. It must be refused before anything expands: at the first anchor, with its position.
#[test]
fn spec_refuses_alias_expansion_bombs() {
    let mut bomb = String::from("kind: FlinkSqlJob\nname: laughs\na0: &a0 [lol]\n");
    for level in 1..10 {
        let previous = level - 1;
        let row = vec![format!("*a{previous}"); 10].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{row}]\n"));
    }
    let mut snapshot = RepoSnapshot::default();
    snapshot.files.insert(
        "flink/laughs.yaml".into(),
        RepoFile::Data(bomb.into_bytes()),
    );
    let diagnostics = desired::resolve(&snapshot, None).expect_err("an alias bomb must be refused");
    assert!(
        diagnostics
            .iter()
            .any(|d| d.file == "flink/laughs.yaml" && d.line == 3 && d.message.contains("anchors")),
        "{diagnostics:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// bundle reader

fn small_limits() -> ZipLimits {
    // Small enough that mutations which inflate or duplicate entries hit every limit.
    ZipLimits {
        max_entries: 16,
        max_entry_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
        max_compression_ratio: 50,
        ratio_floor_bytes: 4 * 1024,
    }
}

/// The key the fuzzed emulator import reads exports with.
const EXPORT_KEY: [u8; 32] = [7; 32];

fn valid_dli_zip() -> &'static [u8] {
    static ZIP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ZIP.get_or_init(|| flink_export_fuzzing::write(EXPORT_KEY, "fuzz-sql"))
}

fn valid_dlf_zip() -> &'static [u8] {
    static ZIP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ZIP.get_or_init(|| {
        let job = serde_json::json!({
            "name": "nightly", "processType": "BATCH",
            "nodes": [{"name": "load", "type": "DLISQL", "properties": [{"name": "scriptName", "value": "load_sql"}]}],
            "schedule": {"type": "CRON", "cron": {"expression": "0 0 2 * * ?"}},
        });
        let mut scripts = std::collections::BTreeMap::new();
        scripts.insert("load_sql".to_string(), serde_json::json!({"name": "load_sql", "type": "DLISQL", "content": "SELECT 1"}));
        bundle::write_dlf_zip(&[DlfJobEntry { name: "nightly".into(), job, scripts, resources: Default::default() }])
            .expect("write a DLF bundle")
    })
}

const ZIP_TOKENS: &[&[u8]] = &[
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
    b"../",
    b"/",
    b"\\",
    b"C:",
    b"\0",
    b"\xff\xff\xff\xff",
    b"\xff\xff",
    b"\x00\x00\x00\x00",
];

/// What every archive the reader accepts must satisfy, whatever it was made from: no unsafe
/// paths, no more than the limits allow.
fn check_entries_within_limits(
    entries: &[ZipEntry],
    limits: &ZipLimits,
) -> Result<(), TestCaseError> {
    prop_assert!(entries.len() <= limits.max_entries);
    let mut total = 0u64;
    for entry in entries {
        prop_assert!(!entry.path.starts_with('/'), "{}", entry.path);
        prop_assert!(
            !entry.path.split('/').any(|part| part == ".."),
            "{}",
            entry.path
        );
        prop_assert!(
            !entry.path.contains('\0') && !entry.path.contains('\\'),
            "{}",
            entry.path
        );
        prop_assert!(entry.bytes.len() as u64 <= limits.max_entry_bytes);
        total += entry.bytes.len() as u64;
    }
    prop_assert!(total <= limits.max_total_bytes);
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// Mutated DLI and DLF bundles (headers, sizes, names, offsets, truncations): the readers
    /// never panic, and whatever they accept keeps to the limits and has only safe paths.
    #[test]
    fn bundle_readers_survive_mutated_zips(edits in mutations(8), dlf in any::<bool>()) {
        let mut bytes = if dlf { valid_dlf_zip() } else { valid_dli_zip() }.to_vec();
        mutate(&mut bytes, &edits, ZIP_TOKENS);
        let limits = small_limits();
        if let Ok(entries) = bundle::read_zip_entries(&bytes, &limits) {
            check_entries_within_limits(&entries, &limits)?;
        }
        // The emulator's import accepts only its own sealed exports: a mutation either leaves
        // the sealed document intact (same name) or is refused with a reason.
        match flink_export_fuzzing::read(EXPORT_KEY, &bytes, &limits) {
            Ok(name) => prop_assert_eq!(name, "fuzz-sql"),
            Err(error) => prop_assert!(error.contains("only jobs exported from DLI"), "{}", error),
        }
        match bundle::read_dlf_zip(&bytes, &limits) {
            Ok(jobs) => for job in &jobs { prop_assert!(!job.name.is_empty()); },
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// Entirely random bytes, some starting with a zip signature.
    #[test]
    fn bundle_readers_survive_random_bytes(
        prefix in prop_oneof![Just(&b""[..]), Just(&b"PK\x03\x04"[..]), Just(&b"PK\x05\x06"[..])],
        body in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&body);
        let limits = small_limits();
        if let Err(error) = flink_export_fuzzing::read(EXPORT_KEY, &bytes, &limits) {
            prop_assert!(error.contains("only jobs exported from DLI"), "{}", error);
        }
        if let Err(error) = bundle::read_dlf_zip(&bytes, &limits) {
            prop_assert!(!error.to_string().is_empty());
        }
        if let Ok(entries) = bundle::read_zip_entries(&bytes, &limits) {
            check_entries_within_limits(&entries, &limits)?;
        }
    }
}
// ---------------------------------------------------------------------------------------------
// journal recovery

/// A journal of `JOURNAL_RECORDS` intents and outcomes, written once through the real writer.
const JOURNAL_RECORDS: usize = 8;

fn base_journal() -> &'static [u8] {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (journal, _) = Journal::open(dir.path(), journal_options()).expect("open");
        for index in 0..JOURNAL_RECORDS / 2 {
            let action_id = format!("action-{index}");
            journal
                .append(
                    "dev",
                    RecordBody::Intent(Intent {
                        action_id: action_id.clone(),
                        job: format!("job-{index}"),
                        action: "upgrade".into(),
                        plan_id: Some("plan-fuzz".into()),
                        detail: serde_json::json!({"savepoint_dir": "obs://ckpt/dir/"}),
                        extra: serde_json::Map::new(),
                    }),
                )
                .expect("append intent");
            journal
                .append(
                    "dev",
                    RecordBody::Outcome(Outcome {
                        action_id,
                        job: format!("job-{index}"),
                        ok: true,
                        error: None,
                        effects: Effects {
                            savepoint_path: Some(format!("obs://ckpt/dir/sp-{index}")),
                            ..Effects::default()
                        },
                        plan_id: None,
                        extra: serde_json::Map::new(),
                    }),
                )
                .expect("append outcome");
        }
        drop(journal);
        std::fs::read(dir.path().join(JOURNAL_FILE)).expect("read journal")
    })
}

fn journal_options() -> JournalOptions {
    JournalOptions {
        compact_after_records: u64::MAX,
        compact_after_bytes: u64::MAX,
        ..JournalOptions::default()
    }
}

/// 1-based number of the line holding byte `offset` (a newline belongs to the line it ends).
fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset]
        .iter()
        .filter(|byte| **byte == b'\n')
        .count()
        + 1
}

/// Opens a state directory holding exactly `bytes` as its journal.
fn open_damaged(
    bytes: &[u8],
) -> (
    tempfile::TempDir,
    Result<(Journal, RecoveryReport), JournalError>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(JOURNAL_FILE), bytes).expect("write journal");
    let result = Journal::open(dir.path(), journal_options());
    (dir, result)
}

/// After a successful recovery the journal takes the next seq, and verifies clean.
fn check_recovered_journal_works(
    dir: &std::path::Path,
    journal: Journal,
    report: &RecoveryReport,
) -> Result<(), TestCaseError> {
    let next = journal
        .append(
            "dev",
            RecordBody::Intent(Intent {
                action_id: "after-recovery".into(),
                job: "job-x".into(),
                action: "create".into(),
                plan_id: None,
                detail: serde_json::Value::Null,
                extra: serde_json::Map::new(),
            }),
        )
        .map_err(|error| TestCaseError::fail(format!("append after recovery: {error}")))?;
    prop_assert_eq!(next, report.last_seq + 1);
    drop(journal);
    let verified = verify(dir).map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert!(verified.is_ok(), "{verified}");
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// A torn tail (one final line of random bytes after the last complete record, with or
    /// without its newline, as a crash in the middle of an append leaves) is cut and reported;
    /// every complete record survives; the journal then appends and verifies.
    #[test]
    fn journal_torn_tail_is_cut_and_nothing_acknowledged_is_lost(
        tail in proptest::collection::vec(any::<u8>(), 1..600),
        ends_in_newline in any::<bool>(),
    ) {
        let base = base_journal();
        let mut tail = tail;
        tail.retain(|byte| *byte != b'\n');
        if tail.is_empty() { tail.push(b'{'); }
        if ends_in_newline { tail.push(b'\n'); }
        let mut bytes = base.to_vec();
        bytes.extend_from_slice(&tail);
        let (dir, result) = open_damaged(&bytes);
        let (journal, report) = result.map_err(|error| TestCaseError::fail(format!("open refused a torn tail: {error}")))?;
        prop_assert_eq!(report.last_seq, JOURNAL_RECORDS as u64);
        prop_assert_eq!(report.replayed_records, JOURNAL_RECORDS);
        prop_assert!(!report.dropped.is_empty());
        prop_assert_eq!(report.dropped[0].line, JOURNAL_RECORDS + 1);
        prop_assert_eq!(report.dropped_bytes, tail.len() as u64);
        prop_assert!(report.to_string().contains("torn tail"), "{report}");
        let saved = report.dropped_saved_to.clone().ok_or_else(|| TestCaseError::fail("cut bytes not saved"))?;
        prop_assert_eq!(std::fs::read(&saved).map_err(|e| TestCaseError::fail(e.to_string()))?, tail);
        check_recovered_journal_works(dir.path(), journal, &report)?;
    }

    /// Bad lines after the last complete record with more lines after them are damage, not a
    /// torn write (a crash tears only the final line): open refuses naming the first one and
    /// leaves the file as it was (RELIABILITY.md, finding 4).
    #[test]
    fn journal_bad_line_followed_by_more_lines_is_refused_with_its_line_number(
        first in proptest::collection::vec(any::<u8>(), 0..300),
        rest in proptest::collection::vec(any::<u8>(), 1..300),
    ) {
        let base = base_journal();
        let mut first = first;
        first.retain(|byte| *byte != b'\n');
        let mut bytes = base.to_vec();
        bytes.extend_from_slice(&first);
        bytes.push(b'\n');
        bytes.extend_from_slice(&rest);
        let (dir, result) = open_damaged(&bytes);
        match result {
            Err(JournalError::CorruptRecord { line, .. }) => {
                prop_assert_eq!(line, JOURNAL_RECORDS + 1);
                prop_assert_eq!(std::fs::read(dir.path().join(JOURNAL_FILE)).map_err(|e| TestCaseError::fail(e.to_string()))?, bytes.clone());
            }
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
            Ok((_, report)) => prop_assert!(false, "bad lines followed by more were cut: {report}"),
        }
    }

    /// A journal cut at any byte (a crash before the write reached the disk): the records on
    /// complete lines survive, the partial line is dropped.
    #[test]
    fn journal_cut_at_any_byte_keeps_every_complete_record(cut in any::<usize>()) {
        let base = base_journal();
        let cut = cut % (base.len() + 1);
        let complete_lines = base[..cut].iter().filter(|byte| **byte == b'\n').count();
        let (dir, result) = open_damaged(&base[..cut]);
        let (journal, report) = result.map_err(|error| TestCaseError::fail(format!("open refused a cut journal: {error}")))?;
        prop_assert_eq!(report.last_seq, complete_lines as u64);
        let partial = cut > 0 && base[cut - 1] != b'\n';
        prop_assert_eq!(report.dropped.len(), usize::from(partial));
        check_recovered_journal_works(dir.path(), journal, &report)?;
    }

    /// Damage followed by an intact record is never silently repaired: open fails naming the
    /// first damaged line, the file is left as it was, and `journal verify` reports it.
    /// Only damage to the final line is cut as a torn tail; damage with any line after it is
    /// refused (RELIABILITY.md, finding 4). Damage that removes newlines can merge the damaged
    /// line with every line after it into one bad final line, which recovery cannot tell from
    /// a torn write. When a tail is cut, only lines from the first damaged one on are cut, the
    /// cut is reported, and it is saved byte for byte.
    #[test]
    fn journal_damage_in_the_middle_is_an_error_with_its_line_number(
        edits in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
    ) {
        let base = base_journal();
        let mut bytes = base.to_vec();
        let mut damaged = std::collections::BTreeMap::new();
        for (at, xor) in &edits {
            // One change per byte, so two edits never cancel out.
            damaged.insert(at % bytes.len(), *xor);
        }
        for (at, xor) in &damaged {
            bytes[*at] ^= xor;
        }
        let first_damaged = *damaged.keys().next().expect("at least one edit");
        let damaged_line = line_of(base, first_damaged);
        let lines_kept = damaged.keys().all(|at| base[*at] != b'\n' && bytes[*at] != b'\n');
        let (dir, result) = open_damaged(&bytes);
        match result {
            Err(JournalError::CorruptRecord { line, .. }) => {
                prop_assert_eq!(line, damaged_line);
                prop_assert_eq!(std::fs::read(dir.path().join(JOURNAL_FILE)).map_err(|e| TestCaseError::fail(e.to_string()))?, bytes.clone());
                let verified = verify(dir.path()).map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert!(!verified.is_ok(), "verify passed a damaged journal");
            }
            Err(other) => prop_assert!(false, "unexpected error for damage at line {damaged_line}: {other}"),
            Ok((journal, report)) => {
                if lines_kept {
                    // Only damage to the final line may be cut.
                    prop_assert_eq!(damaged_line, JOURNAL_RECORDS, "damage at line {} was accepted: {}", damaged_line, report);
                }
                // Everything before the damage is kept; everything cut is saved.
                prop_assert_eq!(report.last_seq, damaged_line as u64 - 1, "{}", report);
                let line_start = base
                    .iter()
                    .enumerate()
                    .filter(|(_, byte)| **byte == b'\n')
                    .nth(damaged_line.wrapping_sub(2))
                    .map_or(0, |(at, _)| at + 1);
                let saved = report.dropped_saved_to.clone().ok_or_else(|| TestCaseError::fail("cut bytes not saved"))?;
                prop_assert_eq!(std::fs::read(&saved).map_err(|e| TestCaseError::fail(e.to_string()))?, bytes[line_start..].to_vec());
                check_recovered_journal_works(dir.path(), journal, &report)?;
            }
        }
    }
}
