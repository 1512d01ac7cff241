//! `analyze_gpu_launch_latency`: why were a process's CUDA calls slow?
//!
//! Per function: call counts and p50/p99/p999 — from the in-kernel histograms
//! (`cuda_histograms`, launch counts scaled by the share of time their probes were attached) or,
//! for functions recorded call by call (sync, memcpy, alloc, NCCL), from the rows themselves. Then
//! the slowest calls, each explained by what the same thread did on the host meanwhile: the
//! interval overlap with its run-queue waits (and who held the CPU), off-CPU time by state, futex
//! waits and D-state. Synchronization calls are kept apart from launches: a sync call is
//! supposed to wait for the GPU; only its run-queue part after the GPU finished is host delay.

mod latency;
mod report;
mod scope;
mod slow;
mod starvation;

use schemars::JsonSchema;
use serde::Deserialize;

pub use report::GpuReport;
use scope::Scope;

use super::text::EvidenceLog;
use crate::engine::Engine;
use crate::error::QueryError;

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

/// Runs the analysis.
pub async fn run(engine: &dyn Engine, a: &GpuArgs) -> Result<GpuReport, QueryError> {
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
    let hp = super::sql::host_predicate(&a.host)?;
    let end = scope::last_cuda_end(engine, a.pid, &hp).await?;
    if end == 0 {
        return Ok(GpuReport::no_cuda(a.pid));
    }
    let s = Scope::new(a.pid, hp, end, window);
    let mut ev = EvidenceLog::default();
    let by_function = latency::by_function(engine, &s, &mut ev).await?;
    let slowest_calls = slow::slowest_calls(engine, &s, &mut ev).await?;
    let starvation = starvation::launches(engine, &s, &mut ev).await?;
    let sync_ms: f64 = by_function
        .iter()
        .filter(|x| x.class == "sync")
        .map(|x| x.total_ms)
        .sum();
    let gpu_wait = serde_json::json!({
        "sync_ms": sync_ms,
        "share_of_window": (sync_ms / s.window_ms()).min(1.0),
    });
    Ok(GpuReport {
        pid: a.pid,
        status: "ok".into(),
        message: starvation::message(&s, &by_function, &starvation, &slowest_calls, sync_ms),
        window_start_ns: s.start,
        window_end_ns: s.end,
        by_function,
        slowest_calls,
        launch_starvation: starvation.to_json(),
        gpu_wait,
        evidence: ev.0,
        notice: super::text::DATA_NOTICE.to_string(),
    })
}
