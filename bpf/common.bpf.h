/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What every causeway probe set shares: the filter tunables and `traced()`, the pid filter map,
 * the ring buffer and the loss counters, and the record header helpers.
 *
 * Each .bpf.c that includes this declares these maps; the collector loads offcpu.bpf.c first
 * and makes the others reuse its maps (libbpf reuse_fd), so there is one filter, one ring buffer
 * and one set of counters. Filter tunables are rodata: the collector writes the same values into
 * every object.
 */
#ifndef __CAUSEWAY_COMMON_BPF_H
#define __CAUSEWAY_COMMON_BPF_H

const volatile __u32 self_tgid = 0;                 /* the collector never traces itself */
const volatile bool filter_tgid = false;            /* only tgids in `tgid_filter` */
const volatile bool follow_children = true;         /* a traced process's children are traced */
const volatile bool filter_cgroup = false;          /* only tasks under target_cgroup_id */
const volatile __u64 target_cgroup_id = 0;
const volatile __u32 target_cgroup_level = 0; /* depth of target in the v2 hierarchy */

/* key: tgid; value: unused. Consulted only when filter_tgid is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} tgid_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* resized by the collector before load */
} events SEC(".maps");

/* key: enum cw_stat slot; value: per-CPU counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* A thread's span now and the one before it, each with the boot time it began: a record about
 * an interval that ended before the thread ran again (rebuild_switch_in in offcpu.bpf.c) takes
 * the span that was current when the interval began, not the one current when it is written. */
struct cw_thread_ctx {
	struct cw_trace_ctx now;    /* source CW_CTX_NONE: no span since since_ns */
	struct cw_trace_ctx before; /* the one `now` replaced */
	__u64 since_ns;             /* when `now` began */
	__u64 before_since_ns;      /* when `before` began; 0: before the first change seen */
};

/* key: pid_tgid; value: the thread's spans, kept by tracectx.bpf.c's uprobe. LRU: a thread that
 * dies without a last publish cannot leak an entry (exit also deletes it). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct cw_thread_ctx);
} thread_ctx SEC(".maps");

/* OBI's trace-context map, same definition as OBI's pinned `traces_ctx_v1` (key pid_tgid, value
 * trace_id[16] + span_id[8]). The collector replaces this empty one with the pinned map when it
 * exists (reuse_fd); otherwise lookups simply miss. */
struct obi_ctx_info {
	__u8 trace_id[16];
	__u8 span_id[8];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u64);
	__type(value, struct obi_ctx_info);
} traces_ctx_v1 SEC(".maps");

/* Records are submitted without waking the reader, which reads on a timer (a wakeup per
 * record would cost more than the record). Past this much unread data the reader is woken
 * anyway, so a burst is read before the ring fills, whatever the timer's period. 0: never. */
const volatile __u64 wake_bytes = 0;

static __always_inline __u64 rb_flags(void)
{
	if (wake_bytes && bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wake_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);
	if (v)
		*v += 1;
}

/* Every task pointer handed to these helpers is a BTF one (a tp_btf argument or
 * bpf_get_current_task_btf()), so fields are read with plain CO-RE-relocated loads, which the
 * verifier turns into fault-safe loads, cheaper than a helper call (BPF_CORE_READ) each, and
 * traced() runs twice on every context switch. */
static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	return t->cgroups->dfl_cgrp->kn->id;
}

/* A task's comm, 16 bytes (kernel comms are NUL-padded), as two 8-byte loads. */
static __always_inline void copy_comm(char *dst, const char *comm)
{
	__u64 lo = *(const __u64 *)comm, hi = *(const __u64 *)(comm + 8);

	__builtin_memcpy(dst, &lo, 8);
	__builtin_memcpy(dst + 8, &hi, 8);
}

/* True when `t` is at or below the target cgroup (cgroup v2 ancestry, one read). */
static __always_inline bool in_target_cgroup(struct task_struct *t)
{
	struct cgroup *cgrp = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	struct cgroup *anc = NULL;
	int level = BPF_CORE_READ(cgrp, level);
	__u32 tl = target_cgroup_level;

	if (level < (int)tl || tl > 255)
		return false;
	bpf_probe_read_kernel(&anc, sizeof(anc), &cgrp->ancestors[tl]);
	return anc && BPF_CORE_READ(anc, kn, id) == target_cgroup_id;
}

static __always_inline bool traced(struct task_struct *t)
{
	__u32 tgid = t->tgid;

	if (t->pid == 0 || tgid == self_tgid)
		return false;
	if (filter_tgid && !bpf_map_lookup_elem(&tgid_filter, &tgid))
		return false;
	if (filter_cgroup && !in_target_cgroup(t))
		return false;
	return true;
}

/* Copies into `c` the span thread (tgid, tid) was in at boot time `at` (0: now): causeway's own
 * map first, then OBI's (which keeps only the current one). A span that changed more than once
 * since `at` is not known: none. Called only for records that are sent, so the lookups cost
 * nothing on filtered-out switches. */
static __always_inline void fill_trace_ctx(struct cw_trace_ctx *c, __u32 tgid, __u32 tid, __u64 at)
{
	__u64 key = ((__u64)tgid << 32) | tid;
	struct cw_thread_ctx *own = bpf_map_lookup_elem(&thread_ctx, &key);
	struct obi_ctx_info *obi;

	if (own) {
		struct cw_trace_ctx *then = &own->now;

		if (at && own->since_ns > at) {
			if (own->before_since_ns > at) {
				__builtin_memset(c, 0, sizeof(*c));
				return;
			}
			then = &own->before;
		}
		if (then->source != CW_CTX_NONE) {
			__builtin_memcpy(c, then, sizeof(*c));
			return;
		}
	}
	obi = bpf_map_lookup_elem(&traces_ctx_v1, &key);
	if (obi) {
		__builtin_memcpy(c->trace_id, obi->trace_id, sizeof(c->trace_id));
		__builtin_memcpy(c->span_id, obi->span_id, sizeof(c->span_id));
		c->source = CW_CTX_OBI;
		c->trace_flags = 0;
		return;
	}
	__builtin_memset(c, 0, sizeof(*c));
}

/* The header of a record about thread (tgid, tid), which need not be the current task; its span
 * the one at boot time `ctx_at` (0: now). */
static __always_inline void fill_header_ids_at(struct cw_header *h, __u32 type, __u32 tgid,
					       __u32 tid, __u64 ctx_at)
{
	h->type = type;
	h->cpu = bpf_get_smp_processor_id();
	h->pid = tgid;
	h->tid = tid;
	fill_trace_ctx(&h->ctx, tgid, tid, ctx_at);
}

static __always_inline void fill_header_ids(struct cw_header *h, __u32 type, __u32 tgid, __u32 tid)
{
	fill_header_ids_at(h, type, tgid, tid, 0);
}

static __always_inline void fill_header_at(struct cw_header *h, __u32 type, struct task_struct *t,
					   __u64 ctx_at)
{
	fill_header_ids_at(h, type, t->tgid, t->pid, ctx_at);
}

static __always_inline void fill_header(struct cw_header *h, __u32 type, struct task_struct *t)
{
	fill_header_at(h, type, t, 0);
}

static __always_inline void fill_names(char *comm, char *process_name, struct task_struct *t)
{
	copy_comm(comm, t->comm);
	copy_comm(process_name, t->group_leader->comm);
}

#endif /* __CAUSEWAY_COMMON_BPF_H */
