//! Loading a probe set beside the off-CPU set: the shared filter tunables, and the maps every set
//! shares (macros: each skeleton has its own generated types).

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
        $crate::probes::load::write_filter!(&mut *$ro, $settings);
        $crate::probes::load::share_maps!(&mut open, $offcpu);
        open.load()
            .context(concat!("loading the ", $what, " BPF programs (verifier)"))
    }};
}
pub(crate) use load_companion;
