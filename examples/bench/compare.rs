//! The side-by-side: dli-gitops, the full-sync script and the per-resource (Terraform-style)
//! tool run the same four cycles against the same emulator and jobs, each reading git first:
//!
//! 1. no change;
//! 2. a no-op commit (one job file reformatted: a comment, nothing else);
//! 3. one job's hot field changed (`restart_when_exception`, no restart needed);
//! 4. one job's cold field changed (`cu_number`, a restart).
//!
//! Each tool changes jobs of its own, so every tool starts each cycle from a converged state.
//! The no-change cycle of dli-gitops is also the "no-change reconcile" figure.

use std::path::Path;

use super::env::{Delta, TestBed, measure};
use super::report::{Report, Row, format_bytes, format_duration_ms, ratio};
use super::{baselines, ours, workload};
use dli_gitops::cloud::ClientOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    DliGitops,
    PerResource,
    FullSync,
}

impl Tool {
    const ALL: [Tool; 3] = [Tool::DliGitops, Tool::PerResource, Tool::FullSync];

    fn name(self) -> &'static str {
        match self {
            Tool::DliGitops => "dli-gitops",
            Tool::PerResource => "(b) per-resource",
            Tool::FullSync => "(a) full sync",
        }
    }

    fn offset(self) -> usize {
        match self {
            Tool::DliGitops => 0,
            Tool::PerResource => 1,
            Tool::FullSync => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cycle {
    NoChange,
    NoOpCommit,
    HotChange,
    ColdChange,
}

impl Cycle {
    const ALL: [Cycle; 4] = [
        Cycle::NoChange,
        Cycle::NoOpCommit,
        Cycle::HotChange,
        Cycle::ColdChange,
    ];

    fn name(self) -> &'static str {
        match self {
            Cycle::NoChange => "no change",
            Cycle::NoOpCommit => "no-op commit",
            Cycle::HotChange => "1 job, hot field",
            Cycle::ColdChange => "1 job, cold field",
        }
    }

    /// Edits the repository for this cycle, on a job that belongs to `tool`.
    fn edit(self, repo: &Path, jobs: usize, tool: Tool) -> Result<(), String> {
        // Indices that are multiples of 4 are SQL jobs with an SQL file; spread them out.
        let index = |slot: usize| (4 * (3 * slot + tool.offset())) % jobs.max(1);
        let (job, text) = match self {
            Cycle::NoChange => return Ok(()),
            Cycle::NoOpCommit => {
                let job = index(1);
                (
                    job,
                    format!(
                        "# Reformatted by the benchmark: the same job.\n{}\n",
                        workload::job_yaml(job, 0, 0)
                    ),
                )
            }
            Cycle::HotChange => {
                let job = index(2);
                (job, workload::job_yaml(job, 1, 0))
            }
            Cycle::ColdChange => {
                let job = index(3);
                (job, workload::job_yaml(job, 0, 1))
            }
        };
        let path = repo.join(workload::job_file(job));
        std::fs::write(&path, text).map_err(|error| format!("editing {}: {error}", path.display()))
    }
}

/// Client options for the baselines: the product's defaults with the same rate limit the
/// dli-gitops target gets from its config.
pub fn baseline_client_options(requests_per_second: f64, burst: u32) -> ClientOptions {
    ClientOptions {
        requests_per_second,
        burst,
        ..ClientOptions::default()
    }
}

/// Runs every tool through every cycle and reports the figures and their ratios.
pub async fn run(
    bed: &TestBed,
    requests_per_second: f64,
    burst: u32,
    target_extra: &str,
    report: &mut Report,
) -> Result<(), String> {
    let jobs = bed.jobs;
    let latency = bed.profile.latency_ms;

    let client = bed.dli_client(baseline_client_options(requests_per_second, burst))?;
    let state: baselines::ResourceState = bed
        .desired
        .flink
        .iter()
        .zip(&bed.job_ids)
        .map(|(job, id)| (job.name.clone(), *id))
        .collect();
    let mut results: Vec<(Tool, Cycle, Delta)> = Vec::new();
    let mut context = None;
    // dli-gitops goes last: the full sync restarts every job, which moves every job's
    // `update_time` and so empties dli-gitops's detail cache; last, its cache is warm for the
    // daemon section that follows.
    for tool in [Tool::FullSync, Tool::PerResource, Tool::DliGitops] {
        if tool == Tool::DliGitops {
            let config_directory = bed.directory.path().join("ours");
            std::fs::create_dir_all(&config_directory)
                .map_err(|error| format!("creating {}: {error}", config_directory.display()))?;
            let config_path =
                ours::write_config(&config_directory, bed.repo(), bed, "", "", target_extra)?;
            let opened = ours::open_target(&config_path).await?;
            let context = context.insert(opened);
            // Adoption first: every live job untagged, another empty journal.
            adoption(bed, target_extra, report).await?;
            // The first pass finds no cached observation in a fresh journal: it reads every
            // job's configuration from the listing and every job's tags in bulk.
            let (first, first_delta) = measure(bed, ours::pass(context)).await?;
            let cold_goal = cold_read_goal(jobs);
            report.check(
                format!(
                    "first contact with {jobs} jobs (empty journal) makes {} calls (goal ≤ {cold_goal}: ⌈jobs/100⌉ list pages + ⌈jobs/1000⌉ tag pages)",
                    first_delta.total_calls()
                ),
                first_delta.total_calls() <= cold_goal,
            );
            report.push(Row::new(
                "reconcile",
                "first pass, empty detail cache",
                format!("{} calls", first_delta.total_calls()),
                "",
                format!(
                    "{} jobs observed, {} changes; {}; {}",
                    jobs,
                    first.plan.changes().count(),
                    format_duration_ms(first_delta.wall.as_secs_f64() * 1000.0),
                    first_delta.describe_calls()
                ),
            ));
        }
        for (number, cycle) in Cycle::ALL.into_iter().enumerate() {
            cycle.edit(bed.repo(), jobs, tool)?;
            let repo = bed.repo().to_path_buf();
            let (_, delta) = match tool {
                Tool::DliGitops => {
                    let context = context
                        .as_ref()
                        .ok_or("the dli-gitops target was not opened")?;
                    let (applied, delta) = measure(bed, ours::pass(context)).await?;
                    if matches!(cycle, Cycle::HotChange | Cycle::ColdChange) {
                        let (_, look) = measure(bed, ours::confirm(context, &applied)).await?;
                        confirm_row(report, cycle, &delta, &look, applied.results.len());
                    }
                    ((), delta)
                }
                Tool::PerResource => {
                    measure(bed, async {
                        let desired = read_git(&repo)?;
                        baselines::per_resource_cycle(&client, &state, &desired).await?;
                        Ok(())
                    })
                    .await?
                }
                Tool::FullSync => {
                    measure(bed, async {
                        let desired = read_git(&repo)?;
                        baselines::full_sync_cycle(&client, &desired, number as u32).await
                    })
                    .await?
                }
            };
            println!(
                "  {:<18} {:<18} {:>6} calls {:>12} {:>10} {:>5} restarts   {}",
                tool.name(),
                cycle.name(),
                delta.total_calls(),
                format_bytes(delta.bytes),
                format_duration_ms(delta.wall.as_secs_f64() * 1000.0),
                delta.restarts,
                delta.describe_calls()
            );
            results.push((tool, cycle, delta));
        }
    }
    if let Some(context) = context {
        context.shutdown().await;
    }

    let find = |tool: Tool, cycle: Cycle| {
        results
            .iter()
            .find(|(t, c, _)| *t == tool && *c == cycle)
            .map(|(_, _, delta)| delta.clone())
            .unwrap_or_default()
    };

    let steady = find(Tool::DliGitops, Cycle::NoChange);
    let list_goal = jobs.div_ceil(100);
    let detail_calls = steady.calls_of("ShowFlinkJob")
        + steady.calls_of("ListFlinkJobTags")
        + steady.calls_of("ListResourcesByTags");
    report.push(Row::new(
        "reconcile, no change",
        "list calls",
        steady.calls_of("ListFlinkJobs").to_string(),
        format!("{list_goal} (⌈jobs/100⌉)"),
        format!("{jobs} live jobs, {latency} ms per call"),
    ));
    report.push(Row::new(
        "reconcile, no change",
        "detail calls",
        detail_calls.to_string(),
        "0",
        "ShowFlinkJob + ListFlinkJobTags + ListResourcesByTags",
    ));
    report.push(Row::new(
        "reconcile, no change",
        "all API calls",
        steady.total_calls().to_string(),
        "",
        steady.describe_calls(),
    ));
    report.push(Row::new(
        "reconcile, no change",
        "wall time",
        format_duration_ms(steady.wall.as_secs_f64() * 1000.0),
        "",
        format!(
            "read git + observe + plan; emulator latency ≈ {} of it ({} calls × {latency} ms, sequential)",
            format_duration_ms((steady.total_calls() * latency) as f64),
            steady.total_calls()
        ),
    ));

    report.check(
        format!(
            "no-change reconcile of {jobs} jobs makes {} list calls (goal ≤ {list_goal}) and {detail_calls} detail calls (goal 0)",
            steady.calls_of("ListFlinkJobs")
        ),
        steady.calls_of("ListFlinkJobs") <= list_goal as u64 && detail_calls == 0,
    );
    let per_resource = find(Tool::PerResource, Cycle::NoChange);
    report.check(
        format!(
            "no-change cycle: (b) per-resource makes {} calls, dli-gitops {} (goal: at least 10× fewer)",
            per_resource.total_calls(),
            steady.total_calls()
        ),
        steady.total_calls() * 10 <= per_resource.total_calls(),
    );
    for cycle in [Cycle::NoChange, Cycle::NoOpCommit, Cycle::HotChange] {
        let restarts = find(Tool::DliGitops, cycle).restarts;
        report.check(
            format!(
                "{}: dli-gitops restarted {restarts} jobs (goal 0)",
                cycle.name()
            ),
            restarts == 0,
        );
    }
    let cold = find(Tool::DliGitops, Cycle::ColdChange).restarts;
    report.check(
        format!("1 job, cold field: dli-gitops restarted {cold} jobs (goal 1, the changed one)"),
        cold == 1,
    );

    for cycle in Cycle::ALL {
        for tool in Tool::ALL {
            let delta = find(tool, cycle);
            report.push(Row::new(
                &format!("side by side: {}", cycle.name()),
                tool.name(),
                format!("{} calls", delta.total_calls()),
                "",
                format!(
                    "{}, {}, {} restarts; {}",
                    format_bytes(delta.bytes),
                    format_duration_ms(delta.wall.as_secs_f64() * 1000.0),
                    delta.restarts,
                    delta.describe_calls()
                ),
            ));
        }
        let ours = find(Tool::DliGitops, cycle);
        for baseline in [Tool::PerResource, Tool::FullSync] {
            let theirs = find(baseline, cycle);
            let goal = match (cycle, baseline) {
                (Cycle::NoChange, Tool::PerResource) => "calls ≥ 10×",
                (Cycle::NoOpCommit, _) => "0 restarts for dli-gitops",
                _ => "",
            };
            report.push(Row::new(
                &format!("side by side: {}", cycle.name()),
                &format!("{} ÷ dli-gitops", baseline.name()),
                format!(
                    "{} calls",
                    ratio(theirs.total_calls() as f64, ours.total_calls() as f64)
                ),
                goal,
                format!(
                    "bytes {}, wall {}, restarts {} vs {}",
                    ratio(theirs.bytes as f64, ours.bytes as f64),
                    ratio(theirs.wall.as_secs_f64(), ours.wall.as_secs_f64()),
                    theirs.restarts,
                    ours.restarts
                ),
            ));
        }
    }
    Ok(())
}

/// Reads of a cold observation: ⌈jobs/100⌉ list pages and ⌈jobs/1000⌉ bulk tag pages.
fn cold_read_goal(jobs: usize) -> u64 {
    (jobs.div_ceil(100) + jobs.div_ceil(1000)) as u64
}

/// The confirming look after a change (what the daemon does after a pass that acted) and the
/// change's whole cost: the applying pass plus the changed jobs' reads.
fn confirm_row(report: &mut Report, cycle: Cycle, applied: &Delta, look: &Delta, changed: usize) {
    report.push(Row::new(
        &format!("per change: {}", cycle.name()),
        "calls, applying pass + confirming look",
        format!("{}", applied.total_calls() + look.total_calls()),
        "pass + changed jobs' reads",
        format!(
            "pass {} ({}); look {} ({})",
            applied.total_calls(),
            applied.describe_calls(),
            look.total_calls(),
            look.describe_calls()
        ),
    ));
    let reads = (2 * changed) as u64;
    report.check(
        format!(
            "{}: the confirming look makes {} calls, {} of them list pages (goal: no list page, ≤ {reads}: the changed job's detail and tags)",
            cycle.name(),
            look.total_calls(),
            look.calls_of("ListFlinkJobs")
        ),
        look.calls_of("ListFlinkJobs") == 0 && look.total_calls() <= reads,
    );
}

/// Adoption: the dli-gitops target's jobs lose their `managed-by` tag (outside the count), then
/// a target with an empty journal takes them over in one pass: the cold observation's reads and
/// one tag write per job.
async fn adoption(bed: &TestBed, target_extra: &str, report: &mut Report) -> Result<(), String> {
    use futures::StreamExt;
    let jobs = bed.jobs;
    let fast = bed.dli_client(baseline_client_options(10_000.0, 10_000))?;
    let fast = &fast;
    let key = vec![dli_gitops::model::MANAGED_TAG_KEY.to_string()];
    let key = &key;
    let stripped: Vec<Result<(), String>> =
        futures::stream::iter(bed.job_ids.iter().map(|id| async move {
            fast.delete_job_tags(*id, key)
                .await
                .map_err(|error| format!("untagging job {id}: {error}"))
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    stripped.into_iter().collect::<Result<Vec<()>, String>>()?;
    let directory = bed.directory.path().join("adopt");
    std::fs::create_dir_all(&directory)
        .map_err(|error| format!("creating {}: {error}", directory.display()))?;
    let config_path = ours::write_config(&directory, bed.repo(), bed, "", "", target_extra)?;
    let adopting = ours::open_target(&config_path).await?;
    let (adopted, delta) = measure(bed, ours::pass(&adopting)).await?;
    adopting.shutdown().await;
    let writes = delta.calls_of("CreateFlinkJobTags");
    let reads = delta.total_calls() - writes;
    report.push(Row::new(
        "adoption",
        &format!("calls to adopt {jobs} untagged jobs"),
        format!("{}", delta.total_calls()),
        format!("≤ {} + {jobs} tag writes", cold_read_goal(jobs)),
        format!(
            "{} actions; {}; {}",
            adopted.results.len(),
            format_duration_ms(delta.wall.as_secs_f64() * 1000.0),
            delta.describe_calls()
        ),
    ));
    report.check(
        format!(
            "adopting {jobs} jobs makes {reads} reads (goal ≤ {}) and {writes} tag writes (goal {jobs})",
            cold_read_goal(jobs)
        ),
        reads <= cold_read_goal(jobs) && writes == jobs as u64,
    );
    Ok(())
}

fn read_git(repo: &Path) -> Result<dli_gitops::model::DesiredJobs, String> {
    let snapshot = dli_gitops::desired::read_directory(repo).map_err(|error| error.to_string())?;
    dli_gitops::desired::resolve(&snapshot, Some(workload::ENVIRONMENT))
        .map_err(|diagnostics| format!("the repository does not resolve:\n{diagnostics}"))
}
