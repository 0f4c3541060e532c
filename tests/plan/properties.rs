//! Properties over random worlds (proptest): a simulated service applies each plan, and a converged
//! world plans nothing.

use super::*;

// ---------------------------------------------------------------------------------------------
// A pure simulator of the live service and the journal

/// What the executor and the service would do with a plan, with the service's preconditions
/// enforced so that a plan that orders steps wrongly fails here.
#[derive(Debug, Clone)]
struct Simulator {
    flink: BTreeMap<String, ObservedFlinkJob>,
    dlf: BTreeMap<String, ObservedDlfJob>,
    view: JournalView,
    next_id: i64,
    savepoints_taken: u64,
}

impl Simulator {
    fn observed(&self) -> ObservedJobs {
        ObservedJobs {
            flink: self.flink.values().cloned().collect(),
            dlf: self.dlf.values().cloned().collect(),
        }
    }

    fn apply(&mut self, plan: &Plan, desired: &DesiredJobs) -> Result<(), String> {
        for action in &plan.actions {
            self.apply_action(action, desired)
                .map_err(|error| format!("{} {}: {error}", action.kind, action.name))?;
        }
        Ok(())
    }

    fn apply_action(&mut self, action: &JobAction, desired: &DesiredJobs) -> Result<(), String> {
        if action.kind == JobKind::Dlf {
            return self.apply_dlf(action, desired);
        }
        let name = action.name.as_str();
        let mut stop_savepoint: Option<String> = None;
        let mut savepoint_imports = 0;
        for step in &action.steps {
            if let Some(job) = self.flink.get(name)
                && step != &Step::WaitSteady
                && !(job.status.is_running() || job.status.is_stopped())
            {
                return Err(format!("{step:?} on a moving job ({})", job.status));
            }
            match step {
                Step::WaitSteady => {
                    let job = self.job(name)?;
                    let settled = if job.status.as_str() == "job_canceling" {
                        "job_cancel_success"
                    } else {
                        "job_running"
                    };
                    job.status = FlinkJobStatus::new(settled);
                    if action.steps.len() != 1 {
                        return Err("WaitSteady is not the only step".into());
                    }
                }
                Step::Backup => {
                    self.job(name)?;
                }
                Step::Stop { trigger_savepoint } => {
                    self.savepoints_taken += 1;
                    let counter = self.savepoints_taken;
                    let job = self.job(name)?;
                    if !job.status.is_running() {
                        return Err(format!("stop of a job that is {}", job.status));
                    }
                    job.status = FlinkJobStatus::new("job_cancel_success");
                    if *trigger_savepoint {
                        let path = format!("obs://sim/jobs/savepoint/{}/{counter}/", job.id);
                        job.savepoint_path = Some(path.clone());
                        stop_savepoint = Some(path.clone());
                        self.journal(name).last_savepoint = Some(path);
                    }
                }
                Step::CreateJob => {
                    let config = *action.config.clone().ok_or("create without config")?;
                    if self.flink.contains_key(name) {
                        return Err("create of an existing job".into());
                    }
                    self.next_id += 1;
                    self.flink
                        .insert(name.into(), new_job(name, self.next_id, config));
                }
                Step::UpdateJob => {
                    let config = *action.config.clone().ok_or("update without config")?;
                    let job = self.job(name)?;
                    if job.status.is_running() {
                        let cold: Vec<_> = config
                            .field_diffs(&job.config)
                            .into_iter()
                            .filter(|diff| !diff.is_hot() && diff.field != "tags")
                            .collect();
                        if !cold.is_empty() {
                            return Err(format!("update of a running job changes {cold:?}"));
                        }
                    }
                    // The update call does not carry tags.
                    job.config = FlinkJobConfig {
                        tags: job.config.tags.clone(),
                        ..config
                    };
                }
                Step::UpdateTags { set, remove } => {
                    let job = self.job(name)?;
                    for key in remove {
                        job.config.tags.remove(key);
                    }
                    job.config.tags.extend(set.clone());
                }
                Step::ImportSavepoint { source } => {
                    savepoint_imports += 1;
                    let path = match source {
                        SavepointSource::FromStop => stop_savepoint
                            .clone()
                            .ok_or("FromStop without a stop savepoint")?,
                        SavepointSource::Path(path) => path.clone(),
                        SavepointSource::FromTarget(target) => format!("obs://{target}/latest/"),
                        SavepointSource::Held(_) => return Err("Held is not importable".into()),
                    };
                    let job = self.job(name)?;
                    if job.status.is_running() {
                        return Err("savepoint import into a running job".into());
                    }
                    job.savepoint_path = Some(path);
                    if let Some(key) = &action.restore_key {
                        self.journal(name).applied_restore_key = Some(key.clone());
                    }
                }
                Step::Start { resume_savepoint } => {
                    let job = self.job(name)?;
                    if !job.status.is_stopped() {
                        return Err(format!("start of a job that is {}", job.status));
                    }
                    if *resume_savepoint && job.savepoint_path.is_none() {
                        return Err("resume without a savepoint".into());
                    }
                    job.status = FlinkJobStatus::new("job_running");
                }
                Step::Delete => {
                    self.flink.remove(name).ok_or("delete of a missing job")?;
                }
                Step::DlfImport => return Err("DlfImport on a Flink job".into()),
            }
        }
        if savepoint_imports > 1 {
            return Err("more than one savepoint import in one action".into());
        }
        if action.restore_key.is_some() && savepoint_imports == 0 {
            return Err("a restore key without a savepoint import".into());
        }
        if action.class != ActionClass::Prune
            && action.class != ActionClass::None
            && !action.is_waiting()
        {
            let protected = action.protected;
            let entry = self.journal(name);
            entry.managed = true;
            entry.protected = protected;
        }
        Ok(())
    }

