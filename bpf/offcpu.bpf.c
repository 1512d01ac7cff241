// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Off-CPU intervals with state class and waker, run-queue delay, and process lifecycle.
 *
 * Per-thread state lives in task storage (not a per-CPU map: threads migrate while blocked), the
 * ring buffer is written without wakeups (rb_flags: one only past a fill level) and drained by
 * user space on a timer, and every record that does not fit is counted per CPU and per type in
 * `stats`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "causeway.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TASK_RUNNING 0x0000
#define TASK_INTERRUPTIBLE 0x0001
#define TASK_UNINTERRUPTIBLE 0x0002
#define TASK_NOLOAD 0x0400

/* Tunables, written by the collector through the skeleton's rodata before load. */
const volatile __u64 min_offcpu_ns = 1000000;
const volatile __u64 min_runq_ns = 100000;
const volatile __u64 stack_threshold_ns = 10000000; /* 0: no stacks */
const volatile bool capture_runq = true;
const volatile bool boot_clock = false; /* measure as kernels without sched_info must (tests) */
/* Tests only: every Nth switch-in of a traced task is ignored, as if the tracepoint had not
 * called the handler (see rebuild_switch_in); 0 in use, where the verifier drops the check. */
const volatile __u32 test_skip_switch_in = 0;

/* Per-thread scratch state. Times are on sched_now()'s clock. */
struct task_state {
	__u64 off_ts;  /* switch-out time, 0 while on CPU */
	__u64 runq_ts; /* became runnable, 0 when not waiting (only without kernel_runq()) */
	__u64 run_delay; /* the kernel's run-queue wait total at switch-out (with kernel_runq()) */
	__u32 state;   /* enum cw_offcpu_state of the current off-CPU interval */
	__u32 waker_pid;
	__u32 waker_tid;
	__s32 n_user; /* frames in user[] captured at switch-out, or negative errno */
	__u8 long_hint; /* the last voluntary off-CPU interval reached the stack threshold */
	__u8 n_voluntary; /* voluntary switch-outs, counted up to FULL_STACK_FIRST */
	__u8 futex_timed; /* the futex wait has a timeout */
	__u8 _pad0;
	__u32 futex_op; /* futex command the task blocked in, FUTEX_NONE when not in a futex wait */
	__u16 stack_period;    /* sampling period of user stacks now (USER_STACK_SAMPLE_*) */
	__u16 stack_countdown; /* voluntary switch-outs until the next sampled one */
	__u32 test_switch_ins; /* switch-ins seen (counted only with test_skip_switch_in) */
	__u64 futex_uaddr;
	char waker_comm[CW_COMM_LEN];
	__u64 user[CW_MAX_USTACK];
};

/* The user stack can only be read at switch-out, before anyone knows how long the wait will
 * be, and reading it is most of the per-switch cost whatever its depth. It is read where a long
 * wait is likely — a task's first FULL_STACK_FIRST voluntary switch-outs, any right after a long
 * wait — and otherwise on one switch-out in a period that starts at USER_STACK_SAMPLE_MIN and
 * doubles with each sample taken without a long wait since, up to USER_STACK_SAMPLE_MAX: a task
 * that only ever waits briefly (a pipe or futex ping-pong) soon pays almost nothing for it. A
 * long wait after a run of short ones keeps its kernel stack and usually lacks the user one;
 * the next long wait of the task has it. */
#define FULL_STACK_FIRST 8
#define USER_STACK_SAMPLE_MIN 16
#define USER_STACK_SAMPLE_MAX 1024

/* Clocks. Reading the boot clock (bpf_ktime_get_boot_ns) is a large share of each handler, and
 * the switch and waking handlers run on every context switch. The scheduler keeps
 * the times this needs already: `rq->clock` of the CPU, brought up to date by __schedule just
 * before the switch tracepoint, and each task's run-queue accounting (`sched_info`: when it was
 * last queued, its total wait so far — the kernel's own run-queue delay, the one delay
 * accounting and /proc/PID/schedstat report). Intervals are measured on those; the boot clock is
 * read only when a record is sent, to place its start.
 *
 * The CPU's rq is reached from a task on it (task -> its fair-class entity's cfs_rq -> rq: set
 * for every task, whatever its class, when it is placed on a CPU), not as the per-CPU variable
 * `runqueues`, whose address the kernel does not export without KALLSYMS_ALL. Kernels without
 * CONFIG_SCHED_INFO or CONFIG_FAIR_GROUP_SCHED (no `sched_info` in task_struct, no `rq` in
 * cfs_rq: resolved at load) keep the boot clock everywhere and stamp wakeups themselves; so does
 * `boot_clock`, which lets that path be tested here; the collector also sets it where the
 * scheduler's per-CPU clocks are not one clock (x86 without a constant, non-stop TSC): an
 * off-CPU interval may start on one CPU and end on another. */
