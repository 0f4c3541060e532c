//! Planning 1,000 and 10,000 jobs (the goal: 10,000 jobs planned in under 100 ms after
//! parsing). The jobs are the `bench` example's workload, resolved once up front, so the figure
//! is the planner's alone: no parsing, no I/O.
//! Run: `cargo bench --bench plan_scale` (see BENCHMARKS.md for the profile used on shared
//! machines).

#[path = "../examples/bench/workload.rs"]
mod workload;

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dli_gitops::model::ObservedJobs;
use dli_gitops::plan::{self, JournalView, PlanPolicy};

fn plan_scale(criterion: &mut Criterion) {
    let policy = PlanPolicy::default();
    let mut group = criterion.benchmark_group("plan");
    group.sample_size(10);
    for jobs in [1_000usize, 10_000] {
        let desired = workload::desired_jobs(jobs);
        let view = workload::managed_view(&desired);
        let scenarios = [
            // Steady state: every job live, equal, managed.
            ("no_change", workload::live_twin(&desired), view.clone()),
            // One job in a hundred drifted (half need a restart, half an update in place).
            (
                "one_percent_drift",
                workload::live_with_drift(&desired),
                view.clone(),
            ),
            // A fresh target: everything is created.
            (
                "all_create",
                ObservedJobs::default(),
                JournalView::default(),
            ),
        ];
        for (scenario, observed, view) in &scenarios {
            // One plain measurement printed up front, so the figure shows even with `--test`.
            let started = Instant::now();
            let planned = plan::plan(&desired, observed, view, &policy);
            println!(
                "plan/{scenario}/{jobs}: {} actions, {} changes, {:?} (single run)",
                planned.actions.len(),
                planned.changes().count(),
                started.elapsed()
            );
            group.bench_with_input(BenchmarkId::new(*scenario, jobs), &jobs, |bencher, _| {
                bencher.iter(|| {
                    black_box(plan::plan(
                        black_box(&desired),
                        black_box(observed),
                        black_box(view),
                        &policy,
                    ))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, plan_scale);
criterion_main!(benches);
