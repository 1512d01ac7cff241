//! One span explained: its kernel events (its own and its descendants', and untagged events of
//! its threads inside its window) classified per nanosecond into one cause each, and the
//! threads that held the locks it waited on.

use std::collections::HashMap;
use std::collections::HashSet;

use serde_json::Value;

use super::report::Breakdown;
use super::report::Holder;
use super::report::SpanReport;
use crate::analysis::json::i;
use causeway_proto::names::event::CUDA_MEMCPY;
use causeway_proto::names::event::CUDA_SYNC;
use causeway_proto::names::event::FUTEX_WAIT;
use causeway_proto::names::event::OFF_CPU;
use causeway_proto::names::event::RUNQ;

/// Causes in precedence order (the first that covers an instant wins).
const CAUSES: [&str; 6] = [
    "runqueue_wait",
    "gpu_sync",
    "lock_wait",
    "io",
    "network",
    "unexplained",
];

/// What every span is explained with.
pub struct Ctx<'a> {
    /// The trace's kernel events.
    pub events: &'a [Value],
    /// Per span id, the threads it ran on.
    pub span_threads: &'a HashMap<String, HashSet<(i64, i64)>>,
    /// Per span id, its children.
    pub children: &'a HashMap<String, Vec<String>>,
    /// Per kernel stack id, the cause its frames name.
    pub stack_causes: &'a HashMap<i64, usize>,
}

/// One classified interval.
#[derive(Debug, Clone)]
struct Piece {
    start: i64,
    end: i64,
    cause: usize,
}

/// Total ns per cause over [lo, hi): each instant counted once, for its strongest cause.
fn sweep(pieces: &[Piece], lo: i64, hi: i64) -> [i64; 6] {
    let mut bounds: Vec<i64> = vec![lo, hi];
    for p in pieces {
        bounds.push(p.start.clamp(lo, hi));
        bounds.push(p.end.clamp(lo, hi));
    }
    bounds.sort_unstable();
    bounds.dedup();
    let mut out = [0i64; 6];
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        if let Some(c) = pieces
            .iter()
            .filter(|p| p.start <= a && p.end >= b)
            .map(|p| p.cause)
            .min()
        {
            out[c] += b - a;
        }
    }
    out
}

/// The cause a kernel stack's frames name: I/O (3) or network (4).
pub fn stack_cause(frames: &str) -> Option<usize> {
    const IO: [&str; 8] = [
        "blk_",
        "io_schedule",
        "ext4",
        "xfs_",
        "jbd2",
        "fsync",
        "submit_bio",
        "nfs",
    ];
    const NET: [&str; 6] = ["tcp_", "sock_", "inet_", "unix_stream", "skb_", "udp_"];
    if IO.iter().any(|k| frames.contains(k)) {
        Some(3)
    } else if NET.iter().any(|k| frames.contains(k)) {
        Some(4)
    } else {
        None
    }
}

/// Milliseconds, to 0.01.
pub fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// A span and its descendants.
fn subtree(children: &HashMap<String, Vec<String>>, root: &str) -> HashSet<String> {
    let mut out: HashSet<String> = HashSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(x) = stack.pop() {
        if out.insert(x.clone()) {
            stack.extend(children.get(&x).cloned().unwrap_or_default());
        }
    }
    out
}

/// Waiting for the GPU: sync calls and synchronous copies (their sleeps are not locks).
fn gpu_wait(e: &Value) -> bool {
    e["event_name"] == CUDA_SYNC
        || (e["event_name"] == CUDA_MEMCPY
            && !e["cuda_function"].as_str().unwrap_or("").contains("Async"))
}

/// Whether two events of the same thread overlap.
fn overlaps_on_thread(a: &Value, (es, ee): (i64, i64), tid: i64) -> bool {
    i(a, "tid") == tid
        && i(a, "time_unix_nano") < ee
        && i(a, "time_unix_nano") + i(a, "duration_ns") > es
}

/// Lock holders by (pid, tid, comm): (ns the span waited on them, the futex).
type Holders = HashMap<(i64, i64, String), (i64, Option<i64>)>;

/// The cause of one event of the span, or None for events that carry no time of their own
/// (futex intervals classify off-CPU time; point events). Off-CPU sleeps over a futex wait
/// credit its waker as a lock holder.
fn cause_of(
    ctx: &Ctx<'_>,
    mine: &[&Value],
    e: &Value,
    (start, end): (i64, i64),
    holders: &mut Holders,
) -> Option<usize> {
    let (es, ee) = (
        i(e, "time_unix_nano"),
        i(e, "time_unix_nano") + i(e, "duration_ns"),
    );
    let tid = i(e, "tid");
    Some(match e["event_name"].as_str().unwrap_or("") {
        RUNQ => 0,
        _ if gpu_wait(e) => 1,
        OFF_CPU
            if mine
                .iter()
                .any(|s| gpu_wait(s) && overlaps_on_thread(s, (es, ee), tid)) =>
        {
            1
        }
        OFF_CPU => {
            let fx = mine
                .iter()
                .find(|f| f["event_name"] == FUTEX_WAIT && overlaps_on_thread(f, (es, ee), tid));
            if let Some(f) = fx {
                if e["waker_tid"].is_i64() {
                    let k = (
                        i(e, "waker_pid"),
                        i(e, "waker_tid"),
                        e["waker_comm"].as_str().unwrap_or("").into(),
                    );
                    let clipped = ee.min(end) - es.max(start);
                    let h = holders.entry(k).or_insert((0, f["futex_uaddr"].as_i64()));
                    h.0 += clipped.max(0);
                }
                2
            } else if e["state"] == "disk" {
                3
            } else if let Some(c) = e["kernel_stack_id"]
                .as_i64()
                .and_then(|k| ctx.stack_causes.get(&k))
            {
                *c
            } else if e["state"] == "preempted" {
                0 // preempted: runnable all along
            } else {
                5
            }
        }
        _ => return None,
    })
}

