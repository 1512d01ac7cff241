// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Trace context: a uprobe on causeway_ctx_publish (context/c/causeway_ctx.c) keeps each thread's
 * current span (and the one before it) in `thread_ctx`, which fill_header() copies into every
 * record of that thread.
 *
 * The writer passes the context in registers (trace id as two big-endian halves, span id, flags
 * with bit 8 = valid), so the probe reads no user memory. The collector attaches this program to
 * every copy of the writer it discovers (shared library or statically linked binary), for all
 * processes, and shares offcpu.bpf.c's maps (reuse_fd).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "causeway.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define CTX_VALID 0x100

SEC("uprobe")
int BPF_UPROBE(handle__ctx_publish, __u64 trace_hi, __u64 trace_lo, __u64 span, __u64 flags)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	__u64 key = bpf_get_current_pid_tgid();
	struct cw_thread_ctx next = {}, *cur;

	if (!traced(t))
		return 0;
	count(CW_STAT_CTX_PUBLISH);
	cur = bpf_map_lookup_elem(&thread_ctx, &key);
	if (cur) {
		next.before = cur->now;
		next.before_since_ns = cur->since_ns;
	}
	next.since_ns = bpf_ktime_get_boot_ns();
	/* a detach leaves `now` empty (CW_CTX_NONE): the entry keeps the span it ended */
	if (flags & CTX_VALID) {
		/* big-endian halves → the id's bytes in order */
		*(__u64 *)&next.now.trace_id[0] = __builtin_bswap64(trace_hi);
		*(__u64 *)&next.now.trace_id[8] = __builtin_bswap64(trace_lo);
		*(__u64 *)&next.now.span_id[0] = __builtin_bswap64(span);
		next.now.source = CW_CTX_UPROBE;
		next.now.trace_flags = (__u8)flags;
	}
	bpf_map_update_elem(&thread_ctx, &key, &next, BPF_ANY);
	return 0;
}
