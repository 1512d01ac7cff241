//! Per function: calls and p50/p99/p999, from the in-kernel histograms (launch counts scaled by
//! the share of time their probes were attached) or, for functions recorded call by call, from
//! the rows themselves.

use std::collections::BTreeMap;

use serde_json::Value;

use super::report::FunctionLatency;
use super::scope::Scope;
use crate::analysis::json::f;
use crate::analysis::json::i;
use crate::analysis::text::data_text;
use crate::analysis::text::EvidenceLog;
use crate::engine::Engine;
use crate::error::QueryError;
use causeway_proto::names::event::CUDA_ALLOC;
use causeway_proto::names::event::CUDA_LAUNCH;
use causeway_proto::names::event::CUDA_MEMCPY;
use causeway_proto::names::event::CUDA_SYNC;

/// The class of a function, from its event name.
pub fn class_of(event_name: &str) -> &'static str {
    match event_name {
        CUDA_LAUNCH => "launch",
        CUDA_SYNC => "sync",
        CUDA_MEMCPY => "memcpy",
        CUDA_ALLOC => "alloc",
        _ => "collective",
    }
}

/// A percentile from log2 buckets `(low, high, calls)` sorted by `low`, interpolated linearly
/// inside the bucket the rank falls in.
pub fn histogram_percentile(buckets: &[(i64, i64, i64)], q: f64) -> f64 {
    let total: i64 = buckets.iter().map(|b| b.2).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for &(lo, hi, n) in buckets {
        let n = n as f64;
        if seen + n >= rank {
            let within = ((rank - seen) / n).clamp(0.0, 1.0);
            return lo as f64 + (hi - lo) as f64 * within;
        }
        seen += n;
    }
    buckets.last().map(|b| b.1 as f64).unwrap_or(0.0)
}

/// Asks for the histograms and the call-by-call rows of the window, and reads them per function.
pub async fn by_function(
    engine: &dyn Engine,
    s: &Scope,
    ev: &mut EvidenceLog,
) -> Result<Vec<FunctionLatency>, QueryError> {
    let (pid, hp, start, end, dp, w) = (s.pid, &s.hp, s.start, s.end, &s.dp, &s.w);
    // histograms: every sampled call, per function and bucket
    let hist_sql = ev.quote(
        "Calls per function and log2 duration bucket (in-kernel histograms; calls / sampled_fraction estimates all calls)",
        format!(
            "SELECT cuda_function, event_name, bucket_low_ns, bucket_high_ns, sum(calls) AS calls, \
             sum(calls / sampled_fraction) AS estimated, sum(sum_ns) AS sum_ns, \
             sum(sampled_fraction * interval_ns) / sum(interval_ns) AS fraction FROM cuda_histograms \
             WHERE pid = {pid}{hp} AND time_unix_nano < {end} AND time_unix_nano + interval_ns > {start} AND {dp} \
             AND sampled_fraction > 0 GROUP BY cuda_function, event_name, bucket_low_ns, bucket_high_ns \
             ORDER BY cuda_function, bucket_low_ns"
        ),
    );
    let hist = engine.query(&hist_sql).await?.rows;
    // rows: exact percentiles for the functions recorded call by call
    let rows_sql = ev.quote(
        "Per function recorded call by call: count and exact percentiles",
        format!(
            "SELECT cuda_function, event_name, count(*) AS n, sum(duration_ns) AS total_ns, \
             approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ns) AS p50, \
             approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) AS p99, \
             approx_percentile_cont(0.999) WITHIN GROUP (ORDER BY duration_ns) AS p999 \
             FROM kernel_events WHERE {w} AND {} GROUP BY cuda_function, event_name",
            super::scope::is_cuda()
        ),
    );
    let rows = engine.query(&rows_sql).await?.rows;
    Ok(latencies(&hist, &rows))
}

