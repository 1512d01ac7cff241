//! The questions asked of the target's window before anything is concluded: per thread, the
//! time lost to each state; who ended its sleeps; who had the CPU; its kernel lock, GPU,
//! network and throttling records. Asked at once, of the two windows where they hold the rows.

use causeway_proto::names::event::BLOCK_IO;
use causeway_proto::names::event::CPU_THROTTLE;
use causeway_proto::names::event::CUDA_MEMCPY;
use causeway_proto::names::event::CUDA_SYNC;
use causeway_proto::names::event::FUTEX_WAIT;
use causeway_proto::names::event::KERNEL_LOCK_WAIT;
use causeway_proto::names::event::OFF_CPU;
use causeway_proto::names::event::PROCESS_EXIT;
use causeway_proto::names::event::RUNQ;
use causeway_proto::names::event::TCP_RETRANSMIT;
use causeway_proto::names::event::THREAD_EXIT;

use super::rows::*;
use super::target::Target;
use super::windows::Windows;
use crate::analysis::text::EvidenceLog;
use crate::error::QueryError;

/// Calls in which the host waits for the GPU: sync calls and synchronous copies (columns of
/// the table aliased `alias`, e.g. `g.`, or none).
pub fn gpu_wait(alias: &str) -> String {
    format!(
        "({alias}event_name = '{CUDA_SYNC}' OR ({alias}event_name = '{CUDA_MEMCPY}' \
         AND {alias}cuda_function NOT LIKE '%Async%'))"
    )
}

/// How long before its waker's exit record a join's wait may have ended: on kernels that fire
/// the exit tracepoint after exit_mm, the joiner is woken before the record is written.
const JOIN_SLACK_NS: i64 = 5_000_000;

/// What the window questions found.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Per thread and state: time lost (off-CPU states, and `runq`), most first.
    pub per_thread: Vec<ThreadState>,
    /// Tasks that had the CPU while the target waited in the run queue, most first.
    pub cpu_holders: Vec<CpuHolder>,
    /// Waits for contended kernel locks by thread and lock, most first.
    pub kernel_locks: Vec<KernelLockWait>,
    /// Retransmits by thread and peer, most first.
    pub retransmits: Vec<Retransmit>,
    /// The cgroup's CFS throttling counters in the window.
    pub throttle: Option<Throttle>,
    /// Waits for the GPU by thread and function, most first.
    pub gpu_waits: Vec<GpuWait>,
    /// Threads that ended the target's sleeps (joins and GPU waits left out), most first.
    pub wakers: Vec<Waker>,
    /// Sleeps without a waking task during which the same thread's socket retransmitted.
    pub network: Total,
    /// Block requests the target submitted (asked only when it had kernel lock waits).
    pub own_block_requests: i64,
}

/// A total and its longest part, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Total {
    /// Sum, ns.
    pub total_ns: i64,
    /// Longest, ns.
    pub longest_ns: i64,
}

/// What the wakers question left out, as SQL the later questions about wakers add.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    /// Waits that were joins (pthread_join of an exiting thread).
    pub not_joins: String,
    /// Sleeps inside GPU waits.
    pub not_gpu: String,
}

fn per_thread_sql(w: &str) -> String {
    // grouped by thread and state alone: the state tells the kind (run-queue rows have none),
    // and a thread's name is a label, not part of the key (string keys made it ~1/4 slower); a
    // thread renamed within the window is one row, under the greater name
    format!(
        "SELECT tid, max(comm) AS comm, coalesce(state, 'runq') AS state, count(*) AS n, \
         sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns FROM kernel_events \
         WHERE {w} AND event_name IN ('{OFF_CPU}', '{RUNQ}') \
         GROUP BY tid, state ORDER BY total_ns DESC"
    )
}

fn exits_sql(w: &str) -> String {
    format!(
        "SELECT tid, time_unix_nano, futex_uaddr FROM kernel_events WHERE {w} \
         AND event_name IN ('{THREAD_EXIT}', '{PROCESS_EXIT}') AND futex_uaddr IS NOT NULL \
         ORDER BY time_unix_nano LIMIT 64"
    )
}

fn gpu_sql(w: &str) -> String {
    format!(
        "SELECT tid, comm, cuda_function, count(*) AS n, sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns, \
         max(cuda_stream) AS stream FROM kernel_events WHERE {w} AND {} \
         GROUP BY tid, comm, cuda_function ORDER BY total_ns DESC LIMIT 10",
        gpu_wait("")
    )
}