    fn apply_dlf(&mut self, action: &JobAction, desired: &DesiredJobs) -> Result<(), String> {
        for step in &action.steps {
            match step {
                Step::Backup => {
                    self.dlf
                        .get(&action.name)
                        .ok_or("backup of a missing DLF job")?;
                }
                Step::DlfImport => {
                    let job = action
                        .desired_dlf(desired)
                        .map_err(|error| error.to_string())?;
                    self.dlf.insert(
                        job.name.clone(),
                        ObservedDlfJob {
                            name: job.name.clone(),
                            definition: job.definition.clone(),
                            last_update: None,
                            status: None,
                        },
                    );
                    self.view.dlf.insert(
                        job.name.clone(),
                        JournalDlfJob {
                            managed: true,
                            protected: !job.prune,
                            imported_digest: Some(job.digest.clone()),
                            ..Default::default()
                        },
                    );
                }
                Step::Delete => {
                    self.dlf
                        .remove(&action.name)
                        .ok_or("delete of a missing DLF job")?;
                }
                other => return Err(format!("{other:?} on a DLF job")),
            }
        }
        Ok(())
    }

    fn job(&mut self, name: &str) -> Result<&mut ObservedFlinkJob, String> {
        self.flink
            .get_mut(name)
            .ok_or_else(|| format!("no live job named {name}"))
    }

    fn journal(&mut self, name: &str) -> &mut JournalFlinkJob {
        self.view.flink.entry(name.into()).or_default()
    }
}

fn new_job(name: &str, id: i64, config: FlinkJobConfig) -> ObservedFlinkJob {
    ObservedFlinkJob {
        id,
        name: name.into(),
        status: FlinkJobStatus::new("job_init"),
        update_time: 1_700_000_000_000 + id,
        config,
        savepoint_path: None,
        status_desc: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Random inputs

const NAMES: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
const STEADY: &[&str] = &[
    "job_running",
    "job_init",
    "job_cancel_success",
    "job_submit_fail",
    "job_running_exception",
    "job_finish",
];
const MOVING: &[&str] = &["job_submitting", "job_canceling", "job_savepointing"];

#[derive(Debug, Clone)]
struct FlinkCase {
    in_git: bool,
    jar: bool,
    running: bool,
    stateless: bool,
    cu_number: i32,
    sql_variant: u8,
    smn_topic: Option<u8>,
    restore: Option<(u8, u64, bool)>,
    live: Option<LiveCase>,
    journal: Option<JournalCase>,
}

#[derive(Debug, Clone)]
struct LiveCase {
    status: &'static str,
    tagged: bool,
    jar: bool,
    cu_number: i32,
    sql_variant: u8,
    smn_topic: Option<u8>,
    extra_tag: bool,
    savepoint: bool,
    flink_version: bool,
}

#[derive(Debug, Clone)]
struct JournalCase {
    managed: bool,
    protected: bool,
    restore_applied: bool,
    last_savepoint: bool,
}

#[derive(Debug, Clone)]
struct DlfCase {
    in_git: bool,
    digest: u8,
    live: bool,
    journal: Option<(bool, bool, Option<u8>)>,
}

fn status_strategy(moving: bool) -> BoxedStrategy<&'static str> {
    if moving {
        prop::sample::select(STEADY.iter().chain(MOVING).copied().collect::<Vec<_>>()).boxed()
    } else {
        prop::sample::select(STEADY.to_vec()).boxed()
    }
}

fn live_strategy(moving: bool) -> impl Strategy<Value = LiveCase> {
    (
        status_strategy(moving),
        any::<bool>(),
        prop::bool::weighted(0.1),
        2..5i32,
        0..3u8,
        prop::option::of(0..2u8),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                status,
                tagged,
                jar,
                cu_number,
                sql_variant,
                smn_topic,
                extra_tag,
                savepoint,
                flink_version,
            )| {
                LiveCase {
                    status,
                    tagged,
                    jar,
                    cu_number,
                    sql_variant,
                    smn_topic,
                    extra_tag,
                    savepoint,
                    flink_version,
                }
            },
        )
}

