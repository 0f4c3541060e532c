//! The stop signal of a pass, and Ctrl-C for the `apply` command. [`Stop`] is shared by every
//! task of the daemon and by the CLI's pass: once triggered, no new action starts.
//!
//! The `apply` command's first SIGINT (or SIGTERM) lets the action in flight run to its end and
//! starts no other; a second one aborts at once. An upgrade stops a job, writes its new
//! definition, imports the savepoint and starts it again. Cut anywhere between the stop and the
//! start, it leaves a job down that git wants running, so an interrupt waits for the end of
//! the action instead.

use std::io::Write;
use std::sync::Arc;

use tokio::sync::watch;

/// The shutdown signal shared by every task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stop {
    sender: Arc<watch::Sender<bool>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop {
            sender: Arc::new(watch::channel(false).0),
        }
    }

    /// Begins shutdown; idempotent.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.sender.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

/// Exit status after the second interrupt (128 + SIGINT, as shells report it).
pub const ABORT_EXIT_CODE: i32 = 130;

/// Spawns a task that triggers `stop` on the first SIGINT or SIGTERM, saying on stderr what
/// happens next, and exits the process with [`ABORT_EXIT_CODE`] on the second. Installed for
/// the execution only: before it, an interrupt stops the command at once (nothing changed).
/// Must be called inside a tokio runtime; drop (abort) the handle once execution is over.
pub fn finish_then_abort_on_interrupt(stop: Stop) -> std::io::Result<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            stop.trigger();
            say(
                "\nInterrupted: finishing the actions in flight (a job an upgrade stopped is \
                 updated and started again), starting no other. Press Ctrl-C again to abort now \
                 and leave the rest to the next apply.",
            );
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            say(
                "\nAborted: an action may have been cut short; the next apply (or daemon start) \
                 reads the journal, observes the jobs it names and finishes what is left.",
            );
            std::process::exit(ABORT_EXIT_CODE);
        }))
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.trigger();
            say(
                "\nInterrupted: finishing the actions in flight, starting no other. Press Ctrl-C again to abort now.",
            );
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(ABORT_EXIT_CODE);
        }))
    }
}

fn say(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
    let _ = stderr.flush();
}
