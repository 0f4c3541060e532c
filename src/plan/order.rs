//! `depends_on`: the order of a plan's actions, and which of them wait.
//!
//! For a job D that depends on U (D reads what U writes, e.g. a Kafka topic):
//! * U going up (create, start, update) goes first: D's action runs after U's.
//! * U going down (stop, prune) goes last: U's action runs after D's.
//! * U restarting (upgrade, restore) waits for its dependents: U's action runs after D's, and
//!   is held while any dependent is moving (submitting, stopping, restarting). Dependents are
//!   not stopped around it: the link between the jobs is a durable buffer (a Kafka topic keeps
//!   what U wrote; D keeps its read position in its own checkpoints), so D only sees a pause in
//!   its input while U restarts, and stopping D would add a second restart and nothing safer.
//!   What is not safe is restarting U under a dependent that is itself mid-transition, or
//!   mid-action: an upgrade of U never overlaps a change of D.
//! * D going up (create, start, update, upgrade, restore) is held while U is Degraded (its
//!   live status is a failure), missing (not live, and not created by this plan) or held: D
//!   would start against an input that is not there.
//!
//! The executor runs an action only after every action in its `after` list ended
//! successfully; one that failed (or was held) holds the actions after it.
//!
//! # Design and invariants
//!
//! A job's `depends_on`, `drift` and `ignore_differences` are `model::JobPolicy` on the desired job:
//! ours, never sent, no part of the digest (changing one restarts nothing). `desired::dependencies`
//! resolves `depends_on` names to journal keys (`name`, `dlf:name`; a bare name in both kinds is
//! refused as ambiguous, `flink:`/`dlf:` pick) across every document of the environment, and refuses
//! unknown names (the names of this repository and environment are the target's jobs, so a job of
//! another target is unknown), a job depending on itself, duplicates and cycles (each cycle once, at
//! the `depends_on` item that closes it), and `ignore_differences` names that are not fields of the
//! job's type (Flink: the config fields the type carries; DLF: `definition`, `schedule_status`).
//!
//! Order (`plan/order.rs`, after the per-job decisions). For D depending on U:
//! * U going up (create, start, update) runs first: D's action lists U in `after`.
//! * U going down (stop, prune) runs last: U's action lists D in `after`.
//! * U restarting (upgrade, restore) runs after D's action, and is held while a dependent is moving
//!   (a transitional status or a `WaitSteady` action). **Chosen: dependents are left running, not
//!   stopped with a savepoint around the upstream's upgrade.** The link between two Flink jobs is a
//!   durable buffer (a Kafka/DMS topic keeps what U writes; D keeps its read position in its own
//!   checkpoints and savepoints), so while U restarts D only sees a pause in its input; stopping D
//!   too would cost it a second restart and a savepoint round trip and make nothing safer. What is
//!   unsafe is restarting U under a dependent that is itself mid-transition or mid-action, so that is
//!   what waits. (A dependent that reads something without such a buffer should be stopped by its
//!   own `desired_state` first.) Tested: `tests/depends_on.rs`
//!   `upstream_jobs_start_first_and_stop_last_in_the_emulators_run_log` (the dependents' run logs
//!   show no restart across the upstream's upgrade), `an_upstream_upgrade_waits_for_its_dependents_to_settle`.
//! * D going up is held (`JobAction::on_hold`, its reason starts with `held:`) while U is Degraded
//!   (`job_submit_fail`, `job_running_exception`, `job_cancel_fail`, `job_arrearage_stopped`, as the
//!   status page), missing (not live and not created by this plan) or held, in dependency order so a
//!   hold carries down a chain. A held action is shown with its steps but never executed; it keeps
//!   the revision from being journaled as applied (`JobAction::holds_convergence`).
//!
//! Every pair gives one direction, and down-going actions only point at their own upstreams, so the
//! `after` graph has no cycle when `depends_on` has none. `plan --json` carries `after` per action
//! and `order` (the groups `Plan::order` computes); the text prints `Order (depends_on):`. The
//! executor (`Executor::run`) runs the groups one after the other, each `parallel_actions` at a time,
//! and does not start an action one of whose `after` actions failed in this pass (its result:
//! `DEPENDENCY_NOT_READY`, nothing journaled for it). Without `after` there is one group: the old
//! behaviour. Prunes are ordered only by what git still says: two jobs removed together have no
//! `depends_on` left to order them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{ActionClass, JobAction, Plan};
use crate::model::{DesiredJobs, FlinkJobStatus, ObservedJobs};

