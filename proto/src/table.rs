//! Arrow schemas of the tables in object storage, and the encoders the Parquet writer uses.
//!
//! `host`, `date` and `hour` are not stored in the files: they are hive partition columns
//! (see [`crate::layout`]) that the query engine adds from the object path.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::array::BooleanArray;
use arrow::array::Int32Array;
use arrow::array::Int64Array;
use arrow::array::ListBuilder;
use arrow::array::StringArray;
use arrow::array::StringBuilder;
use arrow::array::UInt64Builder;
use arrow::buffer::BooleanBuffer;
use arrow::buffer::Buffer;
use arrow::buffer::MutableBuffer;
use arrow::buffer::NullBuffer;
use arrow::buffer::OffsetBuffer;
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::DataType;
use arrow::datatypes::Field;
use arrow::datatypes::Schema;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::KernelEvent;
use crate::StackRecord;

/// Name of the kernel event table (and its prefix in the store).
pub const KERNEL_EVENTS: &str = "kernel_events";
/// Name of the stack table (and its prefix in the store).
pub const STACKS: &str = "stacks";
/// Name of the collector's own loss and rate counters (and its prefix in the store).
pub const COLLECTOR_STATS: &str = "collector_stats";
/// Name of the CUDA/NCCL call-duration histograms (and their prefix in the store).
pub const CUDA_HISTOGRAMS: &str = "cuda_histograms";
/// Name of the collectors' clock samples against the store's clock (and their prefix in the store).
pub const CLOCK_SYNC: &str = "clock_sync";

fn nullable(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, true)
}

fn required(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, false)
}

/// Schema of `kernel_events` files (the columns of [`crate::columns::KERNEL_EVENTS`]).
pub fn kernel_events_schema() -> SchemaRef {
    Arc::new(Schema::new(
        crate::columns::KERNEL_EVENTS
            .iter()
            .map(|c| Field::new(c.name, c.data_type.arrow(), !c.required))
            .collect::<Vec<_>>(),
    ))
}

/// Schema of `stacks` files.
pub fn stacks_schema() -> SchemaRef {
    use DataType::*;
    let list = |name: &str, dt: DataType| {
        Field::new(name, List(Arc::new(Field::new("item", dt, true))), false)
    };
    Arc::new(Schema::new(vec![
        required("stack_id", Int64),
        required("kind", Utf8),
        required("time_unix_nano", Int64),
        required("pid", Int32),
        list("frames", Utf8),
        list("build_ids", Utf8),
        list("offsets", UInt64),
        required("truncated", Boolean),
    ]))
}

/// Schema of `collector_stats` files: per window and record type, what the kernel emitted,
/// dropped (ring buffer full, also per CPU) and filtered, and what user space shed or could not
/// decode.
pub fn collector_stats_schema() -> SchemaRef {
    use DataType::*;
    Arc::new(Schema::new(vec![
        required("time_unix_nano", Int64),
        required("interval_ns", Int64),
        required("kind", Utf8),
        required("emitted", Int64),
        required("dropped", Int64),
        Field::new(
            "dropped_per_cpu",
            List(Arc::new(Field::new("item", Int64, true))),
            false,
        ),
        required("below_threshold", Int64),
        required("shed", Int64),
        required("undecodable", Int64),
        nullable("detail", Utf8),
        nullable("cpu_percent", Float64),
        nullable("rss_bytes", Int64),
        nullable("peak_rss_bytes", Int64),
        nullable("bpf_ns_per_run", Float64),
        nullable("bpf_cpu_percent", Float64),
    ]))
}

/// Schema of `cuda_histograms` files: per window, process and CUDA/NCCL function, calls per
/// log2 duration bucket as the in-kernel histograms counted them. Launch probes are attached
/// only part of the time (duty cycle): `sampled_fraction` is the share of the window they were,
/// so `calls / sampled_fraction` estimates all calls; 1.0 for functions traced all the time.
pub fn cuda_histograms_schema() -> SchemaRef {
    use DataType::*;
    Arc::new(Schema::new(vec![
        required("time_unix_nano", Int64),
        required("interval_ns", Int64),
        required("pid", Int32),
        required("process_name", Utf8),
        required("cuda_function", Utf8),
        required("event_name", Utf8),
        required("bucket_low_ns", Int64),
        required("bucket_high_ns", Int64),
        required("calls", Int64),
        required("sum_ns", Int64),
        required("sampled_fraction", Float64),
    ]))
}

