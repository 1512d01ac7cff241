//! bpf/kernel_lock.bpf.c: waits for contended kernel locks (lock:contention_begin/end), with the
//! lock's kind and, for global locks, its name.
//!
//! Shares offcpu.bpf.c's pid filter, ring buffer and counters.

use std::mem::MaybeUninit;

use anyhow::Context;
use anyhow::Result;
use causeway_proto::names;
use causeway_proto::KernelEvent;
use causeway_proto::KindFields;
use libbpf_rs::skel::Skel;
use libbpf_rs::OpenObject;

use super::offcpu;
use super::record;
use super::record::read_record;
use super::record::Decoded;
use crate::clock::BootToWall;

#[allow(missing_docs, clippy::all, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/kernel_lock.skel.rs"));
}

use skel::types;
pub use skel::KernelLockSkel;
use skel::KernelLockSkelBuilder;

/// Loads the lock-contention programs with the same filter as the off-CPU set, sharing its maps.
pub fn load<'obj>(
    open_object: &'obj mut MaybeUninit<OpenObject>,
    s: &super::settings::Settings,
    offcpu: &offcpu::OffcpuSkel<'_>,
) -> Result<KernelLockSkel<'obj>> {
    super::load::load_companion!(
        KernelLockSkelBuilder,
        "lock-contention",
        open_object,
        s,
        offcpu,
        |ro| {
            ro.min_kernel_lock_ns = s.min_off_cpu.as_nanos() as u64;
        }
    )
}

/// Attaches lock:contention_begin / contention_end (tp_btf; Linux 5.19+).
pub fn attach(skel: &mut KernelLockSkel<'_>) -> Result<()> {
    skel.attach()
        .context("attaching to lock:contention_begin/end (tp_btf, Linux 5.19+)")
}

/// The lock's kind from the tracepoint's flags (include/trace/events/lock.h).
pub fn kind(flags: u32) -> &'static str {
    const SPIN: u32 = 1;
    const READ: u32 = 2;
    const WRITE: u32 = 4;
    const RT: u32 = 8;
    const PERCPU: u32 = 16;
    const MUTEX: u32 = 32;
    match flags {
        f if f & RT != 0 => "rt_mutex",
        f if f & MUTEX != 0 => "mutex",
        f if f & PERCPU != 0 && f & WRITE != 0 => "percpu_rwsem_write",
        f if f & PERCPU != 0 => "percpu_rwsem_read",
        f if f & WRITE != 0 => "rwsem_write",
        f if f & READ != 0 => "rwsem_read",
        f if f & SPIN != 0 => "spinlock",
        _ => "other",
    }
}

/// Decodes a `cw_kernel_lock_event` record: `kernel_lock` is the lock's address; the waiter's kernel
/// stack goes to the stack table (`kernel_stack_id`), whose frames name the code taking the lock.
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let e: types::cw_kernel_lock_event = read_record(data)?;
    let name = names::event::KERNEL_LOCK_WAIT;
    let common = record::event_of!(data, clock, name, e)?;
    let event = KernelEvent {
        detail: KindFields {
            kernel_lock: Some(format!("0x{:x}", e.lock_addr)),
            kernel_lock_kind: Some(kind(e.flags)),
            ..Default::default()
        }
        .into(),
        exit_code: (e.ret != 0).then_some(e.ret),
        ..common
    };
    let n = e.n_kernel.clamp(0, e.kernel.len() as i32) as usize;
    Some(Decoded::WithStacks {
        event,
        kernel: e.kernel[..n].to_vec(),
        user: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_kinds_and_decoding() {
        assert_eq!(kind(4), "rwsem_write");
        assert_eq!(kind(2), "rwsem_read");
        assert_eq!(kind(32 | 1), "mutex");
        assert_eq!(kind(1), "spinlock");
        let mut e = types::cw_kernel_lock_event::default();
        e.hdr.r#type = crate::probes::wire::cw_event_type::CW_EV_KERNEL_LOCK.0;
        e.hdr.pid = 3;
        e.hdr.tid = 4;
        e.lock_addr = 0xffff_8880_1234_5678;
        e.flags = 4;
        e.duration_ns = 2_000_000;
        e.n_kernel = 2;
        e.kernel[0] = 0xffff_ffff_8100_0010;
        e.kernel[1] = 0xffff_ffff_8100_0020;
        // SAFETY: the bytes of a plain C struct owned here, for its size.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &e as *const _ as *const u8,
                std::mem::size_of::<types::cw_kernel_lock_event>(),
            )
        };
        let Some(Decoded::WithStacks {
            event: ev,
            kernel,
            user,
        }) = crate::probes::decode(bytes, &BootToWall::sample())
        else {
            panic!("a kernel lock record carries the waiter's stack");
        };
        assert_eq!(kernel, vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020]);
        assert!(user.is_empty());
        assert_eq!(ev.event_name, "kernel.lock_wait");
        assert_eq!(ev.kernel_lock.as_deref(), Some("0xffff888012345678"));
        assert_eq!(ev.kernel_lock_kind, Some("rwsem_write"));
    }
}