fn flink_case(moving: bool) -> impl Strategy<Value = FlinkCase> {
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop::bool::weighted(0.3),
        2..5i32,
        0..3u8,
        prop::option::of(0..2u8),
        prop::option::weighted(0.3, (0..2u8, 1..3u64, prop::bool::weighted(0.2))),
        prop::option::weighted(0.7, live_strategy(moving)),
        prop::option::of(
            (
                any::<bool>(),
                prop::bool::weighted(0.2),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(managed, protected, restore_applied, last_savepoint)| {
                    JournalCase {
                        managed,
                        protected,
                        restore_applied,
                        last_savepoint,
                    }
                }),
        ),
    )
        .prop_map(
            |(
                in_git,
                jar,
                running,
                stateless,
                cu_number,
                sql_variant,
                smn_topic,
                restore,
                live,
                journal,
            )| FlinkCase {
                in_git,
                jar,
                running,
                stateless,
                cu_number,
                sql_variant,
                smn_topic,
                restore,
                live,
                journal,
            },
        )
}

fn dlf_case() -> impl Strategy<Value = DlfCase> {
    (
        prop::bool::weighted(0.8),
        0..2u8,
        any::<bool>(),
        prop::option::of((
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::option::of(0..2u8),
        )),
    )
        .prop_map(|(in_git, digest, live, journal)| DlfCase {
            in_git,
            digest,
            live,
            journal,
        })
}

fn policy_strategy() -> impl Strategy<Value = PlanPolicy> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(prune, allow_empty_prune, backups)| {
        PlanPolicy {
            prune,
            allow_empty_prune,
            backups,
            ..PlanPolicy::default()
        }
    })
}

fn sql_text(variant: u8) -> String {
    format!("INSERT INTO sink\nSELECT id, v{variant}\nFROM source;\n")
}

fn flink_config(
    jar: bool,
    cu_number: i32,
    sql_variant: u8,
    smn_topic: Option<u8>,
) -> FlinkJobConfig {
    let mut config = if jar {
        let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkJar);
        config.entrypoint = Some(format!("obs://jars/app-{sql_variant}.jar"));
        config
    } else {
        let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
        config.sql_body = Some(sql_text(sql_variant));
        config
    };
    config.queue_name = Some("q".into());
    config.cu_number = cu_number;
    config.smn_topic = smn_topic.map(|topic| format!("topic-{topic}"));
    config
}

