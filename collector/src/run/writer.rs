//! The writer thread (a small tokio runtime): batches in, Parquet out through the sink, OTLP log
//! records out through the exporter, retention every five minutes, clock samples against the
//! store's server; a final flush retried through a brief outage.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use anyhow::Result;
use causeway_proto::names;
use causeway_proto::table::ClockSyncRecord;
use causeway_proto::table::CudaHistRecord;
use causeway_proto::KernelEvent;
use causeway_proto::StackRecord;
use causeway_store::StoreLocation;
use object_store::ObjectStore;
use tokio::sync::mpsc;

use super::stats::otlp_row;
use crate::clock::realtime_ns;
use crate::config::Config;
use crate::sink::otlp::OtlpCounters;
use crate::sink::otlp::OtlpExporter;
use crate::sink::parquet::ParquetSink;
use crate::sink::parquet::SinkSettings;
use crate::sink::parquet::SinkTotals;
use crate::sink::retention;
use crate::stats::StatsRecord;

/// Emptied event batches on their way back from the writer to be refilled: one, handed back
/// while the next fills (a second slot did not lower peak memory).
const SPARE_BATCHES: usize = 1;

/// A batch from the capture (or stack) thread to the writer.
pub(super) struct Batch {
    pub(super) events: Vec<KernelEvent>,
    pub(super) stacks: Vec<StackRecord>,
    pub(super) stats: Vec<StatsRecord>,
    pub(super) hists: Vec<CudaHistRecord>,
}

impl Batch {
    /// Nothing to write.
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.stacks.is_empty()
            && self.stats.is_empty()
            && self.hists.is_empty()
    }
}

/// What the writer wrote, and the exporter's counters.
pub(super) type WriterResult = Result<(SinkTotals, Option<Arc<OtlpCounters>>)>;

/// The running writer.
pub(super) struct Writer {
    /// Batches to write.
    pub(super) tx: mpsc::Sender<Batch>,
    /// Emptied event batches, back to be refilled.
    pub(super) spares: std::sync::mpsc::Receiver<Vec<KernelEvent>>,
    /// The thread.
    pub(super) thread: std::thread::JoinHandle<WriterResult>,
}

/// The writer thread's state.
struct State {
    store: Arc<dyn ObjectStore>,
    sink: ParquetSink,
    otlp: Option<OtlpExporter>,
    otlp_last: (u64, u64),
    clock_rows: Arc<Mutex<Vec<ClockSyncRecord>>>,
    spare_tx: std::sync::mpsc::SyncSender<Vec<KernelEvent>>,
    in_flight: Arc<AtomicUsize>,
    retention: (u64, u64),
}

/// Opens the store (failing fast when it is unusable, before anything is attached) and the
/// exporter, and starts the writer thread. `in_flight` counts the events handed over and not
/// yet in the sink.
pub(super) fn spawn(
    cfg: &Config,
    location: &StoreLocation,
    host: String,
    in_flight: Arc<AtomicUsize>,
) -> Result<Writer> {
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
    let otlp = match &cfg.otlp_endpoint {
        Some(ep) => {
            tracing::info!(endpoint = %ep, protocol = ?cfg.otlp.protocol, "exporting log records over OTLP");
            Some(OtlpExporter::start(ep, &cfg.otlp, &settings.host)?)
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel::<Batch>(64);
    // emptied event batches go back to the capture thread to be filled again
    let (spare_tx, spares) = std::sync::mpsc::sync_channel::<Vec<KernelEvent>>(SPARE_BATCHES);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use futures::StreamExt;
        match store.list(None).next().await {
            Some(Err(e)) => Err(anyhow::anyhow!("store {location} is not usable: {e}")),
            _ => Ok(()),
        }
    })?;
    let state = State {
        sink: ParquetSink::new(store.clone(), settings),
        store,
        otlp,
        otlp_last: (0, 0),
        clock_rows: Arc::new(Mutex::new(Vec::new())),
        spare_tx,
        in_flight,
        retention: (cfg.storage.retention_hours, cfg.storage.retention_bytes),
    };
    let clock = (location.http_endpoint(), cfg.storage.flush_interval);
    let thread = std::thread::Builder::new()
        .name("cw-writer".into())
        .spawn(move || rt.block_on(state.run(rx, clock)))?;
    Ok(Writer { tx, spares, thread })
}

