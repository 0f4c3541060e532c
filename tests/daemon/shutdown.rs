//! Signals, crashes and shutdown in the middle of an apply or an upgrade; lost or moved
//! journals; deploy grace periods.

use super::*;

/// Every live job's status word.
fn live_statuses(emulator: &Emulator) -> Vec<String> {
    runtime().block_on(async {
        emulator
            .dli()
            .list_jobs(&ListJobsQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|job| job.status.as_str().to_string())
            .collect()
    })
}

/// Positions of JSON log lines whose message is `message`.
fn log_positions(log: &str, message: &str) -> Vec<usize> {
    log.lines()
        .enumerate()
        .filter(|(_, line)| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|record| record["fields"]["message"] == message)
        })
        .map(|(index, _)| index)
        .collect()
}

#[test]
fn sigterm_during_an_apply_finishes_it_and_a_crash_is_resolved_on_the_next_start() {
    // Slow starts, so signals land while a pass is applying.
    let setup = Setup::new(4000);
    let first = setup.repo.commit(
        "two jobs",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 2))),
            ("flink/views.yaml", Some(&job_yaml("views", 2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "before");
    daemon.wait_for("the apply to be under way", |status| {
        status["operation"]["phase"] == "Running" && status["operation"]["mode"] == "apply"
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let exit = daemon.stop();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(50));
    // The signal arrived during the pass, and the pass ran its actions to their outcome
    // before the process stopped.
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-before.log")).unwrap();
    let signal = log_positions(&log, "Signal received.");
    let finished = log_positions(&log, "Reconcile pass finished.");
    assert!(
        signal.len() == 1 && finished.last().is_some_and(|last| *last > signal[0]),
        "the signal did not land during the pass; log:\n{}",
        tail(&log, 30)
    );
    assert!(!log_positions(&log, "dli-gitops daemon stopped.").is_empty());

    // The journal is intact.
    let state_dir = setup.dir.path().join("state");
    let verify = |when: &str| {
        let output = Command::new(BINARY)
            .args(["journal", "verify", "--state-dir"])
            .arg(&state_dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "journal verify {when}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    verify("after SIGTERM");

    let daemon = setup.start_daemon(false, "1s", "after-term");
    daemon.wait_for("convergence after the restart", |status| {
        synced_at(status, &first)
            && job(status, "clicks")["live_status"] == "job_running"
            && job(status, "views")["live_status"] == "job_running"
    });

    // A crash in the middle of an upgrade leaves intents without outcomes; the next start
    // resolves them by observing, then converges.
    let second = setup.repo.commit(
        "more CUs",
        &[
            ("flink/clicks.yaml", Some(&job_yaml("clicks", 3))),
            ("flink/views.yaml", Some(&job_yaml("views", 3))),
        ],
    );
    daemon.wait_for("the upgrade to be under way", |status| {
        status["operation"]["phase"] == "Running"
            && status["operation"]["mode"] == "apply"
            && status["operation"]["revision"] == second
    });
    // Once a job has left job_running, its action's intent is in the journal.
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while live_statuses(&setup.emulator)
        .iter()
        .all(|status| status == "job_running")
    {
        assert!(Instant::now() < deadline, "the upgrade never stopped a job");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.kill();
    verify("after SIGKILL");
    let daemon = setup.start_daemon(false, "1s", "after-kill");
    let status = daemon.wait_for("convergence after the crash", |status| {
        synced_at(status, &second)
            && job(status, "clicks")["live_status"] == "job_running"
            && job(status, "views")["live_status"] == "job_running"
    });
    assert_eq!(status["jobs"].as_array().unwrap().len(), 2);
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-after-kill.log")).unwrap();
    assert!(
        !log_positions(
            &log,
            "Resolved an intent an interrupted pass left open; this pass re-plans from what is live."
        )
        .is_empty(),
        "no interrupted intent was resolved; log:\n{}",
        tail(&log, 40)
    );
    assert_eq!(live_cu_number(&setup.emulator, "clicks"), 3);
    assert_eq!(live_cu_number(&setup.emulator, "views"), 3);
    assert!(daemon.stop().success());
}

// ---- shutdown in the middle of an upgrade ------------------------------------------------------

/// The stop savepoint the journal recorded for `job` in its latest upgrade.
fn journaled_stop_savepoint(state_dir: &Path, job: &str) -> Option<String> {
    let output = Command::new(BINARY)
        .args(["journal", "show", "--json", "--state-dir"])
        .arg(state_dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| {
            record["kind"] == "outcome"
                && record["job"] == job
                && record["action_id"]
                    .as_str()
                    .is_some_and(|id| id.ends_with("-stop-savepoint"))
        })
        .filter_map(|record| {
            record["effects"]["savepoint_path"]
                .as_str()
                .map(str::to_string)
        })
        .next_back()
}

/// The live job `name`: its id, status word and `cu_number`.
fn live_job(emulator: &Emulator, name: &str) -> (i64, String, i32) {
    runtime().block_on(async {
        let dli = emulator.dli();
        let listed = dli
            .list_jobs(&ListJobsQuery {
                name: Some(name.into()),
                ..ListJobsQuery::default()
            })
            .await
            .unwrap();
        let job = listed.first().expect("the job is live");
        let detail = dli.job_detail(job.id).await.unwrap();
        (
            job.id,
            job.status.as_str().to_string(),
            detail.config.cu_number,
        )
    })
}

/// Waits until the upgrade has stopped running `name` (its stop is under way).
fn wait_until_stopping(emulator: &Emulator, name: &str) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while live_job(emulator, name).1 == "job_running" {
        assert!(
            Instant::now() < deadline,
            "the upgrade never stopped {name}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The job runs again with the new definition, resumed from the savepoint its stop took.
fn assert_upgraded_from_its_stop_savepoint(emulator: &Emulator, state_dir: &Path, cu_number: i32) {
    let (id, status, cu) = live_job(emulator, "clicks");
    assert_eq!(
        status, "job_running",
        "the job git wants running is running"
    );
    assert_eq!(cu, cu_number);
    journaled_stop_savepoint(state_dir, "clicks").expect("the stop savepoint is journaled");
    let runs = emulator.runs(id);
    let list = runs["runs"].as_array().cloned().unwrap_or_default();
    let (stopped, last) = match list.as_slice() {
        [.., stopped, last] => (stopped, last),
        _ => panic!("fewer than two runs: {runs:#}"),
    };
    // From our verified copy of it (the service deletes its own at the restart): same state.
    assert!(stopped["stop_savepoint_id"].is_string(), "{runs:#}");
    assert_eq!(
        last["restored_savepoint_id"], stopped["stop_savepoint_id"],
        "resumed from the stop savepoint: {runs:#}"
    );
}

/// `clicks`, upgraded with a savepoint, on a queue of its own.
fn upgrade_job_yaml(cu_number: u32) -> String {
    format!(
        "kind: FlinkSqlJob\nname: clicks\nqueue_name: ${{flink_queue}}\n\
         sql_body: |\n  INSERT INTO sink SELECT * FROM source;\nrun_mode: exclusive_cluster\n\
         cu_number: {cu_number}\nparallel_number: 1\ncheckpoint_enabled: true\n\
         checkpoint_interval: 60\ndesired_state: running\nupgrade_mode: savepoint\n"
    )
}

/// A setup whose emulator takes seconds to stop with a savepoint and to start, so a signal
/// lands between an upgrade's stop and its start; `clicks` is converged at cu_number 2.
fn slow_upgrade_setup() -> (Setup, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(&dir.path().join("jobs-repo"));
    let emulator = Emulator::start_with_delays(
        dir.path(),
        "{submit_ms: 2000, cancel_ms: 1000, savepoint_ms: 3000, dlf_task_ms: 100}",
    );
    let setup = Setup {
        repo,
        emulator,
        port: free_port(),
        dir,
    };
    let first = setup.repo.commit(
        "clicks",
        &[
            ("flink/clicks.yaml", Some(&upgrade_job_yaml(2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    (setup, first)
}

#[test]
fn sigterm_right_after_an_upgrade_stopped_a_job_finishes_the_upgrade_from_its_savepoint() {
    let (setup, first) = slow_upgrade_setup();
    let daemon = setup.start_daemon(false, "1s", "before");
    daemon.wait_for("clicks to run", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    wait_until_stopping(&setup.emulator, "clicks");
    // The stop (with its savepoint) is under way: shut down now.
    let started = Instant::now();
    let exit = daemon.stop();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(45));
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-before.log")).unwrap();
    assert!(
        !log_positions(
            &log,
            "Shutdown complete: every action in flight ran to its end and was journaled; no job was left stopped by this process."
        )
        .is_empty(),
        "{}",
        tail(&log, 30)
    );
    // Before the daemon exited, the upgrade updated the job, imported the savepoint the stop
    // took and started it: nothing waits for the next start.
    assert_upgraded_from_its_stop_savepoint(&setup.emulator, &setup.dir.path().join("state"), 3);
}

#[test]
fn ctrl_c_during_apply_finishes_the_upgrade_in_flight() {
    let (setup, _first) = slow_upgrade_setup();
    let config = setup.config(false, "1s");
    let apply = || {
        let mut command = Command::new(BINARY);
        command
            .args(["apply", "--auto-approve", "--target", "dev", "--config"])
            .arg(&config)
            .env("E2E_AK", ACCESS_KEY)
            .env("E2E_SK", SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let created = apply().output().unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    let child = apply().spawn().unwrap();
    let pid = child.id();
    wait_until_stopping(&setup.emulator, "clicks");
    // Ctrl-C once, while the job is stopping.
    assert!(
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Interrupted: finishing the actions in flight"),
        "{stderr}"
    );
    assert!(
        output.status.success() && stdout.contains("1 succeeded, 0 failed"),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status.code()
    );
    assert_upgraded_from_its_stop_savepoint(&setup.emulator, &setup.dir.path().join("state"), 3);
}

#[test]
fn an_upgrade_cut_off_by_the_shutdown_grace_is_finished_first_by_the_next_start() {
    let (setup, _first) = slow_upgrade_setup();
    // A grace period shorter than the stop: the upgrade cannot finish before the exit.
    let config = setup.config_with(false, "1s", "10s", "shutdown_grace: 1s\n");
    let daemon = Daemon::start(setup.dir.path(), &config, "short-grace");
    daemon.wait_for("clicks to run", |status| {
        status["jobs"].as_array().is_some_and(|jobs| {
            jobs.iter()
                .any(|job| job["name"] == "clicks" && job["live_status"] == "job_running")
        })
    });
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    wait_until_stopping(&setup.emulator, "clicks");
    let started = Instant::now();
    let exit = daemon.stop();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-short-grace.log")).unwrap();
    let incomplete = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| {
            record["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("Shutdown incomplete"))
        })
        .unwrap_or_else(|| panic!("no incomplete-shutdown line; log:\n{}", tail(&log, 30)));
    assert_eq!(incomplete["fields"]["targets"], "dev");
    assert_ne!(live_job(&setup.emulator, "clicks").1, "job_running");

    // The next start resolves the open intent first, says so, and finishes the upgrade from
    // the savepoint the stop took.
    let daemon = Daemon::start(setup.dir.path(), &config, "after-short-grace");
    daemon.wait_for("the upgrade to be finished", |status| {
        synced_at(status, &second) && job(status, "clicks")["live_status"] == "job_running"
    });
    let log =
        std::fs::read_to_string(setup.dir.path().join("daemon-after-short-grace.log")).unwrap();
    assert!(
        !log_positions(
            &log,
            "Resolved an intent an interrupted pass left open; this pass re-plans from what is live."
        )
        .is_empty(),
        "{}",
        tail(&log, 40)
    );
    assert!(
        !log_positions(
            &log,
            "This pass first resolved actions an interrupted earlier run (a shutdown past its grace period, a crash) left open; it plans from what is live and finishes them."
        )
        .is_empty(),
        "{}",
        tail(&log, 40)
    );
    let (id, _, cu) = live_job(&setup.emulator, "clicks");
    assert_eq!(cu, 3);
    let runs = setup.emulator.runs(id);
    let runs = runs["runs"].as_array().unwrap();
    let stopped = runs
        .iter()
        .rev()
        .find_map(|run| run["stop_savepoint_id"].as_str())
        .unwrap_or_else(|| panic!("no run was stopped with a savepoint: {runs:#?}"));
    assert_eq!(
        runs.last().unwrap()["restored_savepoint_id"].as_str(),
        Some(stopped),
        "{runs:#?}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn a_lost_journal_or_a_renamed_target_never_replays_a_restore() {
    let setup = Setup::new(0);
    let savepoint_dir = setup
        .dir
        .path()
        .join("emulator-data/obs/dli-gitops-savepoints/manual/clicks-1");
    std::fs::create_dir_all(&savepoint_dir).unwrap();
    std::fs::write(
        savepoint_dir.join("_metadata"),
        r#"{"format":"test-savepoint"}"#,
    )
    .unwrap();
    let savepoint = "obs://dli-gitops-savepoints/manual/clicks-1/";
    setup.repo.commit(
        "clicks, restored once from a savepoint",
        &[
            (
                "flink/clicks.yaml",
                Some(&format!(
                    "{}restore: {{savepoint_path: \"{savepoint}\", nonce: 1}}\n",
                    upgrade_job_yaml(2)
                )),
            ),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let config = setup.config(false, "1s");
    let run = |args: &[&str]| {
        let output = Command::new(BINARY)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("E2E_AK", ACCESS_KEY)
            .env("E2E_SK", SECRET_KEY)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = run(&["apply", "--auto-approve", "--target", "dev"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (id, status, _) = live_job(&setup.emulator, "clicks");
    assert_eq!(status, "job_running");
    let runs = |id| setup.emulator.runs(id)["runs"].as_array().unwrap().clone();
    let first = runs(id);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["restored_from"].as_str(), Some(savepoint));

    // The journal is lost (deleted by hand): the live job is adopted, its restore is not run
    // again.
    let state_dir = setup.dir.path().join("state");
    for file in ["journal.jsonl", "snapshot.json"] {
        let _ = std::fs::remove_file(state_dir.join(file));
    }
    let (code, stdout, stderr) = run(&["apply", "--auto-approve", "--target", "dev"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("recorded as done instead of being replayed"),
        "{stderr}"
    );
    assert!(!stdout.contains("restore clicks"), "{stdout}");
    assert_eq!(runs(id).len(), 1, "the restore ran again: {stdout}");
    let (code, stdout, stderr) = run(&["plan", "--detailed-exitcode", "--target", "dev"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // The target is renamed in the config: the journal's records of `dev` are reported, and
    // under its new name the restore is not run again either.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("- name: dev\n", "- name: dev2\n")).unwrap();
    let (code, stdout, stderr) = run(&["apply", "--auto-approve", "--target", "dev2"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("a target the config does not name") && stderr.contains("dev"),
        "{stderr}"
    );
    assert!(
        stderr.contains("recorded as done instead of being replayed"),
        "{stderr}"
    );
    assert_eq!(runs(id).len(), 1, "the restore ran again: {stdout}");
    let (_, status, _) = live_job(&setup.emulator, "clicks");
    assert_eq!(status, "job_running");
}

/// The process managers in `deploy/` wait longer than the daemon's shutdown grace, so the
/// daemon, not SIGKILL, decides when an action in flight is given up.
#[test]
fn deploy_grace_periods_outlast_the_shutdown_grace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let grace = dli_gitops::config::DEFAULT_SHUTDOWN_GRACE.as_secs();
    let value_after = |file: &str, key: &str| -> u64 {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with(key))
            .unwrap_or_else(|| panic!("{key} not in {file}"));
        line[key.len()..]
            .trim_start_matches([':', '=', ' '])
            .trim_end_matches('s')
            .parse()
            .unwrap_or_else(|_| panic!("{file}: {line}"))
    };
    let kubernetes = value_after(
        "deploy/kubernetes/deployment.yaml",
        "terminationGracePeriodSeconds",
    );
    let systemd = value_after("deploy/systemd/dli-gitops.service", "TimeoutStopSec");
    assert!(kubernetes >= grace + 10, "{kubernetes} s vs {grace} s");
    assert!(systemd >= grace + 10, "{systemd} s vs {grace} s");
    let example = dli_gitops::config::Config::load(&root.join("config.example.yaml")).unwrap();
    assert_eq!(example.shutdown_grace.get().as_secs(), grace);
    for (value, expected) in [("0s", "too short"), ("soon", "is not a duration")] {
        let text = format!(
            "shutdown_grace: {value}\nsources:\n  jobs: {{path: /tmp/jobs}}\ntargets:\n  - {{name: dev, source: jobs, endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}}}\n"
        );
        let config =
            dli_gitops::config::Config::from_yaml_str(&text, Path::new("config.yaml")).unwrap();
        let error = config
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            error.contains("shutdown_grace") && error.contains(expected),
            "{value}: {error}"
        );
    }
}

#[test]
fn a_journal_moved_away_under_the_daemon_stops_every_action_and_says_so() {
    let setup = Setup::new(0);
    let first = setup.repo.commit(
        "clicks",
        &[
            ("flink/clicks.yaml", Some(&upgrade_job_yaml(2))),
            ("environments/dev.yaml", Some(ENVIRONMENT)),
        ],
    );
    let daemon = setup.start_daemon(false, "1s", "displaced");
    daemon.wait_for("clicks to run", |status| {
        synced_at(status, &first) && job(status, "clicks")["live_status"] == "job_running"
    });
    let state_dir = setup.dir.path().join("state");
    std::fs::rename(
        state_dir.join("journal.jsonl"),
        setup.dir.path().join("journal.moved"),
    )
    .unwrap();
    setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    let status = daemon.wait_for("the target to report the moved journal", |status| {
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("was moved or deleted"))
    });
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("stop the daemon"),
        "{status:#}"
    );
    // Nothing was done that the journal could not announce: the job still runs as before.
    std::thread::sleep(Duration::from_secs(3));
    let (_, live_status, cu) = live_job(&setup.emulator, "clicks");
    assert_eq!((live_status.as_str(), cu), ("job_running", 2));
    assert!(daemon.stop().success());
}

#[test]
fn a_second_signal_exits_at_once_and_the_next_start_finishes_the_upgrade() {
    let (setup, _first) = slow_upgrade_setup();
    let daemon = setup.start_daemon(false, "1s", "twice");
    daemon.wait_for("clicks to run", |status| {
        status["jobs"].as_array().is_some_and(|jobs| {
            jobs.iter()
                .any(|job| job["name"] == "clicks" && job["live_status"] == "job_running")
        })
    });
    let second = setup.repo.commit(
        "more CUs",
        &[("flink/clicks.yaml", Some(&upgrade_job_yaml(3)))],
    );
    wait_until_stopping(&setup.emulator, "clicks");
    let mut daemon = daemon;
    let mut process = daemon.process.take().unwrap();
    process.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    process.signal("INT");
    let started = Instant::now();
    let child = process.child.as_mut().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second signal did not end the daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status}");
    let log = std::fs::read_to_string(setup.dir.path().join("daemon-twice.log")).unwrap();
    assert!(
        log.contains("Second signal: exiting now"),
        "{}",
        tail(&log, 20)
    );

    let daemon = setup.start_daemon(false, "1s", "after-twice");
    daemon.wait_for("the upgrade to be finished", |status| {
        synced_at(status, &second) && job(status, "clicks")["live_status"] == "job_running"
    });
    let (_, _, cu) = live_job(&setup.emulator, "clicks");
    assert_eq!(cu, 3);
    assert!(daemon.stop().success());
}
