//! bpf/tcp.bpf.c: TCP retransmissions, attributed to the socket's owner (the task that
//! connected it), with both endpoints.
//!
//! Shares offcpu.bpf.c's filter, ring buffer, counters and trace-context maps (reuse_fd).

use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;

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
    include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"));
}

use skel::types;
pub use skel::TcpSkel;
use skel::TcpSkelBuilder;

/// Loads the TCP programs with the same filter as the off-CPU set, sharing its maps.
pub fn load<'obj>(
    open_object: &'obj mut MaybeUninit<OpenObject>,
    s: &super::settings::Settings,
    offcpu: &offcpu::OffcpuSkel<'_>,
) -> Result<TcpSkel<'obj>> {
    // nothing of its own to set: the filter and the shared maps only
    super::load::load_companion!(TcpSkelBuilder, "TCP", open_object, s, offcpu, |ro| ())
}

/// Attaches inet_sock_set_state / tcp_retransmit_skb (tp_btf).
pub fn attach(skel: &mut TcpSkel<'_>) -> Result<()> {
    skel.attach()
        .context("attaching to inet_sock_set_state/tcp_retransmit_skb (tp_btf)")
}

fn endpoint(family: u16, addr: &[u8; 16], port: u16) -> String {
    let ip: IpAddr = if family == 10 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

/// Decodes a `cw_tcp_event` record.
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let e: types::cw_tcp_event = read_record(data)?;
    let name = names::event::TCP_RETRANSMIT;
    let event = record::event_of!(instant data, clock, name, e)?;
    Some(Decoded::Event(KernelEvent {
        detail: KindFields {
            saddr: Some(endpoint(e.family, &e.saddr, e.sport)),
            daddr: Some(endpoint(e.family, &e.daddr, e.dport)),
            ..Default::default()
        }
        .into(),
        ..event
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_record_layout_and_endpoints() {
        assert_eq!(
            std::mem::size_of::<types::cw_tcp_event>(),
            48 + 16 + 32 + 8 + 32
        );
        let mut e = types::cw_tcp_event::default();
        e.hdr.r#type = crate::probes::wire::cw_event_type::CW_EV_TCP.0;
        e.family = 2;
        e.saddr[..4].copy_from_slice(&[10, 77, 0, 1]);
        e.daddr[..4].copy_from_slice(&[10, 77, 0, 2]);
        e.sport = 40000;
        e.dport = 9000;
        let ev = crate::probes::record::decode_struct(&e, "TCP");
        assert_eq!(ev.event_name, "tcp.retransmit");
        assert_eq!(ev.saddr.as_deref(), Some("10.77.0.1:40000"));
        assert_eq!(ev.daddr.as_deref(), Some("10.77.0.2:9000"));
        assert_eq!(
            endpoint(10, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 80),
            "[::1]:80"
        );
    }
}
