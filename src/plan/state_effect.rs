//! What a planned change does to a Flink job's state, as a label on every change: in place,
//! restart with savepoint, restart without state, delete (with backup), and the stop/start
//! halves of those. Derived from the steps alone, so the label never disagrees with them.

use serde::{Deserialize, Serialize};

use super::{ActionClass, JobAction, Step};
use crate::model::JobKind;

/// A change's effect on the job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateEffect {
    /// The job is neither stopped nor started: its state is untouched (hot updates, tags, an
    /// update of a stopped job, DLF definitions).
    InPlace,
    /// Stopped with a savepoint (copied into the catalog first) and started from it.
    RestartWithSavepoint,
    /// Stopped and started again from empty state (`upgrade_mode: stateless`, a replacement
    /// without restore).
    RestartWithoutState,
    /// Stopped with a savepoint (kept in the catalog); not started.
    StopWithSavepoint,
    /// Stopped without a savepoint; its state is not kept.
    StopWithoutSavepoint,
    /// Started (or created and started) from a savepoint.
    StartFromSavepoint,
    /// Started (or created and started) from empty state.
    StartWithoutState,
    /// Deleted after an export (and, when it ran, a savepoint kept in the catalog).
    DeleteWithBackup,
    /// Deleted without a backup (backups are off).
    Delete,
}

impl StateEffect {
    /// The label of a change (`None` for no change and for a wait on a moving job).
    pub fn of(action: &JobAction) -> Option<StateEffect> {
        if action.class == ActionClass::None
            || action.steps.is_empty()
            || action
                .steps
                .iter()
                .all(|step| matches!(step, Step::WaitSteady))
        {
            return None;
        }
        let has = |wanted: fn(&Step) -> bool| action.steps.iter().any(wanted);
        let backup = has(|step| matches!(step, Step::Backup));
        let deletes = has(|step| matches!(step, Step::Delete));
        let creates = has(|step| matches!(step, Step::CreateJob));
        if deletes && !creates {
            return Some(if backup {
                StateEffect::DeleteWithBackup
            } else {
                StateEffect::Delete
            });
        }
        if action.kind == JobKind::Dlf {
            return Some(StateEffect::InPlace);
        }
        let stop = action.steps.iter().find_map(|step| match step {
            Step::Stop { trigger_savepoint } => Some(*trigger_savepoint),
            _ => None,
        });
        let start = action.steps.iter().find_map(|step| match step {
            Step::Start { resume_savepoint } => Some(*resume_savepoint),
            _ => None,
        });
        Some(match (stop, start) {
            (None, None) => StateEffect::InPlace,
            (Some(_), Some(true)) => StateEffect::RestartWithSavepoint,
            (Some(_), Some(false)) => StateEffect::RestartWithoutState,
            (Some(true), None) => StateEffect::StopWithSavepoint,
            (Some(false), None) => StateEffect::StopWithoutSavepoint,
            (None, Some(true)) => StateEffect::StartFromSavepoint,
            (None, Some(false)) => StateEffect::StartWithoutState,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateEffect::InPlace => "in place",
            StateEffect::RestartWithSavepoint => "restart with savepoint",
            StateEffect::RestartWithoutState => "restart without state",
            StateEffect::StopWithSavepoint => "stop with savepoint",
            StateEffect::StopWithoutSavepoint => "stop without savepoint",
            StateEffect::StartFromSavepoint => "start from savepoint",
            StateEffect::StartWithoutState => "start without state",
            StateEffect::DeleteWithBackup => "delete (with backup)",
            StateEffect::Delete => "delete (no backup)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SavepointSource;

    fn action(kind: JobKind, class: ActionClass, steps: Vec<Step>) -> JobAction {
        JobAction {
            live_id: Some(1),
            steps,
            ..JobAction::new(kind, "j".into(), class)
        }
    }

    #[test]
    fn every_change_is_labelled_by_its_steps() {
        let sql = JobKind::FlinkSql;
        let upgrade = action(
            sql,
            ActionClass::Upgrade,
            vec![
                Step::Backup,
                Step::Stop {
                    trigger_savepoint: true,
                },
                Step::UpdateJob,
                Step::ImportSavepoint {
                    source: SavepointSource::FromStop,
                },
                Step::Start {
                    resume_savepoint: true,
                },
            ],
        );
        assert_eq!(
            StateEffect::of(&upgrade),
            Some(StateEffect::RestartWithSavepoint)
        );
        let stateless = action(
            sql,
            ActionClass::Upgrade,
            vec![
                Step::Stop {
                    trigger_savepoint: false,
                },
                Step::UpdateJob,
                Step::Start {
                    resume_savepoint: false,
                },
            ],
        );
        assert_eq!(
            StateEffect::of(&stateless),
            Some(StateEffect::RestartWithoutState)
        );
        let hot = action(sql, ActionClass::UpdateInPlace, vec![Step::UpdateJob]);
        assert_eq!(StateEffect::of(&hot), Some(StateEffect::InPlace));
        let prune = action(
            sql,
            ActionClass::Prune,
            vec![
                Step::Backup,
                Step::Stop {
                    trigger_savepoint: true,
                },
                Step::Delete,
            ],
        );
        assert_eq!(StateEffect::of(&prune), Some(StateEffect::DeleteWithBackup));
        let create = action(
            sql,
            ActionClass::Create,
            vec![
                Step::CreateJob,
                Step::Start {
                    resume_savepoint: false,
                },
            ],
        );
        assert_eq!(
            StateEffect::of(&create),
            Some(StateEffect::StartWithoutState)
        );
        let wait = action(sql, ActionClass::Upgrade, vec![Step::WaitSteady]);
        assert_eq!(StateEffect::of(&wait), None);
        let dlf = action(
            JobKind::Dlf,
            ActionClass::UpdateInPlace,
            vec![Step::DlfImport],
        );
        assert_eq!(StateEffect::of(&dlf), Some(StateEffect::InPlace));
    }
}
