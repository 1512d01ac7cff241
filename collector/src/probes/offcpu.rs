//! bpf/offcpu.bpf.c: off-CPU intervals (state class, waker), run-queue delay, process lifecycle.
//!
//! Loads and attaches the skeleton with the configured tunables and filters, and decodes its
//! ring-buffer records into [`KernelEvent`]s.

use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::Context;
use anyhow::Result;
use causeway_proto::names;
use causeway_proto::KernelEvent;
use causeway_proto::KindFields;
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::skel::Skel;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::MapCore;
use libbpf_rs::MapFlags;
use libbpf_rs::OpenObject;
use std::os::fd::AsFd;

use super::cgroup::CgroupTarget;
use super::cstr;
use super::read_record;
use crate::clock::BootToWall;

#[allow(missing_docs, clippy::all, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/offcpu.skel.rs"));
}

pub use skel::types;
pub use skel::OffcpuSkel;
use skel::OffcpuSkelBuilder;

/// Record type tags and limits, as in bpf/causeway.h (checked against the BPF object's structs by
/// the tests below).
pub mod wire {
    /// `CW_EV_OFF_CPU`
    pub const EV_OFF_CPU: u32 = 1;
    /// `CW_EV_OFF_CPU_STACK`
    pub const EV_OFF_CPU_STACK: u32 = 2;
    /// `CW_EV_RUNQ`
    pub const EV_RUNQ: u32 = 3;
    /// `CW_EV_PROC`
    pub const EV_PROC: u32 = 4;
    /// `CW_EV_FUTEX`
    pub const EV_FUTEX: u32 = 5;
    /// `CW_EV_BLOCK`
    pub const EV_BLOCK: u32 = 6;
    /// `CW_EV_TCP`
    pub const EV_TCP: u32 = 7;
    /// `CW_EV_CUDA`
    pub const EV_CUDA: u32 = 8;
    /// `CW_EV_KLOCK`
    pub const EV_KLOCK: u32 = 9;
    /// `CW_EV_MAX`
    pub const EV_MAX: usize = 10;
    /// `CW_STAT_EMITTED`
    pub const STAT_EMITTED: u32 = 0;
    /// `CW_STAT_DROPPED`
    pub const STAT_DROPPED: u32 = 16;
    /// `CW_STAT_SHORT`
    pub const STAT_SHORT: u32 = 32;
    /// `CW_STAT_SHORT_RQ`
    pub const STAT_SHORT_RQ: u32 = 33;
    /// `CW_STAT_CTX_PUBLISH`
    pub const STAT_CTX_PUBLISH: u32 = 34;
    /// `CW_STAT_CUDA_UNMATCHED`
    pub const STAT_CUDA_UNMATCHED: u32 = 35;
    /// `CW_STAT_CUDA_ORPHAN_RET`
    pub const STAT_CUDA_ORPHAN_RET: u32 = 36;
    /// `CW_STAT_CUDA_FAST`
    pub const STAT_CUDA_FAST: u32 = 37;
    /// `CW_STAT_SWITCH_IN_REBUILT`
    pub const STAT_SWITCH_IN_REBUILT: u32 = 38;
    /// `CW_STAT_SWITCH_IN_LOST`
    pub const STAT_SWITCH_IN_LOST: u32 = 39;
    /// `CW_STAT_MAX`
    pub const STAT_MAX: u32 = 40;
    /// `CW_MAX_USTACK` / `CW_MAX_KSTACK`
    pub const MAX_STACK: usize = 32;
}

/// Names of record types, for counters and logs.
pub fn type_name(t: usize) -> &'static str {
    match t as u32 {
        wire::EV_OFF_CPU => "off_cpu",
        wire::EV_OFF_CPU_STACK => "off_cpu_stack",
        wire::EV_RUNQ => "runq",
        wire::EV_PROC => "proc",
        wire::EV_FUTEX => "futex",
        wire::EV_BLOCK => "block",
        wire::EV_TCP => "tcp_retransmit",
        wire::EV_CUDA => "cuda",
        wire::EV_KLOCK => "kernel_lock",
        _ => "unknown",
    }
}