static __always_inline bool kernel_runq(void)
{
	return !boot_clock && bpf_core_field_exists(struct task_struct, sched_info) &&
	       bpf_core_field_exists(struct cfs_rq, rq);
}

/* Now, on the clock task_state's times use; `t` is a task on this CPU. In the sched_switch
 * handler (elsewhere rq->clock may be stale: only the exit handler's rebuild, which accepts
 * that, reads it there). */
static __always_inline __u64 sched_now(struct task_struct *t)
{
	if (kernel_runq())
		return t->se.cfs_rq->rq->clock;
	return bpf_ktime_get_boot_ns();
}

/* Boot-clock start of an interval of `duration` ns that ends now. */
static __always_inline __u64 boot_start(__u64 duration)
{
	return bpf_ktime_get_boot_ns() - duration;
}

/* key: the task; value: its scratch state, freed by the kernel when the task goes. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} task_states SEC(".maps");

/* key: 0; value: per-CPU depth of interrupt-context work (hard IRQ handlers, softirqs, hrtimer
 * callbacks) the CPU is running. While it is > 0, `current` is whatever task the interrupt landed
 * on, not a waker: wakeups then come from a timer, a device or the network. (preempt_count would
 * say it directly, but its per-CPU address is not in kallsyms on kernels without KALLSYMS_ALL.) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} irq_depth SEC(".maps");

static __always_inline void irq_enter(void)
{
	__u32 zero = 0;
	__s64 *d = bpf_map_lookup_elem(&irq_depth, &zero);

	if (d)
		*d += 1;
}

static __always_inline void irq_leave(void)
{
	__u32 zero = 0;
	__s64 *d = bpf_map_lookup_elem(&irq_depth, &zero);

	/* an exit whose entry happened before we attached must not go negative */
	if (d && *d > 0)
		*d -= 1;
}

/* A context switch never happens inside an interrupt: whatever depth a CPU shows then is left over
 * (an entry seen while its exit was not yet attached) and is cleared, so one bad count cannot
 * hide wakers for long. */
static __always_inline void irq_reset(void)
{
	__u32 zero = 0;
	__s64 *d = bpf_map_lookup_elem(&irq_depth, &zero);

	if (d && *d)
		*d = 0;
}

static __always_inline bool in_interrupt(void)
{
	__u32 zero = 0;
	__s64 *d = bpf_map_lookup_elem(&irq_depth, &zero);

	return d && *d > 0;
}

/* Exit handlers come first: the skeleton attaches in this order, so no entry is ever counted
 * without its exit (an exit without an entry is clamped at zero). */
