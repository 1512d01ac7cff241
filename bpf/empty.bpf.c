// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The baselines for BPF cost measurements: an empty program on the same hook as offcpu.bpf.c,
 * and an empty uprobe/uretprobe for the CUDA probes.
 * `causeway-collector bench-bpf` runs both and reports run_time_ns / run_cnt side by side.
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
