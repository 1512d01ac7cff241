//! Probe sets: one module per `bpf/<name>.bpf.c`, each loading its skeleton and decoding its
//! records; the records' shared types in [`wire`] and [`record`], dispatch here.

pub mod blockio;
pub mod cgroup;
pub mod cuda;
pub mod discovery;
pub mod empty;
pub mod futex;
pub mod kernel_lock;
pub mod load;
pub mod offcpu;
pub mod record;
pub mod settings;
pub mod tcp;
pub mod tracectx;
pub mod wire;

use record::read_record;
use record::Decoded;
use wire::cw_event_type as Ev;
use wire::cw_header;

use crate::clock::BootToWall;

/// Decodes one ring-buffer record of any probe set: the decoder its type tag names. Unknown or
/// short records give `None` (and are counted by the caller).
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let hdr: cw_header = read_record(data)?;
    match Ev(hdr.r#type) {
        Ev::CW_EV_OFF_CPU | Ev::CW_EV_OFF_CPU_STACK | Ev::CW_EV_RUNQ | Ev::CW_EV_PROC => {
            offcpu::decode(data, clock)
        }
        Ev::CW_EV_FUTEX => futex::decode(data, clock),
        Ev::CW_EV_BLOCK => blockio::decode(data, clock),
        Ev::CW_EV_TCP => tcp::decode(data, clock),
        Ev::CW_EV_KERNEL_LOCK => kernel_lock::decode(data, clock),
        Ev::CW_EV_CUDA => cuda::decode(data, clock),
        _ => None,
    }
}

/// True for records that load shedding must never drop (process lifecycle).
pub fn is_lifecycle(data: &[u8]) -> bool {
    read_record::<cw_header>(data).is_some_and(|h| Ev(h.r#type) == Ev::CW_EV_PROC)
}