SEC("tp_btf/irq_handler_exit")
int BPF_PROG(handle__irq_handler_exit)
{
	irq_leave();
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(handle__softirq_exit)
{
	irq_leave();
	return 0;
}

SEC("tp_btf/hrtimer_expire_exit")
int BPF_PROG(handle__hrtimer_expire_exit)
{
	irq_leave();
	return 0;
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(handle__irq_handler_entry)
{
	irq_enter();
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(handle__softirq_entry)
{
	irq_enter();
	return 0;
}

SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(handle__hrtimer_expire_entry)
{
	irq_enter();
	return 0;
}

/* Futex waits, seen from the scheduler: a task that blocks inside futex(2) (a wait op) or
 * futex_waitv(2) has the syscall's number and arguments in its user registers, readable at
 * switch-out (bpf_task_pt_regs). The futex record is that off-CPU interval, emitted at switch-in
 * when it is long enough. Probing the syscalls instead (syscalls:sys_enter/exit_futex) puts every
 * task on the host on the syscall-tracing slow path for every syscall. */
#define FUTEX_NONE 0xffffffff
#define FUTEX_WAIT 0
#define FUTEX_LOCK_PI 6
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAIT_REQUEUE_PI 11
#define FUTEX_LOCK_PI2 13
#define FUTEX_WAITV_OP 64 /* not a futex(2) op: marks futex_waitv(2) */
#define FUTEX_CMD_MASK (~(128 | 256)) /* ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) */
#define ETIMEDOUT 110

struct futex_waitv_user {
	__u64 val;
	__u64 uaddr;
	__u32 flags;
	__u32 __reserved;
};

/* Records in `s` whether `t` (current, switching out voluntarily) is blocking in a futex wait. */
static __always_inline void futex_at_switch_out(struct task_struct *t, struct task_state *s)
{
	s->futex_op = FUTEX_NONE;
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
	long nr;

	if (!regs)
		return;
	nr = regs->orig_ax;
	if (nr == 202 /* __NR_futex */) {
		__u32 op = (__u32)regs->si & FUTEX_CMD_MASK;

		if (op != FUTEX_WAIT && op != FUTEX_WAIT_BITSET && op != FUTEX_LOCK_PI &&
		    op != FUTEX_LOCK_PI2 && op != FUTEX_WAIT_REQUEUE_PI)
			return;
		s->futex_op = op;
		s->futex_uaddr = regs->di;
		s->futex_timed = regs->r10 != 0; /* utime */
	} else if (nr == 449 /* __NR_futex_waitv */) {
		struct futex_waitv_user first = {};

		/* the first waiter's address stands for the lock's identity */
		bpf_probe_read_user(&first, sizeof(first), (void *)regs->di);
		s->futex_op = FUTEX_WAITV_OP;
		s->futex_uaddr = first.uaddr;
		s->futex_timed = regs->r10 != 0; /* timeout */
	}
#endif
}

/* `ctx_at`: the boot time whose span the record takes (0: now; see fill_trace_ctx). */
static __always_inline void emit_futex(struct task_struct *t, struct task_state *s, __u64 start,
				       __u64 duration, __u64 ctx_at)
{
	struct cw_futex_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_FUTEX);
		return;
	}
	fill_header_at(&e->hdr, CW_EV_FUTEX, t, ctx_at);
	e->start_ns = start;
	e->duration_ns = duration;
	e->cgroup_id = task_cgroup_id(t);
	e->uaddr = s->futex_uaddr;
	e->op = s->futex_op;
	/* not seen (no syscall exit probe): a timed wait ended by a timer rather than a task */
	e->ret = s->futex_timed && !s->waker_tid ? -ETIMEDOUT : 0;
	fill_names(e->comm, e->process_name, t);
	count(CW_STAT_EMITTED + CW_EV_FUTEX);
	bpf_ringbuf_submit(e, rb_flags());
}

static __always_inline __u32 state_class(bool preempt, unsigned int prev_state)
{
	if (preempt || (prev_state & 0xff) == TASK_RUNNING)
		return CW_STATE_PREEMPTED;
	if (prev_state & TASK_INTERRUPTIBLE)
		return CW_STATE_SLEEP;
	if (prev_state & TASK_UNINTERRUPTIBLE)
		return (prev_state & TASK_NOLOAD) ? CW_STATE_SLEEP : CW_STATE_DISK;
	return CW_STATE_OTHER;
}

static __always_inline void fill_off_cpu(struct cw_off_cpu_event *e, __u32 type,
					 struct task_struct *t, struct task_state *s, __u64 start,
					 __u64 duration, __u64 ctx_at)
{
	fill_header_at(&e->hdr, type, t, ctx_at);
	e->start_ns = start;
	e->duration_ns = duration;
	e->cgroup_id = task_cgroup_id(t);
	e->state = s->state;
	e->waker_pid = s->waker_pid;
	e->waker_tid = s->waker_tid;
	e->_pad0 = 0;
	fill_names(e->comm, e->process_name, t);
	__builtin_memcpy(e->waker_comm, s->waker_comm, CW_COMM_LEN);
}

/* `rebuilt`: the interval ended before the task ran again, unseen (rebuild_switch_in): its
 * kernel stack is no longer the blocking one, and its span is the one at `start`. */
static __always_inline void emit_off_cpu(struct task_struct *t, struct task_state *s, __u64 start,
					 __u64 delta, bool rebuilt)
{
	__u64 ctx_at = rebuilt ? start : 0;

	if (!rebuilt && stack_threshold_ns && delta >= stack_threshold_ns &&
	    s->state != CW_STATE_PREEMPTED) {
		struct cw_off_cpu_stack_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (!e) {
			count(CW_STAT_DROPPED + CW_EV_OFF_CPU_STACK);
			return;
		}
		fill_off_cpu(&e->ev, CW_EV_OFF_CPU_STACK, t, s, start, delta, 0);
		/* `t` is still parked in __schedule: its kernel stack is the blocking one. */
		long n = bpf_get_task_stack(t, e->kernel, sizeof(e->kernel), 0);
		e->n_kernel = n < 0 ? (__s32)n : (__s32)((__u64)n / 8);
		e->n_user = s->n_user;
		if (s->n_user > 0)
			__builtin_memcpy(e->user, s->user, sizeof(e->user));
		/* counted before submit: user space never sees a record the counters miss */
		count(CW_STAT_EMITTED + CW_EV_OFF_CPU_STACK);
		bpf_ringbuf_submit(e, rb_flags());
		return;
	}

	struct cw_off_cpu_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_OFF_CPU);
		return;
	}
	fill_off_cpu(e, CW_EV_OFF_CPU, t, s, start, delta, ctx_at);
	/* counted before submit: user space never sees a record the counters miss */
	count(CW_STAT_EMITTED + CW_EV_OFF_CPU);
	bpf_ringbuf_submit(e, rb_flags());
}

