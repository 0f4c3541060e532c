//! The daemon's heap at rest.
//!
//! A daemon that parsed, observed and planned thousands of jobs at once (50 targets converging
//! together) leaves its busiest moment behind in the allocator: pages that hold only a few live
//! objects among freed ones. glibc's allocator cannot return such pages, so the daemon sat on
//! most of its busy peak (BENCHMARKS.md, "Memory at rest, 2026-12-05": 84 MiB of data in 151 MiB
//! of heap pages with 50 targets). On Linux the Rust heap is therefore jemalloc's
//! ([`Jemalloc`](tikv_jemallocator::Jemalloc), registered as the global allocator in `lib.rs`),
//! which keeps objects of one size together, and after each pass its unused dirty pages are
//! returned to the kernel at once ([`release_after_pass`]) instead of after its decay time; its
//! background thread returns what is freed later.
//!
//! The C libraries (libgit2, OpenSSL) still allocate through glibc: that heap gets one arena
//! ([`ARENAS`]; an operator's `MALLOC_ARENA_MAX` wins) and `malloc_trim` after each pass.
//! Elsewhere (not Linux) all of this is a no-op.

/// Arenas glibc's allocator may create for the C libraries (its default is 8 per core).
pub const ARENAS: i32 = 1;

/// What the allocator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes in allocated objects (what the program uses).
    pub in_use: u64,
    /// Bytes of heap pages resident beyond those objects (what the allocator keeps).
    pub free: u64,
    /// Bytes the allocator has mapped but returned to the kernel (not resident).
    pub retained: u64,
}

/// Sets the C libraries' allocator up; call before any thread starts. glibc gets at most
/// [`ARENAS`] arenas unless the operator set `MALLOC_ARENA_MAX` (or `glibc.malloc.arena_max` in
/// `GLIBC_TUNABLES`). jemalloc's settings (one arena, its background thread, 1 s decay) are the
/// ones `lib.rs` exports, read when it starts; `_RJEM_MALLOC_CONF` overrides them.
pub fn configure_allocator() {
    let operator_set = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|tunables| tunables.contains("arena_max"));
    if operator_set {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes a tunable; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns the allocators' unused pages to the kernel and says what the Rust heap holds now.
/// Called after each pass; costs a walk of the heaps (milliseconds).
pub fn release_after_pass() -> Option<HeapStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a thread-safe glibc entry point without arguments to check.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    {
        purge_jemalloc();
        let stats = jemalloc_stats()?;
        tracing::debug!(
            in_use_kib = stats.in_use / 1024,
            free_kib = stats.free / 1024,
            retained_kib = stats.retained / 1024,
            "Heap after a pass."
        );
        Some(stats)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Purges every jemalloc arena's unused dirty and muzzy pages now (`arena.<all>.purge`).
#[cfg(target_os = "linux")]
fn purge_jemalloc() {
    // `MALLCTL_ARENAS_ALL` (4096) names every arena.
    const NAME: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a void mallctl (no old or new value); the name is NUL-terminated.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            NAME.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if code != 0 {
        tracing::debug!(code, "jemalloc did not purge its arenas.");
    }
}

/// jemalloc's counters, refreshed (`epoch`).
#[cfg(target_os = "linux")]
fn jemalloc_stats() -> Option<HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let allocated = stats::allocated::read().ok()? as u64;
    let resident = stats::resident::read().ok()? as u64;
    let retained = stats::retained::read().ok()? as u64;
    Some(HeapStats {
        in_use: allocated,
        free: resident.saturating_sub(allocated),
        retained,
    })
}

#[cfg(test)]
mod tests {
    /// jemalloc started with the settings `lib.rs` exports (unless the environment overrides
    /// them, which tests do not do).
    #[cfg(target_os = "linux")]
    #[test]
    fn jemalloc_runs_with_the_exported_settings() {
        assert!(
            std::env::var_os("_RJEM_MALLOC_CONF").is_none(),
            "_RJEM_MALLOC_CONF is set in this environment; unset it to test the exported settings"
        );
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().expect("narenas"), 1);
        assert!(tikv_jemalloc_ctl::opt::background_thread::read().expect("background_thread"));
    }

    #[test]
    fn freed_memory_is_returned_and_counted() {
        super::configure_allocator();
        let big: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        let held = super::release_after_pass();
        drop(big);
        let after = super::release_after_pass();
        if cfg!(target_os = "linux") {
            let (held, after) = (held.expect("stats"), after.expect("stats"));
            // Other tests allocate meanwhile; 4 MiB were freed here.
            assert!(
                held.in_use >= after.in_use + 3 * 1024 * 1024,
                "{held:?} {after:?}"
            );
        }
    }
}
