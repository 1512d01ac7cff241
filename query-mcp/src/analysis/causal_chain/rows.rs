//! The rows the chain's questions return, decoded from Arrow by column name. Nullable numbers
//! read as 0 (`or_zero`) where "none" and 0 mean the same to the analysis.

use serde::Deserialize;
use serde::Deserializer;

use crate::answer::or_zero;

/// A thread's off-CPU state class, or `runq` for run-queue waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Switched out while runnable.
    Preempted,
    /// Interruptible sleep (locks, pipes, sockets, timers).
    Sleep,
    /// Uninterruptible sleep (D-state).
    Disk,
    /// Waiting in the run queue.
    Runq,
    /// Anything else (stopped, traced, dead) or unknown.
    Other,
}

impl State {
    /// The state a `state` column value names.
    pub fn of(s: &str) -> State {
        match s {
            "preempted" => State::Preempted,
            "sleep" => State::Sleep,
            "disk" => State::Disk,
            "runq" => State::Runq,
            _ => State::Other,
        }
    }

    /// The column value.
    pub fn name(self) -> &'static str {
        match self {
            State::Preempted => "preempted",
            State::Sleep => "sleep",
            State::Disk => "disk",
            State::Runq => "runq",
            State::Other => "other",
        }
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<State, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .as_deref()
            .map_or(State::Other, State::of))
    }
}

/// Time one thread of the target lost in one state.
#[derive(Debug, Clone, Deserialize)]
pub struct ThreadState {
    /// Thread.
    pub tid: i64,
    /// Its name.
    #[serde(deserialize_with = "or_zero")]
    pub comm: String,
    /// Off-CPU state, or `runq`.
    pub state: State,
    /// Intervals.
    pub n: i64,
    /// Their total, ns.
    #[serde(deserialize_with = "or_zero")]
    pub total_ns: i64,
    /// The longest, ns.
    #[serde(deserialize_with = "or_zero")]
    pub longest_ns: i64,
}

/// A thread of the target that exited, with the futex its joiners wait on.
#[derive(Debug, Clone, Deserialize)]
pub struct Exit {
    /// Thread.
    pub tid: i64,
    /// When.
    pub time_unix_nano: i64,
    /// Its clear_child_tid.
    #[serde(deserialize_with = "or_zero")]
    pub futex_uaddr: i64,
}

/// A futex wait on an exiting thread's clear_child_tid (a possible join).
#[derive(Debug, Clone, Deserialize)]
pub struct Joiner {
    /// The waiting thread.
    pub tid: i64,
    /// The futex.
    #[serde(deserialize_with = "or_zero")]
    pub futex_uaddr: i64,
    /// Wait start, ns.
    pub start_ns: i64,
    /// Wait end, ns.
    pub end_ns: i64,
}

/// The target's waits for the GPU by thread and function.
#[derive(Debug, Clone, Deserialize)]
pub struct GpuWait {
    /// Thread.
    pub tid: i64,
    /// Its name.
    #[serde(deserialize_with = "or_zero")]
    pub comm: String,
    /// The CUDA function.
    #[serde(deserialize_with = "or_zero")]
    pub cuda_function: String,
    /// Calls.
    pub n: i64,
    /// Their total, ns.
    #[serde(deserialize_with = "or_zero")]
    pub total_ns: i64,
    /// The longest, ns.
    #[serde(deserialize_with = "or_zero")]
    pub longest_ns: i64,
    /// A stream they named (0: the default stream).
    #[serde(deserialize_with = "or_zero")]
    pub stream: i64,
}

/// A task that had the CPU while the target waited in the run queue.
#[derive(Debug, Clone, Deserialize)]
pub struct CpuHolder {
    /// Its process (0: the idle task).
    #[serde(deserialize_with = "or_zero")]
    pub prev_pid: i64,
    /// Its thread.
    #[serde(deserialize_with = "or_zero")]
    pub prev_tid: i64,
    /// Its name.
    #[serde(deserialize_with = "or_zero")]
    pub prev_comm: String,
    /// Waits it ended.
    pub n: i64,
    /// Their total, ns.
    #[serde(deserialize_with = "or_zero")]
    pub total_ns: i64,
    /// Its cgroup.
    pub prev_cgroup_id: Option<i64>,
    /// Its container.
    pub prev_container_id: Option<String>,
}

/// The target's waits for one contended kernel lock.
#[derive(Debug, Clone, Deserialize)]
pub struct KernelLockWait {
    /// Thread.
    pub tid: i64,
    /// Its name.
    #[serde(deserialize_with = "or_zero")]
    pub comm: String,
    /// The lock: symbol or address.
    pub kernel_lock: Option<String>,
    /// Its kind.
    pub kernel_lock_kind: Option<String>,
    /// Waits.
    pub n: i64,
    /// Their total, ns.
    #[serde(deserialize_with = "or_zero")]
    pub total_ns: i64,
    /// The longest, ns.
    #[serde(deserialize_with = "or_zero")]
    pub longest_ns: i64,
}

/// Retransmits of the target's sockets by thread and peer.
#[derive(Debug, Clone, Deserialize)]
pub struct Retransmit {
    /// Thread.
    pub tid: i64,
    /// Peer `ip:port`.
    pub daddr: Option<String>,
    /// Local `ip:port`.
    pub saddr: Option<String>,
    /// Segments.
    pub n: i64,
}

