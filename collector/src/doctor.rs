//! `causeway-collector doctor`: what this machine allows, and a real load of the probes.

use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::Result;

use crate::preflight;
use crate::preflight::Status;
use crate::probes::futex;
use crate::probes::offcpu;

/// Prints the report; fails when capture cannot work here.
pub fn run() -> Result<()> {
    let mut checks = vec![
        preflight::kernel(),
        preflight::btf(),
        preflight::privileges(),
        preflight::tracefs(true),
        preflight::memlock(),
    ];
    let stats = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    checks.push(preflight::Check {
        name: "bpf_stats",
        status: Status::Ok(format!(
            "kernel.bpf_stats_enabled={} (bench-bpf enables it while it measures)",
            stats.trim()
        )),
    });
    let can_load = checks.iter().all(|c| !matches!(c.status, Status::Fail(_)));
    if can_load {
        let mut obj = MaybeUninit::uninit();
        let settings = offcpu::Settings {
            min_off_cpu: Duration::from_millis(1),
            ring_buffer_bytes: 1 << 20,
            ..Default::default()
        };
        let loaded = offcpu::load(&mut obj, &settings).and_then(|mut s| offcpu::attach(&mut s).map(|()| s));
        match loaded {
            Ok(skel) => {
                checks.push(preflight::Check {
                    name: "probes",
                    status: Status::Ok("offcpu.bpf.c loaded and attached (sched_switch, sched_waking, sched_wakeup_new, sched_process_exec/fork/exit, irq/softirq/hrtimer entry+exit)".into()),
                });
                let mut fobj = MaybeUninit::uninit();
                let status = match futex::load(&mut fobj, &settings, &skel).and_then(|mut f| futex::attach(&mut f)) {
                    Ok(()) => Status::Ok("futex.bpf.c loaded and attached (syscalls:sys_enter/exit_futex)".into()),
                    Err(e) => Status::Warn(format!("futex waits will not be captured: {e:#}")),
                };
                checks.push(preflight::Check { name: "futex", status });
            }
            Err(e) => checks.push(preflight::Check { name: "probes", status: Status::Fail(format!("{e:#}")) }),
        };
    }
    let mut failed = false;
    for c in &checks {
        let (tag, msg) = match &c.status {
            Status::Ok(m) => ("ok  ", m),
            Status::Warn(m) => ("warn", m),
            Status::Fail(m) => {
                failed = true;
                ("FAIL", m)
            }
        };
        println!("[{tag}] {:<11} {msg}", c.name);
    }
    if failed {
        anyhow::bail!("capture is not possible here (see FAIL lines)");
    }
    Ok(())
}
