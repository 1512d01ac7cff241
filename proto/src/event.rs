//! The decoded form of kernel records.

use crate::comm::Comm;

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
    /// How the trace context was obtained.
    pub correlation_method: Option<&'static str>,
    /// Futex word address (futex events); on thread/process exits, the exiting thread's
    /// clear_child_tid — the futex its joiners (pthread_join) wait on.
    pub futex_uaddr: Option<i64>,
    /// Futex command (futex events).
    pub futex_op: Option<&'static str>,
    /// Exit code (exit events); the error a probed call returned (futex, block I/O, CUDA,
    /// kernel locks).
    pub exit_code: Option<i32>,
    /// The fields only some kinds fill, out of line (read them as fields of the event: see
    /// the `Deref` impl).
    pub detail: Detail,
}

/// The fields of [`KernelEvent`] only some kinds fill: lifecycle (`ppid`, `path`),
/// block I/O, TCP, kernel locks, CUDA and CPU throttling. Held out of line: inline they would
/// be about half of an event, moved and dropped with every scheduler record, which fills none
/// of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindFields {
    /// Parent process id (fork) or former pid (exec).
    pub ppid: Option<i32>,
    /// Executable path (exec events).
    pub path: Option<String>,
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

/// [`KindFields`] allocated only for an event that fills one: `None` reads as all fields
/// empty, and compares equal to an allocated set of empty fields.
#[derive(Clone, Default)]
pub struct Detail(Option<Box<KindFields>>);

/// What an event without kind fields reads.
static NO_KIND_FIELDS: KindFields = KindFields {
    ppid: None,
    path: None,
    device: None,
    bytes: None,
    io_op: None,
    io_queue_ns: None,
    saddr: None,
    daddr: None,
    kernel_lock: None,
    kernel_lock_kind: None,
    cuda_function: None,
    cuda_stream: None,
    cuda_grid: None,
    cuda_block: None,
    cuda_kernel: None,
    cpu_throttled_periods: None,
    cpu_periods: None,
    cpu_max: None,
};

impl Detail {
    /// The fields, empty when none were set.
    pub fn get(&self) -> &KindFields {
        self.0.as_deref().unwrap_or(&NO_KIND_FIELDS)
    }

    /// The fields to set, allocated on first use.
    pub fn get_mut(&mut self) -> &mut KindFields {
        self.0.get_or_insert_with(Default::default)
    }
}

impl From<KindFields> for Detail {
    /// Allocates only when a field is set: a decoder may build its kind's fields whether or
    /// not the record filled any (a thread's exit has neither ppid nor path).
    fn from(fields: KindFields) -> Detail {
        Detail((fields != NO_KIND_FIELDS).then(|| Box::new(fields)))
    }
}

impl PartialEq for Detail {
    fn eq(&self, other: &Detail) -> bool {
        self.get() == other.get()
    }
}

impl std::fmt::Debug for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.get(), f)
    }
}

/// An event's kind fields read (and are set) as its own: `event.device`, `event.cuda_function`.
/// Setting one allocates the out-of-line part; reading an unset one does not.
impl std::ops::Deref for KernelEvent {
    type Target = KindFields;
    fn deref(&self) -> &KindFields {
        self.detail.get()
    }
}

impl std::ops::DerefMut for KernelEvent {
    fn deref_mut(&mut self) -> &mut KindFields {
        self.detail.get_mut()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_fields_read_as_the_events_own_and_allocate_only_when_set() {
        let mut e = KernelEvent::default();
        assert_eq!(
            (e.device.as_deref(), e.cuda_function, e.ppid),
            (None, None, None)
        );
        assert!(
            e.detail.0.is_none(),
            "reading an unset field allocates nothing"
        );
        e.device = Some("vda".into());
        assert!(e.detail.0.is_some());
        assert_eq!(e.device.as_deref(), Some("vda"));
        let built = KernelEvent {
            detail: KindFields {
                device: Some("vda".into()),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        };
        assert_eq!(e, built);
        // empty fields built are not allocated
        let built_empty: Detail = KindFields::default().into();
        assert!(built_empty.0.is_none());
        // allocated but empty reads (and compares) as never set
        let mut empty = KernelEvent::default();
        empty.detail.get_mut();
        assert_eq!(empty, KernelEvent::default());
        assert_ne!(e, KernelEvent::default());
        // a scheduler record (no kind fields) stays small: it is moved and dropped per record
        assert!(
            std::mem::size_of::<KernelEvent>() <= 440,
            "{} bytes",
            std::mem::size_of::<KernelEvent>()
        );
    }
}