/// Per function, most time first: histogram rows and call-by-call rows combined.
fn latencies(hist: &[Value], rows: &[Value]) -> Vec<FunctionLatency> {
    let mut by_function: Vec<FunctionLatency> = Vec::new();
    let mut grouped: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for h in hist {
        grouped
            .entry(h["cuda_function"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(h);
    }
    for (name, hs) in &grouped {
        let class = class_of(hs[0]["event_name"].as_str().unwrap_or(""));
        let buckets: Vec<(i64, i64, i64)> = hs
            .iter()
            .map(|h| (i(h, "bucket_low_ns"), i(h, "bucket_high_ns"), i(h, "calls")))
            .collect();
        let observed: i64 = buckets.iter().map(|b| b.2).sum();
        let estimated = hs.iter().map(|h| f(h, "estimated")).sum::<f64>().round() as i64;
        let fraction = hs.iter().map(|h| f(h, "fraction")).fold(0.0, f64::max);
        let total_ns: i64 = hs.iter().map(|h| i(h, "sum_ns")).sum();
        let exact = rows
            .iter()
            .find(|r| r["cuda_function"].as_str() == Some(name.as_str()));
        // call-by-call rows are exact when they cover every observed call (not launches)
        let (p50, p99, p999, source) = match exact {
            Some(r) if class != "launch" && i(r, "n") >= observed => {
                (f(r, "p50"), f(r, "p99"), f(r, "p999"), "rows")
            }
            _ => (
                histogram_percentile(&buckets, 0.5),
                histogram_percentile(&buckets, 0.99),
                histogram_percentile(&buckets, 0.999),
                "histogram",
            ),
        };
        by_function.push(FunctionLatency {
            function: data_text(name),
            class: class.into(),
            calls: estimated.max(observed),
            calls_observed: observed,
            sampled_fraction: fraction,
            p50_ms: p50 / 1e6,
            p99_ms: p99 / 1e6,
            p999_ms: p999 / 1e6,
            total_ms: total_ns as f64 / 1e6,
            percentile_source: source.into(),
            histogram: buckets.iter().map(|b| [b.0, b.1, b.2]).collect(),
        });
    }
    // functions with rows but no histogram rows (a store written without histograms)
    for r in rows {
        let name = r["cuda_function"].as_str().unwrap_or("?");
        if grouped.contains_key(name) {
            continue;
        }
        by_function.push(FunctionLatency {
            function: data_text(name),
            class: class_of(r["event_name"].as_str().unwrap_or("")).into(),
            calls: i(r, "n"),
            calls_observed: i(r, "n"),
            sampled_fraction: 1.0,
            p50_ms: f(r, "p50") / 1e6,
            p99_ms: f(r, "p99") / 1e6,
            p999_ms: f(r, "p999") / 1e6,
            total_ms: i(r, "total_ns") as f64 / 1e6,
            percentile_source: "rows".into(),
            histogram: Vec::new(),
        });
    }
    by_function.sort_by(|x, y| y.total_ms.total_cmp(&x.total_ms));
    by_function
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_inside_log2_buckets() {
        // 90 calls in [4096, 8192), 10 in [1 ms, 2 ms)
        let b = [(4096, 8192, 90), (1 << 20, 1 << 21, 10)];
        let p50 = histogram_percentile(&b, 0.5);
        assert!((4096.0..8192.0).contains(&p50), "{p50}");
        let p99 = histogram_percentile(&b, 0.99);
        assert!(((1 << 20) as f64..(1 << 21) as f64).contains(&p99), "{p99}");
        assert_eq!(histogram_percentile(&[], 0.5), 0.0);
        assert_eq!(histogram_percentile(&b, 1.0), (1 << 21) as f64);
    }

    #[test]
    fn classes_follow_event_names() {
        assert_eq!(class_of("cuda.launch"), "launch");
        assert_eq!(class_of("cuda.sync"), "sync");
        assert_eq!(class_of("nccl.collective"), "collective");
    }

    #[test]
    fn exact_rows_stand_for_a_function_only_when_they_cover_its_calls() {
        let hist = vec![
            serde_json::json!({"cuda_function": "cudaStreamSynchronize", "event_name": "cuda.sync",
                "bucket_low_ns": 1 << 20, "bucket_high_ns": 1 << 21, "calls": 4, "estimated": 4.0,
                "sum_ns": 6_000_000, "fraction": 1.0}),
        ];
        let rows = vec![
            serde_json::json!({"cuda_function": "cudaStreamSynchronize", "event_name": "cuda.sync",
                "n": 4, "total_ns": 6_000_000, "p50": 1.5e6, "p99": 1.9e6, "p999": 1.9e6}),
            serde_json::json!({"cuda_function": "cudaMalloc", "event_name": "cuda.alloc",
                "n": 2, "total_ns": 100_000, "p50": 5e4, "p99": 5e4, "p999": 5e4}),
        ];
        let got = latencies(&hist, &rows);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].function.as_str(), got[0].percentile_source.as_str()),
            ("cudaStreamSynchronize", "rows")
        );
        assert_eq!(got[0].p50_ms, 1.5);
        assert_eq!((got[1].class.as_str(), got[1].calls), ("alloc", 2));
    }
}
