//! Simulation of how targets would be sharded across the replicas of a StatefulSet (the design
//! in `docs/scaling.md`): rendezvous hashing on the target name, against the schemes Argo CD
//! ships (the legacy `hash % replicas` and round-robin over the sorted cluster list) and a
//! consistent-hash ring. Pure computation, no daemon involved.
//!
//! Run: `cargo run --example shard_sim [-- --targets 1000 --max-replicas 10 --seed 7]`.
//!
//! It prints, for each scheme:
//! * the share of targets that move when the replica count goes from N to N+1 and back
//!   (ideal: 1/(N+1) of them, and only to or from the replica that came or went);
//! * how many other targets move when one target is deleted (ideal: none);
//! * the load spread for 3, 5 and 10 replicas, by target count and by jobs (targets have a
//!   heavy-tailed number of jobs, as real accounts do): the busiest replica ÷ the mean.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

struct Arguments {
    targets: usize,
    max_replicas: usize,
    seed: u64,
}

fn arguments() -> Result<Arguments, String> {
    let mut parsed = Arguments {
        targets: 1000,
        max_replicas: 10,
        seed: 7,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--targets" => parsed.targets = value("--targets")? as usize,
            "--max-replicas" => parsed.max_replicas = value("--max-replicas")? as usize,
            "--seed" => parsed.seed = value("--seed")?,
            "-h" | "--help" => {
                println!("shard_sim [--targets N] [--max-replicas R] [--seed S]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if parsed.targets < 2 || parsed.max_replicas < 2 {
        return Err("--targets and --max-replicas must be at least 2".into());
    }
    Ok(parsed)
}

/// A sharding scheme: the replica (0..replicas) that owns `targets[index]`.
trait Scheme {
    fn name(&self) -> &'static str;
    fn assign(&self, targets: &[String], replicas: usize) -> Vec<usize>;
}

/// Ours: each replica scores `sha256(target || 0x00 || replica ordinal)`; the highest score owns
/// the target. The rest of the ranking is the target's fallback order.
struct Rendezvous;

impl Rendezvous {
    fn score(target: &str, replica: usize) -> u64 {
        let mut hasher = Sha256::new();
        hasher.update(target.as_bytes());
        hasher.update([0u8]);
        hasher.update((replica as u64).to_be_bytes());
        let digest = hasher.finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    fn owner(target: &str, replicas: usize) -> usize {
        (0..replicas)
            .max_by_key(|replica| (Self::score(target, *replica), *replica))
            .unwrap_or(0)
    }
}

impl Scheme for Rendezvous {
    fn name(&self) -> &'static str {
        "rendezvous (ours)"
    }
    fn assign(&self, targets: &[String], replicas: usize) -> Vec<usize> {
        targets
            .iter()
            .map(|target| Self::owner(target, replicas))
            .collect()
    }
}

/// Rendezvous with bounded load: every replica reads the same git, so every replica knows each
/// target's job count and computes the same assignment. Targets are placed largest first, each
/// on the highest-ranked replica in its rendezvous order whose jobs stay within
/// `(1 + EPSILON) × mean` (a target larger than that goes where it fits best: the least loaded).
struct BoundedRendezvous<'a> {
    jobs: &'a [u64],
}

impl BoundedRendezvous<'_> {
    const EPSILON: f64 = 0.25;
}

impl Scheme for BoundedRendezvous<'_> {
    fn name(&self) -> &'static str {
        "rendezvous, bounded load 1.25× (ours, by jobs)"
    }
    fn assign(&self, targets: &[String], replicas: usize) -> Vec<usize> {
        let total: u64 = self.jobs.iter().take(targets.len()).sum();
        let cap = (1.0 + Self::EPSILON) * total as f64 / replicas as f64;
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by(|a, b| {
            self.jobs[*b]
                .cmp(&self.jobs[*a])
                .then(targets[*a].cmp(&targets[*b]))
        });
        let mut load = vec![0u64; replicas];
        let mut assignment = vec![0; targets.len()];
        for index in order {
            let weight = self.jobs[index];
            let mut ranking: Vec<usize> = (0..replicas).collect();
            ranking.sort_by_key(|replica| {
                std::cmp::Reverse((Rendezvous::score(&targets[index], *replica), *replica))
            });
            let chosen = ranking
                .iter()
                .copied()
                .find(|replica| (load[*replica] + weight) as f64 <= cap)
                .unwrap_or_else(|| {
                    (0..replicas)
                        .min_by_key(|replica| (load[*replica], *replica))
                        .unwrap_or(0)
                });
            load[chosen] += weight;
            assignment[index] = chosen;
        }
        assignment
    }
}

