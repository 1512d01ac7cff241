//! bpf/offcpu.bpf.c: off-CPU intervals (state class, waker), run-queue delay, process lifecycle.
//!
//! Loads and attaches the skeleton with the configured tunables and filters, and decodes its
//! ring-buffer records into [`KernelEvent`]s.

use std::mem::MaybeUninit;

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

use super::record;
use super::record::comm_of;
use super::record::cstr;
use super::record::read_record;
use super::record::Decoded;
use super::wire;
use super::wire::cw_event_type as Ev;
use crate::clock::BootToWall;

#[allow(missing_docs, clippy::all, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/offcpu.skel.rs"));
}

pub use skel::types;
pub use skel::OffcpuSkel;
use skel::OffcpuSkelBuilder;

pub use super::settings::Settings;

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
    /// The boot clock, read in the handlers (a clock read per switch), for this
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
    super::load::write_filter!(&mut *ro, s);
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
    use wire::cw_offcpu_state as State;
    match State(s) {
        State::CW_STATE_PREEMPTED => names::state::PREEMPTED,
        State::CW_STATE_SLEEP => names::state::SLEEP,
        State::CW_STATE_DISK => names::state::DISK,
        _ => names::state::OTHER,
    }
}

/// An off-CPU record (`data` holds it, or a stack record that starts with it).
fn off_cpu_event(
    data: &[u8],
    e: &types::cw_off_cpu_event,
    clock: &BootToWall,
) -> Option<KernelEvent> {
    let woken = e.waker_tid != 0 || e.waker_pid != 0;
    let ev = record::event_of!(data, clock, names::event::OFF_CPU, e)?;
    Some(KernelEvent {
        state: Some(state_name(e.state)),
        waker_pid: woken.then_some(e.waker_pid as i32),
        waker_tid: woken.then_some(e.waker_tid as i32),
        waker_comm: woken.then(|| comm_of(&e.waker_comm)),
        ..ev
    })
}

fn frames(n: i32, ips: &[u64]) -> &[u64] {
    let n = n.clamp(0, ips.len() as i32) as usize;
    &ips[..n]
}

/// Decodes an off-CPU, stack, run-queue or lifecycle record.
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let hdr: wire::cw_header = read_record(data)?;
    let event = match Ev(hdr.r#type) {
        Ev::CW_EV_OFF_CPU => off_cpu_event(data, &read_record(data)?, clock)?,
        Ev::CW_EV_OFF_CPU_STACK => {
            let s: types::cw_off_cpu_stack_event = read_record(data)?;
            return Some(Decoded::WithStacks {
                event: off_cpu_event(data, &s.ev, clock)?,
                kernel: frames(s.n_kernel, &s.kernel).to_vec(),
                user: frames(s.n_user, &s.user).to_vec(),
            });
        }
        Ev::CW_EV_RUNQ => {
            let e: types::cw_runq_event = read_record(data)?;
            KernelEvent {
                prev_pid: Some(e.prev_pid as i32),
                prev_tid: Some(e.prev_tid as i32),
                prev_comm: Some(comm_of(&e.prev_comm)),
                prev_cgroup_id: Some(e.prev_cgroup_id as i64),
                ..record::event_of!(data, clock, names::event::RUNQ, e)?
            }
        }
        Ev::CW_EV_PROC => lifecycle_event(data, clock)?,
        _ => return None,
    };
    Some(Decoded::Event(event))
}

/// A process or thread lifecycle record.
fn lifecycle_event(data: &[u8], clock: &BootToWall) -> Option<KernelEvent> {
    use wire::cw_proc_kind as Kind;
    let e: types::cw_proc_event = read_record(data)?;
    let (name, ppid, exit_code, path) = match Kind(e.kind) {
        Kind::CW_PROC_EXEC => (
            names::event::PROCESS_EXEC,
            Some(e.ppid as i32),
            None,
            Some(cstr(&e.path)),
        ),
        Kind::CW_PROC_FORK => (names::event::PROCESS_FORK, Some(e.ppid as i32), None, None),
        Kind::CW_PROC_THREAD_START => (names::event::THREAD_START, Some(e.ppid as i32), None, None),
        Kind::CW_PROC_EXIT => (names::event::PROCESS_EXIT, None, Some(e.exit_code), None),
        Kind::CW_PROC_THREAD_EXIT => (names::event::THREAD_EXIT, None, Some(e.exit_code), None),
        _ => return None,
    };
    // exits carry the futex their joiners wait on (pthread_join), in futex_uaddr
    let exiting = matches!(Kind(e.kind), Kind::CW_PROC_EXIT | Kind::CW_PROC_THREAD_EXIT);
    let futex_uaddr = (exiting && e.child_tid_addr != 0).then_some(e.child_tid_addr as i64);
    Some(KernelEvent {
        detail: KindFields {
            ppid,
            path,
            ..Default::default()
        }
        .into(),
        exit_code,
        futex_uaddr,
        ..record::event_of!(instant data, clock, name, e)?
    })
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
        e.hdr.r#type = wire::cw_event_type::CW_EV_OFF_CPU.0;
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
        e.hdr.r#type = wire::cw_event_type::CW_EV_OFF_CPU.0;
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
