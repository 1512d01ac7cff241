//! `causeway-query bench`: latency of each tool's analysis on a store, run in-process N times
//! on one warm engine (what a long-running MCP server sees). tests/perf/bench_all.py (P5) runs it
//! next to DuckDB on the same files.

use std::time::Instant;

use serde_json::json;

use crate::analysis::causal_chain;
use crate::analysis::off_cpu;
use crate::engine::Engine;
use crate::error::QueryError;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs every tool `iterations` times and prints one JSON object of p50/p99 milliseconds.
/// With `host`, every per-process measurement is restricted to that host (what an agent asks
/// of a fleet store) and a fleet-wide scan (off-CPU time per host over all hours) is timed too.
pub async fn run(
    engine: &dyn Engine,
    pid: i64,
    iterations: usize,
    host: Option<String>,
    statements: &[String],
    tools: &[String],
) -> Result<(), QueryError> {
    let hp = crate::analysis::sql::host_predicate(&host)?;
    let last = engine
        .query(&format!(
            "SELECT max(time_unix_nano) AS t FROM kernel_events WHERE pid = {pid}{hp}"
        ))
        .await?;
    let end = last.rows.first().and_then(|r| r["t"].as_i64()).unwrap_or(0);
    let start = end - 60_000_000_000;
    let mut results = serde_json::Map::new();
    let mut names = vec![
        "resolve_causal_chain",
        "query_off_cpu_events",
        "run_sql_window_waker_p99",
    ];
    if host.is_some() {
        names.push("fleet_scan_off_cpu_by_host");
    }
    // (`--tool sql`: the --sql statements alone)
    if let Some(unknown) = tools
        .iter()
        .find(|t| *t != "sql" && !names.contains(&t.as_str()))
    {
        return Err(QueryError::Usage(format!(
            "--tool {unknown}: not one of {}, sql",
            names.join(", ")
        )));
    }
    let own: Vec<(String, String)> = statements
        .iter()
        .enumerate()
        .map(|(k, q)| {
            let q = q
                .replace("{pid}", &pid.to_string())
                .replace("{start}", &start.to_string())
                .replace("{end}", &end.to_string());
            (format!("sql_{}", k + 1), q)
        })
        .collect();
    for (name, q) in &own {
        let mut ms = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            engine.query(q).await?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        results.insert(
            name.clone(),
            json!({"p50_ms": pct(&ms, 0.5), "p99_ms": pct(&ms, 0.99), "n": iterations, "sql": q}),
        );
    }
    for (k, name) in names.iter().enumerate() {
        if !tools.is_empty() && !tools.iter().any(|t| t == name) {
            continue;
        }
        let iterations = if k == 3 {
            iterations.min(5)
        } else {
            iterations
        };
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
                        host: host.clone(),
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
                        host: host.clone(),
                        limit: Some(50),
                    };
                    off_cpu::run(engine, &a).await?;
                }
                2 => {
                    engine
                        .query(&format!(
                            "SELECT waker_tid, count(*) AS n, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) AS p99 \
                             FROM kernel_events WHERE pid = {pid} AND tid = {} AND time_unix_nano >= {start} AND time_unix_nano < {end} \
                             AND event_name = 'sched.off_cpu'{hp} GROUP BY waker_tid",
                            pid + 1
                        ))
                        .await?;
                }
                _ => {
                    engine
                        .query(
                            "SELECT host, count(*) AS n, sum(duration_ns) AS off_ns FROM kernel_events \
                             WHERE event_name = 'sched.off_cpu' GROUP BY host",
                        )
                        .await?;
                }
            }
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // (the first call decodes its window; later ones may find it kept)
        let first = ms.first().copied().unwrap_or(0.0);
        ms.sort_by(f64::total_cmp);
        results.insert(
            (*name).into(),
            json!({"p50_ms": pct(&ms, 0.5), "p99_ms": pct(&ms, 0.99), "first_ms": first, "n": iterations}),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
