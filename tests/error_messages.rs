//! Error messages an operator meets first, through the real binary: each says what is wrong,
//! where, once.

use std::path::Path;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_dli-gitops");

fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(BINARY)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// A copy of the example repository (tests never touch the live `examples/`).
fn example_copy(dir: &Path) -> std::path::PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let repo = dir.join("jobs");
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/example-jobs"),
        &repo,
    );
    repo
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_config_file_that_cannot_be_read_says_the_os_reason() {
    let (ok, text) = run(&[
        "plan",
        "--config",
        "/nonexistent/dli-gitops.yaml",
        "--target",
        "dev",
    ]);
    assert!(!ok);
    assert!(text.contains("/nonexistent/dli-gitops.yaml"), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
}

#[test]
fn validate_of_a_missing_repository_says_the_reason_once() {
    let (ok, text) = run(&["validate", "--repo", "/nonexistent-repository"]);
    assert!(!ok);
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
}

#[test]
fn an_unclosed_flow_collection_is_reported_where_it_was_opened_and_alone() {
    let dir = tempfile::tempdir().unwrap();
    let repo = example_copy(dir.path());
    edit(
        &repo.join("flink/clickstream-agg.yaml"),
        "queue_name: ${flink_queue}",
        "queue_name: [dev_flink",
    );
    let (ok, text) = run(&["validate", "--repo", repo.to_str().unwrap(), "--env", "dev"]);
    assert!(!ok);
    assert!(
        text.contains("flink/clickstream-agg.yaml:4:13: unclosed `[`"),
        "{text}"
    );
    // The override for the job in that file is not reported as an unknown job after it.
    assert!(text.contains("1 problem"), "{text}");
}

#[test]
fn one_wrong_variable_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let repo = example_copy(dir.path());
    edit(
        &repo.join("environments/dev.yaml"),
        "  checkpoint_bucket:",
        "  checkpoint_buckt:",
    );
    let (ok, text) = run(&["validate", "--repo", repo.to_str().unwrap(), "--env", "dev"]);
    assert!(!ok);
    assert!(
        text.contains("unknown variable `${checkpoint_bucket}`")
            && text.contains("did you mean `checkpoint_buckt`?")
            && text.contains("also used at"),
        "{text}"
    );
    assert!(!text.contains("is not an OBS bucket name"), "{text}");
    assert!(text.contains("1 problem"), "{text}");
}

#[test]
fn a_too_short_bucket_name_in_a_job_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let repo = example_copy(dir.path());
    edit(
        &repo.join("environments/dev.yaml"),
        "checkpoint_bucket: dli-gitops-savepoints",
        "checkpoint_bucket: ab",
    );
    let (ok, text) = run(&["validate", "--repo", repo.to_str().unwrap(), "--env", "dev"]);
    assert!(!ok);
    assert!(
        text.contains("`ab` is too short for an OBS bucket name (2 characters"),
        "{text}"
    );
}
