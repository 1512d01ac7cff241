//! What `analyze_gpu_launch_latency` answers.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::analysis::report::Report;
use crate::analysis::text::Evidence;

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

impl GpuReport {
    /// The answer for a process without CUDA records.
    pub(super) fn no_cuda(pid: i64) -> GpuReport {
        GpuReport {
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
            evidence: Vec::new(),
            notice: crate::analysis::text::DATA_NOTICE.to_string(),
        }
    }
}

impl Report for GpuReport {
    fn summary(&self) -> String {
        self.message.clone()
    }

    fn text(&self) -> String {
        let mut out = format!("{}\n", self.message);
        for x in &self.by_function {
            out.push_str(&format!(
                "  {:<24} {:<10} {:>9} calls  p50 {:>9.3} ms  p99 {:>9.3} ms  p999 {:>9.3} ms  ({}{})\n",
                x.function,
                x.class,
                x.calls,
                x.p50_ms,
                x.p99_ms,
                x.p999_ms,
                x.percentile_source,
                if x.sampled_fraction < 0.999 {
                    format!(", {:.0}% sampled", x.sampled_fraction * 100.0)
                } else {
                    String::new()
                }
            ));
        }
        for c in &self.slowest_calls {
            out.push_str(&format!(
                "  slow: tid {} ⟦{}⟧ {}\n",
                c.tid, c.comm, c.reason
            ));
        }
        out
    }
}
