//! The capture loop: wait for records and drain them within the in-flight budget, and at the end
//! of each tick rescan for libraries, close the stats window when it is due, read the cgroups'
//! throttling counters, and hand a batch to the writer.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use causeway_proto::names;
use causeway_proto::table::CudaHistRecord;

use super::capture::Capture;
use super::probes::ProbeSets;
use super::ring;
use super::stacks::StackWork;
use super::stats;
use super::writer::Batch;
use super::writer::Writer;
use crate::clock::realtime_ns;
use crate::clock::BootToWall;
use crate::config::Config;
use crate::overhead;
use crate::probes::offcpu;
use crate::probes::settings::Settings;
use crate::stats::StatsRecord;
use crate::throttle::ThrottleWatch;

/// The stats window being counted.
struct StatsWindow {
    /// The BPF counters at its start (empty: zero, as the programs load).
    prev: Vec<Vec<u64>>,
    start_ns: i64,
    started: Instant,
    prev_overhead: overhead::Reading,
    /// Decoded, shed and undecodable records reported so far.
    reported: (u64, u64, u64),
}

/// The loop's state between ticks.
pub(super) struct Drain<'a> {
    cfg: &'a Config,
    in_flight: &'a AtomicUsize,
    writer: &'a Writer,
    stack_tx: std::sync::mpsc::SyncSender<StackWork>,
    wake_bytes: usize,
    bpf_stats: Option<overhead::BpfStatsSampler>,
    window: StatsWindow,
    throttle: Option<ThrottleWatch>,
    last_throttle_poll: Option<Instant>,
    last_scan: Instant,
    stacks_skipped: u64,
    drain_paused: u64,
}

impl<'a> Drain<'a> {
    pub(super) fn new(
        cfg: &'a Config,
        settings: &Settings,
        in_flight: &'a AtomicUsize,
        writer: &'a Writer,
        stack_tx: std::sync::mpsc::SyncSender<StackWork>,
    ) -> Self {
        // BPF run time is counted for a share of each second (see overhead.rs)
        let bpf_stats = cfg
            .bpf_stats
            .then(|| overhead::BpfStatsSampler::new(cfg.bpf_stats_sampling));
        let counted = bpf_stats.as_ref().map_or(0, |s| s.counted_ns());
        // CFS throttling is only in the cgroups' counters (no tracepoint): read on a timer
        let throttle = (!cfg.cpu_throttle_interval.is_zero()).then(|| {
            use crate::throttle::Scope;
            ThrottleWatch::new(match (&cfg.cgroup, cfg.pids.is_empty()) {
                (Some(dir), _) => Scope::Subtree(PathBuf::from(dir)),
                (None, false) => Scope::Pids(cfg.pids.clone()),
                (None, true) => Scope::All,
            })
        });
        Drain {
            cfg,
            in_flight,
            writer,
            stack_tx,
            wake_bytes: settings.wake_bytes(),
            window: StatsWindow {
                prev: Vec::new(),
                start_ns: realtime_ns(),
                started: Instant::now(),
                prev_overhead: overhead::read(counted),
                reported: (0, 0, 0),
            },
            bpf_stats,
            throttle,
            last_throttle_poll: None,
            last_scan: Instant::now(),
            stacks_skipped: 0,
            drain_paused: 0,
        }
    }

    /// Events decoded and not yet in the sink.
    fn waiting(&self, capture: &RefCell<Capture>) -> usize {
        self.in_flight.load(Ordering::Relaxed) + capture.borrow().events.len()
    }

    /// Ticks until `stop` says so; the last tick detaches the probes and drains everything.
    pub(super) fn until_stopped(
        &mut self,
        sets: &mut ProbeSets<'_>,
        rb: &libbpf_rs::RingBuffer<'_>,
        capture: &Rc<RefCell<Capture>>,
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        loop {
            self.wait_and_drain(sets, rb, capture, stop)?;
            let stopping = stop();
            if !stopping && self.last_scan.elapsed() >= self.cfg.trace_context.scan_interval {
                sets.scan();
                self.last_scan = Instant::now();
            }
            if stopping {
                // detach first, so the last drain below takes every record the counters count
                sets.detach();
            }
            capture.borrow_mut().clock = BootToWall::sample();
            // drain up to the in-flight budget, none while the writer is a full budget behind:
            // the rest waits in the ring buffer (or is dropped there, counted)
            let budget = self.cfg.ring_buffer.max_in_flight;
            let waiting = self.waiting(capture);
            if stopping {
                rb.consume().context("draining the ring buffer")?;
            } else if waiting < budget {
                ring::drain(rb, budget - waiting)?;
            } else {
                self.drain_paused += 1;
            }
            let (stats, hists) =
                if stopping || self.window.started.elapsed() >= self.cfg.storage.flush_interval {
                    self.close_window(sets, &capture.borrow())?
                } else {
                    (Vec::new(), Vec::new())
                };
            self.poll_throttle(stopping, capture);
            if !self.send(capture, stats, hists) || stopping {
                return Ok(()); // (a writer that died reports its error when joined)
            }
        }
    }

