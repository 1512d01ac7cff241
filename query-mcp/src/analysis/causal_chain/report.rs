//! What `resolve_causal_chain` answers: the mechanism, its source, the chain of waits, an action
//! and the SQL behind each claim.

use schemars::JsonSchema;
use serde::Serialize;

use crate::analysis::mechanism::Mechanism;
use crate::analysis::mechanism::Severity;
use crate::analysis::report::Report;
use crate::analysis::text::quote;
use crate::analysis::text::Evidence;

/// What a link of the chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The target's thread that lost the time.
    Target,
    /// A thread that was itself waiting while the previous hop waited on it.
    Waiter,
    /// Where the chain ends: a thread that was running, or blocked without a waker.
    Root,
    /// The thread that held the contended kernel lock.
    Holder,
    /// The task that had the CPU while the target waited in the run queue.
    CpuHolder,
    /// The GPU stream the target waited for.
    Gpu,
    /// The peer whose segments were retransmitted.
    Network,
    /// The cgroup whose CPU quota ran out.
    Cgroup,
    /// The block device that served the target's requests.
    Device,
}

impl Role {
    /// The name the answer carries.
    pub fn name(self) -> &'static str {
        match self {
            Role::Target => "target",
            Role::Waiter => "waiter",
            Role::Root => "root",
            Role::Holder => "holder",
            Role::CpuHolder => "cpu_holder",
            Role::Gpu => "gpu",
            Role::Network => "network",
            Role::Cgroup => "cgroup",
            Role::Device => "device",
        }
    }
}

/// One link of the chain.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Link {
    /// 0 for the target, 1 for what it waited on, 2 for what that one was doing.
    pub hop: i64,
    /// Role of this link.
    pub role: Role,
    /// Process id.
    pub pid: i64,
    /// Thread id.
    pub tid: i64,
    /// Thread name (traced data).
    pub comm: String,
    /// Milliseconds this link accounts for.
    pub ms: f64,
    /// That time as a share of the analysed window (0..1): how much of the latency this link explains.
    #[serde(default)]
    pub share_of_window: f64,
    /// What happened, in words.
    pub detail: String,
}

impl Link {
    /// A link that is not a thread (a device, a peer, a cgroup, the GPU).
    pub fn thing(hop: i64, role: Role, name: String, ms: f64, detail: String) -> Link {
        Link {
            hop,
            role,
            pid: 0,
            tid: 0,
            comm: name,
            ms,
            share_of_window: 0.0,
            detail,
        }
    }

    /// A link that is a thread.
    pub fn thread(
        hop: i64,
        role: Role,
        (pid, tid, comm): (i64, i64, &str),
        ms: f64,
        detail: String,
    ) -> Link {
        Link {
            hop,
            role,
            pid,
            tid,
            comm: crate::analysis::text::data_text(comm),
            ms,
            share_of_window: 0.0,
            detail,
        }
    }
}

/// A thread, as a contention source names it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Task {
    /// Process id.
    pub pid: i64,
    /// Thread id.
    pub tid: i64,
    /// Thread name (traced data).
    pub comm: String,
}

/// The kind of a contention source that is not a task.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A contended kernel lock.
    KernelLock,
    /// The GPU.
    Gpu,
}

/// Who or what caused the wait.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ContentionSource {
    /// A contended kernel lock and, when traced, the task that held it.
    KernelLock {
        /// `kernel_lock`.
        kind: SourceKind,
        /// Its symbol, or its address for per-object locks.
        lock: String,
        /// mutex, rwsem_read, rwsem_write, spinlock, …
        lock_kind: String,
        /// The functions that take it, innermost first.
        taken_in: Vec<String>,
        /// The holder, when traced.
        #[serde(flatten)]
        holder: Option<Task>,
    },
    /// The GPU stream the host waited for.
    Gpu {
        /// `gpu`.
        kind: SourceKind,
        /// The sync call.
        function: String,
        /// Its stream (0: the default stream).
        stream: i64,
        /// Calls.
        calls: i64,
        /// Longest call, ms.
        longest_ms: f64,
    },
    /// The root of a wait-for chain, and the device it was doing I/O on.
    Task {
        /// The root task.
        #[serde(flatten)]
        task: Task,
        /// The device of the root's I/O, when it was blocked on I/O.
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<String>,
    },
    /// A peer that lost the target's segments.
    Peer {
        /// `ip:port`.
        peer: String,
        /// The local endpoint.
        local: String,
        /// Segments retransmitted to it.
        retransmits: i64,
    },
    /// The target's CPU cgroup, throttled by its quota.
    Throttled {
        /// cgroup v2 id.
        cgroup_id: i64,
        /// Its directory, when known.
        cgroup_path: Option<String>,
        /// Its `cpu.max` (quota period, µs), when known.
        cpu_max: Option<String>,
        /// Time throttled, from its cpu.stat.
        throttled_ms: f64,
        /// Periods throttled.
        throttled_periods: i64,
        /// Periods elapsed.
        periods: i64,
    },
    /// The task that had the CPU, and its cgroup.
    CpuHolder {
        /// The task.
        #[serde(flatten)]
        task: Task,
        /// Its cgroup v2 id.
        cgroup_id: Option<i64>,
        /// Its cgroup directory, when this host has it.
        cgroup_path: Option<String>,
        /// Its container, when the cgroup names one.
        container_id: Option<String>,
        /// The cgroup whose tasks held the CPU most (noisy neighbours are cgroups).
        #[serde(skip_serializing_if = "Option::is_none")]
        neighbour_cgroup: Option<Neighbour>,
    },
    /// The target's own threads (more runnable threads than CPUs).
    OwnThreads {
        /// The target.
        pid: i64,
        /// `own threads`.
        comm: String,
    },
    /// The block device that served the target's requests.
    Device {
        /// Its name.
        device: String,
        /// Requests.
        requests: i64,
        /// Bytes.
        bytes: i64,
        /// Longest request, ms.
        longest_request_ms: f64,
    },
}

