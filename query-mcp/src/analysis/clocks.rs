//! `estimate_clock_offsets`: how far each host's clock is from the store's, and so from each
//! other, from the collectors' `clock_sync` samples; and the rule every cross-host comparison
//! follows: two events of different hosts closer than the hosts' combined uncertainty are not
//! ordered.
//!
//! A collector writing to an S3-compatible store brackets (store clock − its clock) with timed
//! requests to the store's server (see the collector's `clocksync`), so every host of a fleet is
//! measured against the same clock. Without that (a local store) the only evidence is each
//! kernel's own NTP error bound (adjtimex `maxerror`): hosts that say they are synchronized are
//! taken to be within it of true time, hosts that say they are not are of unknown offset.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use super::json::i;
use super::report::Report;
use crate::engine::Engine;
use crate::error::QueryError;

/// Arguments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockArgs {
    /// Samples from this many seconds before the newest one (60..=86400, default 3600).
    pub window_s: Option<i64>,
    /// Only this host.
    pub host: Option<String>,
}

/// What an estimate rests on.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Timed requests to the store's server, whose Date header all hosts share.
    StoreClock,
    /// Only the kernel's NTP error bound (adjtimex maxerror); the offset is taken as 0.
    KernelNtpBound,
    /// The kernel says its clock is not synchronized and nothing else measured it.
    Unknown,
}

/// One host's clock.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HostClock {
    /// Host partition.
    pub host: String,
    /// What the estimate rests on.
    pub basis: Basis,
    /// Store clock − this host's clock, ms: add it to the host's times to put them on the
    /// fleet's common time line.
    pub offset_ms: f64,
    /// Half the width of the interval the offset is known to lie in, ms (None: unknown).
    pub uncertainty_ms: Option<f64>,
    /// The interval, ms.
    pub offset_low_ms: Option<f64>,
    /// Upper end of the interval, ms.
    pub offset_high_ms: Option<f64>,
    /// Samples against the store's clock behind the newest estimate.
    pub samples: i64,
    /// Times the host's clock was seen to step (the bounds restarted).
    pub steps_seen: i64,
    /// The kernel says NTP keeps the clock synchronized.
    pub kernel_synchronized: bool,
    /// The kernel's maximum error, ms.
    pub kernel_max_error_ms: f64,
    /// Local time of the newest sample, Unix ns.
    pub sampled_at_unix_nano: i64,
}

/// Two hosts' clocks against each other.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HostPair {
    /// First host.
    pub a: String,
    /// Second host.
    pub b: String,
    /// a's clock − b's clock, ms (estimate).
    pub skew_ms: f64,
    /// Events of a and b whose raw timestamps are closer than this are not ordered, ms (None:
    /// never ordered — an offset is unknown).
    pub raw_order_tolerance_ms: Option<f64>,
    /// The same after each host's offset is applied (what the timeline uses), ms.
    pub corrected_order_tolerance_ms: Option<f64>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClockReport {
    /// Per host, by name.
    pub hosts: Vec<HostClock>,
    /// Every pair of hosts.
    pub pairs: Vec<HostPair>,
    /// One paragraph.
    pub summary: String,
    /// The query behind the answer.
    pub evidence_sql: String,
}

/// How one event of one host compares with one of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Surely earlier.
    Before,
    /// Surely later.
    After,
    /// Closer than the clocks' combined uncertainty: either may have come first.
    Unordered,
}

impl HostClock {
    /// `t` (this host's clock) on the common time line.
    pub fn corrected(&self, t: i64) -> i64 {
        t + (self.offset_ms * 1e6) as i64
    }
}

/// Orders `ta` of host `a` against `tb` of host `b` (their own clocks), allowing for both
/// clocks' uncertainty; events of one host are ordered by their timestamps.
pub fn order(a: &HostClock, ta: i64, b: &HostClock, tb: i64) -> Order {
    let slack = if a.host == b.host {
        Some(0.0)
    } else {
        a.uncertainty_ms
            .zip(b.uncertainty_ms)
            .map(|(x, y)| (x + y) * 1e6)
    };
    let d = (a.corrected(ta) - b.corrected(tb)) as f64;
    match slack {
        Some(s) if d < -s => Order::Before,
        Some(s) if d > s => Order::After,
        _ => Order::Unordered,
    }
}

