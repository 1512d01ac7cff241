//! `analyze_gpu_launch_latency`: why were a process's CUDA calls slow?
//!
//! Per function: call counts and p50/p99/p999 — from the in-kernel histograms
//! (`cuda_histograms`, launch counts scaled by the share of time their probes were attached) or,
//! for functions recorded call by call (sync, memcpy, alloc, NCCL), from the rows themselves. Then
//! the slowest calls, each explained by what the same thread did on the host meanwhile: the
//! interval overlap with its run-queue waits (and who held the CPU), off-CPU time by state, futex
//! waits and D-state. Synchronization calls are kept apart from launches: a sync call is
//! supposed to wait for the GPU; only its run-queue part after the GPU finished is host delay.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use super::causal_chain::Evidence;
use super::date_predicate;
use super::f;
use super::i;
use crate::engine::Engine;
use crate::engine::QueryError;

/// Arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuArgs {
    /// Process id (tgid), > 0.
    pub pid: i64,
    /// Window in seconds ending at the process's last CUDA record (1..=3600, default 60).
    pub window_s: Option<i64>,
    /// Host partition, when the store holds several hosts (pids repeat across hosts).
    pub host: Option<String>,
}

/// Latency of one CUDA/NCCL function in the window.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FunctionLatency {
    /// e.g. `cudaLaunchKernel`.
    pub function: String,
    /// launch | sync | memcpy | alloc | collective
    pub class: String,
    /// Calls in the window; for launches an estimate (sampled calls / sampled fraction).
    pub calls: i64,
    /// Calls actually observed.
    pub calls_observed: i64,
    /// Share of the window the function's probes were attached (launches are duty-cycled).
    pub sampled_fraction: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Total time in the function (observed calls), ms.
    pub total_ms: f64,
    /// `rows` (every call recorded: exact) or `histogram` (log2 buckets, interpolated).
    pub percentile_source: String,
    /// Observed calls per log2 duration bucket: [low_ns, high_ns, calls].
    pub histogram: Vec<[i64; 3]>,
}

/// What the calling thread did on the host during one call.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct HostSide {
    /// On CPU inside the call (call time not off CPU).
    pub on_cpu_ms: f64,
    /// Runnable but not running.
    pub run_queue_ms: f64,
    /// Off CPU and not runnable (sleeping or D-state).
    pub blocked_ms: f64,
    /// Of which in futex waits (locks, condition variables).
    pub futex_ms: f64,
    /// Of which in D-state (I/O, reclaim).
    pub disk_ms: f64,
    /// Who held the CPU while the thread waited in the run queue: pid, comm, cgroup, ms.
    pub run_queue_behind: Vec<Value>,
}

/// One slow call and its host-side reason.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SlowCall {
    /// Function.
    pub function: String,
    /// Its class.
    pub class: String,
    /// Calling thread.
    pub tid: i64,
    /// Its name (traced data).
    pub comm: String,
    /// Start, Unix ns.
    pub start_ns: i64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Stream handle, when the call names one.
    pub stream: Option<i64>,
    /// Bytes (copies, allocations, collectives).
    pub bytes: Option<i64>,
    /// Launch grid `x,y,z`.
    pub grid: Option<String>,
    /// The kernel launched (its host stub's symbol), when the collector could name it.
    pub kernel: Option<String>,
    /// Where the time went on the host.
    pub host_side: HostSide,
    /// The reason in one sentence.
    pub reason: String,
}

/// The answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GpuReport {
    /// Process asked about.
    pub pid: i64,
    /// `ok` or `no_cuda_events`.
    pub status: String,
    /// The finding in a few sentences.
    pub message: String,
    /// Window analysed, Unix ns.
    pub window_start_ns: i64,
    /// Window end, Unix ns.
    pub window_end_ns: i64,
    /// Per function, most time first.
    pub by_function: Vec<FunctionLatency>,
    /// The slowest launches, then the slowest other calls, each explained.
    pub slowest_calls: Vec<SlowCall>,
    /// Host time lost inside launches: run-queue ms, blocked ms, slow launches counted.
    pub launch_starvation: Value,
    /// Time the host waited for the GPU in sync calls (and synchronous copies), ms and share.
    pub gpu_wait: Value,
    /// Queries behind the answer.
    pub evidence: Vec<Evidence>,
    /// How to read traced strings.
    pub notice: String,
}

