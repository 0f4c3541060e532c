//! Planning for DLI Flink jobs: one action per job in git, plus prunes of managed jobs out of it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{
    ActionClass, JobAction, JournalFlinkJob, NameIndex, PassInputs, PlanPolicy, SavepointSource,
    Step,
};
use crate::model::{
    DesiredFlinkJob, FieldDiff, FlinkJobConfig, FlinkJobStatus, MANAGED_TAG_KEY, ObservedFlinkJob,
    Ownership, RunState, UpgradeMode, managed_tag_value,
};

/// The field that changes through the tag API rather than the job update call.
const TAGS_FIELD: &str = "tags";

pub(super) fn plan_flink(
    inputs: &PassInputs<'_>,
    actions: &mut Vec<JobAction>,
    warnings: &mut Vec<String>,
) {
    let (desired, observed, view, policy) =
        (inputs.desired, inputs.observed, inputs.view, inputs.policy);
    let prune_guard = &inputs.prune_guard;
    let index = NameIndex::new(
        desired.flink.iter().map(|job| job.name.as_str()),
        &observed.flink,
        |job: &ObservedFlinkJob| job.name.as_str(),
    );
    index.warn_duplicates(
        "Flink",
        |name| {
            format!(
                "the service has several Flink jobs named `{name}`; jobs are identified by name, so they are left alone until only one remains"
            )
        },
        warnings,
    );

    let tag_value = managed_tag_value(&policy.instance);
    for desired_job in &desired.flink {
        let name = desired_job.name.as_str();
        if index.is_ambiguous(name) {
            continue;
        }
        let live = index.live_by_name.get(name).copied();
        let config = match live {
            // The steady state: git's configuration with the managed-by tag is exactly the
            // live one, so the live one is used as it is (no copy per job).
            Some(live)
                if desired_job.policy.ignore_differences.is_empty()
                    && equals_with_managed_tag(&desired_job.config, &live.config, &tag_value) =>
            {
                Cow::Borrowed(&live.config)
            }
            // `ignore_differences`: those fields keep their live values (never compared).
            _ => Cow::Owned(super::drift::keep_ignored(
                effective_config(&desired_job.config, &tag_value),
                &desired_job.policy,
                live,
            )),
        };
        let context = JobContext {
            desired: desired_job,
            config,
            journal: view.flink.get(name),
            catalog: view.savepoint_catalog.get(name).map(Vec::as_slice),
            policy,
        };
        let action = match live {
            None => context.create(warnings),
            Some(live) => match context.other_installation(live) {
                Some(owner) => context.conflict(live, &owner, warnings),
                // Automatic rollback marked exactly this definition failed: held.
                None => match view
                    .held(name)
                    .filter(|(digest, _)| *digest == desired_job.digest)
                {
                    Some((_, note)) => context.held(live, note, warnings),
                    None => context.converge(live, warnings),
                },
            },
        };
        actions.push(action);
    }

    for live in index.live_by_name.values() {
        if index.desired_names.contains(live.name.as_str()) {
            continue;
        }
        let journal = view.flink.get(&live.name);
        let journal_managed = journal.is_some_and(|entry| entry.managed);
        let managed = match live.ownership(&policy.instance) {
            Ownership::Ours => true,
            Ownership::Unmanaged => journal_managed,
            // Tagged by another installation: ours only if our journal manages it (a job
            // tagged before installations had names, or before this one was renamed).
            Ownership::Other(owner) if !journal_managed => {
                warnings.push(format!(
                    "Flink job `{}` is managed by another dli-gitops installation (managed-by: {owner}); installation `{}` never prunes it",
                    live.name, policy.instance
                ));
                false
            }
            Ownership::Other(_) => true,
        };
        if !managed {
            continue;
        }
        let protected = journal.is_some_and(|entry| entry.protected);
        match prune_guard.check(live.config.kind(), &live.name, protected) {
            Ok(()) => actions.push(prune(live, policy)),
            Err(warning) => warnings.push(warning),
        }
    }
}

/// The configuration to write: git's, with the managed-by tag that marks this installation's
/// jobs.
fn effective_config(config: &FlinkJobConfig, tag_value: &str) -> FlinkJobConfig {
    let mut config = config.clone();
    config
        .tags
        .insert(MANAGED_TAG_KEY.to_string(), tag_value.to_string());
    config
}

