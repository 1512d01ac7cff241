//! Launches slowed by the host (run-queue time inside every recorded slow launch), and the
//! finding in a few sentences.

use serde_json::Value;

use super::report::FunctionLatency;
use super::report::SlowCall;
use super::scope::Scope;
use crate::analysis::json::i;
use crate::analysis::text::data_text;
use crate::analysis::text::EvidenceLog;
use crate::engine::Engine;
use crate::error::QueryError;
use causeway_proto::names::event::CUDA_LAUNCH;
use causeway_proto::names::event::RUNQ;

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Slow launches and the run-queue time inside them, by the task that held the CPU.
pub struct Starvation {
    /// Recorded slow launches.
    pub launches: i64,
    /// Their time, ns.
    pub launch_ns: i64,
    /// Run-queue time inside them, ns.
    pub runq_ns: i64,
    /// By the task that held the CPU, most first: prev_pid, prev_comm, launches, runq_ns.
    pub behind: Vec<Value>,
}

impl Starvation {
    /// The report's `launch_starvation`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "slow_launches": self.launches,
            "slow_launch_ms": ms(self.launch_ns),
            "run_queue_ms": ms(self.runq_ns),
            "behind": self.behind.iter().map(|r| serde_json::json!({
                "pid": i(r, "prev_pid"), "comm": data_text(r["prev_comm"].as_str().unwrap_or("")),
                "launches": i(r, "launches"), "ms": ms(i(r, "runq_ns")),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Over every recorded slow launch of the window (not only the slowest ten).
pub async fn launches(
    engine: &dyn Engine,
    s: &Scope,
    ev: &mut EvidenceLog,
) -> Result<Starvation, QueryError> {
    let (pid, hp, start, end, w) = (s.pid, &s.hp, s.start, s.end, &s.w);
    let starve_sql = ev.quote(
        "Run-queue time inside recorded slow launches, by the task that held the CPU",
        format!(
            "WITH l AS (SELECT tid, time_unix_nano AS s, time_unix_nano + duration_ns AS e FROM kernel_events \
             WHERE {w} AND event_name = '{CUDA_LAUNCH}') \
             SELECT k.prev_pid, max(k.prev_comm) AS prev_comm, count(DISTINCT l.s) AS launches, \
             sum(greatest(0, least(l.e, k.time_unix_nano + k.duration_ns) - greatest(l.s, k.time_unix_nano))) AS runq_ns \
             FROM l JOIN kernel_events k ON k.tid = l.tid AND k.time_unix_nano < l.e AND k.time_unix_nano + k.duration_ns > l.s \
             WHERE k.pid = {pid}{hp_k} AND k.event_name = '{RUNQ}' AND k.time_unix_nano >= {start} AND k.time_unix_nano < {end} AND {dp_k} \
             GROUP BY k.prev_pid ORDER BY runq_ns DESC LIMIT 5",
            hp_k = hp.replace("host", "k.host"),
            dp_k = s.dp.replace("date", "k.date"),
        ),
    );
    let behind = engine.query(&starve_sql).await?.rows;
    let slow = engine
        .query(&format!("SELECT count(*) AS n, sum(duration_ns) AS ns FROM kernel_events WHERE {w} AND event_name = '{CUDA_LAUNCH}'"))
        .await?
        .rows;
    let (launches, launch_ns) = slow
        .first()
        .map(|r| (i(r, "n"), i(r, "ns")))
        .unwrap_or((0, 0));
    Ok(Starvation {
        launches,
        launch_ns,
        runq_ns: behind.iter().map(|r| i(r, "runq_ns")).sum(),
        behind,
    })
}

/// The finding: calls, the busiest launch function's percentiles, slow launches and who
/// starved them, time waiting for the GPU, the slowest call.
pub fn message(
    s: &Scope,
    by_function: &[FunctionLatency],
    starvation: &Starvation,
    slowest_calls: &[SlowCall],
    sync_ms: f64,
) -> String {
    let total_calls: i64 = by_function.iter().map(|x| x.calls).sum();
    let mut message = format!(
        "{total_calls} CUDA/NCCL calls by pid {} in the {} s window",
        s.pid, s.window_s
    );
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
    if starvation.launches > 0 {
        message.push_str(&format!(
            ". {} slow launches ({:.1} ms)",
            starvation.launches,
            ms(starvation.launch_ns)
        ));
        if let Some(top) = starvation.behind.first() {
            message.push_str(&format!(
                ": {:.1} ms of it in the run queue, mostly behind pid {} ({}) — the host thread feeding the GPU was starved of CPU",
                ms(starvation.runq_ns),
                i(top, "prev_pid"),
                data_text(top["prev_comm"].as_str().unwrap_or(""))
            ));
        }
    }
    if sync_ms > 0.0 {
        message.push_str(&format!(
            ". The host waited {sync_ms:.1} ms ({:.1}% of the window) for the GPU in sync calls",
            sync_ms / s.window_ms() * 100.0
        ));
    }
    if let Some(c) = slowest_calls.first() {
        message.push_str(&format!(". Slowest: {}", c.reason));
    }
    message
}
