//! The wire types of bpf/causeway.h as libbpf-cargo generates them from the BTF of
//! bpf/wire.bpf.c: record tags, counter slots, limits, and the header every record starts with.

#[allow(missing_docs, clippy::all, non_camel_case_types, dead_code)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/wire.skel.rs"));
}

pub use skel::types::cw_ctx_source;
pub use skel::types::cw_event_type;
pub use skel::types::cw_header;
pub use skel::types::cw_limits;
pub use skel::types::cw_offcpu_state;
pub use skel::types::cw_proc_kind;
pub use skel::types::cw_stat;

/// Record types: tags are below this.
pub const EV_MAX: usize = cw_event_type::CW_EV_MAX.0 as usize;
/// Counter slots: slots are below this.
pub const STAT_MAX: u32 = cw_stat::CW_STAT_MAX.0;
/// Frames kept per stack.
pub const MAX_STACK: usize = cw_limits::CW_MAX_KSTACK.0 as usize;

/// The counter slot of records of type `t` committed to the ring buffer.
pub fn emitted(t: cw_event_type) -> u32 {
    cw_stat::CW_STAT_EMITTED.0 + t.0
}

/// The counter slot of records of type `t` the ring buffer had no room for.
pub fn dropped(t: cw_event_type) -> u32 {
    cw_stat::CW_STAT_DROPPED.0 + t.0
}

/// The record types, with the name their counters carry in `collector_stats`.
pub const RECORD_TYPES: &[(cw_event_type, &str)] = &[
    (
        cw_event_type::CW_EV_OFF_CPU,
        causeway_proto::names::record::OFF_CPU,
    ),
    (
        cw_event_type::CW_EV_OFF_CPU_STACK,
        causeway_proto::names::record::OFF_CPU_STACK,
    ),
    (
        cw_event_type::CW_EV_RUNQ,
        causeway_proto::names::record::RUNQ,
    ),
    (
        cw_event_type::CW_EV_PROC,
        causeway_proto::names::record::PROCESS,
    ),
    (
        cw_event_type::CW_EV_FUTEX,
        causeway_proto::names::record::FUTEX,
    ),
    (
        cw_event_type::CW_EV_BLOCK,
        causeway_proto::names::record::BLOCK_IO,
    ),
    (
        cw_event_type::CW_EV_TCP,
        causeway_proto::names::record::TCP_RETRANSMIT,
    ),
    (
        cw_event_type::CW_EV_CUDA,
        causeway_proto::names::record::CUDA,
    ),
    (
        cw_event_type::CW_EV_KERNEL_LOCK,
        causeway_proto::names::record::KERNEL_LOCK,
    ),
];
