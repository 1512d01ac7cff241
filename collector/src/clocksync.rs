//! How far this host's clock is from a clock every host of a fleet shares: the object store's.
//!
//! Collectors on many hosts write into one bucket, and the query service puts their events on
//! one time line; it must know how much the hosts' clocks disagree, and never order two events
//! of different hosts closer than that. NTP keeps hosts within milliseconds when it works; when
//! it does not (a VM resumed, a chrony that lost its servers) nothing in the events says so.
//!
//! The store's server stamps every HTTP response with a `Date` header (one-second resolution).
//! One exchange sent at local time t0 and answered at t1 with date D bounds the offset
//! (reference − local) to [D − t1, D + 1 s − t0]. Like htpdate, each next request is timed so
//! that the server's second boundary falls, by the current estimate, in the middle of the
//! exchange: every answer then halves the interval, and a dozen samples bring it down to the
//! round trip. Between samples the interval widens by a drift allowance; a sample that
//! contradicts it (the clock was stepped) restarts it. Each sample becomes a `clock_sync` row,
//! with the kernel's own view of its NTP sync (adjtimex) next to it.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use causeway_proto::table::ClockSyncRecord;

use crate::clock::realtime_ns;

const SECOND: i64 = 1_000_000_000;

/// The kernel's view of its clock discipline (adjtimex(2) with no modes set: read only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// NTP (or PTP) keeps the clock synchronized: no `STA_UNSYNC`, no `TIME_ERROR`.
    pub synchronized: bool,
    /// Maximum error the kernel assumes, ns.
    pub max_error_ns: i64,
    /// Estimated error, ns.
    pub est_error_ns: i64,
}

/// Reads adjtimex without changing anything.
pub fn kernel_clock() -> KernelClock {
    // SAFETY: timex is plain data; modes = 0 makes adjtimex a pure read.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut t) };
    KernelClock {
        synchronized: state >= 0 && state != libc::TIME_ERROR && t.status & libc::STA_UNSYNC == 0,
        max_error_ns: t.maxerror * 1000,
        est_error_ns: t.esterror * 1000,
    }
}

/// Running bounds on (reference − local), ns.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    bounds: Option<(i64, i64)>,
    /// Local time the bounds were last narrowed or widened.
    at: i64,
    samples: i64,
    resets: i64,
    /// Drift allowance, parts per million (an undisciplined crystal: up to ~100).
    drift_ppm: i64,
}

impl Tracker {
    /// A tracker allowing `drift_ppm` between samples.
    pub fn new(drift_ppm: i64) -> Self {
        Tracker {
            drift_ppm,
            ..Default::default()
        }
    }

    /// The current bounds, widened for drift up to local time `now`.
    pub fn bounds_at(&self, now: i64) -> Option<(i64, i64)> {
        let (lo, hi) = self.bounds?;
        let slack = (now - self.at).max(0) / 1_000_000 * self.drift_ppm;
        Some((lo - slack, hi + slack))
    }

    /// Adds one exchange sent at `t0`, answered at `t1` (local ns) with the reference's whole
    /// second `date` (ns). Returns this sample's own bounds.
    pub fn add(&mut self, t0: i64, t1: i64, date: i64) -> (i64, i64) {
        let sample = (date - t1, date + SECOND - t0);
        self.samples += 1;
        self.bounds = Some(match self.bounds_at(t1) {
            Some((lo, hi)) if lo.max(sample.0) <= hi.min(sample.1) => {
                (lo.max(sample.0), hi.min(sample.1))
            }
            Some(_) => {
                self.resets += 1;
                sample
            }
            None => sample,
        });
        self.at = t1;
        sample
    }

    /// Local time to send the next request so that, by the current estimate, the reference's
    /// second boundary falls in the middle of the exchange (then its answer halves the bounds).
    pub fn next_send(&self, now: i64, round_trip: i64) -> i64 {
        let Some((lo, hi)) = self.bounds_at(now) else {
            return now;
        };
        let mid = lo + (hi - lo) / 2;
        // reference time at the exchange's middle, if sent at `now` plus a little margin
        let earliest = now + 5_000_000;
        let reference_mid = earliest + round_trip / 2 + mid;
        let boundary = (reference_mid.div_euclid(SECOND) + 1) * SECOND;
        boundary - round_trip / 2 - mid
    }

    /// Samples so far and restarts.
    pub fn counts(&self) -> (i64, i64) {
        (self.samples, self.resets)
    }
}

/// One HEAD request to the reference: (sent, answered, the `Date` header), local ns.
async fn exchange(client: &reqwest::Client, url: &str) -> anyhow::Result<(i64, i64, i64)> {
    let t0 = realtime_ns();
    let resp = client.head(url).send().await?;
    let t1 = realtime_ns();
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .ok_or_else(|| anyhow::anyhow!("{url} answered without a Date header"))?
        .to_str()?;
    let when = httpdate::parse_http_date(date)
        .map_err(|e| anyhow::anyhow!("{url}: Date {date:?}: {e}"))?;
    let secs = when.duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    Ok((t0, t1, secs * SECOND))
}

