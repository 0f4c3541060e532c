//! Retention and garbage collection against the in-process emulator: a job upgraded several
//! times leaves savepoint copies in the catalog and backups per apply; retention deletes exactly
//! the ones it should (never the copy the job resumes from), a dry run deletes nothing, a second
//! collection deletes nothing twice, and a journal edited to name a path outside our prefixes
//! deletes nothing there and says so.

mod support;

use std::path::{Path, PathBuf};

use dli_gitops::config::Config;
use dli_gitops::emulator::EmulatorConfig;
use dli_gitops::journal::{RecordBody, SavepointRecord};

use support::target::Harness;

impl Harness {
    async fn start(retention: &str) -> Harness {
        Harness::over_emulator(
            EmulatorConfig::for_tests(PathBuf::new()),
            &format!("    retention: {{{retention}}}\n"),
        )
        .await
    }

    /// The emulator's file for an `obs://bucket/key` path.
    fn on_disk(&self, path: &str) -> PathBuf {
        let rest = path.trim_start_matches("obs://");
        self.dir.path().join("emulator/obs").join(rest)
    }

    fn catalog_paths(&self) -> Vec<String> {
        let state = self.context().ledger.journal.state();
        dli_gitops::savepoints::catalog(&state, Some("dev"), None)
            .into_iter()
            .map(|entry| entry.path().to_string())
            .collect()
    }

    fn backup_zips(&self) -> Vec<String> {
        let state = self.context().ledger.journal.state();
        state.targets["dev"]
            .backups
            .iter()
            .flat_map(|entry| entry.zip_paths.clone())
            .collect()
    }
}

fn exists(path: &Path) -> bool {
    path.exists()
}

