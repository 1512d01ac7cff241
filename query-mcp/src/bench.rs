//! `causeway-query bench`: latency of each tool's analysis on a store, run in-process N times
//! on one warm engine (what a long-running MCP server sees). tests/perf/bench_query.sh runs it
//! next to DuckDB on the same files.

use std::time::Instant;

use serde_json::json;

use crate::analysis::causal_chain;
use crate::analysis::off_cpu;
use crate::engine::Engine;
use crate::engine::QueryError;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs every tool `iterations` times and prints one JSON object of p50/p99 milliseconds.
pub async fn run(engine: &Engine, pid: i64, iterations: usize) -> Result<(), QueryError> {
    let last = engine
        .query(&format!(
            "SELECT max(time_unix_nano) AS t FROM kernel_events WHERE pid = {pid}"
        ))
        .await?;
    let end = last.rows.first().and_then(|r| r["t"].as_i64()).unwrap_or(0);
    let start = end - 60_000_000_000;
    let mut results = serde_json::Map::new();
    let names = [
        "resolve_causal_chain",
        "query_off_cpu_events",
        "run_sql_window_waker_p99",
    ];
    for (k, name) in names.iter().enumerate() {
        let mut ms = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            match k {
                0 => {
                    let a = causal_chain::ChainArgs {
                        target_pid: Some(pid),
                        latency_window_s: Some(60),
                        include_stacks: Some(false),
                        trace_id: None,
                        span_id: None,
                        host: None,
                    };
                    causal_chain::run(engine, &a).await?;
                }
                1 => {
                    let a = off_cpu::OffCpuArgs {
                        pid,
                        tid: Some(pid + 1),
                        start_ts: Some(start),
                        end_ts: Some(end),
                        min_duration_ms: None,
                        host: None,
                        limit: Some(50),
                    };
                    off_cpu::run(engine, &a).await?;
                }
                _ => {
                    engine
                        .query(&format!(
                            "SELECT waker_tid, count(*) AS n, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) AS p99 \
                             FROM kernel_events WHERE pid = {pid} AND tid = {} AND time_unix_nano >= {start} AND time_unix_nano < {end} \
                             AND event_name = 'sched.off_cpu' GROUP BY waker_tid",
                            pid + 1
                        ))
                        .await?;
                }
            }
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        results.insert(
            (*name).into(),
            json!({"p50_ms": pct(&ms, 0.5), "p99_ms": pct(&ms, 0.99), "n": iterations}),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
