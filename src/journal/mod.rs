//! The append-only JSON state journal, snapshot, recovery and lock. Not built yet (issue 4).
