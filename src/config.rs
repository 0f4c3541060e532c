//! The daemon configuration file (`config.yaml`): targets, sources, policy. Not built yet (issue 7).
