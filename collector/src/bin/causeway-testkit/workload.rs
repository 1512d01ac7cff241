//! Built-in workloads with known answers, used by the end-to-end tests (the demo's is in the
//! collector's `demo`).
//!
//! Each prints one JSON line with the ids a checker needs. With `--wait-stdin` a workload first
//! prints `{"ready":PID}` and waits for a line on stdin, so a collector can attach to its pid
//! before anything interesting happens.

use std::io::Read;
use std::io::Write;
use std::sync::Arc;
use std::sync::Barrier;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use causeway_collector::demo;
use causeway_collector::demo::gettid;
use causeway_collector::demo::wait_for_go;
use clap::Subcommand;

/// The workloads.
#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    /// Thread cw-holder takes a mutex and sleeps while holding it; thread cw-waiter blocks on it.
    Mutex {
        /// How long the holder keeps the lock.
        #[arg(long, default_value = "200ms", value_parser = causeway_collector::cli::duration)]
        hold: Duration,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// Thread cw-holder takes a mutex and, holding it, writes and fsyncs a file; thread cw-waiter
    /// blocks on the mutex: a two-hop chain (lock → I/O).
    Lockio {
        /// File to write (on the file system under test).
        #[arg(long)]
        file: std::path::PathBuf,
        /// Bytes written before each fsync.
        #[arg(long, default_value_t = 64 << 20)]
        bytes: usize,
        /// Rounds (each: lock, write, fsync, unlock).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Open with O_DIRECT (every write waits for the device).
        #[arg(long)]
        direct: bool,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// A kernel lock held across slow work: thread cw-truncator rewrites and truncates a big
    /// file (each write and truncate holds the inode's i_rwsem for milliseconds) while thread
    /// cw-writer appends small writes to the same file and waits for that lock in the kernel.
    Klock {
        /// The file (tmpfs is fine: the lock is the inode's, no device involved).
        #[arg(long)]
        file: std::path::PathBuf,
        /// Bytes the truncator writes per round.
        #[arg(long, default_value_t = 64 << 20)]
        bytes: usize,
        /// Rounds of write + truncate.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// Thread cw-fsync writes and fsyncs a file, round after round (an I/O-bound thread).
    Fsync {
        /// File to write.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Bytes per round.
        #[arg(long, default_value_t = 16 << 20)]
        bytes: usize,
        /// Rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Open with O_DIRECT (bypass the page cache; bytes rounded to 4 KiB).
        #[arg(long)]
        direct: bool,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// Context switches at a set rate (benchmarks): threads cw-rate-N each sleep a fixed short
    /// period in a loop (timer slack 1 ns), so every period is one switch out and one back in.
    /// Prints {"switches_per_s": measured}.
    Rate {
        /// Target switches (wake-ups) per second over all threads.
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        /// Seconds to run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Threads sharing the rate.
        #[arg(long, default_value_t = 16)]
        threads: u64,
    },
    /// Thread cw-sleeper only sleeps (nanosleep): the negative control, no contention.
    Sleep {
        /// Each sleep.
        #[arg(long, default_value = "50ms", value_parser = causeway_collector::cli::duration)]
        each: Duration,
        /// Sleeps.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Then sleeps of this length ...
        #[arg(long, default_value = "0s", value_parser = causeway_collector::cli::duration)]
        then: Duration,
        /// ... this many times.
        #[arg(long, default_value_t = 0)]
        then_count: usize,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// Thread cw-tcp sends requests to an echo server and waits for each answer.
    Tcp {
        /// Server address, e.g. 10.77.0.2:9000.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Requests.
        #[arg(long, default_value_t = 40)]
        requests: usize,
        /// Bytes per request (echoed back).
        #[arg(long, default_value_t = 16384)]
        size: usize,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// Thread cw-waitv waits in futex_waitv(2) on two futex words until thread cw-waker, after
    /// sleeping, changes the first and wakes it.
    Waitv {
        /// How long the waker sleeps first.
        #[arg(long, default_value = "100ms", value_parser = causeway_collector::cli::duration)]
        after: Duration,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// Busy threads pinned to one CPU, so they preempt each other.
    Spin {
        /// Number of threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// The CPU they share.
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// How long they spin.
        #[arg(long, default_value = "2s", value_parser = causeway_collector::cli::duration)]
        time: Duration,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
    /// Two threads pinned to one CPU bounce a byte through two pipes: a context switch per hop.
    Pingpong {
        /// How long they play.
        #[arg(long, default_value = "5s", value_parser = causeway_collector::cli::duration)]
        time: Duration,
        /// The CPU they share.
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
}

fn pin_current_thread(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; `cpu` is bounded by the caller's check.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!("pinning to cpu {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes `bytes` (fresh data, so nothing is deduplicated) to `path` and fsyncs it.
fn write_and_sync(path: &std::path::Path, bytes: usize, direct: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).write(true).truncate(true);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // O_DIRECT needs an aligned buffer and length; large writes make each wait visible (ms)
    let chunk = 8 << 20;
    let layout = std::alloc::Layout::from_size_align(chunk, 4096).expect("valid layout");
    // SAFETY: layout has a non-zero size; the buffer is freed below and only used as bytes.
    let ptr = unsafe { std::alloc::alloc(layout) };
    anyhow::ensure!(!ptr.is_null(), "out of memory");
    // SAFETY: ptr points to `chunk` bytes we own.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, chunk) };
    let mut seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    for w in buf.chunks_exact_mut(8) {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        w.copy_from_slice(&seed.to_ne_bytes());
    }
    let mut left = bytes.div_ceil(4096) * 4096;
    let result = (|| -> Result<()> {
        while left > 0 {
            let n = left.min(chunk);
            f.write_all(&buf[..n])
                .with_context(|| format!("writing {}", path.display()))?;
            left -= n;
        }
        f.sync_all()
            .with_context(|| format!("fsync {}", path.display()))
    })();
    // SAFETY: allocated above with the same layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    result
}

/// Runs a workload to completion.
pub fn run(w: Workload) -> Result<()> {
    match w {
        Workload::Mutex { hold, wait_stdin } => demo::mutex_workload(hold, wait_stdin),
        Workload::Lockio {
            file,
            bytes,
            rounds,
            direct,
            wait_stdin,
        } => lockio_workload(file, bytes, rounds, direct, wait_stdin),
        Workload::Klock {
            file,
            bytes,
            rounds,
            wait_stdin,
        } => klock_workload(file, bytes, rounds, wait_stdin),
        Workload::Fsync {
            file,
            bytes,
            rounds,
            direct,
            wait_stdin,
        } => fsync_workload(file, bytes, rounds, direct, wait_stdin),
        Workload::Tcp {
            addr,
            requests,
            size,
            wait_stdin,
        } => tcp_workload(addr, requests, size, wait_stdin),
        Workload::Waitv { after, wait_stdin } => waitv_workload(after, wait_stdin),
        Workload::Rate {
            rate,
            seconds,
            threads,
        } => rate_workload(rate, seconds, threads),
        Workload::Sleep {
            each,
            count,
            then,
            then_count,
            wait_stdin,
        } => sleep_workload(each, count, then, then_count, wait_stdin),
        Workload::Spin {
            threads,
            cpu,
            time,
            wait_stdin,
        } => spin_workload(threads, cpu, time, wait_stdin),
        Workload::Pingpong {
            time,
            cpu,
            wait_stdin,
        } => pingpong_workload(time, cpu, wait_stdin),
    }
}

fn lockio_workload(
    file: std::path::PathBuf,
    bytes: usize,
    rounds: usize,
    direct: bool,
    wait_stdin: bool,
) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let lock = Arc::new(Mutex::new(()));
    let (l, f) = (lock.clone(), file.clone());
    let started = Arc::new(Barrier::new(2));
    let s2 = started.clone();
    // a barrier per round: the waiter asks for the lock right after the holder took it
    let holder =
        std::thread::Builder::new()
            .name("cw-holder".into())
            .spawn(move || -> Result<i32> {
                for _ in 0..rounds {
                    let g = l.lock().expect("fresh mutex");
                    s2.wait();
                    write_and_sync(&f, bytes, direct)?;
                    drop(g);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(gettid())
            })?;
    let waiter = std::thread::Builder::new()
        .name("cw-waiter".into())
        .spawn(move || {
            for _ in 0..rounds {
                started.wait();
                drop(lock.lock().expect("holder does not panic"));
            }
            gettid()
        })?;
    let waiter_tid = waiter.join().expect("waiter thread");
    let holder_tid = holder.join().expect("holder thread")?;
    let _ = std::fs::remove_file(&file);
    println!(
        "{{\"pid\":{},\"holder_tid\":{holder_tid},\"waiter_tid\":{waiter_tid}}}",
        std::process::id()
    );
    Ok(())
}

fn klock_workload(
    file: std::path::PathBuf,
    bytes: usize,
    rounds: usize,
    wait_stdin: bool,
) -> Result<()> {
    wait_for_go(wait_stdin)?;
    use std::os::unix::fs::FileExt;
    let f = Arc::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&file)
            .with_context(|| format!("opening {}", file.display()))?,
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f1, d1) = (f.clone(), done.clone());
    let truncator = std::thread::Builder::new()
        .name("cw-truncator".into())
        .spawn(move || -> Result<i32> {
            let buf = vec![7u8; bytes];
            for _ in 0..rounds {
                f1.write_all_at(&buf, 0)?;
                f1.set_len(0)?;
            }
            d1.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(gettid())
        })?;
    let writer = std::thread::Builder::new().name("cw-writer".into()).spawn(
        move || -> Result<(i32, u64)> {
            let small = [1u8; 4096];
            let mut n = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                f.write_all_at(&small, 1 << 30)?;
                n += 1;
            }
            Ok((gettid(), n))
        },
    )?;
    let truncator_tid = truncator.join().expect("truncator thread")?;
    let (writer_tid, writes) = writer.join().expect("writer thread")?;
    let _ = std::fs::remove_file(&file);
    println!(
                "{{\"pid\":{},\"holder_tid\":{truncator_tid},\"waiter_tid\":{writer_tid},\"writes\":{writes}}}",
                std::process::id()
            );
    Ok(())
}

fn fsync_workload(
    file: std::path::PathBuf,
    bytes: usize,
    rounds: usize,
    direct: bool,
    wait_stdin: bool,
) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let t = std::thread::Builder::new()
        .name("cw-fsync".into())
        .spawn(move || -> Result<i32> {
            for _ in 0..rounds {
                write_and_sync(&file, bytes, direct)?;
            }
            let _ = std::fs::remove_file(&file);
            Ok(gettid())
        })?;
    let tid = t.join().expect("fsync thread")?;
    println!("{{\"pid\":{},\"tid\":{tid}}}", std::process::id());
    Ok(())
}

fn tcp_workload(
    addr: std::net::SocketAddr,
    requests: usize,
    size: usize,
    wait_stdin: bool,
) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let t = std::thread::Builder::new()
        .name("cw-tcp".into())
        .spawn(move || -> Result<i32> {
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .with_context(|| format!("connecting to {addr}"))?;
            s.set_nodelay(true)?;
            let out = vec![7u8; size];
            let mut back = vec![0u8; size];
            for _ in 0..requests {
                s.write_all(&out)?;
                s.read_exact(&mut back)?;
            }
            Ok(gettid())
        })?;
    let tid = t.join().expect("tcp thread")?;
    println!("{{\"pid\":{},\"tid\":{tid}}}", std::process::id());
    Ok(())
}

fn waitv_workload(after: Duration, wait_stdin: bool) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let words: &'static [std::sync::atomic::AtomicU32; 2] = Box::leak(Box::new([
        std::sync::atomic::AtomicU32::new(0),
        std::sync::atomic::AtomicU32::new(0),
    ]));
    let addr = words[0].as_ptr() as usize;
    let waiter =
        std::thread::Builder::new()
            .name("cw-waitv".into())
            .spawn(move || -> Result<i32> {
                // struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved } ×2, FUTEX_32
                let w: [[u64; 3]; 2] = [
                    [0, words[0].as_ptr() as u64, 2],
                    [0, words[1].as_ptr() as u64, 2],
                ];
                while words[0].load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    // SAFETY: futex_waitv(2) (nr 449) reads the two waiters we pass; no timeout.
                    let r = unsafe {
                        libc::syscall(449, w.as_ptr(), 2, 0, std::ptr::null::<libc::timespec>(), 0)
                    };
                    if r < 0 {
                        let e = std::io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EAGAIN)
                            && e.raw_os_error() != Some(libc::EINTR)
                        {
                            anyhow::bail!("futex_waitv: {e}");
                        }
                    }
                }
                Ok(gettid())
            })?;
    std::thread::Builder::new()
        .name("cw-waker".into())
        .spawn(move || {
            std::thread::sleep(after);
            words[0].store(1, std::sync::atomic::Ordering::SeqCst);
            // SAFETY: FUTEX_WAKE (1) on a valid, aligned u32 we own.
            unsafe { libc::syscall(libc::SYS_futex, words[0].as_ptr(), libc::FUTEX_WAKE, 1) };
        })?;
    let tid = waiter.join().expect("waitv thread")?;
    println!(
        "{{\"pid\":{},\"tid\":{tid},\"uaddr\":{addr}}}",
        std::process::id()
    );
    Ok(())
}

