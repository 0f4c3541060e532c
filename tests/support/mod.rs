//! Harness shared by the integration tests: the real `dli-gitops` binary as a daemon and as an
//! emulator (each its own process), a raw HTTP client, a git repository builder, the daemon loop
//! and server in-process over a fake source, a target over the in-process emulator, job
//! definitions, and the crash loops' seed and journal checks. Each test binary includes this with `mod support;` and uses a subset of it.
#![allow(dead_code)]

pub mod crash;
pub mod daemon;
pub mod emulator;
pub mod git;
pub mod http;
pub mod inproc;
pub mod jobs;
pub mod target;

use std::time::Duration;

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_dli-gitops");
/// The emulator's development credentials and project.
pub const ACCESS_KEY: &str = "DLIGITOPSDEVACCESSKEY";
pub const SECRET_KEY: &str = "dli-gitops-dev-secret-key-not-for-production";
pub const PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// How long a process test waits for anything before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(120);
