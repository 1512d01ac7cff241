//! The empty baseline program (bpf/empty.bpf.c) on the same hook as the off-CPU probe.

#[allow(missing_docs, clippy::all)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/empty.skel.rs"));
}

pub use skel::EmptySkel;
pub use skel::EmptySkelBuilder;
