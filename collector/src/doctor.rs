//! `causeway-collector doctor`: what this machine allows, and a real load of the probes.

use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::Result;

use crate::preflight;
use crate::preflight::Status;
use crate::probes::cuda;
use crate::probes::discovery;
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
            "kernel.bpf_stats_enabled={} (run turns it on for bpf_stats_sampling of each second unless bpf_stats: false; bench-bpf while it measures)",
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
        let loaded =
            offcpu::load(&mut obj, &settings).and_then(|mut s| offcpu::attach(&mut s).map(|()| s));
        match loaded {
            Ok(skel) => {
                checks.push(preflight::Check {
                    name: "probes",
                    status: Status::Ok("offcpu.bpf.c loaded and attached (sched_switch, sched_waking, sched_wakeup_new, sched_process_exec/fork/exit, irq/softirq/hrtimer entry+exit)".into()),
                });
                drop(skel);
                checks.push(preflight::Check {
                    name: "clock",
                    status: Status::Ok(format!(
                        "off-CPU and run-queue intervals measured on {}",
                        offcpu::clock(&settings)
                    )),
                });
                checks.push(preflight::Check {
                    name: "futex",
                    status: if cfg!(target_arch = "x86_64") {
                        Status::Ok("futex waits read from the blocking task's syscall registers at sched_switch (no syscall tracepoints)".into())
                    } else {
                        Status::Warn("futex waits are recognised on x86_64 only: off-CPU intervals here carry no futex address".into())
                    },
                });
            }
            Err(e) => checks.push(preflight::Check {
                name: "probes",
                status: Status::Fail(format!("{e:#}")),
            }),
        };
    }
    checks.push(preflight::Check {
        name: "cuda",
        status: cuda_report(),
    });
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

/// Directories where CUDA libraries live without any process using them yet: system paths, the
/// CUDA toolkit, conda, and pip wheels (`site-packages/nvidia/*/lib`, `torch/lib`).
fn cuda_library_dirs() -> Vec<std::path::PathBuf> {
    use std::path::PathBuf;
    let mut dirs: Vec<PathBuf> = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/targets/x86_64-linux/lib",
        "/opt/conda/lib",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let subdirs = |p: &std::path::Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for base in ["/usr/lib", "/usr/local/lib", "/opt/conda/lib"] {
        for py in subdirs(std::path::Path::new(base)) {
            if !py
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
            {
                continue;
            }
            for pkgs in ["site-packages", "dist-packages"] {
                let root = py.join(pkgs);
                dirs.push(root.join("torch/lib"));
                for v in subdirs(&root.join("nvidia")) {
                    dirs.push(v.join("lib"));
                }
            }
        }
    }
    dirs
}

/// CUDA runtime/driver/NCCL libraries on this machine and in running processes.
fn cuda_report() -> Status {
    let mut lines = Vec::new();
    let mut scanner = discovery::Scanner::new(cuda::symbols());
    for f in scanner.scan() {
        lines.push(format!(
            "in use: {} ({}, {} functions)",
            f.path,
            cuda::library_kind(&f.path),
            f.symbols.len()
        ));
    }
    let mut installed = std::collections::BTreeSet::new();
    for d in cuda_library_dirs() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ["libcudart.so", "libcuda.so", "libnccl.so"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                installed.insert(e.path().display().to_string());
            }
        }
    }
    for p in &installed {
        lines.push(format!("installed: {p} ({})", cuda::library_kind(p)));
    }
    if lines.is_empty() {
        return Status::Warn(
            "no CUDA runtime, driver or NCCL library found (fine without a GPU): processes that load one later are found while capturing (cuda.libraries / --cuda-lib probe others from the start)".into(),
        );
    }
    Status::Ok(format!(
        "uprobes go on these while capturing (launches duty-cycled: cuda.launch_sampling):\n              {}",
        lines.join("\n              ")
    ))
}
