//! Step-by-step progress of a pass's actions, for the daemon's status: which job is being
//! stopped, savepointed, imported or started right now.

use std::fmt;
use std::sync::Arc;

use crate::model::JobKind;
use crate::plan::Step;

/// One step about to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEvent {
    pub kind: JobKind,
    pub job: String,
    /// The action's class (`upgrade`, `create`, ...).
    pub action: String,
    /// The step, in words (`stop with a savepoint`).
    pub step: String,
    /// 1-based position of the step in its action, and the action's number of steps.
    pub number: usize,
    pub total: usize,
}

/// Where step events go; the default drops them.
#[derive(Clone, Default)]
pub struct StepProgress(Option<Arc<dyn Fn(StepEvent) + Send + Sync>>);

impl StepProgress {
    pub fn new(report: impl Fn(StepEvent) + Send + Sync + 'static) -> StepProgress {
        StepProgress(Some(Arc::new(report)))
    }

    /// Reports a step; `event` is only built when someone listens.
    pub fn report(&self, event: impl FnOnce() -> StepEvent) {
        if let Some(report) = &self.0 {
            report(event());
        }
    }
}

impl fmt::Debug for StepProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "StepProgress(reporting)"
        } else {
            "StepProgress(off)"
        })
    }
}

/// Listeners do not change what a pass does: any two compare equal.
impl PartialEq for StepProgress {
    fn eq(&self, _: &StepProgress) -> bool {
        true
    }
}

impl Eq for StepProgress {}

/// A step in words, for people.
pub fn step_words(step: &Step) -> String {
    match step {
        Step::WaitSteady => "waiting for the job to settle".into(),
        Step::Backup => "exporting a backup".into(),
        Step::Stop {
            trigger_savepoint: true,
        } => "stopping with a savepoint".into(),
        Step::Stop { .. } => "stopping".into(),
        Step::CreateJob => "creating the job".into(),
        Step::UpdateJob => "writing the new definition".into(),
        Step::UpdateTags { .. } => "updating tags".into(),
        Step::ImportSavepoint { .. } => "importing the savepoint".into(),
        Step::Start {
            resume_savepoint: true,
        } => "starting from the savepoint".into(),
        Step::Start { .. } => "starting".into(),
        Step::Delete => "deleting".into(),
        Step::DlfImport => "importing into DataArts".into(),
    }
}