/// Tunables and filters written into the program before load.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Minimum off-CPU interval sent to user space.
    pub min_off_cpu: Duration,
    /// Minimum run-queue wait sent to user space.
    pub min_runq: Duration,
    /// Stacks for off-CPU intervals at least this long; zero disables stacks.
    pub stack_threshold: Duration,
    /// tgids to trace; empty: all.
    pub pids: Vec<u32>,
    /// Trace children of traced processes.
    pub follow_children: bool,
    /// Only tasks under this cgroup.
    pub cgroup: Option<CgroupTarget>,
    /// Ring buffer size in bytes (power of two).
    pub ring_buffer_bytes: u32,
    /// Block requests shorter than this are not sent.
    pub min_block: Duration,
    /// OBI's pinned `traces_ctx_v1` map, when found: read as a second trace-context source.
    pub obi_map: Option<std::path::PathBuf>,
    /// Measure intervals on the boot clock and stamp wakeups in the probe, as the programs must
    /// on kernels without the scheduler's run-queue accounting (bpf/offcpu.bpf.c
    /// `kernel_runq`), instead of reading the scheduler's clock: for tests and comparison. Also
    /// set by the environment variable CAUSEWAY_BOOT_CLOCK=1.
    pub boot_clock: bool,
}

impl Settings {
    /// Unread bytes past which the programs wake the reader (bpf/common.bpf.h `wake_bytes`): a
    /// quarter of the ring buffer.
    pub fn wake_bytes(&self) -> usize {
        self.ring_buffer_bytes as usize / 4
    }
}

/// Whether the scheduler's clock (`rq->clock`, what the programs measure intervals on) is one
/// clock on every CPU: an interval that starts on one CPU and ends on another subtracts two CPUs'
/// readings. The kernel marks sched_clock stable (global) where the clock it reads is; on x86
/// that takes a TSC with the `constant_tsc` and `nonstop_tsc` flags. Elsewhere (arm64's
/// architected timer) it is.
fn sched_clock_is_global() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return true;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    info.lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| {
            let flags: Vec<&str> = l.split_whitespace().collect();
            flags.contains(&"constant_tsc") && flags.contains(&"nonstop_tsc")
        })
}

/// The clock the programs measure off-CPU and run-queue intervals on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clock {
    /// The scheduler's: `rq->clock`, with run-queue waits from the kernel's `sched_info` — no
    /// clock read in the switch handlers.
    Scheduler,
    /// The boot clock, read in the handlers (~25 ns a read on the development VM), for this
    /// reason.
    Boot(&'static str),
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clock::Scheduler => f.write_str(
                "the scheduler's clock (rq->clock; run-queue waits from the kernel's sched_info accounting)",
            ),
            Clock::Boot(why) => write!(f, "the boot clock: {why}"),
        }
    }
}

/// Which clock the programs will measure on with these settings, here: what `load` sets, and
/// what the programs' CO-RE checks (`kernel_runq` in bpf/offcpu.bpf.c) will find in the kernel's
/// BTF.
pub fn clock(s: &Settings) -> Clock {
    if let Some(why) = boot_clock_chosen(s) {
        return Clock::Boot(why);
    }
    if kernel_has_runq_fields() == Some(false) {
        return Clock::Boot(
            "this kernel's BTF has no task_struct.sched_info or no cfs_rq.rq (CONFIG_SCHED_INFO, CONFIG_FAIR_GROUP_SCHED)",
        );
    }
    Clock::Scheduler
}

/// Why `load` puts the programs on the boot clock on a kernel that has the scheduler-clock
/// path, if it does.
fn boot_clock_chosen(s: &Settings) -> Option<&'static str> {
    if s.boot_clock || std::env::var_os("CAUSEWAY_BOOT_CLOCK").is_some_and(|v| v == "1") {
        return Some("asked for (CAUSEWAY_BOOT_CLOCK=1 or the boot_clock setting)");
    }
    (!sched_clock_is_global()).then_some(
        "this CPU's TSC is not constant and non-stop, so the scheduler's per-CPU clocks may disagree by up to a tick",
    )
}

