//! What the collector costs the host it watches, measured all the time: its own CPU time and
//! resident memory, and the time its BPF programs run in the kernel (the part no `top` shows,
//! charged to whatever task hit the hook). One `collector_stats` row (`kind = 'self'`) per
//! window, and the same numbers as OTLP metrics when an endpoint is set.
//!
//! BPF run time comes from the kernel's own accounting (`run_time_ns`/`run_cnt` in
//! `/proc/self/fdinfo` of each program fd this process holds), which counts only while
//! `kernel.bpf_stats_enabled` is on. It adds two clock reads per program run, for every BPF
//! program on the host while on, so the collector turns it on (BPF_ENABLE_STATS, undone by the
//! kernel when the collector exits) only for the first `bpf_stats_sampling` share of each second
//! ([`BpfStatsSampler`]): ns per run is that sample's, and BPF CPU% is run time over the time
//! counted.

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
    /// How long BPF run time has been counted, ns (see [`BpfStatsSampler`]).
    pub bpf_counted_ns: u64,
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

/// A reading now; `bpf_counted_ns` is the sampler's (0 without one).
pub fn read(bpf_counted_ns: u64) -> Reading {
    let (bpf_run_ns, bpf_runs) = bpf_totals();
    Reading {
        at: realtime_ns(),
        cpu_ns: cpu_ns(),
        bpf_run_ns,
        bpf_runs,
        bpf_counted_ns,
    }
}

/// Figures for the window between two readings.
pub fn window(prev: &Reading, cur: &Reading) -> Window {
    let wall = (cur.at - prev.at).max(1) as f64;
    let (rss_bytes, peak_rss_bytes) = rss();
    let runs = cur.bpf_runs.saturating_sub(prev.bpf_runs);
    let run_ns = cur.bpf_run_ns.saturating_sub(prev.bpf_run_ns);
    // run time accrues only while counted: a share of the time counted, not of the window
    let counted = cur
        .bpf_counted_ns
        .saturating_sub(prev.bpf_counted_ns)
        .max(1) as f64;
    Window {
        cpu_percent: (cur.cpu_ns - prev.cpu_ns) as f64 / wall * 100.0,
        rss_bytes,
        peak_rss_bytes,
        bpf_ns_per_run: (runs > 0).then(|| run_ns as f64 / runs as f64),
        bpf_cpu_percent: (runs > 0).then(|| run_ns as f64 / counted * 100.0),
    }
}

/// How often counting comes back on: short, so that any stretch of a second or more (a stats
/// window, a benchmark) sees the same share counted.
const SAMPLE_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds kernel.bpf_stats_enabled on for the first `share` of each [`SAMPLE_PERIOD`] and off for
/// the rest; keeps the total time it was on.
pub struct BpfStatsSampler {
    share: f64,
    fd: Option<OwnedFd>,
    /// When the current on-stretch began.
    on_since: Option<std::time::Instant>,
    period_start: std::time::Instant,
    counted: std::time::Duration,
    failed: bool,
}

impl BpfStatsSampler {
    /// Starts counting (a period begins).
    pub fn new(share: f64) -> Self {
        let mut s = Self {
            share,
            fd: None,
            on_since: None,
            period_start: std::time::Instant::now(),
            counted: std::time::Duration::ZERO,
            failed: false,
        };
        s.switch(true);
        s
    }

    fn switch(&mut self, on: bool) {
        if on && self.fd.is_none() && !self.failed {
            match enable_bpf_stats() {
                Ok(fd) => {
                    self.fd = Some(fd);
                    // still running when another holder kept counting on while ours was off
                    self.on_since.get_or_insert_with(std::time::Instant::now);
                }
                Err(e) => {
                    tracing::warn!("BPF run time not counted (bpf_stats): {e}");
                    self.failed = true;
                }
            }
        } else if !on && self.fd.is_some() {
            self.fd = None;
            self.follow_others();
        }
    }

    /// Counting is global: while the sysctl keeps it on, run time keeps accruing with our fd
    /// closed, and so must the time counted. Called while our fd is closed. (Another process's
    /// BPF_ENABLE_STATS fd, e.g. `bench-bpf`, does not show in the sysctl: while one is held, BPF
    /// CPU% reads high by up to 1 / `bpf_stats_sampling`; ns per run stays right.)
    fn follow_others(&mut self) {
        let on = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        match (on, self.on_since) {
            (true, None) => self.on_since = Some(std::time::Instant::now()),
            (false, Some(t)) => {
                self.counted += t.elapsed();
                self.on_since = None;
            }
            _ => {}
        }
    }

    /// Switches counting by the phase of the period; call every few ms.
    pub fn tick(&mut self) {
        if self.share >= 1.0 {
            return;
        }
        if self.period_start.elapsed() >= SAMPLE_PERIOD {
            self.period_start = std::time::Instant::now();
            self.switch(true);
        } else if self.period_start.elapsed() >= SAMPLE_PERIOD.mul_f64(self.share) {
            if self.fd.is_some() {
                self.switch(false);
            } else {
                self.follow_others();
            }
        }
    }

    /// How long until counting switches on or off (the run loop wakes for it).
    pub fn due_in(&self) -> std::time::Duration {
        if self.share >= 1.0 || self.failed {
            return std::time::Duration::MAX;
        }
        let on_for = SAMPLE_PERIOD.mul_f64(self.share);
        let at = self.period_start.elapsed();
        if self.fd.is_some() {
            on_for.saturating_sub(at)
        } else {
            SAMPLE_PERIOD.saturating_sub(at)
        }
    }

    /// Time counted so far, ns.
    pub fn counted_ns(&self) -> u64 {
        let now = self.on_since.map(|t| t.elapsed()).unwrap_or_default();
        (self.counted + now).as_nanos() as u64
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

    /// The sampler counts its share of each second, and all of it while the sysctl keeps
    /// counting on (then run time accrues all the time too).
    #[test]
    fn bpf_stats_sampler_counts_its_share_and_what_others_hold() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("*** SKIPPED bpf_stats_sampler_counts_its_share_and_what_others_hold: BPF_ENABLE_STATS needs root ***");
            return;
        }
        let run = |s: &mut BpfStatsSampler, for_ms: u64| {
            let (t, c) = (std::time::Instant::now(), s.counted_ns());
            while t.elapsed() < std::time::Duration::from_millis(for_ms) {
                s.tick();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            (s.counted_ns() - c) as f64 / t.elapsed().as_nanos() as f64
        };
        let mut s = BpfStatsSampler::new(0.1);
        let share = run(&mut s, 2000);
        assert!(
            (0.07..0.2).contains(&share),
            "counted {share} of the time, want ~0.1"
        );
        struct Sysctl;
        impl Drop for Sysctl {
            fn drop(&mut self) {
                let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
            }
        }
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").expect("sysctl");
        let guard = Sysctl;
        let share = run(&mut s, 1000);
        drop(guard);
        assert!(
            share > 0.95,
            "another holder kept counting on: counted {share}"
        );
    }

    #[test]
    fn cpu_time_and_memory_are_read() {
        let a = read(0);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = read(0);
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