/// One span explained.
pub fn explain(ctx: &Ctx<'_>, s: &Value) -> SpanReport {
    let sid = s["span_id"].as_str().unwrap_or("").to_string();
    let (start, end) = (i(s, "start_time_unix_nano"), i(s, "end_time_unix_nano"));
    let ids = subtree(ctx.children, &sid);
    let mut my_threads: HashSet<(i64, i64)> = HashSet::new();
    for id in &ids {
        my_threads.extend(ctx.span_threads.get(id).cloned().unwrap_or_default());
    }
    let mine: Vec<&Value> = ctx
        .events
        .iter()
        .filter(|e| {
            i(e, "time_unix_nano") < end && i(e, "time_unix_nano") + i(e, "duration_ns") > start
        })
        .filter(|e| match e["span_id"].as_str() {
            Some(x) => ids.contains(x),
            None => my_threads.contains(&(i(e, "pid"), i(e, "tid"))),
        })
        .collect();
    let tagged = mine.iter().filter(|e| e["span_id"].is_string()).count() as i64;
    let mut holders = Holders::new();
    let pieces: Vec<Piece> = mine
        .iter()
        .filter_map(|e| {
            let cause = cause_of(ctx, &mine, e, (start, end), &mut holders)?;
            Some(Piece {
                start: i(e, "time_unix_nano"),
                end: i(e, "time_unix_nano") + i(e, "duration_ns"),
                cause,
            })
        })
        .collect();
    let by = sweep(&pieces, start, end);
    let waited: i64 = by.iter().sum();
    let bd = Breakdown {
        on_cpu_ms: ms((end - start - waited).max(0)),
        runqueue_wait_ms: ms(by[0]),
        gpu_sync_ms: ms(by[1]),
        lock_wait_ms: ms(by[2]),
        io_ms: ms(by[3]),
        network_ms: ms(by[4]),
        unexplained_ms: ms(by[5]),
    };
    let known_thread = !my_threads.is_empty();
    let (mut dominant, mut best) = if known_thread {
        ("on_cpu", end - start - waited)
    } else {
        ("unknown_thread", 0)
    };
    for (k, v) in by.iter().enumerate() {
        if *v > best {
            best = *v;
            dominant = CAUSES[k];
        }
    }
    let mut hs: Vec<Holder> = holders
        .into_iter()
        .map(|((pid, tid, comm), (ns, uaddr))| Holder {
            pid,
            tid,
            comm,
            wait_ms: ms(ns),
            futex_uaddr: uaddr.map(|u| format!("{u:#x}")),
        })
        .collect();
    hs.sort_by(|a, b| b.wait_ms.total_cmp(&a.wait_ms).then(a.tid.cmp(&b.tid)));
    let (pid, tid) = my_threads
        .iter()
        .next()
        .map(|(p, t)| (Some(*p), Some(*t)))
        .unwrap_or((s["pid"].as_i64(), s["tid"].as_i64()));
    SpanReport {
        span_id: sid,
        parent_span_id: s["parent_span_id"].as_str().map(String::from),
        name: s["name"].as_str().unwrap_or("").into(),
        service_name: s["service_name"].as_str().unwrap_or("").into(),
        pid,
        tid,
        start_time_unix_nano: start,
        duration_ms: ms(end - start),
        breakdown: bd,
        dominant: dominant.into(),
        holders: hs,
        tagged_events: tagged,
        window_events: mine.len() as i64 - tagged,
    }
}

/// The span to look at: the most waiting of its own (a parent's waits include its children's).
pub fn slowest<'a>(
    reports: &'a [SpanReport],
    children: &HashMap<String, Vec<String>>,
) -> Option<&'a SpanReport> {
    let wait = |r: &SpanReport| {
        let b = &r.breakdown;
        b.runqueue_wait_ms
            + b.lock_wait_ms
            + b.io_ms
            + b.network_ms
            + b.gpu_sync_ms
            + b.unexplained_ms
    };
    let self_wait = |r: &SpanReport| {
        let kids: f64 = children
            .get(&r.span_id)
            .map(|ks| {
                reports
                    .iter()
                    .filter(|c| ks.contains(&c.span_id))
                    .map(wait)
                    .sum()
            })
            .unwrap_or(0.0);
        wait(r) - kids
    };
    reports
        .iter()
        .max_by(|a, b| {
            self_wait(a)
                .total_cmp(&self_wait(b))
                .then(b.start_time_unix_nano.cmp(&a.start_time_unix_nano))
        })
        .filter(|r| wait(r) > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instant_counts_once_for_its_strongest_cause() {
        // off-CPU sleep 0..100 with a futex (lock) and a run-queue tail 80..100
        let pieces = vec![
            Piece {
                start: 0,
                end: 100,
                cause: 2,
            },
            Piece {
                start: 80,
                end: 100,
                cause: 0,
            },
            Piece {
                start: 150,
                end: 400,
                cause: 5,
            },
        ];
        let by = sweep(&pieces, 0, 200);
        assert_eq!(by, [20, 0, 80, 0, 0, 50]);
    }

    #[test]
    fn kernel_frames_name_io_and_network_waits() {
        assert_eq!(
            stack_cause("schedule;io_schedule;folio_wait_bit;ext4_sync_file"),
            Some(3)
        );
        assert_eq!(
            stack_cause("schedule;schedule_timeout;sk_wait_data;tcp_recvmsg"),
            Some(4)
        );
        assert_eq!(stack_cause("schedule;do_nanosleep"), None);
    }
}
