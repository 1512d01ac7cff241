// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Block I/O latency per request, attributed to the submitting task.
 *
 * block_io_start runs in the context of the task that submits the request (fsync, O_DIRECT,
 * readahead …); block_rq_issue marks when the driver got it; block_rq_complete usually runs in
 * interrupt context, where `current` is whoever the interrupt landed on — so the submitter is
 * remembered per request, never read at completion. Requests of untraced tasks are not followed.
 * The filter, ring buffer, counters and trace-context maps are offcpu.bpf.c's (reuse_fd).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "causeway.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u64 min_block_ns = 0;

struct blk_start {
	__u64 ts;
	__u64 issue_ts;
	__u64 cgroup_id;
	__u64 sector;
	__u32 tgid;
	__u32 tid;
	__u32 dev;
	__u32 bytes;
	__u32 op;
	__u32 _pad0;
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
};

/* key: the request's address; LRU so requests that never complete (device removed) cannot leak */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct blk_start);
} blk_starts SEC(".maps");

static __always_inline __u32 rq_dev(struct request *rq)
{
	struct block_device *part = BPF_CORE_READ(rq, part);
	dev_t d;

	if (part)
		d = BPF_CORE_READ(part, bd_dev);
	else
		d = BPF_CORE_READ(rq, q, disk, part0, bd_dev);
	return (__u32)d;
}

SEC("tp_btf/block_io_start")
int BPF_PROG(handle__block_io_start, struct request *rq)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	struct blk_start st = {};
	__u64 key = (__u64)rq;

	if (!traced(t))
		return 0;
	st.ts = bpf_ktime_get_boot_ns();
	st.cgroup_id = task_cgroup_id(t);
	st.sector = BPF_CORE_READ(rq, __sector);
	st.tgid = BPF_CORE_READ(t, tgid);
	st.tid = BPF_CORE_READ(t, pid);
	st.dev = rq_dev(rq);
	st.bytes = BPF_CORE_READ(rq, __data_len);
	st.op = BPF_CORE_READ(rq, cmd_flags);
	fill_names(st.comm, st.process_name, t);
	bpf_map_update_elem(&blk_starts, &key, &st, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(handle__block_rq_issue, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct blk_start *st = bpf_map_lookup_elem(&blk_starts, &key);

	if (st && !st->issue_ts)
		st->issue_ts = bpf_ktime_get_boot_ns();
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(handle__block_rq_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	struct blk_start *p = bpf_map_lookup_elem(&blk_starts, &key);
	struct cw_block_event *e;
	struct blk_start st;
	__u64 now;

	if (!p)
		return 0;
	st = *p;
	bpf_map_delete_elem(&blk_starts, &key);
	now = bpf_ktime_get_boot_ns();
	if (now - st.ts < min_block_ns)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_BLOCK);
		return 0;
	}
	fill_header_ids(&e->hdr, CW_EV_BLOCK, st.tgid, st.tid);
	e->start_ns = st.ts;
	e->duration_ns = now - st.ts;
	e->cgroup_id = st.cgroup_id;
	e->queue_ns = st.issue_ts > st.ts ? st.issue_ts - st.ts : 0;
	e->sector = st.sector;
	e->dev = st.dev;
	e->bytes = st.bytes;
	e->op = st.op;
	e->error = (__s32)error;
	__builtin_memcpy(e->comm, st.comm, sizeof(e->comm));
	__builtin_memcpy(e->process_name, st.process_name, sizeof(e->process_name));
	count(CW_STAT_EMITTED + CW_EV_BLOCK);
	bpf_ringbuf_submit(e, rb_flags());
	return 0;
}

/* Dummy instance so the skeleton generator emits the Rust definition of the wire struct. */
struct cw_block_event _cw_block_event = {};
