//! `causeway-collector run`: load and attach the probes, drain the ring buffer on a timer,
//! decode, and hand batches to the Parquet writer; on SIGINT/SIGTERM (or `--duration`) drain
//! once more and flush everything before exiting.
//!
//! Threads: capture (this thread: owns the skeleton and the ring buffer) → bounded channel →
//! writer (a small tokio runtime: Parquet encoding, object-store puts, retention).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use causeway_proto::table::CudaHistRecord;
use causeway_proto::KernelEvent;
use causeway_proto::StackRecord;
use causeway_store::StoreLocation;
use libbpf_rs::RingBufferBuilder;
use tokio::sync::mpsc;

use crate::clock::realtime_ns;
use crate::clock::BootToWall;
use crate::config::Config;
use crate::probes::blockio;
use crate::probes::cgroup;
use crate::probes::cuda;
use crate::probes::discovery;
use crate::probes::offcpu;
use crate::probes::offcpu::wire;
use crate::probes::tcp;
use crate::probes::tracectx;
use crate::sink::otlp::OtlpCounters;
use crate::sink::otlp::OtlpExporter;
use crate::sink::parquet::ParquetSink;
use crate::sink::parquet::SinkSettings;
use crate::sink::parquet::SinkTotals;
use crate::sink::retention;
use crate::stacks::StackTable;
use crate::stats::StatsRecord;

/// Set by SIGINT/SIGTERM.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// True once SIGINT/SIGTERM arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Installs SIGINT/SIGTERM handlers that request a clean stop (final drain and flush).
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Extra controls for embedding `run` (demo, tests).
#[derive(Default)]
pub struct RunOptions {
    /// Created once the probes are attached (tests wait for it).
    pub ready_file: Option<PathBuf>,
    /// Called once the probes are attached.
    pub on_ready: Option<Box<dyn FnOnce() + Send>>,
    /// Another way to request a stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Keep a copy of every decoded event in the summary (demo).
    pub keep_events: bool,
}

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

/// A batch from the capture thread to the writer.
struct Batch {
    events: Vec<KernelEvent>,
    stacks: Vec<StackRecord>,
    stats: Vec<StatsRecord>,
    hists: Vec<CudaHistRecord>,
}

/// Events whose raw stacks the stack thread resolves, and processes that exited (whose raw
/// addresses mean nothing any more).
#[derive(Default)]
struct StackWork {
    items: Vec<(KernelEvent, Vec<u64>, Vec<u64>)>,
    /// Events with a function address to name (CUDA kernels launched).
    functions: Vec<(KernelEvent, u64)>,
    exited: Vec<i32>,
}

/// Resolves stacks off the capture thread: normalization and symbolization can take hundreds of
/// milliseconds the first time a binary is seen, and the ring buffer must keep draining.
fn spawn_stack_thread(
    writer: mpsc::Sender<Batch>,
) -> Result<(
    std::sync::mpsc::SyncSender<StackWork>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<StackWork>(8);
    let handle = std::thread::Builder::new()
        .name("cw-stacks".into())
        .spawn(move || {
            let mut table = StackTable::new(wire::MAX_STACK);
            for work in rx {
                let mut events = Vec::with_capacity(work.items.len());
                for (mut ev, kernel, user) in work.items {
                    ev.kernel_stack_id = table.kernel(&kernel, ev.time_unix_nano);
                    ev.user_stack_id = table.user(ev.pid, &user, ev.time_unix_nano);
                    events.push(ev);
                }
                for (mut ev, addr) in work.functions {
                    ev.cuda_kernel = table.function_name(ev.pid, addr);
                    events.push(ev);
                }
                for pid in work.exited {
                    table.forget_process(pid);
                }
                let batch = Batch {
                    events,
                    stacks: table.take_new(),
                    stats: Vec::new(),
                    hists: Vec::new(),
                };
                if writer.blocking_send(batch).is_err() {
                    break;
                }
            }
        })?;
    Ok((tx, handle))
}

/// Waits for records up to `timeout`: in the ring buffer's epoll, which the programs wake only
/// once `wake_bytes` are unread (bpf/common.bpf.h), so a burst is read early and a quiet
/// collector sleeps whole drain intervals instead of waking every few ms. The epoll is
/// level-triggered, though: it answers at once when a record landed between the last drain and
/// the wait; then the rest of the wait is paced like a timer (at most `PACE`), so a steady
/// stream does not turn the loop into a spin of one-record drains.
fn wait_for_records(rb: &libbpf_rs::RingBuffer<'_>, timeout: Duration, wake_bytes: usize) {
    const PACE: Duration = Duration::from_millis(10);
    let started = Instant::now();
    // whole ms, rounded up: a sub-ms remainder rounded down to 0 would return at once, and the
    // caller would spin until its deadline
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: a valid epoll fd owned by `rb`, one event slot on the stack; EINTR just returns.
    let n = unsafe { libc::epoll_wait(rb.epoll_fd(), &mut ev, 1, ms) };
    let left = timeout.saturating_sub(started.elapsed());
    if n > 0 && !left.is_zero() && unread_bytes(rb) < wake_bytes {
        std::thread::sleep(left.min(PACE));
    }
}

