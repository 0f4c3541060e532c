//! Secrets, bearer tokens and hostile webhooks against a running daemon and through the
//! commands.

use super::*;

fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Every place a secret could end up, by name, with its contents.
struct Evidence {
    places: Vec<(String, Vec<u8>)>,
}

impl Evidence {
    fn add(&mut self, place: impl Into<String>, contents: impl AsRef<[u8]>) {
        self.places.push((place.into(), contents.as_ref().to_vec()));
    }

    fn add_tree(&mut self, root: &Path) {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                self.add_tree(&path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.add(path.display().to_string(), bytes);
            }
        }
    }

    fn leaks(&self, secrets: &[(&str, &str)]) -> Vec<String> {
        let mut found = Vec::new();
        for (place, contents) in &self.places {
            for (name, secret) in secrets {
                if contents
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes())
                {
                    found.push(format!("{name} found in {place}"));
                }
            }
        }
        found
    }
}

/// A full run with known secret values: the daemon converges two commits, takes a webhook
/// corpus (malformed payloads, bad and missing signatures, oversize bodies, a wrong GitLab
/// token) and a set of bad bearer tokens; a second target's git source, with a token, fails
/// to fetch; the CLI fails once with a wrong secret key. Afterwards no secret appears in the
/// daemon's stderr, the CLI output, any HTTP answer (status JSON, page, metrics, errors) or any
/// file of the state directory (journal, snapshot, mirrors).
#[test]
fn secrets_never_leak_and_mutating_endpoints_need_the_token() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(""));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    let tree = |cu: u32| {
        vec![
            ("flink/clicks.yaml".to_string(), job_yaml("clicks", cu)),
            ("flink/views.yaml".to_string(), job_yaml("views", 2)),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ]
    };
    let first = repo.commit_tree("two jobs", &tree(2));
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
    // A second source over https with a token, pointing at a closed port: it fails to fetch,
    // and its error must not carry the token.
    let closed = free_port();
    let mut config = std::fs::read_to_string(&setup.config).expect("config");
    config = config.replace(
        "targets:\n",
        &format!(
            "  remote:\n    git: {{url: \"https://127.0.0.1:{closed}/data/jobs.git\", branch: main, poll_interval: 1s, token_env: REL_GIT_TOKEN}}\ntargets:\n"
        ),
    );
    let probe_target = config
        .split_once("targets:\n")
        .expect("targets")
        .1
        .replace("name: dev", "name: probe")
        .replace("source: jobs", "source: remote")
        .replace(
            "staging: obs://dli-gitops-staging/dev/",
            "staging: obs://dli-gitops-staging/probe/",
        )
        .replace(
            "backups: obs://dli-gitops-backups/dev/",
            "backups: obs://dli-gitops-backups/probe/",
        );
    config.push_str(&probe_target);
    std::fs::write(&setup.config, &config).expect("config with probe");

    let mut evidence = Evidence { places: Vec::new() };
    let mut failures = Vec::new();
    let mut daemon = setup.spawn("secrets");
    setup.wait_for(
        &mut daemon,
        "the first commit to converge",
        Duration::from_secs(120),
        |status| synced_at(status, &first),
    );
    let base = setup.base();

    // Webhooks: each answer is a 4xx (never a 5xx, never a 2xx for a bad request).
    let hook = format!("{base}/api/v1/hooks/git");
    let push = serde_json::json!({
        "ref": "refs/heads/main",
        "after": first,
        "repository": {"clone_url": repo.path.display().to_string()},
    })
    .to_string()
    .into_bytes();
    let signed = |body: &[u8]| {
        vec![
            ("X-GitHub-Event", "push".to_string()),
            (
                "X-Hub-Signature-256",
                github_signature(LEAK_WEBHOOK_SECRET, body),
            ),
            ("Content-Type", "application/json".to_string()),
        ]
    };
    let oversize = vec![b' '; 6 * 1024 * 1024];
    let webhook_cases: Vec<WebhookCase<'_>> = vec![
        ("no provider header", vec![], push.clone(), &[400, 401]),
        (
            "unsigned",
            vec![("X-GitHub-Event", "push".into())],
            push.clone(),
            &[401],
        ),
        (
            "wrong signature",
            vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature-256",
                    github_signature("not-the-secret", &push),
                ),
            ],
            push.clone(),
            &[401],
        ),
        (
            "signature not hex",
            vec![
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", "sha256=zzzz".into()),
            ],
            push.clone(),
            &[400, 401],
        ),
        (
            "sha1 signature only",
            vec![
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature",
                    "sha1=0000000000000000000000000000000000000000".into(),
                ),
            ],
            push.clone(),
            &[400, 401],
        ),
        (
            "signed garbage",
            signed(b"\xff\xfe{{{"),
            b"\xff\xfe{{{".to_vec(),
            &[400],
        ),
        (
            "signed JSON without a ref",
            signed(br#"{"repository": {"clone_url": "x"}}"#),
            br#"{"repository": {"clone_url": "x"}}"#.to_vec(),
            &[400],
        ),
        (
            "signed JSON nested 100000 deep",
            signed(&nested(100_000)),
            nested(100_000),
            &[400],
        ),
        (
            "oversize body",
            signed(&oversize),
            oversize.clone(),
            &[400, 413],
        ),
        (
            "wrong GitLab token",
            vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", "wrong".into()),
            ],
            push.clone(),
            &[401],
        ),
        (
            "GitLab token, garbage payload",
            vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", LEAK_WEBHOOK_SECRET.into()),
            ],
            b"[1,2".to_vec(),
            &[400],
        ),
    ];
    for (name, headers, body, expected) in &webhook_cases {
        match http_bytes("POST", &hook, headers, body) {
            Ok((code, answer)) => {
                evidence.add(format!("webhook answer ({name})"), &answer);
                if !expected.contains(&code) {
                    failures.push(format!(
                        "webhook {name}: HTTP {code}, expected one of {expected:?}: {answer}"
                    ));
                }
            }
            Err(error) => failures.push(format!("webhook {name}: {error}")),
        }
    }
    let (code, answer) = http_bytes("POST", &hook, &signed(&push), &push).expect("valid hook");
    evidence.add("webhook answer (valid)", &answer);
    if !(200..300).contains(&code) {
        failures.push(format!("the valid webhook got HTTP {code}: {answer}"));
    }

    // Bearer tokens on the mutating endpoint.
    let sync = format!("{base}/api/v1/targets/dev/sync");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("x:{LEAK_API_TOKEN}"),
    );
    let bearer_cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no Authorization", vec![]),
        ("empty bearer", vec![("Authorization", "Bearer ".into())]),
        (
            "wrong token",
            vec![("Authorization", "Bearer not-the-token".into())],
        ),
        (
            "token with a suffix",
            vec![("Authorization", format!("Bearer {LEAK_API_TOKEN}x"))],
        ),
        (
            "token prefix",
            vec![(
                "Authorization",
                format!("Bearer {}", &LEAK_API_TOKEN[..LEAK_API_TOKEN.len() - 1]),
            )],
        ),
        (
            "basic auth with the token",
            vec![("Authorization", format!("Basic {basic}"))],
        ),
        (
            "token in another header",
            vec![("X-Api-Token", LEAK_API_TOKEN.into())],
        ),
    ];
    for (name, headers) in &bearer_cases {
        let (code, answer) = http("POST", &sync, headers, "").expect("sync");
        evidence.add(format!("sync answer ({name})"), &answer);
        if code != 401 && code != 403 {
            failures.push(format!(
                "sync with {name}: HTTP {code}, expected 401: {answer}"
            ));
        }
    }
    let (code, answer) =
        http("POST", &format!("{sync}?token={LEAK_API_TOKEN}"), &[], "").expect("sync");
    if code != 401 && code != 403 {
        failures.push(format!(
            "sync with the token in the query: HTTP {code}: {answer}"
        ));
    }
    let (code, answer) = http(
        "POST",
        &sync,
        &[("Authorization", format!("Bearer {LEAK_API_TOKEN}"))],
        "",
    )
    .expect("sync");
    evidence.add("sync answer (valid)", &answer);
    if !(200..300).contains(&code) {
        failures.push(format!("sync with the right token: HTTP {code}: {answer}"));
    }

    // A second commit: an upgrade with a savepoint, so the journal has intents and outcomes.
    let second = repo.commit_tree("more CUs", &tree(3));
    setup.wait_for(
        &mut daemon,
        "the second commit to converge",
        Duration::from_secs(120),
        |status| synced_at(status, &second),
    );
    for path in [
        "/",
        "/metrics",
        "/healthz",
        "/readyz",
        "/api/v1/targets",
        "/api/v1/targets/dev",
        "/api/v1/targets/probe",
    ] {
        let (code, body) = http("GET", &format!("{base}{path}"), &[], "").expect("GET");
        evidence.add(format!("GET {path} (HTTP {code})"), &body);
    }
    let exit = daemon.terminate();
    if !exit.success() {
        failures.push(format!("the daemon exited with {exit}"));
    }
    let daemon_log = std::fs::read(dir.join("daemon-secrets.log")).unwrap_or_default();
    if daemon_log.is_empty() {
        failures.push("the daemon wrote no log at all".to_string());
    }
    evidence.add("daemon stderr", &daemon_log);

    // The CLI, once with the right secrets and once with a wrong secret key.
    let state_dir = dir.join("state");
    let state_arg = state_dir.to_str().expect("utf-8").to_string();
    let config_arg = setup.config.to_str().expect("utf-8").to_string();
    for (name, args, secret_key) in [
        (
            "journal show",
            vec!["journal", "show", "--state-dir", &state_arg],
            LEAK_SECRET_KEY,
        ),
        (
            "journal show --json",
            vec!["journal", "show", "--json", "--state-dir", &state_arg],
            LEAK_SECRET_KEY,
        ),
        (
            "journal verify",
            vec!["journal", "verify", "--state-dir", &state_arg],
            LEAK_SECRET_KEY,
        ),
        (
            "plan",
            vec!["plan", "--config", &config_arg, "--target", "dev"],
            LEAK_SECRET_KEY,
        ),
        (
            "plan with a wrong secret key",
            vec!["plan", "--config", &config_arg, "--target", "dev"],
            LEAK_WRONG_SECRET_KEY,
        ),
        (
            "plan for the target whose source fails",
            vec!["plan", "--config", &config_arg, "--target", "probe"],
            LEAK_SECRET_KEY,
        ),
    ] {
        let mut command = setup.command(&args);
        command
            .env("REL_SK", secret_key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = command.output().expect("CLI runs");
        evidence.add(format!("`{name}` stdout"), &output.stdout);
        evidence.add(format!("`{name}` stderr"), &output.stderr);
        if name == "plan with a wrong secret key" && output.status.success() {
            failures.push("plan succeeded with a wrong secret key".to_string());
        }
    }
    evidence.add_tree(&state_dir);
    evidence.add(
        "config file",
        std::fs::read(&setup.config).unwrap_or_default(),
    );

    let secrets = [
        ("secret key", LEAK_SECRET_KEY),
        ("wrong secret key", LEAK_WRONG_SECRET_KEY),
        ("API token", LEAK_API_TOKEN),
        ("webhook secret", LEAK_WEBHOOK_SECRET),
        ("git token", LEAK_GIT_TOKEN),
    ];
    failures.extend(evidence.leaks(&secrets));
    assert!(
        evidence.places.len() > 30,
        "too little evidence gathered: {}",
        evidence.places.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A webhook case: name, headers, body, the status codes that are right.
type WebhookCase<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, &'a [u16]);

fn nested(depth: usize) -> Vec<u8> {
    let mut body = vec![b'['; depth];
    body.extend(std::iter::repeat_n(b']', depth));
    body
}

/// The CLI with known secrets: `plan`, `apply`, `journal show`/`verify` with the right keys,
/// `plan` with a wrong secret key, and `plan` for a target whose https git source (with a
/// token) cannot be reached. No secret appears in any output or any file of the state
/// directory.
#[test]
fn secrets_never_leak_from_the_commands() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let emulator = EmulatorProcess::start(dir, &leak_emulator_yaml(""));
    let repo = JobsRepo::init(&dir.join("jobs-repo"));
    repo.commit_tree(
        "two jobs",
        &[
            ("flink/clicks.yaml".to_string(), job_yaml("clicks", 2)),
            ("flink/views.yaml".to_string(), job_yaml("views", 2)),
            (
                "environments/dev.yaml".to_string(),
                ENVIRONMENT_YAML.to_string(),
            ),
        ],
    );
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
    add_probe_target(&setup);
    let mut evidence = Evidence { places: Vec::new() };
    let mut failures = Vec::new();
    let state = dir.join("state").to_str().expect("utf-8").to_string();
    let config = setup.config_arg();
    let commands: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "plan",
            vec!["plan", "--config", &config, "--target", "dev"],
            LEAK_SECRET_KEY,
        ),
        (
            "apply",
            vec![
                "apply",
                "--config",
                &config,
                "--target",
                "dev",
                "--auto-approve",
            ],
            LEAK_SECRET_KEY,
        ),
        (
            "apply again",
            vec![
                "apply",
                "--config",
                &config,
                "--target",
                "dev",
                "--auto-approve",
            ],
            LEAK_SECRET_KEY,
        ),
        (
            "plan --json",
            vec!["plan", "--config", &config, "--target", "dev", "--json"],
            LEAK_SECRET_KEY,
        ),
        (
            "plan with a wrong secret key",
            vec!["plan", "--config", &config, "--target", "dev"],
            LEAK_WRONG_SECRET_KEY,
        ),
        (
            "apply with a wrong secret key",
            vec![
                "apply",
                "--config",
                &config,
                "--target",
                "dev",
                "--auto-approve",
            ],
            LEAK_WRONG_SECRET_KEY,
        ),
        (
            "plan for the unreachable https source",
            vec!["plan", "--config", &config, "--target", "probe"],
            LEAK_SECRET_KEY,
        ),
        (
            "journal show",
            vec!["journal", "show", "--state-dir", &state],
            LEAK_SECRET_KEY,
        ),
        (
            "journal show --json",
            vec!["journal", "show", "--json", "--state-dir", &state],
            LEAK_SECRET_KEY,
        ),
        (
            "journal verify",
            vec!["journal", "verify", "--state-dir", &state],
            LEAK_SECRET_KEY,
        ),
    ];
    for (name, args, secret_key) in &commands {
        let (code, stdout, stderr) = setup.run_cli(args, &[("REL_SK", secret_key)]);
        evidence.add(format!("`{name}` stdout"), &stdout);
        evidence.add(format!("`{name}` stderr"), &stderr);
        let wrong = name.contains("wrong secret key") || name.contains("unreachable");
        if wrong && code == Some(0) {
            failures.push(format!("`{name}` succeeded"));
        }
        if !wrong && code != Some(0) && code != Some(2) {
            failures.push(format!(
                "`{name}` exited {code:?}:\n{}",
                tail(&format!("{stdout}{stderr}"), 20)
            ));
        }
    }
    evidence.add_tree(&dir.join("state"));
    let secrets = [
        ("secret key", LEAK_SECRET_KEY),
        ("wrong secret key", LEAK_WRONG_SECRET_KEY),
        ("API token", LEAK_API_TOKEN),
        ("webhook secret", LEAK_WEBHOOK_SECRET),
        ("git token", LEAK_GIT_TOKEN),
    ];
    failures.extend(evidence.leaks(&secrets));
    assert!(
        evidence.places.len() > 20,
        "too little evidence: {}",
        evidence.places.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Adds a second source, over https with a token, at a closed loopback port, and a target
/// `probe` that reads it: its fetch fails, and the token must not appear in the failure.
fn add_probe_target(setup: &DaemonSetup) {
    let closed = free_port();
    let mut config = std::fs::read_to_string(&setup.config).expect("config");
    config = config.replace(
        "targets:\n",
        &format!(
            "  remote:\n    git: {{url: \"https://127.0.0.1:{closed}/data/jobs.git\", branch: main, poll_interval: 1s, token_env: REL_GIT_TOKEN}}\ntargets:\n"
        ),
    );
    let probe_target = config
        .split_once("targets:\n")
        .expect("targets")
        .1
        .replace("name: dev", "name: probe")
        .replace("source: jobs", "source: remote")
        .replace(
            "staging: obs://dli-gitops-staging/dev/",
            "staging: obs://dli-gitops-staging/probe/",
        )
        .replace(
            "backups: obs://dli-gitops-backups/dev/",
            "backups: obs://dli-gitops-backups/probe/",
        );
    config.push_str(&probe_target);
    std::fs::write(&setup.config, &config).expect("config with probe");
}
