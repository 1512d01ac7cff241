//! `causeway-collector bench-bpf`: BPF nanoseconds per sched_switch and sched_waking event of the
//! off-CPU probe against an empty program on each hook, measured together (same run, same
//! workload) from the kernel's own bpf_stats (run_time_ns / run_cnt).

use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::skel::Skel;
use libbpf_rs::skel::SkelBuilder;

use causeway_collector::probes::empty::EmptySkelBuilder;
use causeway_collector::probes::offcpu;

/// Cumulative kernel statistics of one BPF program.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgStats {
    /// Total time spent in the program.
    pub run_time_ns: u64,
    /// Times it ran.
    pub run_cnt: u64,
}

/// Reads run_time_ns and run_cnt of a program (bpf_stats must be enabled for them to move).
pub fn prog_stats(fd: impl AsFd) -> Result<ProgStats> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a valid bpf_prog_info and len its size; the fd is a BPF program.
    let rc =
        unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_fd().as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        anyhow::bail!(
            "bpf_prog_get_info_by_fd: {}",
            std::io::Error::from_raw_os_error(-rc)
        );
    }
    Ok(ProgStats {
        run_time_ns: info.run_time_ns,
        run_cnt: info.run_cnt,
    })
}

/// One measured configuration.
struct Round {
    label: &'static str,
    switch_ns: f64,
    waking_ns: f64,
    empty_ns: f64,
    empty_waking_ns: f64,
    events: u64,
    elapsed: f64,
    workload: String,
}

fn measure(
    label: &'static str,
    stack_threshold: Duration,
    boot_clock: bool,
    secs: u64,
) -> Result<Round> {
    let settings = offcpu::Settings {
        min_off_cpu: Duration::from_millis(1),
        min_runq: Duration::from_micros(100),
        stack_threshold,
        boot_clock,
        follow_children: true,
        ring_buffer_bytes: 8 << 20,
        ..Default::default()
    };
    let mut obj = MaybeUninit::uninit();
    let mut skel = offcpu::load(&mut obj, &settings)?;
    offcpu::attach(&mut skel)?;
    let mut obj2 = MaybeUninit::uninit();
    let mut empty = EmptySkelBuilder::default().open(&mut obj2)?.load()?;
    empty.attach()?;
    let snapshot = |skel: &offcpu::OffcpuSkel<'_>,
                    empty: &causeway_collector::probes::empty::EmptySkel<'_>|
     -> Result<[ProgStats; 4]> {
        Ok([
            prog_stats(skel.progs.handle__sched_switch.as_fd())?,
            prog_stats(skel.progs.handle__sched_waking.as_fd())?,
            prog_stats(empty.progs.handle__sched_switch_empty.as_fd())?,
            prog_stats(empty.progs.handle__sched_waking_empty.as_fd())?,
        ])
    };
    let before = snapshot(&skel, &empty)?;
    let t0 = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args(["workload", "pingpong", "--time"])
        .arg(format!("{secs}s"))
        .output()
        .context("running the ping-pong workload")?;
    let elapsed = t0.elapsed().as_secs_f64();
    let after = snapshot(&skel, &empty)?;
    let per = |i: usize| {
        let n = after[i].run_cnt - before[i].run_cnt;
        (
            (after[i].run_time_ns - before[i].run_time_ns) as f64 / n.max(1) as f64,
            n,
        )
    };
    Ok(Round {
        label,
        switch_ns: per(0).0,
        waking_ns: per(1).0,
        empty_ns: per(2).0,
        empty_waking_ns: per(3).0,
        events: per(0).1,
        elapsed,
        workload: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    })
}

