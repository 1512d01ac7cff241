//! Which process and window a chain is about: the arguments checked, and the window ending at
//! the process's last recorded event or given by a trace's span.

use serde::Deserialize;

use super::args::ChainArgs;
use crate::analysis::sql::date_predicate;
use crate::analysis::sql::host_predicate;
use crate::analysis::sql::parse_span_id;
use crate::analysis::sql::parse_trace_id;
use crate::answer::or_zero;
use crate::engine::Engine;
use crate::error::QueryError;

/// The process and window the questions are about.
#[derive(Debug, Clone)]
pub struct Target {
    /// The process.
    pub pid: i64,
    /// ` AND host = '…'`, or empty.
    pub hp: String,
    /// Window start and end, Unix ns.
    pub start: i64,
    /// Window end (exclusive).
    pub end: i64,
    /// `end - start`, at least 1.
    pub window_ns: i64,
    /// The window's predicate: the process, host, time range and partitions.
    pub predicate: String,
    /// Stacks were asked for.
    pub include_stacks: bool,
}

impl Target {
    /// The predicate for process `pid` on the target's host, over the partitions of [from, to).
    pub fn process_dates(&self, pid: i64, from: i64, to: i64) -> String {
        format!("pid = {pid}{} AND {}", self.hp, date_predicate(from, to))
    }
}

/// What the arguments ask about, or why not.
pub enum Resolved {
    /// The window to analyse.
    Window(Target),
    /// The process has no recorded event.
    NoEvents(i64),
}

/// Checks the arguments and finds the window.
pub async fn resolve(engine: &dyn Engine, a: &ChainArgs) -> Result<Resolved, QueryError> {
    let hp = host_predicate(&a.host)?;
    let span = match &a.trace_id {
        Some(t) => Some(span_window(engine, t, a.span_id.as_deref()).await?),
        None if a.span_id.is_some() => {
            return Err(QueryError::Usage("span_id needs trace_id".into()));
        }
        None => None,
    };
    let pid = match (a.target_pid, span) {
        (Some(p), _) => p,
        (None, Some((p, _, _))) => p,
        (None, None) => {
            return Err(QueryError::Usage(
                "target_pid is required (or give trace_id)".into(),
            ))
        }
    };
    if pid <= 0 || pid > i32::MAX as i64 {
        return Err(QueryError::Usage(format!(
            "target_pid must be a positive process id, got {pid}"
        )));
    }
    engine.check_pid(pid)?;
    let latency_window_s = match (a.latency_window_s, span) {
        (_, Some(_)) => 1,
        (Some(w), None) => w,
        (None, None) => {
            return Err(QueryError::Usage(
                "latency_window_s is required (1..=300) unless trace_id is given".into(),
            ))
        }
    };
    if !(1..=300).contains(&latency_window_s) {
        return Err(QueryError::Usage(format!(
            "latency_window_s must be within 1..=300, got {latency_window_s}"
        )));
    }
    let (start, end) = match span {
        Some((_, s, e)) => (s, e),
        None => {
            let end = last_event_end(engine, pid, &hp).await?;
            (end - latency_window_s * 1_000_000_000, end)
        }
    };
    if end == 0 {
        return Ok(Resolved::NoEvents(pid));
    }
    let predicate = format!(
        "pid = {pid}{hp} AND time_unix_nano >= {start} AND time_unix_nano < {end} AND {}",
        date_predicate(start, end)
    );
    Ok(Resolved::Window(Target {
        pid,
        hp,
        start,
        end,
        window_ns: (end - start).max(1),
        predicate,
        include_stacks: a.include_stacks.unwrap_or(false),
    }))
}

#[derive(Deserialize)]
struct SpanRow {
    #[serde(deserialize_with = "or_zero")]
    span_id: String,
    pid: Option<i64>,
    #[serde(deserialize_with = "or_zero")]
    start_time_unix_nano: i64,
    #[serde(deserialize_with = "or_zero")]
    end_time_unix_nano: i64,
}

#[derive(Deserialize)]
struct Pid {
    #[serde(deserialize_with = "or_zero")]
    pid: i64,
}

#[derive(Deserialize)]
struct Time {
    #[serde(deserialize_with = "or_zero")]
    t: i64,
}

/// The window of a trace's span and its process: (pid, start, end).
async fn span_window(
    engine: &dyn Engine,
    trace: &str,
    span: Option<&str>,
) -> Result<(i64, i64, i64), QueryError> {
    let trace_id = parse_trace_id(trace)?;
    let span_filter = match span {
        Some(s) => format!(" AND span_id = '{}'", parse_span_id(s)?),
        None => String::new(),
    };
    let q = format!(
        "SELECT span_id, pid, start_time_unix_nano, end_time_unix_nano FROM app_spans \
         WHERE trace_id = '{trace_id}'{span_filter} ORDER BY duration_ns DESC LIMIT 1"
    );
    let Some(row) = engine.rows::<SpanRow>(&q).await?.into_iter().next() else {
        return Err(QueryError::Usage(format!(
            "span not found in app_spans for trace {trace_id}{span_filter}"
        )));
    };
    let (start, end) = (row.start_time_unix_nano, row.end_time_unix_nano);
    let pid = match row.pid {
        Some(p) => p,
        None => {
            // no process.pid on the span: the process its tagged kernel events came from
            let sid = &row.span_id;
            let q = format!(
                "SELECT pid FROM kernel_events WHERE span_id = '{}' AND trace_id = '{trace_id}' AND {} LIMIT 1",
                parse_span_id(sid)?,
                date_predicate(start - 300_000_000_000, end)
            );
            engine.rows::<Pid>(&q).await?.first().map(|r| r.pid).ok_or_else(|| {
                QueryError::Usage(format!(
                    "the span {sid} carries no process.pid and no kernel event is tagged with it: pass target_pid"
                ))
            })?
        }
    };
    Ok((pid, start, end))
}

/// End of the process's last recorded event, 0 when it has none.
///
/// A bare `max(...) WHERE pid = P` reads the pid column of every file. The store's newest time
/// comes from file statistics alone, and files are pruned by their time range, so the search
/// looks back from there in growing steps (10 s, 5 min, 1 h, 1 day) before scanning everything.
async fn last_event_end(engine: &dyn Engine, pid: i64, hp: &str) -> Result<i64, QueryError> {
    let newest = engine
        .rows::<Time>("SELECT max(time_unix_nano) AS t FROM kernel_events")
        .await?;
    let newest = newest.first().map_or(0, |r| r.t);
    if newest == 0 {
        return Ok(0);
    }
    for back_s in [10i64, 300, 3_600, 86_400, i64::MAX / 2_000_000_000] {
        let from = newest.saturating_sub(back_s.saturating_mul(1_000_000_000));
        let r = engine
            .rows::<Time>(&format!(
                "SELECT max(time_unix_nano + duration_ns) AS t FROM kernel_events \
                 WHERE pid = {pid}{hp} AND time_unix_nano >= {from}"
            ))
            .await?;
        let t = r.first().map_or(0, |r| r.t);
        if t > 0 {
            return Ok(t);
        }
    }
    Ok(0)
}
