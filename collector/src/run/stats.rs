//! `collector_stats` rows: the BPF counters' deltas per window and record type, the CUDA
//! sampling and OTLP rows.

use std::sync::atomic::Ordering;

use causeway_proto::names;

use crate::probes::cuda;
use crate::probes::wire;
use crate::probes::wire::cw_event_type as Ev;
use crate::probes::wire::cw_stat as Stat;
use crate::sink::otlp::OtlpCounters;
use crate::stats::StatsRecord;

/// Sums per-CPU counters of one slot.
pub(super) fn sum(v: &[Vec<u64>], slot: u32) -> u64 {
    v.get(slot as usize).map(|c| c.iter().sum()).unwrap_or(0)
}

/// Turns two snapshots of the BPF counters into `collector_stats` rows.
pub(super) fn stats_rows(
    prev: &[Vec<u64>],
    cur: &[Vec<u64>],
    window_start: i64,
    now: i64,
    shed: u64,
    undecodable: u64,
) -> Vec<StatsRecord> {
    let delta = |slot: u32| sum(cur, slot).saturating_sub(sum(prev, slot)) as i64;
    let mut rows = Vec::new();
    for &(ty, name) in wire::RECORD_TYPES {
        let slot = wire::dropped(ty) as usize;
        let before = |cpu: usize| {
            prev.get(slot)
                .and_then(|p| p.get(cpu))
                .copied()
                .unwrap_or(0)
        };
        let per_cpu: Vec<i64> = cur
            .get(slot)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .map(|(cpu, v)| v.saturating_sub(before(cpu)) as i64)
                    .collect()
            })
            .unwrap_or_default();
        rows.push(StatsRecord {
            time_unix_nano: window_start,
            interval_ns: now - window_start,
            kind: name.to_string(),
            emitted: delta(wire::emitted(ty)),
            dropped: delta(wire::dropped(ty)),
            dropped_per_cpu: per_cpu,
            below_threshold: match ty {
                Ev::CW_EV_OFF_CPU => delta(Stat::CW_STAT_SHORT.0),
                Ev::CW_EV_RUNQ => delta(Stat::CW_STAT_SHORT_RQ.0),
                _ => 0,
            },
            ..Default::default()
        });
    }
    // switch-ins the sched_switch handler was never called for: rebuilt (emitted) at the
    // task's next switch-out from the kernel's arrival time, or lost (dropped: boot clock)
    rows.push(StatsRecord {
        time_unix_nano: window_start,
        interval_ns: now - window_start,
        kind: names::stats::SWITCH_IN_MISSED.into(),
        emitted: delta(Stat::CW_STAT_SWITCH_IN_REBUILT.0),
        dropped: delta(Stat::CW_STAT_SWITCH_IN_LOST.0),
        ..Default::default()
    });
    rows.push(StatsRecord {
        time_unix_nano: window_start,
        interval_ns: now - window_start,
        kind: names::stats::TRACE_CONTEXT.into(),
        emitted: delta(Stat::CW_STAT_CTX_PUBLISH.0),
        ..Default::default()
    });
    rows.push(StatsRecord {
        time_unix_nano: window_start,
        interval_ns: now - window_start,
        kind: names::stats::USER_SPACE.into(),
        shed: shed as i64,
        undecodable: undecodable as i64,
        ..Default::default()
    });
    rows
}

/// The `cuda_sampling` row of `collector_stats`: launches counted while their probes were
/// attached, fast launches kept only in the histograms, calls whose entry or return was lost.
pub(super) fn cuda_row(
    prev: &[Vec<u64>],
    cur: &[Vec<u64>],
    window: &StatsRecord,
    s: cuda::WindowSampling,
) -> StatsRecord {
    let delta = |slot: u32| sum(cur, slot).saturating_sub(sum(prev, slot)) as i64;
    StatsRecord {
        time_unix_nano: window.time_unix_nano,
        interval_ns: window.interval_ns,
        kind: names::stats::CUDA_SAMPLING.into(),
        emitted: s.sampled_launches,
        dropped: delta(Stat::CW_STAT_CUDA_UNMATCHED.0) + delta(Stat::CW_STAT_CUDA_ORPHAN_RET.0),
        below_threshold: delta(Stat::CW_STAT_CUDA_FAST.0),
        detail: Some(s.detail),
        ..Default::default()
    }
}

/// The `otlp` row of `collector_stats`: what was exported and lost since the last row.
pub(super) fn otlp_row(
    c: &OtlpCounters,
    last: &mut (u64, u64),
    window: &StatsRecord,
) -> StatsRecord {
    let exported = c.exported.load(Ordering::Relaxed);
    let lost = c.dropped_queue_full.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
    let row = StatsRecord {
        time_unix_nano: window.time_unix_nano,
        interval_ns: window.interval_ns,
        kind: names::stats::OTLP.into(),
        emitted: (exported - last.0) as i64,
        dropped: (lost - last.1) as i64,
        ..Default::default()
    };
    *last = (exported, lost);
    row
}
