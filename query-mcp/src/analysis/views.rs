//! Views for humans from any window: an off-CPU flamegraph (SVG, inferno) whose stacks are rooted
//! at the blocking state, and a Chrome/Perfetto trace (JSON) with the application's spans and the
//! kernel's intervals on one timeline per thread. CLI (`flamegraph`, `timeline`) and MCP tools
//! return the same documents.

use std::collections::HashMap;
use std::collections::HashSet;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::json::i;
use super::report::Document;
use super::report::Report;
use super::sql::date_predicate;
use crate::engine::Engine;
use crate::error::QueryError;
use causeway_proto::names::event::OFF_CPU;

/// Arguments of `render_off_cpu_flamegraph`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlameArgs {
    /// Process id, > 0.
    pub pid: i64,
    /// Window in seconds ending at the process's last recorded event (1..=3600, default 60).
    pub window_s: Option<i64>,
}

/// Arguments of `export_timeline`: a trace, or a process and window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineArgs {
    /// Trace id (32 hex): its spans and the kernel events of their threads, in the trace's window.
    pub trace_id: Option<String>,
    /// Or a process id: its kernel events (and spans) in the window.
    pub pid: Option<i64>,
    /// Window in seconds ending at the process's last event (with pid; 1..=300, default 10).
    pub window_s: Option<i64>,
}

/// (start, end) of the last `window_s` seconds of `pid`'s recorded events.
async fn pid_window(
    engine: &dyn Engine,
    pid: i64,
    window_s: i64,
) -> Result<(i64, i64), QueryError> {
    if pid <= 0 || pid > i32::MAX as i64 {
        return Err(QueryError::Usage(format!(
            "pid must be a positive process id, got {pid}"
        )));
    }
    engine.check_pid(pid)?;
    let r = engine
        .query(&format!("SELECT max(time_unix_nano + duration_ns) AS end_ns FROM kernel_events WHERE pid = {pid}"))
        .await?;
    let end = r.rows.first().map(|r| i(r, "end_ns")).unwrap_or(0);
    if end == 0 {
        return Err(QueryError::Usage(format!(
            "no kernel events are recorded for pid {pid}"
        )));
    }
    Ok((end - window_s * 1_000_000_000, end))
}

/// Frames of stacks by id (innermost first), deduplicated.
async fn frames_by_id(
    engine: &dyn Engine,
    ids: &HashSet<i64>,
) -> Result<HashMap<i64, Vec<String>>, QueryError> {
    let mut out = HashMap::new();
    let ids: Vec<String> = ids.iter().take(2000).map(|x| x.to_string()).collect();
    for chunk in ids.chunks(500) {
        let q = format!(
            "SELECT stack_id, frames FROM stacks WHERE stack_id IN ({})",
            chunk.join(",")
        );
        for r in engine.query(&q).await?.rows {
            let frames = r["frames"].as_array().map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            });
            out.entry(i(&r, "stack_id"))
                .or_insert(frames.unwrap_or_default());
        }
    }
    Ok(out)
}

/// Folded stacks of a process's off-CPU time: `thread;state;outermost;…;innermost weight_us`.
pub async fn folded_off_cpu(engine: &dyn Engine, a: &FlameArgs) -> Result<Vec<String>, QueryError> {
    let window_s = a.window_s.unwrap_or(60);
    if !(1..=3600).contains(&window_s) {
        return Err(QueryError::Usage(format!(
            "window_s must be within 1..=3600, got {window_s}"
        )));
    }
    let (start, end) = pid_window(engine, a.pid, window_s).await?;
    let q = format!(
        "SELECT comm, state, sum(duration_ns) AS ns, kernel_stack_id, user_stack_id FROM kernel_events \
         WHERE pid = {} AND event_name = '{OFF_CPU}' AND time_unix_nano >= {start} AND time_unix_nano < {end} \
         AND {} GROUP BY comm, state, kernel_stack_id, user_stack_id",
        a.pid,
        date_predicate(start, end)
    );
    let rows = engine.query(&q).await?.rows;
    let ids: HashSet<i64> = rows
        .iter()
        .flat_map(|r| [r["kernel_stack_id"].as_i64(), r["user_stack_id"].as_i64()])
        .flatten()
        .collect();
    let frames = frames_by_id(engine, &ids).await?;
    let clean = |s: &str| super::text::data_text(s).replace([';', ' '], "_");
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut path = vec![
            clean(r["comm"].as_str().unwrap_or("?")),
            format!("[{}]", r["state"].as_str().unwrap_or("?")),
        ];
        // outermost first: user frames (outermost last in the table), then kernel frames
        let mut any = false;
        for key in ["user_stack_id", "kernel_stack_id"] {
            if let Some(f) = r[key].as_i64().and_then(|id| frames.get(&id)) {
                path.extend(f.iter().rev().map(|x| clean(x)));
                any |= !f.is_empty();
            }
        }
        if !any {
            path.push("[no stack: below the stack threshold]".replace(' ', "_"));
        }
        let us = (i(r, "ns") / 1000).max(1);
        out.push(format!("{} {us}", path.join(";")));
    }
    Ok(out)
}

