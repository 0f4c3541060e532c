//! dli-gitops itself in the test bed. Not built yet: the pass goes through
//! `apply::reconcile_once` and `apply::TargetContext`, which are not on main yet (issue 5);
//! until they are, every dli-gitops measurement says so instead of producing a figure.

use std::path::{Path, PathBuf};

use super::env::TestBed;

/// The target's name in the generated config.
pub const TARGET: &str = "bench";

const NOT_BUILT: &str = "not built: dli-gitops passes need the apply module (apply::TargetContext, \
                         apply::reconcile_once), which is not on main yet";

/// Stands in for `apply::TargetContext` until apply lands.
pub struct TargetContext;

impl TargetContext {
    pub async fn shutdown(self) {}
}

/// Stands in for `apply::ApplyReport` until apply lands.
pub struct ApplyReport {
    pub plan: dli_gitops::plan::Plan,
}

pub fn write_config(
    _directory: &Path,
    _repo: &Path,
    _bed: &TestBed,
    _extra_top_level: &str,
    _source: &str,
    _target_extra: &str,
) -> Result<PathBuf, String> {
    Err(NOT_BUILT.into())
}

pub async fn open_target(_config_path: &Path) -> Result<TargetContext, String> {
    Err(NOT_BUILT.into())
}

pub async fn pass(_context: &TargetContext) -> Result<ApplyReport, String> {
    Err(NOT_BUILT.into())
}
