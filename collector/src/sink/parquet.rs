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
use arrow::array::DictionaryArray;
use arrow::array::Int32Array;
use arrow::datatypes::Int32Type;
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
use parquet::basic::Compression;
use parquet::basic::ZstdLevel;
use parquet::file::properties::EnabledStatistics;
use parquet::file::properties::WriterProperties;

use crate::stats::StatsRecord;

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

/// Rows per row group of an event file: each is a time slice, sorted by (pid, tid, event_name,
/// time).
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Events turned into Arrow columns at a time (~0.9 MB of `KernelEvent`s).
const ENCODE_CHUNK: usize = 2048;

/// Bits of a row's index within its piece in the sort key ([`ENCODE_CHUNK`] rows a piece at
/// most; the rest of 32 bits number the pieces).
const PIECE_BITS: u32 = 12;

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

/// Writes the rows of `batches` ordered by (pid, tid, event_name, time_unix_nano): plain keys
/// sorted once, then the rows gathered straight from the pieces in slices, so the sorted copy
/// never exists whole (the writer's memory peak was two full copies of a row group); string
/// columns are gathered as keys into one dictionary each ([`shared_dictionary`]).
///
/// A thread's records of one kind lie together, so the page index prunes the pages of the other
/// kinds: most questions ask about one kind (a process's off-CPU intervals, its run-queue
/// waits), and a thread's off-CPU, run-queue and futex records interleave in time.
fn write_sorted<W: std::io::Write + Send>(
    writer: &mut ArrowWriter<W>,
    batches: &[RecordBatch],
) -> Result<()> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int32Type;
    use arrow::datatypes::Int64Type;
    // one row's place: (pid, tid) in one word, the kind and the time since the group's first
    // in another, then the row's batch and index; two word compares decide almost every pair
    // (a tuple of six fields cost ~6% of ingest to sort). A group holds one hour's rows, so
    // the time fits the 48 bits left (78 h); were it to pass them, order within a thread would
    // loosen, never a row be lost.
    let tmin = batches
        .iter()
        .filter_map(|b| b.column_by_name("time_unix_nano"))
        .filter_map(|c| arrow::compute::min(c.as_primitive::<Int64Type>()))
        .min()
        .unwrap_or(0);
    let mut keys: Vec<(u64, u64, u32)> =
        Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for (b, batch) in batches.iter().enumerate() {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| anyhow::anyhow!("kernel_events has no {name} column"))
        };
        let (pid, tid, time, kind) = (
            col("pid")?.as_primitive::<Int32Type>().values(),
            col("tid")?.as_primitive::<Int32Type>().values(),
            col("time_unix_nano")?.as_primitive::<Int64Type>().values(),
            col("event_name")?.as_string::<i32>(),
        );
        anyhow::ensure!(
            b < 1 << (32 - PIECE_BITS) && batch.num_rows() <= 1 << PIECE_BITS,
            "a row group of {} pieces, one of {} rows",
            batches.len(),
            batch.num_rows()
        );
        keys.extend((0..batch.num_rows()).map(|i| {
            // signed order as unsigned: flip the sign bit
            let thread =
                u64::from(pid[i] as u32 ^ 1 << 31) << 32 | u64::from(tid[i] as u32 ^ 1 << 31);
            let since = (time[i].saturating_sub(tmin) as u64).min((1 << 48) - 1);
            let at = (b as u32) << PIECE_BITS | i as u32;
            (thread, (kind_key(kind.value(i)) & 0xffff) << 48 | since, at)
        }));
    }
    keys.sort_unstable();
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok(());
    };
    // columns no row of the group fills stay shared nulls: gathering them would build a fresh
    // zero-filled array per slice for nothing (most columns, most of the time)
    let columns: Vec<Gather> = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<arrow::array::ArrayRef> =
                batches.iter().map(|b| b.column(c).clone()).collect();
            if !arrays.iter().any(|a| a.null_count() < a.len()) {
                Gather::Nulls
            } else if schema.field(c).data_type() == &arrow::datatypes::DataType::Utf8 {
                shared_dictionary(&arrays)
            } else {
                Gather::Values(arrays)
            }
        })
        .collect();
    let schema = written_schema(&schema);
    for slice in keys.chunks(16 * 1024) {
        let at: Vec<(usize, usize)> = slice
            .iter()
            .map(|k| {
                (
                    (k.2 >> PIECE_BITS) as usize,
                    (k.2 & ((1 << PIECE_BITS) - 1)) as usize,
                )
            })
            .collect();
        let gathered = columns
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| column.gather(field.data_type(), &at))
            .collect::<Result<Vec<_>, _>>()?;
        writer.write(&RecordBatch::try_new(schema.clone(), gathered)?)?;
    }
    Ok(())
}

