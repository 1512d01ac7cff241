//! The slowest calls, each explained by what its thread did on the host meanwhile: its
//! run-queue waits (and who held the CPU), off-CPU time by state, futex waits and D-state.
//! Launches and waits apart: a sync call is long by design, a launch is not.

use std::collections::BTreeMap;

use serde_json::Value;

use super::latency::class_of;
use super::report::HostSide;
use super::report::SlowCall;
use super::scope::Scope;
use crate::analysis::json::i;
use crate::analysis::sql::date_predicate;
use crate::analysis::text::data_text;
use crate::analysis::text::EvidenceLog;
use crate::engine::Engine;
use crate::error::QueryError;
use causeway_proto::names::event::CUDA_LAUNCH;
use causeway_proto::names::event::FUTEX_WAIT;
use causeway_proto::names::event::OFF_CPU;
use causeway_proto::names::event::RUNQ;

/// How many slow launches are explained one by one.
const SLOWEST: usize = 10;
/// How many slow waits (sync, memcpy, alloc, NCCL) are explained one by one.
const SLOWEST_WAITS: usize = 5;

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// The slowest launches and waits of the window, explained.
pub async fn slowest_calls(
    engine: &dyn Engine,
    s: &Scope,
    ev: &mut EvidenceLog,
) -> Result<Vec<SlowCall>, QueryError> {
    let (pid, hp, start, end, w) = (s.pid, &s.hp, s.start, s.end, &s.w);
    let is_cuda = super::scope::is_cuda();
    let pick = |cols: &str| {
        format!(
            "(SELECT {cols} FROM kernel_events WHERE {w} AND event_name = '{CUDA_LAUNCH}' ORDER BY duration_ns DESC LIMIT {SLOWEST}) \
             UNION ALL (SELECT {cols} FROM kernel_events WHERE {w} AND {is_cuda} AND event_name <> '{CUDA_LAUNCH}' \
             ORDER BY duration_ns DESC LIMIT {SLOWEST_WAITS})"
        )
    };
    let slow_sql = ev.quote(
        "The slowest recorded launches, and the slowest other calls (sync, memcpy, alloc, NCCL)",
        format!(
            "SELECT * FROM ({}) ORDER BY event_name = '{CUDA_LAUNCH}' DESC, duration_ns DESC",
            pick("tid, comm, event_name, cuda_function, cuda_kernel, cuda_stream, bytes, cuda_grid, time_unix_nano, duration_ns")
        ),
    );
    let slow = engine.query(&slow_sql).await?.rows;
    let overlap_sql = ev.quote(
        "What the calling threads did during the slowest calls (overlap of their scheduler, futex and I/O events with each call)",
        format!(
            "WITH calls AS (SELECT tid, s, e FROM ({picked})) \
             SELECT c.tid, c.s, k.event_name, k.state, k.prev_pid, k.prev_comm, \
             greatest(0, least(c.e, k.time_unix_nano + k.duration_ns) - greatest(c.s, k.time_unix_nano)) AS overlap_ns \
             FROM calls c JOIN kernel_events k ON k.tid = c.tid AND k.time_unix_nano < c.e \
             AND k.time_unix_nano + k.duration_ns > c.s \
             WHERE k.pid = {pid}{hp_k} AND k.time_unix_nano >= {pre} AND k.time_unix_nano < {end} AND {dp_k} \
             AND k.event_name IN ('{OFF_CPU}', '{RUNQ}', '{FUTEX_WAIT}')",
            picked = pick("tid, time_unix_nano AS s, time_unix_nano + duration_ns AS e, duration_ns, event_name"),
            hp_k = hp.replace("host", "k.host"),
            // an interval that began before the window can still overlap a call inside it
            pre = start - 10_000_000_000,
            dp_k = date_predicate(start - 10_000_000_000, end).replace("date", "k.date"),
        ),
    );
    let overlaps = engine.query(&overlap_sql).await?.rows;
    let owners = owners(engine, s, &overlaps, ev).await?;
    Ok(slow
        .iter()
        .map(|c| explain(c, &overlaps, &owners, pid))
        .collect())
}

