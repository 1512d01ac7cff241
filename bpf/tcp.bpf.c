// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TCP retransmissions, attributed by socket → owner.
 *
 * tcp_retransmit_skb runs from the retransmit timer (softirq): `current` is whoever the timer
 * interrupted, so the owner must be known beforehand. inet_sock_set_state → SYN_SENT runs in the
 * context of the task calling connect(); that task (if traced) becomes the socket's owner, kept
 * until the socket closes. The filter, ring buffer, counters and trace-context maps are
 * offcpu.bpf.c's (reuse_fd).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "causeway.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define IPPROTO_TCP 6

struct sk_owner {
	__u64 cgroup_id;
	__u32 tgid;
	__u32 tid;
	char comm[CW_COMM_LEN];
	char process_name[CW_COMM_LEN];
};

/* key: struct sock address; LRU so sockets we never see close cannot leak */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sk_owner);
} sk_owners SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle__inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	__u64 key = (__u64)sk;
	struct sk_owner o = {};

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&sk_owners, &key);
		return 0;
	}
	if (newstate != TCP_SYN_SENT || !traced(t))
		return 0;
	o.cgroup_id = task_cgroup_id(t);
	o.tgid = BPF_CORE_READ(t, tgid);
	o.tid = BPF_CORE_READ(t, pid);
	fill_names(o.comm, o.process_name, t);
	bpf_map_update_elem(&sk_owners, &key, &o, BPF_ANY);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle__tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)sk;
	struct sk_owner *o = bpf_map_lookup_elem(&sk_owners, &key);
	struct cw_tcp_event *e;
	__u16 family;

	if (!o)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_TCP);
		return 0;
	}
	fill_header_ids(&e->hdr, CW_EV_TCP, o->tgid, o->tid);
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = o->cgroup_id;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	__builtin_memcpy(e->process_name, o->process_name, sizeof(e->process_name));
	count(CW_STAT_EMITTED + CW_EV_TCP);
	bpf_ringbuf_submit(e, rb_flags());
	return 0;
}

/* Dummy instance so the skeleton generator emits the Rust definition of the wire struct. */
struct cw_tcp_event _cw_tcp_event = {};
