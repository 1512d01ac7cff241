//! What the kernel and our privileges allow, checked before loading anything, so failures name
//! the missing piece and how to get it instead of surfacing as a verifier or EPERM error.

use std::path::Path;

use anyhow::bail;
use anyhow::Result;

/// Result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok(String),
    /// Works, with a caveat.
    Warn(String),
    /// Capture cannot work.
    Fail(String),
}

/// One named check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
}

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_SYS_ADMIN: u32 = 21;
const TRACEFS: &str = "/sys/kernel/tracing";

fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The BTF check: tp_btf programs and CO-RE relocations need the kernel's own BTF.
pub fn btf() -> Check {
    let status = if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Status::Ok("/sys/kernel/btf/vmlinux present".into())
    } else {
        Status::Fail(format!(
            "kernel {} exposes no BTF (/sys/kernel/btf/vmlinux missing): causeway needs a kernel \
             built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels have it)",
            kernel_release()
        ))
    };
    Check {
        name: "btf",
        status,
    }
}

/// The privilege check: CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN, or root).
pub fn privileges() -> Check {
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    let status = if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Status::Ok(format!(
            "CapEff={caps:#x} (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN)"
        ))
    } else {
        Status::Fail(format!(
            "missing privileges (CapEff={caps:#x}): run as root, or grant the binary \
             `setcap cap_bpf,cap_perfmon+ep causeway-collector` (kernel 5.8+)"
        ))
    };
    Check {
        name: "privileges",
        status,
    }
}

fn tracefs_mounted() -> bool {
    Path::new(TRACEFS).join("events").is_dir()
}

/// The tracefs check. tp_btf programs do not need tracefs; uprobes may (libbpf falls back to it
/// without the uprobe PMU): mount it when we may, otherwise say how.
pub fn tracefs(try_mount: bool) -> Check {
    if tracefs_mounted() {
        return Check {
            name: "tracefs",
            status: Status::Ok(format!("mounted at {TRACEFS}")),
        };
    }
    if try_mount {
        let (src, target, fs) = (c"nodev", c"/sys/kernel/tracing", c"tracefs");
        // SAFETY: NUL-terminated static strings; mount(2) does not keep the pointers.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc == 0 && tracefs_mounted() {
            return Check {
                name: "tracefs",
                status: Status::Ok(format!("mounted it at {TRACEFS}")),
            };
        }
    }
    Check {
        name: "tracefs",
        status: Status::Warn(format!(
            "tracefs is not mounted; off-CPU capture (tp_btf) works without it, later probes \
             (uprobes, on kernels without the uprobe PMU) may need it: mount -t tracefs nodev {TRACEFS}"
        )),
    }
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF maps to it. On 5.11+ BPF memory is
/// charged to the memory cgroup, so a refusal is only a warning.
pub fn memlock() -> Check {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct.
    let status = if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } == 0 {
        Status::Ok("RLIMIT_MEMLOCK raised to unlimited".into())
    } else {
        Status::Warn(format!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels 5.11+ (memcg-accounted BPF memory)",
            std::io::Error::last_os_error()
        ))
    };
    Check {
        name: "memlock",
        status,
    }
}

/// Kernel version line (informational).
pub fn kernel() -> Check {
    Check {
        name: "kernel",
        status: Status::Ok(kernel_release()),
    }
}

/// Runs the checks `run` needs; a failing one is an error that says what to do.
pub fn require_capture() -> Result<Vec<Check>> {
    let checks = vec![kernel(), btf(), privileges(), tracefs(true), memlock()];
    let fails: Vec<String> = checks
        .iter()
        .filter_map(|c| match &c.status {
            Status::Fail(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    if !fails.is_empty() {
        bail!("cannot capture: {}", fails.join("; "));
    }
    for c in &checks {
        if let Status::Warn(m) = &c.status {
            tracing::warn!("{}: {m}", c.name);
        }
    }
    Ok(checks)
}