/// Bytes written to the ring buffer and not yet read.
fn unread_bytes(rb: &libbpf_rs::RingBuffer<'_>) -> usize {
    use libbpf_rs::AsRawLibbpf;
    // SAFETY: the ring buffer object lives as long as `rb`; ring 0 is the one map it reads.
    unsafe {
        let ring = libbpf_sys::ring_buffer__ring(rb.as_libbpf_object().as_ptr(), 0);
        if ring.is_null() {
            return 0;
        }
        libbpf_sys::ring__avail_data_size(ring) as usize
    }
}

/// Takes at most `max` records from the ring buffer (through its callback).
fn drain(rb: &libbpf_rs::RingBuffer<'_>, max: usize) -> Result<()> {
    let n = rb.consume_raw_n(max);
    if n < 0 {
        return Err(std::io::Error::from_raw_os_error(-n)).context("draining the ring buffer");
    }
    Ok(())
}

/// Emptied event batches on their way back from the writer to be refilled: one, handed back
/// while the next fills (a second slot, for the stack thread's small batches, measured 61-65
/// MiB peak RSS at 50k events/s against 62 with one).
const SPARE_BATCHES: usize = 1;

/// A batch allocation larger than this (events) is freed rather than kept for refilling: one
/// burst must not pin its high-water mark for the rest of the run.
const SPARE_MAX_EVENTS: usize = 16 * 1024;

/// Decoding state shared with the ring-buffer callback.
pub(crate) struct Capture {
    clock: BootToWall,
    stack_work: StackWork,
    events: Vec<KernelEvent>,
    /// An emptied batch to fill next (see `recycle`).
    spare: Option<Vec<KernelEvent>>,
    kept: Option<Vec<KernelEvent>>,
    decoded: [u64; wire::EV_MAX],
    shed: u64,
    undecodable: u64,
    limit_per_sec: u64,
    window_start: Instant,
    window_count: u64,
    containers: crate::containers::Containers,
}

impl Capture {
    /// The capture path without a kernel behind it (bench-ingest): same decoding and enrichment.
    /// `run` starts from it, with its event keeping and rate limit.
    pub(crate) fn detached() -> Capture {
        Capture {
            clock: BootToWall::sample(),
            stack_work: StackWork::default(),
            events: Vec::new(),
            spare: None,
            kept: None,
            decoded: [0; wire::EV_MAX],
            shed: 0,
            undecodable: 0,
            limit_per_sec: 0,
            window_start: Instant::now(),
            window_count: 0,
            containers: crate::containers::Containers::new(),
        }
    }

    /// Takes the events decoded so far.
    pub(crate) fn take_events(&mut self) -> Vec<KernelEvent> {
        let next = match self.spare.take() {
            // the next batch is likely as large as this one: a smaller spare would regrow
            // (copies, and fresh pages) while it fills
            Some(v) if v.capacity() >= self.events.len() => v,
            _ => Vec::with_capacity(self.events.len()),
        };
        std::mem::replace(&mut self.events, next)
    }

    /// Hands back a taken batch's allocation, emptied by the writer, to be filled again: a
    /// fresh one costs page faults for every event (~430 bytes each). The larger of two is
    /// kept: a small one (the stack thread's) in place of the capture's own would make every
    /// later batch regrow from it.
    pub(crate) fn recycle(&mut self, mut events: Vec<KernelEvent>) {
        events.clear();
        let larger = self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() < events.capacity());
        if larger && events.capacity() <= SPARE_MAX_EVENTS {
            self.spare = Some(events);
        }
    }

    /// Events made in user space (cgroup counters), kept like decoded ones.
    pub(crate) fn push_events(&mut self, events: Vec<KernelEvent>) {
        if let Some(k) = self.kept.as_mut() {
            k.extend(events.iter().cloned());
        }
        self.events.extend(events);
    }

    /// Records decoded so far and records that did not decode.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.decoded.iter().sum(), self.undecodable)
    }

    /// Decodes and enriches one ring-buffer record (the ring buffer callback; bench-ingest).
    pub(crate) fn on_record(&mut self, data: &[u8]) {
        if self.limit_per_sec > 0 && !offcpu::is_lifecycle(data) {
            if self.window_start.elapsed() >= Duration::from_secs(1) {
                self.window_start = Instant::now();
                self.window_count = 0;
            }
            self.window_count += 1;
            if self.window_count > self.limit_per_sec {
                self.shed += 1;
                return;
            }
        }
        let decoded = match offcpu::decode(data, &self.clock) {
            Some(d) => d,
            None => {
                self.undecodable += 1;
                return;
            }
        };
        let t = data.first().copied().unwrap_or(0) as usize;
        if t < wire::EV_MAX {
            self.decoded[t] += 1;
        }
        let mut decoded = decoded;
        let ev_mut = match &mut decoded {
            offcpu::Decoded::Event(ev) => ev,
            offcpu::Decoded::WithStacks { event, .. } => event,
            offcpu::Decoded::WithFunction { event, .. } => event,
        };
        let owner = self.containers.lookup(ev_mut.cgroup_id as u64);
        (ev_mut.container_id, ev_mut.pod_uid) = (owner.container_id, owner.pod_uid);
        if let Some(neighbour) = ev_mut.prev_cgroup_id.filter(|&c| c > 0) {
            ev_mut.prev_container_id = self.containers.lookup(neighbour as u64).container_id;
        }
        let ev = match decoded {
            offcpu::Decoded::Event(ev) => {
                if ev.event_name == causeway_proto::names::event::PROCESS_EXIT {
                    self.stack_work.exited.push(ev.pid);
                }
                ev
            }
            offcpu::Decoded::WithStacks {
                event,
                kernel,
                user,
            } => {
                if let Some(k) = self.kept.as_mut() {
                    k.push(event.clone());
                }
                self.stack_work.items.push((event, kernel, user));
                return;
            }
            offcpu::Decoded::WithFunction { event, addr } => {
                if let Some(k) = self.kept.as_mut() {
                    k.push(event.clone());
                }
                self.stack_work.functions.push((event, addr));
                return;
            }
        };
        if let Some(k) = self.kept.as_mut() {
            k.push(ev.clone());
        }
        self.events.push(ev);
    }
}

