//! Buffers events per hour partition and writes each flush as whole Parquet objects.
//!
//! An object is written with one `put`: on a local disk object_store writes a temporary file and
//! renames it, on S3 it is a single PUT, so a reader never sees a partial file, even when the
//! collector is killed mid-write. A failed write keeps the rows buffered and is retried at the
//! next flush.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use arrow::record_batch::RecordBatch;
use causeway_proto::layout;
use causeway_proto::table;
use causeway_proto::table::ClockSyncRecord;
use causeway_proto::table::CudaHistRecord;
use causeway_proto::KernelEvent;
use causeway_proto::StackRecord;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::PutPayload;
use parquet::arrow::ArrowWriter;

use crate::stats::StatsRecord;

mod sort;
mod storage;
#[cfg(test)]
mod tests;

use sort::write_sorted;
pub use storage::encode;
use storage::event_writer;
use storage::ROW_GROUP_ROWS;

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Host partition value.
    pub host: String,
    /// Write at least this often.
    pub flush_interval: Duration,
    /// ... or when this many rows are buffered.
    pub flush_rows: usize,
    /// zstd level.
    pub zstd_level: i32,
}

/// Events turned into Arrow columns at a time (~0.9 MB of `KernelEvent`s).
pub(super) const ENCODE_CHUNK: usize = 2048;

/// The event file of one partition being built: each row group is sorted and encoded as soon as
/// it fills, so memory holds one row group of Arrow rows plus the compressed file so far (about
/// 5 bytes per event), not every row since the last flush. Uploaded whole at flush.
struct EventFile {
    writer: ArrowWriter<Vec<u8>>,
    /// Earliest event (the file name's start).
    start: i64,
    /// Rows encoded into `writer`.
    rows: usize,
    /// The next row group, as Arrow batches (encoded on arrival: ~10× smaller than the structs).
    group: Vec<RecordBatch>,
    group_rows: usize,
}

impl EventFile {
    fn new(schema: arrow::datatypes::SchemaRef, zstd_level: i32, start: i64) -> Result<EventFile> {
        Ok(EventFile {
            writer: event_writer(Vec::new(), schema, zstd_level)?,
            start,
            rows: 0,
            group: Vec::new(),
            group_rows: 0,
        })
    }

    /// Sorts and encodes the rows waiting as one row group.
    fn encode_group(&mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        write_sorted(&mut self.writer, &self.group)?;
        self.group.clear();
        self.writer.flush()?;
        self.rows += std::mem::take(&mut self.group_rows);
        Ok(())
    }

    fn rows(&self) -> usize {
        self.rows + self.group_rows
    }
}

/// A finished event file whose upload failed: retried at the next flush, never re-encoded.
struct UnsentFile {
    bytes: PutPayload,
    start: i64,
    rows: usize,
}

/// Rows waiting for one partition.
#[derive(Default)]
struct Pending {
    events: Option<EventFile>,
    unsent: Option<UnsentFile>,
    stacks: Vec<StackRecord>,
    stats: Vec<StatsRecord>,
    hists: Vec<CudaHistRecord>,
    clocks: Vec<ClockSyncRecord>,
}

/// Totals of what was written, for the final summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct SinkTotals {
    /// Objects written.
    pub files: u64,
    /// Event rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Writes that failed (and were retried).
    pub failed_writes: u64,
}

/// The Parquet writer.
pub struct ParquetSink {
    store: Arc<dyn ObjectStore>,
    settings: SinkSettings,
    run_id: String,
    seq: u64,
    pending: BTreeMap<i64, Pending>,
    buffered_rows: usize,
    last_flush: Instant,
    totals: SinkTotals,
}