/// The schema the writer is given: string columns as dictionaries (see [`shared_dictionary`]).
/// The file's Parquet schema is the same either way (a dictionary of strings is written as
/// its strings).
fn written_schema(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::DataType;
    let fields: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Arc::new(f.as_ref().clone().with_data_type(DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8),
            ))),
            _ => f.clone(),
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// A column of `len` nulls of a [`written_schema`] type, from the shared zeroed buffer.
fn null_column(data_type: &arrow::datatypes::DataType, len: usize) -> arrow::array::ArrayRef {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    match data_type {
        DataType::Dictionary(_, _) => {
            let keys = table::null_column(&DataType::Int32, len);
            Arc::new(DictionaryArray::<Int32Type>::new(
                keys.as_primitive().clone(),
                arrow::array::new_empty_array(&DataType::Utf8),
            ))
        }
        other => table::null_column(other, len),
    }
}

/// One column of a row group's pieces, ready to be gathered in sort order.
enum Gather {
    /// No row has a value.
    Nulls,
    /// The pieces' arrays.
    Values(Vec<arrow::array::ArrayRef>),
    /// A string column as keys into one array of its distinct values (see
    /// [`shared_dictionary`]).
    Dictionary {
        keys: Vec<arrow::array::ArrayRef>,
        values: arrow::array::ArrayRef,
    },
}

impl Gather {
    /// The rows `at` ((piece, row) pairs) as one array of `data_type` (a [`written_schema`] type).
    fn gather(
        &self,
        data_type: &arrow::datatypes::DataType,
        at: &[(usize, usize)],
    ) -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
        use arrow::array::AsArray;
        fn refs(arrays: &[arrow::array::ArrayRef]) -> Vec<&dyn arrow::array::Array> {
            arrays.iter().map(|a| a.as_ref()).collect()
        }
        match self {
            Gather::Nulls => Ok(null_column(data_type, at.len())),
            Gather::Values(arrays) => arrow::compute::interleave(&refs(arrays), at),
            Gather::Dictionary { keys, values } => {
                let keys = arrow::compute::interleave(&refs(keys), at)?;
                Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
                    keys.as_primitive().clone(),
                    values.clone(),
                )?))
            }
        }
    }
}

/// A string column's pieces as keys into one array of its distinct values. The sort then
/// gathers 4-byte keys instead of copying every string from pieces spread over the row group
/// (a copy call per value: ~19 % of ingest CPU; one-core ingest +2 to +28 %, median +14 %, in
/// five alternating `bench-ingest` runs, the files the same). The writer takes the dictionaries as
/// the strings they stand for: it builds its own dictionary pages from the values either way.
fn shared_dictionary(pieces: &[arrow::array::ArrayRef]) -> Gather {
    use arrow::array::Array;
    use arrow::array::AsArray;
    // random seeds: task names are chosen by the traced system, and colliding ones must not
    // make a row group's index quadratic
    let mut index: std::collections::HashMap<&[u8], i32, foldhash::fast::RandomState> =
        Default::default();
    let mut values = arrow::array::StringBuilder::new();
    let keys = pieces
        .iter()
        .map(|piece| {
            let piece = piece.as_string::<i32>();
            // consecutive rows often repeat a value (a thread's name, its state)
            let mut last: Option<(&str, i32)> = None;
            let keys: Vec<i32> = (0..piece.len())
                .map(|i| {
                    if piece.is_null(i) {
                        return 0;
                    }
                    let v = piece.value(i);
                    match last {
                        Some((lv, lk)) if lv == v => lk,
                        _ => {
                            let next = index.len() as i32;
                            let k = *index.entry(v.as_bytes()).or_insert_with(|| {
                                values.append_value(v);
                                next
                            });
                            last = Some((v, k));
                            k
                        }
                    }
                })
                .collect();
            Arc::new(Int32Array::new(keys.into(), piece.nulls().cloned())) as arrow::array::ArrayRef
        })
        .collect();
    Gather::Dictionary {
        keys,
        values: Arc::new(values.finish()),
    }
}