/// For tests of the rebuilt switch-ins (`rebuild_switch_in` in bpf/offcpu.bpf.c): with
/// CAUSEWAY_TEST_SKIP_SWITCH_IN=N the programs ignore every Nth switch-in of a traced task, as
/// if the tracepoint had not called them. 0 (unset): none.
fn test_skip_switch_in() -> Result<u32> {
    const VAR: &str = "CAUSEWAY_TEST_SKIP_SWITCH_IN";
    let Some(v) = std::env::var_os(VAR) else {
        return Ok(0);
    };
    let n = v
        .to_str()
        .and_then(|v| v.parse::<u32>().ok())
        .with_context(|| format!("{VAR} must be a whole number of switch-ins, got {v:?}"))?;
    if n > 0 {
        tracing::warn!("{VAR}={n}: every {n}th switch-in of a traced task is ignored (tests only)");
    }
    Ok(n)
}

/// Whether the kernel's BTF has the fields the scheduler-clock path reads (`None`: BTF not
/// readable; the programs decide at load).
fn kernel_has_runq_fields() -> Option<bool> {
    use libbpf_rs::btf::types::Struct;
    let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
    let has = |ty: &str, field: &str| {
        btf.type_by_name::<Struct<'_>>(ty).is_some_and(|t| {
            t.iter()
                .any(|m| m.name.is_some_and(|n| n == std::ffi::OsStr::new(field)))
        })
    };
    Some(has("task_struct", "sched_info") && has("cfs_rq", "rq"))
}

/// Opens, configures and loads the skeleton. `open_object` must outlive the skeleton.
pub fn load<'obj>(
    open_object: &'obj mut MaybeUninit<OpenObject>,
    s: &Settings,
) -> Result<OffcpuSkel<'obj>> {
    let builder = OffcpuSkelBuilder::default();
    let mut open = builder
        .open(open_object)
        .context("opening the off-CPU BPF object")?;
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("rodata is not memory-mapped")?;
    ro.min_offcpu_ns = s.min_off_cpu.as_nanos() as u64;
    ro.min_runq_ns = s.min_runq.as_nanos() as u64;
    ro.stack_threshold_ns = s.stack_threshold.as_nanos() as u64;
    // (a kernel without the scheduler's fields takes the boot clock by itself: `doctor` says so)
    if let Some(why) = boot_clock_chosen(s) {
        tracing::info!("off-CPU and run-queue intervals on the boot clock: {why}");
        ro.boot_clock = true;
    }
    ro.test_skip_switch_in = test_skip_switch_in()?;
    super::write_filter!(&mut *ro, s);
    open.maps
        .events
        .set_max_entries(s.ring_buffer_bytes)
        .context("sizing the ring buffer")?;
    // kept alive until load: reuse_fd duplicates the descriptor
    let obi = s.obi_map.as_deref().and_then(open_obi_map);
    if let Some(m) = &obi {
        open.maps
            .traces_ctx_v1
            .reuse_fd(m.as_fd())
            .context("sharing OBI's traces_ctx_v1 map")?;
    }
    let skel = open
        .load()
        .context("loading the off-CPU BPF programs (verifier)")?;
    for pid in &s.pids {
        skel.maps
            .tgid_filter
            .update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .with_context(|| format!("adding pid {pid} to the filter"))?;
    }
    Ok(skel)
}

