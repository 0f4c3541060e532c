//! Reading a source at the revision a pipeline target follows, which is usually not the
//! branch head: git sources keep every fetched commit in their mirror (fetches never prune),
//! so an older promoted commit stays readable; a directory source has only its current content.

use crate::source::{Source, SourceError};
use crate::spec::snapshot::RepoSnapshot;

/// Why the promoted revision could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PromotedRevisionError {
    #[error("reading promoted revision {revision} from the source")]
    Source {
        revision: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "the promoted revision is {revision}, but a directory source only holds its current content ({current}); use a git source for pipelines that promote older revisions"
    )]
    DirectoryMovedOn { revision: String, current: String },
}

impl PromotedRevisionError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PromotedRevisionError::Source { source, .. } => source.is_retryable(),
            PromotedRevisionError::DirectoryMovedOn { .. } => false,
        }
    }
}

/// The source's files at `revision`. Blocking (git and file I/O): run it on the blocking pool.
/// A git commit not in the mirror yet is fetched first.
pub fn snapshot_at(source: &Source, revision: &str) -> Result<RepoSnapshot, PromotedRevisionError> {
    let failed = |source| PromotedRevisionError::Source {
        revision: revision.to_string(),
        source,
    };
    match source {
        Source::Git {
            source: git,
            subdir,
            ..
        } => match git.snapshot(revision, subdir) {
            Ok(snapshot) => Ok(snapshot),
            Err(_) => {
                git.fetch().map_err(failed)?;
                git.snapshot(revision, subdir).map_err(failed)
            }
        },
        Source::Dir { source: dir, .. } => {
            let snapshot = dir.snapshot().map_err(failed)?;
            if snapshot.revision == revision {
                Ok(snapshot)
            } else {
                Err(PromotedRevisionError::DirectoryMovedOn {
                    revision: revision.to_string(),
                    current: snapshot.revision,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_source_serves_only_its_current_revision() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x: 1\n").unwrap();
        let config: crate::config::SourceConfig =
            serde_yaml::from_str(&format!("path: {}", dir.path().display())).unwrap();
        let source = Source::from_config(&config, dir.path()).unwrap();
        let current = match &source {
            Source::Dir { source, .. } => source.snapshot().unwrap().revision,
            Source::Git { .. } => unreachable!(),
        };
        assert_eq!(snapshot_at(&source, &current).unwrap().revision, current);
        let error = snapshot_at(&source, "sha256:0000").unwrap_err();
        assert!(matches!(
            error,
            PromotedRevisionError::DirectoryMovedOn { .. }
        ));
        assert!(!error.is_retryable());
    }
}