/// A cgroup whose tasks held the CPU while the target waited.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Neighbour {
    /// cgroup v2 id.
    pub cgroup_id: Option<i64>,
    /// Its directory, when this host has it.
    pub cgroup_path: Option<String>,
    /// Its container, when the cgroup names one.
    pub container_id: Option<String>,
    /// Processes of it seen holding the CPU (a lower bound).
    pub processes: i64,
    /// Time they held it, ms.
    pub ms: f64,
    /// That time as a share of the target's run-queue time.
    pub share_of_runq: f64,
}

/// The answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChainReport {
    /// How much of the window the finding explains.
    pub severity: Severity,
    /// What kept the target from running.
    pub blocking_mechanism: Mechanism,
    /// Who or what caused the wait; null when unknown.
    pub contention_source: Option<ContentionSource>,
    /// target → what it waited on → what that was doing.
    pub chain: Vec<Link>,
    /// Symbolized frames of the longest wait (kernel then user), when asked for.
    pub stack_trace: Vec<String>,
    /// What to do, specific to the evidence.
    pub recommended_action: String,
    /// Queries behind the answer.
    pub evidence: Vec<Evidence>,
    /// Window analysed, Unix ns.
    pub window_start_ns: i64,
    /// Window end, Unix ns.
    pub window_end_ns: i64,
    /// How to read traced strings.
    pub notice: String,
}

impl ContentionSource {
    /// The source in a few words.
    pub fn name(&self) -> String {
        let cgroup = |path: &Option<String>, id: Option<i64>| match path {
            Some(p) => format!("cgroup {}", quote(p)),
            None => format!("cgroup id {}", id.unwrap_or(0)),
        };
        match self {
            ContentionSource::Gpu {
                function, stream, ..
            } => format!("the GPU ({}, stream {stream:#x})", quote(function)),
            ContentionSource::Device { device, .. }
            | ContentionSource::Task {
                device: Some(device),
                ..
            } => format!("device {}", quote(device)),
            ContentionSource::Peer { peer, .. } => format!("peer {}", quote(peer)),
            ContentionSource::Throttled {
                cgroup_path,
                cgroup_id,
                ..
            } => cgroup(cgroup_path, Some(*cgroup_id)),
            ContentionSource::CpuHolder {
                cgroup_path,
                cgroup_id,
                ..
            } => cgroup(cgroup_path, *cgroup_id),
            ContentionSource::Task { task, .. }
            | ContentionSource::KernelLock {
                holder: Some(task), ..
            } => format!("{} (pid {})", quote(&task.comm), task.pid),
            ContentionSource::KernelLock {
                lock, lock_kind, ..
            } => {
                format!("kernel {lock_kind} {}", quote(lock))
            }
            ContentionSource::OwnThreads { pid, comm } => format!("{} (pid {pid})", quote(comm)),
        }
    }
}

impl Report for ChainReport {
    fn summary(&self) -> String {
        let src = self
            .contention_source
            .as_ref()
            .map_or_else(|| "unknown".to_string(), ContentionSource::name);
        format!(
            "severity {}: {} — source {src}. {}",
            self.severity.name(),
            self.blocking_mechanism.name(),
            self.recommended_action
        )
    }

    fn text(&self) -> String {
        let mut out = self.summary() + "\n";
        for l in &self.chain {
            out.push_str(&format!(
                "  hop {} {:<15} pid {} tid {} {} {:.1} ms: {}\n",
                l.hop,
                l.role.name(),
                l.pid,
                l.tid,
                quote(&l.comm),
                l.ms,
                l.detail
            ));
        }
        for s in &self.stack_trace {
            out.push_str(&format!("    {s}\n"));
        }
        out
    }
}

impl ChainReport {
    /// The answer for a process without recorded events.
    pub fn nothing(pid: i64) -> ChainReport {
        ChainReport {
            severity: Severity::None,
            blocking_mechanism: Mechanism::Unknown,
            contention_source: None,
            chain: Vec::new(),
            stack_trace: Vec::new(),
            recommended_action: format!(
                "No kernel events are recorded for pid {pid}: record it with `causeway-collector run --pid {pid}` and ask again."
            ),
            evidence: Vec::new(),
            window_start_ns: 0,
            window_end_ns: 0,
            notice: crate::analysis::text::DATA_NOTICE.to_string(),
        }
    }
}
