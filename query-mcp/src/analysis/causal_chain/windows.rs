//! The two windows the chain reads the target's rows into once: its scheduler records, and its
//! rarer kinds.

use causeway_proto::names::event::*;

use super::source::Held;
use super::source::Source;
use super::target::Target;
use crate::engine::Engine;
use crate::error::QueryError;

/// The scheduler's kinds.
const SCHED_KINDS: &[&str] = &[OFF_CPU, RUNQ];

/// What the questions asked of the target's scheduler records read (per thread, wakers, CPU
/// holders, the longest wait, what a thread did during it).
const SCHED_COLUMNS: &[&str] = &[
    "time_unix_nano",
    "duration_ns",
    "tid",
    "comm",
    "event_name",
    "state",
    "waker_pid",
    "waker_tid",
    "waker_comm",
    "prev_pid",
    "prev_tid",
    "prev_comm",
    "prev_cgroup_id",
    "prev_container_id",
    "kernel_stack_id",
    "user_stack_id",
];

/// The other kinds asked about: the target's thread exits, CUDA waits, kernel lock waits, CPU
/// throttling, retransmits, block requests — few rows, each asked about once or twice. Named
/// (not "all but the scheduler's"): the page index skips pages by the names in a list, not by
/// the names outside one.
const OTHER_KINDS: &[&str] = &[
    FUTEX_WAIT,
    THREAD_EXIT,
    PROCESS_EXIT,
    CUDA_SYNC,
    CUDA_MEMCPY,
    CUDA_LAUNCH,
    KERNEL_LOCK_WAIT,
    CPU_THROTTLE,
    TCP_RETRANSMIT,
    BLOCK_IO,
];

/// What the questions asked of the target's other records read.
const OTHER_COLUMNS: &[&str] = &[
    "time_unix_nano",
    "duration_ns",
    "tid",
    "comm",
    "event_name",
    "futex_uaddr",
    "futex_op",
    "cuda_function",
    "cuda_stream",
    "kernel_lock",
    "kernel_lock_kind",
    "kernel_stack_id",
    "cpu_throttled_periods",
    "cpu_periods",
    "cpu_max",
    "path",
    "cgroup_id",
    "daddr",
    "saddr",
    "device",
    "io_op",
    "bytes",
];

/// The target's windows, read at once; held by the caller while [`Windows`] lives.
pub async fn read(engine: &dyn Engine, target: &Target) -> Result<(Held, Held), QueryError> {
    futures::try_join!(
        Source::read(engine, SCHED_COLUMNS, &target.predicate, SCHED_KINDS),
        Source::read(engine, OTHER_COLUMNS, &target.predicate, OTHER_KINDS),
    )
}

/// The windows the questions are asked of.
pub struct Windows<'a> {
    /// `sched.off_cpu` and `sched.runq`.
    pub sched: Source<'a>,
    /// Exits, CUDA, kernel locks, throttling, retransmits, block I/O, futexes.
    pub other: Source<'a>,
}

impl<'a> Windows<'a> {
    /// Sources over the windows `read` returned.
    pub fn new(engine: &'a dyn Engine, target: &'a Target, held: &'a (Held, Held)) -> Self {
        let scope = (
            target.predicate.as_str(),
            target.pid,
            (target.start, target.end),
        );
        Windows {
            sched: Source::new(engine, &held.0, scope, SCHED_KINDS),
            other: Source::new(engine, &held.1, scope, OTHER_KINDS),
        }
    }
}
