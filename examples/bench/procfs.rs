//! Reading a process's memory and CPU time from `/proc` (Linux only), so that figures come from
//! the kernel's accounting and not from our own estimates.

use std::path::Path;
use std::time::Duration;

/// Memory figures from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Peak resident set size (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Current resident set size (`VmRSS`).
    pub rss_kib: u64,
    /// Of `VmRSS`: anonymous pages (the heap, stacks), file pages (the binary's code and
    /// libraries), shared memory (`RssAnon`, `RssFile`, `RssShmem`).
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
}

/// Reads `VmHWM` and `VmRSS` of `pid` (`"self"` for this process).
pub fn memory(pid: &str) -> Result<Memory, String> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|error| format!("reading {path}: {error}"))?;
    let field = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{path} has no readable {name} line"))
    };
    Ok(Memory {
        peak_rss_kib: field("VmHWM:")?,
        rss_kib: field("VmRSS:")?,
        rss_anon_kib: field("RssAnon:").unwrap_or(0),
        rss_file_kib: field("RssFile:").unwrap_or(0),
        rss_shmem_kib: field("RssShmem:").unwrap_or(0),
    })
}

/// User + system CPU time of `pid`, from fields 14 and 15 of `/proc/<pid>/stat`.
pub fn cpu_time(pid: &str) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let text =
        std::fs::read_to_string(&path).map_err(|error| format!("reading {path}: {error}"))?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last `)`.
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path} is not in the stat format"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state), so field N is at index N - 3.
    let ticks = |index: usize| -> Result<u64, String> {
        fields
            .get(index)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| format!("{path} has no readable field {}", index + 3))
    };
    let total_ticks = ticks(14 - 3)? + ticks(15 - 3)?;
    Ok(Duration::from_secs_f64(
        total_ticks as f64 / clock_ticks_per_second() as f64,
    ))
}

/// `sysconf(_SC_CLK_TCK)`. Linux has reported 100 on every mainstream architecture for decades;
/// `getconf` confirms it when available.
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks: &u64| *ticks > 0)
        .unwrap_or(100)
}

/// A one-line description of this machine: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|cores| cores.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{model}, {cores} cores available, {memory_gib:.1} GiB RAM, Linux {}, load average {}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Whether `/proc` is there to read (Linux).
pub fn available() -> bool {
    Path::new("/proc/self/status").exists()
}
