//! Sources of desired state: git mirrors (git2), watched directories (notify), webhooks. Not built yet (issue 7).