impl State {
    /// Writes batches until the channel closes, then flushes everything.
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        (reference, interval): (Option<String>, Duration),
    ) -> WriterResult {
        // clock samples against the store's server: rows join each stats window's flush
        let sampler = tokio::spawn(crate::clocksync::sample_forever(
            reference,
            interval,
            Arc::clone(&self.clock_rows),
        ));
        let mut retention_tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(b) => self.write(b).await,
                    None => break,
                },
                _ = retention_tick.tick() => self.enforce_retention().await,
            }
        }
        sampler.abort();
        self.finish().await
    }

    fn take_clock_rows(&self) -> Vec<ClockSyncRecord> {
        std::mem::take(&mut *self.clock_rows.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One batch: to the exporter, then the sink; its emptied allocation back to the capture.
    async fn write(&mut self, mut b: Batch) {
        self.sink.add_histograms(std::mem::take(&mut b.hists));
        if !b.stats.is_empty() {
            let rows = self.take_clock_rows();
            self.sink.add_clock_samples(rows);
        }
        if let Some(x) = self.otlp.as_mut() {
            x.offer(&b.events);
            x.flush();
            if let Some(me) = b.stats.iter().find(|r| r.kind == names::stats::SELF) {
                x.offer_self_metrics(me);
            }
            if let Some(w) = b.stats.first() {
                let row = otlp_row(&x.counters, &mut self.otlp_last, w);
                b.stats.push(row);
            }
        }
        let n = b.events.len();
        let files = self.sink.totals().files;
        let pushed = self.sink.push(&mut b.events, b.stacks, b.stats).await;
        // full (the capture thread has spares) or gone: this one is freed
        let _ = self.spare_tx.try_send(b.events);
        self.in_flight.fetch_sub(n, Ordering::Relaxed);
        if self.sink.totals().files != files {
            // a flush freed the file buffers: give the pages back
            // SAFETY: malloc_trim only releases free heap memory.
            unsafe { libc::malloc_trim(0) };
        }
        if let Err(e) = pushed {
            tracing::error!("write failed, rows kept for the next flush: {e:#}");
        }
    }

    async fn enforce_retention(&self) {
        let (hours, bytes) = self.retention;
        match retention::enforce(&self.store, realtime_ns(), hours, bytes).await {
            Ok(d) if d.objects > 0 => {
                tracing::info!(objects = d.objects, bytes = d.bytes, "retention deleted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("retention pass failed: {e:#}"),
        }
    }

    /// The exporter drains (bounded) and its last counters join the final flush, which is
    /// retried a few times so a brief store outage loses nothing.
    async fn finish(mut self) -> WriterResult {
        let rows = self.take_clock_rows();
        self.sink.add_clock_samples(rows);
        let counters = self.otlp.take().map(|x| x.shutdown(Duration::from_secs(5)));
        if let Some(c) = &counters {
            let window = StatsRecord {
                time_unix_nano: realtime_ns(),
                ..Default::default()
            };
            let row = otlp_row(c, &mut self.otlp_last, &window);
            if let Err(e) = self.sink.push(&mut Vec::new(), Vec::new(), vec![row]).await {
                tracing::warn!("recording the final OTLP counters failed: {e:#}");
            }
        }
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            match self.sink.flush().await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    tracing::warn!("final flush failed (attempt {attempt}), retrying: {e:#}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    let lost = self.sink.buffered_rows();
                    tracing::error!("final flush failed, {lost} rows lost: {e:#}");
                    return Err(e);
                }
            }
        }
        Ok((self.sink.totals(), counters))
    }
}

/// glibc gives each thread its own 64 MiB arena and keeps what they free: two arenas and a
/// trim after each flush (see the writer) keep RSS to what is in use. A fixed mmap threshold
/// keeps the large, short-lived buffers (a drain's events, Arrow columns, encoded files) out of
/// the heap, where glibc's adaptive threshold would keep the high-water mark of every burst.
/// Such buffers are fresh pages each time, so the drain's event batches are kept and refilled
/// (`Capture::recycle`). bench-ingest runs with the same settings. Call before the collector's
/// threads start.
pub fn tune_malloc() {
    // SAFETY: mallopt only tunes the allocator; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
