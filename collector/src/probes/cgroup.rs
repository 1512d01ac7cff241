//! Resolving a cgroup v2 directory to what the BPF filter compares: its id and depth.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::bail;
use anyhow::Context;
use anyhow::Result;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A cgroup v2 directory as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupTarget {
    /// kernfs node id (the directory's inode number).
    pub id: u64,
    /// Depth below the v2 root (the root is level 0).
    pub level: u32,
}

fn cgroup2_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            if post.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            pre.split_whitespace().nth(4).map(str::to_string)
        })
        .collect()
}

/// Resolves `path`, which must be a directory on a cgroup v2 mount.
pub fn resolve(path: &str) -> Result<CgroupTarget> {
    let p = Path::new(path);
    let meta = std::fs::metadata(p).with_context(|| format!("cgroup {path}"))?;
    if !meta.is_dir() {
        bail!("cgroup {path} is not a directory");
    }
    let c = std::ffi::CString::new(path).context("cgroup path contains NUL")?;
    // SAFETY: statfs writes into a zeroed struct that we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!("cgroup {path}: {}", std::io::Error::last_os_error());
    }
    if st.f_type as i64 != CGROUP2_SUPER_MAGIC {
        let mounts = cgroup2_mounts();
        bail!(
            "cgroup {path} is not on a cgroup v2 file system (v2 is mounted at: {})",
            if mounts.is_empty() {
                "nowhere".to_string()
            } else {
                mounts.join(", ")
            }
        );
    }
    let canon = std::fs::canonicalize(p)?;
    let root = cgroup2_mounts()
        .into_iter()
        .filter(|m| canon.starts_with(m))
        .max_by_key(|m| m.len())
        .with_context(|| format!("no cgroup2 mount contains {path}"))?;
    let level = canon
        .strip_prefix(&root)
        .map(|r| r.components().count())
        .unwrap_or(0);
    Ok(CgroupTarget {
        id: meta.ino(),
        level: level as u32,
    })
}
