//! Convergence under injected service faults, through the daemon and through `apply`.

use super::*;

// ---------------------------------------------------------------------------------------------
// Service faults

/// Three phases against one emulator data directory. (1) With 20% of calls failing with
/// 500s, 5% of connections dropped, 10% throttled with 429 and latency on every call, four
/// jobs are created and two upgraded; both commits converge within a bounded time and the
/// calls made stay bounded. (2) A full outage (every call a 500) while a new commit arrives:
/// the status names the failure, the calls made stay bounded. (3) The service recovers (the
/// fault mix again): the commit converges. Afterwards live jobs equal git, every stop had a
/// savepoint the next run restored, the journal verifies, every intent has an outcome.
#[test]
fn changes_converge_under_injected_service_faults() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let mix = "faults: {error_rate: 0.2, drop_rate: 0.05, throttle_rate: 0.1, latency_ms: 20, retry_after_seconds: 1, seed: 11}\n";
    let outage = "faults: {error_rate: 1.0, latency_ms: 20, seed: 12}\n";
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(mix));
    let (api_port, s3_port) = (emulator.port("dli"), emulator.port("s3"));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let names = ["alpha", "bravo", "charlie", "delta"];
    let tree = |cus: &[u32]| {
        let mut files: Vec<(String, String)> = names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (format!("flink/{name}.yaml"), job_yaml(name, *cu)))
            .collect();
        files.push(("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()));
        files
    };
    let setup = DaemonSetup::new(
        dir,
        &repo,
        &emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: false,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    );
    let mut failures = Vec::new();
    let mut daemon = setup.spawn("faults");

    // (1) The fault mix.
    let first = repo.commit_tree("four jobs", &tree(&[2, 2, 2, 2]));
    let started = Instant::now();
    setup.wait_for(
        &mut daemon,
        "convergence under faults",
        Duration::from_secs(300),
        |status| synced_at(status, &first),
    );
    let first_took = started.elapsed();
    let second = repo.commit_tree("upgrade two", &tree(&[3, 2, 4, 2]));
    let started = Instant::now();
    setup.wait_for(
        &mut daemon,
        "the upgrade under faults",
        Duration::from_secs(300),
        |status| synced_at(status, &second),
    );
    let second_took = started.elapsed();
    let mix_calls = emulator.stats_total();
    // Four creates with starts and two upgrades take about a hundred calls without faults;
    // unbounded retries would run into the thousands.
    if mix_calls > 2000 {
        failures.push(format!(
            "{mix_calls} calls reached the emulator under the fault mix"
        ));
    }

    // (2) A full outage while git moves on.
    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(outage), api_port, s3_port);
    let third = repo.commit_tree("upgrade during the outage", &tree(&[3, 3, 4, 3]));
    let outage_started = Instant::now();
    let (failing, _) = setup.wait_for(
        &mut daemon,
        "the status to name the outage",
        Duration::from_secs(120),
        |status| {
            let mut errors = Vec::new();
            collect_errors(status, &mut errors);
            errors
                .iter()
                .any(|error| error.contains("500") || error.contains("DLI.0999"))
        },
    );
    let named_after = outage_started.elapsed();
    std::thread::sleep(Duration::from_secs(15));
    let outage_calls = emulator.stats_total();
    let outage_took = outage_started.elapsed();
    if failing["sync"]["status"] == "Synced" && failing["sync"]["applied_revision"] == third {
        failures.push("the target claims to be synced at the commit made during the outage".into());
    }
    // Each pass's calls are retried at most `max_attempts` (5) times with backoff: a pass every
    // few seconds cannot make more than a few dozen calls a second.
    let budget = 40 * outage_took.as_secs().max(1);
    if outage_calls > budget {
        failures.push(format!(
            "{outage_calls} calls in a {outage_took:?} outage (budget {budget})"
        ));
    }

    // (3) Recovery.
    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(mix), api_port, s3_port);
    let started = Instant::now();
    setup.wait_for(
        &mut daemon,
        "convergence after the outage",
        Duration::from_secs(300),
        |status| synced_at(status, &third),
    );
    let recovery_took = started.elapsed();
    assert!(
        daemon.terminate().success(),
        "the daemon did not exit cleanly"
    );

    let desired = Desired {
        jobs: vec![
            ("alpha".into(), 3),
            ("bravo".into(), 3),
            ("charlie".into(), 4),
            ("delta".into(), 3),
        ],
    };
    failures.extend(live_violations(
        &emulator,
        LEAK_ACCESS_KEY,
        LEAK_SECRET_KEY,
        LEAK_PROJECT_ID,
        &desired,
    ));
    failures.extend(journal_violations(&setup));
    let mut named = Vec::new();
    collect_errors(&failing, &mut named);
    eprintln!(
        "faults: mix: first commit {first_took:?}, second {second_took:?}, {mix_calls} calls; \
         outage: named after {named_after:?}, {outage_calls} calls in {outage_took:?}; \
         recovery: {recovery_took:?}; status said: {:?}",
        named.first()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every non-empty `error`/`last_error`/`message` string anywhere in a status document.
fn collect_errors(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key.contains("error") {
                    match inner {
                        Value::String(text) if !text.is_empty() => out.push(text.clone()),
                        Value::Object(_) | Value::Array(_)
                            if !inner.to_string().is_empty() && inner != &Value::Null =>
                        {
                            let text = inner.to_string();
                            if text != "{}" && text != "[]" {
                                out.push(text);
                            }
                        }
                        _ => {}
                    }
                }
                collect_errors(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_errors(item, out)),
        _ => {}
    }
}