fn host_name(cfg: &Config) -> String {
    if !cfg.host.is_empty() {
        return cfg.host.clone();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if rc == 0 && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    }
}

fn pin_cpus(cpus: &[usize]) -> Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET indexes within its fixed size (checked by config).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            libc::CPU_SET(*c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!(
                "pinning the collector to cpus {cpus:?}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// A probe set that adds to the capture: when it cannot load or attach (no tracefs, an older
/// kernel), capture goes on without it and says so.
fn optional<T>(what: &str, load_and_attach: impl FnOnce() -> Result<T>) -> Option<T> {
    load_and_attach()
        .map_err(|e| tracing::warn!("{what} are not captured: {e:#}"))
        .ok()
}

/// Sums per-CPU counters of one slot.
fn sum(v: &[Vec<u64>], slot: u32) -> u64 {
    v.get(slot as usize).map(|c| c.iter().sum()).unwrap_or(0)
}

/// Turns two snapshots of the BPF counters into `collector_stats` rows.
fn stats_rows(
    prev: &[Vec<u64>],
    cur: &[Vec<u64>],
    window_start: i64,
    now: i64,
    shed: u64,
    undecodable: u64,
) -> Vec<StatsRecord> {
    let delta = |slot: u32| sum(cur, slot).saturating_sub(sum(prev, slot)) as i64;
    let mut rows = Vec::new();
    for t in 1..wire::EV_MAX as u32 {
        let per_cpu: Vec<i64> = cur
            .get((wire::STAT_DROPPED + t) as usize)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let before = prev
                            .get((wire::STAT_DROPPED + t) as usize)
                            .and_then(|p| p.get(i))
                            .copied()
                            .unwrap_or(0);
                        v.saturating_sub(before) as i64
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push(StatsRecord {
            time_unix_nano: window_start,
            interval_ns: now - window_start,
            kind: offcpu::type_name(t as usize).to_string(),
            emitted: delta(wire::STAT_EMITTED + t),
            dropped: delta(wire::STAT_DROPPED + t),
            dropped_per_cpu: per_cpu,
            below_threshold: match t {
                wire::EV_OFF_CPU => delta(wire::STAT_SHORT),
                wire::EV_RUNQ => delta(wire::STAT_SHORT_RQ),
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
        kind: "switch_in_missed".into(),
        emitted: delta(wire::STAT_SWITCH_IN_REBUILT),
        dropped: delta(wire::STAT_SWITCH_IN_LOST),
        ..Default::default()
    });
    rows.push(StatsRecord {
        time_unix_nano: window_start,
        interval_ns: now - window_start,
        kind: "trace_context".into(),
        emitted: delta(wire::STAT_CTX_PUBLISH),
        ..Default::default()
    });
    rows.push(StatsRecord {
        time_unix_nano: window_start,
        interval_ns: now - window_start,
        kind: "user_space".into(),
        shed: shed as i64,
        undecodable: undecodable as i64,
        ..Default::default()
    });
    rows
}

/// The `cuda_sampling` row of `collector_stats`: launches counted while their probes were
/// attached, fast launches kept only in the histograms, calls whose entry or return was lost.
fn cuda_row(
    prev: &[Vec<u64>],
    cur: &[Vec<u64>],
    window: &StatsRecord,
    s: cuda::WindowSampling,
) -> StatsRecord {
    let delta = |slot: u32| sum(cur, slot).saturating_sub(sum(prev, slot)) as i64;
    StatsRecord {
        time_unix_nano: window.time_unix_nano,
        interval_ns: window.interval_ns,
        kind: "cuda_sampling".into(),
        emitted: s.sampled_launches,
        dropped: delta(wire::STAT_CUDA_UNMATCHED) + delta(wire::STAT_CUDA_ORPHAN_RET),
        below_threshold: delta(wire::STAT_CUDA_FAST),
        detail: Some(s.detail),
        ..Default::default()
    }
}

/// Runs the writer: batches in, Parquet out, retention every five minutes.
type WriterResult = Result<(SinkTotals, Option<Arc<OtlpCounters>>)>;

/// The `otlp` row of `collector_stats`: what was exported and lost since the last row.
fn otlp_row(c: &OtlpCounters, last: &mut (u64, u64), window: &StatsRecord) -> StatsRecord {
    let exported = c.exported.load(Ordering::Relaxed);
    let lost = c.dropped_queue_full.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
    let row = StatsRecord {
        time_unix_nano: window.time_unix_nano,
        interval_ns: window.interval_ns,
        kind: "otlp".into(),
        emitted: (exported - last.0) as i64,
        dropped: (lost - last.1) as i64,
        ..Default::default()
    };
    *last = (exported, lost);
    row
}

fn spawn_writer(
    cfg: &Config,
    location: &StoreLocation,
    host: String,
    in_flight: Arc<AtomicUsize>,
) -> Result<(
    mpsc::Sender<Batch>,
    std::sync::mpsc::Receiver<Vec<KernelEvent>>,
    std::thread::JoinHandle<WriterResult>,
)> {
    let store = location
        .open(true)
        .with_context(|| format!("opening store {location}"))?;
    let stale = location.remove_stale_staging(Duration::from_secs(60));
    if stale > 0 {
        tracing::info!(
            files = stale,
            "removed temporary files of an interrupted earlier run"
        );
    }
    let settings = SinkSettings {
        host,
        flush_interval: cfg.storage.flush_interval,
        flush_rows: cfg.storage.flush_rows,
        zstd_level: cfg.storage.zstd_level,
    };
    let (retention_hours, retention_bytes) =
        (cfg.storage.retention_hours, cfg.storage.retention_bytes);
    let mut otlp = match &cfg.otlp_endpoint {
        Some(ep) => {
            tracing::info!(endpoint = %ep, protocol = ?cfg.otlp.protocol, "exporting log records over OTLP");
            Some(OtlpExporter::start(ep, &cfg.otlp, &settings.host)?)
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::channel::<Batch>(64);
    // emptied event batches go back to the capture thread to be filled again
    let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Vec<KernelEvent>>(SPARE_BATCHES);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // fail fast on an unreachable or misconfigured store, before attaching anything
    rt.block_on(async {
        use futures::StreamExt;
        let mut l = store.list(None);
        match l.next().await {
            Some(Err(e)) => Err(anyhow::anyhow!("store {location} is not usable: {e}")),
            _ => Ok(()),
        }
    })?;
    let clock_reference = location.http_endpoint();
    let in_flight_w = in_flight;
    let clock_interval = cfg.storage.flush_interval;
    let handle = std::thread::Builder::new().name("cw-writer".into()).spawn(move || {
        rt.block_on(async move {
            let mut sink = ParquetSink::new(store.clone(), settings);
            // clock samples against the store's server: rows join each stats window's flush
            let clock_rows = Arc::new(Mutex::new(Vec::new()));
            let sampler = tokio::spawn(crate::clocksync::sample_forever(clock_reference, clock_interval, Arc::clone(&clock_rows)));
            let take_clock_rows = || std::mem::take(&mut *clock_rows.lock().unwrap_or_else(|p| p.into_inner()));
            let mut retention_tick = tokio::time::interval(Duration::from_secs(300));
            let mut otlp_last = (0u64, 0u64);
            loop {
                tokio::select! {
                    batch = rx.recv() => match batch {
                        Some(mut b) => {
                            sink.add_histograms(std::mem::take(&mut b.hists));
                            if !b.stats.is_empty() {
                                sink.add_clock_samples(take_clock_rows());
                            }
                            if let Some(x) = otlp.as_mut() {
                                x.offer(&b.events);
                                x.flush();
                                if let Some(me) = b.stats.iter().find(|r| r.kind == "self") {
                                    x.offer_self_metrics(me);
                                }
                                if let Some(w) = b.stats.first() {
                                    let row = otlp_row(&x.counters, &mut otlp_last, w);
                                    b.stats.push(row);
                                }
                            }
                            let n = b.events.len();
                            let files = sink.totals().files;
                            let pushed = sink.push(&mut b.events, b.stacks, b.stats).await;
                            // full (the capture thread has spares) or gone: this one is freed
                            let _ = spare_tx.try_send(b.events);
                            in_flight_w.fetch_sub(n, Ordering::Relaxed);
                            if sink.totals().files != files {
                                // a flush freed the file buffers: give the pages back
                                // SAFETY: malloc_trim only releases free heap memory.
                                unsafe { libc::malloc_trim(0) };
                            }
                            if let Err(e) = pushed {
                                tracing::error!("write failed, rows kept for the next flush: {e:#}");
                            }
                        }
                        None => break,
                    },
                    _ = retention_tick.tick() => {
                        match retention::enforce(&store, realtime_ns(), retention_hours, retention_bytes).await {
                            Ok(d) if d.objects > 0 => tracing::info!(objects = d.objects, bytes = d.bytes, "retention deleted"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!("retention pass failed: {e:#}"),
                        }
                    }
                }
            }
            sampler.abort();
            sink.add_clock_samples(take_clock_rows());
            // the exporter drains (bounded), then its last counters join the final flush
            let counters = otlp.map(|x| x.shutdown(Duration::from_secs(5)));
            if let Some(c) = &counters {
                let now = realtime_ns();
                let window = StatsRecord { time_unix_nano: now, ..Default::default() };
                let row = otlp_row(c, &mut otlp_last, &window);
                if let Err(e) = sink.push(&mut Vec::new(), Vec::new(), vec![row]).await {
                    tracing::warn!("recording the final OTLP counters failed: {e:#}");
                }
            }
            // final flush, retried a few times so a brief store outage loses nothing
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=5 {
                match sink.flush().await {
                    Ok(()) => break,
                    Err(e) if attempt < 5 => {
                        tracing::warn!("final flush failed (attempt {attempt}), retrying: {e:#}");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => {
                        tracing::error!("final flush failed, {} rows lost: {e:#}", sink.buffered_rows());
                        return Err(e);
                    }
                }
            }
            Ok((sink.totals(), counters))
        })
    })?;
    Ok((tx, spare_rx, handle))
}

/// glibc gives each thread its own 64 MiB arena and keeps what they free: two arenas and a
/// trim after each flush (see the writer) keep RSS to what is in use. A fixed mmap threshold
/// keeps the large, short-lived buffers (a drain's events, Arrow columns, encoded files) out of
/// the heap: glibc's adaptive threshold rises to 32 MiB after the first such free, and the heap
/// then holds the high-water mark of every burst (peak RSS at 50k events/s 79 -> 73 MiB, at
/// 100k 149 -> 103 MiB, same-day runs). Such buffers are fresh pages each time, so the drain's
/// event batches are kept and refilled (`Capture::recycle`). bench-ingest runs with the same
/// settings. Call before the collector's threads start.
pub(crate) fn tune_malloc() {
    // SAFETY: mallopt only tunes the allocator; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Captures until a signal, `cfg.duration`, or `opts.stop`; returns what was captured.
pub fn run(cfg: &Config, mut opts: RunOptions) -> Result<RunSummary> {
    crate::preflight::require_capture()?;
    let location = StoreLocation::parse(&cfg.store)?;
    let cgroup = cfg.cgroup.as_deref().map(cgroup::resolve).transpose()?;
    pin_cpus(&cfg.cpus)?;
    tune_malloc();
    // BPF run time is counted for a share of each second (see overhead.rs)
    let mut bpf_stats = cfg
        .bpf_stats
        .then(|| crate::overhead::BpfStatsSampler::new(cfg.bpf_stats_sampling));
    let bpf_counted =
        |s: &Option<crate::overhead::BpfStatsSampler>| s.as_ref().map_or(0, |s| s.counted_ns());
    let host = host_name(cfg);
    // decoded events not yet in the sink: bounded (ring_buffer.max_in_flight)
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, spare_batches, writer) =
        spawn_writer(cfg, &location, host.clone(), Arc::clone(&in_flight))?;
    let (stack_tx, stack_thread) = spawn_stack_thread(tx.clone())?;
    let mut stacks_skipped = 0u64;
    let mut drain_paused = 0u64;

    let settings = offcpu::Settings {
        min_off_cpu: cfg.thresholds.min_off_cpu,
        min_runq: cfg.thresholds.min_runq,
        stack_threshold: cfg.thresholds.stack,
        pids: cfg.pids.clone(),
        follow_children: cfg.follow_children,
        cgroup,
        ring_buffer_bytes: (cfg.ring_buffer.size_mib.next_power_of_two()) * 1024 * 1024,
        min_block: cfg.thresholds.min_block_io,
        obi_map: if cfg.trace_context.enabled {
            cfg.trace_context
                .obi_map
                .as_ref()
                .map(PathBuf::from)
                .or_else(tracectx::find_obi_map)
        } else {
            None
        },
        boot_clock: false, // CAUSEWAY_BOOT_CLOCK=1 still applies
    };
    let mut open_object = MaybeUninit::uninit();
    let mut skel = offcpu::load(&mut open_object, &settings)?;
    offcpu::attach(&mut skel)?;
    // block I/O is an addition too: a kernel without these tracepoints still captures the rest
    let mut block_object = MaybeUninit::uninit();
    let mut block_skel = optional("block I/O", || {
        let mut b = blockio::load(&mut block_object, &settings, &skel)?;
        blockio::attach(&mut b)?;
        Ok(b)
    });

    let mut klock_object = MaybeUninit::uninit();
    let mut klock_skel = optional("kernel lock waits", || {
        let mut k = crate::probes::lockcont::load(&mut klock_object, &settings, &skel)?;
        crate::probes::lockcont::attach(&mut k)?;
        Ok(k)
    });

    let mut tcp_object = MaybeUninit::uninit();
    let mut tcp_skel = optional("TCP retransmits", || {
        let mut t = tcp::load(&mut tcp_object, &settings, &skel)?;
        tcp::attach(&mut t)?;
        Ok(t)
    });

    // trace context: a uprobe on every writer copy, found now and by periodic scans
    let mut ctx_object = MaybeUninit::uninit();
    let ctx_skel = if cfg.trace_context.enabled {
        match tracectx::load(&mut ctx_object, &settings, &skel) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("events are not tagged with trace context: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let mut discovery = tracectx::Discovery::default();
    if let Some(cs) = &ctx_skel {
        for lib in &cfg.trace_context.libraries {
            if let Err(e) = discovery.attach_path(cs, std::path::Path::new(lib)) {
                tracing::warn!("trace_context.libraries: {e:#}");
            }
        }
    }

    // CUDA runtime/driver and NCCL: uprobes on every copy discovery finds
    let sampling = cuda::Sampling {
        launch_fraction: cfg.cuda.launch_sampling,
        period: cfg.cuda.sampling_period,
        slow_launch: cfg.cuda.slow_launch,
    };
    let mut cuda_object = MaybeUninit::uninit();
    let mut cuda_probes = if cfg.cuda.enabled {
        optional("CUDA calls", || {
            Ok(cuda::CudaProbes::new(
                cuda::load(&mut cuda_object, &settings, &skel, &sampling)?,
                &sampling,
            ))
        })
    } else {
        None
    };
    if let Some(cp) = cuda_probes.as_mut() {
        for lib in &cfg.cuda.libraries {
            let added = discovery::examine_path(std::path::Path::new(lib), &cuda::symbols())
                .and_then(|f| {
                    if f.symbols.is_empty() {
                        anyhow::bail!("{lib} defines no CUDA/NCCL function")
                    } else {
                        cp.add_file(&f)
                    }
                });
            if let Err(e) = added {
                tracing::warn!("cuda.libraries: {e:#}");
            }
        }
    }
    // one pass over /proc finds both the trace-context writer and the CUDA libraries
    let mut wanted = Vec::new();
    if ctx_skel.is_some() {
        wanted.push(tracectx::PROBE_SYMBOL);
    }
    if cuda_probes.is_some() {
        wanted.extend(cuda::symbols());
    }
    let mut scanner = discovery::Scanner::new(wanted);
    let mut scan = |discovery: &mut tracectx::Discovery,
                    cuda_probes: &mut Option<cuda::CudaProbes<'_>>| {
        for f in scanner.scan() {
            if let Some(cs) = &ctx_skel {
                if let Err(e) = discovery.attach(cs, &f) {
                    tracing::warn!("{e:#}");
                }
            }
            if let Some(cp) = cuda_probes.as_mut() {
                if let Err(e) = cp.add_file(&f) {
                    tracing::warn!("{e:#}");
                }
            }
        }
    };
    scan(&mut discovery, &mut cuda_probes);
    let mut last_scan = Instant::now();

    let capture = Rc::new(RefCell::new(Capture {
        kept: opts.keep_events.then(Vec::new),
        limit_per_sec: cfg.thresholds.max_events_per_second,
        ..Capture::detached()
    }));
    let mut rb = RingBufferBuilder::new();
    let cb_state = capture.clone();
    rb.add(&skel.maps.events, move |data: &[u8]| {
        cb_state.borrow_mut().on_record(data);
        0
    })?;
    let rb = rb.build()?;
    // the programs wake the reader past this much unread data
    let wake_bytes = settings.wake_bytes();

    tracing::info!(
        store = %location, %host,
        pids = ?cfg.pids, cgroup = ?cfg.cgroup,
        min_off_cpu = ?cfg.thresholds.min_off_cpu,
        "capturing"
    );
    if let Some(f) = &opts.ready_file {
        std::fs::write(f, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing ready file {}", f.display()))?;
    }
    if let Some(cb) = opts.on_ready.take() {
        cb();
    }

    let started = Instant::now();
    // counters start at zero when the programs load: the first window counts from there
    let mut prev_stats: Vec<Vec<u64>> = Vec::new();
    let mut stats_window_start = realtime_ns();
    let mut last_stats = Instant::now();
    let mut prev_overhead = crate::overhead::read(bpf_counted(&bpf_stats));
    // CFS throttling is only in the cgroups' counters (no tracepoint): read them on a timer
    let mut throttle = (!cfg.cpu_throttle_interval.is_zero()).then(|| {
        crate::throttle::ThrottleWatch::new(match (&cfg.cgroup, cfg.pids.is_empty()) {
            (Some(dir), _) => crate::throttle::Scope::Subtree(PathBuf::from(dir)),
            (None, false) => crate::throttle::Scope::Pids(cfg.pids.clone()),
            (None, true) => crate::throttle::Scope::All,
        })
    });
    let mut last_throttle_poll: Option<Instant> = None;
    let mut decoded_reported = 0u64;
    let (mut shed_reported, mut undecodable_reported) = (0u64, 0u64);
    let stop_requested = |opts: &RunOptions| {
        SIGNALLED.load(Ordering::SeqCst)
            || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || cfg.duration.is_some_and(|d| started.elapsed() >= d)
    };
    loop {
        // the loop waits a whole tick (a stop request is seen within it) unless a burst wakes
        // it (see wait_for_records), or the CUDA launch probes' duty cycle or the BPF stats
        // sampling switch sooner
        let tick_end = Instant::now() + cfg.ring_buffer.drain_interval;
        let budget = cfg.ring_buffer.max_in_flight;
        while Instant::now() < tick_end && !stop_requested(&opts) {
            let mut wait = tick_end.saturating_duration_since(Instant::now());
            if let Some(b) = &bpf_stats {
                wait = wait.min(b.due_in());
            }
            if let Some(cp) = &cuda_probes {
                wait = wait.min(cp.due_in());
            }
            let waiting = in_flight.load(Ordering::Relaxed) + capture.borrow().events.len();
            if waiting < budget {
                wait_for_records(&rb, wait, wake_bytes);
            } else {
                // the writer is a full budget behind: the ring buffer holds the rest meanwhile
                std::thread::sleep(wait.min(Duration::from_millis(10)));
            }
            if let Some(cp) = cuda_probes.as_mut() {
                cp.tick();
            }
            if let Some(b) = bpf_stats.as_mut() {
                b.tick();
            }
            // take what has arrived at every wake, not once per tick: a drain thread that lost
            // its CPU to the workload for a while then catches up as soon as it runs, while the
            // ring buffer still has room (bursts of drops at 200k events/s came from ticks that
            // started late)
            let waiting = in_flight.load(Ordering::Relaxed) + capture.borrow().events.len();
            if waiting < budget {
                drain(&rb, budget - waiting)?;
            }
        }
        let stopping = stop_requested(&opts);
        if !stopping && last_scan.elapsed() >= cfg.trace_context.scan_interval {
            scan(&mut discovery, &mut cuda_probes);
            last_scan = Instant::now();
        }
        if stopping {
            // detach first, so the last drain below takes every record the counters count
            skel.links = Default::default();
            if let Some(b) = block_skel.as_mut() {
                b.links = Default::default();
            }
            if let Some(t) = tcp_skel.as_mut() {
                t.links = Default::default();
            }
            if let Some(k) = klock_skel.as_mut() {
                k.links = Default::default();
            }
            if let Some(cp) = cuda_probes.as_mut() {
                cp.detach();
            }
        }
        capture.borrow_mut().clock = BootToWall::sample();
        // drain up to the in-flight budget (the same bound as the slices above), none while the
        // writer is a full budget behind: the rest waits in the ring buffer (or is dropped
        // there, counted)
        let waiting = in_flight.load(Ordering::Relaxed) + capture.borrow().events.len();
        if stopping {
            rb.consume().context("draining the ring buffer")?;
        } else if waiting < budget {
            drain(&rb, budget - waiting)?;
        } else {
            drain_paused += 1;
        }
        let mut stats = Vec::new();
        let mut hists = Vec::new();
        if stopping || last_stats.elapsed() >= cfg.storage.flush_interval {
            let cur = offcpu::read_stats(&skel)?;
            let now = realtime_ns();
            let c = capture.borrow();
            stats = stats_rows(
                &prev_stats,
                &cur,
                stats_window_start,
                now,
                c.shed - shed_reported,
                c.undecodable - undecodable_reported,
            );
            let dropped: i64 = stats.iter().map(|s| s.dropped).sum();
            // the collector's own cost in this window
            let cur_overhead = crate::overhead::read(bpf_counted(&bpf_stats));

            let decoded = c.counts().0;
            stats.push(StatsRecord {
                time_unix_nano: stats_window_start,
                interval_ns: now - stats_window_start,
                kind: "self".into(),
                emitted: (decoded - decoded_reported) as i64,
                dropped,
                overhead: Some(crate::overhead::window(&prev_overhead, &cur_overhead)),
                ..Default::default()
            });
            (prev_overhead, decoded_reported) = (cur_overhead, decoded);
            if dropped > 0 || c.shed > shed_reported {
                tracing::warn!(
                    dropped,
                    shed = c.shed - shed_reported,
                    "lost records in this window (ring buffer full / rate limit); see collector_stats"
                );
            }
            (shed_reported, undecodable_reported) = (c.shed, c.undecodable);
            if let Some(cp) = cuda_probes.as_mut() {
                match cp.take_window() {
                    Ok((rows, sampling)) => {
                        let window = StatsRecord {
                            time_unix_nano: stats_window_start,
                            interval_ns: now - stats_window_start,
                            ..Default::default()
                        };
                        stats.push(cuda_row(&prev_stats, &cur, &window, sampling));
                        hists = rows;
                    }
                    Err(e) => tracing::warn!("CUDA histograms not read this window: {e:#}"),
                }
            }
            prev_stats = cur;
            stats_window_start = now;
            last_stats = Instant::now();
        }
        if let Some(t) = throttle.as_mut() {
            if stopping
                || last_throttle_poll.is_none_or(|p| p.elapsed() >= cfg.cpu_throttle_interval)
            {
                let rows = t.poll(realtime_ns());
                capture.borrow_mut().push_events(rows);
                last_throttle_poll = Some(Instant::now());
            }
        }
        let (batch, work) = {
            let mut c = capture.borrow_mut();
            let work = std::mem::take(&mut c.stack_work);
            while let Ok(v) = spare_batches.try_recv() {
                c.recycle(v);
            }
            (
                Batch {
                    events: c.take_events(),
                    stacks: Vec::new(),
                    stats,
                    hists,
                },
                work,
            )
        };
        let mut batch = batch;
        in_flight.fetch_add(
            batch.events.len() + work.items.len() + work.functions.len(),
            Ordering::Relaxed,
        );
        if !work.items.is_empty() || !work.functions.is_empty() || !work.exited.is_empty() {
            if let Err(
                std::sync::mpsc::TrySendError::Full(w)
                | std::sync::mpsc::TrySendError::Disconnected(w),
            ) = stack_tx.try_send(work)
            {
                // the stack thread is behind: keep the events, without stack ids, and say so
                stacks_skipped += (w.items.len() + w.functions.len()) as u64;
                batch.events.extend(w.items.into_iter().map(|(e, _, _)| e));
                batch.events.extend(w.functions.into_iter().map(|(e, _)| e));
            }
        }
        if !(batch.events.is_empty()
            && batch.stacks.is_empty()
            && batch.stats.is_empty()
            && batch.hists.is_empty())
            && tx.blocking_send(batch).is_err()
        {
            break; // the writer died; its error is reported below
        }
        if stopping {
            break;
        }
    }
    let elapsed = started.elapsed();
    let final_stats = offcpu::read_stats(&skel)?;
    drop(rb);
    let trace_context_probes = std::mem::take(&mut discovery.probed);
    let cuda_probes_report = cuda_probes
        .as_mut()
        .map(|c| std::mem::take(&mut c.probed))
        .unwrap_or_default();
    drop(scan);
    drop(cuda_probes);
    drop(discovery);
    drop(ctx_skel);
    drop(block_skel);
    drop(tcp_skel);
    drop(klock_skel);
    drop(skel);
    drop(stack_tx);
    let _ = stack_thread.join();
    drop(tx);
    if stacks_skipped > 0 {
        tracing::warn!(
            stacks_skipped,
            "events written without stack ids: the stack thread fell behind"
        );
    }
    if drain_paused > 0 {
        tracing::warn!(
            ticks = drain_paused,
            "draining paused while the writer was ring_buffer.max_in_flight events behind (losses, if any, are in collector_stats)"
        );
    }
    let (written, otlp) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    let otlp = otlp.map(|c| {
        (
            c.exported.load(Ordering::Relaxed),
            c.dropped_queue_full.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed),
        )
    });

    let c = Rc::try_unwrap(capture)
        .ok()
        .expect("ring buffer callback dropped")
        .into_inner();
    let mut dropped = [0u64; wire::EV_MAX];
    for (t, d) in dropped.iter_mut().enumerate().skip(1) {
        *d = sum(&final_stats, wire::STAT_DROPPED + t as u32);
    }
    let switch_ins_missed = (
        sum(&final_stats, wire::STAT_SWITCH_IN_REBUILT),
        sum(&final_stats, wire::STAT_SWITCH_IN_LOST),
    );
    Ok(RunSummary {
        decoded: c.decoded,
        dropped,
        switch_ins_missed,
        shed: c.shed,
        undecodable: c.undecodable,
        written,
        elapsed,
        events: c.kept.unwrap_or_default(),
        store: location.to_string(),
        otlp,
        trace_context_probes,
        cuda_probes: cuda_probes_report,
    })
}

impl RunSummary {
    /// One line per record type with rates and losses.
    pub fn report(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "captured for {:.1}s into {}: {} rows in {} files ({} bytes)\n",
            secs, self.store, self.written.rows, self.written.files, self.written.bytes
        );
        for t in 1..wire::EV_MAX {
            out.push_str(&format!(
                "  {:<14} {:>9} decoded ({:>9.0}/s), {} dropped in kernel\n",
                offcpu::type_name(t),
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