fn cpu_sql(w: &str, pid: i64) -> String {
    format!(
        "SELECT prev_pid, prev_tid, prev_comm, count(*) AS n, sum(duration_ns) AS total_ns, \
         max(duration_ns) AS longest_ns, max(prev_cgroup_id) AS prev_cgroup_id, \
         max(prev_container_id) AS prev_container_id FROM kernel_events WHERE {w} AND event_name = '{RUNQ}' \
         AND prev_pid <> {pid} GROUP BY prev_pid, prev_tid, prev_comm ORDER BY total_ns DESC LIMIT 5"
    )
}

fn kernel_lock_sql(w: &str) -> String {
    format!(
        "SELECT tid, comm, kernel_lock, kernel_lock_kind, count(*) AS n, sum(duration_ns) AS total_ns, \
         max(duration_ns) AS longest_ns FROM kernel_events WHERE {w} AND event_name = '{KERNEL_LOCK_WAIT}' \
         GROUP BY tid, comm, kernel_lock, kernel_lock_kind ORDER BY total_ns DESC LIMIT 5"
    )
}

fn retransmits_sql(w: &str) -> String {
    format!(
        "SELECT tid, daddr, saddr, count(*) AS n, min(time_unix_nano) AS first_ns FROM kernel_events \
         WHERE {w} AND event_name = '{TCP_RETRANSMIT}' GROUP BY tid, daddr, saddr ORDER BY n DESC LIMIT 10"
    )
}

fn throttle_sql(w: &str) -> String {
    format!(
        "SELECT sum(duration_ns) AS throttled_ns, sum(cpu_throttled_periods) AS throttled_periods, \
         sum(cpu_periods) AS periods, max(cpu_max) AS cpu_max, max(path) AS cgroup_path, \
         max(cgroup_id) AS cgroup_id FROM kernel_events WHERE {w} AND event_name = '{CPU_THROTTLE}'"
    )
}

/// The wakers question, leaving out `x`'s joins and GPU waits.
pub fn wakers_sql(w: &str, x: &Exclusions) -> String {
    format!(
        "SELECT waker_pid, waker_tid, waker_comm, count(*) AS n, sum(duration_ns) AS total_ns, \
         max(duration_ns) AS longest_ns FROM kernel_events k WHERE {w} AND event_name = '{OFF_CPU}' \
         AND state = 'sleep' AND waker_tid IS NOT NULL AND waker_pid <> 0 AND waker_tid <> tid{}{} \
         GROUP BY waker_pid, waker_tid, waker_comm ORDER BY total_ns DESC LIMIT 5",
        x.not_joins, x.not_gpu
    )
}

fn own_io_sql(w: &str) -> String {
    format!("SELECT count(*) AS n FROM kernel_events WHERE {w} AND event_name = '{BLOCK_IO}'")
}

/// The wakers question's exclusions for waits that were joins: a wait on an exiting thread's
/// clear_child_tid futex that was under way when the thread exited (it began before the exit and
/// had not ended `JOIN_SLACK_NS` before it). The wait can end well after the exit record: the
/// exiting thread wakes its joiner later on its way out (exit_mm) and can be preempted in
/// between on a busy CPU, and the joiner then runs only when its CPU lets it — so the wait is
/// matched by spanning the exit, not by ending near it.
pub fn join_exclusions(exits: &[Exit], joiners: &[Joiner]) -> String {
    let mut not_joins = String::new();
    for x in exits {
        let (t, at, addr) = (x.tid, x.time_unix_nano, x.futex_uaddr);
        for j in joiners
            .iter()
            .filter(|j| j.futex_uaddr == addr && j.start_ns <= at && j.end_ns >= at - JOIN_SLACK_NS)
        {
            not_joins.push_str(&format!(
                " AND NOT (tid = {} AND waker_tid = {t} AND time_unix_nano <= {at} \
                 AND time_unix_nano + duration_ns >= {})",
                j.tid,
                at - JOIN_SLACK_NS
            ));
        }
    }
    not_joins
}