fn rate_workload(rate: u64, seconds: u64, threads: u64) -> Result<()> {
    let period = Duration::from_nanos(1_000_000_000 * threads.max(1) / rate.max(1));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("cw-rate-{i}"))
                .spawn(move || {
                    // SAFETY: prctl with an integer argument; affects this thread only.
                    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64) };
                    let mut n = 0u64;
                    let mut next = Instant::now();
                    while Instant::now() < stop {
                        // absolute deadlines: oversleeping one period does not lower the rate
                        next += period;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            std::thread::yield_now();
                        }
                        n += 1;
                    }
                    n
                })
        })
        .collect::<std::io::Result<_>>()?;
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    println!("{{\"switches_per_s\":{}}}", total / seconds.max(1));
    Ok(())
}

fn sleep_workload(
    each: Duration,
    count: usize,
    then: Duration,
    then_count: usize,
    wait_stdin: bool,
) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let t = std::thread::Builder::new()
        .name("cw-sleeper".into())
        .spawn(move || {
            for _ in 0..count {
                std::thread::sleep(each);
            }
            for _ in 0..then_count {
                std::thread::sleep(then);
            }
            gettid()
        })?;
    let tid = t.join().expect("sleeper thread");
    println!("{{\"pid\":{},\"tid\":{tid}}}", std::process::id());
    Ok(())
}