/// `effective_config(desired, ..) == *live`, without building the effective configuration:
/// the tags are git's plus the managed-by tag, every other field is equal.
fn equals_with_managed_tag(
    desired: &FlinkJobConfig,
    live: &FlinkJobConfig,
    tag_value: &str,
) -> bool {
    let tags_equal = live.tags.get(MANAGED_TAG_KEY).map(String::as_str) == Some(tag_value)
        && live.tags.len()
            == desired.tags.len() + usize::from(!desired.tags.contains_key(MANAGED_TAG_KEY))
        && desired
            .tags
            .iter()
            .all(|(key, value)| key == MANAGED_TAG_KEY || live.tags.get(key) == Some(value));
    // Every field named, so that a new field cannot be forgotten here (it fails to compile).
    let FlinkJobConfig {
        desc,
        job_type,
        queue_name,
        sql_body,
        run_mode,
        cu_number,
        manager_cu_number,
        parallel_number,
        tm_cus,
        tm_slot_num,
        checkpoint_enabled,
        checkpoint_mode,
        checkpoint_interval,
        checkpoint_path,
        obs_bucket,
        log_enabled,
        smn_topic,
        restart_when_exception,
        idle_state_retention,
        resume_checkpoint,
        resume_max_num,
        dirty_data_strategy,
        udf_jar_url,
        flink_version,
        execution_agency_urn,
        runtime_config,
        entrypoint,
        main_class,
        entrypoint_args,
        dependency_jars,
        dependency_files,
        image,
        feature,
        resource_config_version,
        resource_config,
        operator_config,
        static_estimator_config,
        flink_log_config,
        tags: _,
    } = desired;
    tags_equal
        && *desc == live.desc
        && *job_type == live.job_type
        && *queue_name == live.queue_name
        && *sql_body == live.sql_body
        && *run_mode == live.run_mode
        && *cu_number == live.cu_number
        && *manager_cu_number == live.manager_cu_number
        && *parallel_number == live.parallel_number
        && *tm_cus == live.tm_cus
        && *tm_slot_num == live.tm_slot_num
        && *checkpoint_enabled == live.checkpoint_enabled
        && *checkpoint_mode == live.checkpoint_mode
        && *checkpoint_interval == live.checkpoint_interval
        && *checkpoint_path == live.checkpoint_path
        && *obs_bucket == live.obs_bucket
        && *log_enabled == live.log_enabled
        && *smn_topic == live.smn_topic
        && *restart_when_exception == live.restart_when_exception
        && *idle_state_retention == live.idle_state_retention
        && *resume_checkpoint == live.resume_checkpoint
        && *resume_max_num == live.resume_max_num
        && *dirty_data_strategy == live.dirty_data_strategy
        && *udf_jar_url == live.udf_jar_url
        && *flink_version == live.flink_version
        && *execution_agency_urn == live.execution_agency_urn
        && *runtime_config == live.runtime_config
        && *entrypoint == live.entrypoint
        && *main_class == live.main_class
        && *entrypoint_args == live.entrypoint_args
        && *dependency_jars == live.dependency_jars
        && *dependency_files == live.dependency_files
        && *image == live.image
        && *feature == live.feature
        && *resource_config_version == live.resource_config_version
        && *resource_config == live.resource_config
        && *operator_config == live.operator_config
        && *static_estimator_config == live.static_estimator_config
        && *flink_log_config == live.flink_log_config
}

/// An explicit restore that the journal has not seen applied.
struct PendingRestore {
    source: SavepointSource,
    key: String,
}

/// Everything known about one job in git.
struct JobContext<'a> {
    desired: &'a DesiredFlinkJob,
    /// The configuration to write (git's with the managed-by tag); borrowed from the live job
    /// when the two are equal.
    config: Cow<'a, FlinkJobConfig>,
    journal: Option<&'a JournalFlinkJob>,
    /// This job's verified copies in the savepoint catalog, oldest first.
    catalog: Option<&'a [super::CatalogSavepoint]>,
    policy: &'a PlanPolicy,
}