/// Opens OBI's pinned map if it has the layout OBI documents (key pid_tgid, value trace_id[16] +
/// span_id[8]); anything else is reported and skipped, never fatal.
fn open_obi_map(path: &std::path::Path) -> Option<libbpf_rs::MapHandle> {
    let m = match libbpf_rs::MapHandle::from_pinned_path(path) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("OBI trace-context map {} not usable: {e}", path.display());
            return None;
        }
    };
    let ok_type = matches!(
        m.map_type(),
        libbpf_rs::MapType::LruHash | libbpf_rs::MapType::Hash
    );
    // the skeleton finds maps by name, and a reused map takes the pinned map's name
    if m.name() != "traces_ctx_v1" || !ok_type || m.key_size() != 8 || m.value_size() < 24 {
        tracing::warn!(
            "{} is not an OBI traces_ctx_v1 map (name {:?}, type {:?}, key {} B, value {} B): ignored",
            path.display(),
            m.name(),
            m.map_type(),
            m.key_size(),
            m.value_size()
        );
        return None;
    }
    tracing::info!("reading trace context from OBI's map {}", path.display());
    Some(m)
}

/// Attaches every program of the skeleton.
pub fn attach(skel: &mut OffcpuSkel<'_>) -> Result<()> {
    skel.attach().context(
        "attaching to sched_switch/sched_waking/sched_wakeup_new/process tracepoints (tp_btf)",
    )
}

/// Per-CPU counters from the `stats` map: `[slot][cpu]`.
pub fn read_stats(skel: &OffcpuSkel<'_>) -> Result<Vec<Vec<u64>>> {
    let mut out = Vec::with_capacity(wire::STAT_MAX as usize);
    for slot in 0..wire::STAT_MAX {
        let per_cpu = skel
            .maps
            .stats
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .context("reading BPF counters")?
            .unwrap_or_default();
        out.push(
            per_cpu
                .iter()
                .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8])))
                .collect(),
        );
    }
    Ok(out)
}

fn state_name(s: u32) -> &'static str {
    match s {
        0 => names::state::PREEMPTED,
        1 => names::state::SLEEP,
        2 => names::state::DISK,
        _ => names::state::OTHER,
    }
}

/// The fields every record kind has: who, where, when.
pub(crate) struct Common<'a, C> {
    pub hdr: &'a types::cw_header,
    pub boot_ns: u64,
    pub duration_ns: u64,
    pub cgroup_id: u64,
    pub comm: &'a [C],
    pub process_name: &'a [C],
}

impl<'a, C: Copy> Common<'a, C> {
    /// The common part of a record: header, start, length, cgroup and names.
    pub fn interval(
        hdr: &'a types::cw_header,
        boot_ns: u64,
        duration_ns: u64,
        cgroup_id: u64,
        comm: &'a [C],
        process_name: &'a [C],
    ) -> Self {
        Common {
            hdr,
            boot_ns,
            duration_ns,
            cgroup_id,
            comm,
            process_name,
        }
    }

    pub fn event(&self, name: &'static str, clock: &BootToWall) -> KernelEvent {
        let ctx = &self.hdr.ctx;
        let (trace_id, span_id, correlation_method) = match ctx.source {
            1 | 2 if ctx.trace_id.iter().any(|b| *b != 0) => (
                Some(hex(&ctx.trace_id)),
                Some(hex(&ctx.span_id)),
                Some(if ctx.source == 1 {
                    names::correlation::UPROBE
                } else {
                    names::correlation::OBI_MAP
                }),
            ),
            _ => (None, None, None),
        };
        KernelEvent {
            trace_id,
            span_id,
            correlation_method,
            time_unix_nano: clock.wall(self.boot_ns),
            duration_ns: self.duration_ns as i64,
            pid: self.hdr.pid as i32,
            tid: self.hdr.tid as i32,
            comm: super::comm(self.comm),
            process_name: super::comm(self.process_name),
            event_name: name,
            cpu: self.hdr.cpu as i32,
            cgroup_id: self.cgroup_id as i64,
            ..Default::default()
        }
    }
}

fn hex<T: Copy + Into<u8>>(bytes: &[T]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{:02x}", (*b).into());
            s
        })
}

fn off_cpu_event(e: &types::cw_off_cpu_event, clock: &BootToWall) -> KernelEvent {
    let woken = e.waker_tid != 0 || e.waker_pid != 0;
    let common = Common::interval(
        &e.hdr,
        e.start_ns,
        e.duration_ns,
        e.cgroup_id,
        &e.comm,
        &e.process_name,
    );
    KernelEvent {
        state: Some(state_name(e.state)),
        waker_pid: woken.then_some(e.waker_pid as i32),
        waker_tid: woken.then_some(e.waker_tid as i32),
        waker_comm: woken.then(|| super::comm(&e.waker_comm)),
        ..common.event(names::event::OFF_CPU, clock)
    }
}

