//! The decoded form of kernel records.

use crate::Comm;

/// One kernel event, as decoded and enriched by the collector.
///
/// Kind-specific fields are `Option`s: `None` becomes a null column and an absent OTLP attribute.
/// Times are UTC nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelEvent {
    /// Start of the interval (or the instant of a point event).
    pub time_unix_nano: i64,
    /// Length of the interval; 0 for point events.
    pub duration_ns: i64,
    /// Process id (tgid).
    pub pid: i32,
    /// Thread id.
    pub tid: i32,
    /// Thread name.
    pub comm: Comm,
    /// Process leader's name.
    pub process_name: Comm,
    /// One of [`crate::names::event`].
    pub event_name: &'static str,
    /// CPU the record was taken on.
    pub cpu: i32,
    /// cgroup v2 id.
    pub cgroup_id: i64,
    /// Container id, when the cgroup path names one.
    pub container_id: Option<String>,
    /// Kubernetes pod uid, when the cgroup path names one.
    pub pod_uid: Option<String>,
    /// Trace id (32 hex digits) of the thread's current span.
    pub trace_id: Option<String>,
    /// Span id (16 hex digits) of the thread's current span.
    pub span_id: Option<String>,
    /// One of [`crate::names::state`] (off-CPU events).
    pub state: Option<&'static str>,
    /// Waker's process id (off-CPU events woken by a task).
    pub waker_pid: Option<i32>,
    /// Waker's thread id.
    pub waker_tid: Option<i32>,
    /// Waker's comm.
    pub waker_comm: Option<Comm>,
    /// Task on the CPU before the run-queue wait ended (run-queue events).
    pub prev_pid: Option<i32>,
    /// Its thread id.
    pub prev_tid: Option<i32>,
    /// Its comm.
    pub prev_comm: Option<Comm>,
    /// Its cgroup v2 id: the neighbour's cgroup (run-queue events).
    pub prev_cgroup_id: Option<i64>,
    /// Its container id, when its cgroup path names one.
    pub prev_container_id: Option<String>,
    /// `stacks.stack_id` of the user stack.
    pub user_stack_id: Option<i64>,
    /// `stacks.stack_id` of the kernel stack.
    pub kernel_stack_id: Option<i64>,
    /// Parent process id (fork) or former pid (exec).
    pub ppid: Option<i32>,
    /// Exit code (exit events).
    pub exit_code: Option<i32>,
    /// Executable path (exec events).
    pub path: Option<String>,
    /// How the trace context was obtained.
    pub correlation_method: Option<&'static str>,
    /// Futex word address (futex events); on thread/process exits, the exiting thread's
    /// clear_child_tid — the futex its joiners (pthread_join) wait on.
    pub futex_uaddr: Option<i64>,
    /// Futex command (futex events).
    pub futex_op: Option<&'static str>,
    /// Block device, e.g. `vda` or `7:0` (block I/O events).
    pub device: Option<String>,
    /// Bytes of the request (block I/O events).
    pub bytes: Option<i64>,
    /// Request type: read, write, flush, discard, other, with `+sync`, `+fua`, `+preflush` (block I/O).
    pub io_op: Option<String>,
    /// Time from accounting start to the driver taking the request (block I/O events).
    pub io_queue_ns: Option<i64>,
    /// Local endpoint `ip:port` (TCP events).
    pub saddr: Option<String>,
    /// Peer endpoint `ip:port` (TCP events).
    pub daddr: Option<String>,
    /// A contended kernel lock (kernel.lock_wait): its symbol, or `0x…` for per-object locks.
    pub kernel_lock: Option<String>,
    /// Its kind: mutex, rwsem_read, rwsem_write, spinlock, rt_mutex, percpu_rwsem_*.
    pub kernel_lock_kind: Option<&'static str>,
    /// CUDA runtime/driver or NCCL function (cuda.* / nccl.* events), e.g. `cudaStreamSynchronize`.
    pub cuda_function: Option<&'static str>,
    /// Stream handle the call names (0: default stream).
    pub cuda_stream: Option<i64>,
    /// Launch grid `x,y,z`.
    pub cuda_grid: Option<String>,
    /// Launch block `x,y,z`.
    pub cuda_block: Option<String>,
    /// The launched kernel (its host stub's symbol, demangled), for `cudaLaunchKernel` rows.
    pub cuda_kernel: Option<String>,
    /// CFS bandwidth periods in which the cgroup ran out of quota (cpu.throttle events).
    pub cpu_throttled_periods: Option<i64>,
    /// CFS bandwidth periods that elapsed with runnable tasks (cpu.throttle events).
    pub cpu_periods: Option<i64>,
    /// The cgroup's quota and period in µs, `cpu.max` style: `10000 100000` (cpu.throttle).
    pub cpu_max: Option<String>,
}

/// One deduplicated stack: a row of the `stacks` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackRecord {
    /// Content hash of the normalized frames; what events reference.
    pub stack_id: i64,
    /// `kernel` or `user`.
    pub kind: &'static str,
    /// First capture time.
    pub time_unix_nano: i64,
    /// Process the stack was first seen in (user stacks).
    pub pid: i32,
    /// Symbolized frames, innermost first, outermost last.
    pub frames: Vec<String>,
    /// Build id (hex) of the object each frame lies in; empty when unknown or kernel.
    pub build_ids: Vec<String>,
    /// File offset within that object (user frames) or the kernel address.
    pub offsets: Vec<u64>,
    /// The capture hit the frame limit: outer frames are missing.
    pub truncated: bool,
}
