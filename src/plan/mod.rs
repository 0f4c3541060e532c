//! desired × observed × journal view → [`Plan`]: the pure, deterministic planner.
//!
//! The plan leaves the executor (`apply`) no choices: every action lists the exact ordered
//! [`Step`]s to run, the exact configuration to write, and which savepoint each start resumes
//! from. Planning does no I/O; the same inputs always give the same plan, with the same `id`.
//!
//! Identity on the live side is the job name (within a kind family: Flink jobs and DLF jobs are
//! separate namespaces). Jobs that are live but neither in git nor managed never appear.
//!
//! # Design and invariants
//!
//! `plan::plan(&DesiredJobs, &ObservedJobs, &JournalView, &PlanPolicy) -> Plan` is pure and
//! deterministic: no I/O, no clock, no randomness; actions sorted by kind then name, field diffs
//! sorted by field name; `Plan.id` is the hex SHA-256 of the serialised actions and warnings.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the types (`Plan`, `JobAction`, `ActionClass`, `Step`, `SavepointSource`, `JournalView`, `PlanPolicy`), the entry point, the prune guard |
//! | `flink.rs` | one decision per Flink job: create / converge / replace (SQL↔Jar) / prune |
//! | `dlf.rs` | DLF jobs: decided by the digest last imported (or an equivalent one export recorded), drift against the journal's `live_digest`, the schedule against `desired_state` |
//! | `render.rs` | the text rendering (the JSON is the serde form) |
//! | `state_effect.rs` | `StateEffect`: each change's effect on the job's state, from its steps (`in place`, `restart with savepoint`, `restart without state`, `stop with/without savepoint`, `start from savepoint`/`without state`, `delete (with backup)`); `Plan::new` fills `JobAction::state_effect` (JSON `state_effect`, text `state:`) |
//! | `order.rs`, `drift.rs` | `depends_on`: holds, `after`, `Plan::order`; drift per job and `ignore_differences` (see the `order` and `drift` module docs) |
//!
//! Decision rules for a Flink job that is in git and live (`running` = live status `job_running`):
//!
//! * equal config (after `field_diffs`, which skips unset service-computed fields), no pending
//!   restore, live state = `desired_state` → `None`. `job_finish` with `desired_state: running`
//!   also counts as in sync (a bounded job is not re-run every pass).
//! * running, desired running, only `HOT_FIELDS` and/or `tags` differ → `UpdateInPlace`:
//!   `UpdateJob` (PUT) and/or `UpdateTags`.
//! * otherwise: `Backup` (when the definition changes and backups are on), `Stop` if running
//!   (`trigger_savepoint` = `upgrade_mode: savepoint`), `UpdateJob` if the definition changed, `UpdateTags` if tags differ (always after an import),
//!   at most one `ImportSavepoint`, and `Start` if desired running. Class: `Upgrade` (running →
//!   running, or any change + restore), `Restore` (restore only), `Stop`, `Start`, or
//!   `UpdateInPlace` (stopped → stopped).
//! * which savepoint: a pending restore wins (`Path` or `FromTarget`, imported); else stateless
//!   mode starts empty; else a stop savepoint (`FromStop`, always imported after the update, before
//!   the start); else for a stopped job the savepoint it holds (imported again as `Path` when the
//!   definition changed and the job starts, `Held` otherwise), else the journal's `last_savepoint`
//!   (imported), else empty state (said in the reason). Every stateful start goes through
//!   `ImportSavepoint`, so the run resumes from exactly the savepoint the plan names, whatever an
//!   update did to the job's savepoint link.
//! * job definitions are written only with the documented create/update calls (`CreateJob`,
//!   `UpdateJob`). There is no import of a zip we author: the DLI user guide (dli_01_0461, "Managing
//!   Flink Jobs", opentelekomcloud-docs/data-lake-insight
//!   `umn/.../managing_flink_jobs/common_operations_of_flink_jobs.rst`) imports only "jobs whose data
//!   format is the same as that of Flink jobs exported from DLI", advises the create API for jobs
//!   made elsewhere, and the export layout is published nowhere (not in the SDKs, the Terraform
//!   provider or the docs). Export keeps its role as the backup before an overwrite or delete, and
//!   import its role in `rollback`, which re-imports such a genuine export (`is_cover: true`).
//!   `JobAction.resume_from` records the choice; `None` on a starting job means empty state.
//! * a moving live status (`is_transitional`, or any status the model does not know) → the class the
//!   settled job would get, with `[WaitSteady]` as the only step; if the job is already heading where
//!   git wants it, `None`.
//! * job type changes (SQL ↔ Jar) → `Upgrade` by replacement: `Backup`, `Stop` (no savepoint),
//!   `Delete`, create steps, `Start` from empty state (or the restore savepoint).
//! * not managed (no `managed-by` tag of this installation, not `managed` in the journal) →
//!   adopted: the same rules, the managed tag is added, and the reason says so. The managed tag is
//!   always part of the written `config` and of the tag comparison.
//! * ownership per installation (`PlanPolicy.instance`, the config's top-level `instance`): the
//!   managed tag's value is `dli-gitops` for the default installation and `dli-gitops.<instance>`
//!   otherwise (`model::managed_tag_value`, `ObservedFlinkJob::ownership`). A live job tagged by
//!   another installation and not `managed` in our journal is a conflict: in git → `None` with a
//!   warning, out of git → never pruned (a warning). One our journal manages is ours, and the tag
//!   comparison moves it to our value (migration, `UpdateTags`, no restart).
//! * a job the plan leaves alone while it is still moving toward git carries `settling` (its
//!   status); a plan with no changes but settling jobs says it is waiting, not that jobs match.
//!
//! Prune: a live job not in git, managed (tag or journal), `policy.prune`, not `protected` in the
//! journal, and git not empty (unless `allow_empty_prune`) → `Backup`, `Stop` with a savepoint if
//! running, `Delete`. Every refusal is a plan warning. Unmanaged jobs outside git never appear.
//! Duplicate names (in git or live) are skipped with a warning.
//!
//! The executor's contract (what `apply` must do, and journal, for each action):
//!
//! * run `steps` in order and stop the action at the first failure; `WaitSteady` ends the action.
//! * write exactly `JobAction.config` for `CreateJob`/`UpdateJob`; for DLF use
//!   `JobAction::desired_dlf(&desired)`, which refuses a desired job whose digest moved on.
//! * journal, on success: `managed = true`, `protected = action.protected`, the `desired_digest`
//!   (DLF: as `imported_digest`); after `Stop { trigger_savepoint: true }` the savepoint path the job
//!   reports, as `last_savepoint`; after the `ImportSavepoint` of an action with a `restore_key`, that
//!   key as `applied_restore_key`. These fill the next `JournalView`.