/// One row of `cuda_histograms`: calls of one function in one duration bucket and window.
/// `sum_ns` is the total duration of the window's calls of that function, on its first bucket
/// row only (0 on the others), so `SUM(sum_ns)` stays right.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CudaHistRecord {
    /// Window start (UTC ns).
    pub time_unix_nano: i64,
    /// Window length.
    pub interval_ns: i64,
    /// Process id.
    pub pid: i32,
    /// Process leader's name.
    pub process_name: String,
    /// Function name.
    pub cuda_function: &'static str,
    /// Event name of the function's class (`cuda.launch`, `cuda.sync`, …).
    pub event_name: &'static str,
    /// Bucket lower bound (inclusive), ns.
    pub bucket_low_ns: i64,
    /// Bucket upper bound (exclusive), ns.
    pub bucket_high_ns: i64,
    /// Calls counted (sampled) in the bucket.
    pub calls: i64,
    /// Total duration of the window's calls (first bucket row of the function only).
    pub sum_ns: i64,
    /// Share of the window the function's probes were attached.
    pub sampled_fraction: f64,
}

/// Encodes histogram rows.
pub fn cuda_histograms_batch(rows: &[CudaHistRecord]) -> Result<RecordBatch, ArrowError> {
    let i64s = |f: &dyn Fn(&CudaHistRecord) -> i64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let strs = |f: &dyn Fn(&CudaHistRecord) -> &str| -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    RecordBatch::try_new(
        cuda_histograms_schema(),
        vec![
            i64s(&|r| r.time_unix_nano),
            i64s(&|r| r.interval_ns),
            Arc::new(rows.iter().map(|r| r.pid).collect::<Int32Array>()),
            strs(&|r| &r.process_name),
            strs(&|r| r.cuda_function),
            strs(&|r| r.event_name),
            i64s(&|r| r.bucket_low_ns),
            i64s(&|r| r.bucket_high_ns),
            i64s(&|r| r.calls),
            i64s(&|r| r.sum_ns),
            Arc::new(
                rows.iter()
                    .map(|r| r.sampled_fraction)
                    .collect::<arrow::array::Float64Array>(),
            ),
        ],
    )
}

/// Schema of `clock_sync` files: how far this host's clock is from a reference every host of
/// a fleet shares (the object store's HTTP `Date`), so events of different hosts can be put on one
/// time line and never ordered closer than the uncertainty. `reference_minus_local_*` bound
/// (reference − local) in ns: `offset_*` is the collector's running intersection of all its
/// samples (widened for drift between them), `sample_*` this sample's own bracket. Without a
/// shared reference (a local store) only the kernel's view of its NTP sync is recorded.
pub fn clock_sync_schema() -> SchemaRef {
    use DataType::*;
    Arc::new(Schema::new(vec![
        required("time_unix_nano", Int64),
        required("reference", Utf8),
        nullable("round_trip_ns", Int64),
        nullable("sample_low_ns", Int64),
        nullable("sample_high_ns", Int64),
        nullable("offset_low_ns", Int64),
        nullable("offset_high_ns", Int64),
        required("samples", Int64),
        required("resets", Int64),
        required("kernel_synchronized", Boolean),
        required("kernel_max_error_ns", Int64),
        required("kernel_est_error_ns", Int64),
    ]))
}