fn host_clock(r: &Value) -> HostClock {
    let ms = |k: &str| r[k].as_i64().map(|v| v as f64 / 1e6);
    let synced = r["kernel_synchronized"].as_bool().unwrap_or(false);
    let max_err = i(r, "kernel_max_error_ns") as f64 / 1e6;
    let (basis, offset, lo, hi, unc) = match (ms("offset_low_ns"), ms("offset_high_ns")) {
        (Some(lo), Some(hi)) => (
            Basis::StoreClock,
            (lo + hi) / 2.0,
            Some(lo),
            Some(hi),
            Some((hi - lo) / 2.0),
        ),
        _ if synced => (
            Basis::KernelNtpBound,
            0.0,
            Some(-max_err),
            Some(max_err),
            Some(max_err),
        ),
        _ => (Basis::Unknown, 0.0, None, None, None),
    };
    HostClock {
        host: r["host"].as_str().unwrap_or("").to_string(),
        basis,
        offset_ms: offset,
        uncertainty_ms: unc,
        offset_low_ms: lo,
        offset_high_ms: hi,
        samples: i(r, "samples"),
        steps_seen: i(r, "resets"),
        kernel_synchronized: synced,
        kernel_max_error_ms: max_err,
        sampled_at_unix_nano: i(r, "time_unix_nano"),
    }
}

fn pair(a: &HostClock, b: &HostClock) -> HostPair {
    // local_a − local_b = offset_b − offset_a
    let skew = b.offset_ms - a.offset_ms;
    let raw = match (
        a.offset_low_ms.zip(a.offset_high_ms),
        b.offset_low_ms.zip(b.offset_high_ms),
    ) {
        (Some((alo, ahi)), Some((blo, bhi))) => Some((blo - ahi).abs().max((bhi - alo).abs())),
        _ => None,
    };
    HostPair {
        a: a.host.clone(),
        b: b.host.clone(),
        skew_ms: skew,
        raw_order_tolerance_ms: raw,
        corrected_order_tolerance_ms: a.uncertainty_ms.zip(b.uncertainty_ms).map(|(x, y)| x + y),
    }
}

/// Per host, the newest sample in the window (a store-clock estimate preferred to a kernel-only
/// row); every pair of hosts.
pub async fn run(engine: &dyn Engine, a: &ClockArgs) -> Result<ClockReport, QueryError> {
    let w = a.window_s.unwrap_or(3600);
    if !(60..=86_400).contains(&w) {
        return Err(QueryError::Usage(format!(
            "window_s must be within 60..=86400, got {w}"
        )));
    }
    let hp = super::sql::host_predicate(&a.host)?;
    let sql = format!(
        "WITH newest AS (SELECT max(time_unix_nano) AS t FROM clock_sync WHERE true{hp}), \
         ranked AS (SELECT c.*, row_number() OVER (PARTITION BY host ORDER BY offset_low_ns IS NULL, time_unix_nano DESC) AS rn \
           FROM clock_sync c, newest WHERE c.time_unix_nano >= newest.t - {w}000000000{hp}) \
         SELECT host, time_unix_nano, reference, round_trip_ns, offset_low_ns, offset_high_ns, samples, resets, \
           kernel_synchronized, kernel_max_error_ns FROM ranked WHERE rn = 1 ORDER BY host"
    );
    // a store written before clock_sync existed is an empty table, not an error
    let rows = engine.query(&sql).await?.rows;
    let hosts: Vec<HostClock> = rows.iter().map(host_clock).collect();
    let mut pairs = Vec::new();
    for (k, x) in hosts.iter().enumerate() {
        for y in &hosts[k + 1..] {
            pairs.push(pair(x, y));
        }
    }
    Ok(ClockReport {
        summary: summary(&hosts, &pairs),
        hosts,
        pairs,
        evidence_sql: sql,
    })
}

