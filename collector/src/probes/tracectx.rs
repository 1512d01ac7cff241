//! bpf/tracectx.bpf.c: each thread's current span, from a uprobe on the writer's publish function
//! (context/c/causeway_ctx.c), kept in the `thread_ctx` map that every record header reads.
//!
//! The writer can live in a shared library (`libcauseway_ctx.so`, loaded by C/C++ programs or the
//! Python hook) or be linked statically into a binary (the Rust crate). [`Discovery`] finds every
//! such file through `/proc/PID/maps` and the ELF symbol tables (see [`super::discovery`]), also for processes that start
//! or load the library after the collector, and attaches one uprobe per file for all processes
//! (a uprobe belongs to the file's inode, so later processes mapping the same file are covered
//! at once).

use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::path::Path;
use std::path::PathBuf;

use anyhow::Context;
use anyhow::Result;
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::Link;
use libbpf_rs::OpenObject;
use libbpf_rs::UprobeOpts;

use super::discovery;
use super::discovery::FileId;
use super::discovery::FoundFile;
use super::offcpu;

#[allow(missing_docs, clippy::all, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/tracectx.skel.rs"));
}

pub use skel::TracectxSkel;
use skel::TracectxSkelBuilder;

/// The writer's probe point (context/c/causeway_ctx.h).
pub const PROBE_SYMBOL: &str = "causeway_ctx_publish";

/// Loads the uprobe program with the same filter as the off-CPU set, sharing its maps.
pub fn load<'obj>(
    open_object: &'obj mut MaybeUninit<OpenObject>,
    s: &super::settings::Settings,
    offcpu: &offcpu::OffcpuSkel<'_>,
) -> Result<TracectxSkel<'obj>> {
    let mut open = TracectxSkelBuilder::default()
        .open(open_object)
        .context("opening the trace-context BPF object")?;
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("rodata is not memory-mapped")?;
    super::load::write_filter!(&mut *ro, s);
    super::load::share_maps!(&mut open, offcpu);
    open.load()
        .context("loading the trace-context BPF program (verifier)")
}

/// Keeps one uprobe on every writer copy that discovery reports.
#[derive(Default)]
pub struct Discovery {
    /// One link per probed file.
    links: Vec<Link>,
    attached: HashSet<FileId>,
    /// Paths probed, for logs and `doctor`.
    pub probed: Vec<String>,
}

impl Discovery {
    /// Attaches to one explicitly configured file (config `trace_context.libraries`).
    pub fn attach_path(&mut self, skel: &TracectxSkel<'_>, path: &Path) -> Result<()> {
        let f = discovery::examine_path(path, &[PROBE_SYMBOL])?;
        if !f.symbols.contains_key(PROBE_SYMBOL) {
            anyhow::bail!("{} does not define {PROBE_SYMBOL}", path.display());
        }
        self.attach(skel, &f)
    }

    /// Attaches to a file discovery found, when it defines the probe point (once per file).
    pub fn attach(&mut self, skel: &TracectxSkel<'_>, f: &FoundFile) -> Result<()> {
        let Some(offset) = f.symbols.get(PROBE_SYMBOL) else {
            return Ok(());
        };
        if self.attached.contains(&f.id) {
            return Ok(());
        }
        let link = skel
            .progs
            .handle__ctx_publish
            .attach_uprobe_with_opts(-1, f.probe_path(), *offset as usize, UprobeOpts::default())
            .with_context(|| format!("attaching the trace-context uprobe to {}", f.path))?;
        tracing::info!(file = %f.path, "trace context: probing {PROBE_SYMBOL}");
        self.links.push(link);
        self.attached.insert(f.id.clone());
        self.probed.push(f.path.clone());
        Ok(())
    }
}

/// Where OBI pins `traces_ctx_v1` when no path is configured: bpffs root or one level below.
pub fn find_obi_map() -> Option<PathBuf> {
    let root = Path::new("/sys/fs/bpf");
    let direct = root.join("traces_ctx_v1");
    if direct.exists() {
        return Some(direct);
    }
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path().join("traces_ctx_v1"))
        .find(|p| p.exists())
}
