//! desired × observed × journal view → Plan (pure). Not built yet (issue 6).