/// Four definitions of `orders` (a create and three upgrades): copies and backups pile up.
async fn history(harness: &Harness) {
    for version in 1..=4 {
        harness.flink_sql_job("orders", &format!("SELECT {version} AS v;"));
        harness.apply_converged().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_what_it_should_and_a_dry_run_deletes_nothing() {
    let harness = Harness::start("savepoints: {keep: 2, max_age: 0s}, backups: {keep: 1}").await;
    history(&harness).await;
    let copies = harness.catalog_paths();
    let zips = harness.backup_zips();
    assert!(copies.len() >= 4, "three upgrades made copies: {copies:#?}");
    assert_eq!(zips.len(), 3, "three upgrades took backups: {zips:#?}");
    for path in copies.iter() {
        assert!(
            exists(&harness.on_disk(&format!("{path}_metadata"))),
            "{path}"
        );
    }

    // A dry run says what would go and deletes nothing.
    let dry = dli_gitops::gc::collect(harness.context(), true)
        .await
        .expect("gc dry run");
    assert!(dry.dry_run);
    assert!(!dry.deleted.is_empty());
    assert_eq!(harness.catalog_paths(), copies);
    assert_eq!(harness.backup_zips(), zips);
    for path in &copies {
        assert!(exists(&harness.on_disk(&format!("{path}_metadata"))));
    }
    for zip in &zips {
        assert!(exists(&harness.on_disk(zip)));
    }

    // The real run deletes exactly that: every copy but the two newest (and the one the job
    // resumes from, which is among them), and the backups of the two older applies.
    let state = harness.context().ledger.journal.state();
    let resume = state.targets["dev"].jobs["orders"]
        .savepoint_path
        .clone()
        .expect("the job resumes from a savepoint");
    let report = dli_gitops::gc::collect(harness.context(), false)
        .await
        .expect("gc");
    assert!(
        report.failed.is_empty() && report.refused.is_empty(),
        "{report:#?}"
    );
    let deleted: Vec<String> = report
        .deleted
        .iter()
        .map(|item| item.path.clone())
        .collect();
    assert_eq!(
        deleted,
        dry.deleted
            .iter()
            .map(|item| item.path.clone())
            .collect::<Vec<_>>()
    );
    let kept_copies: Vec<String> = copies[copies.len() - 2..].to_vec();
    let expected: Vec<String> = copies[..copies.len() - 2]
        .iter()
        .cloned()
        .chain(zips[..2].iter().cloned())
        .collect();
    let mut sorted_deleted = deleted.clone();
    sorted_deleted.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert_eq!(sorted_deleted, sorted_expected, "{}", report.render_text());
    assert!(
        kept_copies
            .iter()
            .any(|path| dli_gitops::savepoints::same_directory(path, &resume)),
        "the copy the job resumes from is kept: {resume} in {kept_copies:?}"
    );
    for path in &deleted {
        let file = if path.ends_with('/') {
            harness.on_disk(&format!("{path}_metadata"))
        } else {
            harness.on_disk(path)
        };
        assert!(!exists(&file), "{path} is still there");
    }
    for path in &kept_copies {
        assert!(
            exists(&harness.on_disk(&format!("{path}_metadata"))),
            "{path} was kept"
        );
    }
    assert!(exists(&harness.on_disk(&zips[2])));
    // The journal forgot what it deleted, and every deletion has its outcome.
    assert_eq!(harness.catalog_paths(), kept_copies);
    assert_eq!(harness.backup_zips(), zips[2..].to_vec());
    assert!(
        harness
            .context()
            .ledger
            .journal
            .pending_intents("dev")
            .is_empty()
    );

    // Nothing is deleted twice.
    let again = dli_gitops::gc::collect(harness.context(), false)
        .await
        .expect("gc again");
    assert!(again.deleted.is_empty(), "{again:#?}");
    assert!(again.finished.is_empty());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_edited_to_point_outside_our_prefix_deletes_nothing_there_and_says_so() {
    let harness = Harness::start("savepoints: {keep: 1, max_age: 0s}, backups: {keep: 5}").await;
    harness.flink_sql_job("orders", "SELECT 1 AS v;");
    harness.apply_converged().await;
    // Objects that are not ours, in our buckets and another.
    let victims = [
        "obs://dli-gitops-backups/dev/precious/",
        "obs://dli-gitops-savepoints/jobs/savepoint/other-team/",
        "obs://dli-gitops-backups/dev/dli-gitops/savepoints/dev/orders/../../../../precious/",
        "obs://dli-gitops-backups/dev/dli-gitops/savepoints/prod/orders/x/",
    ];
    // The `..` one resolves to the first.
    for victim in victims.iter().filter(|victim| !victim.contains("..")) {
        let file = harness.on_disk(&format!("{victim}_metadata"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "not ours").unwrap();
    }
    let journal = &harness.context().ledger.journal;
    for victim in victims {
        journal
            .append(
                "dev",
                RecordBody::Savepoint(SavepointRecord {
                    job: "orders".into(),
                    path: victim.into(),
                    origin: "stop".into(),
                    verified: true,
                    ..SavepointRecord::default()
                }),
            )
            .unwrap();
    }
    // A newer verified copy, so that retention would let the edited ones go.
    journal
        .append(
            "dev",
            RecordBody::Savepoint(SavepointRecord {
                job: "orders".into(),
                path: "obs://dli-gitops-backups/dev/dli-gitops/savepoints/dev/orders/newest-stop/"
                    .into(),
                origin: "stop".into(),
                verified: true,
                ..SavepointRecord::default()
            }),
        )
        .unwrap();
    let report = dli_gitops::gc::collect(harness.context(), false)
        .await
        .expect("gc");
    let refused: Vec<&str> = report.refused.iter().map(|r| r.path.as_str()).collect();
    for victim in victims {
        assert!(refused.contains(&victim), "{victim} refused: {report:#?}");
    }
    assert!(
        report
            .render_text()
            .contains("REFUSED obs://dli-gitops-backups/dev/precious/"),
        "{}",
        report.render_text()
    );
    assert!(
        report
            .deleted
            .iter()
            .all(|item| !victims.contains(&item.path.as_str())),
        "{report:#?}"
    );
    // An open deletion intent edited to point outside our prefix is not followed either.
    journal
        .append(
            "dev",
            RecordBody::Intent(dli_gitops::journal::Intent {
                action_id: "gc-edited-0".into(),
                job: "orders".into(),
                action: dli_gitops::gc::GC_ACTION.into(),
                plan_id: None,
                detail: serde_json::json!({"kind": "savepoint", "path": "obs://dli-gitops-backups/dev/precious/"}),
                extra: Default::default(),
            }),
        )
        .unwrap();
    let resumed = dli_gitops::gc::collect(harness.context(), false)
        .await
        .expect("gc");
    assert!(resumed.finished.is_empty(), "{resumed:#?}");
    assert!(
        resumed
            .failed
            .iter()
            .any(|failure| failure.contains("precious") && failure.contains("not under a prefix")),
        "{resumed:#?}"
    );
    assert!(
        harness
            .context()
            .ledger
            .journal
            .pending_intents("dev")
            .is_empty()
    );
    for file in [
        "obs://dli-gitops-backups/dev/precious/_metadata",
        "obs://dli-gitops-savepoints/jobs/savepoint/other-team/_metadata",
        "obs://dli-gitops-backups/dev/dli-gitops/savepoints/prod/orders/x/_metadata",
    ] {
        assert!(exists(&harness.on_disk(file)), "{file} is untouched");
    }
    harness.stop().await;
}

#[test]
fn retention_that_would_delete_every_savepoint_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "state_dir: state\nsources: {jobs: {path: repo}}\ntargets:\n  - name: dev\n    source: jobs\n    endpoints: {dli: embedded, dlf: embedded, obs: embedded, iam: embedded}\n    retention: {savepoints: {keep: 0, max_age: 0s}}\n",
    )
    .unwrap();
    let error = Config::load(&path)
        .expect_err("keep: 0 is refused")
        .to_string();
    assert!(
        error.contains("targets[0].retention.savepoints.keep"),
        "{error}"
    );
    assert!(error.contains("every savepoint"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_uploads_go_after_their_import_and_nothing_else_in_staging() {
    let harness = Harness::start("backups: {keep: 5}").await;
    let definition = r#"{"name": "nightly", "processType": "BATCH", "nodes": [{"name": "n", "type": "DWSSQL", "properties": [{"name": "statement", "value": "SELECT 1"}]}], "schedule": {"type": "CRON", "cron": {"expression": "0 0 2 * * ?"}}}"#;
    let repo = harness.dir.path().join("repo/dlf");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("nightly.yaml"),
        "kind: DlfJob\nname: nightly\ndefinition_file: nightly.job\n",
    )
    .unwrap();
    std::fs::write(repo.join("nightly.job"), definition).unwrap();
    harness.apply_converged().await;
    let staging = harness.on_disk("obs://dli-gitops-staging/dev/");
    let bundles: Vec<PathBuf> = walk(&staging)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "zip"))
        .collect();
    assert_eq!(bundles.len(), 1, "one DLF bundle uploaded: {bundles:?}");
    // Something in staging that is not a bundle of ours stays.
    let foreign = staging.join("plan-notes/readme.txt");
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::write(&foreign, "keep me").unwrap();

    let dry = dli_gitops::gc::collect(harness.context(), true)
        .await
        .expect("gc dry run");
    assert_eq!(dry.deleted.len(), 1, "{dry:#?}");
    assert_eq!(dry.deleted[0].kind, "staging");
    assert!(bundles[0].exists());
    let report = dli_gitops::gc::collect(harness.context(), false)
        .await
        .expect("gc");
    assert_eq!(report.deleted.len(), 1, "{report:#?}");
    assert!(!bundles[0].exists(), "the bundle is gone");
    assert!(foreign.exists(), "what is not ours stays");
    let again = dli_gitops::gc::collect(harness.context(), false)
        .await
        .expect("gc again");
    assert!(again.deleted.is_empty(), "{again:#?}");
    harness.stop().await;
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_mirrors_of_sources_no_longer_configured_are_deleted_and_nothing_else() {
    let harness = Harness::start("backups: {keep: 5}").await;
    let config = Config::load(&harness.dir.path().join("dli-gitops.yaml")).expect("config");
    let mirrors = config.state_dir.join("mirrors");
    let unused = mirrors.join("git.example.com_data_old.git-0123456789ab");
    let other = mirrors.join("not-a-mirror");
    for dir in [&unused, &other] {
        std::fs::create_dir_all(dir.join("objects")).unwrap();
        std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    }
    let (listed, failed) = dli_gitops::gc::collect_mirrors(&config, true);
    assert!(failed.is_empty());
    assert_eq!(listed, [unused.display().to_string()]);
    assert!(unused.exists(), "a dry run deletes nothing");
    let (deleted, failed) = dli_gitops::gc::collect_mirrors(&config, false);
    assert!(failed.is_empty());
    assert_eq!(deleted, [unused.display().to_string()]);
    assert!(!unused.exists());
    assert!(other.exists(), "a directory without a mirror's name stays");
    harness.stop().await;
}
