//! A hostile job repository on disk, refused with every problem and no leak.

use super::*;

// ---------------------------------------------------------------------------------------------
// Hostile job repositories on disk, through the real binary

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A copy of the example repository with real hostile entries: job files that reference a
/// symlink to a secret outside the repository, a file over the size limit, a named pipe and a
/// path that climbs out; a symlink loop; a directory nested 1000 levels deep. `validate` must
/// finish, fail with every problem named, and never print the secret.
#[test]
fn hostile_repository_on_disk_is_refused_with_every_problem_and_no_leak() {
    let temp = tempfile::tempdir().expect("temp dir");
    let repo = temp.path().join("repo");
    copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs"),
        &repo,
    );
    let marker = "TOP-SECRET-MARKER-5b1c0e";
    let outside = temp.path().join("outside-secret.txt");
    std::fs::write(&outside, format!("{marker}\n")).expect("write secret");
    let flink = repo.join("flink");
    std::os::unix::fs::symlink(&outside, flink.join("stolen.sql")).expect("symlink");
    std::os::unix::fs::symlink("../../outside-secret.txt", flink.join("relative.sql"))
        .expect("relative symlink");
    std::os::unix::fs::symlink(".", flink.join("loop")).expect("loop symlink");
    let huge = std::fs::File::create(flink.join("huge.sql")).expect("huge file");
    huge.set_len(5 * 1024 * 1024).expect("grow huge file");
    let fifo = flink.join("pipe.sql");
    let made_fifo = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|status| status.success());
    let mut deep = repo.join("deep");
    for _ in 0..1000 {
        deep.push("d");
    }
    // Paths this long fail in some tools; the walk must report or skip them, not crash.
    let deep_made = std::fs::create_dir_all(&deep).is_ok();
    if deep_made {
        let _ = std::fs::write(deep.join("job.yaml"), "kind: FlinkSqlJob\nname: deep\n");
    }
    let jobs = [
        ("stolen", "stolen.sql"),
        ("relative", "relative.sql"),
        ("huge", "huge.sql"),
        ("piped", "pipe.sql"),
        ("climber", "../../outside-secret.txt"),
    ];
    for (name, sql_file) in jobs {
        std::fs::write(
            flink.join(format!("{name}.yaml")),
            format!(
                "kind: FlinkSqlJob\nname: {name}\nqueue_name: q\nsql_file: {sql_file}\ndesired_state: running\n"
            ),
        )
        .expect("write job");
    }

    let (code, stdout, stderr) = run_binary(
        &["validate", "--repo", repo.to_str().expect("utf-8 path")],
        Duration::from_secs(120),
    );
    let all = format!("{stdout}\n{stderr}");
    assert!(
        !all.contains(marker),
        "the secret outside the repository leaked:\n{all}"
    );
    assert_ne!(code, Some(0), "a hostile repository validated:\n{all}");
    assert!(code.is_some(), "validate was killed by a signal:\n{all}");
    if deep_made {
        assert!(
            all.contains("/d/d/d/job.yaml"),
            "the job file 1000 directories down was not read:\n{all}"
        );
    }
    for (name, _) in jobs {
        if name == "piped" && !made_fifo {
            continue;
        }
        assert!(
            all.contains(&format!("flink/{name}.yaml")),
            "no problem reported for flink/{name}.yaml:\n{all}"
        );
    }
    if made_fifo {
        assert!(
            all.contains("`flink/pipe.sql` is not a regular file (it is a named pipe)"),
            "the named pipe was not reported as what it is:\n{all}"
        );
    }
}
