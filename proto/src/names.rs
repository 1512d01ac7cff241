//! Names shared by the collector, the Parquet tables, the OTLP records and the query service.
//!
//! Adding an event kind means adding its name here, its probe in `bpf/`, and its decoder in the
//! collector.

/// Event names (`event_name` column, OTLP `event_name`).
pub mod event {
    /// An interval a thread spent off CPU, from switch-out to switch-in.
    pub const OFF_CPU: &str = "sched.off_cpu";
    /// A wait in the run queue: runnable (woken, new, preempted) until switched in.
    pub const RUNQ: &str = "sched.runq";
    /// A process replaced its image (execve).
    pub const PROCESS_EXEC: &str = "process.exec";
    /// A new process was forked.
    pub const PROCESS_FORK: &str = "process.fork";
    /// A process ended (its leader thread exited).
    pub const PROCESS_EXIT: &str = "process.exit";
    /// A new thread started in an existing process.
    pub const THREAD_START: &str = "thread.start";
    /// A thread that is not the process leader exited.
    pub const THREAD_EXIT: &str = "thread.exit";
    /// A TCP segment retransmitted, attributed to the socket's owner: `saddr`, `daddr`.
    pub const TCP_RETRANSMIT: &str = "tcp.retransmit";
    /// One block-layer request, submitter → completion: `device`, `bytes`, `io_op`.
    pub const BLOCK_IO: &str = "block.io";
    /// A futex wait (lock, condition variable, join): `futex_uaddr` names the lock.
    pub const FUTEX_WAIT: &str = "futex.wait";
    /// A wait for a contended kernel lock (lock:contention_begin → end): `kernel_lock`,
    /// `kernel_lock_kind`.
    pub const KERNEL_LOCK_WAIT: &str = "kernel.lock_wait";
    /// A kernel or graph launch call (cudaLaunchKernel, cuLaunchKernel, cudaGraphLaunch): only the
    /// slow ones are rows; every launch is in `cuda_histograms`.
    pub const CUDA_LAUNCH: &str = "cuda.launch";
    /// A host thread waiting for the GPU (cudaStreamSynchronize, cudaDeviceSynchronize, …).
    pub const CUDA_SYNC: &str = "cuda.sync";
    /// A memory copy call (cudaMemcpy*, cuMemcpy*): `bytes`, `cuda_stream`.
    pub const CUDA_MEMCPY: &str = "cuda.memcpy";
    /// A device memory allocation or free (cudaMalloc/cudaFree, cuMemAlloc/cuMemFree).
    pub const CUDA_ALLOC: &str = "cuda.alloc";
    /// An NCCL collective or point-to-point call (enqueue time on the host): `bytes`.
    pub const NCCL_COLLECTIVE: &str = "nccl.collective";
    /// The process's CPU cgroup hit its CFS quota (cpu.max) in an interval: `duration_ns` is the
    /// time the cgroup was throttled in it, `cpu_throttled_periods` of `cpu_periods`, `cpu_max`,
    /// `path` the cgroup directory. One row per process of the cgroup (all of them stall).
    pub const CPU_THROTTLE: &str = "cpu.throttle";
}

/// Off-CPU state classes (`state` column), from sched_switch's `prev_state`.
pub mod state {
    /// Runnable when switched out: preempted, involuntary.
    pub const PREEMPTED: &str = "preempted";
    /// Interruptible sleep (locks, pipes, sockets, timers), or an idle D-state wait.
    pub const SLEEP: &str = "sleep";
    /// Uninterruptible sleep ("D-state"), typically I/O.
    pub const DISK: &str = "disk";
    /// Stopped, traced, parked, dead.
    pub const OTHER: &str = "other";
}

