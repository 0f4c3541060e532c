//! The reconcile loop: events → reconcile per target → status. Not built yet (issue 7).
