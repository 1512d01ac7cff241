//! Finds the ELF files that running processes map and that define symbols the collector probes:
//! the trace-context writer (tracectx) and the CUDA runtime, driver and NCCL (cuda).
//!
//! One pass reads every `/proc/PID/maps`, examines each executable file once (by device and
//! inode, through `/proc/PID/root` so files inside containers resolve), and reports the files
//! that are new and define at least one wanted symbol, with each symbol's file offset (what a
//! uprobe attaches to). Processes that start or `dlopen` later are found by the next pass; a
//! uprobe belongs to the file, so every process mapping it is covered from then on.

use std::collections::HashMap;
use std::path::Path;
use std::path::PathBuf;

use anyhow::Context;
use anyhow::Result;

/// Identity of a file: (st_dev, st_ino) of the opened file, the same however it was reached
/// (a configured path or a process's mapping).
pub type FileId = (u64, u64);

/// What /proc/PID/maps says identifies a mapping: (`major:minor`, inode).
type MapsId = (String, u64);

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
        let (Some(perms), Some(dev), Some(inode)) = (perms, dev, inode) else {
            continue;
        };
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        if !perms.contains('x')
            || inode == 0
            || !path.starts_with('/')
            || path.ends_with(" (deleted)")
        {
            continue;
        }
        if !out.iter().any(|m| m.inode == inode && m.dev == dev) {
            out.push(MappedFile {
                pid,
                path,
                dev: dev.to_string(),
                inode,
            });
        }
    }
    out
}

/// The wanted symbols an ELF file defines, with their file offsets (dynamic or static symbol
/// table; an alias at an address already found is dropped so no call is counted twice).
#[cfg(test)]
pub fn elf_symbols(path: &Path, wanted: &[&str]) -> Result<HashMap<String, u64>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(elf_symbols_in(&file, wanted))
}

/// [`elf_symbols`] of a file already open.
fn elf_symbols_in(file: &std::fs::File, wanted: &[&str]) -> HashMap<String, u64> {
    use object::Object;
    use object::ObjectSegment;
    use object::ObjectSymbol;
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return HashMap::new(); // not an object file we can read: nothing to probe
    };
    let segments: Vec<(u64, u64, u64)> = elf
        .segments()
        .map(|s| {
            let (off, size) = s.file_range();
            (s.address(), size, off)
        })
        .collect();
    let to_offset = |addr: u64| {
        segments
            .iter()
            .find(|(va, size, _)| addr >= *va && addr < va + size)
            .map(|(va, _, off)| addr - va + off)
    };
    let mut out: HashMap<String, u64> = HashMap::new();
    for s in elf.dynamic_symbols().chain(elf.symbols()) {
        if s.is_undefined() || s.address() == 0 {
            continue;
        }
        let Ok(name) = s.name() else { continue };
        // versioned static names ("cudaMalloc@@libcudart.so.12") count as the plain name
        let name = name.split('@').next().unwrap_or(name);
        if !wanted.contains(&name) || out.contains_key(name) {
            continue;
        }
        if let Some(off) = to_offset(s.address()) {
            if !out.values().any(|o| *o == off) {
                out.insert(name.to_string(), off);
            }
        }
    }
    out
}

/// True when the ELF file defines `symbol`.
#[cfg(test)]
pub fn elf_defines(path: &Path, symbol: &str) -> Result<bool> {
    Ok(elf_symbols(path, &[symbol])?.contains_key(symbol))
}

/// A newly found file that defines wanted symbols, held open: uprobes attach through
/// `/proc/self/fd/N`, which stays valid after the process it was found in exits (a
/// `/proc/PID/root/…` path would not) and reaches files in other mount namespaces.
#[derive(Debug, Clone)]
pub struct FoundFile {
    /// Its identity.
    pub id: FileId,
    /// How the process sees it (for logs and reports).
    pub path: String,
    /// The open file.
    pub file: std::sync::Arc<std::fs::File>,
    /// Wanted symbol → file offset.
    pub symbols: HashMap<String, u64>,
}

