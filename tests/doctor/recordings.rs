//! The shipped recordings: each decodes through our client, and the emulator answers in the
//! shape of every one.

use super::*;

/// Every recording shipped under `tests/fixtures/real/` decodes through our client.
#[tokio::test(flavor = "multi_thread")]
async fn every_shipped_recording_decodes_through_our_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut recordings = 0;
    for entry in std::fs::read_dir(&root).expect("tests/fixtures/real exists") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            decode_recording(&path).await;
            recordings += 1;
        }
    }
    assert!(recordings >= 1, "no recording under {}", root.display());
}

/// Keys and JSON types of `recorded` against `emulated`, recursively (arrays by their first
/// element; `null` matches anything: a field may be unset).
fn shape_differences(path: &str, recorded: &Value, emulated: &Value, out: &mut Vec<String>) {
    let kind = |value: &Value| match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    match (recorded, emulated) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(recorded), Value::Object(emulated)) => {
            for key in recorded.keys().filter(|k| !emulated.contains_key(*k)) {
                out.push(format!("{path}.{key}: missing in the emulator's answer"));
            }
            for key in emulated.keys().filter(|k| !recorded.contains_key(*k)) {
                out.push(format!("{path}.{key}: only in the emulator's answer"));
            }
            for (key, value) in recorded {
                if let Some(other) = emulated.get(key) {
                    shape_differences(&format!("{path}.{key}"), value, other, out);
                }
            }
        }
        (Value::Array(recorded), Value::Array(emulated)) => {
            if let (Some(first), Some(other)) = (recorded.first(), emulated.first()) {
                shape_differences(&format!("{path}[0]"), first, other, out);
            }
        }
        (recorded, emulated) if kind(recorded) != kind(emulated) => out.push(format!(
            "{path}: {} in the recording, {} from the emulator",
            kind(recorded),
            kind(emulated)
        )),
        _ => {}
    }
}

/// The emulator answers the probe's calls in the shape of every shipped recording: the same
/// probe run against a fresh emulator, compared call by call (first answer of each service,
/// operation and status class).
#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_answers_in_the_shape_of_every_recording() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let setup = start(
        EmulatorConfig::for_tests(PathBuf::new()),
        Broken {
            workspace: Some("shape-workspace"),
            ..Broken::default()
        },
    )
    .await;
    let fresh = setup.dir.path().join("fresh");
    let run = doctor(
        &setup,
        &[
            "--probe",
            "--queue",
            "dev_flink",
            "--record",
            fresh.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let emulated = record::load(&fresh).unwrap();
    let key = |e: &RecordedExchange| (e.service.clone(), e.operation.clone(), e.status / 100);
    let mut differences = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let recorded = record::load(&dir).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for exchange in &recorded {
            if !seen.insert(key(exchange)) {
                continue;
            }
            let Some(answer) = emulated.iter().find(|e| key(e) == key(exchange)) else {
                differences.push(format!(
                    "{}: {} {} answered {}: the emulator's probe made no such call",
                    dir.display(),
                    exchange.service,
                    exchange.operation,
                    exchange.status
                ));
                continue;
            };
            let mut found = Vec::new();
            shape_differences(
                &format!("{} {}", exchange.service, exchange.operation),
                &exchange.response_body,
                &answer.response_body,
                &mut found,
            );
            differences.extend(found.into_iter().map(|d| format!("{}: {d}", dir.display())));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
