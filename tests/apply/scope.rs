//! What a pass may touch: never another installation's jobs, and only the jobs `--select` names.

use super::*;

/// Two installations on one project, each with `prune: true` and its own repository: neither
/// prunes, adopts or changes the other's jobs; a job both declare is a conflict for the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installations_on_one_project_never_touch_each_others_jobs() {
    let blue = Harness::start_full(
        EmulatorConfig::for_tests(PathBuf::new()),
        "prune: true",
        "",
        "instance: blue\n",
    )
    .await;
    blue.sql_job("blue-job", "queue_name: q1\n");
    blue.sql_job("shared", "queue_name: q1\n");
    blue.apply_converged().await;
    let blue_job = blue.flink_job("blue-job").await;
    assert_eq!(
        blue_job.config.tags.get("managed-by").map(String::as_str),
        Some("dli-gitops.blue")
    );

    // The default installation, on the same emulator and project, with a repository of its own.
    let green_dir = tempfile::tempdir().unwrap();
    let repo = green_dir.path().join("repo");
    std::fs::create_dir_all(repo.join("environments")).unwrap();
    std::fs::create_dir_all(repo.join("flink")).unwrap();
    std::fs::write(repo.join("environments/dev.yaml"), "variables: {}\n").unwrap();
    for name in ["green-job", "shared"] {
        std::fs::write(
            repo.join(format!("flink/{name}.yaml")),
            format!("kind: FlinkSqlJob\nname: {name}\nsql_body: SELECT 1 AS v;\nqueue_name: q1\n"),
        )
        .unwrap();
    }
    let blue_config = std::fs::read_to_string(blue.dir.path().join("dli-gitops.yaml")).unwrap();
    let green_config = blue_config
        .replace("instance: blue\n", "")
        .replace("path: repo", &format!("path: {}", repo.display()))
        .replace(
            "state_dir: state",
            &format!("state_dir: {}", green_dir.path().join("state").display()),
        )
        .replace(
            "access_key_file: ak",
            &format!("access_key_file: {}", blue.dir.path().join("ak").display()),
        )
        .replace(
            "secret_key_file: sk",
            &format!("secret_key_file: {}", blue.dir.path().join("sk").display()),
        );
    let green_path = green_dir.path().join("dli-gitops.yaml");
    std::fs::write(&green_path, green_config).unwrap();
    let config = Config::load(&green_path).expect("green config loads");
    let green = TargetContext::open(&config, "dev")
        .await
        .expect("green opens");
    let report = converge(&green).await;
    let shared = report
        .plan
        .actions
        .iter()
        .find(|action| action.name == "shared")
        .unwrap();
    assert_eq!(
        shared.class,
        ActionClass::None,
        "{}",
        report.plan.render_text()
    );
    assert!(shared.reason.contains("conflict"), "{}", shared.reason);
    assert!(
        !report
            .plan
            .actions
            .iter()
            .any(|action| action.name == "blue-job"),
        "green never plans blue's job: {}",
        report.plan.render_text()
    );
    assert!(blue.is_live("green-job").await);

    // Blue passes again: green's job is not blue's to prune, its own are untouched.
    let again = blue.reconcile(false).await;
    assert!(
        again.plan.is_empty(),
        "blue leaves green's job alone: {}",
        again.plan.render_text()
    );
    assert!(blue.is_live("green-job").await);
    assert!(blue.is_live("blue-job").await);
    assert_eq!(
        blue.flink_job("shared").await.config.tags["managed-by"],
        "dli-gitops.blue"
    );
    blue.stop().await;
}

/// `--select` (globs, repeatable) plans and applies a subset, says what it left out, and does
/// not claim the revision applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_applies_only_the_jobs_it_names() {
    let mut harness = Harness::start().await;
    for name in ["orders-eu", "orders-us", "clicks"] {
        harness.sql_job(name, "queue_name: q1\n");
    }
    harness.context_mut().options.select = vec!["orders-*".into()];
    let report = harness.reconcile(false).await;
    let mut names: Vec<&str> = report
        .plan
        .actions
        .iter()
        .map(|action| action.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["orders-eu", "orders-us"]);
    assert!(
        report
            .plan
            .warnings
            .iter()
            .any(|warning| warning.contains("1 other job(s) with changes are left out")),
        "{:?}",
        report.plan.warnings
    );
    assert!(harness.is_live("orders-eu").await && harness.is_live("orders-us").await);
    assert!(
        !harness.is_live("clicks").await,
        "not selected, not created"
    );
    harness.context_mut().options.select = vec!["cl?cks".into()];
    harness.apply_converged().await;
    assert!(harness.is_live("clicks").await);
    harness.context_mut().options.select = Vec::new();
    harness.assert_in_sync().await;
    harness.stop().await;
}
