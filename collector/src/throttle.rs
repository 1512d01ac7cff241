//! CPU throttling from the cgroups' own counters. CFS bandwidth control (cgroup v2 `cpu.max`,
//! v1 `cpu.cfs_quota_us`) counts the periods in which a cgroup ran out of quota and the time it
//! spent throttled in `cpu.stat`; no tracepoint fires when that happens, so the collector reads
//! those counters for the cgroups it traces and, where they grew, records the interval as one
//! `cpu.throttle` row per process of the cgroup (every task of a throttled cgroup stalls until
//! the next period). The rows carry what the counters say — throttled time, throttled periods
//! of all periods, the quota — so a diagnosis needs no access to the traced host's cgroups.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use causeway_proto::names;
use causeway_proto::KernelEvent;
use causeway_proto::KindFields;

/// Processes of one throttled cgroup that get a row, at most.
const MAX_PROCS: usize = 64;
/// cgroup directories visited per walk, at most.
const MAX_WALK: usize = 10_000;
/// How often the whole CPU hierarchy is walked again for cgroups with a quota.
const WALK_EVERY: Duration = Duration::from_secs(10);

/// Which cgroups are watched.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The CPU cgroups of these processes.
    Pids(Vec<u32>),
    /// Every cgroup with a quota at or below this cgroup v2 directory.
    Subtree(PathBuf),
    /// Every cgroup with a quota.
    All,
}

/// One reading of a cgroup's `cpu.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// nr_periods: enforcement periods that elapsed with runnable tasks.
    pub periods: u64,
    /// nr_throttled: periods in which the cgroup ran out of quota.
    pub throttled: u64,
    /// throttled_usec (v2) or throttled_time (v1), in ns.
    pub throttled_ns: u64,
}

/// Parses `cpu.stat` (v2 `throttled_usec`, v1 `throttled_time` in ns). None without the CFS
/// bandwidth counters (a v2 cgroup whose cpu controller is off).
pub fn parse_cpu_stat(text: &str) -> Option<Counters> {
    let (mut periods, mut throttled, mut ns) = (None, None, None);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else {
            continue;
        };
        match k {
            "nr_periods" => periods = Some(v),
            "nr_throttled" => throttled = Some(v),
            "throttled_usec" => ns = Some(v.saturating_mul(1000)),
            "throttled_time" => ns = Some(v),
            _ => {}
        }
    }
    Some(Counters {
        periods: periods?,
        throttled: throttled?,
        throttled_ns: ns?,
    })
}

/// The cgroup's quota as `quota period` in µs (`cpu.max` style); None without a quota.
pub fn quota(dir: &Path) -> Option<String> {
    if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
        let max = max.trim();
        return (!max.starts_with("max")).then(|| max.to_string());
    }
    let q: i64 = read_trim(&dir.join("cpu.cfs_quota_us"))?.parse().ok()?;
    let p: i64 = read_trim(&dir.join("cpu.cfs_period_us"))?.parse().ok()?;
    (q > 0).then(|| format!("{q} {p}"))
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Mount points of the CPU controller: cgroup v2 mounts, and v1 mounts that carry `cpu`.
fn cpu_mounts() -> (Vec<PathBuf>, Option<PathBuf>) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (mut v2, mut v1) = (Vec::new(), None);
    for l in text.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let Some(point) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mut post = post.split_whitespace();
        match (post.next(), post.nth(1)) {
            (Some("cgroup2"), _) => v2.push(PathBuf::from(point)),
            (Some("cgroup"), Some(opts)) if opts.split(',').any(|o| o == "cpu") => {
                v1 = Some(PathBuf::from(point))
            }
            _ => {}
        }
    }
    (v2, v1)
}

/// The CPU cgroup directory of a process: its v1 `cpu` cgroup where that hierarchy exists,
/// else its v2 cgroup when the cpu controller is on there.
fn cpu_cgroup_of(pid: u32, v2: &[PathBuf], v1: &Option<PathBuf>) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut unified = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        let rel = path.trim_start_matches('/');
        if ctrl.is_empty() {
            unified = v2
                .iter()
                .map(|m| m.join(rel))
                .find(|d| d.join("cpu.max").exists());
        } else if ctrl.split(',').any(|c| c == "cpu") {
            if let Some(m) = v1 {
                return Some(m.join(rel));
            }
        }
    }
    unified
}

/// The process's cgroup v2 id (what every other row's `cgroup_id` is), 0 when unknown.
fn v2_cgroup_id(pid: u32, v2: &[PathBuf]) -> i64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .and_then(|rel| {
            v2.iter()
                .find_map(|m| std::fs::metadata(m.join(rel.trim_start_matches('/'))).ok())
        })
        .map_or(0, |m| m.ino() as i64)
}