/// Runs the pipe ping-pong workload for `secs` per configuration (stacks off, stacks at the
/// default 10 ms threshold, and stacks off on the boot clock: what kernels without the
/// scheduler's run-queue accounting get), each with the empty program attached beside it, and
/// prints the table (or JSON).
pub fn run(secs: u64, json: bool) -> Result<()> {
    causeway_collector::preflight::require_capture()?;
    let _stats_guard =
        causeway_collector::overhead::enable_bpf_stats().context("enabling bpf_stats")?;
    let rounds = [
        measure("state+waker+runq", Duration::ZERO, false, secs)?,
        measure(
            "state+waker+runq+stacks(10ms)",
            Duration::from_millis(10),
            false,
            secs,
        )?,
        measure("state+waker+runq, boot clock", Duration::ZERO, true, secs)?,
    ];
    if json {
        let items: Vec<String> = rounds
            .iter()
            .map(|r| {
                format!(
                    "{{\"config\":\"{}\",\"sched_switch_ns\":{:.1},\"sched_waking_ns\":{:.1},\"empty_ns\":{:.1},\"empty_waking_ns\":{:.1},\"ratio\":{:.2},\"switches\":{},\"switches_per_sec\":{:.0},\"workload\":{}}}",
                    r.label, r.switch_ns, r.waking_ns, r.empty_ns, r.empty_waking_ns, r.switch_ns / r.empty_ns.max(1e-9),
                    r.events, r.events as f64 / r.elapsed, r.workload
                )
            })
            .collect();
        println!("[{}]", items.join(","));
        return Ok(());
    }
    println!("| config | switches/s | empty ns/switch | causeway ns/switch | × empty | empty ns/waking | causeway ns/waking |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rounds {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} |",
            r.label,
            r.events as f64 / r.elapsed,
            r.empty_ns,
            r.switch_ns,
            r.switch_ns / r.empty_ns.max(1e-9),
            r.empty_waking_ns,
            r.waking_ns
        );
    }
    Ok(())
}

/// Attaches the empty uprobe (and uretprobe) to `symbol` in `binary` for every process and
/// holds them until SIGINT/SIGTERM: the baseline a CUDA probe's per-call cost is measured against.
pub fn bare_uprobe(
    binary: &std::path::Path,
    symbol: &str,
    with_return: bool,
    ready: Option<&std::path::Path>,
) -> Result<()> {
    let mut obj = MaybeUninit::uninit();
    let skel = EmptySkelBuilder::default()
        .open(&mut obj)?
        .load()
        .context("loading the empty programs")?;
    let opts = |ret: bool| libbpf_rs::UprobeOpts {
        func_name: Some(symbol.to_string()),
        retprobe: ret,
        ..Default::default()
    };
    let mut links = vec![skel
        .progs
        .handle__uprobe_empty
        .attach_uprobe_with_opts(-1, binary, 0, opts(false))
        .with_context(|| format!("attaching a uprobe to {symbol} in {}", binary.display()))?];
    if with_return {
        links.push(skel.progs.handle__uretprobe_empty.attach_uprobe_with_opts(
            -1,
            binary,
            0,
            opts(true),
        )?);
    }
    hold_until_signalled(ready)?;
    drop(links);
    Ok(())
}

/// Attaches only the empty sched_switch and sched_waking programs and holds them until
/// SIGINT/SIGTERM: the floor of any tracer on the two hooks the off-CPU probe needs on every
/// context switch (tests/perf/bench_all.py P2a measures the pipe ping-pong under it).
pub fn bare_sched(ready: Option<&std::path::Path>) -> Result<()> {
    causeway_collector::preflight::require_capture()?;
    let mut obj = MaybeUninit::uninit();
    let skel = EmptySkelBuilder::default()
        .open(&mut obj)?
        .load()
        .context("loading the empty programs")?;
    let links = [
        skel.progs.handle__sched_switch_empty.attach()?,
        skel.progs.handle__sched_waking_empty.attach()?,
    ];
    hold_until_signalled(ready)?;
    drop(links);
    Ok(())
}

/// Writes our pid to `ready` (when given) and sleeps until SIGINT/SIGTERM.
fn hold_until_signalled(ready: Option<&std::path::Path>) -> Result<()> {
    if let Some(f) = ready {
        std::fs::write(f, format!("{}\n", std::process::id()))?;
    }
    while !causeway_collector::run::signalled() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
