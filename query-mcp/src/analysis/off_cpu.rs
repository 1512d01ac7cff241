//! `query_off_cpu_events`: a process's off-CPU intervals with totals by state and by waker,
//! percentiles and the tail.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use super::json::f;
use super::json::i;
use super::report::Report;
use super::sql::date_predicate;
use crate::engine::Engine;
use crate::error::QueryError;
use causeway_proto::names::event::OFF_CPU;

/// Arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffCpuArgs {
    /// Process id (tgid), > 0.
    pub pid: i64,
    /// Only this thread.
    pub tid: Option<i64>,
    /// Window start, Unix nanoseconds (UTC).
    pub start_ts: Option<i64>,
    /// Window end, Unix nanoseconds (UTC).
    pub end_ts: Option<i64>,
    /// Only intervals at least this long, milliseconds.
    pub min_duration_ms: Option<f64>,
    /// Only this host (the collector's host partition): pids repeat across a fleet's hosts.
    pub host: Option<String>,
    /// Rows to return (1..=max_rows, default 50), longest first.
    pub limit: Option<i64>,
}

/// Off-CPU time of one state class.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StateTotal {
    /// preempted | sleep | disk | other
    pub state: String,
    /// Intervals.
    pub count: i64,
    /// Total milliseconds.
    pub total_ms: f64,
}

/// Off-CPU time ended by one waker.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WakerTotal {
    /// Waker process id.
    pub waker_pid: i64,
    /// Waker thread id.
    pub waker_tid: i64,
    /// Waker thread name (traced data).
    pub waker_comm: String,
    /// Intervals it ended.
    pub count: i64,
    /// Total milliseconds.
    pub total_ms: f64,
}

/// The answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OffCpuReport {
    /// Process asked about.
    pub pid: i64,
    /// Intervals matching the filters.
    pub total_events: i64,
    /// Their total, milliseconds.
    pub total_off_cpu_ms: f64,
    /// Totals by state class.
    pub by_state: Vec<StateTotal>,
    /// Totals by waker (top 10).
    pub by_waker: Vec<WakerTotal>,
    /// Median interval, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// The five longest intervals.
    pub tail: Vec<Value>,
    /// Intervals, longest first, up to `limit`.
    pub rows: Vec<Value>,
    /// More rows existed than returned.
    pub truncated: bool,
    /// How to read traced strings.
    pub notice: String,
}

fn validate(a: &OffCpuArgs, max_rows: usize) -> Result<(), QueryError> {
    let bad = |m: String| Err(QueryError::Usage(m));
    if a.pid <= 0 || a.pid > i32::MAX as i64 {
        return bad(format!("pid must be a positive process id, got {}", a.pid));
    }
    if let Some(t) = a.tid {
        if t <= 0 || t > i32::MAX as i64 {
            return bad(format!("tid must be a positive thread id, got {t}"));
        }
    }
    if let (Some(s), Some(e)) = (a.start_ts, a.end_ts) {
        if s >= e {
            return bad(format!("start_ts ({s}) must be before end_ts ({e})"));
        }
    }
    if let Some(m) = a.min_duration_ms {
        if !m.is_finite() || m < 0.0 {
            return bad(format!(
                "min_duration_ms must be a non-negative number, got {m}"
            ));
        }
    }
    if let Some(l) = a.limit {
        if l < 1 || l as usize > max_rows {
            return bad(format!("limit must be within 1..={max_rows}, got {l}"));
        }
    }
    Ok(())
}

/// What the questions below read. The window holds only the rows of the filter, so the
/// questions asked of it need no predicate, nor the columns only a predicate reads.
const WINDOW_COLUMNS: &[&str] = &[
    "time_unix_nano",
    "duration_ns",
    "pid",
    "tid",
    "comm",
    "state",
    "waker_pid",
    "waker_tid",
    "waker_comm",
    "cpu",
    "kernel_stack_id",
    "user_stack_id",
    "host",
];

