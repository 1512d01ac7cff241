//! What `resolve_causal_chain` is asked.

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainArgs {
    /// Process id (tgid) that was slow, > 0. Optional with trace_id (the span's process).
    // plain "integer" in the schema (not ["integer","null"]): clients coerce CLI strings by it
    #[serde(default)]
    #[schemars(with = "i64")]
    pub target_pid: Option<i64>,
    /// Window length in seconds, 1..=300, ending at the target's last recorded event. Not used
    /// with trace_id (the span is the window).
    #[serde(default)]
    #[schemars(with = "i64")]
    pub latency_window_s: Option<i64>,
    /// Include symbolized stacks of the longest wait.
    pub include_stacks: Option<bool>,
    /// A trace (32 hex digits) whose span gives the window and the process.
    pub trace_id: Option<String>,
    /// The span (16 hex digits) of that trace; default: its longest span.
    pub span_id: Option<String>,
    /// Only this host (the collector's host partition): pids repeat across a fleet's hosts.
    pub host: Option<String>,
}
