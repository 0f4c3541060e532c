//! Parsing and resolving a repository of 10,000 job files (the goal: well under a
//! second). The repository is built in memory so the figure is spec's own, not the disk's.
//! Run: `cargo bench --bench spec_parse`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use dli_gitops::desired::{self, snapshot::RepoFile, snapshot::RepoSnapshot};

const JOB_FILES: usize = 10_000;

fn repository() -> RepoSnapshot {
    let mut snapshot = RepoSnapshot::default();
    let mut add = |path: String, text: String| {
        snapshot
            .files
            .insert(path, RepoFile::Data(text.into_bytes()));
    };
    let mut overrides = String::from("overrides:\n");
    for index in 0..JOB_FILES {
        let team = index % 17;
        let text = match index % 4 {
            // SQL in its own file, with variables in both files.
            0 | 1 => {
                add(
                    format!("flink/team-{team}/job-{index}.sql"),
                    format!(
                        "CREATE TABLE src_{index} (id STRING, ts TIMESTAMP(3)) WITH ('connector' = 'kafka', \
                         'topic' = 'topic-{index}', 'properties.bootstrap.servers' = '${{kafka_brokers}}', 'format' = 'json');\n\
                         CREATE TABLE dst_{index} (id STRING, n BIGINT) WITH ('connector' = 'print');\n\
                         INSERT INTO dst_{index} SELECT id, COUNT(*) FROM src_{index} GROUP BY id;\n"
                    ),
                );
                format!(
                    "kind: FlinkSqlJob\nname: job-{index}\ndesc: Generated job {index}\nqueue_name: ${{flink_queue}}\n\
                     sql_file: job-{index}.sql\nrun_mode: exclusive_cluster\ncu_number: {cu}\nparallel_number: 2\n\
                     checkpoint_enabled: true\ncheckpoint_mode: exactly_once\ncheckpoint_interval: 60\n\
                     obs_bucket: ${{checkpoint_bucket}}\nlog_enabled: true\nflink_version: \"1.15\"\n\
                     runtime_config: {{table.exec.state.ttl: 1h, parallelism.default: 2}}\n\
                     tags: {{team: team-{team}}}\n",
                    cu = 2 + index % 50
                )
            }
            // Inline SQL, several fields in flow style.
            2 => format!(
                "kind: FlinkSqlJob\nname: job-{index}\nqueue_name: ${{flink_queue}}\ncu_number: 4\n\
                 sql_body: |\n  INSERT INTO sink_{index}\n  SELECT * FROM source_{index};\n\
                 restore: {{savepoint_path: \"obs://${{checkpoint_bucket}}/sp/job-{index}/\", nonce: 1}}\n"
            ),
            _ => format!(
                "kind: FlinkJarJob\nname: job-{index}\nqueue_name: ${{flink_queue}}\n\
                 entrypoint: obs://artifacts/job-{index}.jar\nmain_class: com.example.Job{index}\n\
                 dependency_jars: [obs://artifacts/libs/a.jar, obs://artifacts/libs/b.jar]\ncu_number: 8\n\
                 manager_cu_number: 2\nprune: false\n"
            ),
        };
        add(format!("flink/team-{team}/job-{index}.yaml"), text);
        if index % 10 == 0 {
            overrides.push_str(&format!(
                "  job-{index}: {{cu_number: 16, parallel_number: 8}}\n"
            ));
        }
    }
    add(
        "environments/prod.yaml".into(),
        format!(
            "variables: {{flink_queue: prod_flink, checkpoint_bucket: prod-ckpt, kafka_brokers: 'k1:9092,k2:9092'}}\n{overrides}"
        ),
    );
    snapshot.revision = desired::content_revision(&snapshot);
    snapshot
}

fn resolve_ten_thousand_files(criterion: &mut Criterion) {
    let snapshot = repository();
    // One plain measurement printed up front, so the figure shows even with `--quick` runs.
    let started = Instant::now();
    let desired =
        desired::resolve(&snapshot, Some("prod")).expect("the generated repository is valid");
    println!(
        "spec_parse: resolved {} job files ({} jobs, {} files in all) in {:?} (single run)",
        JOB_FILES,
        desired.flink.len(),
        snapshot.files.len(),
        started.elapsed()
    );
    let mut group = criterion.benchmark_group("spec_parse");
    group.sample_size(10);
    group.bench_function("resolve_10000_job_files", |bencher| {
        bencher.iter(|| black_box(desired::resolve(black_box(&snapshot), Some("prod")).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, resolve_ten_thousand_files);
criterion_main!(benches);
