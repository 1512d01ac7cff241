//! The closed sets an answer names: what blocked a process, and how badly.

use schemars::JsonSchema;
use serde::Serialize;

/// What kept a process from running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Runnable but not running: other tasks had the CPU.
    CpuContention,
    /// Runnable but not running: its cgroup's CPU quota (cpu.max) was used up.
    CpuThrottling,
    /// Waiting for a lock (futex or kernel lock) or a condition another thread ends.
    LockContention,
    /// Blocked on I/O (D-state).
    IoWait,
    /// Waiting on sockets whose segments were retransmitted.
    NetworkRetransmit,
    /// Waiting for the GPU in CUDA sync calls and synchronous copies.
    GpuSync,
    /// Nothing the records name.
    Unknown,
}

/// How much of the window the finding explains, or how long its worst wait was, whichever is
/// worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nothing worth naming.
    None,
    /// Under 5 % of the window, no wait of 100 ms.
    Low,
    /// 5–20 % of the window, or a wait of 100 ms.
    Medium,
    /// 20–50 % of the window, or a wait of a second.
    High,
    /// Half the window or more.
    Critical,
}

impl Severity {
    /// From the worst thread's share of the window and the longest wait (ms).
    pub fn of(worst_share: f64, longest_ms: f64) -> Severity {
        let by_share = match worst_share {
            s if s >= 0.5 => Severity::Critical,
            s if s >= 0.2 => Severity::High,
            s if s >= 0.05 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::None,
        };
        let by_tail = match longest_ms {
            m if m >= 1000.0 => Severity::High,
            m if m >= 100.0 => Severity::Medium,
            m if m >= 10.0 => Severity::Low,
            _ => Severity::None,
        };
        by_share.max(by_tail)
    }

    /// The name the answer carries.
    pub fn name(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl Mechanism {
    /// The name the answer carries.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::CpuContention => "cpu_contention",
            Mechanism::CpuThrottling => "cpu_throttling",
            Mechanism::LockContention => "lock_contention",
            Mechanism::IoWait => "io_wait",
            Mechanism::NetworkRetransmit => "network_retransmit",
            Mechanism::GpuSync => "gpu_sync",
            Mechanism::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_takes_the_worse_of_share_and_tail() {
        assert_eq!(Severity::of(0.0, 0.0), Severity::None);
        assert_eq!(Severity::of(0.003, 200.0), Severity::Medium);
        assert_eq!(Severity::of(0.6, 1.0), Severity::Critical);
        assert_eq!(Severity::of(0.01, 5.0), Severity::Low);
        assert_eq!(Severity::of(0.3, 1500.0), Severity::High);
    }

    #[test]
    fn names_are_the_serialized_values() {
        for m in [
            Mechanism::CpuContention,
            Mechanism::CpuThrottling,
            Mechanism::LockContention,
            Mechanism::IoWait,
            Mechanism::NetworkRetransmit,
            Mechanism::GpuSync,
            Mechanism::Unknown,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert_eq!(serde_json::to_value(Severity::High).unwrap(), "high");
    }
}