/// Samples the reference (when there is one) and the kernel's sync state, appending one row
/// per sample to `out`; runs until its task is dropped. Fast at first (one sample a second
/// until the bounds are within `2 × round trip` or 16 samples), then one every `interval`.
pub async fn sample_forever(
    reference: Option<String>,
    interval: Duration,
    out: Arc<Mutex<Vec<ClockSyncRecord>>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build();
    let client = match (reference.as_ref(), client) {
        (Some(_), Ok(c)) => Some(c),
        (Some(url), Err(e)) => {
            tracing::warn!("clock samples against {url} disabled: {e}");
            None
        }
        (None, _) => None,
    };
    let mut tracker = Tracker::new(100);
    let mut round_trip = 2_000_000i64;
    let mut warned = false;
    loop {
        let now = realtime_ns();
        let k = kernel_clock();
        let mut row = ClockSyncRecord {
            time_unix_nano: now,
            reference: reference.clone().unwrap_or_else(|| "none".into()),
            kernel_synchronized: k.synchronized,
            kernel_max_error_ns: k.max_error_ns,
            kernel_est_error_ns: k.est_error_ns,
            ..Default::default()
        };
        let mut fast = false;
        if let (Some(client), Some(url)) = (client.as_ref(), reference.as_ref()) {
            let send = tracker.next_send(now, round_trip);
            tokio::time::sleep(Duration::from_nanos(
                (send - realtime_ns()).clamp(0, 2 * SECOND) as u64,
            ))
            .await;
            match exchange(client, url).await {
                Ok((t0, t1, date)) => {
                    round_trip = t1 - t0;
                    let (slo, shi) = tracker.add(t0, t1, date);
                    let (lo, hi) = tracker.bounds_at(t1).unwrap_or((slo, shi));
                    let (samples, resets) = tracker.counts();
                    row = ClockSyncRecord {
                        time_unix_nano: t0,
                        round_trip_ns: Some(round_trip),
                        sample_low_ns: Some(slo),
                        sample_high_ns: Some(shi),
                        offset_low_ns: Some(lo),
                        offset_high_ns: Some(hi),
                        samples,
                        resets,
                        ..row
                    };
                    fast = samples < 16 && hi - lo > 2 * round_trip.max(1_000_000);
                    warned = false;
                }
                Err(e) if !warned => {
                    tracing::warn!("clock sample against {url} failed (retrying): {e:#}");
                    warned = true;
                }
                Err(_) => {}
            }
        }
        out.lock().unwrap_or_else(|p| p.into_inner()).push(row);
        if !fast {
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference `offset` ns ahead of local time that answers in the middle of the exchange.
    fn simulate(offset: i64, round_trip: i64, n: usize) -> Tracker {
        let mut t = Tracker::new(0);
        let mut now = 1_700_000_000 * SECOND + 123_456_789;
        let mut rt = round_trip;
        for _ in 0..n {
            let t0 = t.next_send(now, rt);
            let t1 = t0 + round_trip;
            let reference = t0 + round_trip / 2 + offset;
            t.add(t0, t1, reference.div_euclid(SECOND) * SECOND);
            rt = round_trip;
            now = t1 + 10_000_000;
        }
        t
    }

    #[test]
    fn adaptive_samples_converge_to_the_round_trip() {
        for offset in [0, 250_000_000, -731_000_000, 3_400_000_123] {
            let t = simulate(offset, 1_000_000, 16);
            let (lo, hi) = t.bounds_at(t.at).unwrap();
            assert!(
                lo <= offset && offset <= hi,
                "offset {offset} outside [{lo}, {hi}]"
            );
            assert!(
                hi - lo < 3_000_000,
                "offset {offset}: bounds {} ns wide after 16 samples",
                hi - lo
            );
        }
    }

    #[test]
    fn a_stepped_clock_restarts_the_bounds() {
        let mut t = simulate(0, 1_000_000, 12);
        let now = t.at + SECOND;
        // the local clock jumped 5 s back: the reference now reads 5 s ahead
        t.add(
            now,
            now + 1_000_000,
            (now + 5 * SECOND).div_euclid(SECOND) * SECOND,
        );
        let (lo, hi) = t.bounds_at(t.at).unwrap();
        assert_eq!(t.counts().1, 1);
        assert!(lo <= 5 * SECOND && 5 * SECOND <= hi, "[{lo}, {hi}]");
    }

    #[test]
    fn bounds_widen_with_drift_between_samples() {
        let mut t = Tracker::new(100);
        t.add(0, 1_000_000, 0);
        let (lo, hi) = t.bounds_at(1_000_000).unwrap();
        let (lo2, hi2) = t.bounds_at(1_000_000 + 10 * SECOND).unwrap();
        assert_eq!(
            (lo - lo2, hi2 - hi),
            (1_000_000, 1_000_000),
            "100 ppm of 10 s each side"
        );
    }

    #[test]
    fn kernel_clock_reads_without_changing_it() {
        let a = kernel_clock();
        assert!(a.max_error_ns >= 0 && a.est_error_ns >= 0, "{a:?}");
    }
}