mod dlf;
mod drift;
mod flink;
mod order;
mod render;
mod state_effect;

pub use dlf::{DLF_SERVER_FIELDS, dlf_definition_digest, without_server_fields};
pub(crate) use order::waves;
pub use state_effect::StateEffect;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{
    DesiredDlfJob, DesiredJobs, DriftMode, FieldDiff, FlinkJobConfig, JobKind, ObservedJobs,
};

/// What the journal knows about the jobs of one target, filled by the caller.
///
/// The journal is the memory the live service lacks: which jobs we manage, which explicit
/// restore we already applied, which DLF definition we last imported, which savepoint we last
/// took when stopping a job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JournalView {
    /// Flink jobs, by name.
    #[serde(default)]
    pub flink: BTreeMap<String, JournalFlinkJob>,
    /// DLF jobs, by name.
    #[serde(default)]
    pub dlf: BTreeMap<String, JournalDlfJob>,
    /// The savepoint catalog's verified copies per Flink job, oldest first
    /// (`restore: {from_catalog}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub savepoint_catalog: BTreeMap<String, Vec<CatalogSavepoint>>,
    /// Automatic rollback's journaled memory of Flink jobs, by name
    /// (`apply::auto_rollback::Memory`). The planner reads only the failure mark ([`Self::held`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auto_rollback: BTreeMap<String, serde_json::Value>,
}

