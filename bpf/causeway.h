/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Wire structs shared by the BPF programs and the collector.
 *
 * This header is the single definition: the collector uses the Rust types that libbpf-cargo
 * generates from these structs and enums (each probe's record struct from a dummy instance at
 * the bottom of its .bpf.c; the enums and the header from wire.bpf.c), never copies of them.
 *
 * Alignment rules: every record starts with `struct cw_header` (a type tag first); fields are
 * ordered from widest to narrowest and padded explicitly so the layout is identical on the BPF
 * target and on x86_64/aarch64 user space.
 */
#ifndef __CAUSEWAY_H
#define __CAUSEWAY_H

/* Sizes of the records' arrays (an enum, so that user space reads them from BTF). */
enum cw_limits {
	CW_COMM_LEN = 16,
	CW_PATH_LEN = 128,
	/* Frames kept per stack. Deep enough for most services; a full stack says so. */
	CW_MAX_KSTACK = 32,
	CW_MAX_USTACK = 32,
	/* Log2 buckets of the in-kernel call-duration histograms: bucket b counts calls of
	 * [2^b, 2^(b+1)) ns. */
	CW_CUDA_BUCKETS = 40,
};

/* Record type tags (first field of every ring-buffer record). */
enum cw_event_type {
	CW_EV_OFF_CPU = 1,       /* struct cw_off_cpu_event */
	CW_EV_OFF_CPU_STACK = 2, /* struct cw_off_cpu_stack_event */
	CW_EV_RUNQ = 3,          /* struct cw_runq_event */
	CW_EV_PROC = 4,          /* struct cw_proc_event */
	CW_EV_FUTEX = 5,         /* struct cw_futex_event */
	CW_EV_BLOCK = 6,         /* struct cw_block_event */
	CW_EV_TCP = 7,           /* struct cw_tcp_event */
	CW_EV_CUDA = 8,          /* struct cw_cuda_event */
	CW_EV_KERNEL_LOCK = 9,         /* struct cw_kernel_lock_event */
	CW_EV_MAX = 10,
};

/* Off-CPU state classes, derived from sched_switch's prev_state. */
enum cw_offcpu_state {
	CW_STATE_PREEMPTED = 0, /* runnable when switched out (involuntary) */
	CW_STATE_SLEEP = 1,     /* TASK_INTERRUPTIBLE, or TASK_IDLE (D + NOLOAD) */
	CW_STATE_DISK = 2,      /* TASK_UNINTERRUPTIBLE ("D-state") */
	CW_STATE_OTHER = 3,     /* stopped, traced, parked, dead ... */
};

/* Process lifecycle kinds carried by CW_EV_PROC. */
enum cw_proc_kind {
	CW_PROC_EXEC = 1,
	CW_PROC_FORK = 2,         /* a new process */
	CW_PROC_THREAD_START = 3, /* a new thread in an existing process */
	CW_PROC_EXIT = 4,         /* the process's last thread exited */
	CW_PROC_THREAD_EXIT = 5,
};

/* Counter slots in the per-CPU `stats` array. */
enum cw_stat {
	CW_STAT_EMITTED = 0,   /* + event type: records committed, per type (types < 16) */
	CW_STAT_DROPPED = 16,  /* + event type: ring buffer full, per type */
	CW_STAT_SHORT = 32,    /* off-CPU intervals below min_offcpu_ns (not sent) */
	CW_STAT_SHORT_RQ = 33, /* run-queue waits below min_runq_ns (not sent) */
	CW_STAT_CTX_PUBLISH = 34, /* trace-context changes seen by the uprobe */
	CW_STAT_CUDA_UNMATCHED = 35, /* CUDA call entries never matched by a return (lost at detach) */
	CW_STAT_CUDA_ORPHAN_RET = 36, /* CUDA returns without an entry (probe attached mid-call) */
	CW_STAT_CUDA_FAST = 37,  /* launches below slow_launch_ns: in the histograms, not sent */
	CW_STAT_SWITCH_IN_REBUILT = 38, /* switch-ins the handler never saw, rebuilt at the next switch-out */
	CW_STAT_SWITCH_IN_LOST = 39,    /* switch-ins the handler never saw, not rebuildable (boot clock) */
	CW_STAT_MAX = 40,
};

/* Where a record's trace context came from (cw_trace_ctx.source). */
enum cw_ctx_source {
	CW_CTX_NONE = 0,
	CW_CTX_UPROBE = 1, /* causeway_ctx_publish uprobe (causeway-context writer) */
	CW_CTX_OBI = 2,    /* OBI's pinned traces_ctx_v1 map */
};

/* The thread's current span when the record was taken (all zero: none). */
struct cw_trace_ctx {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 source;      /* enum cw_ctx_source */
	__u8 trace_flags;
	__u8 _pad[6];
};

struct cw_header {
	__u32 type; /* enum cw_event_type */
	__u32 cpu;
	__u32 pid; /* tgid */
	__u32 tid;
	struct cw_trace_ctx ctx; /* of thread `tid`, looked up when the record is written */
};