impl ParquetSink {
    /// A sink for offline writers (synthetic stores, benchmarks) with the runtime that drives
    /// it: time-based flushes off, files of `flush_rows` rows.
    pub fn offline(
        store: &str,
        host: String,
        flush_rows: usize,
    ) -> Result<(tokio::runtime::Runtime, ParquetSink)> {
        let location = causeway_store::StoreLocation::parse(store)?;
        let store = location.open(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let settings = SinkSettings {
            host,
            flush_interval: Duration::from_secs(3600 * 24),
            flush_rows,
            zstd_level: 3,
        };
        Ok((rt, ParquetSink::new(store, settings)))
    }

    /// A writer into `store` (paths relative to the store root).
    pub fn new(store: Arc<dyn ObjectStore>, settings: SinkSettings) -> Self {
        let run_id = format!(
            "{:x}{:05x}",
            crate::clock::realtime_ns() / 1_000_000,
            std::process::id()
        );
        ParquetSink {
            store,
            settings,
            run_id,
            seq: 0,
            pending: BTreeMap::new(),
            buffered_rows: 0,
            last_flush: Instant::now(),
            totals: SinkTotals::default(),
        }
    }

    /// Buffers rows; writes when the row or time threshold is reached.
    pub async fn push(
        &mut self,
        events: &mut Vec<KernelEvent>,
        stacks: Vec<StackRecord>,
        stats: Vec<StatsRecord>,
    ) -> Result<()> {
        let pushed = self.push_rows(events, stacks, stats).await;
        // emptied, not freed: the caller fills the same allocation again (a fresh one faulted
        // in ~750 bytes of new pages per event)
        events.clear();
        pushed
    }

    async fn push_rows(
        &mut self,
        events: &[KernelEvent],
        stacks: Vec<StackRecord>,
        stats: Vec<StatsRecord>,
    ) -> Result<()> {
        self.buffered_rows += events.len() + stacks.len();
        // one Arrow batch per hour bucket present: almost always one, encoded in place; a batch
        // across an hour boundary is split (the structs are copied only then)
        let buckets: Vec<i64> = events
            .iter()
            .map(|e| layout::hour_bucket(e.time_unix_nano))
            .collect();
        let groups: Vec<(i64, std::borrow::Cow<'_, [KernelEvent]>)> = match buckets.first() {
            None => Vec::new(),
            Some(b) if buckets.iter().all(|x| x == b) => {
                vec![(*b, std::borrow::Cow::Borrowed(events))]
            }
            Some(_) => {
                let mut by_bucket: BTreeMap<i64, Vec<KernelEvent>> = BTreeMap::new();
                for (e, b) in events.iter().zip(&buckets) {
                    by_bucket.entry(*b).or_default().push(e.clone());
                }
                by_bucket
                    .into_iter()
                    .map(|(b, v)| (b, std::borrow::Cow::Owned(v)))
                    .collect()
            }
        };
        // in pieces whose events stay in the CPU cache while each of the ~46 columns is read
        // from them (one pass per column over a whole drain's events missed the cache on
        // every event and column)
        let pieces = groups
            .iter()
            .flat_map(|(bucket, evs)| evs.chunks(ENCODE_CHUNK).map(move |c| (*bucket, c)));
        for (bucket, evs) in pieces {
            let batch = table::kernel_events_batch(evs)?;
            let start = evs.iter().map(|e| e.time_unix_nano).min().unwrap_or(0);
            let p = self.pending.entry(bucket).or_default();
            if p.events.is_none() {
                p.events = Some(EventFile::new(
                    batch.schema(),
                    self.settings.zstd_level,
                    start,
                )?);
            }
            let f = p.events.as_mut().expect("just created");
            // a row group is one sorted run: encoded before it would pass ROW_GROUP_ROWS (the
            // writer would split it, leaving a small group of a few pieces' rows behind)
            if f.group_rows + batch.num_rows() > ROW_GROUP_ROWS {
                f.encode_group()?;
            }
            f.start = f.start.min(start);
            f.group_rows += batch.num_rows();
            f.group.push(batch);
        }
        for s in stacks {
            self.pending
                .entry(layout::hour_bucket(s.time_unix_nano))
                .or_default()
                .stacks
                .push(s);
        }
        for s in stats {
            self.pending
                .entry(layout::hour_bucket(s.time_unix_nano))
                .or_default()
                .stats
                .push(s);
        }
        if self.buffered_rows >= self.settings.flush_rows
            || self.last_flush.elapsed() >= self.settings.flush_interval
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// Buffers CUDA histogram rows; they are written with the next flush.
    pub fn add_histograms(&mut self, rows: Vec<CudaHistRecord>) {
        for r in rows {
            self.pending
                .entry(layout::hour_bucket(r.time_unix_nano))
                .or_default()
                .hists
                .push(r);
        }
    }

    /// Buffers clock samples; they are written with the next flush.
    pub fn add_clock_samples(&mut self, rows: Vec<ClockSyncRecord>) {
        for r in rows {
            self.pending
                .entry(layout::hour_bucket(r.time_unix_nano))
                .or_default()
                .clocks
                .push(r);
        }
    }

    /// Writes everything buffered. Partitions that fail stay buffered; the first error is returned.
    pub async fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        let mut first_err = None;
        let buckets: Vec<i64> = self.pending.keys().copied().collect();
        for bucket in buckets {
            let Some(mut p) = self.pending.remove(&bucket) else {
                continue;
            };
            match self.write_partition(bucket, &mut p).await {
                Ok(()) => {}
                Err(e) => {
                    self.totals.failed_writes += 1;
                    first_err.get_or_insert(e);
                    self.pending.insert(bucket, p);
                }
            }
        }
        self.buffered_rows = self
            .pending
            .values()
            .map(|p| {
                p.events.as_ref().map_or(0, EventFile::rows)
                    + p.unsent.as_ref().map_or(0, |u| u.rows)
                    + p.stacks.len()
            })
            .sum();
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes one partition's tables; what succeeded is removed from `p`.
    async fn write_partition(&mut self, bucket: i64, p: &mut Pending) -> Result<()> {
        if let Some(mut f) = p.events.take() {
            f.encode_group()?;
            let rows = f.rows;
            p.unsent = Some(UnsentFile {
                bytes: PutPayload::from(f.writer.into_inner()?),
                start: f.start,
                rows,
            });
        }
        if let Some(f) = p.unsent.take() {
            // a failed upload keeps the encoded file for the next flush
            let bytes = f.bytes.clone(); // shares the buffer
            match self
                .put(table::KERNEL_EVENTS, bucket, f.start, bytes, f.rows)
                .await
            {
                Ok(()) => self.totals.rows += f.rows as u64,
                Err(e) => {
                    p.unsent = Some(f);
                    return Err(e);
                }
            }
        }
        if !p.stacks.is_empty() {
            let start = p.stacks.iter().map(|s| s.time_unix_nano).min().unwrap_or(0);
            let batch = table::stacks_batch(&p.stacks)?;
            self.write(table::STACKS, bucket, start, &batch).await?;
            p.stacks.clear();
        }
        if !p.stats.is_empty() {
            let start = p.stats.iter().map(|s| s.time_unix_nano).min().unwrap_or(0);
            let batch = crate::stats::stats_batch(&p.stats)?;
            self.write(crate::stats::TABLE, bucket, start, &batch)
                .await?;
            p.stats.clear();
        }
        if !p.hists.is_empty() {
            let start = p.hists.iter().map(|s| s.time_unix_nano).min().unwrap_or(0);
            let batch = table::cuda_histograms_batch(&p.hists)?;
            self.write(table::CUDA_HISTOGRAMS, bucket, start, &batch)
                .await?;
            p.hists.clear();
        }
        if !p.clocks.is_empty() {
            let start = p.clocks.iter().map(|s| s.time_unix_nano).min().unwrap_or(0);
            let batch = table::clock_sync_batch(&p.clocks)?;
            self.write(table::CLOCK_SYNC, bucket, start, &batch).await?;
            p.clocks.clear();
        }
        Ok(())
    }

    async fn write(
        &mut self,
        table: &str,
        bucket: i64,
        start: i64,
        batch: &RecordBatch,
    ) -> Result<()> {
        let bytes = encode(batch, self.settings.zstd_level)?;
        let rows = batch.num_rows();
        self.put(table, bucket, start, PutPayload::from(bytes), rows)
            .await
    }

    /// Uploads one whole object (a reader never sees a partial file).
    async fn put(
        &mut self,
        table: &str,
        bucket: i64,
        start: i64,
        payload: PutPayload,
        rows: usize,
    ) -> Result<()> {
        self.seq += 1;
        let path = format!(
            "{}/{}",
            layout::partition_dir(table, bucket, &self.settings.host),
            layout::part_file_name(start, &self.run_id, self.seq)
        );
        let len = payload.content_length() as u64;
        self.store
            .put(&ObjectPath::from(path.as_str()), payload)
            .await
            .with_context(|| format!("writing {path}"))?;
        self.totals.files += 1;
        self.totals.bytes += len;
        tracing::debug!(%path, rows, bytes = len, "wrote");
        Ok(())
    }

    /// What was written so far.
    pub fn totals(&self) -> SinkTotals {
        self.totals
    }

    /// Rows still buffered (unwritten).
    pub fn buffered_rows(&self) -> usize {
        self.buffered_rows
    }
}
