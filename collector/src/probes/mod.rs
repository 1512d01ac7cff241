//! Probe sets: one module per `bpf/<name>.bpf.c`, each loading its skeleton and decoding its
//! records.

pub mod blockio;
pub mod cgroup;
pub mod cuda;
pub mod discovery;
pub mod empty;
pub mod futex;
pub mod lockcont;
pub mod offcpu;
pub mod tcp;
pub mod tracectx;

/// Writes the filter tunables of bpf/common.bpf.h into a skeleton's rodata. Every probe set has
/// the same fields under its own generated type, hence a macro rather than a function.
macro_rules! write_filter {
    ($ro:expr, $s:expr) => {{
        let (ro, s) = ($ro, $s);
        ro.self_tgid = std::process::id();
        ro.filter_tgid = !s.pids.is_empty();
        ro.follow_children = s.follow_children;
        ro.wake_bytes = s.wake_bytes() as u64;
        if let Some(cg) = s.cgroup {
            ro.filter_cgroup = true;
            ro.target_cgroup_id = cg.id;
            ro.target_cgroup_level = cg.level;
        }
    }};
}
pub(crate) use write_filter;

/// Makes an opened probe set reuse offcpu.bpf.c's shared maps (bpf/common.bpf.h): one pid filter,
/// ring buffer, set of counters and trace-context maps for every probe set. A macro because each
/// skeleton has its own generated map types.
macro_rules! share_maps {
    ($open:expr, $offcpu:expr) => {{
        use anyhow::Context as _;
        use std::os::fd::AsFd as _;
        let (open, offcpu) = ($open, $offcpu);
        open.maps
            .tgid_filter
            .reuse_fd(offcpu.maps.tgid_filter.as_fd())
            .context("sharing the pid filter")?;
        open.maps
            .events
            .reuse_fd(offcpu.maps.events.as_fd())
            .context("sharing the ring buffer")?;
        open.maps
            .stats
            .reuse_fd(offcpu.maps.stats.as_fd())
            .context("sharing the counters")?;
        open.maps
            .thread_ctx
            .reuse_fd(offcpu.maps.thread_ctx.as_fd())
            .context("sharing the trace contexts")?;
        open.maps
            .traces_ctx_v1
            .reuse_fd(offcpu.maps.traces_ctx_v1.as_fd())
            .context("sharing the OBI map")?;
    }};
}
pub(crate) use share_maps;

/// Opens and loads a probe set that runs beside the off-CPU set: `$set` writes its own
/// read-only settings (`ro` is its rodata), then the shared filter is written and the off-CPU
/// set's maps are shared. Returns the loaded skeleton (`Result`).
macro_rules! load_companion {
    ($builder:ty, $what:literal, $open_object:expr, $settings:expr, $offcpu:expr, |$ro:ident| $set:expr) => {{
        use anyhow::Context as _;
        use libbpf_rs::skel::OpenSkel as _;
        use libbpf_rs::skel::SkelBuilder as _;
        let mut open = <$builder>::default().open($open_object).context(concat!(
            "opening the ",
            $what,
            " BPF object"
        ))?;
        let $ro = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("rodata is not memory-mapped")?;
        $set;
        $crate::probes::write_filter!(&mut *$ro, $settings);
        $crate::probes::share_maps!(&mut open, $offcpu);
        open.load()
            .context(concat!("loading the ", $what, " BPF programs (verifier)"))
    }};
}
pub(crate) use load_companion;

/// A C char array (i8 or u8) as bytes.
fn char_bytes<T: Copy>(a: &[T]) -> &[u8] {
    assert_eq!(std::mem::size_of::<T>(), 1, "C char arrays only");
    // SAFETY: T is one byte wide (checked above), so the slice reinterprets as bytes.
    unsafe { std::slice::from_raw_parts(a.as_ptr() as *const u8, a.len()) }
}

/// A kernel task name from a NUL-terminated char array (see [`causeway_proto::Comm`]).
pub(crate) fn comm<T: Copy>(a: &[T]) -> causeway_proto::Comm {
    causeway_proto::Comm::from_c(char_bytes(a))
}

/// Copies a NUL-terminated C char array (i8 or u8) into a String, lossily.
pub(crate) fn cstr<T: Copy>(a: &[T]) -> String {
    let bytes = char_bytes(a);
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes a wire struct as if it came from the ring buffer (decoder tests): the one complete
/// event it must give.
#[cfg(test)]
pub(crate) fn decode_struct<T>(record: &T, what: &str) -> causeway_proto::KernelEvent {
    // SAFETY: reading the bytes of a plain C struct the caller owns, for its size.
    let bytes = unsafe {
        std::slice::from_raw_parts(record as *const T as *const u8, std::mem::size_of::<T>())
    };
    match offcpu::decode(bytes, &crate::clock::BootToWall::sample()) {
        Some(offcpu::Decoded::Event(ev)) => ev,
        other => panic!("a {what} record decodes to one event, got {other:?}"),
    }
}

/// Reads a `T` from the front of a ring-buffer record, or None when the record is too short.
pub(crate) fn read_record<T: Copy>(data: &[u8]) -> Option<T> {
    if data.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; read_unaligned has no alignment requirement; T is a plain C struct
    // generated from the BPF object's BTF, valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(data.as_ptr() as *const T) })
}
