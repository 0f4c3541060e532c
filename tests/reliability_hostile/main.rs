//! Hostile-input corpus tests: garbage and truncated service responses against the cloud
//! client (a raw TCP server that writes exactly the bytes each case scripts), hostile zips
//! against the emulator's import endpoints, malformed webhooks against the daemon, broken
//! configs and corrupted journals. Each case checks for a clear error, bounded retries and
//! nothing applied or lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dli_gitops::bundle::{self, ZipLimits};
use dli_gitops::cloud::{
    ClientOptions, CloudError, Credentials, DlfClient, DlfListJobsQuery, DliClient, ListJobsQuery,
    RetryPolicy, Secret,
};
use dli_gitops::emulator::{
    DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY, Emulator, EmulatorConfig, EmulatorHandle,
};
use dli_gitops::journal::{
    Intent, JOURNAL_FILE, Journal, JournalOptions, RecordBody, SNAPSHOT_FILE,
};
use dli_gitops::model::{FlinkJobConfig, JobKind};
use std::io::Write as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// Runs the binary with a deadline; a hang is a failure, not a stuck CI job.
fn run_binary(args: &[&str], deadline: Duration) -> (Option<i32>, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dli-gitops"))
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dli-gitops");
    // Drain both pipes while waiting: a child that fills a pipe nobody reads blocks forever.
    let mut stdout_pipe = child.stdout.take().expect("stdout pipe");
    let mut stderr_pipe = child.stderr.take().expect("stderr pipe");
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout_pipe, &mut bytes);
        bytes
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr_pipe, &mut bytes);
        bytes
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dli-gitops {args:?} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status,
        stdout: stdout_reader.join().unwrap_or_default(),
        stderr: stderr_reader.join().unwrap_or_default(),
    };
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Hostile zips against the emulator's DLI import endpoint, over HTTP with the real client

#[derive(Clone, Copy)]
enum Packing {
    Stored,
    Deflated,
}

enum HostileEntry {
    File(String, Vec<u8>, Packing),
    Symlink(String, String),
}

fn file(name: &str, bytes: Vec<u8>, packing: Packing) -> HostileEntry {
    HostileEntry::File(name.to_string(), bytes, packing)
}

mod journals;
mod repository;
mod responses;
mod zips;
