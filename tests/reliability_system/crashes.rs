//! Crash consistency under SIGKILL: the daemon, `apply`, DLF schedules, restores and rollback.

use super::*;

/// Ends a crash test: with failures, keeps its directory (the journal, the emulator's state and
/// every log) and fails naming the seed that replays it.
fn fail_keeping_evidence(temp: tempfile::TempDir, seed: u64, failures: &[String]) {
    if !failures.is_empty() {
        let kept = temp.keep();
        panic!(
            "seed {seed} (state kept in {}):\n{}",
            kept.display(),
            failures.join("\n")
        );
    }
}

/// What the journal holds: intents, outcomes, and outcomes written by recovery for intents a
/// killed process left open.
#[derive(Debug, Default)]
struct JournalCounts {
    intents: usize,
    outcomes: usize,
    interrupted: usize,
}

fn journal_counts(setup: &DaemonSetup) -> JournalCounts {
    let records = dli_gitops::journal::read_records(
        &setup.dir.join("state"),
        &dli_gitops::journal::RecordFilter::default(),
    )
    .expect("read the journal");
    let mut counts = JournalCounts::default();
    for record in &records {
        match &record.body {
            dli_gitops::journal::RecordBody::Intent(_) => counts.intents += 1,
            dli_gitops::journal::RecordBody::Outcome(outcome) => {
                counts.outcomes += 1;
                if outcome
                    .error
                    .as_ref()
                    .is_some_and(|error| error.code.as_deref() == Some("INTERRUPTED"))
                {
                    counts.interrupted += 1;
                }
            }
            _ => {}
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Crash consistency

/// The leak-test emulator with 20 ms transitions, for crash loops.
fn fast_emulator_yaml() -> String {
    leak_emulator_yaml("").replace(
        "submit_ms: 50, cancel_ms: 50, savepoint_ms: 50",
        "submit_ms: 20, cancel_ms: 20, savepoint_ms: 20",
    )
}

/// The setup every crash loop runs the daemon or the CLI from: the leak-test account, prune on.
fn crash_setup(dir: &Path, repo: &JobsRepo, emulator: &EmulatorProcess) -> DaemonSetup {
    DaemonSetup::new(
        dir,
        repo,
        emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: true,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    )
}

/// The daemon is killed with SIGKILL at a random moment of each of 50 runs while git keeps
/// changing under it (upgrades with savepoints, a job added and pruned). Then one last start
/// converges, and: live jobs equal git, none duplicated, all running, every stop had a
/// savepoint that the next run restored, `journal verify` passes, every intent has an outcome.
#[test]
fn daemon_killed_at_random_moments_loses_nothing() {
    crash_loop(CrashMode::Daemon);
}

/// `apply` is killed with SIGKILL at a random moment of each of 50 passes while git keeps
/// changing (upgrades with savepoints, a job added and pruned). Then passes run to the end,
/// and: live jobs equal git, none duplicated, all running, every stop had a savepoint the next
/// run restored, `journal verify` passes, every intent has an outcome.
#[test]
fn apply_killed_at_random_moments_loses_nothing() {
    crash_loop(CrashMode::ApplyCommand);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashMode {
    ApplyCommand,
    Daemon,
}

fn crash_loop(mode: CrashMode) {
    use rand::Rng;
    let (seed, mut rng) = crash_seed(&format!("crash test ({mode:?})"));
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &fast_emulator_yaml());
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let base_names = ["orders", "payments", "sessions"];
    let mut cus = [2u32, 2, 2];
    let tree = |cus: &[u32; 3], with_extra: bool| {
        let mut files: Vec<(String, String)> = base_names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (format!("flink/{name}.yaml"), job_yaml(name, *cu)))
            .collect();
        if with_extra {
            files.push(("flink/extra.yaml".into(), job_yaml("extra", 2)));
        }
        files.push(("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()));
        files
    };
    let mut with_extra = true;
    let mut revision = repo.commit_tree("start", &tree(&cus, with_extra));
    let setup = crash_setup(dir, &repo, &emulator);
    let config = setup.config_arg();
    let runs = crash_runs(50);
    let started = Instant::now();
    for run in 0..runs {
        // Git moves on most runs: an upgrade of one job, and every eighth run the extra job
        // comes or goes (a create or a prune).
        if run % 8 == 7 {
            with_extra = !with_extra;
        }
        if rng.gen_bool(0.7) {
            let index = rng.gen_range(0..cus.len());
            // cu_number must stay in 2..=400.
            cus[index] = if cus[index] >= 5 { 2 } else { cus[index] + 1 };
        }
        revision = repo.commit_tree(&format!("run {run}"), &tree(&cus, with_extra));
        let process = match mode {
            CrashMode::Daemon => setup.spawn(&format!("crash-{run}")),
            CrashMode::ApplyCommand => Process::spawn(
                {
                    let mut command = setup.command(&[
                        "apply",
                        "--config",
                        &config,
                        "--target",
                        "dev",
                        "--auto-approve",
                    ]);
                    command.stdout(Stdio::null());
                    command
                },
                dir.join(format!("apply-{run}.log")),
            ),
        };
        let upper = match mode {
            CrashMode::Daemon => 2500,
            CrashMode::ApplyCommand => 1500,
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..upper)));
        process.kill_hard();
    }
    let crash_phase = started.elapsed();
    let started = Instant::now();
    let passes = match mode {
        CrashMode::Daemon => {
            let mut daemon = setup.spawn("final");
            setup.wait_for(
                &mut daemon,
                "convergence after the crashes",
                Duration::from_secs(240),
                |status| {
                    synced_at(status, &revision)
                        && status["jobs"].as_array().is_some_and(|jobs| {
                            jobs.iter().all(|job| job["live_status"] == "job_running")
                        })
                },
            );
            assert!(
                daemon.terminate().success(),
                "the final daemon did not exit cleanly"
            );
            None
        }
        CrashMode::ApplyCommand => Some(
            setup
                .apply_until_converged(30)
                .unwrap_or_else(|last| panic!("seed {seed}: no convergence in 30 passes:\n{last}")),
        ),
    };
    let converge = started.elapsed();
    let mut desired = Desired {
        jobs: base_names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (name.to_string(), cu))
            .collect(),
    };
    if with_extra {
        desired.jobs.push(("extra".into(), 2));
    }
    let mut failures = live_violations(
        &emulator,
        LEAK_ACCESS_KEY,
        LEAK_SECRET_KEY,
        LEAK_PROJECT_ID,
        &desired,
    );
    failures.extend(journal_violations(&setup));
    let counts = journal_counts(&setup);
    let client = emulator.client(LEAK_ACCESS_KEY, LEAK_SECRET_KEY, LEAK_PROJECT_ID);
    let live = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list");
    let runs_per_job: Vec<(String, usize)> = live
        .iter()
        .map(|job| {
            let runs = emulator.runs(LEAK_PROJECT_ID, job.id);
            (
                job.name.clone(),
                runs["runs"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    eprintln!(
        "crash test ({mode:?}): {runs} SIGKILLs in {crash_phase:?}; converged in {converge:?} \
         ({passes:?} apply passes); journal: {counts:?}; runs per live job: {runs_per_job:?}"
    );
    // The kills must have landed in the middle of actions, or this test proves little.
    if counts.interrupted == 0 {
        failures.push(format!(
            "no kill interrupted an action ({counts:?}); the timing no longer exercises crashes"
        ));
    }
    fail_keeping_evidence(temp, seed, &failures);
}

// ---------------------------------------------------------------------------------------------
// DLF: a scheduled job's schedule survives kills between its stop and its start

/// `apply` is killed with SIGKILL at a random moment of each of 30 passes while git keeps
/// changing a scheduled DLF job whose YAML leaves `desired_state` unset: every change stops the
/// schedule (DataArts imports only over a stopped job), imports, and starts it again. Kills land
/// between the stop and the start. Then `apply` converges, and: the job holds git's last
/// definition, its schedule runs again, `journal verify` passes, every intent has an outcome.
#[test]
fn apply_killed_around_a_dlf_schedule_stop_leaves_the_schedule_running() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("DLF crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(""));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |statement: usize| -> Vec<(String, String)> {
        vec![
            (
                "dlf/nightly.yaml".into(),
                "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\n".into(),
            ),
            (
                "dlf/nightly.job".into(),
                format!(
                    r#"{{"name": "nightly", "processType": "BATCH", "nodes": [{{"name": "n", "type": "DWSSQL", "properties": [{{"name": "statement", "value": "SELECT {statement}"}}]}}], "schedule": {{"type": "CRON", "cron": {{"expression": "0 0 2 * * ?"}}}}}}"#
                ),
            ),
            ("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()),
        ]
    };
    repo.commit_tree("start", &tree(0));
    let setup = crash_setup(dir, &repo, &emulator);
    setup
        .apply_until_converged(5)
        .unwrap_or_else(|last| panic!("the DLF job is not created:\n{last}"));
    let dlf = dli_gitops::cloud::DlfClient::new(
        Url::parse(&emulator.url("dlf")).expect("url"),
        LEAK_PROJECT_ID,
        Credentials::AkSk {
            access_key: LEAK_ACCESS_KEY.into(),
            secret_key: Secret::new(LEAK_SECRET_KEY),
            security_token: None,
        },
        ClientOptions {
            requests_per_second: 0.0,
            ..ClientOptions::default()
        },
        None,
    )
    .expect("client");
    // Scheduled by hand: git leaves the schedule to whoever runs the job.
    block_on(dlf.start_job("nightly")).expect("start the schedule");

    let config = setup.config_arg();
    let runs = (crash_runs(50) * 3 / 5).max(1);
    for run in 1..=runs {
        repo.commit_tree(&format!("run {run}"), &tree(run));
        let process = Process::spawn(
            {
                let mut command = setup.command(&[
                    "apply",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ]);
                command.stdout(Stdio::null());
                command
            },
            dir.join(format!("apply-dlf-{run}.log")),
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..900)));
        process.kill_hard();
    }
    let passes = setup
        .apply_until_converged(20)
        .unwrap_or_else(|last| panic!("seed {seed}: no convergence in 20 passes:\n{last}"));

    let mut failures = Vec::new();
    let definition = block_on(dlf.job_detail("nightly")).expect("the job exists");
    if !definition.to_string().contains(&format!("SELECT {runs}\"")) {
        failures.push(format!(
            "the live job is not git's last definition: {definition}"
        ));
    }
    let (listed, _) = block_on(dlf.list_every_job(Some("nightly"))).expect("list");
    let status = listed.first().and_then(|job| job.status.clone());
    if status.as_deref() != Some("NORMAL") {
        failures.push(format!(
            "the schedule was stopped for an import and never started again: {status:?}"
        ));
    }
    failures.extend(journal_violations(&setup));
    let counts = journal_counts(&setup);
    eprintln!(
        "DLF crash test: {runs} SIGKILLs; converged in {passes} apply pass(es); journal: {counts:?}"
    );
    if counts.interrupted == 0 {
        failures.push(format!(
            "no kill interrupted an action ({counts:?}); the timing no longer exercises crashes"
        ));
    }
    fail_keeping_evidence(temp, seed, &failures);
}

// ---------------------------------------------------------------------------------------------
// Restores under SIGKILL: a restore is a one-shot step, never applied twice.

/// `apply` is killed at random moments while git alternates upgrades with explicit restores
/// (`restore: {savepoint_path, nonce}` naming an earlier stop savepoint of the job). After one
/// last converging pass: the job runs with git's definition, every run resumed either from the
/// stop savepoint of the run before it or from a restore path, no restore path was restored
/// more often than restores named it (a restore re-applied after a crash would show here), the
/// last restore was applied, and every intent has an outcome.
#[test]
fn apply_killed_around_restores_applies_each_restore_at_most_once() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("restore crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &fast_emulator_yaml());
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |cu: u32, restore: Option<&(String, u64)>| {
        let mut job = job_yaml("orders", cu);
        if let Some((path, nonce)) = restore {
            job.push_str(&format!(
                "restore: {{savepoint_path: \"{path}\", nonce: {nonce}}}\n"
            ));
        }
        vec![
            ("flink/orders.yaml".to_string(), job),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ]
    };
    let mut cu = 2u32;
    repo.commit_tree("start", &tree(cu, None));
    let setup = crash_setup(dir, &repo, &emulator);
    setup
        .apply_until_converged(10)
        .unwrap_or_else(|last| panic!("seed {seed}: the job was not created:\n{last}"));
    let client = emulator.client(LEAK_ACCESS_KEY, LEAK_SECRET_KEY, LEAK_PROJECT_ID);
    let job_id = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list")[0].id;
    // The service deletes its own stop savepoints when the job restarts (the emulator models
    // it): restores name our verified copies of them, from the savepoint catalog.
    let state_dir = setup.dir.join("state");
    let stop_savepoints = |_: &EmulatorProcess| -> Vec<String> {
        let state = dli_gitops::journal::read_state(&state_dir).expect("read the journal");
        dli_gitops::savepoints::catalog(&state, Some("dev"), Some("orders"))
            .iter()
            .filter(|entry| entry.entry.record.origin == "stop" && entry.entry.record.verified)
            .map(|entry| entry.path().to_string())
            .collect()
    };
    let config = setup.config_arg();
    let runs = (crash_runs(50) / 2).max(10);
    let mut restores: Vec<(String, u64)> = Vec::new();
    let mut current: Option<(String, u64)> = None;
    for run in 0..runs {
        let known = stop_savepoints(&emulator);
        // An older stop savepoint than the latest, so that a restore is told apart from the
        // ordinary resume of an upgrade.
        if run % 3 == 2 && known.len() >= 2 {
            let path = known[rng.gen_range(0..known.len() - 1)].clone();
            let restore = (path, run as u64 + 1);
            restores.push(restore.clone());
            current = Some(restore);
        } else {
            cu = if cu >= 5 { 2 } else { cu + 1 };
        }
        repo.commit_tree(&format!("run {run}"), &tree(cu, current.as_ref()));
        let process = Process::spawn(
            {
                let mut command = setup.command(&[
                    "apply",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ]);
                command.stdout(Stdio::null());
                command
            },
            dir.join(format!("apply-{run}.log")),
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..1500)));
        process.kill_hard();
    }
    let passes = setup
        .apply_until_converged(30)
        .unwrap_or_else(|last| panic!("seed {seed}: no convergence in 30 passes:\n{last}"));

    let mut failures = journal_violations(&setup);
    let detail = block_on(client.job_detail(job_id)).expect("detail");
    if detail.status.as_str() != "job_running" || detail.config.cu_number != cu as i32 {
        failures.push(format!(
            "orders is {} with cu_number {}; git wants it running with {cu}",
            detail.status, detail.config.cu_number
        ));
    }
    let job_runs = emulator.runs(LEAK_PROJECT_ID, job_id)["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let restore_paths: std::collections::BTreeMap<&str, usize> =
        restores
            .iter()
            .fold(Default::default(), |mut counts, (path, _)| {
                *counts.entry(path.as_str()).or_default() += 1;
                counts
            });
    let mut restored: std::collections::BTreeMap<String, usize> = Default::default();
    for pair in job_runs.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        let from = next["restored_from"].as_str();
        let stop = previous["stop_savepoint"].as_str();
        // The state of the previous stop, resumed from the service's savepoint or our copy.
        let resumed_the_stop = previous["stop_savepoint_id"].is_string()
            && next["restored_savepoint_id"] == previous["stop_savepoint_id"];
        match from {
            Some(path) if !resumed_the_stop && restore_paths.contains_key(path) => {
                *restored.entry(path.to_string()).or_default() += 1;
            }
            _ if resumed_the_stop => {}
            _ => failures.push(format!(
                "run {} resumed from {from:?}, neither the stop savepoint {stop:?} of run {} nor a restore",
                next["run_number"], previous["run_number"]
            )),
        }
    }
    for (path, times) in &restored {
        let named = restore_paths.get(path.as_str()).copied().unwrap_or(0);
        if *times > named {
            failures.push(format!(
                "{path} was restored {times} times but restores named it {named} times: a restore was applied twice"
            ));
        }
    }
    if let Some((path, _)) = &current
        && !job_runs
            .iter()
            .any(|run| run["restored_from"].as_str() == Some(path.as_str()))
    {
        failures.push(format!("the last restore ({path}) was never applied"));
    }
    let counts = journal_counts(&setup);
    eprintln!(
        "restore crash test: {runs} SIGKILLs, {} restores, converged in {passes} passes; \
         restored: {restored:?}; journal: {counts:?}",
        restores.len()
    );
    fail_keeping_evidence(temp, seed, &failures);
}

// ---------------------------------------------------------------------------------------------
// Rollback under SIGKILL: the job is never left down, the state chain never breaks.

/// `rollback` is killed at random moments, again and again, then run to its end. Its stop
/// savepoint is journaled before the backup is imported, and a rerun restarts, from that
/// savepoint, a job an interrupted run had stopped. Afterwards: the job runs the backup's
/// definition, every run resumed from the stop savepoint of the run before it, and every intent
/// has an outcome.
#[test]
fn rollback_killed_at_random_moments_never_leaves_the_job_down() {
    use rand::Rng;
    let (seed, mut rng) = crash_seed("rollback crash test");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &fast_emulator_yaml());
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |cu: u32| {
        vec![
            ("flink/orders.yaml".to_string(), job_yaml("orders", cu)),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ]
    };
    repo.commit_tree("start", &tree(2));
    let setup = crash_setup(dir, &repo, &emulator);
    // cu 2 → 3 → 4: two applies that took backups.
    for cu in [2, 3, 4] {
        repo.commit_tree(&format!("cu {cu}"), &tree(cu));
        setup
            .apply_until_converged(10)
            .unwrap_or_else(|last| panic!("seed {seed}: cu {cu} did not converge:\n{last}"));
    }
    let config = setup.config_arg();
    let rollback = |tag: &str| {
        Process::spawn(
            {
                let mut command = setup.command(&[
                    "rollback",
                    "--config",
                    &config,
                    "--target",
                    "dev",
                    "--auto-approve",
                ]);
                command.stdout(Stdio::null());
                command
            },
            dir.join(format!("rollback-{tag}.log")),
        )
    };
    let runs = (crash_runs(50) / 3).max(10);
    for run in 0..runs {
        let process = rollback(&run.to_string());
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..1200)));
        process.kill_hard();
    }
    let (code, stdout, stderr) = setup.run_cli(
        &[
            "rollback",
            "--config",
            &config,
            "--target",
            "dev",
            "--auto-approve",
        ],
        &[],
    );
    let mut failures = Vec::new();
    if code != Some(0) {
        failures.push(format!(
            "the last rollback exited {code:?}:\n{stdout}{stderr}"
        ));
    }
    failures.extend(journal_violations(&setup));
    let client = emulator.client(LEAK_ACCESS_KEY, LEAK_SECRET_KEY, LEAK_PROJECT_ID);
    let listed = block_on(client.list_jobs(&ListJobsQuery::default())).expect("list");
    let job = listed
        .iter()
        .find(|job| job.name == "orders")
        .expect("orders is live");
    let detail = block_on(client.job_detail(job.id)).expect("detail");
    if detail.status.as_str() != "job_running" {
        failures.push(format!(
            "orders is {} after the rollback; it ran before",
            detail.status
        ));
    }
    if detail.config.cu_number != 3 {
        failures.push(format!(
            "orders has cu_number {}; the latest backup (taken before cu 4) has 3",
            detail.config.cu_number
        ));
    }
    let job_runs = emulator.runs(LEAK_PROJECT_ID, job.id)["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    failures.extend(savepoint_chain_breaks("orders", &job_runs));
    let counts = journal_counts(&setup);
    eprintln!(
        "rollback crash test: {runs} SIGKILLs; {} runs of the job; journal: {counts:?}",
        job_runs.len()
    );
    fail_keeping_evidence(temp, seed, &failures);
}