impl JournalView {
    /// The desired digest automatic rollback marked failed for this Flink job, and why: while
    /// git still asks for exactly that definition, the planner leaves the job on the one it
    /// rolled back to instead of looping back into the bad version.
    pub fn held(&self, name: &str) -> Option<(&str, &str)> {
        let mark = self.auto_rollback.get(name)?.get("failed")?;
        Some((
            mark.get("desired_digest")?.as_str()?,
            mark.get("note")?.as_str()?,
        ))
    }
}

/// A verified copy in the savepoint catalog: its journal seq and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSavepoint {
    pub seq: u64,
    pub path: String,
    /// The service's savepoint it is a copy of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
}

/// The journal's memory of one Flink job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JournalFlinkJob {
    /// dli-gitops created, imported or adopted this job.
    #[serde(default)]
    pub managed: bool,
    /// The job's last applied definition said `prune: false`; it is never pruned.
    #[serde(default)]
    pub protected: bool,
    /// [`crate::model::Restore::key`] of the restore request last applied.
    #[serde(default)]
    pub applied_restore_key: Option<String>,
    /// The savepoint the executor last saw produced for this job (`obs://bucket/dir/`).
    #[serde(default)]
    pub last_savepoint: Option<String>,
    /// The desired digest last applied successfully: git still asking for it while the live
    /// job differs is drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
}

/// The journal's memory of one DLF job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JournalDlfJob {
    #[serde(default)]
    pub managed: bool,
    #[serde(default)]
    pub protected: bool,
    /// Digest of the definition last imported successfully.
    #[serde(default)]
    pub imported_digest: Option<String>,
    /// [`crate::plan::dlf_definition_digest`] of the live definition as read right after
    /// that import (or at adoption): a live definition with another digest was edited
    /// outside dli-gitops (drift).
    #[serde(default)]
    pub live_digest: Option<String>,
    /// Digests of desired jobs that `export` wrote from this live job: they describe what is
    /// live as well as `imported_digest` does, so a repository written by `export` plans no
    /// re-import.
    #[serde(default)]
    pub equivalent_digests: Vec<String>,
    /// An interrupted pass stopped this job's schedule and meant to start it again.
    #[serde(default)]
    pub restart_schedule: bool,
}

/// The target's policy, as far as planning is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPolicy {
    /// Delete managed jobs that are no longer in git.
    pub prune: bool,
    /// Allow pruning when git resolves to zero jobs (normally a sign of a broken checkout).
    pub allow_empty_prune: bool,
    /// Export a live job to the backup prefix before it is overwritten or deleted.
    pub backups: bool,
    /// The installation this plan is made for: its jobs carry
    /// `managed-by: `[`crate::model::managed_tag_value`]`(instance)`. Jobs of another
    /// installation in the same project are conflicts, never changed.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Drift on an automatic pass: `Some(self_heal)` (the target's), which each job's `drift:`
    /// overrides; drift a job reports is shown and journaled but not reverted. `None`: a pass
    /// a person asked for (`apply`, a manual sync), which reverts all drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_heal: Option<bool>,
}

fn default_instance() -> String {
    crate::model::DEFAULT_INSTANCE.to_string()
}

impl Default for PlanPolicy {
    fn default() -> PlanPolicy {
        PlanPolicy {
            prune: false,
            allow_empty_prune: false,
            backups: true,
            instance: default_instance(),
            self_heal: None,
        }
    }
}

/// One reconcile pass's intent: an action per job, sorted by kind then name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Hex SHA-256 of the actions and warnings: equal plans have equal ids.
    pub id: String,
    pub actions: Vec<JobAction>,
    /// Things the planner chose not to do, and why (pruning refused, duplicate names, ...).
    pub warnings: Vec<String>,
}

