//! The job repository: parse, variables, environment overlays, validation (pure). Not built yet (issue 3).

pub mod snapshot;