/// Attribute keys of OTLP log records. Semantic-convention names where they exist.
pub mod attr {
    /// `process.pid` (semconv).
    pub const PROCESS_PID: &str = "process.pid";
    /// `process.parent_pid` (semconv).
    pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
    /// `process.executable.name` (semconv): the process leader's comm.
    pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
    /// `process.executable.path` (semconv): exec's file name.
    pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
    /// `process.exit.code` (semconv).
    pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
    /// `thread.id` (semconv).
    pub const THREAD_ID: &str = "thread.id";
    /// `thread.name` (semconv).
    pub const THREAD_NAME: &str = "thread.name";
    /// `cpu.logical_number` (semconv).
    pub const CPU: &str = "cpu.logical_number";
    /// `container.id` (semconv).
    pub const CONTAINER_ID: &str = "container.id";
    /// Kubernetes pod uid (semantic conventions).
    pub const K8S_POD_UID: &str = "k8s.pod.uid";
    /// `host.name` (semconv, resource attribute).
    pub const HOST_NAME: &str = "host.name";
    /// Duration of the interval in nanoseconds.
    pub const DURATION_NS: &str = "causeway.duration_ns";
    /// cgroup v2 id of the thread.
    pub const CGROUP_ID: &str = "causeway.cgroup.id";
    /// Off-CPU state class.
    pub const STATE: &str = "causeway.sched.state";
    /// Who woke the thread: process id.
    pub const WAKER_PID: &str = "causeway.waker.pid";
    /// Who woke the thread: thread id.
    pub const WAKER_TID: &str = "causeway.waker.tid";
    /// Who woke the thread: its comm.
    pub const WAKER_NAME: &str = "causeway.waker.name";
    /// The task on the CPU just before a run-queue wait ended: process id.
    pub const PREV_PID: &str = "causeway.prev.pid";
    /// The task on the CPU just before a run-queue wait ended: thread id.
    pub const PREV_TID: &str = "causeway.prev.tid";
    /// The task on the CPU just before a run-queue wait ended: comm.
    pub const PREV_NAME: &str = "causeway.prev.name";
    /// The task on the CPU just before a run-queue wait ended: its cgroup v2 id.
    pub const PREV_CGROUP_ID: &str = "causeway.prev.cgroup.id";
    /// The task on the CPU just before a run-queue wait ended: its container.
    pub const PREV_CONTAINER_ID: &str = "causeway.prev.container.id";
    /// CFS periods the cgroup was throttled in (cpu.throttle).
    pub const CPU_THROTTLED_PERIODS: &str = "causeway.cpu.throttled_periods";
    /// CFS periods that elapsed (cpu.throttle).
    pub const CPU_PERIODS: &str = "causeway.cpu.periods";
    /// The cgroup's `quota period` in µs (cpu.throttle).
    pub const CPU_MAX: &str = "causeway.cpu.max";
    /// Stack id (row of the `stacks` table) of the blocked thread's user stack.
    pub const USER_STACK_ID: &str = "causeway.stack.user_id";
    /// Stack id (row of the `stacks` table) of the blocked thread's kernel stack.
    pub const KERNEL_STACK_ID: &str = "causeway.stack.kernel_id";
    /// User address of the futex word a thread waited on (the lock's identity within its pid).
    pub const FUTEX_UADDR: &str = "causeway.futex.uaddr";
    /// Futex command: wait | wait_bitset | lock_pi | lock_pi2 | wait_requeue_pi.
    pub const FUTEX_OP: &str = "causeway.futex.op";
    /// Local endpoint of a TCP socket (`ip:port`).
    pub const SOURCE_ADDRESS: &str = "source.address";
    /// Peer endpoint of a TCP socket (`ip:port`).
    pub const DESTINATION_ADDRESS: &str = "destination.address";
    /// Block device name (block I/O events).
    pub const BLOCK_DEVICE: &str = "causeway.block.device";
    /// Request size in bytes (block I/O events).
    pub const BLOCK_BYTES: &str = "causeway.block.bytes";
    /// Request type (block I/O events).
    pub const BLOCK_OP: &str = "causeway.block.op";
    /// Time before the driver took the request (block I/O events).
    pub const BLOCK_QUEUE_NS: &str = "causeway.block.queue_ns";
    /// A contended kernel lock: its symbol, or its address for per-object locks.
    pub const KERNEL_LOCK: &str = "causeway.kernel_lock";
    /// The kernel lock's kind: mutex, rwsem_read, rwsem_write, spinlock, rt_mutex, …
    pub const KERNEL_LOCK_KIND: &str = "causeway.kernel_lock.kind";
    /// CUDA/NCCL function name (cuda.* and nccl.* events).
    pub const CUDA_FUNCTION: &str = "causeway.cuda.function";
    /// CUDA stream handle (0: the default stream).
    pub const CUDA_STREAM: &str = "causeway.cuda.stream";
    /// Grid dimensions `x,y,z` of a launch.
    pub const CUDA_GRID: &str = "causeway.cuda.grid";
    /// Block dimensions `x,y,z` of a launch.
    pub const CUDA_BLOCK: &str = "causeway.cuda.block";
    /// The launched kernel's name (a record attribute, never a metric label: cardinality).
    pub const CUDA_KERNEL: &str = "causeway.cuda.kernel";
    /// Bytes of a copy, allocation or collective.
    pub const CUDA_BYTES: &str = "causeway.cuda.bytes";
    /// How trace context was obtained: tls | uprobe | obi_map | time_window.
    pub const CORRELATION_METHOD: &str = "causeway.correlation.method";
    /// The collector's version (resource attribute).
    pub const COLLECTOR_VERSION: &str = "causeway.collector.version";
}

