//! causeway's event schema, defined once for every layer.
//!
//! * [`names`]: event names (`sched.off_cpu`, …), off-CPU state classes and attribute keys, with
//!   OpenTelemetry semantic-convention names where one exists and `causeway.*` otherwise.
//! * [`event`]: [`KernelEvent`], the decoded form of one kernel record.
//! * [`otlp`]: the OTLP log record of an event (what the OTel pipeline receives).
//! * [`table`]: the Arrow schemas of the `kernel_events` and `stacks` tables and the encoders that
//!   the Parquet writer uses; the columns are the OTLP attributes, flattened.
//! * [`columns`]: the `kernel_events` columns and how each is stored.
//! * [`layout`]: where objects live in the store (hive partitions by date, hour and host).

pub mod columns;
pub mod comm;
pub mod event;
pub mod layout;
pub mod names;
pub mod otlp;
pub mod table;

pub use comm::Comm;
pub use event::StackRecord;
pub use event::{Detail, KernelEvent, KindFields};
