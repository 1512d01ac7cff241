//! bpf/tracectx.bpf.c: each thread's current span, from a uprobe on the writer's publish function
//! (context/c/causeway_ctx.c), kept in the `thread_ctx` map that every record header reads.
//!
//! The writer can live in a shared library (`libcauseway_ctx.so`, loaded by C/C++ programs or the
//! Python hook) or be linked statically into a binary (the Rust crate). [`Discovery`] finds every
//! such file through `/proc/PID/maps` and the ELF symbol tables, also for processes that start
//! or load the library after the collector, and attaches one uprobe per file for all processes
//! (a uprobe belongs to the file's inode, so later processes mapping the same file are covered
//! at once).

use std::collections::HashMap;
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
    s: &offcpu::Settings,
    offcpu: &offcpu::OffcpuSkel<'_>,
) -> Result<TracectxSkel<'obj>> {
    let mut open =
        TracectxSkelBuilder::default().open(open_object).context("opening the trace-context BPF object")?;
    let ro = open.maps.rodata_data.as_deref_mut().context("rodata is not memory-mapped")?;
    super::write_filter!(&mut *ro, s);
    super::share_maps!(&mut open, offcpu);
    open.load().context("loading the trace-context BPF program (verifier)")
}

/// Identity of a mapped file: (device as in /proc/PID/maps, inode).
type FileId = (String, u64);

/// An executable file mapping of a process.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedFile {
    /// The process it was seen in.
    pub pid: u32,
    /// Path inside the process's mount namespace, as /proc/PID/maps shows it.
    pub path: String,
    /// `major:minor` of its device.
    pub dev: String,
    /// Inode number.
    pub inode: u64,
}

impl MappedFile {
    /// The path from the collector's side: through the process's root, so files inside
    /// containers resolve.
    pub fn host_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.pid, self.path))
    }
}

/// Parses the executable file mappings of one /proc/PID/maps text.
pub fn parse_maps(pid: u32, text: &str) -> Vec<MappedFile> {
    let mut out: Vec<MappedFile> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (_addr, perms, _off, dev, inode) = (f.next(), f.next(), f.next(), f.next(), f.next());
        let path = f.collect::<Vec<_>>().join(" ");
        let (Some(perms), Some(dev), Some(inode)) = (perms, dev, inode) else { continue };
        let Ok(inode) = inode.parse::<u64>() else { continue };
        if !perms.contains('x') || inode == 0 || !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        if !out.iter().any(|m| m.inode == inode && m.dev == dev) {
            out.push(MappedFile { pid, path, dev: dev.to_string(), inode });
        }
    }
    out
}

/// True when the ELF file defines `symbol` (dynamic or static symbol table).
pub fn elf_defines(path: &Path, symbol: &str) -> Result<bool> {
    use object::Object;
    use object::ObjectSymbol;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let cache = object::ReadCache::new(file);
    let elf = match object::File::parse(&cache) {
        Ok(f) => f,
        Err(_) => return Ok(false), // not an object file we can read: nothing to probe
    };
    let defined = |s: object::Symbol<'_, '_, _>| s.name() == Ok(symbol) && !s.is_undefined();
    Ok(elf.dynamic_symbols().any(defined) || elf.symbols().any(defined))
}

/// Finds writer copies in running processes and keeps one uprobe on each.
#[derive(Default)]
pub struct Discovery {
    /// Files already examined: true when they carry the probe point.
    examined: HashMap<FileId, bool>,
    /// One link per probed file.
    links: Vec<Link>,
    attached: HashSet<FileId>,
    /// Paths probed, for logs and `doctor`.
    pub probed: Vec<String>,
}

impl Discovery {
    /// Attaches to one explicitly configured file (config `trace_context.libraries`).
    pub fn attach_path(&mut self, skel: &TracectxSkel<'_>, path: &Path) -> Result<()> {
        if !elf_defines(path, PROBE_SYMBOL)? {
            anyhow::bail!("{} does not define {PROBE_SYMBOL}", path.display());
        }
        let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        use std::os::unix::fs::MetadataExt;
        let id = (format!("dev{}", meta.dev()), meta.ino());
        self.attach(skel, id, path, &path.display().to_string())
    }