/// The steps and wording of one decision, before it becomes a [`JobAction`].
struct Decision {
    class: ActionClass,
    steps: Vec<Step>,
    reasons: Vec<String>,
    restore_key: Option<String>,
    resume_from: Option<SavepointSource>,
}

impl JobContext<'_> {
    fn desired_running(&self) -> bool {
        self.desired.lifecycle.desired_state == RunState::Running
    }

    fn savepoint_mode(&self) -> bool {
        self.desired.lifecycle.upgrade_mode == UpgradeMode::Savepoint
    }

    fn action(&self, live: Option<&ObservedFlinkJob>, diffs: Vec<FieldDiff>) -> JobAction {
        JobAction {
            live_id: live.map(|job| job.id),
            diffs,
            desired_digest: Some(self.desired.digest.clone()),
            protected: !self.desired.lifecycle.prune,
            ..JobAction::new(
                self.desired.kind(),
                self.desired.name.clone(),
                ActionClass::None,
            )
        }
    }

    fn pending_restore(&self, warnings: &mut Vec<String>) -> Option<PendingRestore> {
        let restore = self.desired.lifecycle.restore.as_ref()?;
        let name = &self.desired.name;
        if let Some(reference) = restore.from_catalog {
            let copies = self.catalog.unwrap_or_default();
            let found = match reference {
                crate::model::CatalogRef::Latest => copies.last(),
                crate::model::CatalogRef::Seq(seq) => copies.iter().find(|copy| copy.seq == seq),
            };
            let Some(found) = found else {
                warnings.push(format!(
                    "Flink job `{name}`: restore from_catalog {reference}: the savepoint catalog of this target has no such verified savepoint of the job (see `dli-gitops savepoints list --job {name}`); the restore waits"
                ));
                return None;
            };
            return self.unless_applied(SavepointSource::Path(found.path.clone()), restore.key());
        }
        let source = match (&restore.savepoint_path, &restore.from_target) {
            (Some(path), from_target) => {
                if from_target.is_some() {
                    warnings.push(format!(
                        "Flink job `{name}`: restore names both savepoint_path and from_target; savepoint_path is used"
                    ));
                }
                SavepointSource::Path(path.clone())
            }
            (None, Some(target)) => SavepointSource::FromTarget(target.clone()),
            (None, None) => {
                warnings.push(format!(
                    "Flink job `{name}`: restore names neither savepoint_path nor from_target; it is ignored"
                ));
                return None;
            }
        };
        self.unless_applied(source, restore.key())
    }

    /// The restore `key` from `source`, unless the journal has seen that request applied.
    fn unless_applied(&self, source: SavepointSource, key: String) -> Option<PendingRestore> {
        let applied = self
            .journal
            .and_then(|entry| entry.applied_restore_key.as_deref());
        if applied == Some(key.as_str()) {
            return None;
        }
        Some(PendingRestore { source, key })
    }

    /// In git, not live.
    fn create(self, warnings: &mut Vec<String>) -> JobAction {
        let (defaults, defaults_map) = defaults_with_map(self.desired.kind());
        // Show what the new job sets beyond the service defaults, the way Terraform lists the
        // attributes of a resource it creates.
        let mut diffs: Vec<FieldDiff> = self
            .config
            .field_diffs_with(defaults, Some(defaults_map))
            .into_iter()
            .map(|diff| FieldDiff {
                live: serde_json::Value::Null,
                ..diff
            })
            .collect();
        diffs.sort_by(|a, b| a.field.cmp(&b.field));
        let mut action = self.action(None, diffs);
        let mut steps = Vec::new();
        self.push_create_steps(&mut steps);
        let mut resume_from = None;
        if let Some(restore) = self.pending_restore(warnings) {
            steps.push(Step::ImportSavepoint {
                source: restore.source.clone(),
            });
            action.restore_key = Some(restore.key);
            resume_from = Some(restore.source);
        }
        if self.desired_running() {
            steps.push(Step::Start {
                resume_savepoint: resume_from.is_some(),
            });
            action.resume_from = resume_from;
        }
        action.class = ActionClass::Create;
        action.steps = steps;
        action.reason = "in git, not live".to_string();
        // The context ends here: its configuration moves into the action (no copy).
        action.config = Some(Box::new(self.config.into_owned()));
        action
    }

    /// A job is written only with the documented create call: the DLI user guide imports only
    /// zips that DLI itself exported, and advises the create API for jobs made elsewhere.
    fn push_create_steps(&self, steps: &mut Vec<Step>) {
        steps.push(Step::CreateJob);
    }

    /// The other installation that owns this live job, if another one does and our journal
    /// does not manage it (see the prune rule).
    fn other_installation(&self, live: &ObservedFlinkJob) -> Option<String> {
        match live.ownership(&self.policy.instance) {
            Ownership::Other(owner) if !self.journal.is_some_and(|entry| entry.managed) => {
                Some(owner)
            }
            _ => None,
        }
    }

    /// In git, and live as another installation's job: a conflict, never changed.
    fn conflict(
        &self,
        live: &ObservedFlinkJob,
        owner: &str,
        warnings: &mut Vec<String>,
    ) -> JobAction {
        let mut action = self.action(Some(live), Vec::new());
        action.reason = format!(
            "conflict: the live job is managed by another dli-gitops installation (managed-by: {owner}); left alone"
        );
        warnings.push(format!(
            "Flink job `{}` is in git but the live job is managed by another dli-gitops installation (managed-by: {owner}); installation `{}` leaves it alone: remove it from one installation's repository, or rename it",
            self.desired.name, self.policy.instance
        ));
        action
    }

    /// In git and live, but automatic rollback marked this definition failed for the job and
    /// put the previous one back: left alone (no loop back into the bad version) until a commit
    /// changes the job.
    fn held(&self, live: &ObservedFlinkJob, note: &str, warnings: &mut Vec<String>) -> JobAction {
        let mut action = self.action(Some(live), Vec::new());
        action.reason = format!(
            "held by automatic rollback: {note}; a commit that changes this job clears the mark"
        );
        warnings.push(format!(
            "Flink job `{}` is held on the definition automatic rollback restored ({note}); a commit that changes the job clears the mark",
            self.desired.name
        ));
        action
    }

    /// In git and live: bring the live job to git.
    fn converge(&self, live: &ObservedFlinkJob, warnings: &mut Vec<String>) -> JobAction {
        let mut diffs = self.config.field_diffs(&live.config);
        // Sorted here so that plans (and their ids) do not depend on whether some dependency
        // switches serde_json's maps to insertion order.
        diffs.sort_by(|a, b| a.field.cmp(&b.field));
        let mut action = self.action(Some(live), diffs);
        let restore = self.pending_restore(warnings);
        let status = &live.status;
        let (running, settled) = if status.is_running() {
            (true, true)
        } else if status.is_stopped() {
            (false, true)
        } else {
            // A moving job is judged by where it is heading, so that a job that is already
            // starting or stopping as git wants is not reported as a change.
            (*status != FlinkJobStatus::Canceling, false)
        };

        let desired_running = self.desired_running();
        let diffs = &action.diffs;
        let in_place = diffs
            .iter()
            .all(|diff| diff.is_hot() || diff.field == TAGS_FIELD);
        // No update body changes a job's type (the SQL update body has no `job_type`, SDK
        // 3.1.219; Terraform's `type` is ForceNew): a different type, even SQL to SQL, replaces.
        // Otherwise: in sync, an update the running job takes without a restart, or a restart
        // around the change (stop, update, start).
        let mut decision = if live.config.job_type != self.config.job_type {
            self.replace(live, running, restore)
        } else if let Some(decision) =
            in_sync(live, running, desired_running, diffs, restore.is_none())
        {
            decision
        } else if running && desired_running && restore.is_none() && in_place {
            self.update_running(live, diffs)
        } else {
            self.restart(live, running, diffs, restore)
        };
        let managed = live.ownership(&self.policy.instance) == Ownership::Ours
            || self.journal.is_some_and(|entry| entry.managed);
        if !managed {
            decision.reasons.insert(
                0,
                "adopts this live job, which dli-gitops does not manage yet (adds the managed-by tag)"
                    .to_string(),
            );
        }
        if !settled && decision.class != ActionClass::None {
            let known = status.is_transitional();
            decision.steps = vec![Step::WaitSteady];
            decision.restore_key = None;
            decision.resume_from = None;
            decision.reasons.push(if known {
                format!("the live job is {status}: this pass waits for it to settle, the next pass acts")
            } else {
                format!(
                    "the live status {status} is not one dli-gitops knows: this pass waits for a known status, the next pass acts"
                )
            });
        } else if !settled {
            decision.reasons.push(format!(
                "the live job is {status}, already heading where git wants it"
            ));
            action.settling = Some(status.to_string());
        }

        action.class = decision.class;
        if decision.steps.iter().any(writes_config) {
            action.config = Some(Box::new(self.config.as_ref().clone()));
        }
        action.steps = decision.steps;
        action.restore_key = decision.restore_key;
        action.resume_from = decision.resume_from;
        action.reason = decision.reasons.join("; ");
        action
    }

    /// Only fields a running job takes without a restart differ: update it where it runs.
    fn update_running(&self, live: &ObservedFlinkJob, diffs: &[FieldDiff]) -> Decision {
        let mut steps = Vec::new();
        if diffs.iter().any(|diff| diff.field != TAGS_FIELD) {
            if self.policy.backups {
                steps.push(Step::Backup);
            }
            steps.push(Step::UpdateJob);
        }
        steps.extend(tag_step(&self.config.tags, &live.config.tags, false));
        Decision {
            class: ActionClass::UpdateInPlace,
            steps,
            reasons: vec![format!(
                "only fields that change without a restart differ ({}); the job keeps running",
                field_list(diffs)
            )],
            restore_key: None,
            resume_from: None,
        }
    }

    /// The change needs the job stopped (or it is stopped, started or restored): stop with a
    /// savepoint when stateful, update, restore or re-import the state, start as git wants.
    fn restart(
        &self,
        live: &ObservedFlinkJob,
        running: bool,
        diffs: &[FieldDiff],
        restore: Option<PendingRestore>,
    ) -> Decision {
        let desired_running = self.desired_running();
        let definition_changed = diffs.iter().any(|diff| diff.field != TAGS_FIELD);
        let mut reasons = Vec::new();
        let mut steps = Vec::new();
        if definition_changed && self.policy.backups {
            steps.push(Step::Backup);
        }
        let stop_savepoint = running && self.savepoint_mode();
        if running {
            steps.push(Step::Stop {
                trigger_savepoint: stop_savepoint,
            });
        }
        // The definition is written with the documented update call (PUT), never an import of
        // a zip we made: the DLI user guide imports only what DLI itself exported.
        if definition_changed {
            steps.push(Step::UpdateJob);
        }
        steps.extend(tag_step(&self.config.tags, &live.config.tags, false));

        let restore_key = restore.as_ref().map(|restore| restore.key.clone());
        let (resume_from, state_note) = self.resume_state(
            live,
            restore,
            stop_savepoint,
            definition_changed,
            &mut steps,
            &mut reasons,
        );
        let resume_from = if desired_running {
            steps.push(Step::Start {
                resume_savepoint: resume_from.is_some(),
            });
            resume_from
        } else {
            None
        };

        let class = match (restore_key.is_some(), running, desired_running) {
            (true, _, _) if !diffs.is_empty() => ActionClass::Upgrade,
            (true, _, _) => ActionClass::Restore,
            (false, true, true) => ActionClass::Upgrade,
            (false, true, false) => ActionClass::Stop,
            (false, false, true) => ActionClass::Start,
            (false, false, false) => ActionClass::UpdateInPlace,
        };
        push_restart_reasons(&mut reasons, class, live, running, desired_running, diffs);
        if stop_savepoint && restore_key.is_some() {
            reasons.push(
                "the state at stop is still saved in a savepoint, but the job resumes from the restore savepoint"
                    .to_string(),
            );
        }
        reasons.extend(state_note);
        Decision {
            class,
            steps,
            reasons,
            restore_key,
            resume_from,
        }
    }

    /// The state a restarted job resumes from (before the start step decides whether it
    /// starts at all), pushing the savepoint import that brings it in, and a note when it
    /// starts from empty state.
    fn resume_state(
        &self,
        live: &ObservedFlinkJob,
        restore: Option<PendingRestore>,
        stop_savepoint: bool,
        definition_changed: bool,
        steps: &mut Vec<Step>,
        reasons: &mut Vec<String>,
    ) -> (Option<SavepointSource>, Option<String>) {
        let desired_running = self.desired_running();
        if let Some(restore) = restore {
            reasons.push(format!(
                "the restore request changed: restores {}",
                describe_source(&restore.source)
            ));
            steps.push(Step::ImportSavepoint {
                source: restore.source.clone(),
            });
            return (Some(restore.source), None);
        }
        if !self.savepoint_mode() {
            let note = desired_running
                .then(|| "upgrade_mode stateless: starts from empty state".to_string());
            return (None, note);
        }
        if stop_savepoint {
            // Every stateful start goes through savepoint import: the savepoint the stop took is
            // imported into the updated job, so the run resumes from exactly that one whatever
            // the update did to the job's savepoint link.
            if desired_running {
                steps.push(Step::ImportSavepoint {
                    source: SavepointSource::FromStop,
                });
            }
            return (Some(SavepointSource::FromStop), None);
        }
        let journal_savepoint = self.journal.and_then(|entry| entry.last_savepoint.clone());
        let resume_from = if let Some(path) = &live.savepoint_path {
            if definition_changed && desired_running {
                // The update may detach the savepoint the stopped job held; import it again
                // so that the start keeps the state.
                let source = SavepointSource::Path(path.clone());
                steps.push(Step::ImportSavepoint {
                    source: source.clone(),
                });
                Some(source)
            } else {
                Some(SavepointSource::Held(path.clone()))
            }
        } else if let (true, Some(path)) = (desired_running, journal_savepoint) {
            // The service lost track of the savepoint (an interrupted upgrade, or a job that
            // was imported over); the journal still knows the one taken at our last stop.
            let source = SavepointSource::Path(path);
            steps.push(Step::ImportSavepoint {
                source: source.clone(),
            });
            Some(source)
        } else {
            None
        };
        let note = (desired_running && resume_from.is_none())
            .then(|| "no savepoint is known: starts from empty state".to_string());
        (resume_from, note)
    }

    /// The job type changed between SQL and Jar: no update call can do that, so the job is
    /// deleted and created again. Its state cannot carry over.
    fn replace(
        &self,
        live: &ObservedFlinkJob,
        running: bool,
        restore: Option<PendingRestore>,
    ) -> Decision {
        let mut steps = Vec::new();
        if self.policy.backups {
            steps.push(Step::Backup);
        }
        if running {
            steps.push(Step::Stop {
                trigger_savepoint: false,
            });
        }
        steps.push(Step::Delete);
        self.push_create_steps(&mut steps);
        let mut restore_key = None;
        let mut resume_from = None;
        if let Some(restore) = restore {
            steps.push(Step::ImportSavepoint {
                source: restore.source.clone(),
            });
            restore_key = Some(restore.key);
            resume_from = Some(restore.source);
        }
        if self.desired_running() {
            steps.push(Step::Start {
                resume_savepoint: resume_from.is_some(),
            });
        } else {
            resume_from = None;
        }
        Decision {
            class: ActionClass::Upgrade,
            steps,
            reasons: vec![format!(
                "the job type changes from {} to {}: the job is deleted and created again, without its state",
                live.config.job_type, self.config.job_type
            )],
            restore_key,
            resume_from,
        }
    }
}

