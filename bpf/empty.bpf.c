// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The baselines for BPF cost measurements: empty programs on the two scheduler hooks
 * offcpu.bpf.c runs on every context switch (sched_switch, sched_waking), and an empty
 * uprobe/uretprobe for the CUDA probes. `causeway-collector bench-bpf` runs the scheduler ones
 * beside the real probe and reports run_time_ns / run_cnt side by side; `bare-sched` holds them
 * attached alone: the floor of what any tracer on those hooks costs (tests/perf/bench_all.py P2a).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sched_switch")
int BPF_PROG(handle__sched_switch_empty)
{
	return 0;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(handle__sched_waking_empty)
{
	return 0;
}

/* A bare uprobe and uretprobe: the baseline of the CUDA probes' per-call cost
 * (`causeway-collector bare-uprobe`). Not auto-attached: they need a binary and a symbol. */
SEC("uprobe")
int handle__uprobe_empty(void *ctx)
{
	return 0;
}

SEC("uretprobe")
int handle__uretprobe_empty(void *ctx)
{
	return 0;
}
