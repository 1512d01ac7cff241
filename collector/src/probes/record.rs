//! What every decoder shares: reading a wire struct from a ring-buffer record, the event every
//! record kind starts from (header, times, cgroup, names), and what decoding gives.

use causeway_proto::names;
use causeway_proto::KernelEvent;

use super::wire::cw_ctx_source;
use super::wire::cw_header;
use crate::clock::BootToWall;

/// A decoded record: most are complete events; some carry raw addresses that the stack thread
/// turns into ids or names (symbolization must never stall the drain).
#[derive(Debug)]
pub enum Decoded {
    /// A complete event.
    Event(KernelEvent),
    /// An event whose function address (a CUDA kernel's host stub in process `pid`) is still to
    /// be symbolized into `cuda_kernel`.
    WithFunction {
        /// The event, `cuda_kernel` unset.
        event: KernelEvent,
        /// The address in the process.
        addr: u64,
    },
    /// An event whose stack ids are still to be resolved from these raw addresses.
    WithStacks {
        /// The event, stack ids unset.
        event: KernelEvent,
        /// Kernel instruction pointers, innermost first.
        kernel: Vec<u64>,
        /// User instruction pointers, innermost first.
        user: Vec<u64>,
    },
}

/// Reads a `T` from the front of a ring-buffer record, or None when the record is too short.
pub fn read_record<T: Copy>(data: &[u8]) -> Option<T> {
    if data.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; read_unaligned has no alignment requirement; T is a plain C struct
    // generated from the BPF object's BTF, valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(data.as_ptr() as *const T) })
}

/// When a record's interval began and how long it lasted (boot clock, ns), and its cgroup.
pub struct Span {
    /// Start, boot clock.
    pub start_ns: u64,
    /// Length (0 for an instant).
    pub duration_ns: u64,
    /// cgroup v2 id of the thread.
    pub cgroup_id: u64,
}

/// The event a record of kind `name` starts as: its header (process, thread, CPU, trace
/// context), its span on the wall clock, its cgroup and the thread's and process's names.
pub fn event<C: Copy>(
    data: &[u8],
    clock: &BootToWall,
    name: &'static str,
    span: Span,
    (comm, process_name): (&[C], &[C]),
) -> Option<KernelEvent> {
    let hdr: cw_header = read_record(data)?;
    let ctx = &hdr.ctx;
    let source = cw_ctx_source(u32::from(ctx.source));
    let tagged = ctx.trace_id.iter().any(|b| *b != 0);
    let method = match source {
        cw_ctx_source::CW_CTX_UPROBE if tagged => Some(names::correlation::UPROBE),
        cw_ctx_source::CW_CTX_OBI if tagged => Some(names::correlation::OBI_MAP),
        _ => None,
    };
    Some(KernelEvent {
        trace_id: method.map(|_| hex(&ctx.trace_id)),
        span_id: method.map(|_| hex(&ctx.span_id)),
        correlation_method: method,
        time_unix_nano: clock.wall(span.start_ns),
        duration_ns: span.duration_ns as i64,
        pid: hdr.pid as i32,
        tid: hdr.tid as i32,
        comm: comm_of(comm),
        process_name: comm_of(process_name),
        event_name: name,
        cpu: hdr.cpu as i32,
        cgroup_id: span.cgroup_id as i64,
        ..Default::default()
    })
}

/// [`event`] for a wire struct with the fields every interval record has: `start_ns`,
/// `duration_ns`, `cgroup_id`, `comm`, `process_name` (a macro: each skeleton generates its own
/// struct types). `instant` reads `ts_ns` and no duration.
macro_rules! event_of {
    ($data:expr, $clock:expr, $name:expr, $e:expr) => {{
        let e = &$e;
        let span = $crate::probes::record::Span {
            start_ns: e.start_ns,
            duration_ns: e.duration_ns,
            cgroup_id: e.cgroup_id,
        };
        $crate::probes::record::event($data, $clock, $name, span, (&e.comm, &e.process_name))
    }};
    (instant $data:expr, $clock:expr, $name:expr, $e:expr) => {{
        let e = &$e;
        let span = $crate::probes::record::Span {
            start_ns: e.ts_ns,
            duration_ns: 0,
            cgroup_id: e.cgroup_id,
        };
        $crate::probes::record::event($data, $clock, $name, span, (&e.comm, &e.process_name))
    }};
}
pub(crate) use event_of;

fn hex<T: Copy + Into<u8>>(bytes: &[T]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{:02x}", (*b).into());
            s
        })
}

/// A C char array (i8 or u8) as bytes.
fn char_bytes<T: Copy>(a: &[T]) -> &[u8] {
    assert_eq!(std::mem::size_of::<T>(), 1, "C char arrays only");
    // SAFETY: T is one byte wide (checked above), so the slice reinterprets as bytes.
    unsafe { std::slice::from_raw_parts(a.as_ptr() as *const u8, a.len()) }
}

/// A kernel task name from a NUL-terminated char array (see [`causeway_proto::Comm`]).
pub fn comm_of<T: Copy>(a: &[T]) -> causeway_proto::Comm {
    causeway_proto::Comm::from_c(char_bytes(a))
}

/// Copies a NUL-terminated C char array (i8 or u8) into a String, lossily.
pub fn cstr<T: Copy>(a: &[T]) -> String {
    let bytes = char_bytes(a);
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A wire struct's bytes, as the ring buffer would hand them over (decoder tests).
#[cfg(test)]
pub fn bytes_of<T>(record: &T) -> &[u8] {
    // SAFETY: reading the bytes of a plain C struct the caller owns, for its size.
    unsafe { std::slice::from_raw_parts(record as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// Decodes a wire struct as if it came from the ring buffer (decoder tests): the one complete
/// event it must give.
#[cfg(test)]
pub fn decode_struct<T>(record: &T, what: &str) -> KernelEvent {
    match super::decode(bytes_of(record), &BootToWall::sample()) {
        Some(Decoded::Event(ev)) => ev,
        other => panic!("a {what} record decodes to one event, got {other:?}"),
    }
}