/// Nothing to do: no field differs, no restore is pending and the job runs (or not) as git
/// wants. A job that ran to completion (a bounded source) did what `running` asked; starting
/// it again on every pass would re-run it forever. A changed definition does run it again.
fn in_sync(
    live: &ObservedFlinkJob,
    running: bool,
    desired_running: bool,
    diffs: &[FieldDiff],
    no_restore: bool,
) -> Option<Decision> {
    let finished = live.status == FlinkJobStatus::Finish;
    if !(diffs.is_empty()
        && no_restore
        && (running == desired_running || (finished && desired_running)))
    {
        return None;
    }
    let reason = if finished && desired_running {
        "in sync: the job finished, and a finished job is not started again unless its definition changes"
            .to_string()
    } else {
        "in sync".to_string()
    };
    Some(Decision {
        class: ActionClass::None,
        steps: Vec::new(),
        reasons: vec![reason],
        restore_key: None,
        resume_from: None,
    })
}

/// Why a restart of this class: what changed on a running or stopped job, or the state git
/// asks for against the live status.
fn push_restart_reasons(
    reasons: &mut Vec<String>,
    class: ActionClass,
    live: &ObservedFlinkJob,
    running: bool,
    desired_running: bool,
    diffs: &[FieldDiff],
) {
    let changed_fields = field_list(diffs);
    let status = &live.status;
    match class {
        ActionClass::Upgrade if !diffs.is_empty() => reasons.push(format!(
            "{changed_fields} changed on a {} job",
            if running { "running" } else { "stopped" }
        )),
        ActionClass::UpdateInPlace => reasons.push(format!(
            "{changed_fields} changed; the job is not running ({status}), so nothing restarts"
        )),
        ActionClass::Start | ActionClass::Stop => {
            reasons.push(format!(
                "desired_state is {}, the live job is {status}",
                if desired_running {
                    "running"
                } else {
                    "stopped"
                }
            ));
            if !diffs.is_empty() {
                reasons.push(format!("{changed_fields} changed"));
            }
        }
        _ => {}
    }
}

