//! classify() on fixture rows: one window per mechanism, and the noise floor.

use super::*;
use crate::analysis::causal_chain::facts::Total;
use crate::analysis::causal_chain::rows::*;

const MS: i64 = 1_000_000;
/// A 60 s window.
const WINDOW: i64 = 60_000 * MS;

fn thread(tid: i64, state: State, total_ms: i64, longest_ms: i64) -> ThreadState {
    ThreadState {
        tid,
        comm: format!("t{tid}"),
        state,
        n: 10,
        total_ns: total_ms * MS,
        longest_ns: longest_ms * MS,
    }
}

fn waker(tid: i64, total_ms: i64, longest_ms: i64) -> Waker {
    Waker {
        waker_pid: 1,
        waker_tid: tid,
        waker_comm: "holder".into(),
        n: 3,
        total_ns: total_ms * MS,
        longest_ns: longest_ms * MS,
    }
}

fn holder(pid: i64, total_ms: i64) -> CpuHolder {
    CpuHolder {
        prev_pid: pid,
        prev_tid: pid,
        prev_comm: "hog".into(),
        n: 5,
        total_ns: total_ms * MS,
        prev_cgroup_id: Some(7),
        prev_container_id: None,
    }
}

fn klock(total_ms: i64) -> KernelLockWait {
    KernelLockWait {
        tid: 2,
        comm: "writer".into(),
        kernel_lock: Some("0xffff0001".into()),
        kernel_lock_kind: Some("rwsem_write".into()),
        n: 4,
        total_ns: total_ms * MS,
        longest_ns: total_ms * MS / 4,
    }
}

fn cause(facts: &Facts) -> Cause {
    let v = classify(facts, WINDOW);
    assert!(v.significant, "{v:?}");
    v.top.cause
}

#[test]
fn sleeps_ended_by_another_thread_are_lock_contention() {
    let facts = Facts {
        per_thread: vec![
            thread(2, State::Sleep, 2_000, 400),
            thread(2, State::Runq, 30, 2),
        ],
        wakers: vec![waker(3, 1_800, 400), waker(4, 100, 50)],
        ..Default::default()
    };
    let v = classify(&facts, WINDOW);
    assert_eq!(v.top.cause, Cause::Lock);
    assert_eq!(v.top.cause.mechanism(), Mechanism::LockContention);
    assert_eq!((v.top.total_ns, v.top.longest_ns), (1_900 * MS, 400 * MS));
    // the worst sleeper's share, scaled by the part of its sleeps other threads ended
    assert!(
        (v.top.share - 2.0 / 60.0 * 0.95).abs() < 1e-9,
        "{}",
        v.top.share
    );
}

#[test]
fn run_queue_waits_behind_other_tasks_are_cpu_contention() {
    let facts = Facts {
        per_thread: vec![thread(2, State::Runq, 3_000, 40)],
        cpu_holders: vec![holder(99, 2_500), holder(0, 100)],
        ..Default::default()
    };
    assert_eq!(cause(&facts), Cause::CpuContention);
    assert_eq!(Cause::CpuContention.mechanism(), Mechanism::CpuContention);
}

