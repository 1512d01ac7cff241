//! `explain_trace`: an application trace joined with the kernel. For each span, its wall time
//! split into on-CPU, run-queue wait, lock wait, I/O, network, GPU sync and unexplained, with the
//! lock holders that made it wait.
//!
//! Which kernel events belong to a span: events tagged at capture with the span id (or a
//! descendant's: a child's wait is its parent's wait too), plus untagged events of the span's
//! thread (`thread.id` on the span, or the thread its tagged events came from) inside the span's
//! window (`correlation_method` = time_window). Intervals are clipped to the span.
//!
//! Classification, strongest first, per nanosecond of the span: run-queue wait (`sched.runq`),
//! GPU sync (`cuda.sync`), lock wait (an off-CPU interval overlapping a `futex.wait`), I/O
//! (D-state, or block-layer / filesystem frames in the kernel stack), network (socket frames),
//! unexplained (any other off-CPU sleep), and on-CPU for the rest of the span (inferred: waits
//! shorter than the collector's min_off_cpu threshold count as on-CPU).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use super::date_predicate;
use super::i;
use super::quoted;
use crate::engine::Engine;
use crate::engine::QueryError;

/// Arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceArgs {
    /// Trace id: 32 hex digits.
    pub trace_id: String,
}

/// Milliseconds of a span by cause.
#[derive(Debug, Clone, Default, Serialize, JsonSchema, PartialEq)]
pub struct Breakdown {
    /// Running (inferred: the span minus every recorded wait).
    pub on_cpu_ms: f64,
    /// Runnable, waiting for a CPU.
    pub runqueue_wait_ms: f64,
    /// Blocked on a futex (mutex, condition variable …).
    pub lock_wait_ms: f64,
    /// Blocked on disk I/O (D-state or block/filesystem stacks).
    pub io_ms: f64,
    /// Blocked in socket calls.
    pub network_ms: f64,
    /// Waiting for the GPU (CUDA synchronization calls).
    pub gpu_sync_ms: f64,
    /// Off-CPU for a reason the kernel records do not name (timers, sleeps, other waits).
    pub unexplained_ms: f64,
}

/// A thread that held what a span waited for.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Holder {
    /// Process id.
    pub pid: i64,
    /// Thread id.
    pub tid: i64,
    /// Thread name (traced data).
    pub comm: String,
    /// Lock wait it ended, ms.
    pub wait_ms: f64,
    /// The futex word's address (hex), when known.
    pub futex_uaddr: Option<String>,
}

/// One span, explained.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SpanReport {
    /// Span id.
    pub span_id: String,
    /// Parent span id.
    pub parent_span_id: Option<String>,
    /// Span name (traced data).
    pub name: String,
    /// service.name (traced data).
    pub service_name: String,
    /// Process, when known.
    pub pid: Option<i64>,
    /// Thread, when known.
    pub tid: Option<i64>,
    /// Start, Unix ns.
    pub start_time_unix_nano: i64,
    /// Wall time, ms.
    pub duration_ms: f64,
    /// Where the time went.
    pub breakdown: Breakdown,
    /// The largest cause.
    pub dominant: String,
    /// Threads that ended its lock waits, most wait first.
    pub holders: Vec<Holder>,
    /// Kernel events tagged with this span at capture.
    pub tagged_events: i64,
    /// Untagged events joined by thread and time window.
    pub window_events: i64,
}

/// The answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TraceReport {
    /// The trace.
    pub trace_id: String,
    /// Spans in start order.
    pub spans: Vec<SpanReport>,
    /// The span with the most time off-CPU (the one to look at).
    pub slowest_span_id: Option<String>,
    /// How the kernel events were joined: counts by correlation method.
    pub correlation: BTreeMap<String, i64>,
    /// One paragraph for a human or an agent.
    pub summary: String,
    /// Queries behind the answer.
    pub evidence: Vec<super::causal_chain::Evidence>,
    /// How to read traced strings.
    pub notice: String,
}

/// A validated, lower-case trace id.
pub fn parse_trace_id(s: &str) -> Result<String, QueryError> {
    let t = s.trim().to_ascii_lowercase();
    if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) || t.bytes().all(|b| b == b'0') {
        return Err(QueryError::Usage(format!(
            "trace_id must be 32 hex digits and not all zero, got {:?}",
            s.chars().take(64).collect::<String>()
        )));
    }
    Ok(t)
}