/// One row of `clock_sync`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClockSyncRecord {
    /// Local UTC time of the sample (ns).
    pub time_unix_nano: i64,
    /// What the clock was compared with (`http://host:port` of the store, or `none`).
    pub reference: String,
    /// Round trip of the exchange, ns.
    pub round_trip_ns: Option<i64>,
    /// This sample's bounds on reference − local, ns.
    pub sample_low_ns: Option<i64>,
    /// Upper bound of the same.
    pub sample_high_ns: Option<i64>,
    /// All samples' bounds intersected (with drift allowance), ns.
    pub offset_low_ns: Option<i64>,
    /// Upper bound of the same.
    pub offset_high_ns: Option<i64>,
    /// Samples taken so far.
    pub samples: i64,
    /// Times a sample contradicted the running bounds (clock stepped) and restarted them.
    pub resets: i64,
    /// The kernel says NTP keeps this clock synchronized (adjtimex, no STA_UNSYNC).
    pub kernel_synchronized: bool,
    /// adjtimex maxerror, ns.
    pub kernel_max_error_ns: i64,
    /// adjtimex esterror, ns.
    pub kernel_est_error_ns: i64,
}

/// Encodes clock rows.
pub fn clock_sync_batch(rows: &[ClockSyncRecord]) -> Result<RecordBatch, ArrowError> {
    let opt = |f: &dyn Fn(&ClockSyncRecord) -> Option<i64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let req = |f: &dyn Fn(&ClockSyncRecord) -> i64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    RecordBatch::try_new(
        clock_sync_schema(),
        vec![
            req(&|r| r.time_unix_nano),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.reference.as_str()))
                    .collect::<StringArray>(),
            ),
            opt(&|r| r.round_trip_ns),
            opt(&|r| r.sample_low_ns),
            opt(&|r| r.sample_high_ns),
            opt(&|r| r.offset_low_ns),
            opt(&|r| r.offset_high_ns),
            req(&|r| r.samples),
            req(&|r| r.resets),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.kernel_synchronized))
                    .collect::<BooleanArray>(),
            ),
            req(&|r| r.kernel_max_error_ns),
            req(&|r| r.kernel_est_error_ns),
        ],
    )
}

fn i64s(events: &[KernelEvent], f: impl Fn(&KernelEvent) -> i64) -> ArrayRef {
    Arc::new(events.iter().map(f).collect::<Int64Array>())
}
fn i32s(events: &[KernelEvent], f: impl Fn(&KernelEvent) -> i32) -> ArrayRef {
    Arc::new(events.iter().map(f).collect::<Int32Array>())
}
/// `bytes` zeroed bytes, sliced from one allocation shared by every all-null column.
fn zeros(bytes: usize) -> Buffer {
    static ZEROS: std::sync::Mutex<Option<Buffer>> = std::sync::Mutex::new(None);
    let mut shared = ZEROS.lock().unwrap_or_else(|e| e.into_inner());
    if shared.as_ref().is_none_or(|b| b.len() < bytes) {
        let size = bytes.next_power_of_two().max(4096);
        *shared = Some(Buffer::from(MutableBuffer::from_len_zeroed(size)));
    }
    shared
        .as_ref()
        .map(|b| b.slice_with_length(0, bytes))
        .unwrap_or_default()
}

/// A column that no event of the batch fills. Most columns are kind-specific, so most of a
/// batch is such columns; built the usual way each would hold 4–8 bytes per row until its
/// file is written. These share one zeroed allocation instead (values, offsets and validity
/// all read as zero: null), so a batch costs memory only for the columns it uses.
pub fn null_column(dt: &DataType, len: usize) -> ArrayRef {
    let nulls = NullBuffer::new(BooleanBuffer::new(zeros(len.div_ceil(8)), 0, len));
    match dt {
        DataType::Int64 => Arc::new(Int64Array::new(
            ScalarBuffer::new(zeros(len * 8), 0, len),
            Some(nulls),
        )),
        DataType::Int32 => Arc::new(Int32Array::new(
            ScalarBuffer::new(zeros(len * 4), 0, len),
            Some(nulls),
        )),
        DataType::Utf8 => Arc::new(StringArray::new(
            OffsetBuffer::new(ScalarBuffer::new(zeros((len + 1) * 4), 0, len + 1)),
            Buffer::from(Vec::<u8>::new()),
            Some(nulls),
        )),
        other => arrow::array::new_null_array(other, len),
    }
}

