//! Child processes of the binary under test (daemon, emulator), killed on drop.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use super::TIMEOUT;

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
