// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Kernel lock contention: lock:contention_begin → lock:contention_end (tp_btf) in the waiting
 * task. A D-state wait is often not the device but a kernel lock someone holds across slow work
 * (an inode's i_rwsem during a truncate or a big write, mmap_lock during munmap); this names it.
 * The off-CPU interval of the same wait carries the waker: the holder that released the lock.
 * Each wait carries the waiter's kernel stack: the code that takes the lock names it.
 * Waits shorter than min_kernel_lock_ns are dropped in the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "causeway.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u64 min_kernel_lock_ns = 1000000;

struct kernel_lock_start {
	__u64 ts;
	__u64 lock;
	__u32 flags;
	__u32 depth; /* contention_begin can repeat inside one wait (spin, then sleep) */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kernel_lock_start);
} kernel_lock_starts SEC(".maps");

/* The ring buffer's own lock. Two CPUs reserving records at once contend on it: that is
 * causeway's own doing, not the traced task's, and its contention_end fires with the lock held,
 * where this program's own reserve could only fail (the lock is not recursive). */
static __always_inline bool ring_buffer_lock(void *lock)
{
	struct bpf_ringbuf_map *m = (struct bpf_ringbuf_map *)&events;
	struct bpf_ringbuf *rb = m->rb;

	return rb && (__u64)lock == (__u64)&rb->spinlock;
}

SEC("tp_btf/contention_begin")
int BPF_PROG(handle__contention_begin, void *lock, unsigned int flags)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	struct kernel_lock_start *s;

	if (!traced(t) || ring_buffer_lock(lock))
		return 0;
	s = bpf_task_storage_get(&kernel_lock_starts, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	if (s->ts && s->lock == (__u64)lock) {
		s->flags |= flags; /* the same wait, now sleeping after spinning: keep its start */
		return 0;
	}
	s->ts = bpf_ktime_get_boot_ns();
	s->lock = (__u64)lock;
	s->flags = flags;
	return 0;
}

SEC("tp_btf/contention_end")
int BPF_PROG(handle__contention_end, void *lock, int ret)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	struct cw_kernel_lock_event *e;
	struct kernel_lock_start *s;
	__u64 now, dur;

	s = bpf_task_storage_get(&kernel_lock_starts, t, 0, 0);
	if (!s || !s->ts || s->lock != (__u64)lock)
		return 0;
	now = bpf_ktime_get_boot_ns();
	dur = now - s->ts;
	if (dur < min_kernel_lock_ns) {
		s->ts = 0;
		return 0;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_KERNEL_LOCK);
		s->ts = 0;
		return 0;
	}
	fill_header(&e->hdr, CW_EV_KERNEL_LOCK, t);
	e->start_ns = s->ts;
	e->duration_ns = dur;
	e->cgroup_id = task_cgroup_id(t);
	e->lock_addr = s->lock;
	e->flags = s->flags;
	e->ret = ret;
	/* still inside the lock's slow path: the frames above it name the code taking the lock,
	 * which is how a lock without a symbol (no CONFIG_KALLSYMS_ALL, or a per-object lock)
	 * is told apart */
	{
		long n = bpf_get_stack(ctx, e->kernel, sizeof(e->kernel), 0);

		e->n_kernel = n < 0 ? (__s32)n : (__s32)(n / sizeof(__u64));
	}
	fill_names(e->comm, e->process_name, t);
	s->ts = 0;
	count(CW_STAT_EMITTED + CW_EV_KERNEL_LOCK);
	bpf_ringbuf_submit(e, rb_flags());
	return 0;
}

/* Dummy instance so the skeleton generator emits the Rust definition of the wire struct. */
struct cw_kernel_lock_event _cw_kernel_lock_event = {};