static __always_inline void emit_runq(struct task_struct *t, struct task_struct *prev, __u64 wait)
{
	struct cw_runq_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_RUNQ);
		return;
	}
	fill_header(&e->hdr, CW_EV_RUNQ, t);
	e->start_ns = boot_start(wait);
	e->duration_ns = wait;
	e->cgroup_id = task_cgroup_id(t);
	e->prev_pid = prev->tgid;
	e->prev_tid = prev->pid;
	e->prev_cgroup_id = task_cgroup_id(prev);
	fill_names(e->comm, e->process_name, t);
	copy_comm(e->prev_comm, prev->comm);
	/* counted before submit: user space never sees a record the counters miss */
	count(CW_STAT_EMITTED + CW_EV_RUNQ);
	bpf_ringbuf_submit(e, rb_flags());
}

/* At a voluntary switch-out (prev is current: the only moment its user stack is readable),
 * reads the user stack where a long wait is likely (see FULL_STACK_FIRST). */
static __always_inline void sample_user_stack(void *ctx, struct task_state *s)
{
	if (!stack_threshold_ns)
		return;
	if (s->long_hint) {
		s->stack_period = USER_STACK_SAMPLE_MIN;
		s->stack_countdown = USER_STACK_SAMPLE_MIN;
	} else if (s->n_voluntary < FULL_STACK_FIRST) {
		s->n_voluntary++;
		s->stack_period = USER_STACK_SAMPLE_MIN;
		s->stack_countdown = USER_STACK_SAMPLE_MIN;
	} else if (s->stack_countdown > 1) {
		s->stack_countdown--;
		return;
	} else {
		/* a sampled switch-out; the period grows until a long wait resets it */
		if (s->stack_period < USER_STACK_SAMPLE_MAX)
			s->stack_period *= 2;
		s->stack_countdown = s->stack_period;
	}
	long n = bpf_get_stack(ctx, s->user, sizeof(s->user), BPF_F_USER_STACK);
	s->n_user = n < 0 ? (__s32)n : (__s32)((__u64)n / 8);
}

/* An off-CPU interval whose end the handler never saw: the task is switching out (or exiting),
 * so it ran, but no call of this handler switched it in. On the 2-vCPU test VM (kernel 6.18) about one
 * switch-in of a sleeping thread in a few hundred never reaches the program (no recursion miss,
 * no ring-buffer loss; the switch-out was seen, the interval's record was never sent). The
 * kernel keeps when the task last arrived on a CPU (sched_info.last_arrival, set after the
 * switch tracepoint on the same rq clock as off_ts, and on this CPU: the task is on it now), so
 * the interval is rebuilt here: its start and length are exact, its state and waker those
 * recorded for it, its span the one the thread was in when it began (fill_trace_ctx), without
 * stacks (the task's kernel stack is no longer the blocking one); the run-queue wait before that
 * arrival is not sent. Counted either way; on the boot clock there is no arrival time to rebuild
 * from. */
