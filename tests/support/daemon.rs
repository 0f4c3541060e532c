//! Child processes of the binary under test (daemon, emulator), killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ACCESS_KEY, BINARY, PROJECT, SECRET_KEY, TIMEOUT};

/// A child process killed on drop; its stderr goes to `log`.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 200 ms until it holds; fails with the daemon's log if the daemon exits
/// or `TIMEOUT` passes first.
pub fn wait_for(what: &str, daemon: &mut Process, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            panic!("the daemon exited ({status}); log:\n{}", daemon.log());
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; daemon log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `dir/config.yaml` for a daemon that listens on `address`, with one git source `jobs`
/// (the repository at `repo`, branch `main`, polled every second) and one target `dev` over the
/// emulator process's `endpoints`, its credentials read from `{env}_AK` and `{env}_SK`;
/// `target_lines` (each indented four spaces: `policy`, `timeouts`, ...) end the target.
pub fn write_git_daemon_config(
    dir: &Path,
    address: &str,
    repo: &Path,
    endpoints: &Value,
    env: &str,
    target_lines: &str,
) -> PathBuf {
    let url = |service: &str| endpoints[service].as_str().unwrap().to_string();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: ./state\nlisten: {address}\n\
             sources:\n  jobs:\n    git: {{url: {repo}, branch: main, poll_interval: 1s, poll_jitter: 0}}\n\
             targets:\n  - name: dev\n    source: jobs\n    region: cn-north-4\n    project_id: {PROJECT}\n\
             \x20   endpoints: {{dli: {dli}, dlf: {dli}, obs: {s3}, iam: {dli}}}\n\
             \x20   credentials: {{access_key_env: {env}_AK, secret_key_env: {env}_SK}}\n\
             \x20   staging: obs://dli-gitops-staging/dev/\n    backups: obs://dli-gitops-backups/dev/\n\
             {target_lines}",
            repo = repo.display(),
            dli = url("dli"),
            s3 = url("s3"),
        ),
    )
    .unwrap();
    config
}

/// `dli-gitops run --config <config>` with `RUST_LOG=info` and the emulator's development
/// credentials in `{env}_AK` and `{env}_SK`; stdout discarded, stderr to `log`.
pub fn daemon_command(config: &Path, env: &str, log: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env(format!("{env}_AK"), ACCESS_KEY)
        .env(format!("{env}_SK"), SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

/// Starts the daemon as [`daemon_command`] does, its log in `dir/daemon.log`.
pub fn start_daemon(dir: &Path, config: &Path, env: &str) -> Process {
    let log = dir.join("daemon.log");
    Process {
        child: daemon_command(config, env, &log)
            .spawn()
            .expect("the daemon starts"),
        log,
    }
}
