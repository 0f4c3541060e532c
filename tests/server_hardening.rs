//! The daemon's HTTP server under a crowd of idle connections and a low open-file limit: the
//! real `dli-gitops` binary runs with `RLIMIT_NOFILE` lowered in its own process (set between
//! fork and exec), against the emulator (its own process) and a git repository in a temp
//! directory. Hundreds of idle connections are opened and kept coming; `/healthz` must keep
//! answering, git polling must keep working (a new commit converges), and the git mirror must
//! never be taken for damaged and recreated.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::daemon::{GitDaemonSetup, Process, daemon_command, wait_for};
use support::http::get;

/// The daemon's open-file limit: its server's default cap is a quarter of it (32).
const DAEMON_OPEN_FILES: u64 = 128;

fn job_yaml(description: &str) -> String {
    format!(
        "kind: FlinkSqlJob\nname: clicks\ndesc: {description}\nqueue_name: dev_flink\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\ncu_number: 2\nparallel_number: 1\n\
         desired_state: running\n"
    )
}

fn applied_revision(address: &str) -> Option<String> {
    let (code, body) = get(address, "/api/v1/targets/dev").ok()?;
    if code != 200 {
        return None;
    }
    let status: Value = serde_json::from_str(&body).ok()?;
    (status["sync"]["status"] == "Synced")
        .then(|| {
            status["sync"]["applied_revision"]
                .as_str()
                .map(str::to_string)
        })
        .flatten()
}

/// Lowers the soft and hard open-file limit of the child between fork and exec.
fn with_open_file_limit(command: &mut Command, limit: u64) {
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let value = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &value) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn healthz_and_git_polling_survive_a_crowd_of_idle_connections_under_a_low_fd_limit() {
    let setup = GitDaemonSetup::new(
        &[("flink/clicks.yaml", &job_yaml("first"))],
        "delays: {submit_ms: 100, cancel_ms: 100, savepoint_ms: 100, dlf_task_ms: 100}\n",
        "HARDENING",
        "    policy: {auto_sync: true, resync_interval: 10s}\n",
    );
    let (dir, address, first, config) = (&setup.dir, &setup.address, &setup.first, &setup.config);
    let log = dir.path().join("daemon.log");
    let mut command = daemon_command(&config, "HARDENING", &log);
    with_open_file_limit(&mut command, DAEMON_OPEN_FILES);
    let mut daemon = Process {
        child: command.spawn().expect("the daemon starts"),
        log,
    };
    wait_for("the first commit to converge", &mut daemon, || {
        applied_revision(&address).as_deref() == Some(first.as_str())
    });

    // The crowd: 600 idle connections at once (far beyond the daemon's 128 descriptors), then
    // a steady stream of new idle ones for as long as the test runs.
    let mut crowd: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(&address).expect("connect"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(crowd.len()));
    let attacker = {
        let (stop, opened, address) = (stop.clone(), opened.clone(), address.clone());
        std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(stream) = TcpStream::connect(&address) {
                    held.push_back(stream);
                    opened.fetch_add(1, Ordering::SeqCst);
                }
                if held.len() > 300 {
                    held.pop_front();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let answer = get(&address, "/healthz");
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            answer.as_ref().map(|(code, _)| *code),
            Ok(200),
            "/healthz under {} idle connections: {answer:?}; daemon log:\n{}",
            opened.load(Ordering::SeqCst),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        slowest < Duration::from_secs(5),
        "/healthz took {slowest:?}"
    );

    // Git polling still works: a new commit is fetched and converged while the crowd stays.
    let second = setup.commit(&[("flink/clicks.yaml", &job_yaml("second"))]);
    wait_for(
        "the second commit to converge under the crowd",
        &mut daemon,
        || applied_revision(&address).as_deref() == Some(second.as_str()),
    );

    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();
    // The server closed idle connections to make room: most of the first 600 are closed.
    let mut closed = 0;
    for stream in &mut crowd {
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(stream.read(&mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 500,
        "only {closed} of 600 idle connections were closed"
    );
    let log = daemon.log();
    assert!(
        !log.contains("recreating it"),
        "a git mirror was recreated under descriptor pressure:\n{log}"
    );
}
