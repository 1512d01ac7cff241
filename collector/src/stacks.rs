//! Stack deduplication, normalization and symbolization.
//!
//! A stack's id is a content hash: user stacks hash their (build id, file offset) frames, so
//! the same code path has the same id in every process and after the process is gone; kernel
//! stacks hash their symbolized frames, so ids survive reboots (KASLR). Each new stack becomes
//! one row of the `stacks` table; events carry only the id.

use std::collections::HashMap;
use std::collections::HashSet;

use blazesym::normalize::Normalizer;
use blazesym::normalize::UserMeta;
use blazesym::symbolize::source::Elf;
use blazesym::symbolize::source::Kernel;
use blazesym::symbolize::source::Process;
use blazesym::symbolize::source::Source;
use blazesym::symbolize::Input;
use blazesym::symbolize::Symbolized;
use blazesym::symbolize::Symbolizer;
use blazesym::Pid;
use causeway_proto::StackRecord;

/// FNV-1a, 64 bit: stable across runs, hosts and compiler versions (unlike `DefaultHasher`).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new(tag: &str) -> Self {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.bytes(tag.as_bytes());
        h
    }
    fn bytes(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn id(self) -> i64 {
        self.0 as i64
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where a user frame lies: its file (None when unknown, with why), build id and file offset
/// (the address itself when unknown).
struct Place {
    path: Option<std::path::PathBuf>,
    build_id: String,
    offset: u64,
    why: &'static str,
}

impl Place {
    fn unknown(addr: u64, why: &'static str) -> Place {
        Place {
            path: None,
            build_id: String::new(),
            offset: addr,
            why,
        }
    }
}

/// One executable file mapping of a /proc/PID/maps text.
struct Mapping<'a> {
    start: u64,
    end: u64,
    offset: u64,
    path: &'a str,
}

impl<'a> Mapping<'a> {
    fn parse(line: &'a str) -> Option<Mapping<'a>> {
        let mut f = line.splitn(6, ' ');
        let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
        let path = f.nth(2)?.trim_start();
        let (start, end) = range.split_once('-')?;
        (perms.contains('x') && path.starts_with('/')).then_some(())?;
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            offset: u64::from_str_radix(offset, 16).ok()?,
            path,
        })
    }

    fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// The executable file mappings of a /proc/PID/maps text: what a stack of the process needs
/// once it has exited.
pub fn executable_mappings(maps: &str) -> String {
    let mut out = String::new();
    for line in maps.lines().filter(|l| Mapping::parse(l).is_some()) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A symbolization failure in words.
fn reason_text(r: blazesym::symbolize::Reason) -> &'static str {
    use blazesym::symbolize::Reason;
    match r {
        Reason::Unmapped => "not mapped in the process",
        Reason::InvalidFileOffset => "not code of the file",
        Reason::MissingComponent => "anonymous memory (JIT code, or no file)",
        Reason::MissingSyms => "the file has no symbols (stripped)",
        Reason::Unsupported => "unsupported kind of mapping",
        Reason::UnknownAddr => "no symbol covers it",
        _ => "an error while symbolizing",
    }
}

fn frame_name(sym: &Symbolized<'_>, addr: u64) -> String {
    match sym {
        Symbolized::Sym(s) => format!("{}+0x{:x}", s.name, s.offset),
        Symbolized::Unknown(_) => format!("0x{addr:x}"),
    }
}

/// Turns raw captured addresses into stack ids, remembering which ids still need a row.
pub struct StackTable {
    symbolizer: Symbolizer,
    normalizer: Normalizer,
    /// (pid or 0 for kernel, hash of raw addresses) → stack id. Raw user addresses are only
    /// meaningful within one process, hence the pid.
    by_raw: HashMap<(i32, i64), i64>,
    written: HashSet<i64>,
    pending: Vec<StackRecord>,
    max_frames: usize,
    /// (pid, address) → function name, for `function_name`.
    names: HashMap<(i32, u64), Option<String>>,
    /// Build ids of files read for exited processes.
    build_ids: HashMap<std::path::PathBuf, String>,
}

impl StackTable {
    /// A table for stacks of at most `max_frames` frames (a full stack is marked truncated).
    pub fn new(max_frames: usize) -> Self {
        StackTable {
            symbolizer: Symbolizer::new(),
            normalizer: Normalizer::builder().enable_build_ids(true).build(),
            by_raw: HashMap::new(),
            written: HashSet::new(),
            pending: Vec::new(),
            max_frames,
            names: HashMap::new(),
            build_ids: HashMap::new(),
        }
    }

    fn raw_key(pid: i32, addrs: &[u64]) -> (i32, i64) {
        let mut h = Fnv::new("raw");
        for a in addrs {
            h.bytes(&a.to_le_bytes());
        }
        (pid, h.id())
    }

    /// The id of a kernel stack, symbolizing it the first time it is seen.
    pub fn kernel(&mut self, addrs: &[u64], time_unix_nano: i64) -> Option<i64> {
        if addrs.is_empty() {
            return None;
        }
        let key = Self::raw_key(0, addrs);
        if let Some(id) = self.by_raw.get(&key) {
            return Some(*id);
        }
        let src = Source::Kernel(Kernel::default());
        let frames: Vec<String> = match self.symbolizer.symbolize(&src, Input::AbsAddr(addrs)) {
            Ok(syms) => syms
                .iter()
                .zip(addrs)
                .map(|(s, a)| frame_name(s, *a))
                .collect(),
            Err(_) => addrs.iter().map(|a| format!("0x{a:x}")).collect(),
        };
        let mut h = Fnv::new("kernel");
        for f in &frames {
            h.bytes(f.as_bytes());
            h.bytes(&[0]);
        }
        let id = h.id();
        self.by_raw.insert(key, id);
        self.record(StackRecord {
            stack_id: id,
            kind: "kernel",
            time_unix_nano,
            pid: 0,
            build_ids: vec![String::new(); frames.len()],
            offsets: addrs.to_vec(),
            truncated: addrs.len() >= self.max_frames,
            frames,
        });
        Some(id)
    }

    /// The id of a user stack of process `pid`, innermost first (None when empty). Frames are
    /// normalized to (build id, file offset) while the process lives, or from `maps` (its
    /// /proc/PID/maps, read when its first stack was captured) once it has exited, and
    /// symbolized from the file; a frame that cannot be says why.
    pub fn user(
        &mut self,
        pid: i32,
        addrs: &[u64],
        time_unix_nano: i64,
        maps: Option<&str>,
    ) -> Option<i64> {
        if addrs.is_empty() || pid <= 0 {
            return None;
        }
        let key = Self::raw_key(pid, addrs);
        if let Some(id) = self.by_raw.get(&key) {
            return Some(*id);
        }
        let places = self.places(pid, addrs, maps);
        let mut h = Fnv::new("user");
        for p in &places {
            h.bytes(p.build_id.as_bytes());
            h.bytes(&p.offset.to_le_bytes());
        }
        let id = h.id();
        self.by_raw.insert(key, id);
        if !self.written.contains(&id) {
            let frames = places
                .iter()
                .zip(addrs)
                .map(|(p, a)| self.user_frame(p, *a))
                .collect();
            self.record(StackRecord {
                stack_id: id,
                kind: "user",
                time_unix_nano,
                pid,
                frames,
                build_ids: places.iter().map(|p| p.build_id.clone()).collect(),
                offsets: places.iter().map(|p| p.offset).collect(),
                truncated: addrs.len() >= self.max_frames,
            });
        }
        Some(id)
    }

    /// Where each address lies: the live process's mappings, else the maps read while it lived.
    fn places(&mut self, pid: i32, addrs: &[u64], maps: Option<&str>) -> Vec<Place> {
        if let Ok(out) = self
            .normalizer
            .normalize_user_addrs(Pid::from(pid as u32), addrs)
        {
            return out
                .outputs
                .iter()
                .zip(addrs)
                .map(|((offset, meta), addr)| match out.meta.get(*meta) {
                    Some(UserMeta::Elf(elf)) => Place {
                        path: Some(elf.path.clone()),
                        build_id: elf.build_id.as_deref().map(hex).unwrap_or_default(),
                        offset: *offset,
                        why: "",
                    },
                    Some(UserMeta::Unknown(u)) => Place::unknown(*addr, reason_text(u.reason)),
                    _ => Place::unknown(*addr, "not in an ELF file"),
                })
                .collect();
        }
        match maps {
            Some(text) => addrs.iter().map(|a| self.place_in(text, *a)).collect(),
            None => addrs
                .iter()
                .map(|a| Place::unknown(*a, "the process exited before its mappings were read"))
                .collect(),
        }
    }

    /// An address's file and offset from a /proc/PID/maps text (a process that has exited).
    fn place_in(&mut self, maps: &str, addr: u64) -> Place {
        let Some(m) = maps
            .lines()
            .filter_map(Mapping::parse)
            .find(|m| m.contains(addr))
        else {
            return Place::unknown(addr, "not in a file mapping of the process");
        };
        let path = std::path::PathBuf::from(m.path);
        let build_id = self
            .build_ids
            .entry(path.clone())
            .or_insert_with(|| {
                blazesym::helper::read_elf_build_id(&path)
                    .ok()
                    .flatten()
                    .map(|b| hex(&b))
                    .unwrap_or_default()
            })
            .clone();
        Place {
            path: Some(path),
            build_id,
            offset: addr - m.start + m.offset,
            why: "",
        }
    }

    /// A user frame's name from its file, or the address and why it has none.
    fn user_frame(&self, p: &Place, addr: u64) -> String {
        let Some(path) = &p.path else {
            return format!("0x{addr:x} ({})", p.why);
        };
        let src = Source::Elf(Elf::new(path.clone()));
        match self
            .symbolizer
            .symbolize_single(&src, Input::FileOffset(p.offset))
        {
            Ok(Symbolized::Sym(s)) => format!("{}+0x{:x}", s.name, s.offset),
            Ok(Symbolized::Unknown(r)) => {
                format!(
                    "0x{addr:x} ({}+0x{:x}: {})",
                    path.display(),
                    p.offset,
                    reason_text(r)
                )
            }
            Err(e) => format!("0x{addr:x} ({}+0x{:x}: {e})", path.display(), p.offset),
        }
    }

    /// The symbol at `addr` in process `pid` (a function's start, e.g. a CUDA kernel's host stub),
    /// without offset; cached per process. None when it cannot be named (process gone, stripped).
    pub fn function_name(&mut self, pid: i32, addr: u64) -> Option<String> {
        if pid <= 0 || addr == 0 {
            return None;
        }
        if let Some(n) = self.names.get(&(pid, addr)) {
            return n.clone();
        }
        let src = Source::Process(Process::new(Pid::from(pid as u32)));
        let name = match self.symbolizer.symbolize_single(&src, Input::AbsAddr(addr)) {
            Ok(Symbolized::Sym(s)) => Some(s.name.to_string()),
            _ => None,
        };
        self.names.insert((pid, addr), name.clone());
        name
    }

    fn record(&mut self, rec: StackRecord) {
        if self.written.insert(rec.stack_id) {
            self.pending.push(rec);
        }
    }

    /// Stacks first seen since the last call: the rows to write.
    pub fn take_new(&mut self) -> Vec<StackRecord> {
        std::mem::take(&mut self.pending)
    }

    /// Forgets raw-address mappings of processes that exited (ids and rows stay).
    pub fn forget_process(&mut self, pid: i32) {
        self.by_raw.retain(|(p, _), _| *p != pid);
        self.names.retain(|(p, _), _| *p != pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker_function() -> u64 {
        marker_function as *const () as usize as u64
    }

    #[test]
    fn user_stacks_are_normalized_symbolized_and_deduplicated() {
        let pid = std::process::id() as i32;
        let addr = marker_function() + 1;
        let mut t = StackTable::new(32);
        let a = t.user(pid, &[addr], 1, None).unwrap();
        let b = t.user(pid, &[addr], 2, None).unwrap();
        assert_eq!(a, b);
        let rows = t.take_new();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].kind, "user");
        assert!(
            rows[0].frames[0].contains("marker_function"),
            "{:?}",
            rows[0].frames
        );
        assert!(t.take_new().is_empty());
        // the same code in "another process" with the same normalized frames has the same id
        t.forget_process(pid);
        assert_eq!(t.user(pid, &[addr], 3, None), Some(a));
    }

    /// A process that exited before its stack reached the stack thread: the frames come from
    /// the mappings read while it lived, and the same code has the same id as a live process's.
    #[test]
    fn stacks_of_an_exited_process_are_symbolized_from_its_maps() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id() as i32;
        child.wait().unwrap();
        let addr = marker_function() + 1;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut t = StackTable::new(32);
        let id = t.user(gone, &[addr], 1, Some(&maps)).unwrap();
        let rows = t.take_new();
        assert!(
            rows[0].frames[0].contains("marker_function"),
            "{:?}",
            rows[0].frames
        );
        assert!(!rows[0].build_ids[0].is_empty(), "{:?}", rows[0].build_ids);
        let live = t.user(std::process::id() as i32, &[addr], 2, None).unwrap();
        assert_eq!(id, live);
        // without its mappings, the frame says why it has no name
        let again = t.user(gone, &[addr + 7], 3, None).unwrap();
        let frames = &t.take_new()[0].frames;
        assert_ne!(again, id);
        assert!(
            frames[0].starts_with("0x") && frames[0].contains("exited"),
            "{frames:?}"
        );
    }

    #[test]
    fn empty_stacks_have_no_id() {
        let mut t = StackTable::new(32);
        assert_eq!(t.kernel(&[], 0), None);
        assert_eq!(t.user(1, &[], 0, None), None);
    }
}
