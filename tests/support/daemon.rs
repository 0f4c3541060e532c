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

/// What a daemon over git needs, in a temp directory: the repository `jobs-repo` with a first
/// commit of `jobs` and `environments/dev.yaml`, the emulator process started with
/// `emulator_config`, a free loopback address, and the config [`write_git_daemon_config`]
/// writes for them (credentials in `{env}_AK`/`{env}_SK`, `target_lines` ending the target).
/// The daemon itself starts with [`GitDaemonSetup::start_daemon`]. Fields drop in order: the
/// emulator before the directory.
pub struct GitDaemonSetup {
    pub address: String,
    pub config: PathBuf,
    /// The first commit's id.
    pub first: String,
    pub repo_path: PathBuf,
    pub repository: git2::Repository,
    pub endpoints: Value,
    pub emulator: Process,
    pub env: String,
    pub dir: tempfile::TempDir,
}

impl GitDaemonSetup {
    pub fn new(
        jobs: &[(&str, &str)],
        emulator_config: &str,
        env: &str,
        target_lines: &str,
    ) -> GitDaemonSetup {
        let dir = tempfile::tempdir().unwrap();
        let repo_path = dir.path().join("jobs-repo");
        let repository = super::git::init_main(&repo_path);
        let mut files = jobs.to_vec();
        files.push(("environments/dev.yaml", "variables: {}\n"));
        let first = super::git::commit(&repository, &files);
        let (emulator, endpoints) = super::emulator::start_emulator(dir.path(), emulator_config);
        let address = format!("127.0.0.1:{}", super::http::free_port());
        let config = write_git_daemon_config(
            dir.path(),
            &address,
            &repo_path,
            &endpoints,
            env,
            target_lines,
        );
        GitDaemonSetup {
            address,
            config,
            first,
            repo_path,
            repository,
            endpoints,
            emulator,
            env: env.to_string(),
            dir,
        }
    }

    /// Starts the daemon as [`start_daemon`] does.
    pub fn start_daemon(&self) -> Process {
        start_daemon(self.dir.path(), &self.config, &self.env)
    }

    /// Commits `files` on the repository's main branch; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)]) -> String {
        super::git::commit(&self.repository, files)
    }
}
