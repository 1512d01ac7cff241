//! `causeway-collector bench-ingest`: user-space ingest throughput on one core — ring-buffer
//! records (the kernel's wire format) → decode → enrich (container lookup) → Parquet encode →
//! object store — without a kernel producing them, so the figure is the collector's own and not
//! the workload's. The records are the real wire structs (`bpf/causeway.h`) with varied pids,
//! names, states, wakers and durations; the sink is the real one (sort, zstd, page statistics).
//!
//! The capture thread and the writer thread of a real run are pipelined, so the rate at which
//! drops begin is set by the slower of the two stages (plus the ring buffer's burst headroom);
//! both stage rates are reported.

use std::mem::size_of;
use std::time::Instant;

use anyhow::Result;

use causeway_collector::clock::boottime_ns;
use causeway_collector::probes::offcpu::types;
use causeway_collector::probes::wire;
use causeway_collector::run::Capture;
use causeway_collector::sink::parquet::ParquetSink;

fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain C struct we own.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
}

fn fill(dst: &mut [i8], s: &str) {
    for (d, b) in dst.iter_mut().zip(s.bytes().chain(std::iter::once(0))) {
        *d = b as i8;
    }
}

/// `n` distinct records: 70 % off-CPU intervals (sleep/disk/preempted, with wakers), 30 %
/// run-queue waits, over 64 processes of 8 threads, timestamps in the last minute.
pub fn records(n: usize) -> Vec<Vec<u8>> {
    let now = boottime_ns() as u64;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|k| {
            let r = next();
            let pid = 1000 + (r % 64) as u32;
            let tid = pid * 10 + (r >> 8) as u32 % 8;
            let start = now - 60_000_000_000 + (k as u64 * 37_000) % 60_000_000_000;
            if r % 10 < 7 {
                let mut e = types::cw_off_cpu_event::default();
                e.hdr.r#type = wire::cw_event_type::CW_EV_OFF_CPU.0;
                (e.hdr.pid, e.hdr.tid, e.hdr.cpu) = (pid, tid, (r >> 16) as u32 % 2);
                e.start_ns = start;
                e.duration_ns = 1_000_000 + (r >> 20) % 50_000_000;
                e.cgroup_id = 4000 + (r % 64);
                e.state = ((r >> 28) % 3) as _;
                (e.waker_pid, e.waker_tid) = (pid, pid * 10 + (r >> 32) as u32 % 8);
                fill(&mut e.comm, &format!("worker-{}", tid % 8));
                fill(&mut e.process_name, &format!("service-{}", pid % 64));
                fill(&mut e.waker_comm, &format!("worker-{}", e.waker_tid % 8));
                bytes_of(&e)
            } else {
                let mut e = types::cw_runq_event::default();
                e.hdr.r#type = wire::cw_event_type::CW_EV_RUNQ.0;
                (e.hdr.pid, e.hdr.tid, e.hdr.cpu) = (pid, tid, (r >> 16) as u32 % 2);
                e.start_ns = start;
                e.duration_ns = 100_000 + (r >> 20) % 2_000_000;
                e.cgroup_id = 4000 + (r % 64);
                (e.prev_pid, e.prev_tid) = (999, 999);
                fill(&mut e.comm, &format!("worker-{}", tid % 8));
                fill(&mut e.process_name, &format!("service-{}", pid % 64));
                fill(&mut e.prev_comm, "noisy");
                bytes_of(&e)
            }
        })
        .collect()
}

/// Runs the benchmark: `events` records through both stages, pinned to `cpu`.
pub fn run(events: usize, cpu: usize, json: bool, keep: Option<std::path::PathBuf>) -> Result<()> {
    // one core, as the figure promises
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
    // the allocator as `run` sets it: what a drain's buffers cost depends on it
    causeway_collector::run::tune_malloc();
    let pool = records(65_536);
    let dir = match &keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tempfile_dir()?,
    };
    let (rt, mut sink) =
        ParquetSink::offline(dir.to_str().unwrap_or("/tmp"), "bench".into(), 200_000)?;
    let mut capture = Capture::detached();
    let (mut decode_s, mut write_s) = (0.0f64, 0.0f64);
    // what one 100 ms drain holds at 100k events/s
    let batch = 10_000;
    let mut done = 0;
    while done < events {
        let n = batch.min(events - done);
        let t = Instant::now();
        for k in 0..n {
            capture.on_record(&pool[(done + k) % pool.len()]);
        }
        let mut evs = capture.take_events();
        decode_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        rt.block_on(sink.push(&mut evs, Vec::new(), Vec::new()))?;
        capture.recycle(evs);
        write_s += t.elapsed().as_secs_f64();
        done += n;
    }
    let t = Instant::now();
    rt.block_on(sink.flush())?;
    write_s += t.elapsed().as_secs_f64();
    let (decoded, undecodable) = capture.counts();
    let totals = sink.totals();
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    anyhow::ensure!(
        decoded == events as u64 && undecodable == 0 && totals.rows == events as u64,
        "lost records in the benchmark: {decoded} decoded, {undecodable} undecodable, {} written of {events}",
        totals.rows
    );
    let capture_rate = events as f64 / decode_s;
    let writer_rate = events as f64 / write_s;
    let one_core = events as f64 / (decode_s + write_s);
    let out = serde_json::json!({
        "events": events,
        "capture_stage_events_per_s": capture_rate,
        "writer_stage_events_per_s": writer_rate,
        "one_core_end_to_end_events_per_s": one_core,
        "pipelined_events_per_s": capture_rate.min(writer_rate),
        "bytes_per_event": totals.bytes as f64 / events as f64,
        "record_bytes": size_of::<types::cw_off_cpu_event>(),
    });
    if json {
        println!("{out}");
    } else {
        println!("ingest of {events} records on CPU {cpu}:");
        println!(
            "  capture stage (decode + enrich):      {:>12.0} events/s",
            capture_rate
        );
        println!(
            "  writer stage (sort + Parquet + store): {:>12.0} events/s",
            writer_rate
        );
        println!(
            "  one core, both stages:                 {:>12.0} events/s",
            one_core
        );
        println!("  pipelined (two threads, as in `run`):  {:>12.0} events/s — sustained rates above this drop", capture_rate.min(writer_rate));
        println!(
            "  stored: {:.2} bytes/event",
            totals.bytes as f64 / events as f64
        );
    }
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("causeway-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_benchmark_record_decodes() {
        let mut c = Capture::detached();
        for r in records(1000) {
            c.on_record(&r);
        }
        assert_eq!(c.counts(), (1000, 0));
        let evs = c.take_events();
        assert_eq!(evs.len(), 1000);
        assert!(evs.iter().any(|e| e.event_name == "sched.runq"));
        assert!(evs.iter().any(|e| e.waker_comm.is_some()));
    }
}