/// FNV-1a, 32 bits.
fn fnv32a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Argo CD's `legacy` algorithm: `fnv32a(cluster id) % replicas`.
struct Modulo;

impl Scheme for Modulo {
    fn name(&self) -> &'static str {
        "hash % replicas (Argo CD legacy)"
    }
    fn assign(&self, targets: &[String], replicas: usize) -> Vec<usize> {
        targets
            .iter()
            .map(|target| fnv32a(target.as_bytes()) as usize % replicas)
            .collect()
    }
}

/// Argo CD's `round-robin` algorithm: the position in the list sorted by id, modulo replicas.
/// (Argo CD sorts by the cluster Secret's UID, i.e. by a random key; the simulation sorts by a
/// hash of the name for the same effect.)
struct RoundRobin;

impl Scheme for RoundRobin {
    fn name(&self) -> &'static str {
        "round-robin over the sorted list (Argo CD)"
    }
    fn assign(&self, targets: &[String], replicas: usize) -> Vec<usize> {
        let mut order: Vec<(u32, usize)> = targets
            .iter()
            .enumerate()
            .map(|(index, target)| (fnv32a(target.as_bytes()), index))
            .collect();
        order.sort();
        let mut assignment = vec![0; targets.len()];
        for (position, (_, index)) in order.iter().enumerate() {
            assignment[*index] = position % replicas;
        }
        assignment
    }
}

/// A consistent-hash ring with 100 virtual nodes per replica.
struct Ring;

impl Ring {
    const VIRTUAL_NODES: usize = 100;
}

