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

mod report;
mod span;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::json::i;
use super::sql::date_predicate;
use super::text::quoted;
use super::text::Evidence;
use crate::engine::Engine;
use crate::error::QueryError;
use causeway_proto::names::event::OFF_CPU;
use report::SpanReport;
pub use report::TraceReport;

/// Arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceArgs {
    /// Trace id: 32 hex digits.
    pub trace_id: String,
}

/// The trace's kernel events, and which threads each span ran on.
struct Joined {
    /// Tagged events, then untagged events of the trace's threads in its window.
    events: Vec<Value>,
    /// Per span id: the threads it (or its tagged events) names.
    span_threads: HashMap<String, HashSet<(i64, i64)>>,
    /// The statements asked (the untagged one is empty when no thread was known).
    tagged_sql: String,
    untagged_sql: String,
}

/// The kernel events of a trace: tagged at capture, and untagged events of its threads (from
/// span attributes, and where tagged events came from) inside its window.
async fn join(engine: &dyn Engine, trace_id: &str, spans: &[Value]) -> Result<Joined, QueryError> {
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
    let mut threads: HashSet<(i64, i64)> = HashSet::new();
    let mut span_threads: HashMap<String, HashSet<(i64, i64)>> = HashMap::new();
    for s in spans {
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
    Ok(Joined {
        events,
        span_threads,
        tagged_sql,
        untagged_sql,
    })
}

/// Kernel stacks of off-CPU sleeps, read as I/O or network waits.
async fn stack_causes(
    engine: &dyn Engine,
    events: &[Value],
) -> Result<HashMap<i64, usize>, QueryError> {
    let stack_ids: HashSet<i64> = events
        .iter()
        .filter(|e| e["event_name"] == OFF_CPU && e["state"] == "sleep")
        .filter_map(|e| e["kernel_stack_id"].as_i64())
        .collect();
    let mut causes: HashMap<i64, usize> = HashMap::new();
    if !stack_ids.is_empty() {
        let ids: Vec<String> = stack_ids.iter().take(500).map(|x| x.to_string()).collect();
        let q = format!(
            "SELECT stack_id, array_to_string(frames, ';') AS f FROM stacks WHERE stack_id IN ({})",
            ids.join(",")
        );
        for r in engine.query(&q).await?.rows {
            if let Some(c) = span::stack_cause(r["f"].as_str().unwrap_or("")) {
                causes.insert(i(&r, "stack_id"), c);
            }
        }
    }
    Ok(causes)
}

/// Runs the analysis.
pub async fn run(engine: &dyn Engine, a: &TraceArgs) -> Result<TraceReport, QueryError> {
    let trace_id = super::sql::parse_trace_id(&a.trace_id)?;
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
    let joined = join(engine, &trace_id, &spans).await?;
    let stack_causes = stack_causes(engine, &joined.events).await?;
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
    let mut correlation: BTreeMap<String, i64> = BTreeMap::new();
    for e in &joined.events {
        let m = e["correlation_method"]
            .as_str()
            .unwrap_or("time_window")
            .to_string();
        *correlation.entry(m).or_default() += 1;
    }
    let ctx = span::Ctx {
        events: &joined.events,
        span_threads: &joined.span_threads,
        children: &children,
        stack_causes: &stack_causes,
    };
    let reports: Vec<SpanReport> = spans.iter().map(|s| span::explain(&ctx, s)).collect();
    let slowest = span::slowest(&reports, &children);
    let summary = summary(&trace_id, slowest, &reports, joined.events.is_empty());
    let slowest_span_id = slowest.map(|r| r.span_id.clone());
    let mut evidence = vec![
        Evidence {
            description: "The trace's spans".into(),
            sql: spans_sql,
        },
        Evidence {
            description: "Kernel events tagged with the trace at capture".into(),
            sql: joined.tagged_sql,
        },
    ];
    if !joined.untagged_sql.is_empty() {
        evidence.push(Evidence {
            description: "Untagged kernel events of the trace's threads in its window".into(),
            sql: joined.untagged_sql,
        });
    }
    Ok(TraceReport {
        trace_id,
        spans: reports,
        slowest_span_id,
        correlation,
        summary,
        evidence,
        notice: super::text::DATA_NOTICE.to_string(),
    })
}

/// One paragraph: the span to look at, what it waited on, and who held the lock.
fn summary(
    trace_id: &str,
    slowest: Option<&SpanReport>,
    reports: &[SpanReport],
    no_events: bool,
) -> String {
    let Some(r) = slowest else {
        return format!(
            "Trace {trace_id}: {} spans, no kernel waits recorded inside them{}.",
            reports.len(),
            if no_events {
                " (no kernel events of its threads: was causeway-collector running, and did the app publish its context?)"
            } else {
                ""
            }
        );
    };
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
