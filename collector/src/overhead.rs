//! What the collector costs the host it watches, measured all the time: its own CPU time and
//! resident memory, and the time its BPF programs run in the kernel (the part no `top` shows,
//! charged to whatever task hit the hook). One `collector_stats` row (`kind = 'self'`) per
//! window, and the same numbers as OTLP metrics when an endpoint is set.
//!
//! BPF run time comes from the kernel's own accounting (`run_time_ns`/`run_cnt` in
//! `/proc/self/fdinfo` of each program fd this process holds), which counts only while
//! `kernel.bpf_stats_enabled` is on: the collector turns it on for its lifetime (BPF_ENABLE_STATS,
//! undone by the kernel when the collector exits) unless `overhead.bpf_stats` is false. It adds
//! two clock reads per program run, for every BPF program on the host while on.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use crate::clock::realtime_ns;

/// Cumulative readings at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// UTC ns.
    pub at: i64,
    /// User + system CPU time of the whole process, ns.
    pub cpu_ns: i64,
    /// BPF program run time summed over this process's programs, ns.
    pub bpf_run_ns: u64,
    /// BPF program runs.
    pub bpf_runs: u64,
}

/// Per-window figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Collector CPU, percent of one CPU.
    pub cpu_percent: f64,
    /// Resident memory now, bytes.
    pub rss_bytes: i64,
    /// Peak resident memory so far, bytes.
    pub peak_rss_bytes: i64,
    /// Mean BPF run time per program run, ns (None: no runs counted, or stats off).
    pub bpf_ns_per_run: Option<f64>,
    /// BPF run time as percent of one CPU.
    pub bpf_cpu_percent: Option<f64>,
}

/// Reads the process's CPU time (all threads).
fn cpu_ns() -> i64 {
    // SAFETY: rusage is plain data filled by the kernel.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec * 1_000_000_000 + t.tv_usec * 1000;
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// `VmRSS` and `VmHWM` from /proc/self/status, bytes.
fn rss() -> (i64, i64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Sums run_time_ns / run_cnt over the BPF programs this process holds fds of (each program
/// once, however many fds point at it).
pub fn bpf_totals() -> (u64, u64) {
    let mut by_prog: HashMap<u64, (u64, u64)> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return (0, 0);
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        // a link's fdinfo names its prog_id too, without the counters: only program fds count
        if let (Some(id), Some(t), Some(n)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        {
            by_prog.insert(id, (t, n));
        }
    }
    by_prog
        .values()
        .fold((0, 0), |(t, n), (a, b)| (t + a, n + b))
}

/// A reading now.
pub fn read() -> Reading {
    let (bpf_run_ns, bpf_runs) = bpf_totals();
    Reading {
        at: realtime_ns(),
        cpu_ns: cpu_ns(),
        bpf_run_ns,
        bpf_runs,
    }
}

/// Figures for the window between two readings.
pub fn window(prev: &Reading, cur: &Reading) -> Window {
    let wall = (cur.at - prev.at).max(1) as f64;
    let (rss_bytes, peak_rss_bytes) = rss();
    let runs = cur.bpf_runs.saturating_sub(prev.bpf_runs);
    let run_ns = cur.bpf_run_ns.saturating_sub(prev.bpf_run_ns);
    Window {
        cpu_percent: (cur.cpu_ns - prev.cpu_ns) as f64 / wall * 100.0,
        rss_bytes,
        peak_rss_bytes,
        bpf_ns_per_run: (runs > 0).then(|| run_ns as f64 / runs as f64),
        bpf_cpu_percent: (runs > 0).then(|| run_ns as f64 / wall * 100.0),
    }
}

/// Turns kernel.bpf_stats_enabled on while the returned fd lives (the kernel counts holders and
/// turns it off when the last one closes).
pub fn enable_bpf_stats() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper; returns an fd or a negative errno.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_and_memory_are_read() {
        let a = read();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = read();
        let w = window(&a, &b);
        assert!(b.cpu_ns > a.cpu_ns, "{a:?} {b:?}");
        assert!(
            w.cpu_percent > 10.0 && w.cpu_percent <= 200.0 * 64.0,
            "{w:?}"
        );
        assert!(w.rss_bytes > 0 && w.peak_rss_bytes >= w.rss_bytes, "{w:?}");
        assert_eq!(
            (w.bpf_ns_per_run, w.bpf_cpu_percent),
            (None, None),
            "no BPF programs here"
        );
    }
}
