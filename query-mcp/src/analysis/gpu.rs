//! `analyze_gpu_launch_latency`: CUDA call latency of a process. Until the CUDA probes exist
//! (issue 7) the store holds no `cuda.*` events, and the answer says so plainly.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

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
    /// Window in seconds ending at the process's last event (1..=3600, default 60).
    pub window_s: Option<i64>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GpuReport {
    /// Process asked about.
    pub pid: i64,
    /// `ok` or `no_cuda_events`.
    pub status: String,
    /// What the status means.
    pub message: String,
    /// Per CUDA event kind: count, p50/p99/p999 ms.
    pub by_function: Vec<Value>,
}

/// Runs the analysis.
pub async fn run(engine: &Engine, a: &GpuArgs) -> Result<GpuReport, QueryError> {
    if a.pid <= 0 || a.pid > i32::MAX as i64 {
        return Err(QueryError::Usage(format!("pid must be a positive process id, got {}", a.pid)));
    }
    engine.check_pid(a.pid)?;
    let window = a.window_s.unwrap_or(60);
    if !(1..=3600).contains(&window) {
        return Err(QueryError::Usage(format!("window_s must be within 1..=3600, got {window}")));
    }
    let rows = engine
        .query(&format!(
            "WITH last AS (SELECT max(time_unix_nano) AS t FROM kernel_events WHERE pid = {pid} AND event_name LIKE 'cuda.%') \
             SELECT event_name, count(*) AS n, \
             approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p50_ms, \
             approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p99_ms, \
             approx_percentile_cont(0.999) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p999_ms \
             FROM kernel_events, last WHERE pid = {pid} AND event_name LIKE 'cuda.%' \
             AND time_unix_nano >= last.t - {window} * 1000000000 GROUP BY event_name ORDER BY n DESC",
            pid = a.pid
        ))
        .await?;
    if rows.rows.is_empty() {
        return Ok(GpuReport {
            pid: a.pid,
            status: "no_cuda_events".into(),
            message: format!(
                "no CUDA events captured for pid {}: the collector records CUDA runtime/driver calls only where its CUDA probes are attached (not in this build), so GPU launch latency cannot be explained from this store",
                a.pid
            ),
            by_function: Vec::new(),
        });
    }
    let total: i64 = rows.rows.iter().map(|r| i(r, "n")).sum();
    let worst = rows.rows.iter().map(|r| f(r, "p99_ms")).fold(0.0, f64::max);
    Ok(GpuReport {
        pid: a.pid,
        status: "ok".into(),
        message: format!("{total} CUDA calls in the last {window} s; worst p99 {worst:.3} ms"),
        by_function: rows.rows,
    })
}