fn spin_workload(threads: usize, cpu: usize, time: Duration, wait_stdin: bool) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("cw-spin-{i}"))
                .spawn(move || {
                    pin_current_thread(cpu).expect("pin");
                    let end = Instant::now() + time;
                    let mut x = 0u64;
                    while Instant::now() < end {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                    gettid()
                })
        })
        .collect::<std::io::Result<_>>()?;
    let tids: Vec<i32> = handles
        .into_iter()
        .map(|h| h.join().expect("spinner"))
        .collect();
    println!("{{\"pid\":{},\"tids\":{tids:?}}}", std::process::id());
    Ok(())
}

fn pingpong_workload(time: Duration, cpu: usize, wait_stdin: bool) -> Result<()> {
    wait_for_go(wait_stdin)?;
    let (mut a_rx, mut b_tx) = std::io::pipe().context("pipe")?;
    let (mut b_rx, mut a_tx) = std::io::pipe().context("pipe")?;
    let end = Instant::now() + time;
    let ponger = std::thread::Builder::new()
        .name("cw-pong".into())
        .spawn(move || {
            pin_current_thread(cpu).expect("pin");
            let mut buf = [0u8; 1];
            let mut n = 0u64;
            while a_rx.read_exact(&mut buf).is_ok() && buf[0] != 0 {
                if a_tx.write_all(&buf).is_err() {
                    break;
                }
                n += 1;
            }
            n
        })?;
    pin_current_thread(cpu)?;
    let mut buf = [1u8; 1];
    let mut rounds = 0u64;
    while Instant::now() < end {
        b_tx.write_all(&[1])?;
        b_rx.read_exact(&mut buf)?;
        rounds += 1;
    }
    b_tx.write_all(&[0])?;
    ponger.join().expect("ponger");
    println!(
        "{{\"pid\":{},\"rounds\":{rounds},\"secs\":{:.3}}}",
        std::process::id(),
        time.as_secs_f64()
    );
    Ok(())
}
