//! dli-gitops: a GitOps reconciliation daemon for Huawei Cloud DLI Flink jobs and DataArts
//! Factory (DLF) jobs. See ARCHITECTURE.md for the code map and the invariants.

pub mod apply;
pub mod bundle;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod desired;
pub mod doctor;
pub mod emulator;
pub mod error_chain;
pub mod gc;
pub mod journal;
pub mod memory;
pub mod model;
pub mod notify;
pub mod pass;
pub mod plan;
pub mod promotion;
pub mod savepoints;
pub mod server;
pub mod source;
pub mod status;
pub mod terminal;