fn summary(hosts: &[HostClock], pairs: &[HostPair]) -> String {
    if hosts.is_empty() {
        return "No clock samples in the store: collectors record them (table clock_sync) from this version on.".into();
    }
    let mut s = String::new();
    for h in hosts {
        let line = match (h.basis, h.uncertainty_ms) {
            (Basis::StoreClock, Some(u)) => format!(
                "{}: store clock − host clock = {:+.1} ms ± {:.1} ms ({} samples against the store's server{}).",
                h.host,
                h.offset_ms,
                u,
                h.samples,
                if h.steps_seen > 0 { format!(", clock stepped {} times", h.steps_seen) } else { String::new() }
            ),
            (Basis::KernelNtpBound, Some(u)) => {
                format!("{}: NTP-synchronized, offset within ±{u:.1} ms (kernel bound; a local store offers no shared clock).", h.host)
            }
            _ => format!("{}: clock NOT synchronized and not measured: its events are never ordered against other hosts'.", h.host),
        };
        s.push_str(&line);
        s.push(' ');
    }
    if let Some(p) = pairs
        .iter()
        .max_by(|x, y| x.skew_ms.abs().total_cmp(&y.skew_ms.abs()))
    {
        s.push_str(&format!(
            "Largest skew: {} − {} = {:+.1} ms; after correction, events of the two closer than {} are not ordered.",
            p.a,
            p.b,
            p.skew_ms,
            p.corrected_order_tolerance_ms.map(|t| format!("{t:.1} ms")).unwrap_or_else(|| "any interval".into())
        ));
    }
    s.trim_end().to_string()
}

impl Report for ClockReport {
    fn summary(&self) -> String {
        self.summary.clone()
    }

    fn text(&self) -> String {
        let tolerance = |t: Option<f64>| t.map_or_else(|| "∞".into(), |t| format!("{t:.1} ms"));
        let mut out = format!("{}\n", self.summary);
        for p in &self.pairs {
            out.push_str(&format!(
                "  {} − {}: {:+.1} ms; unordered closer than {} (corrected) / {} (raw)\n",
                p.a,
                p.b,
                p.skew_ms,
                tolerance(p.corrected_order_tolerance_ms),
                tolerance(p.raw_order_tolerance_ms),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store_clock(host: &str, lo_ms: i64, hi_ms: i64) -> HostClock {
        host_clock(
            &json!({"host": host, "offset_low_ns": lo_ms * 1_000_000, "offset_high_ns": hi_ms * 1_000_000,
            "samples": 12, "resets": 0, "kernel_synchronized": true, "kernel_max_error_ns": 16_000_000, "time_unix_nano": 1}),
        )
    }

    #[test]
    fn a_skewed_host_is_corrected_and_close_events_stay_unordered() {
        // node-b's clock runs 250 ms behind the store; node-a's is right
        let a = store_clock("node-a", -2, 2);
        let b = store_clock("node-b", 248, 252);
        assert_eq!((a.basis, b.uncertainty_ms), (Basis::StoreClock, Some(2.0)));
        let p = pair(&a, &b);
        assert_eq!(p.skew_ms, 250.0);
        assert_eq!(p.corrected_order_tolerance_ms, Some(4.0));
        assert_eq!(p.raw_order_tolerance_ms, Some(254.0));
        let t = 1_000_000_000_000;
        // b stamps 200 ms earlier than a for a truly later event: ordered after, once corrected
        assert_eq!(order(&b, t - 200_000_000, &a, t), Order::After);
        assert_eq!(order(&a, t, &b, t - 200_000_000), Order::Before);
        // 3 ms apart after correction: within 4 ms, unordered
        assert_eq!(order(&b, t - 247_000_000, &a, t), Order::Unordered);
        // one host: timestamps decide
        assert_eq!(order(&a, t, &a, t + 1), Order::Before);
    }

    #[test]
    fn hosts_without_a_shared_clock_fall_back_to_the_kernel_bound_or_to_unknown() {
        let synced = host_clock(
            &json!({"host": "x", "kernel_synchronized": true, "kernel_max_error_ns": 5_000_000, "samples": 0, "resets": 0}),
        );
        assert_eq!(
            (synced.basis, synced.uncertainty_ms),
            (Basis::KernelNtpBound, Some(5.0))
        );
        let lost = host_clock(
            &json!({"host": "y", "kernel_synchronized": false, "kernel_max_error_ns": 16_000_000_000i64, "samples": 0, "resets": 0}),
        );
        assert_eq!(lost.basis, Basis::Unknown);
        assert_eq!(
            order(&synced, 0, &lost, 10_000_000_000),
            Order::Unordered,
            "unknown offsets never order"
        );
        assert!(summary(&[synced, lost], &[]).contains("NOT synchronized"));
    }
}