/// What happens to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobAction {
    pub kind: JobKind,
    pub name: String,
    pub class: ActionClass,
    /// The live job's id when the plan was made (ids change on re-import; the executor maps
    /// them from `job_mapping` as it goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_id: Option<i64>,
    /// Field-level differences, live → desired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<FieldDiff>,
    /// The steps to run, in order. Empty for [`ActionClass::None`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Why this class was chosen, in a sentence.
    pub reason: String,
    /// Flink jobs: the exact configuration `CreateJob` and `UpdateJob` write,
    /// managed-by tag included. Boxed: most actions of a plan (the jobs in sync) carry none,
    /// and an inline configuration would make each of them three times larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Box<FlinkJobConfig>>,
    /// The digest of the desired job this action converges to (journal it on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_digest: Option<String>,
    /// The state the job starts with, when the action starts it: `None` means empty state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<SavepointSource>,
    /// The restore request this action applies: journal it once its `ImportSavepoint` succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_key: Option<String>,
    /// The desired job says `prune: false` (journal it, so that pruning spares it later).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Nothing to do, but the live job is still moving (this status) toward what git wants:
    /// a plan with no changes says so instead of claiming the jobs match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settling: Option<String>,
    /// `depends_on`: the jobs (journal keys) whose actions of this plan must end, successfully,
    /// before this one starts. Empty: no order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Not carried out this pass, and why: a dependency is Degraded, missing or held, a
    /// dependent has not settled, or the job's drift is reported only. The steps show what
    /// would run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_hold: Option<String>,
    /// The live job moved away from a definition git still asks for (drift), and what this
    /// pass does about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Fields that differ live but are in the job's `ignore_differences` (not drift; an update
    /// keeps their live values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// What the change does to the job's state (in place, restart with savepoint, ...), from
    /// its steps; filled by [`Plan::new`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_effect: Option<StateEffect>,
}

/// Drift found on one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// The fields that drifted (`job` when the live job is gone, `desired_state` when only the
    /// run state differs; DLF: `definition`, `schedule_status`).
    pub fields: Vec<String>,
    /// What this pass does: revert, or report only.
    pub mode: DriftMode,
}

/// The kind of change a job gets; each job gets exactly one.
///
/// Declared from weakest to strongest effect on a running job, so `Ord` says which one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionClass {
    /// Equal after normalisation: nothing to do.
    None,
    /// Change without stopping: hot fields, tags, or any change to a job that is not running.
    UpdateInPlace,
    /// Run a stopped job (after updating it, if it changed).
    Start,
    /// Stop a running job (and update it, if it changed).
    Stop,
    /// Import an explicitly requested savepoint (stopping and restarting around it).
    Restore,
    /// Stop, change, restore state, start.
    Upgrade,
    /// In git, not live.
    Create,
    /// Managed, no longer in git: back up, stop, delete.
    Prune,
}

impl ActionClass {
    /// The word used in rendered plans and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionClass::None => "none",
            ActionClass::UpdateInPlace => "update",
            ActionClass::Start => "start",
            ActionClass::Stop => "stop",
            ActionClass::Restore => "restore",
            ActionClass::Upgrade => "upgrade",
            ActionClass::Create => "create",
            ActionClass::Prune => "prune",
        }
    }

    /// The symbol in front of a rendered action (ASCII, so logs stay readable everywhere).
    pub fn symbol(self) -> &'static str {
        match self {
            ActionClass::None => " ",
            ActionClass::UpdateInPlace => "~",
            ActionClass::Start => ">",
            ActionClass::Stop => "#",
            ActionClass::Restore => "<<",
            ActionClass::Upgrade => "-/+",
            ActionClass::Create => "+",
            ActionClass::Prune => "-",
        }
    }
}

