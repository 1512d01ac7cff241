//! From the window's facts to what blocked the target: each cause's time, the one that lost the
//! most, and whether it is worth naming. Pure: no question is asked here.

use super::facts::Facts;
use super::rows::State;
use crate::analysis::mechanism::Mechanism;

/// What the chain explains; each has its hops (hops/).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Waits for the GPU in sync calls.
    GpuSync,
    /// Sleeps on sockets that retransmitted.
    Network,
    /// Sleeps another thread of the host ended: a futex, a pipe, a condition.
    Lock,
    /// D-state the kernel's lock waits do not explain.
    Io,
    /// Waits for contended kernel locks.
    KernelLock,
    /// Run-queue waits while the cgroup was throttled (or the CPU idle).
    Throttling,
    /// Run-queue waits behind other tasks.
    CpuContention,
}

impl Cause {
    /// The mechanism an answer names.
    pub fn mechanism(self) -> Mechanism {
        match self {
            Cause::GpuSync => Mechanism::GpuSync,
            Cause::Network => Mechanism::NetworkRetransmit,
            Cause::Lock | Cause::KernelLock => Mechanism::LockContention,
            Cause::Io => Mechanism::IoWait,
            Cause::Throttling => Mechanism::CpuThrottling,
            Cause::CpuContention => Mechanism::CpuContention,
        }
    }

    /// Its name in words (the finer one: kernel locks apart).
    pub fn name(self) -> &'static str {
        match self {
            Cause::KernelLock => "kernel_lock",
            other => other.mechanism().name(),
        }
    }
}

/// The time one cause took in the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The cause.
    pub cause: Cause,
    /// Time lost to it, ns (all threads).
    pub total_ns: i64,
    /// Its longest wait, ns.
    pub longest_ns: i64,
    /// The worst thread's share of the window.
    pub share: f64,
}

/// The finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The cause that lost the most time.
    pub top: Candidate,
    /// Worth naming: at least 1 % of the window or one wait of 5 ms.
    pub significant: bool,
    /// Every cause, most time first.
    pub candidates: Vec<Candidate>,
    /// Run-queue time of all threads, ns.
    pub runq_ns: i64,
    /// Run-queue time while the CPU ran its idle task, ns (the scheduler would not run the
    /// target though a CPU was free: throttled).
    pub idle_ns: i64,
    /// The target's own block requests decided between I/O and a kernel lock.
    pub consulted_own_io: bool,
}

#[cfg(test)]
impl Verdict {
    /// The candidate of `cause` (zero when it had none).
    pub fn of(&self, cause: Cause) -> Candidate {
        self.candidates
            .iter()
            .copied()
            .find(|c| c.cause == cause)
            .unwrap_or(Candidate {
                cause,
                total_ns: 0,
                longest_ns: 0,
                share: 0.0,
            })
    }
}

/// Time lost in one state: (total ns, longest ns, the worst thread's share of the window).
fn in_state(facts: &Facts, state: State, window_ns: i64) -> (i64, i64, f64) {
    let rows = facts.per_thread.iter().filter(|r| r.state == state);
    let total = rows.clone().map(|r| r.total_ns).sum();
    let longest = rows.clone().map(|r| r.longest_ns).max().unwrap_or(0);
    let worst = rows.map(|r| r.total_ns).max().unwrap_or(0) as f64 / window_ns as f64;
    (total, longest, worst)
}