/// The off-CPU flamegraph as SVG.
pub async fn flamegraph_svg(
    engine: &dyn Engine,
    a: &FlameArgs,
) -> Result<(String, usize), QueryError> {
    let lines = folded_off_cpu(engine, a).await?;
    if lines.is_empty() {
        return Err(QueryError::Usage(format!(
            "pid {} has no off-CPU intervals in the window",
            a.pid
        )));
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!("Off-CPU time of pid {} (µs), by thread and state", a.pid);
    opts.count_name = "µs".into();
    opts.colors =
        inferno::flamegraph::color::Palette::Basic(inferno::flamegraph::color::BasicPalette::Blue);
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(|s| s.as_str()), &mut svg)
        .map_err(|e| QueryError::Runtime(format!("rendering the flamegraph: {e}")))?;
    Ok((String::from_utf8_lossy(&svg).into_owned(), lines.len()))
}

/// `render_off_cpu_flamegraph` answer (the SVG itself is the embedded resource).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FlameReport {
    /// Process.
    pub pid: i64,
    /// Distinct (thread, state, stack) rows drawn.
    pub stacks: usize,
    /// Size of the SVG.
    pub svg_bytes: usize,
    /// URI of the embedded SVG resource.
    pub uri: String,
    /// The SVG.
    #[serde(skip)]
    #[schemars(skip)]
    pub svg: Document,
}

impl Report for FlameReport {
    fn summary(&self) -> String {
        format!(
            "off-CPU flamegraph of pid {}: {} distinct stacks ({} bytes of SVG)",
            self.pid, self.stacks, self.svg_bytes
        )
    }

    fn document(&self) -> Option<&Document> {
        Some(&self.svg)
    }
}

/// The off-CPU flamegraph as a report carrying its SVG.
pub async fn flamegraph(engine: &dyn Engine, a: &FlameArgs) -> Result<FlameReport, QueryError> {
    let (svg, stacks) = flamegraph_svg(engine, a).await?;
    let uri = super::report::document_uri("flamegraph/off-cpu", &a.pid.to_string(), "svg");
    Ok(FlameReport {
        pid: a.pid,
        stacks,
        svg_bytes: svg.len(),
        uri: uri.clone(),
        svg: Document {
            uri,
            mime: "image/svg+xml",
            text: svg,
        },
    })
}

/// `export_timeline` answer (the JSON document itself is the embedded resource).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TimelineReport {
    /// Timeline events (spans, kernel intervals, thread names).
    pub events: usize,
    /// Kernel events were capped.
    pub truncated: bool,
    /// Window start, Unix ns.
    pub window_start_ns: i64,
    /// Window end, Unix ns.
    pub window_end_ns: i64,
    /// URI of the embedded JSON resource.
    pub uri: String,
    /// The Chrome trace JSON.
    #[serde(skip)]
    #[schemars(skip)]
    pub json: Document,
}

impl Report for TimelineReport {
    fn summary(&self) -> String {
        format!(
            "timeline with {} events (Chrome trace JSON; open in https://ui.perfetto.dev)",
            self.events
        )
    }

    fn document(&self) -> Option<&Document> {
        Some(&self.json)
    }
}

/// The timeline as a report carrying its Chrome trace JSON.
pub async fn export_timeline(
    engine: &dyn Engine,
    a: &TimelineArgs,
) -> Result<TimelineReport, QueryError> {
    let t = timeline(engine, a).await?;
    let other = &t["otherData"];
    let uri = super::report::document_uri("timeline", "timeline", "json");
    Ok(TimelineReport {
        events: t["traceEvents"].as_array().map_or(0, |a| a.len()),
        truncated: other["truncated"].as_bool().unwrap_or(false),
        window_start_ns: other["window_start_unix_ns"].as_i64().unwrap_or(0),
        window_end_ns: other["window_end_unix_ns"].as_i64().unwrap_or(0),
        uri: uri.clone(),
        json: Document {
            uri,
            mime: "application/json",
            text: t.to_string(),
        },
    })
}