/// Values of `correlation_method` / `causeway.correlation.method`: how an event's trace context
/// was obtained.
pub mod correlation {
    /// Read from the causeway_ctx_publish uprobe's per-thread map, in the kernel, at capture.
    pub const UPROBE: &str = "uprobe";
    /// Read from OBI's pinned `traces_ctx_v1` map, in the kernel, at capture.
    pub const OBI_MAP: &str = "obi_map";
    /// Not tagged at capture: joined at query time by (pid, tid) and the span's time window.
    pub const TIME_WINDOW: &str = "time_window";
}

/// The ring-buffer record types, as `collector_stats` names their counters (`kind`).
pub mod record {
    /// Off-CPU intervals (`sched.off_cpu`).
    pub const OFF_CPU: &str = "off_cpu";
    /// Off-CPU intervals sent with their stacks.
    pub const OFF_CPU_STACK: &str = "off_cpu_stack";
    /// Run-queue waits (`sched.runq`).
    pub const RUNQ: &str = "runq";
    /// Process and thread lifecycle (`process.*`, `thread.*`).
    pub const PROCESS: &str = "proc";
    /// Futex waits (`futex.wait`).
    pub const FUTEX: &str = "futex";
    /// Block requests (`block.io`).
    pub const BLOCK_IO: &str = "block";
    /// TCP retransmits (`tcp.retransmit`).
    pub const TCP_RETRANSMIT: &str = "tcp_retransmit";
    /// CUDA and NCCL calls (`cuda.*`, `nccl.*`).
    pub const CUDA: &str = "cuda";
    /// Waits for contended kernel locks (`kernel.lock_wait`).
    pub const KERNEL_LOCK: &str = "kernel_lock";
}

/// The other kinds of `collector_stats` rows.
pub mod stats {
    /// The collector's own cost: CPU, memory, BPF run time.
    pub const SELF: &str = "self";
    /// Switch-ins the scheduler tracepoint did not report: rebuilt (`emitted`) or lost.
    pub const SWITCH_IN_MISSED: &str = "switch_in_missed";
    /// Trace-context changes the uprobe saw.
    pub const TRACE_CONTEXT: &str = "trace_context";
    /// Records shed above the rate limit, or undecodable.
    pub const USER_SPACE: &str = "user_space";
    /// CUDA launch sampling: launches counted, fast ones in histograms only, lost entries.
    pub const CUDA_SAMPLING: &str = "cuda_sampling";
    /// Log records exported over OTLP, and those lost.
    pub const OTLP: &str = "otlp";
}