/// Builds (desired, simulator) from random cases; names are unique by construction.
fn build_world(flink: &[FlinkCase], dlf: &[DlfCase]) -> (DesiredJobs, Simulator) {
    let mut desired = DesiredJobs::default();
    let mut simulator = Simulator {
        flink: BTreeMap::new(),
        dlf: BTreeMap::new(),
        view: JournalView::default(),
        next_id: 100,
        savepoints_taken: 0,
    };
    for (index, case) in flink.iter().enumerate() {
        let name = NAMES[index].to_string();
        let restore = case.restore.map(|(path, nonce, from_target)| Restore {
            savepoint_path: (!from_target).then(|| format!("obs://restore/{path}/")),
            nonce: Some(nonce),
            from_target: from_target.then(|| "dev".to_string()),
            from_catalog: None,
        });
        if case.in_git {
            let mut config =
                flink_config(case.jar, case.cu_number, case.sql_variant, case.smn_topic);
            config.tags.insert("team".into(), "data".into());
            desired.flink.push(DesiredFlinkJob {
                name: name.clone(),
                config,
                lifecycle: Lifecycle {
                    desired_state: if case.running {
                        RunState::Running
                    } else {
                        RunState::Stopped
                    },
                    upgrade_mode: if case.stateless {
                        UpgradeMode::Stateless
                    } else {
                        UpgradeMode::Savepoint
                    },
                    restore: restore.clone(),
                    prune: true,
                },
                source: SourceLocation::default(),
                digest: format!("digest-{name}-{}-{}", case.cu_number, case.sql_variant),
                policy: Default::default(),
            });
        }
        if let Some(live) = &case.live {
            let mut config =
                flink_config(live.jar, live.cu_number, live.sql_variant, live.smn_topic);
            config.tags.insert("team".into(), "data".into());
            if live.tagged {
                config
                    .tags
                    .insert(MANAGED_TAG_KEY.into(), MANAGED_TAG_VALUE.into());
            }
            if live.extra_tag {
                config.tags.insert("owner".into(), "someone".into());
            }
            if live.flink_version {
                config.flink_version = Some("1.15".into());
            }
            simulator.flink.insert(
                name.clone(),
                ObservedFlinkJob {
                    id: index as i64 + 1,
                    name: name.clone(),
                    status: FlinkJobStatus::new(live.status),
                    update_time: 1_700_000_000_000,
                    config,
                    savepoint_path: live.savepoint.then(|| format!("obs://sim/held/{name}/")),
                    status_desc: None,
                },
            );
        }
        if let Some(journal) = &case.journal {
            simulator.view.flink.insert(
                name.clone(),
                JournalFlinkJob {
                    managed: journal.managed,
                    protected: journal.protected,
                    applied_restore_key: restore
                        .as_ref()
                        .filter(|_| journal.restore_applied)
                        .map(Restore::key),
                    last_savepoint: journal
                        .last_savepoint
                        .then(|| format!("obs://sim/journal/{name}/")),
                    applied_digest: None,
                },
            );
        }
    }
    for (index, case) in dlf.iter().enumerate() {
        let name = format!("dlf-{}", NAMES[index]);
        let job = dlf_job(&name, &format!("d{}", case.digest));
        if case.live {
            simulator.dlf.insert(
                name.clone(),
                ObservedDlfJob {
                    name: name.clone(),
                    definition: job.definition.clone(),
                    last_update: None,
                    status: None,
                },
            );
        }
        if let Some((managed, protected, digest)) = case.journal {
            simulator.view.dlf.insert(
                name.clone(),
                JournalDlfJob {
                    managed,
                    protected,
                    imported_digest: digest.map(|digest| format!("d{digest}")),
                    ..Default::default()
                },
            );
        }
        if case.in_git {
            desired.dlf.push(job);
        }
    }
    (desired, simulator)
}

