// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Not a probe: dummy instances of the wire enums and of the header every record starts with, so
 * that the skeleton generated from this object carries them as Rust types (tags, counter slots,
 * limits and state classes are read from there in user space, never copied by hand). Never
 * loaded.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "causeway.h"

enum cw_limits _cw_limits = 0;
enum cw_event_type _cw_event_type = 0;
enum cw_offcpu_state _cw_offcpu_state = 0;
enum cw_proc_kind _cw_proc_kind = 0;
enum cw_stat _cw_stat = 0;
enum cw_ctx_source _cw_ctx_source = 0;
enum cw_cuda_func _cw_cuda_func = 0;
struct cw_header _cw_header = {};

char LICENSE[] SEC("license") = "Dual BSD/GPL";