/// What the live side shows of one job, for the rules above.
enum Live<'a> {
    Missing,
    Flink(&'a FlinkJobStatus),
    Dlf,
}

fn is_going_up(class: ActionClass) -> bool {
    matches!(
        class,
        ActionClass::Create
            | ActionClass::Start
            | ActionClass::UpdateInPlace
            | ActionClass::Upgrade
            | ActionClass::Restore
    )
}

fn is_restarting(class: ActionClass) -> bool {
    matches!(class, ActionClass::Upgrade | ActionClass::Restore)
}

fn is_going_down(class: ActionClass) -> bool {
    matches!(class, ActionClass::Stop | ActionClass::Prune)
}

/// Holds what must wait and fills every action's `after`.
pub(super) fn order(
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    actions: &mut [JobAction],
    warnings: &mut Vec<String>,
) {
    let depends = dependencies(desired);
    if depends.is_empty() {
        return;
    }
    let Some(sorted) = topological(&depends) else {
        warnings.push(
            "depends_on has a cycle (validate refuses it): this plan runs in no particular order"
                .to_string(),
        );
        return;
    };
    let mut live: BTreeMap<String, Live<'_>> = BTreeMap::new();
    for job in &observed.flink {
        live.insert(job.name.clone(), Live::Flink(&job.status));
    }
    for job in &observed.dlf {
        live.insert(format!("dlf:{}", job.name), Live::Dlf);
    }
    let index: BTreeMap<String, usize> = actions
        .iter()
        .enumerate()
        .map(|(position, action)| (action.key(), position))
        .collect();
    let live_of = |key: &str| live.get(key).unwrap_or(&Live::Missing);
    hold_for_upstreams(&depends, &sorted, &index, &live_of, actions);
    hold_for_dependents(&depends, &index, &live_of, actions);
    link_order(&depends, &index, actions);
}

/// Dependencies by job key (`name`, DLF `dlf:name`), from git.
fn dependencies(desired: &DesiredJobs) -> BTreeMap<String, Vec<String>> {
    let mut depends: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in &desired.flink {
        if !job.policy.depends_on.is_empty() {
            depends.insert(job.name.clone(), job.policy.depends_on.clone());
        }
    }
    for job in &desired.dlf {
        if !job.policy.depends_on.is_empty() {
            depends.insert(format!("dlf:{}", job.name), job.policy.depends_on.clone());
        }
    }
    depends
}

/// Dependents going up wait for their dependencies (Degraded, missing or held), upstream
/// first (`sorted`) so that a hold carries down the chain.
fn hold_for_upstreams<'a>(
    depends: &BTreeMap<String, Vec<String>>,
    sorted: &[String],
    index: &BTreeMap<String, usize>,
    live_of: &impl Fn(&str) -> &'a Live<'a>,
    actions: &mut [JobAction],
) {
    let mut held_by_dependency: BTreeSet<String> = BTreeSet::new();
    for key in sorted {
        let Some(&position) = index.get(key) else {
            continue;
        };
        let action = &actions[position];
        if !is_going_up(action.class) || action.is_waiting() {
            continue;
        }
        let mut why = None;
        for upstream in depends.get(key).into_iter().flatten() {
            let upstream_action = index.get(upstream).map(|&at| &actions[at]);
            if held_by_dependency.contains(upstream) {
                why = Some(format!("its dependency `{upstream}` is held"));
                break;
            }
            match live_of(upstream) {
                Live::Flink(status) if status.is_degraded() => {
                    why = Some(format!(
                        "its dependency `{upstream}` is Degraded ({status})"
                    ));
                    break;
                }
                Live::Missing
                    if !upstream_action.is_some_and(|action| {
                        action.class == ActionClass::Create && !action.is_held()
                    }) =>
                {
                    why = Some(format!(
                        "its dependency `{upstream}` is missing (not live, and this plan does not create it)"
                    ));
                    break;
                }
                _ => {}
            }
        }
        if let Some(why) = why {
            hold(&mut actions[position], &why);
            held_by_dependency.insert(key.clone());
        }
    }
}