fn frames(n: i32, ips: &[u64]) -> &[u64] {
    let n = n.clamp(0, ips.len() as i32) as usize;
    &ips[..n]
}

/// A decoded record: most are complete events; long off-CPU intervals carry raw stacks that the
/// stack thread turns into ids (symbolization must never stall the drain).
#[derive(Debug)]
pub enum Decoded {
    /// A complete event.
    Event(KernelEvent),
    /// An event whose function address (a CUDA kernel's host stub in process `pid`) is still to
    /// be symbolized into `cuda_kernel`.
    WithFunction {
        /// The event, `cuda_kernel` unset.
        event: KernelEvent,
        /// The address in the process.
        addr: u64,
    },
    /// An event whose stack ids are still to be resolved from these raw addresses.
    WithStacks {
        /// The event, stack ids unset.
        event: KernelEvent,
        /// Kernel instruction pointers, innermost first.
        kernel: Vec<u64>,
        /// User instruction pointers, innermost first.
        user: Vec<u64>,
    },
}

/// Decodes one ring-buffer record of any probe set. Unknown or short records give `None`
/// (and are counted by the caller).
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let hdr: types::cw_header = read_record(data)?;
    let event = match hdr.r#type {
        wire::EV_FUTEX => super::futex::decode(data, clock)?,
        wire::EV_BLOCK => super::blockio::decode(data, clock)?,
        wire::EV_TCP => super::tcp::decode(data, clock)?,
        wire::EV_KLOCK => return super::lockcont::decode(data, clock),
        wire::EV_CUDA => return super::cuda::decode(data, clock),
        wire::EV_OFF_CPU => off_cpu_event(&read_record(data)?, clock),
        wire::EV_OFF_CPU_STACK => {
            let s: types::cw_off_cpu_stack_event = read_record(data)?;
            return Some(Decoded::WithStacks {
                event: off_cpu_event(&s.ev, clock),
                kernel: frames(s.n_kernel, &s.kernel).to_vec(),
                user: frames(s.n_user, &s.user).to_vec(),
            });
        }
        wire::EV_RUNQ => {
            let e: types::cw_runq_event = read_record(data)?;
            let common = Common::interval(
                &e.hdr,
                e.start_ns,
                e.duration_ns,
                e.cgroup_id,
                &e.comm,
                &e.process_name,
            );
            KernelEvent {
                prev_pid: Some(e.prev_pid as i32),
                prev_tid: Some(e.prev_tid as i32),
                prev_comm: Some(super::comm(&e.prev_comm)),
                prev_cgroup_id: Some(e.prev_cgroup_id as i64),
                ..common.event(names::event::RUNQ, clock)
            }
        }
        wire::EV_PROC => {
            let e: types::cw_proc_event = read_record(data)?;
            let (name, ppid, exit_code, path) = match e.kind {
                1 => (
                    names::event::PROCESS_EXEC,
                    Some(e.ppid as i32),
                    None,
                    Some(cstr(&e.path)),
                ),
                2 => (names::event::PROCESS_FORK, Some(e.ppid as i32), None, None),
                3 => (names::event::THREAD_START, Some(e.ppid as i32), None, None),
                4 => (names::event::PROCESS_EXIT, None, Some(e.exit_code), None),
                5 => (names::event::THREAD_EXIT, None, Some(e.exit_code), None),
                _ => return None,
            };
            let common =
                Common::interval(&e.hdr, e.ts_ns, 0, e.cgroup_id, &e.comm, &e.process_name);
            // exits carry the futex their joiners wait on (pthread_join), in futex_uaddr
            let exiting = matches!(e.kind, 4 | 5) && e.child_tid_addr != 0;
            let futex_uaddr = exiting.then_some(e.child_tid_addr as i64);
            KernelEvent {
                detail: KindFields {
                    ppid,
                    path,
                    ..Default::default()
                }
                .into(),
                exit_code,
                futex_uaddr,
                ..common.event(name, clock)
            }
        }
        _ => return None,
    };
    Some(Decoded::Event(event))
}

