//! Reading a source at the revision a pipeline target follows, which is usually not the
//! branch head: git sources keep every fetched commit in their mirror (fetches never prune),
//! so an older promoted commit stays readable; a directory source has only its current content.

use crate::desired::snapshot::RepoSnapshot;
use crate::source::{Source, SourceError};

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

/// Why a revision cannot be promoted to a target (checked before the promotion is journaled,
/// so a target never follows a revision it cannot read).
#[derive(Debug, thiserror::Error)]
pub enum RevisionCheckError {
    #[error(
        "revision {revision} is not in source `{source_name}` ({}); check the id, or push \
         the commit to the branch the source follows",
        crate::error_chain::error_chain(.source)
    )]
    Unknown {
        revision: String,
        source_name: String,
        #[source]
        source: Box<PromotedRevisionError>,
    },
    #[error(
        "revision {revision} does not validate for environment `{environment}` ({count} \
         problem(s)); fix the repository and promote a revision that validates:\n{problems}"
    )]
    Invalid {
        revision: String,
        environment: String,
        count: usize,
        problems: String,
    },
    #[error(
        "source `{source_name}` could not be read to check revision {revision} ({}); \
         retry when it is reachable",
        crate::error_chain::error_chain(.source.as_ref())
    )]
    Unavailable {
        revision: String,
        source_name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Checks that `revision` exists in `target`'s source and resolves for its environment, as the
/// target would read it after the promotion. Blocking (git, file I/O); a commit not yet in the
/// mirror is fetched first.
pub fn check_promotable(
    config: &crate::config::Config,
    target: &crate::config::TargetConfig,
    revision: &str,
) -> Result<(), RevisionCheckError> {
    let source_name = target.source.clone();
    let unavailable =
        |source: Box<dyn std::error::Error + Send + Sync>| RevisionCheckError::Unavailable {
            revision: revision.to_string(),
            source_name: source_name.clone(),
            source,
        };
    let source_config = config
        .sources
        .get(&target.source)
        .ok_or_else(|| unavailable("the source is not configured".into()))?;
    let source = Source::from_config(source_config, &config.state_dir)
        .map_err(|error| unavailable(Box::new(error)))?;
    let snapshot = match snapshot_at(&source, revision) {
        Ok(snapshot) => snapshot,
        Err(error) if error.is_retryable() => return Err(unavailable(Box::new(error))),
        Err(error) => {
            return Err(RevisionCheckError::Unknown {
                revision: revision.to_string(),
                source_name,
                source: Box::new(error),
            });
        }
    };
    let environment = target.environment_name();
    crate::desired::resolve(&snapshot, Some(environment))
        .map(|_| ())
        .map_err(|diagnostics| RevisionCheckError::Invalid {
            revision: revision.to_string(),
            environment: environment.to_string(),
            count: diagnostics.len(),
            problems: diagnostics.to_string(),
        })
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