fn opt_i64s(events: &[KernelEvent], f: impl Fn(&KernelEvent) -> Option<i64>) -> ArrayRef {
    if events.iter().all(|e| f(e).is_none()) {
        return null_column(&DataType::Int64, events.len());
    }
    Arc::new(events.iter().map(f).collect::<Int64Array>())
}
fn opt_i32s(events: &[KernelEvent], f: impl Fn(&KernelEvent) -> Option<i32>) -> ArrayRef {
    if events.iter().all(|e| f(e).is_none()) {
        return null_column(&DataType::Int32, events.len());
    }
    Arc::new(events.iter().map(f).collect::<Int32Array>())
}
fn strs<'a>(events: &'a [KernelEvent], f: impl Fn(&'a KernelEvent) -> &'a str) -> ArrayRef {
    Arc::new(events.iter().map(|e| Some(f(e))).collect::<StringArray>())
}
fn opt_strs<'a>(
    events: &'a [KernelEvent],
    f: impl Fn(&'a KernelEvent) -> Option<&'a str>,
) -> ArrayRef {
    if events.iter().all(|e| f(e).is_none()) {
        return null_column(&DataType::Utf8, events.len());
    }
    Arc::new(events.iter().map(f).collect::<StringArray>())
}

/// Encodes events as one `kernel_events` batch, in the order given.
pub fn kernel_events_batch(events: &[KernelEvent]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        i64s(events, |e| e.time_unix_nano),
        i64s(events, |e| e.duration_ns),
        i32s(events, |e| e.pid),
        i32s(events, |e| e.tid),
        strs(events, |e| &e.comm),
        strs(events, |e| &e.process_name),
        strs(events, |e| e.event_name),
        i32s(events, |e| e.cpu),
        i64s(events, |e| e.cgroup_id),
        opt_strs(events, |e| e.container_id.as_deref()),
        opt_strs(events, |e| e.trace_id.as_deref()),
        opt_strs(events, |e| e.span_id.as_deref()),
        opt_strs(events, |e| e.state),
        opt_i32s(events, |e| e.waker_pid),
        opt_i32s(events, |e| e.waker_tid),
        opt_strs(events, |e| e.waker_comm.as_deref()),
        opt_i32s(events, |e| e.prev_pid),
        opt_i32s(events, |e| e.prev_tid),
        opt_strs(events, |e| e.prev_comm.as_deref()),
        opt_i64s(events, |e| e.user_stack_id),
        opt_i64s(events, |e| e.kernel_stack_id),
        opt_i32s(events, |e| e.ppid),
        opt_i32s(events, |e| e.exit_code),
        opt_strs(events, |e| e.path.as_deref()),
        opt_strs(events, |e| e.correlation_method),
        opt_i64s(events, |e| e.futex_uaddr),
        opt_strs(events, |e| e.futex_op),
        opt_strs(events, |e| e.device.as_deref()),
        opt_i64s(events, |e| e.bytes),
        opt_strs(events, |e| e.io_op.as_deref()),
        opt_i64s(events, |e| e.io_queue_ns),
        opt_strs(events, |e| e.saddr.as_deref()),
        opt_strs(events, |e| e.daddr.as_deref()),
        opt_strs(events, |e| e.pod_uid.as_deref()),
        opt_strs(events, |e| e.cuda_function),
        opt_i64s(events, |e| e.cuda_stream),
        opt_strs(events, |e| e.cuda_grid.as_deref()),
        opt_strs(events, |e| e.cuda_block.as_deref()),
        opt_strs(events, |e| e.cuda_kernel.as_deref()),
        opt_strs(events, |e| e.kernel_lock.as_deref()),
        opt_strs(events, |e| e.kernel_lock_kind),
        opt_i64s(events, |e| e.prev_cgroup_id),
        opt_strs(events, |e| e.prev_container_id.as_deref()),
        opt_i64s(events, |e| e.cpu_throttled_periods),
        opt_i64s(events, |e| e.cpu_periods),
        opt_strs(events, |e| e.cpu_max.as_deref()),
    ];
    RecordBatch::try_new(kernel_events_schema(), columns)
}