/// Network waits: sleeps with no waking task (the network stack woke them from softirq) during
/// which the same thread's socket retransmitted.
pub fn network_waits(retransmits: &[Instant], sleeps: &[Interval]) -> Total {
    let mut t = Total::default();
    for s in sleeps {
        let (st, en) = (s.time_unix_nano, s.time_unix_nano + s.duration_ns);
        if retransmits
            .iter()
            .any(|r| r.tid == s.tid && (st..=en).contains(&r.time_unix_nano))
        {
            t.total_ns += en - st;
            t.longest_ns = t.longest_ns.max(en - st);
        }
    }
    t
}

/// Asks the window questions (quoting each in `ev` as the store is asked).
pub async fn gather(
    win: &Windows<'_>,
    target: &Target,
    ev: &mut EvidenceLog,
) -> Result<(Facts, Exclusions), QueryError> {
    let (pid, w) = (target.pid, target.predicate.as_str());
    let (per_thread, cpu_holders, kernel_locks, retransmits, throttle, wakers) = futures::try_join!(
        win.sched.rows::<ThreadState>(per_thread_sql),
        win.sched.rows::<CpuHolder>(|w| cpu_sql(w, pid)),
        win.other.rows::<KernelLockWait>(kernel_lock_sql),
        win.other.rows::<Retransmit>(retransmits_sql),
        win.other.rows::<Throttle>(throttle_sql),
        wakers(win, target),
    )?;
    let (gpu_waits, exclusions, wakers) = wakers;
    ev.quote(
        "Per thread of the target: off-CPU time by state, and run-queue time, in the window",
        per_thread_sql(w),
    );
    ev.quote(
        "Threads of the target that exited in the window, with the futex their joiners wait on",
        exits_sql(w),
    );
    ev.quote(
        "The target's waits for the GPU (CUDA sync calls and synchronous copies), by thread and function",
        gpu_sql(w),
    );
    ev.quote(
        "Threads that ended the target's sleeps (lock holders, producers), by time they ended (sleeps inside GPU waits left out)",
        wakers_sql(w, &exclusions),
    );
    ev.quote(
        "Tasks that held the CPU while the target waited in the run queue",
        cpu_sql(w, pid),
    );
    ev.quote(
        "The target's waits for contended kernel locks, by thread and lock",
        kernel_lock_sql(w),
    );
    let network = if retransmits.is_empty() {
        Total::default()
    } else {
        network(win, &retransmits).await?
    };
    // (D-state without block requests of its own but with kernel lock waits: see classify)
    let own_block_requests = if kernel_locks.is_empty() {
        0
    } else {
        win.other
            .rows::<Count>(own_io_sql)
            .await?
            .first()
            .map_or(0, |c| c.n)
    };
    let facts = Facts {
        per_thread,
        cpu_holders,
        kernel_locks,
        retransmits,
        throttle: throttle.into_iter().next(),
        gpu_waits,
        wakers,
        network,
        own_block_requests,
    };
    Ok((facts, exclusions))
}

/// The questions quoted only when the classification used their answer.
/// (`runq`: the target waited in the run queue; `own_io`: its block requests decided between
/// I/O and a kernel lock.)
pub fn quote_used(runq: bool, own_io: bool, w: &str, ev: &mut EvidenceLog) {
    if runq {
        ev.quote(
            "CFS throttling of the target's CPU cgroup in the window (from its cpu.stat counters)",
            throttle_sql(w),
        );
    }
    ev.quote(
        "TCP retransmits of the target's sockets, by thread and peer",
        retransmits_sql(w),
    );
    if own_io {
        ev.quote(
            "Block requests the target itself submitted in the window",
            own_io_sql(w),
        );
    }
}