/// Groups a thread's rows by event name in the sort: equal names give equal keys, and any new
/// event kind gets its own without a list to keep (FNV-1a; which kind comes first is not
/// meaningful).
fn kind_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The columns whose pages carry min/max statistics (the page index the reader skips pages
/// with): the sort key, on which a 20k-row page is a narrow range, and the trace ids, whose
/// pages of untraced threads are all null. On any other column a page's range spans most of
/// the column's values and skips nothing; its statistics were ~1% of a file's bytes.
const PAGE_INDEXED: &[&str] = &[
    "pid",
    "tid",
    "event_name",
    "time_unix_nano",
    "trace_id",
    "span_id",
];

/// The sort key's leading columns, written in pages of at most [`KEY_PAGE_ROWS`] rows (every
/// other column: the writer's default, ~20k rows). A reader asking for one process's or one
/// thread's rows selects them by these columns' page statistics, and every column it reads
/// then decodes only the selected row ranges: with 20k-row pages a process's run of a row
/// group straddled pages of other processes, and the causal chain's window (a process's
/// minute on a 1 h store at 50k events/s) decoded 1.14M rows for its 750k; with 4096-row pages
/// on `pid`, 874k (the tools' CPU −8 to −11 %, the chain's p50 −6 to −12 % in three
/// alternating bench runs on 10-min synthetic stores; `tid` and `event_name` as well, for the
/// questions about one thread or kind: the same within the noise there). These columns are a
/// few bytes per page (long runs of one value): +0.5 % bytes on the synthetic store. Not
/// `time_unix_nano`: its delta-coded, zstd-compressed pages compress worse that small (+8 % of
/// the file with it).
const KEY_PAGE_COLUMNS: &[&str] = &["pid", "tid", "event_name"];

/// Rows per page of [`KEY_PAGE_COLUMNS`].
const KEY_PAGE_ROWS: usize = 4096;

/// zstd, statistics per column chunk ([`PAGE_INDEXED`] columns: per page), row groups of at
/// most [`ROW_GROUP_ROWS`], pages of [`KEY_PAGE_ROWS`] rows on [`KEY_PAGE_COLUMNS`].
fn writer_properties(zstd_level: i32) -> Result<WriterProperties> {
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    // timestamps ascend within a thread (rows are sorted by it): deltas are small, a dictionary
    // of unique values is not. Durations do not ascend: the delta of two unrelated values needs
    // a bit more than either, and one long wait among a run-queue thread's many zero waits
    // widens its whole 32-value miniblock. Split into byte streams (all low bytes, then the
    // next...) zstd codes each byte position on its own: on live captures 2.2-2.4 -> 1.5-1.7
    // B/event (plain values: 1.9). It costs the tools 0-6% on 1 h synthetic stores, 4-7% on
    // 10-min ones (whose uniformly random durations suit deltas), within their goals; at an
    // earlier stop, with one partition per core, it measured 12-20% and was not taken
    let time = ColumnPath::from("time_unix_nano");
    let dur = ColumnPath::from("duration_ns");
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    for column in PAGE_INDEXED {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::Page);
    }
    // The writer has one page row limit for all columns; it closes a column's page after any
    // write batch that takes the page past that column's byte limit. Write batches of
    // KEY_PAGE_ROWS and a byte limit of 1 on the key columns close their pages every
    // KEY_PAGE_ROWS rows; the others still close theirs at the row limit (now in steps of
    // KEY_PAGE_ROWS) or 1 MiB.
    props = props.set_write_batch_size(KEY_PAGE_ROWS);
    for column in KEY_PAGE_COLUMNS {
        props = props.set_column_data_page_size_limit(ColumnPath::from(*column), 1);
    }
    Ok(props
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_dictionary_enabled(time.clone(), false)
        .set_column_encoding(time, Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(dur.clone(), false)
        .set_column_encoding(dur, Encoding::BYTE_STREAM_SPLIT)
        .build())
}

/// The `kernel_events` columns stored zstd-compressed: those filled on (nearly) every row or
/// on every run-queue row, which zstd shrinks (durations to 0.2-0.4 of their size, the
/// previous task's ids and names to 0.4-0.6, the sort key's runs). Every other column is stored
/// uncompressed: measured per column on a live capture and on a 1 h synthetic store, zstd made
/// them 3-40 % *bigger* (mostly-null kind-specific columns, dictionary indices already
/// bit-packed), and each compressed column chunk a reader opens costs it a zstd compression and
/// a decompression context (`parquet` 59 creates both per chunk): the causal chain's window
/// opens ~800 chunks, and creating those contexts was ~7 % of the query service's CPU.
const ZSTD_COLUMNS: &[&str] = &[
    "time_unix_nano",
    "duration_ns",
    "pid",
    "tid",
    "comm",
    "process_name",
    "cgroup_id",
    "state",
    "cpu",
    "prev_pid",
    "prev_tid",
    "prev_comm",
];

/// The writer of a `kernel_events` file. It leaves out the Arrow schema Arrow writers embed in
/// the footer (~3.3 KB a file here): every column's type reads back the same from the Parquet
/// schema (Int32, Int64, Utf8 and their nullability).
fn event_writer<W: std::io::Write + Send>(
    w: W,
    schema: arrow::datatypes::SchemaRef,
    zstd_level: i32,
) -> Result<ArrowWriter<W>> {
    let mut props = writer_properties(zstd_level)?.into_builder();
    for field in schema.fields() {
        if !ZSTD_COLUMNS.contains(&field.name().as_str()) {
            props = props.set_column_compression(
                parquet::schema::types::ColumnPath::from(field.name().as_str()),
                Compression::UNCOMPRESSED,
            );
        }
    }
    let options = parquet::arrow::arrow_writer::ArrowWriterOptions::new()
        .with_properties(props.build())
        .with_skip_arrow_metadata(true);
    Ok(ArrowWriter::try_new_with_options(
        w,
        written_schema(&schema),
        options,
    )?)
}

/// Encodes a batch as a complete Parquet file (see [`writer_properties`]).
pub fn encode(batch: &RecordBatch, zstd_level: i32) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        batch.schema(),
        Some(writer_properties(zstd_level)?),
    )?;
    w.write(batch)?;
    w.close()?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_proto::names;
    use object_store::memory::InMemory;

    /// A sink on an in-memory store, host `h1`, that writes only when flushed.
    fn memory_sink() -> (Arc<InMemory>, ParquetSink) {
        let store = Arc::new(InMemory::new());
        let sink = ParquetSink::new(
            store.clone(),
            SinkSettings {
                host: "h1".into(),
                flush_interval: Duration::from_secs(3600),
                flush_rows: 1_000_000,
                zstd_level: 3,
            },
        );
        (store, sink)
    }

    /// The one `kernel_events` file in `store`.
    async fn only_event_file(
        store: &InMemory,
    ) -> impl parquet::file::reader::ChunkReader + 'static {
        let metas: Vec<_> = futures::StreamExt::collect::<Vec<_>>(store.list(None))
            .await
            .into_iter()
            .map(|m| m.unwrap())
            .filter(|m| m.location.as_ref().starts_with("kernel_events/"))
            .collect();
        assert_eq!(metas.len(), 1, "{metas:?}");
        store
            .get(&metas[0].location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn writes_one_object_per_partition_and_table() {
        let (store, mut sink) = memory_sink();
        let hour = 3_600_000_000_000_i64;
        let ev = |t: i64| KernelEvent {
            time_unix_nano: t,
            event_name: names::event::OFF_CPU,
            ..Default::default()
        };
        sink.push(
            &mut vec![ev(10 * hour + 5), ev(10 * hour + 1), ev(11 * hour)],
            vec![],
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(
            sink.totals().files,
            0,
            "below thresholds nothing is written"
        );
        sink.flush().await.unwrap();
        let mut paths: Vec<String> = futures::StreamExt::collect::<Vec<_>>(store.list(None))
            .await
            .into_iter()
            .map(|m| m.unwrap().location.to_string())
            .collect();
        paths.sort();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(
            paths[0].starts_with("kernel_events/date=1970-01-01/hour=10/host=h1/part-"),
            "{paths:?}"
        );
        assert!(paths[1].contains("hour=11"), "{paths:?}");
        assert_eq!(sink.totals().rows, 3);
        assert_eq!(sink.buffered_rows(), 0);
    }

    /// A row group lists each thread's rows kind by kind, each kind in time order, so the page
    /// index can skip the other kinds of a thread: a shuffled mix of two threads' off-CPU,
    /// run-queue and futex records comes back grouped, and nothing is lost.
    #[test]
    fn rows_are_grouped_by_thread_then_kind_then_time() {
        use arrow::array::AsArray;
        use arrow::datatypes::Int32Type;
        use arrow::datatypes::Int64Type;
        let kinds = [
            names::event::OFF_CPU,
            names::event::RUNQ,
            names::event::FUTEX_WAIT,
        ];
        let mut events = Vec::new();
        for k in 0..300i64 {
            events.push(KernelEvent {
                time_unix_nano: 1_000_000 - k * 7 % 1000 * 1000 + k,
                pid: 10,
                tid: 11 + (k % 2) as i32,
                event_name: kinds[(k % 3) as usize],
                ..Default::default()
            });
        }
        let batch = table::kernel_events_batch(&events).unwrap();
        let file = tempfile::tempfile().unwrap();
        let mut w = event_writer(file.try_clone().unwrap(), batch.schema(), 3).unwrap();
        // two pieces, as a row group gathers several pushes
        write_sorted(&mut w, &[batch.slice(0, 150), batch.slice(150, 150)]).unwrap();
        w.close().unwrap();
        let rows: Vec<(i32, String, i64)> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                .unwrap()
                .flat_map(|b| {
                    let b = b.unwrap();
                    let tid = b
                        .column_by_name("tid")
                        .unwrap()
                        .as_primitive::<Int32Type>()
                        .clone();
                    let time = b
                        .column_by_name("time_unix_nano")
                        .unwrap()
                        .as_primitive::<Int64Type>()
                        .clone();
                    let kind = b
                        .column_by_name("event_name")
                        .unwrap()
                        .as_string::<i32>()
                        .clone();
                    (0..b.num_rows())
                        .map(|i| (tid.value(i), kind.value(i).to_string(), time.value(i)))
                        .collect::<Vec<_>>()
                })
                .collect();
        assert_eq!(rows.len(), 300);
        let mut seen = std::collections::BTreeSet::new();
        for pair in rows.windows(2) {
            let ((t0, k0, ns0), (t1, k1, ns1)) = (&pair[0], &pair[1]);
            assert!(t0 <= t1, "threads in order: {pair:?}");
            if t0 == t1 && k0 == k1 {
                assert!(ns0 <= ns1, "time ascends within a kind: {pair:?}");
            } else {
                // a (thread, kind) run ends and never starts again
                assert!(seen.insert((*t0, k0.clone())), "{t0} {k0} split: {pair:?}");
            }
        }
        assert_eq!(
            seen.len(),
            5,
            "six (thread, kind) runs, five of them ended: {seen:?}"
        );
    }

    /// Strings are gathered as keys into one dictionary per column (shared_dictionary): every
    /// row reads back with its own values, across pieces, nulls, repeats and one-off values,
    /// and the file's strings are plain strings again.
    #[test]
    fn string_columns_read_back_row_for_row() {
        use arrow::array::Array;
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let states = [names::state::SLEEP, names::state::DISK];
        let events: Vec<KernelEvent> = (0..3000i64)
            .map(|k| KernelEvent {
                time_unix_nano: 1_000_000 + (k * 7919) % 3000,
                pid: 10,
                tid: 11 + (k % 3) as i32,
                comm: format!("worker-{}", k % 3).into(),
                event_name: names::event::OFF_CPU,
                // nulls, repeats, and a value no other row has
                state: (k % 5 != 0).then_some(states[(k % 2) as usize]),
                waker_comm: (k % 7 == 0).then(|| format!("waker-{}", k % 4).into()),
                container_id: (k % 2 == 0).then(|| format!("{k:064x}")),
                ..Default::default()
            })
            .collect();
        let row = |e: &KernelEvent| {
            (
                e.time_unix_nano,
                e.comm.to_string(),
                e.state.map(str::to_string),
                e.waker_comm.as_ref().map(|c| c.to_string()),
                e.container_id.clone(),
            )
        };
        let mut want: Vec<_> = events.iter().map(row).collect();
        let batch = table::kernel_events_batch(&events).unwrap();
        let file = tempfile::tempfile().unwrap();
        let mut w = event_writer(file.try_clone().unwrap(), batch.schema(), 3).unwrap();
        let pieces: Vec<RecordBatch> = (0..3).map(|p| batch.slice(p * 1000, 1000)).collect();
        write_sorted(&mut w, &pieces).unwrap();
        w.close().unwrap();
        let mut got = Vec::new();
        for b in
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap()
        {
            let b = b.unwrap();
            let text = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
            let (comm, state, waker, container) = (
                text("comm"),
                text("state"),
                text("waker_comm"),
                text("container_id"),
            );
            let opt = |a: &arrow::array::StringArray, i: usize| {
                a.is_valid(i).then(|| a.value(i).to_string())
            };
            let time = b
                .column_by_name("time_unix_nano")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            for i in 0..b.num_rows() {
                got.push((
                    time.value(i),
                    comm.value(i).to_string(),
                    opt(&state, i),
                    opt(&waker, i),
                    opt(&container, i),
                ));
            }
        }
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "rows differ: first {:?}",
            got.iter().zip(&want).find(|(g, w)| g != w)
        );
    }

    /// An event file's row groups are whole pushes up to ROW_GROUP_ROWS rows, the last one the
    /// rest: the writer never splits a sorted group (it once left a group of 65,536 rows and
    /// one of the pushes' remainder), and its columns read back with the table's Arrow
    /// types and nullability although the Arrow schema is left out of the footer.
    #[tokio::test]
    async fn event_files_are_whole_row_groups_and_read_back_the_table_schema() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let (store, mut sink) = memory_sink();
        let total = 70_000;
        for piece in 0..total / 1000 + 1 {
            let mut events: Vec<KernelEvent> = (piece * 1000..((piece + 1) * 1000).min(total))
                .map(|k| KernelEvent {
                    time_unix_nano: 1_000_000 + k as i64,
                    duration_ns: 5_000 + (k as i64 * 7919) % 100_000,
                    pid: 10,
                    tid: 11,
                    event_name: names::event::OFF_CPU,
                    state: Some(names::state::SLEEP),
                    ..Default::default()
                })
                .collect();
            sink.push(&mut events, vec![], vec![]).await.unwrap();
        }
        sink.flush().await.unwrap();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(only_event_file(&store).await).unwrap();
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(
            groups,
            vec![65_000, 5_000],
            "row groups of whole 1000-row pushes"
        );
        assert!(
            reader
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .is_none(),
            "no Arrow schema in the footer"
        );
        let expected = table::kernel_events_batch(&[]).unwrap().schema();
        for (read, want) in reader.schema().fields().iter().zip(expected.fields()) {
            assert_eq!(
                (read.name(), read.data_type(), read.is_nullable()),
                (want.name(), want.data_type(), want.is_nullable())
            );
        }
        assert_eq!(reader.schema().fields().len(), expected.fields().len());
        let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, total);
    }

    /// The layout the readers and P6 rely on: times delta-encoded, durations split into byte
    /// streams (both read back exactly), zstd only on [`ZSTD_COLUMNS`], and a page index of
    /// min/max only on the sort key and the trace ids, while every column keeps its page
    /// offsets (a page skipped on the key is skipped in every column read).
    #[tokio::test]
    async fn event_files_index_pages_on_the_sort_key_only_and_split_durations() {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        use parquet::basic::Encoding;
        use parquet::file::metadata::PageIndexPolicy;
        use parquet::file::page_index::column_index::ColumnIndexMetaData;
        let (store, mut sink) = memory_sink();
        let duration = |k: i64| {
            if k % 3 == 0 {
                0
            } else {
                1 + k * k * 7919 % 9_000_000
            }
        };
        let mut events: Vec<KernelEvent> = (0..30_000_i64)
            .map(|k| KernelEvent {
                time_unix_nano: 1_000_000 + k * 1013,
                duration_ns: duration(k),
                pid: 10,
                tid: 11 + (k % 2) as i32,
                event_name: names::event::RUNQ,
                ..Default::default()
            })
            .collect();
        sink.push(&mut events, vec![], vec![]).await.unwrap();
        sink.flush().await.unwrap();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            only_event_file(&store).await,
            options,
        )
        .unwrap();
        let meta = reader.metadata().clone();
        let group = meta.row_group(0);
        let column = |name: &str| {
            let at = (0..group.num_columns())
                .find(|&c| group.column(c).column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name}"));
            (at, group.column(at))
        };
        let encodings = |name: &str| column(name).1.encodings().collect::<Vec<_>>();
        assert!(encodings("time_unix_nano").contains(&Encoding::DELTA_BINARY_PACKED));
        assert!(encodings("duration_ns").contains(&Encoding::BYTE_STREAM_SPLIT));
        // zstd only where it shrinks the column; the rest is read without a codec
        for name in ["time_unix_nano", "duration_ns", "tid", "prev_tid", "comm"] {
            assert!(
                matches!(
                    column(name).1.compression(),
                    parquet::basic::Compression::ZSTD(_)
                ),
                "{name} is zstd"
            );
        }
        for name in ["event_name", "waker_tid", "futex_uaddr", "kernel_stack_id"] {
            assert_eq!(
                column(name).1.compression(),
                parquet::basic::Compression::UNCOMPRESSED,
                "{name} is uncompressed"
            );
        }
        let index = &meta.column_index().expect("a column index")[0];
        let offsets = &meta.offset_index().expect("an offset index")[0];
        for name in PAGE_INDEXED {
            assert!(
                !matches!(index[column(name).0], ColumnIndexMetaData::NONE),
                "{name} has page statistics"
            );
        }
        for name in ["duration_ns", "state", "cpu", "comm", "prev_tid"] {
            assert!(
                matches!(index[column(name).0], ColumnIndexMetaData::NONE),
                "{name} has no page statistics"
            );
        }
        assert!(offsets.iter().all(|o| !o.page_locations().is_empty()));
        // pages of KEY_PAGE_ROWS rows on the key columns, bigger ones elsewhere
        let page_rows = |name: &str| {
            let pages = offsets[column(name).0].page_locations();
            let firsts: Vec<i64> = pages.iter().map(|p| p.first_row_index).collect();
            let mut rows: Vec<i64> = firsts.windows(2).map(|w| w[1] - w[0]).collect();
            rows.push(group.num_rows() - firsts.last().copied().unwrap_or(0));
            rows
        };
        for name in KEY_PAGE_COLUMNS {
            let rows = page_rows(name);
            assert!(
                rows.len() >= 30_000 / KEY_PAGE_ROWS
                    && rows.iter().all(|&n| n <= KEY_PAGE_ROWS as i64),
                "{name}: pages of {rows:?} rows"
            );
        }
        for name in ["time_unix_nano", "duration_ns", "comm"] {
            let rows = page_rows(name);
            assert!(rows.len() <= 2, "{name}: pages of {rows:?} rows");
        }
        let mut read: Vec<(i64, i64)> = Vec::new();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let col = |n: &str| {
                batch
                    .column_by_name(n)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let (t, d) = (col("time_unix_nano"), col("duration_ns"));
            read.extend(t.values().iter().zip(d.values()).map(|(t, d)| (*t, *d)));
        }
        read.sort_unstable();
        let want: Vec<(i64, i64)> = (0..30_000)
            .map(|k| (1_000_000 + k * 1013, duration(k)))
            .collect();
        assert_eq!(read, want);
    }
}
