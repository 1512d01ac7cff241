// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Futex waits with lock identity (uaddr): syscalls:sys_enter_futex → sys_exit_futex.
 *
 * Only wait-type commands are timed; a wait shorter than min_futex_ns is dropped in the kernel.
 * The filter, ring buffer and counters are offcpu.bpf.c's (maps reused by the collector).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "causeway.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define FUTEX_WAIT 0
#define FUTEX_LOCK_PI 6
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAIT_REQUEUE_PI 11
#define FUTEX_LOCK_PI2 13
#define FUTEX_CMD_MASK (~(128 | 256)) /* ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) */

const volatile __u64 min_futex_ns = 1000000;

struct futex_start {
	__u64 ts;
	__u64 uaddr;
	__u32 op;
	__u32 _pad0;
};

/* key: the task; value: its wait in progress (ts 0: none). Task storage: no hashing or shared
 * lock per call (the futex probes run on every futex call, wakes included), and freed with the
 * task, so a thread killed inside a wait leaves nothing behind. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct futex_start);
} futex_starts SEC(".maps");

/* syscalls:sys_enter_futex (uaddr, op, val, utime, uaddr2, val3) */
SEC("tracepoint/syscalls/sys_enter_futex")
int handle__sys_enter_futex(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	__u32 op = (__u32)ctx->args[1] & FUTEX_CMD_MASK;
	struct futex_start *st;

	if (op != FUTEX_WAIT && op != FUTEX_WAIT_BITSET && op != FUTEX_LOCK_PI &&
	    op != FUTEX_LOCK_PI2 && op != FUTEX_WAIT_REQUEUE_PI)
		return 0;
	if (!traced(t))
		return 0;
	st = bpf_task_storage_get(&futex_starts, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	st->ts = bpf_ktime_get_boot_ns();
	st->uaddr = ctx->args[0];
	st->op = op;
	return 0;
}

/* futex_waitv(2) waits on up to 128 futexes at once (Wine/Proton, some runtimes). The first
 * waiter's address stands for the lock's identity; op is FUTEX_WAITV_OP. */
#define FUTEX_WAITV_OP 64
struct futex_waitv_user {
	__u64 val;
	__u64 uaddr;
	__u32 flags;
	__u32 __reserved;
};

/* syscalls:sys_enter_futex_waitv (waiters, nr_futexes, flags, timeout, clockid) */
SEC("tracepoint/syscalls/sys_enter_futex_waitv")
int handle__sys_enter_futex_waitv(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	struct futex_waitv_user first = {};
	struct futex_start *st;

	if (!traced(t))
		return 0;
	st = bpf_task_storage_get(&futex_starts, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	bpf_probe_read_user(&first, sizeof(first), (void *)ctx->args[0]);
	st->ts = bpf_ktime_get_boot_ns();
	st->uaddr = first.uaddr;
	st->op = FUTEX_WAITV_OP;
	return 0;
}

/* futex and futex_waitv waits end the same way */
static __always_inline int futex_exit(struct trace_event_raw_sys_exit *ctx);

/* syscalls:sys_exit_futex_waitv (ret: the index of the woken futex, or an error) */
SEC("tracepoint/syscalls/sys_exit_futex_waitv")
int handle__sys_exit_futex_waitv(struct trace_event_raw_sys_exit *ctx)
{
	return futex_exit(ctx);
}

/* syscalls:sys_exit_futex (ret) */
SEC("tracepoint/syscalls/sys_exit_futex")
int handle__sys_exit_futex(struct trace_event_raw_sys_exit *ctx)
{
	return futex_exit(ctx);
}

static __always_inline int futex_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	struct futex_start *p = bpf_task_storage_get(&futex_starts, t, 0, 0);
	struct futex_start st;
	struct cw_futex_event *e;
	__u64 now;

	if (!p || !p->ts)
		return 0;
	st = *p;
	p->ts = 0;
	now = bpf_ktime_get_boot_ns();
	if (now - st.ts < min_futex_ns)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_FUTEX);
		return 0;
	}
	fill_header(&e->hdr, CW_EV_FUTEX, t);
	e->start_ns = st.ts;
	e->duration_ns = now - st.ts;
	e->cgroup_id = task_cgroup_id(t);
	e->uaddr = st.uaddr;
	e->op = st.op;
	/* futex_waitv returns the index of the futex that woke it: not an error */
	e->ret = st.op == FUTEX_WAITV_OP && ctx->ret >= 0 ? 0 : (__s32)ctx->ret;
	fill_names(e->comm, e->process_name, t);
	count(CW_STAT_EMITTED + CW_EV_FUTEX);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

/* Dummy instance so the skeleton generator emits the Rust definition of the wire struct. */
struct cw_futex_event _cw_futex_event = {};