static __always_inline void rebuild_switch_in(struct task_struct *t, struct task_state *s, __u64 now)
{
	if (!kernel_runq()) {
		count(CW_STAT_SWITCH_IN_LOST);
		return;
	}
	__u64 arrived = t->sched_info.last_arrival;

	if (arrived <= s->off_ts || arrived > now) {
		count(CW_STAT_SWITCH_IN_LOST);
		return;
	}
	__u64 delta = arrived - s->off_ts;

	count(CW_STAT_SWITCH_IN_REBUILT);
	if (s->state != CW_STATE_PREEMPTED)
		s->long_hint = stack_threshold_ns && delta >= stack_threshold_ns;
	if (delta < min_offcpu_ns) {
		count(CW_STAT_SHORT);
		return;
	}
	__u64 start = bpf_ktime_get_boot_ns() - (now - s->off_ts);

	emit_off_cpu(t, s, start, delta, true);
	if (s->futex_op != FUTEX_NONE)
		emit_futex(t, s, start, delta, start);
}

/* tp_btf/sched_switch: void (bool preempt, struct task_struct *prev, struct task_struct *next,
 *                            unsigned int prev_state)   -- prev_state since 5.18 */
SEC("tp_btf/sched_switch")
int BPF_PROG(handle__sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u64 now = sched_now(next), wait = 0;
	bool queued_wait = false;
	struct task_state *s;

	if (!now)
		return 0; /* no rq reachable from `next` (never seen): nothing to measure against */
	irq_reset();
	if (traced(prev)) {
		s = bpf_task_storage_get(&task_states, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (s) {
			if (s->off_ts)
				rebuild_switch_in(prev, s, now);
			s->off_ts = now;
			s->state = state_class(preempt, prev_state);
			s->waker_pid = 0;
			s->waker_tid = 0;
			s->n_user = 0;
			if (kernel_runq())
				s->run_delay = prev->sched_info.run_delay;
			if (s->state == CW_STATE_PREEMPTED) {
				/* involuntary: it goes straight back to the run queue */
				if (!kernel_runq())
					s->runq_ts = now;
				s->futex_op = FUTEX_NONE;
			} else {
				futex_at_switch_out(prev, s);
				sample_user_stack(ctx, s);
			}
		}
	}

	if (!traced(next))
		return 0;
	s = bpf_task_storage_get(&task_states, next, 0, 0);
	if (!s)
		return 0;
	if (test_skip_switch_in && ++s->test_switch_ins % test_skip_switch_in == 0)
		return 0;
	if (s->off_ts) {
		__u64 delta = now - s->off_ts;

		if (s->state != CW_STATE_PREEMPTED)
			s->long_hint = stack_threshold_ns && delta >= stack_threshold_ns;
		if (delta >= min_offcpu_ns) {
			__u64 start = boot_start(delta);

			emit_off_cpu(next, s, start, delta, false);
			if (s->futex_op != FUTEX_NONE)
				emit_futex(next, s, start, delta, 0);
		} else {
			count(CW_STAT_SHORT);
		}
		s->off_ts = 0;
	}
	if (kernel_runq()) {
		/* sched_info_arrive() has not run yet: last_queued is this wait's enqueue on this
		 * CPU's clock, and run_delay holds what it waited in queues it left (migrations).
		 * When a wakeup preempts the running task the kernel skips the next clock update
		 * (rq_clock_skip_update): such a wait reads 0, as the kernel's accounting has it. */
		__u64 queued = next->sched_info.last_queued;

		wait = next->sched_info.run_delay - s->run_delay;
		if (queued && now > queued)
			wait += now - queued;
		queued_wait = queued || wait;
		s->run_delay = next->sched_info.run_delay;
	} else if (s->runq_ts) {
		wait = now - s->runq_ts;
		queued_wait = true;
		s->runq_ts = 0;
	}
	if (queued_wait) {
		if (capture_runq && wait >= min_runq_ns)
			emit_runq(next, prev, wait);
		else
			count(CW_STAT_SHORT_RQ);
	}
	return 0;
}

/* tp_btf/sched_waking: void (struct task_struct *p) -- runs in the waker's context. */
SEC("tp_btf/sched_waking")
int BPF_PROG(handle__sched_waking, struct task_struct *p)
{
	struct task_struct *waker = (struct task_struct *)bpf_get_current_task_btf();
	struct task_state *s;

	if (!traced(p))
		return 0;
	s = bpf_task_storage_get(&task_states, p, 0, 0);
	if (!s)
		return 0;
	if (!kernel_runq())
		s->runq_ts = bpf_ktime_get_boot_ns();
	if (in_interrupt()) {
		/* woken by a timer, a device or the network: no task is the waker */
		s->waker_pid = 0;
		s->waker_tid = 0;
		return 0;
	}
	s->waker_pid = waker->tgid;
	s->waker_tid = waker->pid;
	copy_comm(s->waker_comm, waker->comm);
	return 0;
}

/* tp_btf/sched_wakeup_new: void (struct task_struct *p) -- a new task's first enqueue. */
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(handle__sched_wakeup_new, struct task_struct *p)
{
	struct task_state *s;

	if (!traced(p))
		return 0;
	/* with kernel_runq() the new state's zero run_delay matches the new task's */
	s = bpf_task_storage_get(&task_states, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s && !kernel_runq())
		s->runq_ts = bpf_ktime_get_boot_ns();
	return 0;
}

static __always_inline void emit_proc(struct task_struct *t, __u32 kind, __u32 ppid,
				      __s32 exit_code, const char *path)
{
	struct cw_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(CW_STAT_DROPPED + CW_EV_PROC);
		return;
	}
	fill_header(&e->hdr, CW_EV_PROC, t);
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = task_cgroup_id(t);
	e->child_tid_addr = (__u64)BPF_CORE_READ(t, clear_child_tid);
	e->kind = kind;
	e->ppid = ppid;
	e->exit_code = exit_code;
	e->_pad0 = 0;
	fill_names(e->comm, e->process_name, t);
	e->path[0] = 0;
	if (path)
		bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	/* counted before submit: user space never sees a record the counters miss */
	count(CW_STAT_EMITTED + CW_EV_PROC);
	bpf_ringbuf_submit(e, rb_flags());
}

