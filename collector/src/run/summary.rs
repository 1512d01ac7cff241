//! What a run captured and wrote, and its final report.

use std::time::Duration;

use causeway_proto::KernelEvent;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::capture::Capture;
use super::stats::sum;
use crate::probes::wire;
use crate::probes::wire::cw_stat as Stat;
use crate::sink::otlp::OtlpCounters;
use crate::sink::parquet::SinkTotals;

/// What a run captured and wrote.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Records decoded, per record type (index = wire type).
    pub decoded: [u64; wire::EV_MAX],
    /// Records the kernel dropped (ring buffer full), per type.
    pub dropped: [u64; wire::EV_MAX],
    /// Switch-ins of traced tasks the sched_switch handler was not called for: (rebuilt at the
    /// next switch-out, lost).
    pub switch_ins_missed: (u64, u64),
    /// Records shed above max_events_per_second.
    pub shed: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// What the writer wrote.
    pub written: SinkTotals,
    /// Wall time between attach and the final drain.
    pub elapsed: Duration,
    /// Copies of decoded events, when asked for.
    pub events: Vec<KernelEvent>,
    /// Where the data went.
    pub store: String,
    /// Log records the OTLP endpoint accepted, and those dropped (queue full or failed).
    pub otlp: Option<(u64, u64)>,
    /// Files whose trace-context writer was probed.
    pub trace_context_probes: Vec<String>,
    /// Files whose CUDA/NCCL functions were probed.
    pub cuda_probes: Vec<String>,
}

impl RunSummary {
    /// What the capture decoded and the kernel counted, and what the writer wrote.
    pub(super) fn of(
        c: Capture,
        final_stats: &[Vec<u64>],
        written: SinkTotals,
        otlp: Option<Arc<OtlpCounters>>,
    ) -> RunSummary {
        let mut dropped = [0u64; wire::EV_MAX];
        for &(ty, _) in wire::RECORD_TYPES {
            dropped[ty.0 as usize] = sum(final_stats, wire::dropped(ty));
        }
        let lost = |c: &OtlpCounters| {
            c.dropped_queue_full.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed)
        };
        RunSummary {
            decoded: c.decoded,
            dropped,
            switch_ins_missed: (
                sum(final_stats, Stat::CW_STAT_SWITCH_IN_REBUILT.0),
                sum(final_stats, Stat::CW_STAT_SWITCH_IN_LOST.0),
            ),
            shed: c.shed,
            undecodable: c.undecodable,
            written,
            events: c.kept.unwrap_or_default(),
            otlp: otlp.map(|o| (o.exported.load(Ordering::Relaxed), lost(&o))),
            ..Default::default()
        }
    }

    /// One line per record type with rates and losses.
    pub fn report(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "captured for {:.1}s into {}: {} rows in {} files ({} bytes)\n",
            secs, self.store, self.written.rows, self.written.files, self.written.bytes
        );
        for &(ty, name) in wire::RECORD_TYPES {
            let t = ty.0 as usize;
            out.push_str(&format!(
                "  {:<14} {:>9} decoded ({:>9.0}/s), {} dropped in kernel\n",
                name,
                self.decoded[t],
                self.decoded[t] as f64 / secs,
                self.dropped[t]
            ));
        }
        out.push_str(&format!(
            "  shed by rate limit: {}, undecodable: {}\n",
            self.shed, self.undecodable
        ));
        let (rebuilt, lost) = self.switch_ins_missed;
        if rebuilt + lost > 0 {
            out.push_str(&format!(
                "  switch-ins the scheduler tracepoint did not report: {rebuilt} rebuilt from the kernel's arrival times, {lost} lost\n"
            ));
        }
        if let Some((exported, dropped)) = self.otlp {
            out.push_str(&format!(
                "  OTLP: {exported} log records exported, {dropped} dropped\n"
            ));
        }
        if !self.cuda_probes.is_empty() {
            out.push_str(&format!(
                "  CUDA probed in: {}\n",
                self.cuda_probes.join("; ")
            ));
        }
        if !self.trace_context_probes.is_empty() {
            out.push_str(&format!(
                "  trace context probed in: {}\n",
                self.trace_context_probes.join(", ")
            ));
        }
        out
    }
}
