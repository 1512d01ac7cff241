//! What every probe set is loaded with: thresholds, the pid and cgroup filter, the ring buffer.

use std::time::Duration;

use super::cgroup::CgroupTarget;

/// Tunables and filters written into the programs before load.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Minimum off-CPU interval sent to user space.
    pub min_off_cpu: Duration,
    /// Minimum run-queue wait sent to user space.
    pub min_runq: Duration,
    /// Stacks for off-CPU intervals at least this long; zero disables stacks.
    pub stack_threshold: Duration,
    /// tgids to trace; empty: all.
    pub pids: Vec<u32>,
    /// Trace children of traced processes.
    pub follow_children: bool,
    /// Only tasks under this cgroup.
    pub cgroup: Option<CgroupTarget>,
    /// Ring buffer size in bytes (power of two).
    pub ring_buffer_bytes: u32,
    /// Block requests shorter than this are not sent.
    pub min_block: Duration,
    /// OBI's pinned `traces_ctx_v1` map, when found: read as a second trace-context source.
    pub obi_map: Option<std::path::PathBuf>,
    /// Measure intervals on the boot clock and stamp wakeups in the probe, as the programs must
    /// on kernels without the scheduler's run-queue accounting (bpf/offcpu.bpf.c
    /// `kernel_runq`), instead of reading the scheduler's clock: for tests and comparison. Also
    /// set by the environment variable CAUSEWAY_BOOT_CLOCK=1.
    pub boot_clock: bool,
}

impl Settings {
    /// Unread bytes past which the programs wake the reader (bpf/common.bpf.h `wake_bytes`): a
    /// quarter of the ring buffer.
    pub fn wake_bytes(&self) -> usize {
        self.ring_buffer_bytes as usize / 4
    }
}