/// One thing the executor does to one job. Steps of an action run in order; a failed step ends
/// the action (the next pass re-plans from what it observes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The live job is moving between statuses: wait (with a timeout) until it settles, then end
    /// the action. Always the only step; the next pass plans the change against the settled job.
    WaitSteady,
    /// Export the live job to the target's backup prefix and journal the zip path.
    Backup,
    /// Stop the job (`streaming/jobs/stop`) and wait until it is stopped. With a savepoint, the
    /// executor journals the savepoint path the job reports afterwards. On a DLF job: stop its
    /// schedule (`jobs/{name}/stop`; `trigger_savepoint` is always false).
    Stop { trigger_savepoint: bool },
    /// Create the job from the action's `config` (`sql-jobs` / `flink-jobs` create call). The
    /// only way a job definition is written besides `UpdateJob`: DLI imports only zips it
    /// exported itself, so dli-gitops never authors one.
    CreateJob,
    /// Update the job with the action's `config` (PUT). Tags are not part of it: see `UpdateTags`.
    UpdateJob,
    /// Set and remove tags through the tag API (no restart).
    UpdateTags {
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    /// `import-savepoint` into the (stopped) job.
    ImportSavepoint { source: SavepointSource },
    /// Run the job; `resume_savepoint` restores the savepoint the job holds. On a DLF job:
    /// start its schedule (`jobs/{name}/start`; `resume_savepoint` is always false).
    Start { resume_savepoint: bool },
    /// Delete the live job.
    Delete,
    /// Bundle the DLF job (definition from the desired job with `desired_digest`), upload it and
    /// import it with `sameNamePolicy: OVERWRITE`; poll the system task.
    DlfImport,
}

/// Where the state a job resumes from comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "value", rename_all = "snake_case")]
pub enum SavepointSource {
    /// The savepoint the `Stop { trigger_savepoint: true }` step of this action produced.
    FromStop,
    /// This savepoint directory (`obs://bucket/dir/`).
    Path(String),
    /// The latest savepoint of the same-named job in another target (promotion).
    FromTarget(String),
    /// The savepoint the stopped job already holds on the service (this path, when it was
    /// observed); used by `Start { resume_savepoint: true }` without an import.
    Held(String),
}

/// Counts of actions by class, for the summary line and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlanSummary {
    pub create: usize,
    pub update: usize,
    pub upgrade: usize,
    pub restore: usize,
    pub start: usize,
    pub stop: usize,
    pub prune: usize,
    /// Actions that only wait for a moving job to settle.
    pub waiting: usize,
    /// Actions on hold (dependencies, drift reported only); left out of the JSON when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl PlanSummary {
    /// The seven change classes and their counts, in summary order: (count, class word).
    pub fn by_class(&self) -> [(usize, &'static str); 7] {
        [
            (self.create, "create"),
            (self.update, "update"),
            (self.upgrade, "upgrade"),
            (self.restore, "restore"),
            (self.start, "start"),
            (self.stop, "stop"),
            (self.prune, "prune"),
        ]
    }
}

/// A plan cannot be carried out against the given inputs.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "looking up desired {kind} `{name}` for the plan: git has {found}, the plan was made for digest {expected}; re-plan"
    )]
    StaleDesired {
        kind: JobKind,
        name: String,
        expected: String,
        found: String,
    },
}

/// Plans one pass: what to do to every job in git and every managed job out of it.
pub fn plan(
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    view: &JournalView,
    policy: &PlanPolicy,
) -> Plan {
    // One action per job in git, plus prunes: reserved up front, so that the (large) actions
    // are not moved again as the vector grows.
    let mut actions =
        Vec::with_capacity(desired.flink.len() + desired.dlf.len() + observed.flink.len().min(16));
    let mut warnings = Vec::new();
    let git_is_empty = desired.flink.is_empty() && desired.dlf.is_empty();
    let inputs = PassInputs {
        desired,
        observed,
        view,
        policy,
        prune_guard: PruneGuard {
            policy,
            git_is_empty,
        },
    };
    flink::plan_flink(&inputs, &mut actions, &mut warnings);
    dlf::plan_dlf(&inputs, &mut actions, &mut warnings);
    sort_by_kind_and_name(&mut actions);
    drift::classify(desired, observed, view, policy, &mut actions);
    order::order(desired, observed, &mut actions, &mut warnings);
    warnings.sort();
    warnings.dedup();
    let plan = Plan::new(actions, warnings);
    tracing::debug!(
        plan_id = %plan.id,
        actions = plan.actions.len(),
        changes = plan.changes().count(),
        warnings = plan.warnings.len(),
        "Planned one pass."
    );
    plan
}

