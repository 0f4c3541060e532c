//! dli-gitops: a GitOps reconciliation daemon for Huawei Cloud DLI Flink jobs and DataArts
//! Factory (DLF) jobs. See ARCHITECTURE.md for the code map and the invariants.

/// The Rust heap on Linux: jemalloc, which returns the pages a busy pass leaves behind (see
/// `memory`).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts: one arena (each thread keeps its own cache; the
/// daemon's work waits on the network), a background thread that returns freed pages, after 1 s
/// instead of 10 (`dirty_decay_ms`), without a second "muzzy" stage. Its `MALLOC_CONF`-style
/// environment variable, `_RJEM_MALLOC_CONF`, overrides them.
#[cfg(target_os = "linux")]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: Option<&'static u8> =
    Some(&b"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

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
