// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * CUDA runtime (libcudart), driver (libcuda) and NCCL calls, through uprobes and uretprobes.
 *
 * One entry and one return program serve every probed function: the collector attaches them
 * with uprobe_multi links (one per file and kind: a link's detach waits for the kernel's RCU
 * grace periods once, not once per function), with each function's id (enum cw_cuda_func) as
 * its cookie.
 * The entry remembers start time and the arguments worth keeping (stream, bytes, grid) per
 * thread and layer; the return computes the duration, adds it to a per-CPU log2 histogram per
 * (process, function), and sends a record for every call except fast launches — launches come
 * at 10^5/s, so they are counted in the histograms and sent only when slow (slow_launch_ns).
 *
 * Arguments are read per the x86-64 SysV ABI: six integer registers, then the stack above the
 * return address; a dim3 (12 bytes) travels in two registers (x | y << 32, then z).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "causeway.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Launches shorter than this are only counted in the histograms. */
const volatile __u64 slow_launch_ns = 100000;

/* Set by the collector (memory-mapped .bss): launch probes count only while launch_on is set,
 * which makes the duty cycle exact although detaching a link takes the kernel a while; cuda_off
 * stops everything at once before the final drain. */
__u32 launch_on = 0;
__u32 cuda_off = 0;

/* Calls in flight: one per thread and layer (runtime, driver, NCCL), since a runtime call runs
 * the driver's inside it. Task storage: no hashing and no global lock on the launch path, and
 * it goes away with the thread; a call whose return was never seen (probe detached mid-call) is
 * overwritten by the thread's next call and counted. */
struct call {
	__u64 start_ns;
	__u64 stream;
	__u64 bytes;
	__u64 kernel_addr;
	__u32 grid[3];
	__u32 block[3];
	__u32 func;
	__u32 _pad;
};
#define CW_CUDA_LAYERS 3
struct inflight {
	struct call layer[CW_CUDA_LAYERS];
};
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} cuda_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct cw_cuda_hist_key);
	__type(value, struct cw_cuda_hist);
} cuda_hists SEC(".maps");

/* Scratch for a zeroed histogram (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cw_cuda_hist);
} hist_zero SEC(".maps");

static __always_inline __u32 layer_of(__u32 func)
{
	if (func >= CW_NCCL_ALL_REDUCE)
		return 2;
	if (func >= CW_CU_LAUNCH_KERNEL)
		return 1;
	return 0;
}

static __always_inline bool is_launch(__u32 func)
{
	return func == CW_CUDA_LAUNCH_KERNEL || func == CW_CUDA_LAUNCH_KERNEL_PTSZ ||
	       func == CW_CUDA_GRAPH_LAUNCH || func == CW_CU_LAUNCH_KERNEL ||
	       func == CW_CU_LAUNCH_KERNEL_PTSZ;
}

/* The n-th stack argument (0 = the 7th integer argument). */
static __always_inline __u64 stack_arg(struct pt_regs *ctx, int n)
{
	__u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (void *)(PT_REGS_SP(ctx) + 8 + 8 * n));
	return v;
}

/* Bytes of an NCCL element type (ncclDataType_t). */
static __always_inline __u64 nccl_size(__u64 dtype)
{
	switch (dtype) {
	case 2: case 3: case 7: return 4;     /* int32, uint32, float32 */
	case 4: case 5: case 8: return 8;     /* int64, uint64, float64 */
	case 6: case 9: return 2;             /* float16, bfloat16 */
	default: return 1;                    /* int8, uint8, fp8 */
	}
}

static __always_inline void dim3_from(__u32 *d, __u64 xy, __u64 z)
{
	d[0] = (__u32)xy;
	d[1] = (__u32)(xy >> 32);
	d[2] = (__u32)z;
}