impl Plan {
    /// The same plan restricted to the jobs whose names match one of `patterns` (`*` any run of
    /// characters, `?` one character), as `terraform -target` does; its id is recomputed. The
    /// plan says what it left out, so nobody takes a selection for the whole.
    pub fn selected(self, patterns: &[String]) -> Plan {
        if patterns.is_empty() {
            return self;
        }
        let (kept, left_out): (Vec<JobAction>, Vec<JobAction>) =
            self.actions.into_iter().partition(|action| {
                patterns
                    .iter()
                    .any(|pattern| glob_matches(pattern, &action.name))
            });
        let mut warnings = self.warnings;
        let skipped = left_out
            .iter()
            .filter(|action| action.class != ActionClass::None)
            .count();
        if skipped > 0 {
            warnings.push(format!(
                "--select {}: {skipped} other job(s) with changes are left out of this plan",
                patterns.join(", ")
            ));
        }
        Plan::new(kept, warnings)
    }

    /// A plan with its content id computed.
    pub fn new(mut actions: Vec<JobAction>, warnings: Vec<String>) -> Plan {
        for action in &mut actions {
            action.state_effect = StateEffect::of(action);
        }
        let id = content_id(&mut actions, &warnings);
        Plan {
            id,
            actions,
            warnings,
        }
    }

    /// No action other than [`ActionClass::None`].
    pub fn is_empty(&self) -> bool {
        self.actions
            .iter()
            .all(|action| action.class == ActionClass::None)
    }

    /// The actions that change something.
    pub fn changes(&self) -> impl Iterator<Item = &JobAction> {
        self.actions
            .iter()
            .filter(|action| action.class != ActionClass::None)
    }

    pub fn summary(&self) -> PlanSummary {
        let mut summary = PlanSummary::default();
        for action in self.changes() {
            if action.is_waiting() {
                summary.waiting += 1;
                continue;
            }
            if action.is_held() {
                summary.held += 1;
                continue;
            }
            match action.class {
                ActionClass::None => {}
                ActionClass::Create => summary.create += 1,
                ActionClass::UpdateInPlace => summary.update += 1,
                ActionClass::Upgrade => summary.upgrade += 1,
                ActionClass::Restore => summary.restore += 1,
                ActionClass::Start => summary.start += 1,
                ActionClass::Stop => summary.stop += 1,
                ActionClass::Prune => summary.prune += 1,
            }
        }
        summary
    }

    /// The plan for people, Terraform-style.
    pub fn render_text(&self) -> String {
        // A job's SQL or a reason can carry control or bidi characters: escaped for the terminal.
        crate::terminal::escape(&render::render_text(self)).into_owned()
    }

    /// The plan as pretty JSON (the same document `serde` produces).
    pub fn render_json(&self) -> String {
        // Plain data with string keys always serialises. The summary counts ride along for
        // scripts (`Plan` reads back from this document, ignoring them).
        #[derive(Serialize)]
        struct PlanDocument<'a> {
            #[serde(flatten)]
            plan: &'a Plan,
            summary: PlanSummary,
            /// `depends_on`: the changes in the order they run (groups of job keys).
            #[serde(skip_serializing_if = "Vec::is_empty")]
            order: Vec<Vec<String>>,
        }
        serde_json::to_string_pretty(&PlanDocument {
            plan: self,
            summary: self.summary(),
            order: self.order(),
        })
        .unwrap_or_default()
    }
}

impl JobAction {
    /// An action of `class` on the job `name`, with nothing else decided yet: no live id,
    /// diffs, steps, reason, configuration or digest. Planners set what their case needs.
    pub fn new(kind: JobKind, name: String, class: ActionClass) -> Self {
        JobAction {
            kind,
            name,
            class,
            live_id: None,
            diffs: Vec::new(),
            steps: Vec::new(),
            reason: String::new(),
            config: None,
            desired_digest: None,
            resume_from: None,
            restore_key: None,
            protected: false,
            settling: None,
            after: Vec::new(),
            on_hold: None,
            drift: None,
            ignored: Vec::new(),
            state_effect: None,
        }
    }

