//! The daemon's heap at rest. glibc's allocator keeps what a pass freed (one arena per thread
//! that allocated, each holding its free pages), so a daemon that parsed, observed and planned
//! a thousand jobs sits on the high-water mark of its busiest pass. Two settings keep the
//! resident set close to what is really in use: at most [`ARENAS`] arenas (set once, before
//! the runtime's threads start), and the free pages returned to the kernel after each pass
//! (`malloc_trim`). Elsewhere (not glibc) both are no-ops.

/// Arenas the allocator may create (glibc's default is 8 per core). One: the daemon's work is
/// waiting on the network, so threads rarely contend for the allocator, and one arena reuses
/// the pages every pass freed instead of keeping a second set (measured: 36.0 MiB at rest with
/// 1,000 jobs against 41.7 MiB with two arenas; BENCHMARKS.md).
pub const ARENAS: i32 = 1;

/// What the allocator holds, from `mallinfo2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes in allocated chunks (what the program uses).
    pub in_use: u64,
    /// Free bytes the allocator keeps in its arenas.
    pub free: u64,
    /// Bytes in chunks mapped on their own (large allocations).
    pub mmapped: u64,
}

/// Caps the allocator's arenas; call before any thread starts. An operator's own setting
/// (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`) wins.
pub fn limit_arenas() {
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

/// Returns the allocator's free pages to the kernel and says what it holds now. Called after
/// each pass; costs a walk of the heap (milliseconds).
pub fn release_after_pass() -> Option<HeapStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: both calls are thread-safe glibc entry points without arguments to check.
        let info = unsafe {
            libc::malloc_trim(0);
            libc::mallinfo2()
        };
        let stats = HeapStats {
            in_use: info.uordblks as u64 + info.hblkhd as u64,
            free: info.fordblks as u64,
            mmapped: info.hblkhd as u64,
        };
        tracing::debug!(
            in_use_kib = stats.in_use / 1024,
            free_kib = stats.free / 1024,
            mmapped_kib = stats.mmapped / 1024,
            "Heap after a pass."
        );
        Some(stats)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_is_returned_and_counted() {
        super::limit_arenas();
        let big: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        let held = super::release_after_pass();
        drop(big);
        let after = super::release_after_pass();
        if let (Some(held), Some(after)) = (held, after) {
            assert!(
                held.in_use >= after.in_use + 3 * 1024 * 1024,
                "{held:?} {after:?}"
            );
        }
    }
}