/// An upstream job restarts only once its dependents have settled.
fn hold_for_dependents<'a>(
    depends: &BTreeMap<String, Vec<String>>,
    index: &BTreeMap<String, usize>,
    live_of: &impl Fn(&str) -> &'a Live<'a>,
    actions: &mut [JobAction],
) {
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, upstreams) in depends {
        for upstream in upstreams {
            dependents
                .entry(upstream.as_str())
                .or_default()
                .push(key.as_str());
        }
    }
    for (upstream, downstream) in &dependents {
        let Some(&position) = index.get(*upstream) else {
            continue;
        };
        if !is_restarting(actions[position].class) || actions[position].is_held() {
            continue;
        }
        let moving = downstream.iter().find_map(|key| {
            let waiting = index.get(*key).is_some_and(|&at| actions[at].is_waiting());
            match live_of(key) {
                Live::Flink(status) if waiting || status.is_transitional() => {
                    Some(format!("`{key}` is {status}"))
                }
                Live::Dlf if waiting => Some(format!("`{key}` is moving")),
                _ => None,
            }
        });
        if let Some(moving) = moving {
            hold(
                &mut actions[position],
                &format!(
                    "its dependent {moving}; an upstream job restarts only when its dependents have settled"
                ),
            );
        }
    }
}

/// The order of what runs: an upstream going up runs before its dependent, one going down or
/// restarting after it. Held and no-change actions take no part.
fn link_order(
    depends: &BTreeMap<String, Vec<String>>,
    index: &BTreeMap<String, usize>,
    actions: &mut [JobAction],
) {
    for (key, upstreams) in depends {
        let Some(&down_at) = index.get(key) else {
            continue;
        };
        for upstream in upstreams {
            let Some(&up_at) = index.get(upstream) else {
                continue;
            };
            let (down, up) = (&actions[down_at], &actions[up_at]);
            if down.class == ActionClass::None || up.class == ActionClass::None {
                continue;
            }
            if down.is_held() || up.is_held() {
                continue;
            }
            if is_going_down(up.class) || is_restarting(up.class) {
                actions[up_at].after.push(key.clone());
            } else {
                actions[down_at].after.push(upstream.clone());
            }
        }
    }
    for action in actions.iter_mut() {
        action.after.sort();
        action.after.dedup();
    }
}

fn hold(action: &mut JobAction, why: &str) {
    action.reason = format!("held: {why}; {}", action.reason);
    if action.on_hold.is_none() {
        action.on_hold = Some(why.to_string());
    }
}

/// Job keys, every job after its dependencies; `None` on a cycle. Layer by layer: a job
/// comes in the layer after its last dependency, each layer sorted by key. Linear in the
/// number of jobs and links (each link is counted down once), plus the sorting of layers.
fn topological(depends: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    let mut keys: BTreeSet<&str> = depends.keys().map(String::as_str).collect();
    for upstreams in depends.values() {
        keys.extend(upstreams.iter().map(String::as_str));
    }
    // Per job, how many of its dependency links are still unplaced, and who waits on it.
    let mut unplaced: HashMap<&str, usize> = HashMap::with_capacity(depends.len());
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, upstreams) in depends {
        unplaced.insert(key.as_str(), upstreams.len());
        for upstream in upstreams {
            dependents
                .entry(upstream.as_str())
                .or_default()
                .push(key.as_str());
        }
    }
    let mut layer: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|key| unplaced.get(key).is_none_or(|count| *count == 0))
        .collect();
    let mut sorted: Vec<String> = Vec::with_capacity(keys.len());
    while !layer.is_empty() {
        let mut next = Vec::new();
        for key in &layer {
            for dependent in dependents.get(key).into_iter().flatten() {
                let count = unplaced
                    .get_mut(dependent)
                    .expect("every dependent has a count");
                *count -= 1;
                if *count == 0 {
                    next.push(*dependent);
                }
            }
        }
        sorted.extend(layer.iter().map(|key| key.to_string()));
        next.sort_unstable();
        layer = next;
    }
    (sorted.len() == keys.len()).then_some(sorted)
}

