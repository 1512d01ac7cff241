//! `causeway-collector demo`: records the built-in mutex workload and prints the diagnosis.
//!
//! One thread sleeps while holding a mutex another thread waits on. The collector traces only
//! the workload's pid, and the waiter's off-CPU interval must come back with state `sleep`, the
//! hold time as its duration, and the holder as its waker.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Barrier;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::bail;
use anyhow::Context;
use anyhow::Result;
use causeway_proto::names;

use crate::config::Config;
use crate::run::RunOptions;

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// With `wait`, prints `{"ready":PID}` and waits for a line on stdin, so a collector can attach
/// to the pid before anything interesting happens.
pub fn wait_for_go(wait: bool) -> Result<()> {
    if wait {
        println!("{{\"ready\":{}}}", std::process::id());
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    Ok(())
}

/// The demo's workload: thread `cw-holder` sleeps `hold` holding a mutex that `cw-waiter` waits
/// on; prints the ids as one JSON line.
pub fn mutex_workload(hold: Duration, wait_stdin: bool) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let lock = Arc::new(Mutex::new(()));
    let barrier = Arc::new(Barrier::new(2));
    let (l, b) = (lock.clone(), barrier.clone());
    let holder = std::thread::Builder::new()
        .name("cw-holder".into())
        .spawn(move || {
            let guard = l.lock().expect("fresh mutex");
            b.wait();
            std::thread::sleep(hold);
            drop(guard);
            gettid()
        })?;
    let waiter = std::thread::Builder::new()
        .name("cw-waiter".into())
        .spawn(move || {
            barrier.wait();
            let t0 = Instant::now();
            let _g = lock.lock().expect("holder does not panic");
            (gettid(), t0.elapsed())
        })?;
    // join the waiter first: the main thread then waits on the waiter, not on the holder,
    // so the holder's only victim in the recording is cw-waiter
    let (waiter_tid, waited) = waiter.join().expect("waiter thread");
    let holder_tid = holder.join().expect("holder thread");
    println!(
                "{{\"pid\":{},\"holder_tid\":{holder_tid},\"waiter_tid\":{waiter_tid},\"hold_ns\":{},\"waited_ns\":{}}}",
                std::process::id(),
                hold.as_nanos(),
                waited.as_nanos()
            );
    Ok(())
}

fn json_field(line: &str, key: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get(key)?.as_i64()
}

/// Runs the demo against `cfg.store`.
pub fn run(mut cfg: Config, hold: Duration) -> Result<()> {
    let exe = std::env::current_exe().context("locating our own executable")?;
    let mut child = Command::new(exe)
        .args(["demo-workload", "--wait-stdin", "--hold"])
        .arg(format!("{}ms", hold.as_millis()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the demo workload")?;
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    let pid = json_field(&line, "ready").context("demo workload did not report ready")? as u32;

    cfg.pids = vec![pid];
    cfg.storage.flush_interval = Duration::from_secs(1);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let (result_tx, result_rx) = std::sync::mpsc::channel::<String>();
    let opts = RunOptions {
        on_ready: Some(Box::new(move || {
            std::thread::spawn(move || {
                let _ = stdin.write_all(b"go\n");
                let mut result = String::new();
                let _ = out.read_line(&mut result);
                let _ = child.wait();
                let _ = result_tx.send(result);
                // let the last switches reach the ring buffer
                std::thread::sleep(Duration::from_millis(300));
                stop2.store(true, Ordering::SeqCst);
            });
        })),
        stop: Some(stop),
        keep_events: true,
        ..Default::default()
    };
    eprintln!("causeway demo: recording pid {pid} (a thread sleeps {} ms holding a mutex another thread waits on)", hold.as_millis());
    let summary = crate::run::run(&cfg, opts)?;
    let result = result_rx
        .recv_timeout(Duration::from_secs(5))
        .context("demo workload gave no result")?;
    let (Some(holder), Some(waiter)) = (
        json_field(&result, "holder_tid"),
        json_field(&result, "waiter_tid"),
    ) else {
        bail!("demo workload result unreadable: {result:?}");
    };
    let waits: Vec<_> = summary
        .events
        .iter()
        .filter(|e| e.event_name == names::event::OFF_CPU && e.tid as i64 == waiter)
        .collect();
    let Some(longest) = waits.iter().max_by_key(|e| e.duration_ns) else {
        bail!("no off-CPU interval of the waiter (tid {waiter}) was captured");
    };
    println!("causeway demo — the waiter's longest off-CPU interval:");
    println!(
        "  thread {} (tid {}) of pid {} was off CPU for {:.1} ms, state {}",
        longest.comm,
        longest.tid,
        longest.pid,
        longest.duration_ns as f64 / 1e6,
        longest.state.unwrap_or("?"),
    );
    match (longest.waker_tid, longest.waker_comm.as_deref()) {
        (Some(wt), Some(wc)) => println!(
            "  woken by {wc} (tid {wt}){}",
            if wt as i64 == holder {
                " — the thread that held the mutex"
            } else {
                " — NOT the holder"
            }
        ),
        _ => println!("  no waker recorded"),
    }
    println!(
        "  expected: ~{} ms, waker tid {holder} (cw-holder)",
        hold.as_millis()
    );
    print!("{}", summary.report());
    println!(
        "  query it: causeway-query sql \"SELECT tid, comm, state, duration_ns/1e6 AS ms, waker_tid, waker_comm \
         FROM kernel_events WHERE pid = {pid} AND event_name = 'sched.off_cpu' ORDER BY duration_ns DESC LIMIT 5\" --store {}",
        summary.store
    );
    if longest.waker_tid.map(i64::from) != Some(holder) {
        bail!("the waiter's waker was not the mutex holder");
    }
    Ok(())
}