/// Encodes stacks as one `stacks` batch.
pub fn stacks_batch(stacks: &[StackRecord]) -> Result<RecordBatch, ArrowError> {
    let mut frames = ListBuilder::new(StringBuilder::new());
    let mut build_ids = ListBuilder::new(StringBuilder::new());
    let mut offsets = ListBuilder::new(UInt64Builder::new());
    for s in stacks {
        for f in &s.frames {
            frames.values().append_value(f);
        }
        frames.append(true);
        for b in &s.build_ids {
            if b.is_empty() {
                build_ids.values().append_null();
            } else {
                build_ids.values().append_value(b);
            }
        }
        build_ids.append(true);
        offsets.values().append_slice(&s.offsets);
        offsets.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(stacks.iter().map(|s| s.stack_id).collect::<Int64Array>()),
        Arc::new(stacks.iter().map(|s| Some(s.kind)).collect::<StringArray>()),
        Arc::new(
            stacks
                .iter()
                .map(|s| s.time_unix_nano)
                .collect::<Int64Array>(),
        ),
        Arc::new(stacks.iter().map(|s| s.pid).collect::<Int32Array>()),
        Arc::new(frames.finish()),
        Arc::new(build_ids.finish()),
        Arc::new(offsets.finish()),
        Arc::new(
            stacks
                .iter()
                .map(|s| Some(s.truncated))
                .collect::<BooleanArray>(),
        ),
    ];
    RecordBatch::try_new(stacks_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;
    use arrow::array::Array;

    #[test]
    fn kernel_events_batch_matches_schema_and_keeps_nulls() {
        let events = vec![
            KernelEvent {
                time_unix_nano: 1,
                duration_ns: 200,
                pid: 10,
                tid: 11,
                comm: "a".into(),
                process_name: "p".into(),
                event_name: names::event::OFF_CPU,
                state: Some(names::state::SLEEP),
                waker_tid: Some(12),
                ..Default::default()
            },
            KernelEvent {
                event_name: names::event::RUNQ,
                ..Default::default()
            },
        ];
        let b = kernel_events_batch(&events).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), kernel_events_schema());
        let state = b.column_by_name("state").unwrap();
        assert_eq!(state.null_count(), 1);
        let waker = b.column_by_name("waker_tid").unwrap();
        let waker = waker.as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(waker.value(0), 12);
        assert!(waker.is_null(1));
        // columns no event fills are null and share one zeroed allocation
        for name in ["futex_uaddr", "bytes", "device", "cuda_kernel", "ppid"] {
            let c = b.column_by_name(name).unwrap();
            assert_eq!(c.null_count(), 2, "{name}");
            assert!(c.is_null(0) && c.is_null(1), "{name}");
        }
        let ptr = |name: &str| b.column_by_name(name).unwrap().to_data().buffers()[0].as_ptr();
        assert_eq!(ptr("futex_uaddr"), ptr("bytes"));
        let strings = b.column_by_name("device").unwrap();
        let strings = strings.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(strings.value_offsets(), &[0, 0, 0]);
    }

    #[test]
    fn contract_columns_are_present() {
        let s = kernel_events_schema();
        for c in [
            "time_unix_nano",
            "duration_ns",
            "pid",
            "tid",
            "comm",
            "event_name",
            "cpu",
            "cgroup_id",
            "container_id",
            "trace_id",
            "span_id",
            "state",
            "waker_pid",
            "waker_tid",
            "waker_comm",
            "user_stack_id",
            "kernel_stack_id",
        ] {
            assert!(s.field_with_name(c).is_ok(), "missing contract column {c}");
        }
        let s = stacks_schema();
        for c in ["stack_id", "frames", "build_ids"] {
            assert!(s.field_with_name(c).is_ok(), "missing contract column {c}");
        }
    }

    #[test]
    fn stacks_batch_round_trips_lists() {
        let s = StackRecord {
            stack_id: 7,
            kind: "user",
            frames: vec!["inner".into(), "main".into()],
            build_ids: vec!["ab".into(), String::new()],
            offsets: vec![1, 2],
            ..Default::default()
        };
        let b = stacks_batch(&[s]).unwrap();
        assert_eq!(b.num_rows(), 1);
        let ids = b.column_by_name("build_ids").unwrap();
        assert_eq!(ids.len(), 1);
    }
}
