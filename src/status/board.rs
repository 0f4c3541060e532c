//! The board the daemon's loops write and the server reads: the status of every target and
//! source, behind locks that a reader never holds across an await.

use std::collections::BTreeMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ErrorInfo, HealthStatus, TargetOverview, TargetStatus};

/// A source as shown in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    pub name: String,
    /// `git` or `dir`.
    pub kind: String,
    /// The url without credentials, or the directory.
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
}

/// The status of every target and source, written by the loops and read by the server.
#[derive(Debug, Default)]
pub struct StatusBoard {
    targets: RwLock<Vec<TargetStatus>>,
    sources: RwLock<BTreeMap<String, SourceStatus>>,
}

impl StatusBoard {
    /// Every target in config order.
    pub fn targets(&self) -> Vec<TargetStatus> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn overviews(&self) -> Vec<TargetOverview> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(TargetStatus::overview)
            .collect()
    }

    pub fn target(&self, name: &str) -> Option<TargetStatus> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|target| target.name == name)
            .cloned()
    }

    pub fn sources(&self) -> Vec<SourceStatus> {
        self.sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Targets whose first observation is not done yet.
    pub fn not_ready(&self) -> Vec<String> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|target| !target.ready)
            .map(|target| target.name.clone())
            .collect()
    }

    pub(crate) fn add_target(&self, status: TargetStatus) {
        self.targets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(status);
    }

    pub(crate) fn add_source(&self, status: SourceStatus) {
        self.sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(status.name.clone(), status);
    }

    pub(crate) fn update_target(&self, name: &str, change: impl FnOnce(&mut TargetStatus)) {
        let mut targets = self.targets.write().unwrap_or_else(|p| p.into_inner());
        if let Some(target) = targets.iter_mut().find(|target| target.name == name) {
            change(target);
        }
    }

    pub(crate) fn update_source(&self, name: &str, change: impl FnOnce(&mut SourceStatus)) {
        let mut sources = self.sources.write().unwrap_or_else(|p| p.into_inner());
        if let Some(source) = sources.get_mut(name) {
            change(source);
        }
    }

    pub(crate) fn target_is_progressing(&self, name: &str) -> bool {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|target| target.name == name)
            .is_some_and(|target| target.health.status == HealthStatus::Progressing)
    }
}