SEC("uprobe.multi")
int handle__cuda_enter(struct pt_regs *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	__u32 func = (__u32)bpf_get_attach_cookie(ctx);
	__u32 layer = layer_of(func);
	struct call c = { .func = func };
	struct inflight *f;

	if (cuda_off || (is_launch(func) && !launch_on) || !traced(t) || layer >= CW_CUDA_LAYERS)
		return 0;
	switch (func) {
	case CW_CUDA_LAUNCH_KERNEL:
	case CW_CUDA_LAUNCH_KERNEL_PTSZ:
		c.kernel_addr = PT_REGS_PARM1(ctx);
		dim3_from(c.grid, PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));
		dim3_from(c.block, PT_REGS_PARM4(ctx), PT_REGS_PARM5(ctx));
		c.stream = stack_arg(ctx, 1);
		break;
	case CW_CUDA_GRAPH_LAUNCH:
		c.stream = PT_REGS_PARM2(ctx);
		break;
	case CW_CUDA_MEMCPY:
	case CW_CU_MEMCPY:
	case CW_CU_MEMCPY_HTOD:
	case CW_CU_MEMCPY_DTOH:
	case CW_CU_MEMCPY_DTOD:
		c.bytes = PT_REGS_PARM3(ctx);
		break;
	case CW_CUDA_MEMCPY_ASYNC:
		c.bytes = PT_REGS_PARM3(ctx);
		c.stream = PT_REGS_PARM5(ctx);
		break;
	case CW_CU_MEMCPY_ASYNC:
	case CW_CU_MEMCPY_HTOD_ASYNC:
	case CW_CU_MEMCPY_DTOH_ASYNC:
		c.bytes = PT_REGS_PARM3(ctx);
		c.stream = PT_REGS_PARM4(ctx);
		break;
	case CW_CUDA_STREAM_SYNC:
	case CW_CU_STREAM_SYNC:
		c.stream = PT_REGS_PARM1(ctx);
		break;
	case CW_CUDA_MALLOC:
	case CW_CU_MEM_ALLOC:
		c.bytes = PT_REGS_PARM2(ctx);
		break;
	case CW_CU_LAUNCH_KERNEL:
	case CW_CU_LAUNCH_KERNEL_PTSZ:
		c.grid[0] = PT_REGS_PARM2(ctx);
		c.grid[1] = PT_REGS_PARM3(ctx);
		c.grid[2] = PT_REGS_PARM4(ctx);
		c.block[0] = PT_REGS_PARM5(ctx);
		c.block[1] = PT_REGS_PARM6(ctx);
		c.block[2] = stack_arg(ctx, 0);
		c.stream = stack_arg(ctx, 2);
		break;
	case CW_NCCL_ALL_REDUCE:
	case CW_NCCL_REDUCE_SCATTER:
	case CW_NCCL_BROADCAST:
		c.bytes = PT_REGS_PARM3(ctx) * nccl_size(PT_REGS_PARM4(ctx));
		c.stream = stack_arg(ctx, 0);
		break;
	case CW_NCCL_ALL_GATHER:
		c.bytes = PT_REGS_PARM3(ctx) * nccl_size(PT_REGS_PARM4(ctx));
		c.stream = PT_REGS_PARM6(ctx);
		break;
	case CW_NCCL_SEND:
	case CW_NCCL_RECV:
		c.bytes = PT_REGS_PARM2(ctx) * nccl_size(PT_REGS_PARM3(ctx));
		c.stream = PT_REGS_PARM6(ctx);
		break;
	default:
		break;
	}
	f = bpf_task_storage_get(&cuda_calls, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!f)
		return 0;
	if (f->layer[layer].func)
		count(CW_STAT_CUDA_UNMATCHED); /* the previous call's return was never seen */
	c.start_ns = bpf_ktime_get_boot_ns();
	f->layer[layer] = c;
	return 0;
}

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0;
	__u32 shift;

	shift = (v > 0xFFFFFFFF) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r < CW_CUDA_BUCKETS ? r : CW_CUDA_BUCKETS - 1;
}

static __always_inline void add_to_histogram(__u32 tgid, __u32 func, __u64 dur)
{
	struct cw_cuda_hist_key hk = { .tgid = tgid, .func = func };
	struct cw_cuda_hist *h = bpf_map_lookup_elem(&cuda_hists, &hk);
	__u32 zero = 0;
	__u32 b;

	if (!h) {
		struct cw_cuda_hist *z = bpf_map_lookup_elem(&hist_zero, &zero);
		if (!z)
			return;
		bpf_map_update_elem(&cuda_hists, &hk, z, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&cuda_hists, &hk);
		if (!h)
			return;
	}
	h->count += 1;
	h->sum_ns += dur;
	b = log2_bucket(dur);
	if (b < CW_CUDA_BUCKETS)
		h->buckets[b] += 1;
}

SEC("uretprobe.multi")
int handle__cuda_return(struct pt_regs *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	__u32 func = (__u32)bpf_get_attach_cookie(ctx);
	__u32 layer = layer_of(func);
	__u64 id = bpf_get_current_pid_tgid();
	struct cw_cuda_event *e;
	struct inflight *f;
	struct call *c = NULL;
	__u64 now, dur;

	if (layer >= CW_CUDA_LAYERS)
		return 0;
	f = bpf_task_storage_get(&cuda_calls, t, 0, 0);
	if (f)
		c = &f->layer[layer];
	if (!c || c->func != func) {
		/* a gated call (duty cycle off, or stopping) has no entry by design */
		if (!cuda_off && (!is_launch(func) || launch_on) && traced(t))
			count(CW_STAT_CUDA_ORPHAN_RET);
		return 0;
	}
	now = bpf_ktime_get_boot_ns();
	dur = now - c->start_ns;
	add_to_histogram(id >> 32, func, dur);
	if (is_launch(func) && dur < slow_launch_ns) {
		count(CW_STAT_CUDA_FAST);
		c->func = 0;
		return 0;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_CUDA);
		c->func = 0;
		return 0;
	}
	fill_header(&e->hdr, CW_EV_CUDA, t);
	e->start_ns = c->start_ns;
	e->duration_ns = dur;
	e->cgroup_id = task_cgroup_id(t);
	e->stream = c->stream;
	e->bytes = c->bytes;
	e->kernel_addr = c->kernel_addr;
	__builtin_memcpy(e->grid, c->grid, sizeof(e->grid));
	__builtin_memcpy(e->block, c->block, sizeof(e->block));
	e->func = func;
	e->ret = (__s32)PT_REGS_RC(ctx);
	fill_names(e->comm, e->process_name, t);
	bpf_ringbuf_submit(e, rb_flags());
	count(CW_STAT_EMITTED + CW_EV_CUDA);
	c->func = 0;
	return 0;
}

/* Types for the skeleton generator. */
struct cw_cuda_event _cw_cuda_event = {};
struct cw_cuda_hist _cw_cuda_hist = {};
struct cw_cuda_hist_key _cw_cuda_hist_key = {};