/// cgroup / container of the tasks that held the CPU, from their own events when traced.
async fn owners(
    engine: &dyn Engine,
    s: &Scope,
    overlaps: &[Value],
    ev: &mut EvidenceLog,
) -> Result<BTreeMap<i64, Value>, QueryError> {
    let behind_pids: Vec<i64> = overlaps
        .iter()
        .filter(|o| o["event_name"] == RUNQ && i(o, "prev_pid") > 0)
        .map(|o| i(o, "prev_pid"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .take(50)
        .collect();
    let mut owners: BTreeMap<i64, Value> = BTreeMap::new();
    if behind_pids.is_empty() {
        return Ok(owners);
    }
    let list: Vec<String> = behind_pids.iter().map(|p| p.to_string()).collect();
    let o_sql = ev.quote(
        "cgroup and container of the tasks that held the CPU",
        format!(
            "SELECT pid, max(process_name) AS process_name, max(cgroup_id) AS cgroup_id, max(container_id) AS container_id \
             FROM kernel_events WHERE pid IN ({}){} AND time_unix_nano >= {} AND time_unix_nano < {} AND {} GROUP BY pid",
            list.join(","),
            s.hp,
            s.start,
            s.end,
            s.dp
        ),
    );
    for r in engine.query(&o_sql).await?.rows {
        owners.insert(i(&r, "pid"), r);
    }
    Ok(owners)
}

/// Where a call's time went on the host, from its overlaps.
struct Spent {
    runq: i64,
    futex: i64,
    disk: i64,
    blocked: i64,
    on_cpu: i64,
    /// Tasks that had the CPU while it waited: (pid, comm, ns), most first.
    behind: Vec<(i64, String, i64)>,
}

fn spent(mine: &[&Value], dur: i64) -> Spent {
    let sum = |pred: &dyn Fn(&Value) -> bool| -> i64 {
        mine.iter()
            .filter(|o| pred(o))
            .map(|o| i(o, "overlap_ns"))
            .sum()
    };
    let runq = sum(&|o| o["event_name"] == RUNQ);
    let off = sum(&|o| o["event_name"] == OFF_CPU).min(dur);
    let futex = sum(&|o| o["event_name"] == FUTEX_WAIT);
    let disk = sum(&|o| o["event_name"] == OFF_CPU && o["state"] == "disk");
    let mut behind: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    for o in mine.iter().filter(|o| o["event_name"] == RUNQ) {
        let e = behind
            .entry(i(o, "prev_pid"))
            .or_insert_with(|| (o["prev_comm"].as_str().unwrap_or("").to_string(), 0));
        e.1 += i(o, "overlap_ns");
    }
    let mut behind: Vec<(i64, String, i64)> =
        behind.into_iter().map(|(p, (c, n))| (p, c, n)).collect();
    behind.sort_by_key(|b| std::cmp::Reverse(b.2));
    Spent {
        runq,
        futex,
        disk,
        blocked: (off - runq).max(0),
        on_cpu: (dur - off).max(0),
        behind,
    }
}

/// Who held the CPU: the idle task, the process's own thread, or another process (and where).
fn who(owners: &BTreeMap<i64, Value>, pid: i64, (p, comm): (i64, &str)) -> String {
    let o = owners.get(&p);
    let place = o
        .and_then(|o| {
            o["container_id"]
                .as_str()
                .map(|c| format!(", container {}", data_text(&c[..c.len().min(12)])))
        })
        .or_else(|| o.map(|o| format!(", cgroup {}", i(o, "cgroup_id"))))
        .unwrap_or_default();
    if p == 0 {
        "the idle task (the CPU was free: cgroup CPU throttling)".to_string()
    } else if p == pid {
        format!("its own thread {}", data_text(comm))
    } else {
        format!("pid {p} ({}{place})", data_text(comm))
    }
}

/// One slow call `c` explained by its thread's overlapping events.
fn explain(c: &Value, overlaps: &[Value], owners: &BTreeMap<i64, Value>, pid: i64) -> SlowCall {
    let (tid, s, dur) = (i(c, "tid"), i(c, "time_unix_nano"), i(c, "duration_ns"));
    let mine: Vec<&Value> = overlaps
        .iter()
        .filter(|o| i(o, "tid") == tid && i(o, "s") == s)
        .collect();
    let sp = spent(&mine, dur);
    let run_queue_behind: Vec<Value> = sp
        .behind
        .iter()
        .take(3)
        .map(|(p, comm, n)| {
            let o = owners.get(p);
            serde_json::json!({
                "pid": p,
                "comm": data_text(comm),
                "cgroup_id": o.map(|o| i(o, "cgroup_id")),
                "container_id": o.and_then(|o| o["container_id"].as_str()).map(data_text),
                "ms": ms(*n),
            })
        })
        .collect();
    let kernel = c["cuda_kernel"].as_str().map(data_text);
    let name = data_text(c["cuda_function"].as_str().unwrap_or("?"));
    let function = match &kernel {
        Some(k) => format!("{name} ⟦{k}⟧"),
        None => name.clone(),
    };
    let class = class_of(c["event_name"].as_str().unwrap_or(""));
    let who = sp
        .behind
        .first()
        .map(|(p, comm, _)| who(owners, pid, (*p, comm)))
        .unwrap_or_else(|| "other tasks".into());
    let reason = reason(&function, class, dur, &sp, &who);
    SlowCall {
        function: name,
        kernel,
        class: class.into(),
        tid,
        comm: data_text(c["comm"].as_str().unwrap_or("")),
        start_ns: s,
        duration_ms: ms(dur),
        stream: c["cuda_stream"].as_i64(),
        bytes: c["bytes"].as_i64(),
        grid: c["cuda_grid"].as_str().map(data_text),
        host_side: HostSide {
            on_cpu_ms: ms(sp.on_cpu),
            run_queue_ms: ms(sp.runq),
            blocked_ms: ms(sp.blocked),
            futex_ms: ms(sp.futex),
            disk_ms: ms(sp.disk),
            run_queue_behind,
        },
        reason,
    }
}

/// The reason for a slow call in one sentence.
fn reason(function: &str, class: &str, dur: i64, sp: &Spent, who: &str) -> String {
    let waits_for_gpu = class == "sync" || (class == "memcpy" && sp.blocked > dur / 2);
    let (runq, futex, disk, blocked, on_cpu) = (sp.runq, sp.futex, sp.disk, sp.blocked, sp.on_cpu);
    if waits_for_gpu {
        let host = if runq > 0 {
            format!(
                "; then {:.3} ms in the run queue behind {who} before the thread ran again",
                ms(runq)
            )
        } else {
            String::new()
        };
        format!(
            "{function} {:.3} ms: waiting for the GPU {:.3} ms{host}",
            ms(dur),
            ms(blocked + on_cpu)
        )
    } else if runq * 2 >= dur && runq > 0 {
        format!(
            "{function} {:.3} ms: {:.3} ms run-queue wait behind {who}",
            ms(dur),
            ms(runq)
        )
    } else if futex > 0 && futex * 2 >= dur {
        format!(
            "{function} {:.3} ms: {:.3} ms blocked on a lock (futex) inside the call",
            ms(dur),
            ms(futex)
        )
    } else if disk > 0 && disk * 2 >= dur {
        format!(
            "{function} {:.3} ms: {:.3} ms in D-state (I/O or reclaim) inside the call",
            ms(dur),
            ms(disk)
        )
    } else if blocked * 2 >= dur {
        format!(
            "{function} {:.3} ms: {:.3} ms off CPU (sleeping) inside the call",
            ms(dur),
            ms(blocked)
        )
    } else {
        format!(
            "{function} {:.3} ms: {:.3} ms on CPU inside the call (library/driver work; no host wait seen{})",
            ms(dur),
            ms(on_cpu),
            if runq > 0 { format!(", {:.3} ms run queue", ms(runq)) } else { String::new() }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_mostly_in_the_run_queue_is_blamed_on_the_cpu_holder() {
        let overlaps = [
            serde_json::json!({"event_name": "sched.runq", "overlap_ns": 3_000_000, "prev_pid": 7, "prev_comm": "hog"}),
            serde_json::json!({"event_name": "sched.off_cpu", "state": "preempted", "overlap_ns": 3_000_000}),
        ];
        let mine: Vec<&Value> = overlaps.iter().collect();
        let sp = spent(&mine, 4_000_000);
        assert_eq!((sp.runq, sp.blocked, sp.on_cpu), (3_000_000, 0, 1_000_000));
        let owners = BTreeMap::new();
        let who = who(&owners, 1, (7, "hog"));
        assert_eq!(who, "pid 7 (hog)");
        assert_eq!(
            reason("cudaLaunchKernel", "launch", 4_000_000, &sp, &who),
            "cudaLaunchKernel 4.000 ms: 3.000 ms run-queue wait behind pid 7 (hog)"
        );
        // a sync call waits for the GPU by design; its run-queue tail is the host's part
        assert!(
            reason("cudaStreamSynchronize", "sync", 4_000_000, &sp, &who).starts_with(
                "cudaStreamSynchronize 4.000 ms: waiting for the GPU 1.000 ms; then 3.000 ms"
            )
        );
    }
}