/// The target's cgroup's CFS throttling in the window (one row, nulls when none).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Throttle {
    /// Time throttled, ns.
    #[serde(deserialize_with = "or_zero")]
    pub throttled_ns: i64,
    /// Periods throttled.
    #[serde(deserialize_with = "or_zero")]
    pub throttled_periods: i64,
    /// Periods elapsed.
    #[serde(deserialize_with = "or_zero")]
    pub periods: i64,
    /// `quota period`, µs.
    pub cpu_max: Option<String>,
    /// The cgroup directory.
    pub cgroup_path: Option<String>,
    /// The cgroup id.
    #[serde(deserialize_with = "or_zero")]
    pub cgroup_id: i64,
}

/// A thread that ended the target's (or a thread's) waits.
#[derive(Debug, Clone, Deserialize)]
pub struct Waker {
    /// Its process.
    #[serde(deserialize_with = "or_zero")]
    pub waker_pid: i64,
    /// Its thread.
    #[serde(deserialize_with = "or_zero")]
    pub waker_tid: i64,
    /// Its name.
    #[serde(deserialize_with = "or_zero")]
    pub waker_comm: String,
    /// Waits it ended.
    pub n: i64,
    /// Their total, ns.
    #[serde(deserialize_with = "or_zero")]
    pub total_ns: i64,
    /// The longest, ns.
    #[serde(default, deserialize_with = "or_zero")]
    pub longest_ns: i64,
}

/// One off-CPU interval (or one of a thread's states, summed over a wait): what a thread did
/// while another waited on it.
#[derive(Debug, Clone, Deserialize)]
pub struct Activity {
    /// Off-CPU state.
    pub state: State,
    /// Start, ns.
    pub time_unix_nano: i64,
    /// Length, ns.
    #[serde(deserialize_with = "or_zero")]
    pub duration_ns: i64,
    /// Who woke it (0: nobody traced).
    #[serde(default, deserialize_with = "or_zero")]
    pub waker_pid: i64,
    /// Its thread.
    #[serde(default, deserialize_with = "or_zero")]
    pub waker_tid: i64,
    /// Its name.
    #[serde(default, deserialize_with = "or_zero")]
    pub waker_comm: String,
    /// Its kernel stack.
    #[serde(deserialize_with = "or_zero")]
    pub kernel_stack_id: i64,
    /// How much of the other's wait it covers, ns.
    #[serde(deserialize_with = "or_zero")]
    pub overlap_ns: i64,
}

/// One wait of a thread of the target.
#[derive(Debug, Clone, Deserialize)]
pub struct Wait {
    /// Thread.
    pub tid: i64,
    /// Its name.
    #[serde(deserialize_with = "or_zero")]
    pub comm: String,
    /// Start, ns.
    pub time_unix_nano: i64,
    /// Length, ns.
    pub duration_ns: i64,
    /// Its kernel stack.
    #[serde(deserialize_with = "or_zero")]
    pub kernel_stack_id: i64,
    /// Its user stack.
    #[serde(deserialize_with = "or_zero")]
    pub user_stack_id: i64,
}

/// The futex a wait was on.
#[derive(Debug, Clone, Deserialize)]
pub struct Futex {
    /// Its address.
    #[serde(deserialize_with = "or_zero")]
    pub futex_uaddr: i64,
    /// The operation.
    pub futex_op: Option<String>,
}

/// Block requests by device (and request type).
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceIo {
    /// The device.
    pub device: Option<String>,
    /// Request type, where asked.
    #[serde(default)]
    pub io_op: Option<String>,
    /// Requests.
    pub n: i64,
    /// Their total, ns, where asked.
    #[serde(default, deserialize_with = "or_zero")]
    pub total_ns: i64,
    /// The longest, ns.
    #[serde(deserialize_with = "or_zero")]
    pub longest_ns: i64,
    /// Bytes.
    #[serde(deserialize_with = "or_zero")]
    pub bytes: i64,
}

/// A cgroup whose tasks held the CPU.
#[derive(Debug, Clone, Deserialize)]
pub struct CgroupHolder {
    /// Its id.
    pub prev_cgroup_id: Option<i64>,
    /// Its container.
    pub prev_container_id: Option<String>,
    /// Its processes seen holding the CPU.
    pub processes: i64,
    /// Their total, ns.
    #[serde(deserialize_with = "or_zero")]
    pub total_ns: i64,
}

/// A count, with the total and longest duration where asked.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Count {
    /// Rows.
    pub n: i64,
    /// Their total, ns.
    #[serde(default, deserialize_with = "or_zero")]
    pub total_ns: i64,
    /// The longest, ns.
    #[serde(default, deserialize_with = "or_zero")]
    pub longest_ns: i64,
}

/// An instant of a thread (a retransmit).
#[derive(Debug, Clone, Deserialize)]
pub struct Instant {
    /// Thread.
    pub tid: i64,
    /// When.
    pub time_unix_nano: i64,
}

/// An interval of a thread (a sleep).
#[derive(Debug, Clone, Deserialize)]
pub struct Interval {
    /// Thread.
    pub tid: i64,
    /// Start.
    pub time_unix_nano: i64,
    /// Length.
    pub duration_ns: i64,
}

/// A kernel stack id and how often it was seen.
#[derive(Debug, Clone, Deserialize)]
pub struct StackCount {
    /// The stack.
    pub kernel_stack_id: i64,
}

/// A cgroup id.
#[derive(Debug, Clone, Deserialize)]
pub struct CgroupId {
    /// The id.
    #[serde(deserialize_with = "or_zero")]
    pub cgroup_id: i64,
}

/// The frames of a stack.
#[derive(Debug, Clone, Deserialize)]
pub struct Frames {
    /// Innermost first.
    #[serde(deserialize_with = "or_zero")]
    pub frames: Vec<Option<String>>,
}