    fn attach(&mut self, skel: &TracectxSkel<'_>, id: FileId, path: &Path, shown: &str) -> Result<()> {
        if self.attached.contains(&id) {
            return Ok(());
        }
        let opts = UprobeOpts { func_name: Some(PROBE_SYMBOL.into()), ..Default::default() };
        let link = skel
            .progs
            .handle__ctx_publish
            .attach_uprobe_with_opts(-1, path, 0, opts)
            .with_context(|| format!("attaching the trace-context uprobe to {shown}"))?;
        tracing::info!(file = shown, "trace context: probing {PROBE_SYMBOL}");
        self.links.push(link);
        self.attached.insert(id);
        self.probed.push(shown.to_string());
        Ok(())
    }

    /// Scans every process's executable mappings; attaches to files that define the probe
    /// point and were not seen before. Cheap when nothing changed: each file is parsed once.
    pub fn scan(&mut self, skel: &TracectxSkel<'_>) {
        let me = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else { return };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if pid == me {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { continue };
            for m in parse_maps(pid, &text) {
                let id = (m.dev.clone(), m.inode);
                if self.attached.contains(&id) {
                    continue;
                }
                let has = match self.examined.get(&id) {
                    Some(h) => *h,
                    None => {
                        // a file that cannot be read now (process gone) is tried again later
                        let Ok(h) = elf_defines(&m.host_path(), PROBE_SYMBOL) else { continue };
                        self.examined.insert(id.clone(), h);
                        h
                    }
                };
                if has {
                    if let Err(e) = self.attach(skel, id, &m.host_path(), &m.path) {
                        tracing::warn!("{e:#}");
                    }
                }
            }
        }
    }
}

/// Where OBI pins `traces_ctx_v1` when no path is configured: bpffs root or one level below.
pub fn find_obi_map() -> Option<PathBuf> {
    let root = Path::new("/sys/fs/bpf");
    let direct = root.join("traces_ctx_v1");
    if direct.exists() {
        return Some(direct);
    }
    std::fs::read_dir(root).ok()?.flatten().map(|e| e.path().join("traces_ctx_v1")).find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_executable_file_mappings_once_each() {
        let text = "\
55d0c0000000-55d0c0001000 r--p 00000000 fd:01 1234 /usr/bin/python3.11
55d0c0001000-55d0c0200000 r-xp 00001000 fd:01 1234 /usr/bin/python3.11
7f00a0000000-7f00a0001000 r-xp 00001000 fd:01 99 /opt/my app/libcauseway_ctx.so
7f00a0001000-7f00a0002000 r-xp 00002000 fd:01 99 /opt/my app/libcauseway_ctx.so
7f00b0000000-7f00b0001000 r-xp 00000000 00:00 0 [vdso]
7f00c0000000-7f00c0001000 r-xp 00000000 fd:01 77 /tmp/gone.so (deleted)
";
        let m = parse_maps(42, text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path, "/usr/bin/python3.11");
        assert_eq!((m[1].path.as_str(), m[1].inode), ("/opt/my app/libcauseway_ctx.so", 99));
        assert_eq!(m[1].host_path(), PathBuf::from("/proc/42/root/opt/my app/libcauseway_ctx.so"));
    }

    #[test]
    fn finds_the_probe_point_in_elf_files() {
        let me = std::env::current_exe().unwrap();
        assert!(!elf_defines(&me, PROBE_SYMBOL).unwrap());
        assert!(elf_defines(&me, "main").unwrap(), "a test binary defines main");
        let not_elf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_elf.path(), b"#!/bin/sh\n").unwrap();
        assert!(!elf_defines(not_elf.path(), PROBE_SYMBOL).unwrap());
    }
}
