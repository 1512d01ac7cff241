//! Publishes the current thread's span so causeway can tag that thread's kernel events with it.
//!
//! Each change of the current span writes the OTEP-4947 thread-context record (the TLS pointer
//! `otel_thread_ctx_v1`) and calls `causeway_ctx_publish`, the function causeway-collector
//! uprobes. The C implementation is in `c/causeway_ctx.c`; this crate links it statically and
//! offers a guard-based API:
//!
//! ```no_run
//! let _span = causeway_context::attach([1; 16], [2; 8], 1);
//! // ... the span's work: off-CPU time, futex waits, I/O here carry trace/span ids ...
//! // dropping the guard restores the previous span
//! ```

use std::marker::PhantomData;

extern "C" {
    fn causeway_ctx_attach(trace_id: *const u8, span_id: *const u8, trace_flags: u8) -> u32;
    fn causeway_ctx_detach(token: u32);
    fn causeway_ctx_set(trace_id: *const u8, span_id: *const u8, trace_flags: u8);
    fn causeway_ctx_clear();
    fn causeway_ctx_current(trace_id: *mut u8, span_id: *mut u8) -> i32;
}

/// Path of the shared library built with this crate (`libcauseway_ctx.so`), for programs that
/// load it at run time (the Python hook reads it from `CAUSEWAY_CTX_LIB`).
pub const SHARED_LIBRARY: &str = env!("CAUSEWAY_CTX_SO");

/// The symbol causeway-collector attaches its uprobe to.
pub const PROBE_SYMBOL: &str = "causeway_ctx_publish";

/// Restores the previous span when dropped. Bound to the thread that created it.
#[must_use = "the span is current only while the guard lives"]
pub struct SpanGuard {
    token: u32,
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        // SAFETY: plain C call on thread-local state; the token came from this thread's attach.
        unsafe { causeway_ctx_detach(self.token) }
    }
}

/// Makes `(trace_id, span_id)` this thread's current span until the guard drops.
pub fn attach(trace_id: [u8; 16], span_id: [u8; 8], trace_flags: u8) -> SpanGuard {
    // SAFETY: the pointers reference arrays of the sizes the C API reads.
    let token = unsafe { causeway_ctx_attach(trace_id.as_ptr(), span_id.as_ptr(), trace_flags) };
    SpanGuard {
        token,
        _thread_bound: PhantomData,
    }
}

/// Replaces this thread's current span (no nesting: for runtimes that track nesting themselves).
pub fn set(trace_id: [u8; 16], span_id: [u8; 8], trace_flags: u8) {
    // SAFETY: as in `attach`.
    unsafe { causeway_ctx_set(trace_id.as_ptr(), span_id.as_ptr(), trace_flags) }
}

/// This thread has no current span.
pub fn clear() {
    // SAFETY: plain C call on thread-local state.
    unsafe { causeway_ctx_clear() }
}

/// This thread's current span, if any.
pub fn current() -> Option<([u8; 16], [u8; 8])> {
    let (mut t, mut s) = ([0u8; 16], [0u8; 8]);
    // SAFETY: the buffers have the sizes the C API writes.
    let ok = unsafe { causeway_ctx_current(t.as_mut_ptr(), s.as_mut_ptr()) };
    (ok == 1).then_some((t, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_restores_the_parent() {
        assert_eq!(current(), None);
        let outer = attach([1; 16], [1; 8], 1);
        {
            let _inner = attach([1; 16], [2; 8], 1);
            assert_eq!(current(), Some(([1; 16], [2; 8])));
        }
        assert_eq!(current(), Some(([1; 16], [1; 8])));
        drop(outer);
        assert_eq!(current(), None);
    }

    #[test]
    fn zero_ids_are_no_context_and_threads_are_separate() {
        let _g = attach([0; 16], [3; 8], 1);
        assert_eq!(current(), None, "an all-zero trace id is invalid");
        set([4; 16], [5; 8], 0);
        std::thread::spawn(|| assert_eq!(current(), None))
            .join()
            .unwrap();
        assert_eq!(current(), Some(([4; 16], [5; 8])));
        clear();
        assert_eq!(current(), None);
    }

    #[test]
    fn the_shared_library_exports_the_otep_symbols() {
        let bytes = std::fs::read(SHARED_LIBRARY).expect("the build script wrote the library");
        for sym in [PROBE_SYMBOL, "otel_thread_ctx_v1", "causeway_ctx_attach"] {
            let needle = format!("{sym}\0");
            assert!(
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{sym} missing"
            );
        }
    }
}