/* tp_btf/sched_process_exec: void (struct task_struct *p, pid_t old_pid, struct linux_binprm *) */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle__sched_process_exec, struct task_struct *p, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	if (!traced(p))
		return 0;
	emit_proc(p, CW_PROC_EXEC, old_pid, 0, BPF_CORE_READ(bprm, filename));
	return 0;
}

/* tp_btf/sched_process_fork: void (struct task_struct *parent, struct task_struct *child) */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle__sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	bool new_process = child_tgid != parent_tgid;

	if (new_process && filter_tgid && follow_children &&
	    bpf_map_lookup_elem(&tgid_filter, &parent_tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&tgid_filter, &child_tgid, &one, BPF_ANY);
	}
	if (!traced(child))
		return 0;
	emit_proc(child, new_process ? CW_PROC_FORK : CW_PROC_THREAD_START, parent_tgid, 0, NULL);
	return 0;
}

/* tp_btf/sched_process_exit: void (struct task_struct *p, bool group_dead) -- 6.x: 2 args */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle__sched_process_exit, struct task_struct *p)
{
	struct task_state *s;
	__u64 key;
	__u32 tgid;
	bool last;

	if (!traced(p))
		return 0;
	/* an interval whose switch-in was missed is rebuilt here, not at the final switch-out: the
	 * leader's exit takes its process out of the filter before that. `p` is current, on this
	 * CPU, but rq->clock may be a tick old outside __schedule: the rebuilt start may be late by
	 * that much (its length comes from the kernel's arrival time and is exact). */
	s = bpf_task_storage_get(&task_states, p, 0, 0);
	if (s && s->off_ts) {
		rebuild_switch_in(p, s, sched_now(p));
		s->off_ts = 0;
	}
	tgid = BPF_CORE_READ(p, tgid);
	/* group_dead is not in older prototypes: the leader's exit stands for the process */
	last = BPF_CORE_READ(p, pid) == tgid;
	emit_proc(p, last ? CW_PROC_EXIT : CW_PROC_THREAD_EXIT, 0, BPF_CORE_READ(p, exit_code),
		  NULL);
	key = ((__u64)tgid << 32) | BPF_CORE_READ(p, pid);
	bpf_map_delete_elem(&thread_ctx, &key); /* a recycled tid must not inherit the span */
	if (last && filter_tgid && follow_children)
		bpf_map_delete_elem(&tgid_filter, &tgid);
	return 0;
}

/* Dummy instances so the skeleton generator emits Rust definitions of the wire structs. */
struct cw_off_cpu_event _cw_off_cpu_event = {};
struct cw_off_cpu_stack_event _cw_off_cpu_stack_event = {};
struct cw_runq_event _cw_runq_event = {};
struct cw_proc_event _cw_proc_event = {};
struct cw_futex_event _cw_futex_event = {};
