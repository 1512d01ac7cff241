// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The baseline for BPF cost measurements: an empty program on the same hook as offcpu.bpf.c.
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