/// Runs the analysis.
pub async fn run(engine: &dyn Engine, a: &OffCpuArgs) -> Result<OffCpuReport, QueryError> {
    validate(a, engine.security().max_rows)?;
    engine.check_pid(a.pid)?;
    let mut w = format!(
        "event_name = '{OFF_CPU}' AND pid = {}{}",
        a.pid,
        super::sql::host_predicate(&a.host)?
    );
    if let Some(t) = a.tid {
        w += &format!(" AND tid = {t}");
    }
    if let Some(s) = a.start_ts {
        w += &format!(" AND time_unix_nano >= {s}");
    }
    if let Some(e) = a.end_ts {
        w += &format!(" AND time_unix_nano < {e}");
    }
    if let (Some(s), Some(e)) = (a.start_ts, a.end_ts) {
        w += &format!(" AND {}", date_predicate(s, e));
    }
    if let Some(m) = a.min_duration_ms {
        w += &format!(" AND duration_ns >= {}", (m * 1e6) as i64);
    }
    // four questions of the same rows: decode them once, ask them at once
    let window = engine.window(WINDOW_COLUMNS, &w).await?;
    let (engine, w) = match window.as_ref() {
        Some(window) => (window.as_ref(), "TRUE".to_string()),
        None => (engine, w),
    };
    let columns =
        "time_unix_nano, duration_ns, duration_ns / 1e6 AS duration_ms, pid, tid, comm, state, \
                   waker_pid, waker_tid, waker_comm, cpu, kernel_stack_id, user_stack_id, host";
    let limit = a.limit.unwrap_or(50);
    let summary_sql = format!(
        "SELECT count(*) AS n, sum(duration_ns) / 1e6 AS total_ms, \
         approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p50, \
         approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p99, \
         approx_percentile_cont(0.999) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p999 \
         FROM kernel_events WHERE {w}"
    );
    let by_state_sql = format!(
        "SELECT state, count(*) AS n, sum(duration_ns) / 1e6 AS total_ms FROM kernel_events \
         WHERE {w} GROUP BY state ORDER BY total_ms DESC"
    );
    let by_waker_sql = format!(
        "SELECT waker_pid, waker_tid, waker_comm, count(*) AS n, sum(duration_ns) / 1e6 AS total_ms \
         FROM kernel_events WHERE {w} AND waker_tid IS NOT NULL \
         GROUP BY waker_pid, waker_tid, waker_comm ORDER BY total_ms DESC LIMIT 10"
    );
    let rows_sql = format!(
        "SELECT {columns} FROM kernel_events WHERE {w} ORDER BY duration_ns DESC LIMIT {limit}"
    );
    let (summary, by_state, by_waker, rows) = futures::try_join!(
        engine.query(&summary_sql),
        engine.query(&by_state_sql),
        engine.query(&by_waker_sql),
        engine.query(&rows_sql),
    )?;
    let s = summary.rows.first().cloned().unwrap_or(Value::Null);
    let by_state = by_state
        .rows
        .iter()
        .map(|r| StateTotal {
            state: r["state"].as_str().unwrap_or("unknown").to_string(),
            count: i(r, "n"),
            total_ms: f(r, "total_ms"),
        })
        .collect();
    let by_waker = by_waker
        .rows
        .iter()
        .map(|r| WakerTotal {
            waker_pid: i(r, "waker_pid"),
            waker_tid: i(r, "waker_tid"),
            waker_comm: super::text::data_text(r["waker_comm"].as_str().unwrap_or("")),
            count: i(r, "n"),
            total_ms: f(r, "total_ms"),
        })
        .collect();
    let total_events = i(&s, "n");
    Ok(OffCpuReport {
        pid: a.pid,
        total_events,
        total_off_cpu_ms: f(&s, "total_ms"),
        by_state,
        by_waker,
        p50_ms: f(&s, "p50"),
        p99_ms: f(&s, "p99"),
        p999_ms: f(&s, "p999"),
        tail: rows.rows.iter().take(5).cloned().collect(),
        truncated: rows.truncated || total_events > rows.rows.len() as i64,
        rows: rows.rows,
        notice: super::text::DATA_NOTICE.into(),
    })
}

impl Report for OffCpuReport {
    fn summary(&self) -> String {
        if self.total_events == 0 {
            return format!(
                "No off-CPU intervals recorded for pid {} with these filters.",
                self.pid
            );
        }
        let top = self
            .by_waker
            .first()
            .map(|w| {
                format!(
                    "; top waker ⟦{}⟧ (tid {}) ended {:.1} ms",
                    w.waker_comm, w.waker_tid, w.total_ms
                )
            })
            .unwrap_or_default();
        let states: Vec<String> = self
            .by_state
            .iter()
            .map(|s| format!("{} {:.1} ms", s.state, s.total_ms))
            .collect();
        format!(
            "pid {}: {} off-CPU intervals, {:.1} ms in all ({}); p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms{top}.",
            self.pid,
            self.total_events,
            self.total_off_cpu_ms,
            states.join(", "),
            self.p50_ms,
            self.p99_ms,
            self.p999_ms
        )
    }
}