/* One off-CPU interval of thread `tid`, from switch-out to switch-in. */
struct cw_off_cpu_event {
	struct cw_header hdr;
	__u64 start_ns;    /* CLOCK_BOOTTIME at switch-out */
	__u64 duration_ns; /* switch-in minus switch-out (includes run-queue wait after wakeup) */
	__u64 cgroup_id;   /* cgroup v2 id of the thread */
	__u32 state;       /* enum cw_offcpu_state */
	__u32 waker_pid;   /* 0: no waker seen (preempted, or woken by an interrupt) */
	__u32 waker_tid;
	__u32 _pad0;
	char comm[CW_COMM_LEN];         /* thread name */
	char process_name[CW_COMM_LEN]; /* group leader's comm */
	char waker_comm[CW_COMM_LEN];
};

/* An off-CPU interval above stack_threshold_ns, with the blocked thread's stacks. */
struct cw_off_cpu_stack_event {
	struct cw_off_cpu_event ev;
	__s32 n_kernel; /* frames in kernel[], or a negative errno */
	__s32 n_user;   /* frames in user[], or a negative errno */
	__u64 kernel[CW_MAX_KSTACK];
	__u64 user[CW_MAX_USTACK];
};

/* Run-queue wait of thread `tid`: runnable (woken, new, or preempted) until switched in. */
struct cw_runq_event {
	struct cw_header hdr;
	__u64 start_ns;
	__u64 duration_ns;
	__u64 cgroup_id;
	__u64 prev_cgroup_id; /* its cgroup v2 id: the neighbour's cgroup */
	__u32 prev_pid; /* the task that held the CPU just before `tid` got it */
	__u32 prev_tid;
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
	char prev_comm[CW_COMM_LEN];
};

/* Process/thread lifecycle: exec, fork, thread start, exit. Never filtered by duration. */
struct cw_proc_event {
	struct cw_header hdr;
	__u64 ts_ns;
	__u64 cgroup_id;
	__u64 child_tid_addr; /* exit: the task's clear_child_tid, the futex its joiners wait on */
	__u32 kind;      /* enum cw_proc_kind */
	__u32 ppid;      /* parent tgid (fork), or old pid (exec) */
	__s32 exit_code; /* exit: the task's exit_code as the kernel holds it */
	__u32 _pad0;
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
	char path[CW_PATH_LEN]; /* exec: the file name */
};

/* One futex wait of thread `tid` (FUTEX_WAIT, WAIT_BITSET, LOCK_PI, LOCK_PI2, WAIT_REQUEUE_PI,
 * futex_waitv): the off-CPU interval the thread spent blocked inside the syscall (from
 * offcpu.bpf.c's sched_switch). The lock identity is (pid, uaddr); the holder is the waker of the
 * same interval's off-CPU record. */
struct cw_futex_event {
	struct cw_header hdr;
	__u64 start_ns; /* CLOCK_BOOTTIME at switch-out */
	__u64 duration_ns;
	__u64 cgroup_id;
	__u64 uaddr; /* the futex word's user address */
	__u32 op;    /* futex command (op without PRIVATE/CLOCK_REALTIME flags) */
	__s32 ret;   /* -ETIMEDOUT: a timed wait woken by a timer, not a task; else 0 */
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
};

/* One block-layer request, from accounting start (in the submitting task's context) to completion,
 * attributed to the task that submitted it (completions run in interrupt context). */
struct cw_block_event {
	struct cw_header hdr; /* pid/tid: the submitter */
	__u64 start_ns;       /* block_io_start */
	__u64 duration_ns;    /* to block_rq_complete */
	__u64 cgroup_id;
	__u64 queue_ns; /* start → issued to the driver (time in the I/O scheduler / plug) */
	__u64 sector;
	__u32 dev;   /* dev_t of the partition (or disk): major << 20 | minor */
	__u32 bytes; /* request size at start */
	__u32 op;    /* cmd_flags: REQ_OP_* in the low 8 bits, REQ_* flags above */
	__s32 error; /* blk_status_t at completion, 0 = ok */
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
};

/* A TCP retransmission, attributed to the socket's owner (it fires in softirq context, where
 * `current` is unrelated): the task that connected the socket. */
struct cw_tcp_event {
	struct cw_header hdr; /* pid/tid: the socket's owner */
	__u64 ts_ns;
	__u64 cgroup_id;
	__u8 saddr[16]; /* IPv4 in the first 4 bytes when family is AF_INET */
	__u8 daddr[16];
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 state; /* TCP state of the socket */
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
};

/* A wait for a contended kernel lock (mutex, rwsem, rt_mutex, percpu rwsem; spinning too),
 * lock:contention_begin → contention_end in the waiting task. The lock is a kernel address:
 * global locks have a symbol (user space names them); per-object ones (an inode's i_rwsem, an
 * mm's mmap_lock) do not. */