/// The class of a function, from its event name.
fn class_of(event_name: &str) -> &'static str {
    match event_name {
        "cuda.launch" => "launch",
        "cuda.sync" => "sync",
        "cuda.memcpy" => "memcpy",
        "cuda.alloc" => "alloc",
        _ => "collective",
    }
}

/// A percentile from log2 buckets `(low, high, calls)` sorted by `low`, interpolated linearly
/// inside the bucket the rank falls in.
pub fn histogram_percentile(buckets: &[(i64, i64, i64)], q: f64) -> f64 {
    let total: i64 = buckets.iter().map(|b| b.2).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for &(lo, hi, n) in buckets {
        let n = n as f64;
        if seen + n >= rank {
            let within = ((rank - seen) / n).clamp(0.0, 1.0);
            return lo as f64 + (hi - lo) as f64 * within;
        }
        seen += n;
    }
    buckets.last().map(|b| b.1 as f64).unwrap_or(0.0)
}

/// How many slow launches are explained one by one.
const SLOWEST: usize = 10;
/// How many slow waits (sync, memcpy, alloc, NCCL) are explained one by one.
const SLOWEST_WAITS: usize = 5;

/// Runs the analysis.
pub async fn run(engine: &Engine, a: &GpuArgs) -> Result<GpuReport, QueryError> {
    if a.pid <= 0 || a.pid > i32::MAX as i64 {
        return Err(QueryError::Usage(format!(
            "pid must be a positive process id, got {}",
            a.pid
        )));
    }
    engine.check_pid(a.pid)?;
    let window = a.window_s.unwrap_or(60);
    if !(1..=3600).contains(&window) {
        return Err(QueryError::Usage(format!(
            "window_s must be within 1..=3600, got {window}"
        )));
    }
    let hp = super::host_predicate(&a.host)?;
    let pid = a.pid;
    let mut evidence = Vec::new();
    let mut q = |description: &str, sql: String| {
        evidence.push(Evidence {
            description: description.into(),
            sql: sql.clone(),
        });
        sql
    };
    let is_cuda = "(event_name LIKE 'cuda.%' OR event_name = 'nccl.collective')";
    let last = engine
        .query(&format!(
            "SELECT max(t) AS t FROM (\
             SELECT max(time_unix_nano + duration_ns) AS t FROM kernel_events WHERE pid = {pid}{hp} AND {is_cuda} \
             UNION ALL SELECT max(time_unix_nano + interval_ns) AS t FROM cuda_histograms WHERE pid = {pid}{hp})"
        ))
        .await?;
    let end = last.rows.first().map(|r| i(r, "t")).unwrap_or(0);
    let notice = super::DATA_NOTICE.to_string();
    if end == 0 {
        return Ok(GpuReport {
            pid,
            status: "no_cuda_events".into(),
            message: format!(
                "no CUDA calls recorded for pid {pid}: the collector probes the CUDA runtime (libcudart), driver (libcuda) and NCCL that a process maps (see `causeway-collector doctor`); this process mapped none while it was traced, links the runtime statically without symbols, or was not traced (`causeway-collector run --pid {pid}`)"
            ),
            window_start_ns: 0,
            window_end_ns: 0,
            by_function: Vec::new(),
            slowest_calls: Vec::new(),
            launch_starvation: Value::Null,
            gpu_wait: Value::Null,
            evidence,
            notice,
        });
    }
    let start = end - window * 1_000_000_000;
    let dp = date_predicate(start, end);
    let w = format!(
        "pid = {pid}{hp} AND time_unix_nano >= {start} AND time_unix_nano < {end} AND {dp}"
    );

    // histograms: every sampled call, per function and bucket
    let hist_sql = q(
        "Calls per function and log2 duration bucket (in-kernel histograms; calls / sampled_fraction estimates all calls)",
        format!(
            "SELECT cuda_function, event_name, bucket_low_ns, bucket_high_ns, sum(calls) AS calls, \
             sum(calls / sampled_fraction) AS estimated, sum(sum_ns) AS sum_ns, \
             sum(sampled_fraction * interval_ns) / sum(interval_ns) AS fraction FROM cuda_histograms \
             WHERE pid = {pid}{hp} AND time_unix_nano < {end} AND time_unix_nano + interval_ns > {start} AND {dp} \
             AND sampled_fraction > 0 GROUP BY cuda_function, event_name, bucket_low_ns, bucket_high_ns \
             ORDER BY cuda_function, bucket_low_ns"
        ),
    );
    let hist = engine.query(&hist_sql).await?.rows;
    // rows: exact percentiles for the functions recorded call by call
    let rows_sql = q(
        "Per function recorded call by call: count and exact percentiles",
        format!(
            "SELECT cuda_function, event_name, count(*) AS n, sum(duration_ns) AS total_ns, \
             approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ns) AS p50, \
             approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) AS p99, \
             approx_percentile_cont(0.999) WITHIN GROUP (ORDER BY duration_ns) AS p999 \
             FROM kernel_events WHERE {w} AND {is_cuda} GROUP BY cuda_function, event_name"
        ),
    );
    let rows = engine.query(&rows_sql).await?.rows;

    let mut by_function: Vec<FunctionLatency> = Vec::new();
    let mut grouped: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for h in &hist {
        grouped
            .entry(h["cuda_function"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(h);
    }
    for (name, hs) in &grouped {
        let class = class_of(hs[0]["event_name"].as_str().unwrap_or(""));
        let buckets: Vec<(i64, i64, i64)> = hs
            .iter()
            .map(|h| (i(h, "bucket_low_ns"), i(h, "bucket_high_ns"), i(h, "calls")))
            .collect();
        let observed: i64 = buckets.iter().map(|b| b.2).sum();
        let estimated = hs.iter().map(|h| f(h, "estimated")).sum::<f64>().round() as i64;
        let fraction = hs.iter().map(|h| f(h, "fraction")).fold(0.0, f64::max);
        let total_ns: i64 = hs.iter().map(|h| i(h, "sum_ns")).sum();
        let exact = rows
            .iter()
            .find(|r| r["cuda_function"].as_str() == Some(name.as_str()));
        // call-by-call rows are exact when they cover every observed call (not launches)
        let (p50, p99, p999, source) = match exact {
            Some(r) if class != "launch" && i(r, "n") >= observed => {
                (f(r, "p50"), f(r, "p99"), f(r, "p999"), "rows")
            }
            _ => (
                histogram_percentile(&buckets, 0.5),
                histogram_percentile(&buckets, 0.99),
                histogram_percentile(&buckets, 0.999),
                "histogram",
            ),
        };
        by_function.push(FunctionLatency {
            function: super::data_text(name),
            class: class.into(),
            calls: estimated.max(observed),
            calls_observed: observed,
            sampled_fraction: fraction,
            p50_ms: p50 / 1e6,
            p99_ms: p99 / 1e6,
            p999_ms: p999 / 1e6,
            total_ms: total_ns as f64 / 1e6,
            percentile_source: source.into(),
            histogram: buckets.iter().map(|b| [b.0, b.1, b.2]).collect(),
        });
    }
    // functions with rows but no histogram rows (a store written without histograms)
    for r in &rows {
        let name = r["cuda_function"].as_str().unwrap_or("?");
        if grouped.contains_key(name) {
            continue;
        }
        by_function.push(FunctionLatency {
            function: super::data_text(name),
            class: class_of(r["event_name"].as_str().unwrap_or("")).into(),
            calls: i(r, "n"),
            calls_observed: i(r, "n"),
            sampled_fraction: 1.0,
            p50_ms: f(r, "p50") / 1e6,
            p99_ms: f(r, "p99") / 1e6,
            p999_ms: f(r, "p999") / 1e6,
            total_ms: i(r, "total_ns") as f64 / 1e6,
            percentile_source: "rows".into(),
            histogram: Vec::new(),
        });
    }
    by_function.sort_by(|x, y| y.total_ms.total_cmp(&x.total_ms));

    // the slowest calls and what their threads did meanwhile
    // launches and waits apart: a sync call is long by design, a launch is not
    let pick = |cols: &str| {
        format!(
            "(SELECT {cols} FROM kernel_events WHERE {w} AND event_name = 'cuda.launch' ORDER BY duration_ns DESC LIMIT {SLOWEST}) \
             UNION ALL (SELECT {cols} FROM kernel_events WHERE {w} AND {is_cuda} AND event_name <> 'cuda.launch' \
             ORDER BY duration_ns DESC LIMIT {SLOWEST_WAITS})"
        )
    };
    let slow_sql = q(
        "The slowest recorded launches, and the slowest other calls (sync, memcpy, alloc, NCCL)",
        format!(
            "SELECT * FROM ({}) ORDER BY event_name = 'cuda.launch' DESC, duration_ns DESC",
            pick("tid, comm, event_name, cuda_function, cuda_kernel, cuda_stream, bytes, cuda_grid, time_unix_nano, duration_ns")
        ),
    );
    let slow = engine.query(&slow_sql).await?.rows;
    let overlap_sql = q(
        "What the calling threads did during the slowest calls (overlap of their scheduler, futex and I/O events with each call)",
        format!(
            "WITH calls AS (SELECT tid, s, e FROM ({picked})) \
             SELECT c.tid, c.s, k.event_name, k.state, k.prev_pid, k.prev_comm, \
             greatest(0, least(c.e, k.time_unix_nano + k.duration_ns) - greatest(c.s, k.time_unix_nano)) AS overlap_ns \
             FROM calls c JOIN kernel_events k ON k.tid = c.tid AND k.time_unix_nano < c.e \
             AND k.time_unix_nano + k.duration_ns > c.s \
             WHERE k.pid = {pid}{hp_k} AND k.time_unix_nano >= {pre} AND k.time_unix_nano < {end} AND {dp_k} \
             AND k.event_name IN ('sched.off_cpu', 'sched.runq', 'futex.wait')",
            picked = pick("tid, time_unix_nano AS s, time_unix_nano + duration_ns AS e, duration_ns, event_name"),
            hp_k = hp.replace("host", "k.host"),
            // an interval that began before the window can still overlap a call inside it
            pre = start - 10_000_000_000,
            dp_k = date_predicate(start - 10_000_000_000, end).replace("date", "k.date"),
        ),
    );
    let overlaps = engine.query(&overlap_sql).await?.rows;
    // cgroup / container of the tasks that held the CPU, from their own events when traced
    let behind_pids: Vec<i64> = overlaps
        .iter()
        .filter(|o| o["event_name"] == "sched.runq" && i(o, "prev_pid") > 0)
        .map(|o| i(o, "prev_pid"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .take(50)
        .collect();
    let mut owners: BTreeMap<i64, Value> = BTreeMap::new();
    if !behind_pids.is_empty() {
        let list: Vec<String> = behind_pids.iter().map(|p| p.to_string()).collect();
        let o_sql = q(
            "cgroup and container of the tasks that held the CPU",
            format!(
                "SELECT pid, max(process_name) AS process_name, max(cgroup_id) AS cgroup_id, max(container_id) AS container_id \
                 FROM kernel_events WHERE pid IN ({}){hp} AND time_unix_nano >= {start} AND time_unix_nano < {end} AND {dp} GROUP BY pid",
                list.join(",")
            ),
        );
        for r in engine.query(&o_sql).await?.rows {
            owners.insert(i(&r, "pid"), r);
        }
    }
    let ms = |ns: i64| ns as f64 / 1e6;
    let mut slowest_calls = Vec::new();
    for c in &slow {
        let (tid, s, dur) = (i(c, "tid"), i(c, "time_unix_nano"), i(c, "duration_ns"));
        let mine: Vec<&Value> = overlaps
            .iter()
            .filter(|o| i(o, "tid") == tid && i(o, "s") == s)
            .collect();
        let sum = |pred: &dyn Fn(&Value) -> bool| -> i64 {
            mine.iter()
                .filter(|o| pred(o))
                .map(|o| i(o, "overlap_ns"))
                .sum()
        };
        let runq = sum(&|o| o["event_name"] == "sched.runq");
        let off = sum(&|o| o["event_name"] == "sched.off_cpu").min(dur);
        let futex = sum(&|o| o["event_name"] == "futex.wait");
        let disk = sum(&|o| o["event_name"] == "sched.off_cpu" && o["state"] == "disk");
        let blocked = (off - runq).max(0);
        let mut behind: BTreeMap<i64, (String, i64)> = BTreeMap::new();
        for o in mine.iter().filter(|o| o["event_name"] == "sched.runq") {
            let e = behind
                .entry(i(o, "prev_pid"))
                .or_insert_with(|| (o["prev_comm"].as_str().unwrap_or("").to_string(), 0));
            e.1 += i(o, "overlap_ns");
        }
        let mut behind: Vec<(i64, String, i64)> =
            behind.into_iter().map(|(p, (c, n))| (p, c, n)).collect();
        behind.sort_by_key(|b| std::cmp::Reverse(b.2));
        let run_queue_behind: Vec<Value> = behind
            .iter()
            .take(3)
            .map(|(p, comm, n)| {
                let o = owners.get(p);
                serde_json::json!({
                    "pid": p,
                    "comm": super::data_text(comm),
                    "cgroup_id": o.map(|o| i(o, "cgroup_id")),
                    "container_id": o.and_then(|o| o["container_id"].as_str()).map(super::data_text),
                    "ms": ms(*n),
                })
            })
            .collect();
        let kernel = c["cuda_kernel"].as_str().map(super::data_text);
        let function = match &kernel {
            Some(k) => format!(
                "{} ⟦{k}⟧",
                super::data_text(c["cuda_function"].as_str().unwrap_or("?"))
            ),
            None => super::data_text(c["cuda_function"].as_str().unwrap_or("?")),
        };
        let class = class_of(c["event_name"].as_str().unwrap_or(""));
        let waits_for_gpu = class == "sync" || (class == "memcpy" && blocked > dur / 2);
        let who = behind.first().map(|(p, comm, _)| {
            let o = owners.get(p);
            let place = o
                .and_then(|o| {
                    o["container_id"]
                        .as_str()
                        .map(|c| format!(", container {}", super::data_text(&c[..c.len().min(12)])))
                })
                .or_else(|| o.map(|o| format!(", cgroup {}", i(o, "cgroup_id"))))
                .unwrap_or_default();
            if *p == 0 {
                "the idle task (the CPU was free: cgroup CPU throttling)".to_string()
            } else if *p == pid {
                format!("its own thread {}", super::data_text(comm))
            } else {
                format!("pid {p} ({}{place})", super::data_text(comm))
            }
        });
        let on_cpu = (dur - off).max(0);
        let reason = if waits_for_gpu {
            let host = if runq > 0 {
                format!(
                    "; then {:.3} ms in the run queue behind {} before the thread ran again",
                    ms(runq),
                    who.clone().unwrap_or_else(|| "other tasks".into())
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
                "{function} {:.3} ms: {:.3} ms run-queue wait behind {}",
                ms(dur),
                ms(runq),
                who.clone().unwrap_or_else(|| "other tasks".into())
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
        };
        slowest_calls.push(SlowCall {
            function: super::data_text(c["cuda_function"].as_str().unwrap_or("?")),
            kernel,
            class: class.into(),
            tid,
            comm: super::data_text(c["comm"].as_str().unwrap_or("")),
            start_ns: s,
            duration_ms: ms(dur),
            stream: c["cuda_stream"].as_i64(),
            bytes: c["bytes"].as_i64(),
            grid: c["cuda_grid"].as_str().map(super::data_text),
            host_side: HostSide {
                on_cpu_ms: ms(on_cpu),
                run_queue_ms: ms(runq),
                blocked_ms: ms(blocked),
                futex_ms: ms(futex),
                disk_ms: ms(disk),
                run_queue_behind,
            },
            reason,
        });
    }

    // launches slowed by the host, over every recorded slow launch (not only the top ten)
    let starve_sql = q(
        "Run-queue time inside recorded slow launches, by the task that held the CPU",
        format!(
            "WITH l AS (SELECT tid, time_unix_nano AS s, time_unix_nano + duration_ns AS e FROM kernel_events \
             WHERE {w} AND event_name = 'cuda.launch') \
             SELECT k.prev_pid, max(k.prev_comm) AS prev_comm, count(DISTINCT l.s) AS launches, \
             sum(greatest(0, least(l.e, k.time_unix_nano + k.duration_ns) - greatest(l.s, k.time_unix_nano))) AS runq_ns \
             FROM l JOIN kernel_events k ON k.tid = l.tid AND k.time_unix_nano < l.e AND k.time_unix_nano + k.duration_ns > l.s \
             WHERE k.pid = {pid}{hp_k} AND k.event_name = 'sched.runq' AND k.time_unix_nano >= {start} AND k.time_unix_nano < {end} AND {dp_k} \
             GROUP BY k.prev_pid ORDER BY runq_ns DESC LIMIT 5",
            hp_k = hp.replace("host", "k.host"),
            dp_k = dp.replace("date", "k.date"),
        ),
    );
    let starve = engine.query(&starve_sql).await?.rows;
    let slow_launches = engine
        .query(&format!("SELECT count(*) AS n, sum(duration_ns) AS ns FROM kernel_events WHERE {w} AND event_name = 'cuda.launch'"))
        .await?
        .rows;
    let (n_slow, slow_ns) = slow_launches
        .first()
        .map(|r| (i(r, "n"), i(r, "ns")))
        .unwrap_or((0, 0));
    let starve_ns: i64 = starve.iter().map(|r| i(r, "runq_ns")).sum();
    let launch_starvation = serde_json::json!({
        "slow_launches": n_slow,
        "slow_launch_ms": ms(slow_ns),
        "run_queue_ms": ms(starve_ns),
        "behind": starve.iter().map(|r| serde_json::json!({
            "pid": i(r, "prev_pid"), "comm": super::data_text(r["prev_comm"].as_str().unwrap_or("")),
            "launches": i(r, "launches"), "ms": ms(i(r, "runq_ns")),
        })).collect::<Vec<_>>(),
    });
    let sync_ms: f64 = by_function
        .iter()
        .filter(|x| x.class == "sync")
        .map(|x| x.total_ms)
        .sum();
    let window_ms = (end - start) as f64 / 1e6;
    let gpu_wait = serde_json::json!({
        "sync_ms": sync_ms,
        "share_of_window": (sync_ms / window_ms).min(1.0),
    });

    let total_calls: i64 = by_function.iter().map(|x| x.calls).sum();
    let mut message =
        format!("{total_calls} CUDA/NCCL calls by pid {pid} in the {window} s window");
    if let Some(worst) = by_function
        .iter()
        .filter(|x| x.class == "launch")
        .max_by_key(|x| x.calls)
    {
        message.push_str(&format!(
            "; {} p50 {:.3} ms, p99 {:.3} ms ({} calls{})",
            worst.function,
            worst.p50_ms,
            worst.p99_ms,
            worst.calls,
            if worst.sampled_fraction < 0.999 {
                format!(
                    ", estimated from {:.0}% sampling",
                    worst.sampled_fraction * 100.0
                )
            } else {
                String::new()
            }
        ));
    }
    if n_slow > 0 {
        message.push_str(&format!(". {n_slow} slow launches ({:.1} ms)", ms(slow_ns)));
        if let Some(top) = starve.first() {
            message.push_str(&format!(
                ": {:.1} ms of it in the run queue, mostly behind pid {} ({}) — the host thread feeding the GPU was starved of CPU",
                ms(starve_ns),
                i(top, "prev_pid"),
                super::data_text(top["prev_comm"].as_str().unwrap_or(""))
            ));
        }
    }
    if sync_ms > 0.0 {
        message.push_str(&format!(
            ". The host waited {sync_ms:.1} ms ({:.1}% of the window) for the GPU in sync calls",
            sync_ms / window_ms * 100.0
        ));
    }
    if let Some(c) = slowest_calls.first() {
        message.push_str(&format!(". Slowest: {}", c.reason));
    }
    Ok(GpuReport {
        pid,
        status: "ok".into(),
        message,
        window_start_ns: start,
        window_end_ns: end,
        by_function,
        slowest_calls,
        launch_starvation,
        gpu_wait,
        evidence,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_inside_log2_buckets() {
        // 90 calls in [4096, 8192), 10 in [1 ms, 2 ms)
        let b = [(4096, 8192, 90), (1 << 20, 1 << 21, 10)];
        let p50 = histogram_percentile(&b, 0.5);
        assert!((4096.0..8192.0).contains(&p50), "{p50}");
        let p99 = histogram_percentile(&b, 0.99);
        assert!(((1 << 20) as f64..(1 << 21) as f64).contains(&p99), "{p99}");
        assert_eq!(histogram_percentile(&[], 0.5), 0.0);
        assert_eq!(histogram_percentile(&b, 1.0), (1 << 21) as f64);
    }

    #[test]
    fn classes_follow_event_names() {
        assert_eq!(class_of("cuda.launch"), "launch");
        assert_eq!(class_of("cuda.sync"), "sync");
        assert_eq!(class_of("nccl.collective"), "collective");
    }
}