/// Observed state equal to `desired`: every job live, managed, in its desired state, with any
/// restore already applied and every DLF digest imported.
fn converged_world(desired: &DesiredJobs) -> (ObservedJobs, JournalView) {
    let mut observed = ObservedJobs::default();
    let mut view = JournalView::default();
    for (index, job) in desired.flink.iter().enumerate() {
        let mut config = job.config.clone();
        config
            .tags
            .insert(MANAGED_TAG_KEY.into(), MANAGED_TAG_VALUE.into());
        let status = match job.lifecycle.desired_state {
            RunState::Running => "job_running",
            RunState::Stopped => "job_cancel_success",
        };
        observed.flink.push(ObservedFlinkJob {
            id: index as i64,
            name: job.name.clone(),
            status: FlinkJobStatus::new(status),
            update_time: 0,
            config,
            savepoint_path: None,
            status_desc: None,
        });
        view.flink.insert(
            job.name.clone(),
            JournalFlinkJob {
                managed: true,
                protected: false,
                applied_restore_key: job.lifecycle.restore.as_ref().map(Restore::key),
                last_savepoint: None,
                applied_digest: None,
            },
        );
    }
    for job in &desired.dlf {
        observed.dlf.push(ObservedDlfJob {
            name: job.name.clone(),
            definition: job.definition.clone(),
            last_update: None,
            status: None,
        });
        view.dlf.insert(
            job.name.clone(),
            JournalDlfJob {
                managed: true,
                protected: false,
                imported_digest: Some(job.digest.clone()),
                ..Default::default()
            },
        );
    }
    (observed, view)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn planning_is_deterministic(
        flink in prop::collection::vec(flink_case(true), 0..NAMES.len()),
        dlf in prop::collection::vec(dlf_case(), 0..3),
        policy in policy_strategy(),
    ) {
        let (desired, simulator) = build_world(&flink, &dlf);
        let observed = simulator.observed();
        let first = plan(&desired, &observed, &simulator.view, &policy);
        let second = plan(&desired, &observed, &simulator.view, &policy);
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(first.render_text(), second.render_text());

        // Input order does not matter.
        let mut reversed_desired = desired.clone();
        reversed_desired.flink.reverse();
        reversed_desired.dlf.reverse();
        let mut reversed_observed = observed.clone();
        reversed_observed.flink.reverse();
        reversed_observed.dlf.reverse();
        let reversed = plan(&reversed_desired, &reversed_observed, &simulator.view, &policy);
        prop_assert_eq!(&first, &reversed);

        // Sorted by kind then name, one action per job.
        let keys: Vec<_> = first.actions.iter().map(|action| (action.kind, action.name.clone())).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(keys, sorted);
    }

    #[test]
    fn a_live_state_equal_to_git_plans_nothing(
        flink in prop::collection::vec(flink_case(false), 0..NAMES.len()),
        dlf in prop::collection::vec(dlf_case(), 0..3),
        policy in policy_strategy(),
    ) {
        let (desired, _) = build_world(&flink, &dlf);
        let (observed, view) = converged_world(&desired);
        let plan = plan(&desired, &observed, &view, &policy);
        prop_assert!(plan.is_empty(), "{}", plan.render_text());
        prop_assert_eq!(plan.actions.len(), desired.flink.len() + desired.dlf.len());
    }

    #[test]
    fn applying_a_plan_then_planning_again_plans_nothing(
        flink in prop::collection::vec(flink_case(true), 0..NAMES.len()),
        dlf in prop::collection::vec(dlf_case(), 0..3),
        policy in policy_strategy(),
    ) {
        let (desired, mut simulator) = build_world(&flink, &dlf);
        let first = plan(&desired, &simulator.observed(), &simulator.view, &policy);
        let waited = first.summary().waiting > 0;
        simulator.apply(&first, &desired).map_err(|error| {
            TestCaseError::fail(format!("{error}\n{}", first.render_text()))
        })?;
        let mut next = plan(&desired, &simulator.observed(), &simulator.view, &policy);
        if waited {
            // The first pass only let moving jobs settle; the second acts.
            prop_assert_eq!(next.summary().waiting, 0, "{}", next.render_text());
            simulator.apply(&next, &desired).map_err(|error| {
                TestCaseError::fail(format!("{error}\n{}", next.render_text()))
            })?;
            next = plan(&desired, &simulator.observed(), &simulator.view, &policy);
        }
        prop_assert!(next.is_empty(), "first:\n{}\nthen:\n{}", first.render_text(), next.render_text());
        // Whatever git declares is now live.
        for job in &desired.flink {
            prop_assert!(simulator.flink.contains_key(&job.name));
        }
    }
}

proptest! {
    /// Whatever control or bidi characters git and the service put into a job (its SQL, its
    /// description, its live definition), the rendered plan carries none of them raw: a
    /// reviewer reads what will happen, not what an escape sequence paints over it.
    #[test]
    fn the_rendered_plan_never_carries_control_or_bidi_characters(
        sql in "(\\PC|[\\x00-\\x1f\\x7f-\\x9f\\u{200e}\\u{200f}\\u{061c}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]){0,40}",
        live_sql in "(\\PC|[\\x1b\\x0d\\u{202e}\\u{2066}]){0,40}",
        desc in "(\\PC|[\\x1b\\x07\\x08\\u{202e}]){0,20}",
    ) {
        let mut job = sql_job("agg", &sql);
        job.config.desc = desc;
        let mut live = live_of(&sql_job("agg", &live_sql), 7, "job_running");
        live.config.desc = "\u{1b}[2K- prune\u{202e}".into();
        let mut view = JournalView::default();
        managed(&mut view, "agg");
        let scenario = Scenario {
            desired: DesiredJobs { flink: vec![job], dlf: Vec::new() },
            observed: ObservedJobs { flink: vec![live], dlf: Vec::new() },
            view,
        };
        let text = scenario.plan(&policy()).render_text();
        prop_assert!(
            !text.chars().any(dli_gitops::terminal::is_unsafe),
            "{:?}",
            text
        );
    }
}