/// The fault test through `apply` passes: under the fault mix, four creates and then two
/// upgrades each converge within a bounded number of passes and calls; during a full outage a
/// pass fails and says why (and `plan` does too) after a bounded number of calls; after it the
/// pending commit converges. Live jobs then equal git with their savepoints carried, the
/// journal verifies, every intent has an outcome.
#[test]
fn apply_passes_converge_under_injected_service_faults() {
    const MAX_PASSES: usize = 15;
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let mix = "faults: {error_rate: 0.2, drop_rate: 0.05, throttle_rate: 0.1, latency_ms: 20, retry_after_seconds: 1, seed: 21}\n";
    let outage = "faults: {error_rate: 1.0, latency_ms: 20, seed: 22}\n";
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(mix));
    let (api_port, s3_port) = (emulator.port("dli"), emulator.port("s3"));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let names = ["alpha", "bravo", "charlie", "delta"];
    let tree = |cus: &[u32]| {
        let mut files: Vec<(String, String)> = names
            .iter()
            .zip(cus)
            .map(|(name, cu)| (format!("flink/{name}.yaml"), job_yaml(name, *cu)))
            .collect();
        files.push(("environments/dev.yaml".into(), ENVIRONMENT_YAML.into()));
        files
    };
    let setup = DaemonSetup::new(
        dir,
        &repo,
        &emulator,
        &DaemonOptions {
            project_id: LEAK_PROJECT_ID,
            prune: false,
            poll_interval: "1s",
            extra_source: "",
        },
        leak_env(LEAK_SECRET_KEY),
    );
    let config = setup.config_arg();
    let mut failures = Vec::new();

    repo.commit_tree("four jobs", &tree(&[2, 2, 2, 2]));
    let create_passes = setup
        .apply_until_converged(MAX_PASSES)
        .unwrap_or_else(|last| {
            panic!("the creates did not converge in {MAX_PASSES} passes:\n{last}")
        });
    repo.commit_tree("upgrade two", &tree(&[3, 2, 4, 2]));
    let upgrade_passes = setup
        .apply_until_converged(MAX_PASSES)
        .unwrap_or_else(|last| {
            panic!("the upgrades did not converge in {MAX_PASSES} passes:\n{last}")
        });
    let mix_calls = emulator.stats_total();
    // Creating and starting four jobs and upgrading two take about a hundred calls without
    // faults (plus one list per `plan`); unbounded retries would run into the thousands.
    if mix_calls > 2000 {
        failures.push(format!(
            "{mix_calls} calls reached the emulator under the fault mix"
        ));
    }

    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(outage), api_port, s3_port);
    repo.commit_tree("upgrade during the outage", &tree(&[3, 3, 4, 3]));
    let (apply_code, stdout, stderr) = setup.run_cli(
        &[
            "apply",
            "--config",
            &config,
            "--target",
            "dev",
            "--auto-approve",
        ],
        &[],
    );
    let apply_said = format!("{stdout}{stderr}");
    if apply_code == Some(0) {
        failures.push(format!(
            "apply succeeded during a full outage:\n{}",
            tail(&apply_said, 20)
        ));
    }
    if !(apply_said.contains("HTTP 500") && apply_said.contains("DLI.0999")) {
        failures.push(format!(
            "apply did not say what failed:\n{}",
            tail(&apply_said, 20)
        ));
    }
    let (plan_code, plan_said) = setup.plan_code();
    if plan_code != Some(1) || !plan_said.contains("DLI.0999") {
        failures.push(format!(
            "plan during the outage exited {plan_code:?}:\n{}",
            tail(&plan_said, 20)
        ));
    }
    let outage_calls = emulator.stats_total();
    // Two commands, each giving up after at most `max_attempts` (5) tries of its first call.
    if outage_calls > 20 {
        failures.push(format!(
            "{outage_calls} calls during the outage for one apply and one plan"
        ));
    }

    emulator.stop();
    let emulator = EmulatorProcess::start_on(dir, &leak_emulator_yaml(mix), api_port, s3_port);
    let recovery_passes = setup
        .apply_until_converged(MAX_PASSES)
        .unwrap_or_else(|last| {
            panic!("no convergence after the outage in {MAX_PASSES} passes:\n{last}")
        });
    let desired = Desired {
        jobs: vec![
            ("alpha".into(), 3),
            ("bravo".into(), 3),
            ("charlie".into(), 4),
            ("delta".into(), 3),
        ],
    };
    failures.extend(live_violations(
        &emulator,
        LEAK_ACCESS_KEY,
        LEAK_SECRET_KEY,
        LEAK_PROJECT_ID,
        &desired,
    ));
    failures.extend(journal_violations(&setup));
    eprintln!(
        "apply under faults: creates {create_passes} passes, upgrades {upgrade_passes} passes, \
         {mix_calls} calls; outage: apply exit {apply_code:?}, {outage_calls} calls; \
         recovery {recovery_passes} passes"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
