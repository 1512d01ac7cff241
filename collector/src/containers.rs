//! Container and pod attribution from cgroup v2 ids: which container (`container.id`) and which
//! Kubernetes pod (`k8s.pod.uid`) an event's task ran in, read from the cgroup's path as container
//! runtimes and the kubelet name it (`…/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`,
//! `/kubepods/besteffort/pod<uid>/<id>`, `docker-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`).
//!
//! The id → path map comes from walking the cgroup v2 mounts (an id is the directory's inode);
//! unknown ids trigger a rescan at most once per second, so a burst of events from a new
//! container costs one walk.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::clock::coarse_monotonic_ns;

/// Unknown ids rescan the cgroup tree at most this often.
const RESCAN_AFTER_NS: i64 = 1_000_000_000;

/// What a cgroup path says about its container and pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// Container id (64 hex digits), when the path names one.
    pub container_id: Option<String>,
    /// Kubernetes pod uid (with dashes), when the path names one.
    pub pod_uid: Option<String>,
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses a cgroup path (relative to the v2 root).
pub fn owner_of(path: &str) -> Owner {
    let mut o = Owner::default();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let base = seg
            .strip_suffix(".scope")
            .or_else(|| seg.strip_suffix(".slice"))
            .unwrap_or(seg);
        // pod: systemd driver "kubepods-burstable-pod<uid_with_underscores>", cgroupfs "pod<uid>"
        if let Some(i) = base.rfind("pod") {
            let uid = &base[i + 3..];
            let uid = uid.replace('_', "-");
            let looks_like_uid = uid.len() == 36
                && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                && uid.matches('-').count() == 4;
            if looks_like_uid && (i == 0 || base[..i].ends_with('-')) {
                o.pod_uid = Some(uid);
                continue;
            }
        }
        let id = base.rsplit(['-', ':']).next().unwrap_or(base);
        if is_hex_id(id) {
            o.container_id = Some(id.to_ascii_lowercase());
        }
    }
    o
}

fn cgroup2_roots() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2")
                .then(|| pre.split_whitespace().nth(4).map(str::to_string))?
        })
        .collect()
}

/// cgroup id → owner, with bounded rescans.
pub struct Containers {
    by_id: HashMap<u64, Owner>,
    /// When the last scan began, on the coarse monotonic clock: a stream of events from a
    /// cgroup not yet scanned checks it per event.
    last_scan: Option<i64>,
}

impl Default for Containers {
    fn default() -> Self {
        Self::new()
    }
}

impl Containers {
    /// An empty map; the first lookup scans.
    pub fn new() -> Containers {
        Containers {
            by_id: HashMap::new(),
            last_scan: None,
        }
    }

    fn scan(&mut self) {
        self.last_scan = Some(coarse_monotonic_ns());
        for root in cgroup2_roots() {
            let mut stack = vec![std::path::PathBuf::from(&root)];
            let mut seen = 0usize;
            while let Some(dir) = stack.pop() {
                seen += 1;
                if seen > 100_000 {
                    break;
                }
                let Ok(meta) = std::fs::metadata(&dir) else {
                    continue;
                };
                let rel = dir
                    .strip_prefix(&root)
                    .unwrap_or(Path::new(""))
                    .to_string_lossy()
                    .into_owned();
                self.by_id.insert(meta.ino(), owner_of(&rel));
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    stack.extend(
                        rd.flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
            }
        }
    }

    /// The owner of cgroup `id` (empty when it names no container or pod).
    pub fn lookup(&mut self, id: u64) -> Owner {
        if id == 0 {
            return Owner::default();
        }
        if !self.by_id.contains_key(&id)
            && self
                .last_scan
                .is_none_or(|t| coarse_monotonic_ns().saturating_sub(t) >= RESCAN_AFTER_NS)
        {
            self.scan();
        }
        self.by_id.get(&id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_runtimes_and_kubelet_paths() {
        let id = "a".repeat(64);
        let uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
            uid.replace('-', "_")
        );
        assert_eq!(
            owner_of(&systemd),
            Owner {
                container_id: Some(id.clone()),
                pod_uid: Some(uid.into())
            }
        );
        let cgroupfs = format!("/kubepods/besteffort/pod{uid}/{id}");
        assert_eq!(
            owner_of(&cgroupfs),
            Owner {
                container_id: Some(id.clone()),
                pod_uid: Some(uid.into())
            }
        );
        for p in [
            format!("/system.slice/docker-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope"),
            format!("/crio-{id}.scope"),
        ] {
            assert_eq!(
                owner_of(&p).container_id.as_deref(),
                Some(id.as_str()),
                "{p}"
            );
        }
        assert_eq!(
            owner_of("/user.slice/user-0.slice/session-1.scope"),
            Owner::default()
        );
        assert_eq!(owner_of("/system.slice/podman.service").pod_uid, None);
    }
}
