//! `causeway-collector run`: load and attach the probes, drain the ring buffer on a timer,
//! decode, and hand batches to the Parquet writer; on SIGINT/SIGTERM (or `--duration`) drain
//! once more and flush everything before exiting.
//!
//! Threads: capture (this thread: owns the skeletons and the ring buffer; capture.rs decodes) →
//! bounded channel → writer (writer.rs); raw stacks go through the stack thread (stacks.rs).

mod capture;
mod probes;
mod ring;
mod stacks;
mod stats;
mod summary;
mod window;
mod writer;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use causeway_store::StoreLocation;
use libbpf_rs::RingBufferBuilder;

pub use capture::Capture;
pub use summary::RunSummary;
pub use writer::tune_malloc;

use crate::config::Config;

/// Set by SIGINT/SIGTERM.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// True once SIGINT/SIGTERM arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Installs SIGINT/SIGTERM handlers that request a clean stop (final drain and flush).
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Extra controls for embedding `run` (demo, tests).
#[derive(Default)]
pub struct RunOptions {
    /// Created once the probes are attached (tests wait for it).
    pub ready_file: Option<PathBuf>,
    /// Called once the probes are attached.
    pub on_ready: Option<Box<dyn FnOnce() + Send>>,
    /// Another way to request a stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Keep a copy of every decoded event in the summary (demo).
    pub keep_events: bool,
}

fn host_name(cfg: &Config) -> String {
    if !cfg.host.is_empty() {
        return cfg.host.clone();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if rc == 0 && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    }
}

fn pin_cpus(cpus: &[usize]) -> Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET indexes within its fixed size (checked by config).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            libc::CPU_SET(*c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!(
                "pinning the collector to cpus {cpus:?}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Tells the caller the probes are attached: the ready file, the callback.
fn announce_ready(opts: &mut RunOptions) -> Result<()> {
    if let Some(f) = &opts.ready_file {
        std::fs::write(f, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing ready file {}", f.display()))?;
    }
    if let Some(cb) = opts.on_ready.take() {
        cb();
    }
    Ok(())
}

/// Captures until a signal, `cfg.duration`, or `opts.stop`; returns what was captured.
pub fn run(cfg: &Config, mut opts: RunOptions) -> Result<RunSummary> {
    crate::preflight::require_capture()?;
    let location = StoreLocation::parse(&cfg.store)?;
    let settings = probes::settings(cfg)?;
    pin_cpus(&cfg.cpus)?;
    tune_malloc();
    let host = host_name(cfg);
    // decoded events not yet in the sink: bounded (ring_buffer.max_in_flight)
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = writer::spawn(cfg, &location, host.clone(), Arc::clone(&in_flight))?;
    let (stack_tx, stack_thread) = stacks::spawn(writer.tx.clone())?;
    let mut objects = probes::Objects::new();
    let mut sets = probes::ProbeSets::load(&mut objects, cfg, &settings)?;
    let capture = Rc::new(RefCell::new(Capture::live(
        opts.keep_events,
        cfg.thresholds.max_events_per_second,
    )));
    let mut rb = RingBufferBuilder::new();
    let cb_state = capture.clone();
    rb.add(&sets.offcpu.maps.events, move |data: &[u8]| {
        cb_state.borrow_mut().on_record(data);
        0
    })?;
    let rb = rb.build()?;
    tracing::info!(
        store = %location, %host,
        pids = ?cfg.pids, cgroup = ?cfg.cgroup,
        min_off_cpu = ?cfg.thresholds.min_off_cpu,
        "capturing"
    );
    announce_ready(&mut opts)?;

    let started = Instant::now();
    let stop = || {
        signalled()
            || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || cfg.duration.is_some_and(|d| started.elapsed() >= d)
    };
    let mut drain = window::Drain::new(cfg, &settings, &in_flight, &writer, stack_tx);
    drain.until_stopped(&mut sets, &rb, &capture, &stop)?;
    let elapsed = started.elapsed();

    // shut down: the last counters, the probes off, the threads joined
    let final_stats = crate::probes::offcpu::read_stats(&sets.offcpu)?;
    drop(rb);
    let (trace_context_probes, cuda_probes) = sets.probed();
    drop(sets);
    let paused = drain.finish();
    let _ = stack_thread.join();
    if paused.0 > 0 {
        tracing::warn!(
            stacks_skipped = paused.0,
            "events written without stack ids: the stack thread fell behind"
        );
    }
    if paused.1 > 0 {
        tracing::warn!(
            ticks = paused.1,
            "draining paused while the writer was ring_buffer.max_in_flight events behind (losses, if any, are in collector_stats)"
        );
    }
    drop(writer.tx);
    let (written, otlp) = writer
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    let c = Rc::try_unwrap(capture)
        .ok()
        .expect("ring buffer callback dropped")
        .into_inner();
    let mut summary = RunSummary::of(c, &final_stats, written, otlp);
    summary.elapsed = elapsed;
    summary.store = location.to_string();
    summary.trace_context_probes = trace_context_probes;
    summary.cuda_probes = cuda_probes;
    Ok(summary)
}
