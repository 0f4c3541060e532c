//! Planning for DataArts Factory jobs: imported whole, compared by the digest last imported.
//!
//! The service rewrites a DLF job on import (ids, defaults, owner fields), so the live definition
//! is not compared field by field; the journal's digest of the definition we last imported is the
//! test of "already applied". The live definition still appears in the diff, for people.

use super::{ActionClass, JobAction, JournalView, NameIndex, PlanPolicy, PruneGuard, Step};
use crate::model::{DesiredDlfJob, DesiredJobs, FieldDiff, JobKind, ObservedDlfJob, ObservedJobs};

pub(super) fn plan_dlf(
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    view: &JournalView,
    policy: &PlanPolicy,
    prune_guard: &PruneGuard<'_>,
    actions: &mut Vec<JobAction>,
    warnings: &mut Vec<String>,
) {
    let index = NameIndex::new(
        desired.dlf.iter().map(|job| job.name.as_str()),
        &observed.dlf,
        |job: &ObservedDlfJob| job.name.as_str(),
    );
    for name in &index.desired_duplicates {
        warnings.push(format!(
            "git declares the DLF job `{name}` more than once; it is skipped until the repository names it once"
        ));
    }
    for name in &index.live_duplicates {
        warnings.push(format!(
            "the service lists the DLF job `{name}` more than once; it is left alone until it is listed once"
        ));
    }

    for desired_job in &desired.dlf {
        let name = desired_job.name.as_str();
        if index.is_ambiguous(name) {
            continue;
        }
        let journal = view.dlf.get(name);
        let imported_digest = journal.and_then(|entry| entry.imported_digest.as_deref());
        let managed = journal.is_some_and(|entry| entry.managed);
        actions.push(converge(
            desired_job,
            index.live_by_name.get(name).copied(),
            imported_digest,
            managed,
            policy,
        ));
    }

    for live in index.live_by_name.values() {
        if index.desired_names.contains(live.name.as_str()) {
            continue;
        }
        let Some(journal) = view.dlf.get(&live.name) else {
            continue;
        };
        if !journal.managed {
            continue;
        }
        match prune_guard.check(JobKind::Dlf, &live.name, journal.protected) {
            Ok(()) => {
                let mut steps = Vec::new();
                if policy.backups {
                    steps.push(Step::Backup);
                }
                steps.push(Step::Delete);
                actions.push(JobAction {
                    kind: JobKind::Dlf,
                    name: live.name.clone(),
                    class: ActionClass::Prune,
                    live_id: None,
                    diffs: Vec::new(),
                    steps,
                    reason: "managed by dli-gitops and no longer in git".to_string(),
                    config: None,
                    desired_digest: None,
                    resume_from: None,
                    restore_key: None,
                    protected: false,
                });
            }
            Err(warning) => warnings.push(warning),
        }
    }
}

fn converge(
    desired: &DesiredDlfJob,
    live: Option<&ObservedDlfJob>,
    imported_digest: Option<&str>,
    managed: bool,
    policy: &PlanPolicy,
) -> JobAction {
    let mut action = JobAction {
        kind: JobKind::Dlf,
        name: desired.name.clone(),
        class: ActionClass::None,
        live_id: None,
        diffs: Vec::new(),
        steps: Vec::new(),
        reason: String::new(),
        config: None,
        desired_digest: Some(desired.digest.clone()),
        resume_from: None,
        restore_key: None,
        protected: !desired.prune,
    };
    let Some(live) = live else {
        action.class = ActionClass::Create;
        action.steps = vec![Step::DlfImport];
        action.reason = "in git, not live".to_string();
        action.diffs = vec![digest_diff(None, &desired.digest)];
        return action;
    };
    if imported_digest == Some(desired.digest.as_str()) {
        action.reason = "in sync (this definition was the last one imported)".to_string();
        return action;
    }
    let mut steps = Vec::new();
    if policy.backups {
        steps.push(Step::Backup);
    }
    steps.push(Step::DlfImport);
    action.class = ActionClass::UpdateInPlace;
    action.steps = steps;
    action.diffs = vec![digest_diff(imported_digest, &desired.digest)];
    if live.definition != desired.definition {
        action.diffs.push(FieldDiff {
            field: "definition".to_string(),
            live: live.definition.clone(),
            desired: desired.definition.clone(),
        });
    }
    action.reason = match (managed, imported_digest) {
        (false, _) => {
            "adopts this live DLF job, which dli-gitops does not manage yet: git's definition is imported over it"
                .to_string()
        }
        (true, None) => "no import of this definition is journaled: it is imported again".to_string(),
        (true, Some(_)) => "the definition changed since the last import".to_string(),
    };
    action
}

fn digest_diff(imported_digest: Option<&str>, desired_digest: &str) -> FieldDiff {
    FieldDiff {
        field: "definition_digest".to_string(),
        live: imported_digest
            .map(|digest| serde_json::Value::String(digest.to_string()))
            .unwrap_or(serde_json::Value::Null),
        desired: serde_json::Value::String(desired_digest.to_string()),
    }
}
