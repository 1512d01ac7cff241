//! `causeway-collector synth`: writes a synthetic store through the real Parquet sink (same
//! layout, sort order and encoding as a capture) for benchmarks at sizes this VM cannot capture:
//! e.g. one hour at 50k events/s (180M rows). Deterministic for a given seed.
//!
//! Shape: a hot process (`--hot-pid`) whose thread hot+1 waits on a lock held by thread hot+2
//! (sleep intervals woken by the holder) and waits in the run queue behind a noisy neighbour,
//! plus background processes with random states and wakers.

use std::time::Instant;

use anyhow::Result;
use causeway_proto::names;
use causeway_proto::KernelEvent;
use causeway_store::StoreLocation;

use causeway_collector::sink::parquet::ParquetSink;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Writes `seconds` of synthetic events at `rate` per second starting at `start_unix_ns`.
/// Writes the same shape for each host `synth-K` of `hosts` (each its own partition and
/// random stream), `rate` events/s each: a fleet in one store, for the scaling benchmark.
pub fn run(
    store: &str,
    seconds: u64,
    rate: u64,
    hot_pid: i32,
    start_unix_ns: i64,
    hosts: std::ops::RangeInclusive<u32>,
) -> Result<()> {
    for h in hosts {
        run_host(store, seconds, rate, hot_pid, start_unix_ns, h)?;
    }
    Ok(())
}

fn run_host(
    store: &str,
    seconds: u64,
    rate: u64,
    hot_pid: i32,
    start_unix_ns: i64,
    host: u32,
) -> Result<()> {
    let location = StoreLocation::parse(store)?;
    let (rt, mut sink) = ParquetSink::offline(store, format!("synth-{host}"), 1_000_000)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::from(host) << 32));
    let started = Instant::now();
    let hot_share = rate / 4; // a quarter of all events belong to the hot process
    for sec in 0..seconds {
        let base = start_unix_ns + sec as i64 * 1_000_000_000;
        let mut events = Vec::with_capacity(rate as usize);
        for n in 0..rate {
            let t = base + (n * 1_000_000_000 / rate) as i64;
            let mut e = if n < hot_share {
                hot_event(&mut rng, hot_pid, t)
            } else {
                background_event(&mut rng, t)
            };
            e.cpu = rng.below(2) as i32;
            events.push(e);
        }
        rt.block_on(sink.push(&mut events, Vec::new(), Vec::new()))?;
        if sec % 60 == 59 {
            eprintln!(
                "synth: {} s of {} written ({:.0} s elapsed)",
                sec + 1,
                seconds,
                started.elapsed().as_secs_f64()
            );
        }
    }
    rt.block_on(sink.flush())?;
    let t = sink.totals();
    eprintln!(
        "synth: {} rows in {} files, {} bytes ({:.2} B/row) into {location}",
        t.rows,
        t.files,
        t.bytes,
        t.bytes as f64 / t.rows.max(1) as f64
    );
    Ok(())
}

fn hot_event(rng: &mut Rng, pid: i32, t: i64) -> KernelEvent {
    let (waiter, holder, neighbour) = (pid + 1, pid + 2, 999);
    let roll = rng.below(10);
    let base = KernelEvent {
        time_unix_nano: t,
        pid,
        tid: waiter,
        comm: "hot-waiter".into(),
        process_name: "hot-service".into(),
        cgroup_id: 7,
        ..Default::default()
    };
    match roll {
        0..=5 => KernelEvent {
            event_name: names::event::OFF_CPU,
            duration_ns: 50_000 + rng.below(2_000_000) as i64,
            state: Some(names::state::SLEEP),
            waker_pid: Some(pid),
            waker_tid: Some(holder),
            waker_comm: Some("hot-holder".into()),
            ..base
        },
        6..=7 => KernelEvent {
            event_name: names::event::RUNQ,
            duration_ns: 10_000 + rng.below(500_000) as i64,
            prev_pid: Some(neighbour),
            prev_tid: Some(neighbour),
            prev_comm: Some("noisy".into()),
            ..base
        },
        _ => KernelEvent {
            event_name: names::event::OFF_CPU,
            tid: holder,
            comm: "hot-holder".into(),
            duration_ns: 100_000 + rng.below(1_000_000) as i64,
            state: Some(names::state::DISK),
            ..base
        },
    }
}

fn background_event(rng: &mut Rng, t: i64) -> KernelEvent {
    let pid = 1000 + rng.below(200) as i32;
    let tid = pid * 10 + rng.below(8) as i32;
    let state = [
        names::state::SLEEP,
        names::state::PREEMPTED,
        names::state::DISK,
        names::state::SLEEP,
    ][rng.below(4) as usize];
    let woken = state == names::state::SLEEP;
    KernelEvent {
        time_unix_nano: t,
        duration_ns: 1_000 + rng.below(5_000_000) as i64,
        pid,
        tid,
        comm: format!("worker-{}", tid % 8).into(),
        process_name: format!("svc-{pid}").into(),
        event_name: names::event::OFF_CPU,
        cgroup_id: pid as i64,
        state: Some(state),
        waker_pid: woken.then_some(pid),
        waker_tid: woken.then(|| pid * 10 + rng.below(8) as i32),
        waker_comm: woken.then(|| "worker".into()),
        ..Default::default()
    }
}