    /// The action only waits for a moving job; the change itself comes on a later pass.
    pub fn is_waiting(&self) -> bool {
        self.steps.first() == Some(&Step::WaitSteady)
    }

    /// The executor leaves this action alone this pass ([`JobAction::on_hold`]).
    pub fn is_held(&self) -> bool {
        self.on_hold.is_some()
    }

    /// Held for a reason that a later pass must clear (a dependency), as opposed to drift that
    /// is reported only: the target has not converged while such an action is on hold.
    pub fn holds_convergence(&self) -> bool {
        self.is_held()
            && !self
                .drift
                .as_ref()
                .is_some_and(|drift| drift.mode == DriftMode::Report)
    }

    /// The job's key in `depends_on`, `after` and the journal (`name`, DLF `dlf:name`).
    pub fn key(&self) -> String {
        match self.kind {
            JobKind::Dlf => format!("dlf:{}", self.name),
            JobKind::FlinkSql | JobKind::FlinkJar => self.name.clone(),
        }
    }

    /// The desired DLF job this action imports, checked against the digest the plan was made for.
    pub fn desired_dlf<'a>(
        &self,
        desired: &'a DesiredJobs,
    ) -> Result<&'a DesiredDlfJob, PlanError> {
        let expected = self.desired_digest.clone().unwrap_or_default();
        match desired.dlf.iter().find(|job| job.name == self.name) {
            Some(job) if job.digest == expected => Ok(job),
            Some(job) => Err(PlanError::StaleDesired {
                kind: self.kind,
                name: self.name.clone(),
                expected,
                found: format!("digest {}", job.digest),
            }),
            None => Err(PlanError::StaleDesired {
                kind: self.kind,
                name: self.name.clone(),
                expected,
                found: "no such job".to_string(),
            }),
        }
    }
}

/// One pass's inputs, as each kind's planner reads them.
struct PassInputs<'a> {
    desired: &'a DesiredJobs,
    observed: &'a ObservedJobs,
    view: &'a JournalView,
    policy: &'a PlanPolicy,
    prune_guard: PruneGuard<'a>,
}

/// Decides whether a managed job missing from git may be pruned.
struct PruneGuard<'a> {
    policy: &'a PlanPolicy,
    git_is_empty: bool,
}

impl PruneGuard<'_> {
    /// `Ok(())` to prune, or the warning that explains why not.
    fn check(&self, kind: JobKind, name: &str, protected: bool) -> Result<(), String> {
        if !self.policy.prune {
            return Err(format!(
                "{kind} `{name}` is managed and no longer in git; pruning is off, so it is left alone"
            ));
        }
        if protected {
            return Err(format!(
                "{kind} `{name}` is no longer in git but was last applied with `prune: false`; it is left alone"
            ));
        }
        if self.git_is_empty && !self.policy.allow_empty_prune {
            return Err(format!(
                "{kind} `{name}` is not pruned: git resolves to zero jobs, which usually means a broken checkout; allow empty prune in the target's policy to prune everything"
            ));
        }
        Ok(())
    }
}

/// Sorts `actions` by kind then name (stable): the positions are sorted, then the actions are
/// put in place by following the permutation's cycles, each action moved once, instead of the
/// sort moving the large actions around many times (and without a second vector of them).
fn sort_by_kind_and_name(actions: &mut [JobAction]) {
    fn key(action: &JobAction) -> (JobKind, &str) {
        (action.kind, action.name.as_str())
    }
    if actions.is_sorted_by(|a, b| key(a) <= key(b)) {
        return;
    }
    // `order[i]`: the current position of the action that belongs at `i`.
    let mut order: Vec<usize> = (0..actions.len()).collect();
    order.sort_by(|&a, &b| key(&actions[a]).cmp(&key(&actions[b])));
    let mut placed = vec![false; actions.len()];
    for start in 0..actions.len() {
        let mut at = start;
        while !placed[at] {
            placed[at] = true;
            let from = order[at];
            if from == start {
                break;
            }
            actions.swap(at, from);
            at = from;
        }
    }
}