    /// One tick: waits a whole drain interval (a stop request is seen within it) unless a
    /// burst wakes it, or the CUDA launch probes' duty cycle or the BPF stats sampling switch
    /// sooner; takes what has arrived at every wake, so a drain thread that lost its CPU to the
    /// workload catches up as soon as it runs, while the ring buffer still has room.
    fn wait_and_drain(
        &mut self,
        sets: &mut ProbeSets<'_>,
        rb: &libbpf_rs::RingBuffer<'_>,
        capture: &RefCell<Capture>,
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        let tick_end = Instant::now() + self.cfg.ring_buffer.drain_interval;
        let budget = self.cfg.ring_buffer.max_in_flight;
        while Instant::now() < tick_end && !stop() {
            let mut wait = tick_end.saturating_duration_since(Instant::now());
            if let Some(b) = &self.bpf_stats {
                wait = wait.min(b.due_in());
            }
            if let Some(cp) = &sets.cuda {
                wait = wait.min(cp.due_in());
            }
            if self.waiting(capture) < budget {
                ring::wait_for_records(rb, wait, self.wake_bytes);
            } else {
                // the writer is a full budget behind: the ring buffer holds the rest meanwhile
                std::thread::sleep(wait.min(Duration::from_millis(10)));
            }
            if let Some(cp) = sets.cuda.as_mut() {
                cp.tick();
            }
            if let Some(b) = self.bpf_stats.as_mut() {
                b.tick();
            }
            let waiting = self.waiting(capture);
            if waiting < budget {
                ring::drain(rb, budget - waiting)?;
            }
        }
        Ok(())
    }

    /// The window's `collector_stats` rows and CUDA histograms; starts the next window.
    fn close_window(
        &mut self,
        sets: &mut ProbeSets<'_>,
        c: &Capture,
    ) -> Result<(Vec<StatsRecord>, Vec<CudaHistRecord>)> {
        let w = &mut self.window;
        let cur = offcpu::read_stats(&sets.offcpu)?;
        let now = realtime_ns();
        let (decoded_reported, shed_reported, undecodable_reported) = w.reported;
        let mut rows = stats::stats_rows(
            &w.prev,
            &cur,
            w.start_ns,
            now,
            c.shed - shed_reported,
            c.undecodable - undecodable_reported,
        );
        let dropped: i64 = rows.iter().map(|s| s.dropped).sum();
        // the collector's own cost in this window
        let cur_overhead = overhead::read(self.bpf_stats.as_ref().map_or(0, |s| s.counted_ns()));
        let decoded = c.counts().0;
        rows.push(StatsRecord {
            time_unix_nano: w.start_ns,
            interval_ns: now - w.start_ns,
            kind: names::stats::SELF.into(),
            emitted: (decoded - decoded_reported) as i64,
            dropped,
            overhead: Some(overhead::window(&w.prev_overhead, &cur_overhead)),
            ..Default::default()
        });
        if dropped > 0 || c.shed > shed_reported {
            tracing::warn!(
                dropped,
                shed = c.shed - shed_reported,
                "lost records in this window (ring buffer full / rate limit); see collector_stats"
            );
        }
        let mut hists = Vec::new();
        match sets.take_cuda_window() {
            Some(Ok((h, sampling))) => {
                let window = StatsRecord {
                    time_unix_nano: w.start_ns,
                    interval_ns: now - w.start_ns,
                    ..Default::default()
                };
                rows.push(stats::cuda_row(&w.prev, &cur, &window, sampling));
                hists = h;
            }
            Some(Err(e)) => tracing::warn!("CUDA histograms not read this window: {e:#}"),
            None => {}
        }
        *w = StatsWindow {
            prev: cur,
            start_ns: now,
            started: Instant::now(),
            prev_overhead: cur_overhead,
            reported: (decoded, c.shed, c.undecodable),
        };
        Ok((rows, hists))
    }

    /// The cgroups' throttling counters, every `cpu_throttle_interval` and at the end.
    fn poll_throttle(&mut self, stopping: bool, capture: &RefCell<Capture>) {
        let every = self.cfg.cpu_throttle_interval;
        if let Some(t) = self.throttle.as_mut() {
            if stopping || self.last_throttle_poll.is_none_or(|p| p.elapsed() >= every) {
                capture.borrow_mut().push_events(t.poll(realtime_ns()));
                self.last_throttle_poll = Some(Instant::now());
            }
        }
    }

    /// Hands the decoded events (and raw stacks, to the stack thread) over; false when the
    /// writer is gone.
    fn send(
        &mut self,
        capture: &RefCell<Capture>,
        stats: Vec<StatsRecord>,
        hists: Vec<CudaHistRecord>,
    ) -> bool {
        let (mut batch, work) = {
            let mut c = capture.borrow_mut();
            let work = std::mem::take(&mut c.stack_work);
            while let Ok(v) = self.writer.spares.try_recv() {
                c.recycle(v);
            }
            let batch = Batch {
                events: c.take_events(),
                stacks: Vec::new(),
                stats,
                hists,
            };
            (batch, work)
        };
        self.in_flight.fetch_add(
            batch.events.len() + work.items.len() + work.functions.len(),
            Ordering::Relaxed,
        );
        if !(work.items.is_empty()
            && work.functions.is_empty()
            && work.exited.is_empty()
            && work.maps.is_empty())
        {
            use std::sync::mpsc::TrySendError;
            if let Err(TrySendError::Full(w) | TrySendError::Disconnected(w)) =
                self.stack_tx.try_send(work)
            {
                // the stack thread is behind: keep the events, without stack ids, and say so
                self.stacks_skipped += (w.items.len() + w.functions.len()) as u64;
                batch.events.extend(w.items.into_iter().map(|(e, _, _)| e));
                batch.events.extend(w.functions.into_iter().map(|(e, _)| e));
            }
        }
        batch.is_empty() || self.writer.tx.blocking_send(batch).is_ok()
    }

    /// Ends the loop: the stack thread's channel closes. Returns (events written without stack
    /// ids, ticks the drain paused for the writer).
    pub(super) fn finish(self) -> (u64, u64) {
        (self.stacks_skipped, self.drain_paused)
    }
}