/// A Chrome trace (`chrome://tracing`, https://ui.perfetto.dev) with spans and kernel intervals.
async fn timeline(engine: &dyn Engine, a: &TimelineArgs) -> Result<Value, QueryError> {
    let (pid_filter, start, end, spans) = match (&a.trace_id, a.pid) {
        (Some(t), _) => {
            let t = super::sql::parse_trace_id(t)?;
            let spans = engine
                .query(&format!(
                    "SELECT span_id, parent_span_id, name, service_name, pid, tid, host_name, start_time_unix_nano, end_time_unix_nano \
                     FROM app_spans WHERE trace_id = '{t}'"
                ))
                .await?
                .rows;
            if spans.is_empty() {
                return Err(QueryError::Usage(format!("trace {t} is not in app_spans")));
            }
            let s = spans
                .iter()
                .map(|s| i(s, "start_time_unix_nano"))
                .min()
                .unwrap_or(0);
            let e = spans
                .iter()
                .map(|s| i(s, "end_time_unix_nano"))
                .max()
                .unwrap_or(s);
            // the spans' threads, per host when the spans name theirs (tids repeat across hosts);
            // a host name from a span is traced data: checked like any host argument, else unused
            let mut tids: std::collections::BTreeMap<String, HashSet<i64>> = Default::default();
            for s in &spans {
                if let Some(tid) = s["tid"].as_i64() {
                    let host =
                        super::sql::host_predicate(&s["host_name"].as_str().map(String::from))
                            .unwrap_or_default();
                    tids.entry(host).or_default().insert(tid);
                }
            }
            let mut filter = format!("trace_id = '{t}'");
            for (host, set) in &tids {
                let list = set
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                filter.push_str(&format!(" OR (tid IN ({list}){host})"));
            }
            let filter = format!("({filter})");
            (filter, s, e, spans)
        }
        (None, Some(pid)) => {
            let w = a.window_s.unwrap_or(10);
            if !(1..=300).contains(&w) {
                return Err(QueryError::Usage(format!(
                    "window_s must be within 1..=300, got {w}"
                )));
            }
            let (s, e) = pid_window(engine, pid, w).await?;
            (format!("pid = {pid}"), s, e, Vec::new())
        }
        (None, None) => {
            return Err(QueryError::Usage(
                "give trace_id, or pid (and window_s)".into(),
            ))
        }
    };
    let q = format!(
        "SELECT time_unix_nano, duration_ns, pid, tid, comm, event_name, state, waker_comm, waker_tid, span_id, \
         device, daddr, futex_uaddr, host FROM kernel_events WHERE {pid_filter} AND time_unix_nano < {end} \
         AND time_unix_nano + duration_ns > {start} AND {} ORDER BY time_unix_nano LIMIT 20000",
        date_predicate(start - 300_000_000_000, end)
    );
    let events = engine.query(&q).await?.rows;
    let mut fleet = Fleet::of(engine, &events, &spans).await?;
    let us = |ns: i64| ns as f64 / 1000.0;
    let mut out = Vec::new();
    let mut names: HashMap<(i64, i64), String> = HashMap::new();
    for e in &events {
        let host = e["host"].as_str();
        let (p, t) = (fleet.track(host, i(e, "pid")), i(e, "tid"));
        names
            .entry((p, t))
            .or_insert_with(|| super::text::data_text(e["comm"].as_str().unwrap_or("")));
        let name = match (e["event_name"].as_str().unwrap_or("?"), e["state"].as_str()) {
            (OFF_CPU, Some(s)) => format!("off-CPU ({s})"),
            (n, _) => n.to_string(),
        };
        let mut args = serde_json::Map::new();
        for k in [
            "waker_comm",
            "waker_tid",
            "span_id",
            "device",
            "daddr",
            "futex_uaddr",
        ] {
            if !e[k].is_null() {
                args.insert(k.into(), e[k].clone());
            }
        }
        let dur = i(e, "duration_ns");
        let mut ev = json!({"name": name, "cat": "kernel", "pid": p, "tid": t, "ts": us(fleet.time(host, i(e, "time_unix_nano"))), "args": args});
        if dur > 0 {
            ev["ph"] = json!("X");
            ev["dur"] = json!(us(dur));
        } else {
            ev["ph"] = json!("i");
            ev["s"] = json!("t");
        }
        out.push(ev);
    }
    for s in &spans {
        let host = s["host_name"].as_str();
        let (p, t) = (
            fleet.track(host, s["pid"].as_i64().unwrap_or(0)),
            s["tid"].as_i64().unwrap_or(0),
        );
        out.push(json!({
            "name": super::text::data_text(s["name"].as_str().unwrap_or("span")), "cat": "span", "ph": "X",
            "pid": p, "tid": t, "ts": us(fleet.time(host, i(s, "start_time_unix_nano"))),
            "dur": us(i(s, "end_time_unix_nano") - i(s, "start_time_unix_nano")),
            "args": {"span_id": s["span_id"], "parent_span_id": s["parent_span_id"], "service": s["service_name"],
                     "start_vs_parent_on_another_host": fleet.start_vs_parent(s, &spans)},
        }));
    }
    for ((p, t), n) in names {
        out.push(
            json!({"name": "thread_name", "ph": "M", "pid": p, "tid": t, "args": {"name": n}}),
        );
    }
    for ((host, pid), track) in &fleet.tracks {
        out.push(json!({"name": "process_name", "ph": "M", "pid": track, "args": {"name": format!("pid {pid} on {host}")}}));
    }
    Ok(
        json!({"traceEvents": out, "displayTimeUnit": "ms", "otherData": {
            "source": "causeway", "window_start_unix_ns": start, "window_end_unix_ns": end, "kernel_events": events.len(),
            "truncated": events.len() >= 20000, "notice": super::text::DATA_NOTICE, "clocks": fleet.note,
        }}),
    )
}