/// What blocked the target in a window of `window_ns`.
pub fn classify(facts: &Facts, window_ns: i64) -> Verdict {
    let share = |ns: i64| ns as f64 / window_ns as f64;
    let lock_total: i64 = facts.wakers.iter().map(|r| r.total_ns).sum();
    let lock_longest = facts.wakers.iter().map(|r| r.longest_ns).max().unwrap_or(0);
    let (disk_total, disk_longest, disk_share) = in_state(facts, State::Disk, window_ns);
    let (runq_total, runq_longest, runq_share) = in_state(facts, State::Runq, window_ns);
    let (sleep_total, _, sleep_share) = in_state(facts, State::Sleep, window_ns);
    // D-state that is a wait for a contended kernel lock (an inode's i_rwsem, mmap_lock, a
    // mutex) is lock contention inside the kernel, not the device: its holder is the waker.
    // (A woken waiter queues before it runs: run-queue time can hide inside a lock wait.)
    let klocks = &facts.kernel_locks;
    let klock_total = klocks
        .iter()
        .map(|r| r.total_ns)
        .sum::<i64>()
        .min(disk_total.max(0) + runq_total);
    let klock_longest = klocks.iter().map(|r| r.longest_ns).max().unwrap_or(0);
    let klock_share = share(klocks.first().map_or(0, |r| r.total_ns));
    // what is left of D-state once the kernel lock waits are taken out
    let (disk_total, disk_share) = if disk_total > 0 {
        let left = (disk_total - klock_total).max(0);
        (left, disk_share * left as f64 / disk_total as f64)
    } else {
        (disk_total, disk_share)
    };
    let lock_share = if sleep_total > 0 {
        sleep_share * lock_total as f64 / sleep_total as f64
    } else {
        0.0
    };
    let idle_ns: i64 = facts
        .cpu_holders
        .iter()
        .filter(|h| h.prev_pid == 0)
        .map(|h| h.total_ns)
        .sum();
    // the cgroup's own CFS counters: throttled even where other tasks used the idle time
    let worst_thread_runq = (runq_share * window_ns as f64) as i64;
    let throttled = runq_total > 0
        && (idle_ns * 2 >= runq_total
            || facts
                .throttle
                .as_ref()
                .is_some_and(|t| t.throttled_ns > 0 && t.throttled_ns * 2 >= worst_thread_runq));
    let gpu_total: i64 = facts.gpu_waits.iter().map(|r| r.total_ns).sum();
    let gpu_longest = facts
        .gpu_waits
        .iter()
        .map(|r| r.longest_ns)
        .max()
        .unwrap_or(0);
    let gpu_share = share(gpu_by_thread(facts).values().copied().max().unwrap_or(0));
    let net = facts.network;
    let c = |cause, total_ns, longest_ns, share| Candidate {
        cause,
        total_ns,
        longest_ns,
        share,
    };
    let mut candidates = vec![
        c(Cause::GpuSync, gpu_total, gpu_longest, gpu_share),
        c(
            Cause::Network,
            net.total_ns,
            net.longest_ns,
            share(net.total_ns),
        ),
        c(Cause::Lock, lock_total, lock_longest, lock_share),
        c(Cause::Io, disk_total, disk_longest, disk_share),
        c(Cause::KernelLock, klock_total, klock_longest, klock_share),
        c(
            if throttled {
                Cause::Throttling
            } else {
                Cause::CpuContention
            },
            runq_total,
            runq_longest,
            runq_share,
        ),
    ];
    candidates.sort_by_key(|c| std::cmp::Reverse(c.total_ns));
    let mut top = candidates[0];
    // D-state without block requests of the target's own but with kernel lock waits: the lock
    // is the evidence there is (the rest of that D-state is page locks and the like around it)
    let consulted_own_io = top.cause == Cause::Io && klock_total > 0;
    if consulted_own_io && facts.own_block_requests == 0 {
        top = candidates
            .iter()
            .copied()
            .find(|c| c.cause == Cause::KernelLock)
            .unwrap_or(top);
    }
    // below a noise floor (under 1% of the window, no wait of 5 ms) nothing is contended: an
    // expert would not blame a few microsecond-scale run-queue waits
    let significant = !(top.total_ns == 0 || (top.share < 0.01 && top.longest_ns < 5_000_000));
    Verdict {
        top,
        significant,
        candidates,
        runq_ns: runq_total,
        idle_ns,
        consulted_own_io,
    }
}

/// GPU wait time per thread, ns.
pub fn gpu_by_thread(facts: &Facts) -> std::collections::BTreeMap<i64, i64> {
    let mut by = std::collections::BTreeMap::new();
    for r in &facts.gpu_waits {
        *by.entry(r.tid).or_default() += r.total_ns;
    }
    by
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
