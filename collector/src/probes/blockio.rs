//! bpf/blockio.bpf.c: block-layer requests with their latency, device and size, attributed to
//! the task that submitted them.
//!
//! Shares offcpu.bpf.c's filter, ring buffer, counters and trace-context maps (reuse_fd).

use std::cell::RefCell;
use std::collections::HashMap;
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
    include!(concat!(env!("OUT_DIR"), "/blockio.skel.rs"));
}

use skel::types;
pub use skel::BlockioSkel;
use skel::BlockioSkelBuilder;

/// Loads the block programs with the same filter as the off-CPU set, sharing its maps.
pub fn load<'obj>(
    open_object: &'obj mut MaybeUninit<OpenObject>,
    s: &super::settings::Settings,
    offcpu: &offcpu::OffcpuSkel<'_>,
) -> Result<BlockioSkel<'obj>> {
    super::load::load_companion!(
        BlockioSkelBuilder,
        "block I/O",
        open_object,
        s,
        offcpu,
        |ro| {
            ro.min_block_ns = s.min_block.as_nanos() as u64;
        }
    )
}

/// Attaches block_io_start / block_rq_issue / block_rq_complete (tp_btf).
pub fn attach(skel: &mut BlockioSkel<'_>) -> Result<()> {
    skel.attach()
        .context("attaching to block_io_start/block_rq_issue/block_rq_complete (tp_btf)")
}

/// The name of a device number (kernel dev_t: major << 20 | minor): `vda`, `loop0`, or `maj:min`
/// when sysfs does not know it. Cached: devices rarely change names.
pub fn device_name(dev: u32) -> String {
    thread_local! {
        static NAMES: RefCell<HashMap<u32, String>> = RefCell::new(HashMap::new());
    }
    NAMES.with(|n| {
        n.borrow_mut()
            .entry(dev)
            .or_insert_with(|| {
                let (major, minor) = (dev >> 20, dev & 0xfffff);
                std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
                    .ok()
                    .and_then(|u| {
                        u.lines()
                            .find_map(|l| l.strip_prefix("DEVNAME=").map(String::from))
                    })
                    .unwrap_or_else(|| format!("{major}:{minor}"))
            })
            .clone()
    })
}

/// `read`, `write+sync+fua` …: REQ_OP_* in the low 8 bits of cmd_flags, flags above.
pub fn op_name(op: u32) -> String {
    let mut s = match op & 0xff {
        0 => "read",
        1 => "write",
        2 => "flush",
        3 => "discard",
        5 => "secure_erase",
        9 => "write_zeroes",
        _ => "other",
    }
    .to_string();
    // include/linux/blk_types.h, __REQ_* bit numbers after the 8 op bits (6.x)
    const SYNC: u32 = 1 << 11;
    const FUA: u32 = 1 << 17;
    const PREFLUSH: u32 = 1 << 18;
    for (bit, name) in [(SYNC, "sync"), (FUA, "fua"), (PREFLUSH, "preflush")] {
        if op & bit != 0 {
            s.push('+');
            s.push_str(name);
        }
    }
    s
}

/// Decodes a `cw_block_event` record.
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let e: types::cw_block_event = read_record(data)?;
    let event = record::event_of!(data, clock, names::event::BLOCK_IO, e)?;
    Some(Decoded::Event(KernelEvent {
        detail: KindFields {
            device: Some(device_name(e.dev)),
            bytes: Some(e.bytes as i64),
            io_op: Some(op_name(e.op)),
            io_queue_ns: Some(e.queue_ns as i64),
            ..Default::default()
        }
        .into(),
        exit_code: (e.error != 0).then_some(e.error),
        ..event
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_record_layout_and_decoding() {
        assert_eq!(
            std::mem::size_of::<types::cw_block_event>(),
            48 + 40 + 16 + 32
        );
        let mut e = types::cw_block_event::default();
        e.hdr.r#type = crate::probes::wire::cw_event_type::CW_EV_BLOCK.0;
        e.hdr.pid = 7;
        e.hdr.tid = 8;
        e.dev = (7 << 20) | 99; // no such loop device: falls back to maj:min
        e.bytes = 4096;
        e.op = 1 | (1 << 11) | (1 << 17);
        e.duration_ns = 3_000_000;
        let ev = crate::probes::record::decode_struct(&e, "block");
        assert_eq!(ev.event_name, "block.io");
        assert_eq!((ev.pid, ev.tid, ev.bytes), (7, 8, Some(4096)));
        assert_eq!(ev.io_op.as_deref(), Some("write+sync+fua"));
        assert_eq!(ev.device.as_deref(), Some("7:99"));
    }
}