/// Hosts on one timeline: each host's times moved onto the store's clock by its estimated
/// offset, each (host, pid) its own process track (pids repeat across hosts). One host: nothing
/// moves.
struct Fleet {
    clocks: HashMap<String, super::clocks::HostClock>,
    hosts: Vec<String>,
    tracks: std::collections::BTreeMap<(String, i64), i64>,
    note: Value,
}

impl Fleet {
    async fn of(
        engine: &dyn Engine,
        events: &[Value],
        spans: &[Value],
    ) -> Result<Fleet, QueryError> {
        let mut hosts: Vec<String> = events
            .iter()
            .filter_map(|e| e["host"].as_str())
            .chain(spans.iter().filter_map(|s| s["host_name"].as_str()))
            .map(String::from)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        hosts.sort();
        let mut fleet = Fleet {
            clocks: HashMap::new(),
            hosts,
            tracks: Default::default(),
            note: Value::Null,
        };
        if fleet.hosts.len() > 1 {
            let r = super::clocks::run(engine, &super::clocks::ClockArgs::default()).await?;
            fleet.note = json!({
                "hosts": fleet.hosts, "offsets": r.hosts, "pairs": r.pairs,
                "reading": "times are on the store's clock (each host's offset applied); events of two hosts closer than the pair's corrected_order_tolerance_ms are not ordered; a host without an offset is drawn on its own clock",
            });
            fleet.clocks = r.hosts.into_iter().map(|h| (h.host.clone(), h)).collect();
        }
        Ok(fleet)
    }

    /// The track (Chrome trace pid) of `pid` on `host`.
    fn track(&mut self, host: Option<&str>, pid: i64) -> i64 {
        match host.and_then(|h| self.hosts.iter().position(|x| x == h)) {
            Some(k) if self.hosts.len() > 1 => {
                // pid_max is at most 2^22: one block of track ids per host
                let id = k as i64 * (1 << 22) + pid;
                self.tracks.insert((self.hosts[k].clone(), pid), id);
                id
            }
            _ => pid,
        }
    }

    /// For a span whose parent ran on another host: whether it surely started after the parent
    /// (`after`), surely before (`before`: a clock the estimate missed, or a broken context), or
    /// closer than the two clocks allow to tell (`unordered`); null otherwise.
    fn start_vs_parent(&self, span: &Value, spans: &[Value]) -> Value {
        let Some(parent) = spans
            .iter()
            .find(|p| p["span_id"] == span["parent_span_id"] && !span["parent_span_id"].is_null())
        else {
            return Value::Null;
        };
        let (Some(a), Some(b)) = (
            span["host_name"].as_str().and_then(|h| self.clocks.get(h)),
            parent["host_name"]
                .as_str()
                .and_then(|h| self.clocks.get(h)),
        ) else {
            return Value::Null;
        };
        if a.host == b.host {
            return Value::Null;
        }
        use super::clocks::Order;
        match super::clocks::order(
            a,
            i(span, "start_time_unix_nano"),
            b,
            i(parent, "start_time_unix_nano"),
        ) {
            Order::After => json!("after"),
            Order::Before => json!("before"),
            Order::Unordered => json!("unordered"),
        }
    }

    /// `t` of `host` on the common time line.
    fn time(&self, host: Option<&str>, t: i64) -> i64 {
        match host.and_then(|h| self.clocks.get(h)) {
            Some(c) if c.basis == super::clocks::Basis::StoreClock => c.corrected(t),
            _ => t,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn inferno_renders_folded_lines() {
        let lines = [
            "main;[sleep];clone;worker;futex_wait 1200",
            "main;[disk];clone;writer;io_schedule 300",
        ];
        let mut opts = inferno::flamegraph::Options::default();
        let mut svg = Vec::new();
        inferno::flamegraph::from_lines(&mut opts, lines.iter().copied(), &mut svg).unwrap();
        let s = String::from_utf8(svg).unwrap();
        assert!(s.starts_with("<?xml") && s.contains("futex_wait") && s.contains("io_schedule"));
    }
}
