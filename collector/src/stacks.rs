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

    /// The id of a user stack of `pid`, normalizing (build id + file offset) and symbolizing it
    /// the first time it is seen. Works while the process lives; afterwards the raw addresses
    /// are kept as frames and the stack is marked by `0x…` names.
    pub fn user(&mut self, pid: i32, addrs: &[u64], time_unix_nano: i64) -> Option<i64> {
        if addrs.is_empty() || pid <= 0 {
            return None;
        }
        let key = Self::raw_key(pid, addrs);
        if let Some(id) = self.by_raw.get(&key) {
            return Some(*id);
        }
        let bpid = Pid::from(pid as u32);
        let mut build_ids = Vec::with_capacity(addrs.len());
        let mut offsets = Vec::with_capacity(addrs.len());
        match self.normalizer.normalize_user_addrs(bpid, addrs) {
            Ok(out) => {
                for ((offset, meta_idx), addr) in out.outputs.iter().zip(addrs) {
                    match out.meta.get(*meta_idx) {
                        Some(UserMeta::Elf(elf)) => {
                            build_ids.push(elf.build_id.as_deref().map(hex).unwrap_or_default());
                            offsets.push(*offset);
                        }
                        _ => {
                            build_ids.push(String::new());
                            offsets.push(*addr);
                        }
                    }
                }
            }
            Err(_) => {
                build_ids.resize(addrs.len(), String::new());
                offsets.extend_from_slice(addrs);
            }
        }
        let mut h = Fnv::new("user");
        for (b, o) in build_ids.iter().zip(&offsets) {
            h.bytes(b.as_bytes());
            h.bytes(&o.to_le_bytes());
        }
        let id = h.id();
        self.by_raw.insert(key, id);
        if !self.written.contains(&id) {
            let src = Source::Process(Process::new(bpid));
            let frames = match self.symbolizer.symbolize(&src, Input::AbsAddr(addrs)) {
                Ok(syms) => syms
                    .iter()
                    .zip(addrs)
                    .map(|(s, a)| frame_name(s, *a))
                    .collect(),
                Err(_) => addrs.iter().map(|a| format!("0x{a:x}")).collect(),
            };
            self.record(StackRecord {
                stack_id: id,
                kind: "user",
                time_unix_nano,
                pid,
                frames,
                build_ids,
                offsets,
                truncated: addrs.len() >= self.max_frames,
            });
        }
        Some(id)
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
        let a = t.user(pid, &[addr], 1).unwrap();
        let b = t.user(pid, &[addr], 2).unwrap();
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
        assert_eq!(t.user(pid, &[addr], 3), Some(a));
    }

    #[test]
    fn empty_stacks_have_no_id() {
        let mut t = StackTable::new(32);
        assert_eq!(t.kernel(&[], 0), None);
        assert_eq!(t.user(1, &[], 0), None);
    }
}