/// A validated, lower-case span id.
pub fn parse_span_id(s: &str) -> Result<String, QueryError> {
    let t = s.trim().to_ascii_lowercase();
    if t.len() != 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(QueryError::Usage(format!(
            "span_id must be 16 hex digits, got {:?}",
            s.chars().take(64).collect::<String>()
        )));
    }
    Ok(t)
}

/// Causes in precedence order (the first that covers an instant wins).
const CAUSES: [&str; 6] = [
    "runqueue_wait",
    "gpu_sync",
    "lock_wait",
    "io",
    "network",
    "unexplained",
];

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

fn stack_cause(frames: &str) -> Option<usize> {
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

fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// Runs the analysis.
pub async fn run(engine: &Engine, a: &TraceArgs) -> Result<TraceReport, QueryError> {
    let trace_id = parse_trace_id(&a.trace_id)?;
    let spans_sql = format!(
        "SELECT span_id, parent_span_id, name, service_name, pid, tid, start_time_unix_nano, end_time_unix_nano \
         FROM app_spans WHERE trace_id = '{trace_id}' ORDER BY start_time_unix_nano, span_id"
    );
    let spans = engine.query(&spans_sql).await?.rows;
    if spans.is_empty() {
        return Err(QueryError::Usage(format!(
            "trace {trace_id} is not in app_spans: its spans are read from OTLP files under `traces/` in the store (see otel-config/); check the id and that the OTel Collector has flushed them"
        )));
    }
    let lo = spans
        .iter()
        .map(|s| i(s, "start_time_unix_nano"))
        .min()
        .unwrap_or(0);
    let hi = spans
        .iter()
        .map(|s| i(s, "end_time_unix_nano"))
        .max()
        .unwrap_or(lo);
    let cols = "time_unix_nano, duration_ns, pid, tid, event_name, state, waker_pid, waker_tid, waker_comm, \
                span_id, correlation_method, futex_uaddr, kernel_stack_id, cuda_function";
    let window = format!(
        "time_unix_nano < {hi} AND time_unix_nano + duration_ns > {lo} AND {}",
        date_predicate(lo - 300_000_000_000, hi)
    );
    let tagged_sql =
        format!("SELECT {cols} FROM kernel_events WHERE trace_id = '{trace_id}' AND {window}");
    let mut events = engine.query(&tagged_sql).await?.rows;

    // threads of the trace: span attributes, and where tagged events came from
    let mut threads: HashSet<(i64, i64)> = HashSet::new();
    let mut span_threads: HashMap<String, HashSet<(i64, i64)>> = HashMap::new();
    for s in &spans {
        if let (Some(p), Some(t)) = (s["pid"].as_i64(), s["tid"].as_i64()) {
            threads.insert((p, t));
            span_threads
                .entry(s["span_id"].as_str().unwrap_or("").into())
                .or_default()
                .insert((p, t));
        }
    }
    for e in &events {
        let th = (i(e, "pid"), i(e, "tid"));
        threads.insert(th);
        span_threads
            .entry(e["span_id"].as_str().unwrap_or("").into())
            .or_default()
            .insert(th);
    }
    let mut untagged_sql = String::new();
    if !threads.is_empty() {
        let list: Vec<String> = threads.iter().map(|(_, t)| t.to_string()).collect();
        let pids: Vec<String> = threads
            .iter()
            .map(|(p, _)| p.to_string())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        untagged_sql = format!(
            "SELECT {cols} FROM kernel_events WHERE trace_id IS NULL AND pid IN ({}) AND tid IN ({}) AND {window}",
            pids.join(","),
            list.join(",")
        );
        let more = engine.query(&untagged_sql).await?.rows;
        events.extend(
            more.into_iter()
                .filter(|e| threads.contains(&(i(e, "pid"), i(e, "tid")))),
        );
    }

    // kernel stacks of off-CPU sleeps, to tell I/O and network waits apart
    let stack_ids: HashSet<i64> = events
        .iter()
        .filter(|e| e["event_name"] == "sched.off_cpu" && e["state"] == "sleep")
        .filter_map(|e| e["kernel_stack_id"].as_i64())
        .collect();
    let mut stack_causes: HashMap<i64, usize> = HashMap::new();
    if !stack_ids.is_empty() {
        let ids: Vec<String> = stack_ids.iter().take(500).map(|x| x.to_string()).collect();
        let q = format!(
            "SELECT stack_id, array_to_string(frames, ';') AS f FROM stacks WHERE stack_id IN ({})",
            ids.join(",")
        );
        for r in engine.query(&q).await?.rows {
            if let Some(c) = stack_cause(r["f"].as_str().unwrap_or("")) {
                stack_causes.insert(i(&r, "stack_id"), c);
            }
        }
    }

    // span tree: a span's events include its descendants'
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for s in &spans {
        if let Some(p) = s["parent_span_id"].as_str() {
            children
                .entry(p.into())
                .or_default()
                .push(s["span_id"].as_str().unwrap_or("").into());
        }
    }
    let subtree = |root: &str| {
        let mut out: HashSet<String> = HashSet::new();
        let mut stack = vec![root.to_string()];
        while let Some(x) = stack.pop() {
            if out.insert(x.clone()) {
                stack.extend(children.get(&x).cloned().unwrap_or_default());
            }
        }
        out
    };

    let mut correlation: BTreeMap<String, i64> = BTreeMap::new();
    for e in &events {
        let m = e["correlation_method"]
            .as_str()
            .unwrap_or("time_window")
            .to_string();
        *correlation.entry(m).or_default() += 1;
    }

    let mut reports = Vec::new();
    for s in &spans {
        let sid = s["span_id"].as_str().unwrap_or("").to_string();
        let (start, end) = (i(s, "start_time_unix_nano"), i(s, "end_time_unix_nano"));
        let ids = subtree(&sid);
        let mut my_threads: HashSet<(i64, i64)> = HashSet::new();
        for id in &ids {
            my_threads.extend(span_threads.get(id).cloned().unwrap_or_default());
        }
        let overlaps = |e: &Value| {
            i(e, "time_unix_nano") < end && i(e, "time_unix_nano") + i(e, "duration_ns") > start
        };
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| overlaps(e))
            .filter(|e| match e["span_id"].as_str() {
                Some(x) => ids.contains(x),
                None => my_threads.contains(&(i(e, "pid"), i(e, "tid"))),
            })
            .collect();
        let tagged = mine.iter().filter(|e| e["span_id"].is_string()).count() as i64;
        let futexes: Vec<&&Value> = mine
            .iter()
            .filter(|e| e["event_name"] == "futex.wait")
            .collect();
        // waiting for the GPU: sync calls and synchronous copies (their sleeps are not locks)
        let gpu_wait = |e: &Value| {
            e["event_name"] == "cuda.sync"
                || (e["event_name"] == "cuda.memcpy"
                    && !e["cuda_function"].as_str().unwrap_or("").contains("Async"))
        };
        let syncs: Vec<&&Value> = mine.iter().filter(|e| gpu_wait(e)).collect();
        let mut pieces = Vec::new();
        let mut holders: HashMap<(i64, i64, String), (i64, Option<i64>)> = HashMap::new();
        for e in &mine {
            let (es, ee) = (
                i(e, "time_unix_nano"),
                i(e, "time_unix_nano") + i(e, "duration_ns"),
            );
            let cause = match e["event_name"].as_str().unwrap_or("") {
                "sched.runq" => 0,
                _ if gpu_wait(e) => 1,
                "sched.off_cpu"
                    if syncs.iter().any(|s| {
                        i(s, "tid") == i(e, "tid")
                            && i(s, "time_unix_nano") < ee
                            && i(s, "time_unix_nano") + i(s, "duration_ns") > es
                    }) =>
                {
                    1
                }
                "sched.off_cpu" => {
                    let fx = futexes.iter().find(|f| {
                        i(f, "tid") == i(e, "tid")
                            && i(f, "time_unix_nano") < ee
                            && i(f, "time_unix_nano") + i(f, "duration_ns") > es
                    });
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
                        .and_then(|k| stack_causes.get(&k))
                    {
                        *c
                    } else if e["state"] == "preempted" {
                        0 // preempted: runnable all along
                    } else {
                        5
                    }
                }
                _ => continue, // futex intervals classify off-CPU time; point events carry none
            };
            pieces.push(Piece {
                start: es,
                end: ee,
                cause,
            });
        }
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
        let mut dominant = if known_thread {
            "on_cpu"
        } else {
            "unknown_thread"
        };
        let mut best = if known_thread {
            end - start - waited
        } else {
            0
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
        reports.push(SpanReport {
            span_id: sid.clone(),
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
        });
    }

    // the span to look at: the most waiting of its own (a parent's waits include its children's)
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
    let slowest = reports
        .iter()
        .max_by(|a, b| {
            self_wait(a)
                .total_cmp(&self_wait(b))
                .then(b.start_time_unix_nano.cmp(&a.start_time_unix_nano))
        })
        .filter(|r| wait(r) > 0.0);
    let summary = match slowest {
        Some(r) => {
            let mut s = format!(
                "Trace {trace_id}: span {} ({} ms) spent {} ms on {}",
                quoted(&Value::from(r.name.as_str())),
                r.duration_ms,
                match r.dominant.as_str() {
                    "lock_wait" => r.breakdown.lock_wait_ms,
                    "runqueue_wait" => r.breakdown.runqueue_wait_ms,
                    "io" => r.breakdown.io_ms,
                    "network" => r.breakdown.network_ms,
                    "gpu_sync" => r.breakdown.gpu_sync_ms,
                    "unexplained" => r.breakdown.unexplained_ms,
                    _ => r.breakdown.on_cpu_ms,
                },
                r.dominant.replace('_', " ")
            );
            if let Some(h) = r.holders.first() {
                s.push_str(&format!(
                    ", waiting for a lock{} held by {} (pid {}, tid {}), which released it after {} ms of waiting",
                    h.futex_uaddr.as_deref().map(|u| format!(" (futex {u})")).unwrap_or_default(),
                    quoted(&Value::from(h.comm.as_str())),
                    h.pid,
                    h.tid,
                    h.wait_ms
                ));
            }
            s.push_str(&format!(
                ". On-CPU {} ms, run-queue {} ms, I/O {} ms, network {} ms, unexplained {} ms.",
                r.breakdown.on_cpu_ms,
                r.breakdown.runqueue_wait_ms,
                r.breakdown.io_ms,
                r.breakdown.network_ms,
                r.breakdown.unexplained_ms
            ));
            s
        }
        None => format!(
            "Trace {trace_id}: {} spans, no kernel waits recorded inside them{}.",
            reports.len(),
            if events.is_empty() {
                " (no kernel events of its threads: was causeway-collector running, and did the app publish its context?)"
            } else {
                ""
            }
        ),
    };
    let slowest_span_id = slowest.map(|r| r.span_id.clone());
    let mut evidence = vec![
        super::causal_chain::Evidence {
            description: "The trace's spans".into(),
            sql: spans_sql,
        },
        super::causal_chain::Evidence {
            description: "Kernel events tagged with the trace at capture".into(),
            sql: tagged_sql,
        },
    ];
    if !untagged_sql.is_empty() {
        evidence.push(super::causal_chain::Evidence {
            description: "Untagged kernel events of the trace's threads in its window".into(),
            sql: untagged_sql,
        });
    }
    Ok(TraceReport {
        trace_id,
        spans: reports,
        slowest_span_id,
        correlation,
        summary,
        evidence,
        notice: super::DATA_NOTICE.to_string(),
    })
}

impl TraceReport {
    /// Text for the CLI and the MCP text content.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n", self.summary);
        for s in &self.spans {
            let b = &s.breakdown;
            out.push_str(&format!(
                "  span {} {:<24} {:>9.2} ms  cpu {:.2} | runq {:.2} | lock {:.2} | io {:.2} | net {:.2} | gpu {:.2} | unexplained {:.2}  ({} tagged, {} by window)\n",
                s.span_id,
                super::data_text(&s.name),
                s.duration_ms,
                b.on_cpu_ms,
                b.runqueue_wait_ms,
                b.lock_wait_ms,
                b.io_ms,
                b.network_ms,
                b.gpu_sync_ms,
                b.unexplained_ms,
                s.tagged_events,
                s.window_events
            ));
        }
        out
    }
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
    fn ids_are_validated() {
        assert!(parse_trace_id("0af7651916cd43dd8448eb211c80319c").is_ok());
        assert_eq!(
            parse_trace_id(" 0AF7651916CD43DD8448EB211C80319C ").unwrap(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        for bad in [
            "",
            "xyz",
            "00000000000000000000000000000000",
            "0af7651916cd43dd8448eb211c80319c' OR 1=1 --",
        ] {
            assert!(parse_trace_id(bad).unwrap_err().is_usage(), "{bad}");
        }
        assert!(parse_span_id("b7ad6b7169203331").is_ok());
        assert!(parse_span_id("b7ad6b71692033").is_err());
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