/// Directories at or below `root` with a quota, breadth first, bounded.
fn with_quota(root: &Path, out: &mut Vec<PathBuf>, budget: &mut usize) {
    let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
    while let Some(dir) = queue.pop_front() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        if quota(&dir).is_some() {
            out.push(dir.clone());
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            queue.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}

/// Reads the watched cgroups' counters and turns growth into `cpu.throttle` rows.
pub struct ThrottleWatch {
    scope: Scope,
    v2: Vec<PathBuf>,
    v1: Option<PathBuf>,
    last: HashMap<PathBuf, Counters>,
    walked: Vec<PathBuf>,
    last_walk: Option<Instant>,
    last_poll_ns: i64,
}

impl ThrottleWatch {
    /// A watch over `scope`; the first poll only takes the baseline.
    pub fn new(scope: Scope) -> Self {
        let (v2, v1) = cpu_mounts();
        ThrottleWatch {
            scope,
            v2,
            v1,
            last: HashMap::new(),
            walked: Vec::new(),
            last_walk: None,
            last_poll_ns: 0,
        }
    }

    fn cgroups(&mut self) -> Vec<PathBuf> {
        match &self.scope {
            Scope::Pids(pids) => {
                let mut dirs: Vec<PathBuf> = pids
                    .iter()
                    .filter_map(|&p| cpu_cgroup_of(p, &self.v2, &self.v1))
                    .collect();
                dirs.sort();
                dirs.dedup();
                dirs
            }
            Scope::Subtree(_) | Scope::All => {
                if self.last_walk.is_none_or(|t| t.elapsed() >= WALK_EVERY) {
                    let roots: Vec<PathBuf> = match &self.scope {
                        Scope::Subtree(d) => vec![d.clone()],
                        _ => self.v2.iter().cloned().chain(self.v1.clone()).collect(),
                    };
                    let mut budget = MAX_WALK;
                    self.walked.clear();
                    for r in roots {
                        with_quota(&r, &mut self.walked, &mut budget);
                    }
                    self.last_walk = Some(Instant::now());
                }
                self.walked.clone()
            }
        }
    }

    /// Reads the counters now (`now_ns`: wall clock) and returns a row per process of each
    /// cgroup that was throttled since the last poll.
    pub fn poll(&mut self, now_ns: i64) -> Vec<KernelEvent> {
        let since = std::mem::replace(&mut self.last_poll_ns, now_ns);
        let mut rows = Vec::new();
        let dirs = self.cgroups();
        // cgroups that went away (a pod deleted, a process moved) leave no reading behind
        self.last.retain(|d, _| dirs.contains(d));
        for dir in dirs {
            let Some(now) = std::fs::read_to_string(dir.join("cpu.stat"))
                .ok()
                .and_then(|t| parse_cpu_stat(&t))
            else {
                continue;
            };
            let Some(before) = self.last.insert(dir.clone(), now) else {
                continue;
            };
            // (the first poll of a cgroup only took its baseline, above)
            if now.throttled <= before.throttled {
                continue;
            }
            rows.extend(self.rows_for(&dir, since, now_ns, before, now));
        }
        rows
    }

    fn rows_for(
        &self,
        dir: &Path,
        since: i64,
        now_ns: i64,
        before: Counters,
        now: Counters,
    ) -> Vec<KernelEvent> {
        let throttled_ns =
            (now.throttled_ns.saturating_sub(before.throttled_ns) as i64).min(now_ns - since);
        let limit = quota(dir);
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        procs
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .filter(|p| match &self.scope {
                Scope::Pids(pids) => pids.contains(p),
                _ => true,
            })
            .take(MAX_PROCS)
            .map(|pid| {
                let comm: causeway_proto::Comm = read_trim(Path::new(&format!("/proc/{pid}/comm")))
                    .unwrap_or_default()
                    .into();
                KernelEvent {
                    time_unix_nano: since,
                    duration_ns: throttled_ns.max(0),
                    pid: pid as i32,
                    tid: pid as i32,
                    process_name: comm,
                    comm,
                    event_name: names::event::CPU_THROTTLE,
                    cpu: -1,
                    cgroup_id: v2_cgroup_id(pid, &self.v2),
                    detail: KindFields {
                        path: Some(dir.display().to_string()),
                        cpu_throttled_periods: Some((now.throttled - before.throttled) as i64),
                        cpu_periods: Some(now.periods.saturating_sub(before.periods) as i64),
                        cpu_max: limit.clone(),
                        ..Default::default()
                    }
                    .into(),
                    ..Default::default()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_of_both_hierarchies() {
        let v2 = "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 50\nnr_throttled 7\nthrottled_usec 3500\nnr_bursts 0\nburst_usec 0\n";
        assert_eq!(
            parse_cpu_stat(v2),
            Some(Counters {
                periods: 50,
                throttled: 7,
                throttled_ns: 3_500_000
            })
        );
        let v1 = "nr_periods 9\nnr_throttled 2\nthrottled_time 123456\n";
        assert_eq!(
            parse_cpu_stat(v1),
            Some(Counters {
                periods: 9,
                throttled: 2,
                throttled_ns: 123_456
            })
        );
        // a v2 cgroup without the cpu controller has usage only: nothing to watch
        assert_eq!(parse_cpu_stat("usage_usec 5\nuser_usec 3\n"), None);
    }

    #[test]
    fn quota_reads_v2_and_v1_and_ignores_unlimited() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(quota(d.path()), None);
        std::fs::write(d.path().join("cpu.max"), "20000 100000\n").unwrap();
        assert_eq!(quota(d.path()).as_deref(), Some("20000 100000"));
        let v1 = tempfile::tempdir().unwrap();
        std::fs::write(v1.path().join("cpu.cfs_quota_us"), "-1\n").unwrap();
        std::fs::write(v1.path().join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(quota(v1.path()), None);
        std::fs::write(v1.path().join("cpu.cfs_quota_us"), "10000\n").unwrap();
        assert_eq!(quota(v1.path()).as_deref(), Some("10000 100000"));
    }
}