/// Groups of actions (by key) that may run together, in the order the executor runs them: an
/// action comes in the group after the last of its `after`. `None` when `after` loops (never
/// from the planner).
pub(crate) fn waves<'a>(actions: impl Iterator<Item = &'a JobAction>) -> Option<Vec<Vec<usize>>> {
    let actions: Vec<&JobAction> = actions.collect();
    let index: BTreeMap<String, usize> = actions
        .iter()
        .enumerate()
        .map(|(position, action)| (action.key(), position))
        .collect();
    let mut wave: Vec<Option<usize>> = vec![None; actions.len()];
    let mut placed = 0;
    while placed < actions.len() {
        let mut progress = false;
        for position in 0..actions.len() {
            if wave[position].is_some() {
                continue;
            }
            let mut level = 0;
            let mut ready = true;
            for key in &actions[position].after {
                match index.get(key) {
                    // An action not in this list (filtered out) does not hold anything.
                    None => {}
                    Some(&at) => match wave[at] {
                        Some(before) => level = level.max(before + 1),
                        None => ready = false,
                    },
                }
            }
            if ready {
                wave[position] = Some(level);
                placed += 1;
                progress = true;
            }
        }
        if !progress {
            return None;
        }
    }
    let count = wave.iter().flatten().max().map_or(0, |max| max + 1);
    let mut groups = vec![Vec::new(); count];
    for (position, level) in wave.into_iter().enumerate() {
        if let Some(level) = level {
            groups[level].push(position);
        }
    }
    Some(groups)
}

impl Plan {
    /// The changes in the order they run, as groups of job keys (`name`, DLF `dlf:name`) that
    /// may run together; every group after the one before. Empty when no action has an order.
    pub fn order(&self) -> Vec<Vec<String>> {
        let changes: Vec<&JobAction> = self.changes().filter(|action| !action.is_held()).collect();
        if changes.iter().all(|action| action.after.is_empty()) {
            return Vec::new();
        }
        match waves(changes.iter().copied()) {
            Some(groups) => groups
                .into_iter()
                .map(|group| group.into_iter().map(|at| changes[at].key()).collect())
                .collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layered order as it was computed before: rounds over every key not yet placed.
    fn rounds(depends: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
        let mut keys: BTreeSet<&str> = depends.keys().map(String::as_str).collect();
        for upstreams in depends.values() {
            keys.extend(upstreams.iter().map(String::as_str));
        }
        let mut sorted = Vec::new();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        while done.len() < keys.len() {
            let ready: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|key| !done.contains(key))
                .filter(|key| {
                    depends
                        .get(*key)
                        .is_none_or(|upstreams| upstreams.iter().all(|u| done.contains(u.as_str())))
                })
                .collect();
            if ready.is_empty() {
                return None;
            }
            for key in ready {
                done.insert(key);
                sorted.push(key.to_string());
            }
        }
        Some(sorted)
    }

    #[test]
    fn a_chain_of_ten_thousand_jobs_is_ordered_in_linear_time() {
        // job09999 depends on job09998 ... on job00000, named so that key order is the
        // reverse of the chain: the rounds above took 10,000 passes over 10,000 keys.
        let count = 10_000;
        let name = |at: usize| format!("job{:05}", count - 1 - at);
        let depends: BTreeMap<String, Vec<String>> = (1..count)
            .map(|at| (name(at), vec![name(at - 1)]))
            .collect();
        let started = std::time::Instant::now();
        let sorted = topological(&depends).expect("a chain has no cycle");
        let took = started.elapsed();
        assert_eq!(sorted.len(), count);
        assert!(sorted.iter().enumerate().all(|(at, key)| *key == name(at)));
        assert!(
            took < std::time::Duration::from_secs(2),
            "ordering a 10,000-job chain took {took:?}"
        );
    }

    #[test]
    fn the_order_is_the_layered_one_and_cycles_are_found() {
        // A small pseudo-random DAG (each job depends on some earlier ones, repeats allowed).
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..50 {
            let mut depends: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for job in 1..40u64 {
                let links = next() % 4;
                let upstreams: Vec<String> =
                    (0..links).map(|_| format!("k{}", next() % job)).collect();
                if !upstreams.is_empty() {
                    depends.insert(format!("k{job}"), upstreams);
                }
            }
            assert_eq!(topological(&depends), rounds(&depends));
            // A job that depends on itself is a cycle.
            depends.insert("k0".into(), vec!["k0".into()]);
            assert_eq!(topological(&depends), None);
        }
        let cycle: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec!["b".to_string()]),
            ("b".to_string(), vec!["a".to_string()]),
            ("c".to_string(), vec![]),
        ]
        .into_iter()
        .collect();
        assert_eq!(topological(&cycle), None);
        assert_eq!(rounds(&cycle), None);
        let empty: BTreeMap<String, Vec<String>> =
            [("c".to_string(), vec![])].into_iter().collect();
        assert_eq!(topological(&empty), Some(vec!["c".to_string()]));
    }
}
