//! The process, host and window a GPU analysis is about.

use causeway_proto::names::event::NCCL_COLLECTIVE;

use crate::analysis::json::i;
use crate::analysis::sql::date_predicate;
use crate::engine::Engine;
use crate::error::QueryError;

/// Calls of the CUDA runtime and driver (`cuda.*`) and of NCCL.
pub(super) fn is_cuda() -> String {
    format!("(event_name LIKE 'cuda.%' OR event_name = '{NCCL_COLLECTIVE}')")
}

/// The process, host and window asked about.
pub struct Scope {
    pub(super) pid: i64,
    pub(super) hp: String,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) window_s: i64,
    /// The window's partitions.
    pub(super) dp: String,
    /// The window's predicate: process, host, times, partitions.
    pub(super) w: String,
}

impl Scope {
    pub(super) fn new(pid: i64, hp: String, end: i64, window_s: i64) -> Scope {
        let start = end - window_s * 1_000_000_000;
        let dp = date_predicate(start, end);
        let w = format!(
            "pid = {pid}{hp} AND time_unix_nano >= {start} AND time_unix_nano < {end} AND {dp}"
        );
        Scope {
            pid,
            hp,
            start,
            end,
            window_s,
            dp,
            w,
        }
    }

    pub(super) fn window_ms(&self) -> f64 {
        (self.end - self.start) as f64 / 1e6
    }
}

/// End of the process's last CUDA record (rows or histograms), 0 when it has none.
pub(super) async fn last_cuda_end(
    engine: &dyn Engine,
    pid: i64,
    hp: &str,
) -> Result<i64, QueryError> {
    let last = engine
        .query(&format!(
            "SELECT max(t) AS t FROM (\
             SELECT max(time_unix_nano + duration_ns) AS t FROM kernel_events WHERE pid = {pid}{hp} AND {} \
             UNION ALL SELECT max(time_unix_nano + interval_ns) AS t FROM cuda_histograms WHERE pid = {pid}{hp})",
            is_cuda()
        ))
        .await?;
    Ok(last.rows.first().map(|r| i(r, "t")).unwrap_or(0))
}