impl Scheme for Ring {
    fn name(&self) -> &'static str {
        "consistent-hash ring, 100 vnodes"
    }
    fn assign(&self, targets: &[String], replicas: usize) -> Vec<usize> {
        let mut ring: BTreeMap<u64, usize> = BTreeMap::new();
        for replica in 0..replicas {
            for node in 0..Self::VIRTUAL_NODES {
                let point = Rendezvous::score(&format!("replica-{replica}"), node);
                ring.insert(point, replica);
            }
        }
        targets
            .iter()
            .map(|target| {
                let point = Rendezvous::score(target, usize::MAX);
                ring.range(point..)
                    .next()
                    .or_else(|| ring.iter().next())
                    .map(|(_, replica)| *replica)
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// Target names as a platform team would write them: project × environment.
fn target_names(count: usize) -> Vec<String> {
    const ENVIRONMENTS: [&str; 3] = ["dev", "staging", "prod"];
    (0..count)
        .map(|index| {
            format!(
                "project-{:03}-{}",
                index / ENVIRONMENTS.len(),
                ENVIRONMENTS[index % ENVIRONMENTS.len()]
            )
        })
        .collect()
}

/// Jobs per target: heavy-tailed (Pareto, shape 1.2, at least 5 jobs, at most 2,000), so a few
/// accounts are much larger than most, as in practice.
fn job_counts(count: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let uniform: f64 = rng.r#gen::<f64>().max(1e-9);
            let jobs = 5.0 / uniform.powf(1.0 / 1.2);
            jobs.min(2000.0) as u64
        })
        .collect()
}

fn moved(before: &[usize], after: &[usize]) -> usize {
    before
        .iter()
        .zip(after)
        .filter(|(old, new)| old != new)
        .count()
}

/// Busiest replica ÷ mean, by target count and by jobs.
fn spread(assignment: &[usize], jobs: &[u64], replicas: usize) -> (f64, f64, usize, usize) {
    let mut targets_per = vec![0usize; replicas];
    let mut jobs_per = vec![0u64; replicas];
    for (index, replica) in assignment.iter().enumerate() {
        targets_per[*replica] += 1;
        jobs_per[*replica] += jobs[index];
    }
    let mean_targets = assignment.len() as f64 / replicas as f64;
    let mean_jobs = jobs.iter().sum::<u64>() as f64 / replicas as f64;
    let max_targets = *targets_per.iter().max().unwrap_or(&0);
    let min_targets = *targets_per.iter().min().unwrap_or(&0);
    let max_jobs = *jobs_per.iter().max().unwrap_or(&0);
    (
        max_targets as f64 / mean_targets,
        max_jobs as f64 / mean_jobs,
        min_targets,
        max_targets,
    )
}

fn main() {
    let arguments = match arguments() {
        Ok(arguments) => arguments,
        Err(problem) => {
            eprintln!("shard_sim: {problem}");
            std::process::exit(2);
        }
    };
    let targets = target_names(arguments.targets);
    let jobs = job_counts(arguments.targets, arguments.seed);
    let bounded = BoundedRendezvous { jobs: &jobs };
    let schemes: [&dyn Scheme; 5] = [&Rendezvous, &bounded, &Modulo, &RoundRobin, &Ring];
    println!(
        "{} targets ({} jobs in all, largest {}, median {}), replicas 1..={}, seed {}",
        targets.len(),
        jobs.iter().sum::<u64>(),
        jobs.iter().max().unwrap_or(&0),
        {
            let mut sorted = jobs.clone();
            sorted.sort();
            sorted[sorted.len() / 2]
        },
        arguments.max_replicas,
        arguments.seed
    );

    println!();
    println!("## Targets moved by a change of replica count (share of all targets)");
    println!();
    let mut header = "| change | ideal |".to_string();
    let mut rule = "|---|---:|".to_string();
    for scheme in &schemes {
        header.push_str(&format!(" {} |", scheme.name()));
        rule.push_str("---:|");
    }
    println!("{header}");
    println!("{rule}");
    let mut worst_excess = 0.0f64;
    for replicas in 1..arguments.max_replicas {
        for (from, to) in [(replicas, replicas + 1), (replicas + 1, replicas)] {
            let ideal = 1.0 / (replicas + 1) as f64;
            let mut row = format!("| {from} → {to} | {:.1}% |", ideal * 100.0);
            for scheme in &schemes {
                let before = scheme.assign(&targets, from);
                let after = scheme.assign(&targets, to);
                let share = moved(&before, &after) as f64 / targets.len() as f64;
                if scheme.name() == Rendezvous.name() {
                    worst_excess = worst_excess.max(share / ideal);
                    // Rendezvous moves only targets to the new replica or from the removed one.
                    let stray = before
                        .iter()
                        .zip(&after)
                        .filter(|(old, new)| old != new && **old != replicas && **new != replicas)
                        .count();
                    assert_eq!(stray, 0, "a target moved between surviving replicas");
                }
                row.push_str(&format!(" {:.1}% |", share * 100.0));
            }
            println!("{row}");
        }
    }
    println!();
    println!(
        "Rendezvous: every moved target moved to the added replica or from the removed one (checked); \
         worst case {:.2}× the ideal share.",
        worst_excess
    );

    println!();
    println!(
        "## Other targets moved when one target is deleted (5 replicas, mean over 20 deletions)"
    );
    println!();
    println!("| scheme | targets moved |");
    println!("|---|---:|");
    for scheme in &schemes {
        let before = scheme.assign(&targets, 5);
        let mut total = 0usize;
        for deleted in (0..targets.len()).step_by(targets.len() / 20).take(20) {
            let mut rest = targets.clone();
            rest.remove(deleted);
            let after = if scheme.name() == bounded.name() {
                let mut rest_jobs = jobs.clone();
                rest_jobs.remove(deleted);
                BoundedRendezvous { jobs: &rest_jobs }.assign(&rest, 5)
            } else {
                scheme.assign(&rest, 5)
            };
            let mut old = before.clone();
            old.remove(deleted);
            total += moved(&old, &after);
        }
        println!("| {} | {:.1} |", scheme.name(), total as f64 / 20.0);
    }

    println!();
    println!("## Load spread: busiest replica ÷ mean");
    println!();
    println!("| replicas | scheme | targets per replica (min–max) | by targets | by jobs |");
    println!("|---:|---|---|---:|---:|");
    for replicas in [3usize, 5, 10] {
        if replicas > arguments.max_replicas {
            continue;
        }
        for scheme in &schemes {
            let assignment = scheme.assign(&targets, replicas);
            let (by_targets, by_jobs, min, max) = spread(&assignment, &jobs, replicas);
            println!(
                "| {replicas} | {} | {min}–{max} | {by_targets:.2} | {by_jobs:.2} |",
                scheme.name()
            );
        }
    }
}
