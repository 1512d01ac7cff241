//! The `collector_stats` table: per drain window and record type, what the kernel emitted,
//! dropped (ring buffer full) and filtered, and what user space shed or failed to decode.
//! Losses are data, so answers can say "coverage gap" for a window.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::array::Int64Array;
use arrow::array::Int64Builder;
use arrow::array::ListBuilder;
use arrow::array::StringArray;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use causeway_proto::table;

/// Table name and store prefix.
pub const TABLE: &str = table::COLLECTOR_STATS;

/// One row: counters of one record type over one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsRecord {
    /// Window start (UTC ns).
    pub time_unix_nano: i64,
    /// Window length.
    pub interval_ns: i64,
    /// Record type (`off_cpu`, `runq`, `proc`, …) or `all`.
    pub kind: String,
    /// Records the kernel committed to the ring buffer.
    pub emitted: i64,
    /// Records the kernel could not reserve (ring buffer full).
    pub dropped: i64,
    /// Drops per CPU.
    pub dropped_per_cpu: Vec<i64>,
    /// Intervals below the minimum duration (counted, not sent).
    pub below_threshold: i64,
    /// Records user space shed above max_events_per_second.
    pub shed: i64,
    /// Records user space could not decode.
    pub undecodable: i64,
    /// How the row's records were sampled, in words (e.g. the CUDA launch duty cycle).
    pub detail: Option<String>,
    /// The collector's own cost in the window (rows of kind `self` only).
    pub overhead: Option<crate::overhead::Window>,
}

/// Encodes stats rows (schema: [`table::collector_stats_schema`]).
pub fn stats_batch(rows: &[StatsRecord]) -> Result<RecordBatch, ArrowError> {
    let i64s = |f: &dyn Fn(&StatsRecord) -> i64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let f64s = |f: &dyn Fn(&StatsRecord) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<arrow::array::Float64Array>())
    };
    let opt_i64s = |f: &dyn Fn(&StatsRecord) -> Option<i64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let mut per_cpu = ListBuilder::new(Int64Builder::new());
    for r in rows {
        per_cpu.values().append_slice(&r.dropped_per_cpu);
        per_cpu.append(true);
    }
    RecordBatch::try_new(
        table::collector_stats_schema(),
        vec![
            i64s(&|r| r.time_unix_nano),
            i64s(&|r| r.interval_ns),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.kind.as_str()))
                    .collect::<StringArray>(),
            ),
            i64s(&|r| r.emitted),
            i64s(&|r| r.dropped),
            Arc::new(per_cpu.finish()),
            i64s(&|r| r.below_threshold),
            i64s(&|r| r.shed),
            i64s(&|r| r.undecodable),
            Arc::new(
                rows.iter()
                    .map(|r| r.detail.as_deref())
                    .collect::<StringArray>(),
            ),
            f64s(&|r| r.overhead.map(|o| o.cpu_percent)),
            opt_i64s(&|r| r.overhead.map(|o| o.rss_bytes)),
            opt_i64s(&|r| r.overhead.map(|o| o.peak_rss_bytes)),
            f64s(&|r| r.overhead.and_then(|o| o.bpf_ns_per_run)),
            f64s(&|r| r.overhead.and_then(|o| o.bpf_cpu_percent)),
        ],
    )
}
