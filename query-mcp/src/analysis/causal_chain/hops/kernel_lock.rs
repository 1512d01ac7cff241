//! A contended kernel lock: where it is taken, and the task that held it (the waker of the
//! waiting thread's D-state).

use causeway_proto::names::event::KERNEL_LOCK_WAIT;
use causeway_proto::names::event::OFF_CPU;

use super::context::ms;
use super::context::stack_frames;
use super::context::Ctx;
use super::context::Explained;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::report::SourceKind;
use crate::analysis::causal_chain::report::Task;
use crate::analysis::causal_chain::rows::StackCount;
use crate::analysis::causal_chain::rows::Waker;
use crate::analysis::text::data_text;
use crate::analysis::text::quote;
use crate::analysis::text::EvidenceLog;
use crate::error::QueryError;

/// The lock the target waited on most, and who released it.
pub async fn explain(ctx: &Ctx<'_>, ev: &mut EvidenceLog) -> Result<Explained, QueryError> {
    let (pid, w) = (ctx.target.pid, ctx.target.predicate.as_str());
    let top = &ctx.facts.kernel_locks[0];
    let raw = top.kernel_lock.as_deref().unwrap_or("");
    let lock = data_text(top.kernel_lock.as_deref().unwrap_or("?"));
    let kind = data_text(top.kernel_lock_kind.as_deref().unwrap_or("lock"));
    let tid = top.tid;
    // where it is taken: the waiters' kernel stack above the lock's slow path names a lock that
    // has no symbol (per-object locks; global ones without KALLSYMS_ALL)
    let mut frames = Vec::new();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        let stack_sql = |w: &str| {
            format!(
                "SELECT kernel_stack_id, count(*) AS n FROM kernel_events WHERE {w} \
                 AND event_name = '{KERNEL_LOCK_WAIT}' AND kernel_lock = '{raw}' \
                 AND kernel_stack_id IS NOT NULL GROUP BY kernel_stack_id ORDER BY n DESC LIMIT 1"
            )
        };
        ev.quote(
            "Where the target takes the contended kernel lock: the waiters' most common kernel stack",
            stack_sql(w),
        );
        if let Some(r) = ctx.win.other.rows::<StackCount>(stack_sql).await?.first() {
            frames = stack_frames(ctx.engine, r.kernel_stack_id).await?;
        }
    }
    let taken_in = lock_callers(&frames);
    let place = if taken_in.is_empty() {
        String::new()
    } else {
        format!(", taken in {}", taken_in.join(" ← "))
    };
    let mut out = Explained::default();
    if ctx.target.include_stacks {
        out.stack_trace.extend(frames.iter().cloned());
    }
    out.chain.push(Link::thread(
        0,
        Role::Target,
        (pid, tid, &top.comm),
        ms(top.total_ns),
        format!(
            "waited {:.1} ms in the kernel for a contended {kind} ({lock}{place}), {} waits, longest {:.1} ms",
            ms(top.total_ns),
            top.n,
            ms(top.longest_ns)
        ),
    ));
    // the holder released the lock: it is the waker of the thread's D-state waits
    let holder_sql = |w: &str| {
        format!(
            "SELECT waker_pid, waker_tid, waker_comm, count(*) AS n, sum(duration_ns) AS total_ns FROM kernel_events \
             WHERE {w} AND tid = {tid} AND event_name = '{OFF_CPU}' AND state = 'disk' AND waker_tid IS NOT NULL \
             AND waker_tid <> tid GROUP BY waker_pid, waker_tid, waker_comm ORDER BY total_ns DESC LIMIT 1"
        )
    };
    ev.quote(
        "Who ended the waiting thread's D-state waits (the kernel lock's holder releases and wakes it)",
        holder_sql(w),
    );
    let holder = ctx.win.sched.rows::<Waker>(holder_sql).await?;
    let what = if lock.starts_with("0x") {
        "a per-object lock (an inode's i_rwsem, an mm's mmap_lock, a per-device mutex)"
    } else {
        "a global kernel lock"
    };
    let klock_total = ms(ctx.verdict.top.total_ns);
    let task = holder.first().map(|h| {
        let link = Link::thread(
            1,
            Role::Holder,
            (h.waker_pid, h.waker_tid, &h.waker_comm),
            ms(h.total_ns),
            format!("released the {kind} and woke the target {} times", h.n),
        );
        let task = Task {
            pid: link.pid,
            tid: link.tid,
            comm: link.comm.clone(),
        };
        out.chain.push(link);
        task
    });
    out.action = match &task {
        Some(h) => format!(
            "pid {pid} spent {klock_total:.1} ms waiting inside the kernel for a contended {kind} ({lock}: {what}{place}), held by {} (pid {}, tid {}) doing slow work under it — typically a large write, truncate or fsync of the same file, or munmap/mmap of a large mapping in the same process. Move that work off the shared file or mapping (separate files, smaller writes, no truncate on the hot path); include_stacks shows both call paths",
            quote(&h.comm),
            h.pid,
            h.tid
        ),
        None => format!(
            "pid {pid} spent {klock_total:.1} ms waiting inside the kernel for a contended {kind} ({lock}: {what}{place}); its holder was not traced. Trace the whole host (no --pid) to name it"
        ),
    };
    out.source = Some(ContentionSource::KernelLock {
        kind: SourceKind::KernelLock,
        lock,
        lock_kind: kind,
        taken_in,
        holder: task,
    });
    Ok(out)
}

/// The functions that take a kernel lock, innermost first (up to three): a waiter's kernel
/// stack with the tracing and locking machinery above them left out (`bpf_*`, tracepoint
/// iterators, the mutex/rwsem/spinlock slow paths, the scheduler). Offsets are dropped.
fn lock_callers(frames: &[String]) -> Vec<String> {
    const MACHINERY: &[&str] = &[
        "bpf_",
        "__bpf",
        "__traceiter_",
        "trace_",
        "perf_trace",
        "__mutex",
        "mutex_",
        "rwsem_",
        "__rwsem",
        "down_",
        "__down",
        "up_",
        "_raw_",
        "__raw_",
        "do_raw_",
        "queued_",
        "native_queued",
        "__pv_queued",
        "pv_queued",
        "rt_mutex",
        "__rt_mutex",
        "rt_spin",
        "percpu_down",
        "__percpu_down",
        "percpu_rwsem",
        "schedule",
        "__schedule",
        "preempt_schedule",
        "io_schedule",
        "osq_",
        "lock_acquire",
    ];
    frames
        .iter()
        .map(|f| f.split(['+', ' ']).next().unwrap_or_default().to_string())
        .skip_while(|f| {
            f.is_empty() || f.starts_with("0x") || MACHINERY.iter().any(|m| f.starts_with(m))
        })
        .take(3)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::lock_callers;

    #[test]
    fn lock_callers_skip_the_lock_and_tracing_frames() {
        let frames: Vec<String> = [
            "bpf_trace_run2+0x8c",
            "__traceiter_contention_end+0x4a",
            "rwsem_down_write_slowpath+0x2f1",
            "down_write+0x5b",
            "ext4_buffered_write_iter+0x3d",
            "vfs_write+0x23a",
            "ksys_write+0x6b",
            "do_syscall_64+0x82",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            lock_callers(&frames),
            vec!["ext4_buffered_write_iter", "vfs_write", "ksys_write"]
        );
        assert!(lock_callers(&[]).is_empty());
    }
}