#[test]
fn run_queue_waits_on_an_idle_cpu_or_counted_by_cfs_are_throttling() {
    // the CPU ran its idle task for most of the wait
    let idle = Facts {
        per_thread: vec![thread(2, State::Runq, 3_000, 90)],
        cpu_holders: vec![holder(0, 2_000), holder(99, 1_000)],
        ..Default::default()
    };
    let v = classify(&idle, WINDOW);
    assert_eq!((v.top.cause, v.idle_ns), (Cause::Throttling, 2_000 * MS));
    // other tasks used the idle time, but the cgroup's counters say it was throttled
    let counted = Facts {
        per_thread: vec![thread(2, State::Runq, 3_000, 90)],
        cpu_holders: vec![holder(99, 3_000)],
        throttle: Some(Throttle {
            throttled_ns: 1_600 * MS,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(cause(&counted), Cause::Throttling);
    assert_eq!(Cause::Throttling.mechanism(), Mechanism::CpuThrottling);
    // counters that name too little throttling leave it contention
    let little = Facts {
        throttle: Some(Throttle {
            throttled_ns: 100 * MS,
            ..Default::default()
        }),
        ..counted
    };
    assert_eq!(cause(&little), Cause::CpuContention);
}

#[test]
fn d_state_is_io_unless_kernel_lock_waits_explain_it() {
    let io = Facts {
        per_thread: vec![thread(2, State::Disk, 4_000, 80)],
        ..Default::default()
    };
    assert_eq!(cause(&io), Cause::Io);
    assert_eq!(Cause::Io.mechanism(), Mechanism::IoWait);
    // kernel lock waits take their time out of the D-state
    let locked = Facts {
        kernel_locks: vec![klock(3_000)],
        own_block_requests: 12,
        ..io.clone()
    };
    let v = classify(&locked, WINDOW);
    assert_eq!(v.top.cause, Cause::KernelLock);
    assert_eq!(v.of(Cause::Io).total_ns, 1_000 * MS);
    assert!(!v.consulted_own_io);
    assert_eq!(Cause::KernelLock.mechanism(), Mechanism::LockContention);
    // more D-state than lock waits, and block requests of its own: I/O
    let mostly_io = Facts {
        kernel_locks: vec![klock(1_000)],
        own_block_requests: 12,
        ..io.clone()
    };
    let v = classify(&mostly_io, WINDOW);
    assert_eq!((v.top.cause, v.consulted_own_io), (Cause::Io, true));
    // ... but no block request of its own: the lock is the evidence there is
    let no_own_io = Facts {
        own_block_requests: 0,
        ..mostly_io
    };
    assert_eq!(cause(&no_own_io), Cause::KernelLock);
}

#[test]
fn gpu_waits_are_gpu_sync() {
    let facts = Facts {
        per_thread: vec![thread(2, State::Sleep, 500, 20)],
        gpu_waits: vec![GpuWait {
            tid: 2,
            comm: "trainer".into(),
            cuda_function: "cudaStreamSynchronize".into(),
            n: 100,
            total_ns: 20_000 * MS,
            longest_ns: 300 * MS,
            stream: 0x10,
        }],
        ..Default::default()
    };
    let v = classify(&facts, WINDOW);
    assert_eq!(v.top.cause, Cause::GpuSync);
    assert!((v.top.share - 20.0 / 60.0).abs() < 1e-9);
    assert_eq!(Cause::GpuSync.mechanism(), Mechanism::GpuSync);
}

#[test]
fn sleeps_with_retransmits_are_network() {
    let facts = Facts {
        per_thread: vec![thread(2, State::Sleep, 1_500, 1_000)],
        network: Total {
            total_ns: 1_400 * MS,
            longest_ns: 1_000 * MS,
        },
        ..Default::default()
    };
    assert_eq!(cause(&facts), Cause::Network);
    assert_eq!(Cause::Network.mechanism(), Mechanism::NetworkRetransmit);
}

#[test]
fn a_few_short_waits_are_nothing() {
    let quiet = Facts {
        per_thread: vec![thread(2, State::Runq, 300, 2)],
        ..Default::default()
    };
    let v = classify(&quiet, WINDOW);
    assert_eq!(v.top.cause, Cause::CpuContention);
    assert!(!v.significant, "{v:?}");
    // one wait of 5 ms is worth naming, however small its share
    let one = Facts {
        per_thread: vec![thread(2, State::Runq, 300, 5)],
        ..Default::default()
    };
    assert!(classify(&one, WINDOW).significant);
    assert!(!classify(&Facts::default(), WINDOW).significant);
}

#[test]
fn the_largest_total_wins_and_ties_keep_the_listed_order() {
    let facts = Facts {
        per_thread: vec![
            thread(2, State::Runq, 1_000, 50),
            thread(3, State::Disk, 2_000, 50),
        ],
        wakers: vec![waker(3, 2_000, 100)],
        ..Default::default()
    };
    let v = classify(&facts, WINDOW);
    // lock and I/O tie at 2 s: lock is listed first
    assert_eq!(v.top.cause, Cause::Lock);
    let order: Vec<Cause> = v.candidates.iter().map(|c| c.cause).collect();
    assert_eq!(&order[..3], &[Cause::Lock, Cause::Io, Cause::CpuContention]);
}
