//! The `kernel_events` columns, defined once: name, type, nullability, and how the Parquet
//! writer stores each (compression, page statistics, page size, encoding). The schema is built
//! from this table; the collector's writer reads its storage from it.
//!
//! Why the storage is what it is (measured on live captures and 1 h synthetic stores; figures in
//! docs/benchmarks.md):
//! - **zstd** only on columns filled on (nearly) every row or every run-queue row; zstd made the
//!   mostly-null, kind-specific columns bigger, and each compressed chunk a reader opens costs
//!   it a zstd context.
//! - **Page statistics** (the page index) on the sort key and the trace ids: on any other column
//!   a page's range spans most values and skips nothing.
//! - **Small pages** (4096 rows) on the sort key's leading columns, so a reader selecting one
//!   process's or thread's rows decodes only their row ranges in every other column.
//! - **Encodings**: times ascend within a thread (delta); durations split into byte streams.

use arrow::datatypes::DataType;

/// How the writer stores a column's values beyond its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The writer's default (dictionary, then plain).
    Default,
    /// Delta-coded, no dictionary: values that ascend.
    DeltaBinaryPacked,
    /// Byte streams (all low bytes, then the next…), no dictionary: unrelated values whose high
    /// bytes repeat.
    ByteStreamSplit,
}

/// How one column is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    /// zstd-compressed (else uncompressed).
    pub zstd: bool,
    /// Min/max statistics per page (else per column chunk).
    pub page_index: bool,
    /// Pages of [`KEY_PAGE_ROWS`] rows (else the writer's default, ~20k rows).
    pub key_pages: bool,
    /// The values' encoding.
    pub encoding: Encoding,
}

/// Rows per page of the columns with `key_pages`.
pub const KEY_PAGE_ROWS: usize = 4096;

const PLAIN: Storage = Storage {
    zstd: false,
    page_index: false,
    key_pages: false,
    encoding: Encoding::Default,
};
const ZSTD: Storage = Storage {
    zstd: true,
    ..PLAIN
};
/// The sort key's leading columns: compressed runs, page statistics, small pages.
const KEY: Storage = Storage {
    zstd: true,
    page_index: true,
    key_pages: true,
    encoding: Encoding::Default,
};
const INDEXED: Storage = Storage {
    page_index: true,
    ..PLAIN
};

/// One column of `kernel_events`.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its Arrow type.
    pub data_type: ColumnType,
    /// Every row has a value.
    pub required: bool,
    /// How the writer stores it.
    pub storage: Storage,
}

/// The Arrow types `kernel_events` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `Int32`.
    I32,
    /// `Int64`.
    I64,
    /// `Utf8`.
    Str,
}

impl ColumnType {
    /// The Arrow type.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::I32 => DataType::Int32,
            ColumnType::I64 => DataType::Int64,
            ColumnType::Str => DataType::Utf8,
        }
    }
}

const fn req(name: &'static str, data_type: ColumnType, storage: Storage) -> Column {
    Column {
        name,
        data_type,
        required: true,
        storage,
    }
}

const fn opt(name: &'static str, data_type: ColumnType, storage: Storage) -> Column {
    Column {
        name,
        data_type,
        required: false,
        storage,
    }
}

use ColumnType::*;

/// The `kernel_events` columns, in file order.
pub const KERNEL_EVENTS: &[Column] = &[
    req(
        "time_unix_nano",
        I64,
        Storage {
            zstd: true,
            page_index: true,
            key_pages: false, // delta-coded pages compress worse that small (+8 % of the file)
            encoding: Encoding::DeltaBinaryPacked,
        },
    ),
    req(
        "duration_ns",
        I64,
        Storage {
            encoding: Encoding::ByteStreamSplit,
            ..ZSTD
        },
    ),
    req("pid", I32, KEY),
    req("tid", I32, KEY),
    req("comm", Str, ZSTD),
    req("process_name", Str, ZSTD),
    req("event_name", Str, Storage { zstd: false, ..KEY }),
    req("cpu", I32, ZSTD),
    req("cgroup_id", I64, ZSTD),
    opt("container_id", Str, PLAIN),
    opt("trace_id", Str, INDEXED),
    opt("span_id", Str, INDEXED),
    opt("state", Str, ZSTD),
    opt("waker_pid", I32, PLAIN),
    opt("waker_tid", I32, PLAIN),
    opt("waker_comm", Str, PLAIN),
    opt("prev_pid", I32, ZSTD),
    opt("prev_tid", I32, ZSTD),
    opt("prev_comm", Str, ZSTD),
    opt("user_stack_id", I64, PLAIN),
    opt("kernel_stack_id", I64, PLAIN),
    opt("ppid", I32, PLAIN),
    opt("exit_code", I32, PLAIN),
    opt("path", Str, PLAIN),
    opt("correlation_method", Str, PLAIN),
    opt("futex_uaddr", I64, PLAIN),
    opt("futex_op", Str, PLAIN),
    opt("device", Str, PLAIN),
    opt("bytes", I64, PLAIN),
    opt("io_op", Str, PLAIN),
    opt("io_queue_ns", I64, PLAIN),
    opt("saddr", Str, PLAIN),
    opt("daddr", Str, PLAIN),
    opt("pod_uid", Str, PLAIN),
    opt("cuda_function", Str, PLAIN),
    opt("cuda_stream", I64, PLAIN),
    opt("cuda_grid", Str, PLAIN),
    opt("cuda_block", Str, PLAIN),
    opt("cuda_kernel", Str, PLAIN),
    opt("kernel_lock", Str, PLAIN),
    opt("kernel_lock_kind", Str, PLAIN),
    opt("prev_cgroup_id", I64, PLAIN),
    opt("prev_container_id", Str, PLAIN),
    opt("cpu_throttled_periods", I64, PLAIN),
    opt("cpu_periods", I64, PLAIN),
    opt("cpu_max", Str, PLAIN),
];

/// The column named `name`.
pub fn column(name: &str) -> Option<&'static Column> {
    KERNEL_EVENTS.iter().find(|c| c.name == name)
}
