//! What `explain_trace` answers.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::analysis::report::Report;
use crate::analysis::text::Evidence;

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
    pub evidence: Vec<Evidence>,
    /// How to read traced strings.
    pub notice: String,
}

impl Report for TraceReport {
    fn summary(&self) -> String {
        let mut out = format!("{}\n", self.summary);
        for s in &self.spans {
            let b = &s.breakdown;
            out.push_str(&format!(
                "  span {} {:<24} {:>9.2} ms  cpu {:.2} | runq {:.2} | lock {:.2} | io {:.2} | net {:.2} | gpu {:.2} | unexplained {:.2}  ({} tagged, {} by window)\n",
                s.span_id,
                crate::analysis::text::data_text(&s.name),
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

    /// The summary, then each span's lock holders, one line each.
    fn text(&self) -> String {
        let mut out = self.summary();
        for s in &self.spans {
            for h in &s.holders {
                out.push_str(&format!(
                    "  lock holder for span {}: {} pid {} tid {} ({} ms{})\n",
                    s.span_id,
                    crate::analysis::text::quote(&h.comm),
                    h.pid,
                    h.tid,
                    h.wait_ms,
                    h.futex_uaddr
                        .as_deref()
                        .map(|u| format!(", futex {u}"))
                        .unwrap_or_default()
                ));
            }
        }
        out
    }
}
