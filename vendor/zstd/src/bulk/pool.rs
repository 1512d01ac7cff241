//! Contexts of the bulk API, kept for reuse within a thread (causeway's change to zstd 0.13.5).
//!
//! Making a context (`ZSTD_createCCtx`, `ZSTD_createDCtx`) asks the CPU whether it has BMI2 with
//! the `cpuid` instruction, and in a virtual machine `cpuid` traps to the hypervisor: a few
//! microseconds a context on the VMs causeway is measured on. The `parquet` crate makes a
//! compressor *and* a decompressor for every column chunk it opens, so a query that reads a
//! window of 16 columns over ~50 row groups made ~1,600 contexts and spent ~5 % of its CPU
//! time in those two functions (`perf`: all of it on the instruction after `cpuid`). A context
//! given back here is reset (session, parameters and dictionary) and handed to the next
//! `Compressor`/`Decompressor` made on the same thread.
//!
//! Only small contexts are kept (a compressor that compressed has a workspace of up to a few
//! MiB; it is freed as before), at most [`KEPT`] of each kind per thread, and the pool goes
//! with its thread.

use std::cell::RefCell;
use zstd_safe::{CCtx, DCtx, ResetDirective};

/// Contexts of each kind kept per thread: a Parquet row group opens one compressor and one
/// decompressor per column it reads, all alive until the row group is done.
const KEPT: usize = 64;

/// Contexts bigger than this are freed rather than kept (a decompression context is ~95 KiB,
/// a compression context that has not compressed anything a few KiB).
const MAX_KEPT_BYTES: usize = 160 * 1024;

thread_local! {
    static DCTXS: RefCell<Vec<DCtx<'static>>> = const { RefCell::new(Vec::new()) };
    static CCTXS: RefCell<Vec<CCtx<'static>>> = const { RefCell::new(Vec::new()) };
}

/// A decompression context: one given back on this thread, or a new one.
pub(crate) fn take_dctx() -> DCtx<'static> {
    DCTXS
        .try_with(|kept| kept.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A compression context: one given back on this thread, or a new one.
pub(crate) fn take_cctx() -> CCtx<'static> {
    CCTXS
        .try_with(|kept| kept.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `ctx` for the next decompressor made on this thread, or frees it.
pub(crate) fn give_back_dctx(mut ctx: DCtx<'_>) {
    if ctx.reset(ResetDirective::SessionAndParameters).is_err()
        || ctx.sizeof() > MAX_KEPT_BYTES
    {
        return;
    }
    // SAFETY: resetting the session and parameters dropped the dictionary the context held or
    // referenced, so nothing borrowed for its lifetime is left in it; the type differs only in
    // that lifetime.
    let ctx: DCtx<'static> = unsafe { std::mem::transmute(ctx) };
    let _ = DCTXS.try_with(move |kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < KEPT {
            kept.push(ctx);
        }
    });
}

/// Keeps `ctx` for the next compressor made on this thread, or frees it.
pub(crate) fn give_back_cctx(mut ctx: CCtx<'_>) {
    if ctx.reset(ResetDirective::SessionAndParameters).is_err()
        || ctx.sizeof() > MAX_KEPT_BYTES
    {
        return;
    }
    // SAFETY: as in `give_back_dctx`: the reset dropped any dictionary the context referenced.
    let ctx: CCtx<'static> = unsafe { std::mem::transmute(ctx) };
    let _ = CCTXS.try_with(move |kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < KEPT {
            kept.push(ctx);
        }
    });
}

/// How many decompression and compression contexts this thread keeps for reuse (causeway's
/// addition, for its tests).
pub fn kept_on_this_thread() -> (usize, usize) {
    let d = DCTXS.try_with(|kept| kept.borrow().len()).unwrap_or(0);
    let c = CCTXS.try_with(|kept| kept.borrow().len()).unwrap_or(0);
    (d, c)
}