/// Prune a managed job that left git: back up, stop (keeping its state in a savepoint), delete.
fn prune(live: &ObservedFlinkJob, policy: &PlanPolicy) -> JobAction {
    let status = &live.status;
    let (steps, reason) = if status.is_running() || status.is_stopped() {
        let mut steps = Vec::new();
        if policy.backups {
            steps.push(Step::Backup);
        }
        if status.is_running() {
            // The savepoint lets a rollback resume where the job stopped.
            steps.push(Step::Stop {
                trigger_savepoint: true,
            });
        }
        steps.push(Step::Delete);
        (
            steps,
            "managed by dli-gitops and no longer in git".to_string(),
        )
    } else {
        (
            vec![Step::WaitSteady],
            format!(
                "managed by dli-gitops and no longer in git; the live job is {status}: this pass waits for it to settle, the next pass prunes"
            ),
        )
    };
    JobAction {
        live_id: Some(live.id),
        steps,
        reason,
        ..JobAction::new(live.config.kind(), live.name.clone(), ActionClass::Prune)
    }
}

/// The tag API calls that turn `live` tags into `desired` ones. `full` sets every desired tag
/// (after an import, whose effect on tags is unknown).
fn tag_step(
    desired: &BTreeMap<String, String>,
    live: &BTreeMap<String, String>,
    full: bool,
) -> Option<Step> {
    let set: BTreeMap<String, String> = desired
        .iter()
        .filter(|(key, value)| full || live.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let remove: Vec<String> = live
        .keys()
        .filter(|key| !desired.contains_key(*key))
        .cloned()
        .collect();
    if set.is_empty() && remove.is_empty() {
        None
    } else {
        Some(Step::UpdateTags { set, remove })
    }
}

fn writes_config(step: &Step) -> bool {
    matches!(step, Step::CreateJob | Step::UpdateJob)
}

fn field_list(diffs: &[FieldDiff]) -> String {
    diffs
        .iter()
        .map(|diff| diff.field.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn describe_source(source: &SavepointSource) -> String {
    match source {
        SavepointSource::FromStop => "the savepoint taken when the job stops".to_string(),
        SavepointSource::Path(path) => format!("savepoint {path}"),
        SavepointSource::FromTarget(target) => {
            format!("the latest savepoint of this job in target `{target}`")
        }
        SavepointSource::Held(path) => format!("savepoint {path}, which the job holds"),
    }
}

/// The service defaults of a job type and their field map, built once per process: every
/// create is compared with them (10,000 creates would otherwise build 10,000 equal maps).
fn defaults_with_map(
    kind: crate::model::JobKind,
) -> &'static (FlinkJobConfig, serde_json::Map<String, serde_json::Value>) {
    use std::sync::OnceLock;
    static SQL: OnceLock<(FlinkJobConfig, serde_json::Map<String, serde_json::Value>)> =
        OnceLock::new();
    static JAR: OnceLock<(FlinkJobConfig, serde_json::Map<String, serde_json::Value>)> =
        OnceLock::new();
    let cell = if kind == crate::model::JobKind::FlinkJar {
        &JAR
    } else {
        &SQL
    };
    cell.get_or_init(|| {
        let defaults = FlinkJobConfig::defaults_for(kind);
        let map = defaults.to_field_map();
        (defaults, map)
    })
}