/// The plan's id: SHA-256 over its actions and warnings as JSON. A Flink create's `diffs` are
/// left out (set aside and put back): they are its configuration compared with the fixed
/// service defaults, and the configuration is hashed already (a create's diffs repeat its
/// whole SQL body; hashing them was a fifth of planning 10,000 creates).
fn content_id(actions: &mut [JobAction], warnings: &[String]) -> String {
    let derived =
        |action: &JobAction| action.class == ActionClass::Create && action.config.is_some();
    let set_aside: Vec<Vec<FieldDiff>> = actions
        .iter_mut()
        .filter(|action| derived(action))
        .map(|action| std::mem::take(&mut action.diffs))
        .collect();
    let id = hash_json(&(&*actions, warnings));
    for (action, diffs) in actions
        .iter_mut()
        .filter(|action| derived(action))
        .zip(set_aside)
    {
        action.diffs = diffs;
    }
    id
}

fn hash_json(value: &impl Serialize) -> String {
    // Serialised straight into the hash: a plan of 10,000 creates is tens of MB of JSON, never
    // held at once.
    struct HashWriter(Sha256);
    impl std::io::Write for HashWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = std::io::BufWriter::with_capacity(64 * 1024, HashWriter(Sha256::new()));
    // Writing into a hash cannot fail, and plain data always serialises.
    let _ = serde_json::to_writer(&mut writer, value);
    let hasher = match writer.into_inner() {
        Ok(inner) => inner.0,
        Err(error) => error.into_inner().into_parts().0.0,
    };
    hex::encode(hasher.finalize())
}

/// One kind's desired and live jobs indexed by name, the identity on the live side. A name that
/// git declares, or the service lists, more than once is set aside (the caller warns about it):
/// acting on an ambiguous name could touch the wrong job.
struct NameIndex<'a, Live> {
    desired_duplicates: BTreeSet<&'a str>,
    live_duplicates: BTreeSet<&'a str>,
    /// Live jobs listed once, by name. Hashed: looked up per job; what is built from its
    /// iteration (prunes, warnings) is sorted afterwards.
    live_by_name: HashMap<&'a str, &'a Live>,
    desired_names: HashSet<&'a str>,
}

impl<'a, Live> NameIndex<'a, Live> {
    fn new(
        desired_names: impl Iterator<Item = &'a str>,
        live: &'a [Live],
        live_name: impl Fn(&'a Live) -> &'a str,
    ) -> NameIndex<'a, Live> {
        // One pass per side: the set of names and its duplicates together.
        let mut desired_set = HashSet::new();
        let mut desired_duplicates = BTreeSet::new();
        for name in desired_names {
            if !desired_set.insert(name) {
                desired_duplicates.insert(name);
            }
        }
        let mut live_by_name = HashMap::with_capacity(live.len());
        let mut live_duplicates = BTreeSet::new();
        for job in live {
            let name = live_name(job);
            if live_by_name.insert(name, job).is_some() {
                live_duplicates.insert(name);
            }
        }
        for name in &live_duplicates {
            live_by_name.remove(name);
        }
        NameIndex {
            desired_duplicates,
            live_duplicates,
            live_by_name,
            desired_names: desired_set,
        }
    }

    /// The name is ambiguous in git or on the service.
    fn is_ambiguous(&self, name: &str) -> bool {
        self.desired_duplicates.contains(name) || self.live_duplicates.contains(name)
    }

    /// One warning per ambiguous name: git's side names the job `kind` ("DLF", "Flink"),
    /// `live_warning` words the service's side.
    fn warn_duplicates(
        &self,
        kind: &str,
        live_warning: impl Fn(&str) -> String,
        warnings: &mut Vec<String>,
    ) {
        for name in &self.desired_duplicates {
            warnings.push(format!(
                "git declares the {kind} job `{name}` more than once; it is skipped until the repository names it once"
            ));
        }
        for name in &self.live_duplicates {
            warnings.push(live_warning(name));
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

/// `*` matches any run of characters, `?` one; everything else matches itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}