struct cw_kernel_lock_event {
	struct cw_header hdr;
	__u64 start_ns;
	__u64 duration_ns;
	__u64 cgroup_id;
	__u64 lock_addr;
	__u32 flags; /* LCB_F_SPIN 1, READ 2, WRITE 4, RT 8, PERCPU 16, MUTEX 32 */
	__s32 ret;   /* 0, or the error the wait ended with (-EINTR on a killable wait) */
	__s32 n_kernel; /* frames in kernel[], or a negative errno */
	__u32 _pad0;
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
	__u64 kernel[CW_MAX_KSTACK]; /* the waiter's kernel stack: who takes the lock, where */
};

/* CUDA runtime/driver and NCCL functions the collector probes (the uprobe's attach cookie).
 * The layer keeps a runtime call and the driver call it makes apart (they nest on one thread).
 * collector/src/probes/cuda.rs names each and gives its class. */
enum cw_cuda_func {
	CW_CUDA_LAUNCH_KERNEL = 1, /* cudaLaunchKernel(func, dim3 grid, dim3 block, args, shmem, stream) */
	CW_CUDA_LAUNCH_KERNEL_PTSZ = 2,
	CW_CUDA_GRAPH_LAUNCH = 3,  /* cudaGraphLaunch(exec, stream) */
	CW_CUDA_MEMCPY = 4,        /* cudaMemcpy(dst, src, count, kind) */
	CW_CUDA_MEMCPY_ASYNC = 5,  /* cudaMemcpyAsync(dst, src, count, kind, stream) */
	CW_CUDA_STREAM_SYNC = 6,   /* cudaStreamSynchronize(stream) */
	CW_CUDA_DEVICE_SYNC = 7,   /* cudaDeviceSynchronize() */
	CW_CUDA_EVENT_SYNC = 8,    /* cudaEventSynchronize(event) */
	CW_CUDA_MALLOC = 9,        /* cudaMalloc(void **ptr, size) */
	CW_CUDA_FREE = 10,         /* cudaFree(ptr) */
	CW_CU_LAUNCH_KERNEL = 11,  /* cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra) */
	CW_CU_LAUNCH_KERNEL_PTSZ = 12,
	CW_CU_MEMCPY = 13,         /* cuMemcpy(dst, src, count) */
	CW_CU_MEMCPY_ASYNC = 14,   /* cuMemcpyAsync(dst, src, count, stream) */
	CW_CU_MEMCPY_HTOD = 15,    /* cuMemcpyHtoD_v2(dst, src, count) */
	CW_CU_MEMCPY_DTOH = 16,    /* cuMemcpyDtoH_v2 */
	CW_CU_MEMCPY_DTOD = 17,    /* cuMemcpyDtoD_v2 */
	CW_CU_MEMCPY_HTOD_ASYNC = 18, /* cuMemcpyHtoDAsync_v2(dst, src, count, stream) */
	CW_CU_MEMCPY_DTOH_ASYNC = 19, /* cuMemcpyDtoHAsync_v2 */
	CW_CU_CTX_SYNC = 20,       /* cuCtxSynchronize() */
	CW_CU_STREAM_SYNC = 21,    /* cuStreamSynchronize(stream) */
	CW_CU_MEM_ALLOC = 22,      /* cuMemAlloc_v2(CUdeviceptr *ptr, size) */
	CW_CU_MEM_FREE = 23,       /* cuMemFree_v2(ptr) */
	CW_NCCL_ALL_REDUCE = 24,   /* ncclAllReduce(send, recv, count, dtype, op, comm, stream) */
	CW_NCCL_ALL_GATHER = 25,   /* ncclAllGather(send, recv, sendcount, dtype, comm, stream) */
	CW_NCCL_REDUCE_SCATTER = 26, /* ncclReduceScatter(send, recv, recvcount, dtype, op, comm, stream) */
	CW_NCCL_BROADCAST = 27,    /* ncclBroadcast(send, recv, count, dtype, root, comm, stream) */
	CW_NCCL_SEND = 28,         /* ncclSend(send, count, dtype, peer, comm, stream) */
	CW_NCCL_RECV = 29,         /* ncclRecv(recv, count, dtype, peer, comm, stream) */
	CW_CUDA_FUNC_MAX = 30,
};


/* One CUDA/NCCL call of thread `tid`: sync, memcpy, allocation and collective calls always,
 * launches only when slower than slow_launch_ns (the rest are in the histograms). */
struct cw_cuda_event {
	struct cw_header hdr;
	__u64 start_ns;
	__u64 duration_ns;
	__u64 cgroup_id;
	__u64 stream; /* cudaStream_t / CUstream, 0 = default stream or not an argument */
	__u64 bytes;  /* memcpy/alloc size, collective count × element size; 0 when not given */
	__u64 kernel_addr; /* cudaLaunchKernel's `func`: the kernel's host stub (symbolized in user space) */
	__u32 grid[3];  /* launches */
	__u32 block[3];
	__u32 func;     /* enum cw_cuda_func */
	__s32 ret;      /* cudaError_t / CUresult / ncclResult_t */
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
};

/* Key and value of the per-CPU call histograms (user space sums the CPUs and takes deltas). */
struct cw_cuda_hist_key {
	__u32 tgid;
	__u32 func;
};
struct cw_cuda_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 buckets[CW_CUDA_BUCKETS];
};

#endif /* __CAUSEWAY_H */
