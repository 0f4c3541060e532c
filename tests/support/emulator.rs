//! The emulator as its own process (`dli-gitops emulator`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::BINARY;
use super::daemon::Process;

/// Starts the emulator on loopback port 0 with `config` (its YAML) and its data under `dir`;
/// returns the process and the endpoints line it prints (`{"dli": url, "s3": url, ...}`).
pub fn start_emulator(dir: &Path, config: &str) -> (Process, Value) {
    let config_path = dir.join("emulator.yaml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.join("emulator.log");
    let mut child = Command::new(BINARY)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(dir.join("emulator-data"))
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the emulator starts");
    let stdout = child.stdout.take().unwrap();
    let process = Process { child, log };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let endpoints: Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("endpoints line {line:?}; log:\n{}", process.log()));
    (process, endpoints)
}
