//! BPF timestamps are CLOCK_BOOTTIME; records carry UTC. The offset is sampled, not assumed.

fn now(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; clock ids used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Current CLOCK_BOOTTIME in nanoseconds (the clock of `bpf_ktime_get_boot_ns`).
pub fn boottime_ns() -> i64 {
    now(libc::CLOCK_BOOTTIME)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the kernel tick's resolution (a few ms), read without
/// touching the clock source (the precise clocks cost a clock-source read each). For intervals
/// checked on hot paths.
pub fn coarse_monotonic_ns() -> i64 {
    now(libc::CLOCK_MONOTONIC_COARSE)
}

/// A deliberate error added to this process's view of UTC (`run --simulate-clock-skew`), so one
/// machine can play a fleet whose clocks disagree; 0 in normal runs.
static SIMULATED_SKEW_NS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Makes every UTC time this process produces (records, clock samples) `ns` late (or early).
pub fn simulate_skew(ns: i64) {
    SIMULATED_SKEW_NS.store(ns, std::sync::atomic::Ordering::Relaxed);
}

/// Current UTC time in nanoseconds since the Unix epoch (as this host believes it).
pub fn realtime_ns() -> i64 {
    now(libc::CLOCK_REALTIME) + SIMULATED_SKEW_NS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Converts boot-time stamps to UTC. Re-sampled on every drain so NTP steps are followed.
#[derive(Debug, Clone, Copy)]
pub struct BootToWall {
    offset_ns: i64,
}

impl BootToWall {
    /// Samples REALTIME − BOOTTIME, bracketing one clock with the other to halve the error.
    pub fn sample() -> Self {
        let r1 = realtime_ns();
        let b = boottime_ns();
        let r2 = realtime_ns();
        BootToWall {
            offset_ns: r1 + (r2 - r1) / 2 - b,
        }
    }

    /// UTC nanoseconds of a CLOCK_BOOTTIME stamp.
    pub fn wall(&self, boot_ns: u64) -> i64 {
        boot_ns as i64 + self.offset_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_lands_near_now() {
        let c = BootToWall::sample();
        let w = c.wall(boottime_ns() as u64);
        assert!(
            (w - realtime_ns()).abs() < 50_000_000,
            "off by {} ns",
            w - realtime_ns()
        );
    }
}
