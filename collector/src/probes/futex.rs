//! Futex waits with the lock's identity (pid, uaddr): the off-CPU intervals offcpu.bpf.c saw a
//! task spend blocked inside futex(2) or futex_waitv(2) (read from its syscall registers at
//! switch-out, so no syscall tracepoint slows every syscall on the host).

use causeway_proto::names;
use causeway_proto::KernelEvent;

use super::offcpu::types;
use super::record;
use super::record::read_record;
use super::record::Decoded;
use crate::clock::BootToWall;

fn op_name(op: u32) -> &'static str {
    match op {
        0 => "wait",
        6 => "lock_pi",
        9 => "wait_bitset",
        11 => "wait_requeue_pi",
        13 => "lock_pi2",
        64 => "waitv",
        _ => "other",
    }
}

/// Decodes a `cw_futex_event` record.
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let e: types::cw_futex_event = read_record(data)?;
    let event = record::event_of!(data, clock, names::event::FUTEX_WAIT, e)?;
    Some(Decoded::Event(KernelEvent {
        futex_uaddr: Some(e.uaddr as i64),
        futex_op: Some(op_name(e.op)),
        exit_code: (e.ret != 0).then_some(e.ret),
        ..event
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_record_layout_and_decoding() {
        assert_eq!(
            std::mem::size_of::<types::cw_futex_event>(),
            48 + 32 + 8 + 32
        );
        let mut e = types::cw_futex_event::default();
        e.hdr.r#type = crate::probes::wire::cw_event_type::CW_EV_FUTEX.0;
        e.hdr.pid = 7;
        e.hdr.tid = 8;
        e.uaddr = 0x7f00_dead_beef;
        e.op = 9;
        e.duration_ns = 5_000_000;
        let ev = record::decode_struct(&e, "futex");
        assert_eq!(ev.event_name, "futex.wait");
        assert_eq!(
            (ev.pid, ev.tid, ev.futex_uaddr, ev.futex_op),
            (7, 8, Some(0x7f00_dead_beef), Some("wait_bitset"))
        );
    }
}