/// The GPU waits, the exclusions, and the wakers question (which leaves out joins and GPU
/// waits, so it follows the exits and GPU questions: few rows).
async fn wakers(
    win: &Windows<'_>,
    target: &Target,
) -> Result<(Vec<GpuWait>, Exclusions, Vec<Waker>), QueryError> {
    let (exits, gpu_waits) = futures::try_join!(
        win.other.rows::<Exit>(exits_sql),
        win.other.rows::<GpuWait>(gpu_sql)
    )?;
    // a join (pthread_join) is waiting for work to finish, not contention: the joiner waits on
    // the exiting thread's clear_child_tid futex, which the collector records on the exit
    // event — leave those waits out of the wait-for graph
    let not_joins = if exits.is_empty() {
        String::new()
    } else {
        let addrs: Vec<String> = exits.iter().map(|x| x.futex_uaddr.to_string()).collect();
        let joiners = win
            .other
            .rows::<Joiner>(|w| {
                format!(
                    "SELECT tid, futex_uaddr, time_unix_nano AS start_ns, time_unix_nano + duration_ns AS end_ns \
                     FROM kernel_events WHERE {w} AND event_name = '{FUTEX_WAIT}' AND futex_uaddr IN ({}) LIMIT 256",
                    addrs.join(",")
                )
            })
            .await?;
        join_exclusions(&exits, &joiners)
    };
    // waits for the GPU: CUDA sync calls and synchronous copies. The sleeps inside them are the
    // GPU's time, not a lock's, whoever signals their end (a driver thread, an interrupt); the
    // wakers question then reads the CUDA records, and the store answers it
    let not_gpu = if gpu_waits.is_empty() {
        String::new()
    } else {
        format!(
            " AND NOT EXISTS (SELECT 1 FROM kernel_events g WHERE g.pid = {} AND g.tid = k.tid \
             AND g.time_unix_nano >= {} AND g.time_unix_nano < {} AND {} \
             AND k.time_unix_nano >= g.time_unix_nano AND k.time_unix_nano < g.time_unix_nano + g.duration_ns)",
            target.pid,
            target.start - 60_000_000_000,
            target.end,
            gpu_wait("g.")
        )
    };
    let x = Exclusions { not_joins, not_gpu };
    let wakers = win.sched.rows::<Waker>(|w| wakers_sql(w, &x)).await?;
    Ok((gpu_waits, x, wakers))
}

/// Sleeps with no waking task during which the same thread's socket retransmitted.
async fn network(win: &Windows<'_>, retransmits: &[Retransmit]) -> Result<Total, QueryError> {
    let tids: Vec<String> = retransmits.iter().map(|r| r.tid.to_string()).collect();
    let times = win
        .other
        .rows::<Instant>(|w| {
            format!(
                "SELECT tid, time_unix_nano FROM kernel_events WHERE {w} AND event_name = '{TCP_RETRANSMIT}' LIMIT 2000"
            )
        })
        .await?;
    let sleeps = win
        .sched
        .rows::<Interval>(|w| {
            format!(
                "SELECT tid, time_unix_nano, duration_ns FROM kernel_events WHERE {w} AND event_name = '{OFF_CPU}' \
                 AND state = 'sleep' AND waker_tid IS NULL AND tid IN ({}) LIMIT 5000",
                tids.join(",")
            )
        })
        .await?;
    Ok(network_waits(&times, &sleeps))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A join whose joiner ran again long after the exit (it waited behind CPU hogs) is still a
    /// join; a wait on the same futex that ended before the exit, or began after it, is not.
    #[test]
    fn a_join_is_the_wait_under_way_at_the_exit() {
        let exits = vec![Exit {
            tid: 11,
            time_unix_nano: 1_000_000_000,
            futex_uaddr: 4096,
        }];
        let joiner = |futex_uaddr: i64, start_ns: i64, end_ns: i64| Joiner {
            tid: 10,
            futex_uaddr,
            start_ns,
            end_ns,
        };
        // woken after the exit record, ran again 40 ms later
        let late = join_exclusions(&exits, &[joiner(4096, 0, 1_040_000_000)]);
        assert_eq!(
            late,
            " AND NOT (tid = 10 AND waker_tid = 11 AND time_unix_nano <= 1000000000 \
             AND time_unix_nano + duration_ns >= 995000000)"
        );
        assert!(join_exclusions(&exits, &[joiner(4096, 0, 900_000_000)]).is_empty());
        assert!(join_exclusions(&exits, &[joiner(4096, 1_001_000_000, 1_002_000_000)]).is_empty());
        assert!(join_exclusions(&exits, &[joiner(8192, 0, 1_000_000_000)]).is_empty());
    }

    #[test]
    fn network_waits_are_sleeps_a_retransmit_of_the_same_thread_falls_in() {
        let r = |tid, t| Instant {
            tid,
            time_unix_nano: t,
        };
        let s = |tid, t, d| Interval {
            tid,
            time_unix_nano: t,
            duration_ns: d,
        };
        let sleeps = [s(1, 100, 50), s(1, 400, 200), s(2, 100, 1000)];
        let got = network_waits(&[r(1, 120), r(1, 600), r(3, 150)], &sleeps);
        assert_eq!(
            got,
            Total {
                total_ns: 250,
                longest_ns: 200
            }
        );
        assert_eq!(network_waits(&[], &sleeps), Total::default());
    }
}