impl FoundFile {
    /// Opens `host_path` and reads its wanted symbols.
    fn open(host_path: &Path, shown: String, wanted: &[&str]) -> Result<FoundFile> {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::File::open(host_path)
            .with_context(|| format!("opening {}", host_path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", host_path.display()))?;
        let symbols = elf_symbols_in(&file, wanted);
        Ok(FoundFile {
            id: (meta.dev(), meta.ino()),
            path: shown,
            file: std::sync::Arc::new(file),
            symbols,
        })
    }

    /// The path a uprobe attaches to.
    pub fn probe_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

/// Every process's mappings are read at least this often, whether or not it seemed to run.
const FULL_SCAN: std::time::Duration = std::time::Duration::from_secs(30);

/// Scans processes for files defining wanted symbols; reports each file once.
pub struct Scanner {
    wanted: Vec<&'static str>,
    /// Files examined: whether they define any wanted symbol. A file that could not be read
    /// (its process ended) is not recorded, so it is tried again.
    examined: HashMap<MapsId, bool>,
    /// Per pid: its [`Signature`] when its mappings were last read.
    seen: HashMap<u32, Signature>,
    last_full: Option<std::time::Instant>,
}

impl Scanner {
    /// A scanner for these symbols.
    pub fn new(wanted: Vec<&'static str>) -> Self {
        Scanner {
            wanted,
            examined: HashMap::new(),
            seen: HashMap::new(),
            last_full: None,
        }
    }

    /// One pass over /proc: the files not reported before that define a wanted symbol.
    ///
    /// Generating /proc/PID/maps costs the kernel tens of µs a process. Mapping a library grows
    /// the process's
    /// virtual size, so a process whose /proc/PID/stat (much cheaper to read) shows the same
    /// start time, virtual size and CPU time as when its mappings were last read is skipped,
    /// except in a full pass every [`FULL_SCAN`].
    pub fn scan(&mut self) -> Vec<FoundFile> {
        let me = std::process::id();
        let mut found = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return found;
        };
        let full = self.last_full.is_none_or(|t| t.elapsed() >= FULL_SCAN);
        if full {
            self.last_full = Some(std::time::Instant::now());
        }
        let mut alive = HashMap::with_capacity(self.seen.len());
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| signature(&s));
            if let Some(now) = stat {
                alive.insert(pid, now);
                if !full && self.seen.get(&pid) == Some(&now) {
                    continue;
                }
            }
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue;
            };
            for m in parse_maps(pid, &text) {
                let id = (m.dev.clone(), m.inode);
                if self.examined.contains_key(&id) {
                    continue;
                }
                let Ok(f) = FoundFile::open(&m.host_path(), m.path.clone(), &self.wanted) else {
                    continue;
                };
                self.examined.insert(id, !f.symbols.is_empty());
                if !f.symbols.is_empty() {
                    found.push(f);
                }
            }
        }
        self.seen = alive;
        found
    }
}

/// What /proc/PID/stat says about whether a process's mappings may have changed: its start
/// time (a reused pid is another process), virtual size in bytes, and utime + stime in ticks.
type Signature = (u64, u64, u64);

/// The [`Signature`] in a /proc/PID/stat line. The command name (field 2) may hold spaces and
/// parentheses: fields are counted after its last ')'.
fn signature(stat: &str) -> Option<Signature> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // fields from 3 (state) on: utime is field 14, stime 15, starttime 22, vsize 23
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((num(22)?, num(23)?, num(14)? + num(15)?))
}

/// A file given by path (configuration), reported like a scanned one.
pub fn examine_path(path: &Path, wanted: &[&str]) -> Result<FoundFile> {
    FoundFile::open(path, path.display().to_string(), wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_signature_comes_from_after_the_command_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194304 100 0 0 0 17 5 0 0 20 0 3 0 123456 \
                    1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(signature(line), Some((123456, 1000000, 22)));
        assert_eq!(signature("4242 (x) S 1"), None);
        // mapping a file grows the virtual size: the signature moves
        let stat = || signature(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        let before = stat();
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        // SAFETY: a fresh read-only private mapping of our own executable, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                1 << 20,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let after = stat();
        // SAFETY: the mapping made above, with its length.
        unsafe { libc::munmap(p, 1 << 20) };
        assert_eq!(before.0, after.0);
        assert!(after.1 >= before.1 + (1 << 20), "{before:?} {after:?}");
    }

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
        assert_eq!(
            (m[1].path.as_str(), m[1].inode),
            ("/opt/my app/libcauseway_ctx.so", 99)
        );
        assert_eq!(
            m[1].host_path(),
            PathBuf::from("/proc/42/root/opt/my app/libcauseway_ctx.so")
        );
    }

    #[test]
    fn finds_symbols_and_their_file_offsets() {
        let me = std::env::current_exe().unwrap();
        assert!(!elf_defines(&me, "causeway_ctx_publish").unwrap());
        let syms = elf_symbols(&me, &["main", "no_such_symbol_here"]).unwrap();
        let off = *syms.get("main").expect("a test binary defines main");
        assert!(
            off > 0 && off < std::fs::metadata(&me).unwrap().len(),
            "offset inside the file: {off}"
        );
        assert!(!syms.contains_key("no_such_symbol_here"));
        let not_elf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_elf.path(), b"#!/bin/sh\n").unwrap();
        assert!(elf_symbols(not_elf.path(), &["main"]).unwrap().is_empty());
    }
}