/// True for records that load shedding must never drop (process lifecycle).
pub fn is_lifecycle(data: &[u8]) -> bool {
    read_record::<types::cw_header>(data).is_some_and(|h| h.r#type == wire::EV_PROC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn wire_structs_have_the_c_layout() {
        // sizes from bpf/causeway.h, computed by hand: a mismatch means the header changed
        // without the decoder.
        assert_eq!(size_of::<types::cw_trace_ctx>(), 32);
        assert_eq!(size_of::<types::cw_header>(), 16 + 32);
        assert_eq!(size_of::<types::cw_off_cpu_event>(), 48 + 24 + 16 + 48);
        assert_eq!(
            size_of::<types::cw_off_cpu_stack_event>(),
            size_of::<types::cw_off_cpu_event>() + 8 + 8 * 2 * wire::MAX_STACK
        );
        assert_eq!(size_of::<types::cw_runq_event>(), 48 + 32 + 8 + 48);
        assert_eq!(size_of::<types::cw_proc_event>(), 48 + 24 + 16 + 32 + 128);
        let s = types::cw_off_cpu_stack_event::default();
        assert_eq!(s.kernel.len(), wire::MAX_STACK);
        assert_eq!(s.user.len(), wire::MAX_STACK);
    }

    #[test]
    fn decodes_an_off_cpu_record() {
        let mut e = types::cw_off_cpu_event::default();
        e.hdr.r#type = wire::EV_OFF_CPU;
        e.hdr.pid = 10;
        e.hdr.tid = 11;
        e.start_ns = 1_000;
        e.duration_ns = 200_000_000;
        e.state = 1;
        e.waker_pid = 10;
        e.waker_tid = 12;
        for (d, s) in e.waker_comm.iter_mut().zip(b"holder\0") {
            *d = *s as _;
        }
        // SAFETY: reading the bytes of a plain C struct we own.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &e as *const _ as *const u8,
                size_of::<types::cw_off_cpu_event>(),
            )
        };
        let clock = BootToWall::sample();
        let Some(Decoded::Event(ev)) = decode(bytes, &clock) else {
            panic!("not an event")
        };
        assert_eq!(ev.event_name, "sched.off_cpu");
        assert_eq!((ev.pid, ev.tid, ev.waker_tid), (10, 11, Some(12)));
        assert_eq!(ev.state, Some("sleep"));
        assert_eq!(ev.waker_comm.as_deref(), Some("holder"));
        assert_eq!(ev.duration_ns, 200_000_000);
        assert_eq!(
            (ev.trace_id.as_deref(), ev.correlation_method),
            (None, None)
        );
        assert!(decode(&bytes[..20], &clock).is_none(), "short record");
    }

    #[test]
    fn decodes_the_trace_context_of_a_record() {
        let mut e = types::cw_off_cpu_event::default();
        e.hdr.r#type = wire::EV_OFF_CPU;
        e.hdr.ctx.source = 1;
        e.hdr.ctx.trace_id = [0xab; 16];
        e.hdr.ctx.span_id = [1, 2, 3, 4, 5, 6, 7, 8];
        // SAFETY: reading the bytes of a plain C struct we own.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &e as *const _ as *const u8,
                size_of::<types::cw_off_cpu_event>(),
            )
        };
        let Some(Decoded::Event(ev)) = decode(bytes, &BootToWall::sample()) else {
            panic!("not an event")
        };
        assert_eq!(
            ev.trace_id.as_deref(),
            Some("abababababababababababababababab")
        );
        assert_eq!(ev.span_id.as_deref(), Some("0102030405060708"));
        assert_eq!(ev.correlation_method, Some("uprobe"));
    }
}
