//! bpf/cuda.bpf.c: CUDA runtime, driver and NCCL calls through uprobes on the libraries each
//! process really maps (found by [`super::discovery`]).
//!
//! Cost is the design constraint. A uprobe traps into the kernel on every call (~1.4 µs where
//! the probed instruction is emulated, more where it is single-stepped); launches come at 10^5
//! per second, so probing every launch would slow a launch-bound job measurably
//! (docs/benchmarks.md, P3). Hence:
//! * synchronization, memcpy, allocation and NCCL calls (rare and long) are probed all the time
//!   and every call is a row;
//! * launch functions are probed a fraction of the time (`cuda.launch_sampling` of every
//!   `cuda.sampling_period`, at a random phase): their probes are attached and detached, so
//!   outside the on-window they cost nothing. While attached, every launch adds to an in-kernel
//!   log2 histogram per (process, function), and only launches slower than `cuda.slow_launch`
//!   become rows. The histograms go to the `cuda_histograms` table with the share of the window
//!   the probes were attached, and `collector_stats` rows (`kind = 'cuda_sampling'`) say it too.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use causeway_proto::names;
use causeway_proto::table::CudaHistRecord;
use causeway_proto::KernelEvent;
use causeway_proto::KindFields;
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::Link;
use libbpf_rs::MapCore;
use libbpf_rs::MapFlags;
use libbpf_rs::OpenObject;
use libbpf_rs::UprobeMultiOpts;

use super::discovery::FileId;
use super::discovery::FoundFile;
use super::offcpu;
use super::record;
use super::record::read_record;
use super::record::Decoded;
use crate::clock::BootToWall;

#[allow(missing_docs, clippy::all, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/cuda.skel.rs"));
}

use skel::types;
pub use skel::CudaSkel;
use skel::CudaSkelBuilder;

/// What a function does, which decides how it is probed and how its waits are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Kernel or graph launch: frequent and short; duty-cycled, histogram + slow calls.
    Launch,
    /// The host waits for the GPU.
    Sync,
    /// A copy (synchronous ones wait for the GPU too).
    Memcpy,
    /// Allocation or free.
    Alloc,
    /// NCCL collective or point-to-point call.
    Collective,
}

impl Class {
    /// The `event_name` of this class's rows.
    pub fn event_name(self) -> &'static str {
        match self {
            Class::Launch => names::event::CUDA_LAUNCH,
            Class::Sync => names::event::CUDA_SYNC,
            Class::Memcpy => names::event::CUDA_MEMCPY,
            Class::Alloc => names::event::CUDA_ALLOC,
            Class::Collective => names::event::NCCL_COLLECTIVE,
        }
    }
}

/// The probed functions: `enum cw_cuda_func` in bpf/causeway.h, by id (the attach cookie).
pub const FUNCS: &[(u32, &str, Class)] = &[
    (1, "cudaLaunchKernel", Class::Launch),
    (2, "cudaLaunchKernel_ptsz", Class::Launch),
    (3, "cudaGraphLaunch", Class::Launch),
    (4, "cudaMemcpy", Class::Memcpy),
    (5, "cudaMemcpyAsync", Class::Memcpy),
    (6, "cudaStreamSynchronize", Class::Sync),
    (7, "cudaDeviceSynchronize", Class::Sync),
    (8, "cudaEventSynchronize", Class::Sync),
    (9, "cudaMalloc", Class::Alloc),
    (10, "cudaFree", Class::Alloc),
    (11, "cuLaunchKernel", Class::Launch),
    (12, "cuLaunchKernel_ptsz", Class::Launch),
    (13, "cuMemcpy", Class::Memcpy),
    (14, "cuMemcpyAsync", Class::Memcpy),
    (15, "cuMemcpyHtoD_v2", Class::Memcpy),
    (16, "cuMemcpyDtoH_v2", Class::Memcpy),
    (17, "cuMemcpyDtoD_v2", Class::Memcpy),
    (18, "cuMemcpyHtoDAsync_v2", Class::Memcpy),
    (19, "cuMemcpyDtoHAsync_v2", Class::Memcpy),
    (20, "cuCtxSynchronize", Class::Sync),
    (21, "cuStreamSynchronize", Class::Sync),
    (22, "cuMemAlloc_v2", Class::Alloc),
    (23, "cuMemFree_v2", Class::Alloc),
    (24, "ncclAllReduce", Class::Collective),
    (25, "ncclAllGather", Class::Collective),
    (26, "ncclReduceScatter", Class::Collective),
    (27, "ncclBroadcast", Class::Collective),
    (28, "ncclSend", Class::Collective),
    (29, "ncclRecv", Class::Collective),
];

/// Function name and class of an id.
pub fn func(id: u32) -> Option<(&'static str, Class)> {
    FUNCS
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, n, c)| (*n, *c))
}

/// The symbol names discovery looks for.
pub fn symbols() -> Vec<&'static str> {
    FUNCS.iter().map(|(_, n, _)| *n).collect()
}

/// Which library a file is, by name: for reports (`doctor`, logs).
pub fn library_kind(path: &str) -> &'static str {
    let base = path.rsplit('/').next().unwrap_or(path);
    if base.starts_with("libcudart") {
        "CUDA runtime"
    } else if base.starts_with("libcuda.") {
        "CUDA driver"
    } else if base.starts_with("libnccl") {
        "NCCL"
    } else if base.contains(".so") {
        "library with CUDA symbols"
    } else {
        "executable with the CUDA runtime linked statically"
    }
}

/// Sampling settings (config `cuda`).
#[derive(Debug, Clone)]
pub struct Sampling {
    /// Share of each period the launch probes are attached, (0, 1]; 1 = always.
    pub launch_fraction: f64,
    /// Duty-cycle period.
    pub period: Duration,
    /// Launches at least this long become rows.
    pub slow_launch: Duration,
}

/// Loads the CUDA programs with the same filter as the off-CPU set, sharing its maps.
pub fn load<'obj>(
    open_object: &'obj mut MaybeUninit<OpenObject>,
    s: &super::settings::Settings,
    offcpu: &offcpu::OffcpuSkel<'_>,
    sampling: &Sampling,
) -> Result<CudaSkel<'obj>> {
    let mut open = CudaSkelBuilder::default()
        .open(open_object)
        .context("opening the CUDA BPF object")?;
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("rodata is not memory-mapped")?;
    ro.slow_launch_ns = sampling.slow_launch.as_nanos() as u64;
    super::load::write_filter!(&mut *ro, s);
    super::load::share_maps!(&mut open, offcpu);
    open.load()
        .context("loading the CUDA uprobe programs (verifier)")
}

/// Decodes a `cw_cuda_event` record; a launch naming its kernel's host function leaves that
/// address to the stack thread to symbolize.
pub fn decode(data: &[u8], clock: &BootToWall) -> Option<Decoded> {
    let e: types::cw_cuda_event = read_record(data)?;
    let (name, class) = func(e.func)?;
    let common = record::event_of!(data, clock, class.event_name(), e)?;
    let dims = |d: [u32; 3]| format!("{},{},{}", d[0], d[1], d[2]);
    let launch = class == Class::Launch && e.grid != [0, 0, 0];
    let event = KernelEvent {
        detail: KindFields {
            cuda_function: Some(name),
            cuda_stream: Some(e.stream as i64),
            cuda_grid: launch.then(|| dims(e.grid)),
            cuda_block: launch.then(|| dims(e.block)),
            bytes: (e.bytes > 0).then_some(e.bytes as i64),
            ..Default::default()
        }
        .into(),
        exit_code: (e.ret != 0).then_some(e.ret),
        ..common
    };
    Some(match e.kernel_addr {
        0 => Decoded::Event(event),
        addr => Decoded::WithFunction { event, addr },
    })
}

/// A probed file: its always-on links and, for launches, what to attach in each on-window.
struct ProbedFile {
    path: String,
    /// Held open: the probes attach through /proc/self/fd.
    found: FoundFile,
    launches: Vec<(u32, u64)>,
    launch_links: Vec<Link>,
    always: Vec<Link>,
}

/// Drops links off the capture thread: the kernel waits for RCU grace periods when a uprobe
/// link goes away (~0.1 s here), which must not stall the drain. Each link of a batch is dropped
/// on its own thread, at the same time: a return probe also traps at function entry (to hook the
/// return), so the entry and return links must lose their breakpoints together, not one grace
/// period apart. The BPF gates (`launch_on`, `cuda_off`) stop counting at once, so a link that
/// lingers changes no number.
struct Reaper {
    tx: Option<std::sync::mpsc::Sender<Vec<Link>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reaper {
    fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Link>>();
        let handle = std::thread::Builder::new()
            .name("cw-cuda-detach".into())
            .spawn(move || {
                for links in rx {
                    let t = Instant::now();
                    let n = links.len();
                    let droppers: Vec<_> = links
                        .into_iter()
                        .map(|l| {
                            std::thread::Builder::new()
                                .name("cw-cuda-unlink".into())
                                .spawn(move || drop(l))
                        })
                        .collect();
                    for d in droppers.into_iter().flatten() {
                        let _ = d.join();
                    }
                    tracing::debug!(links = n, elapsed = ?t.elapsed(), "CUDA links detached");
                }
            })
            .ok();
        Reaper {
            tx: Some(tx),
            handle,
        }
    }

    fn reap(&self, links: Vec<Link>) {
        if links.is_empty() {
            return;
        }
        // without the thread (it could not start) the links are dropped here, slowly
        if let Some(Err(std::sync::mpsc::SendError(links))) =
            self.tx.as_ref().map(|t| t.send(links))
        {
            drop(links);
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Duty cycle of the launch probes.
struct Duty {
    fraction: f64,
    period: Duration,
    period_start: Instant,
    on_start: Instant,
    on_end: Instant,
    rng: u64,
    /// Attached since (while attached).
    attached_since: Option<Instant>,
    /// Attached time in the current stats window, before `attached_since`.
    attached_in_window: Duration,
}

impl Duty {
    fn new(fraction: f64, period: Duration) -> Self {
        let now = Instant::now();
        let seed = crate::clock::realtime_ns() as u64 ^ ((std::process::id() as u64) << 32) | 1;
        let mut d = Duty {
            fraction,
            period,
            period_start: now,
            on_start: now,
            on_end: now,
            rng: seed,
            attached_since: None,
            attached_in_window: Duration::ZERO,
        };
        d.plan();
        d
    }

    fn always(&self) -> bool {
        self.fraction >= 1.0
    }

    /// Picks this period's on-window at a random phase (so it cannot lock onto a periodic load).
    fn plan(&mut self) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let on = self.period.mul_f64(self.fraction);
        let slack = self.period.saturating_sub(on);
        let phase = slack.mul_f64((self.rng % 10_000) as f64 / 10_000.0);
        self.on_start = self.period_start + phase;
        self.on_end = self.on_start + on;
    }

    /// When `want` may answer differently next: the on-window's start or end, or the period's
    /// end (where the next on-window is planned).
    fn next_change(&self, now: Instant) -> Instant {
        if now < self.on_start {
            self.on_start
        } else if now < self.on_end {
            self.on_end
        } else {
            self.period_start + self.period
        }
    }

    /// Whether the launch probes should be attached at `now`.
    fn want(&mut self, now: Instant) -> bool {
        if self.always() {
            return true;
        }
        while now >= self.period_start + self.period {
            self.period_start += self.period;
            self.plan();
        }
        now >= self.on_start && now < self.on_end
    }

    /// The attached share of the window that ends now, and a new window begins.
    fn take_fraction(&mut self, window: Duration, now: Instant) -> f64 {
        if self.always() {
            return 1.0;
        }
        let mut t = self.attached_in_window;
        if let Some(s) = self.attached_since {
            t += now - s;
            self.attached_since = Some(now);
        }
        self.attached_in_window = Duration::ZERO;
        if window.is_zero() {
            return 0.0;
        }
        (t.as_secs_f64() / window.as_secs_f64()).min(1.0)
    }
}

/// How a window's launches were sampled.
#[derive(Debug, Clone, Default)]
pub struct WindowSampling {
    /// Launches counted while their probes were attached.
    pub sampled_launches: i64,
    /// The sampling in words, for `collector_stats.detail`.
    pub detail: String,
}

/// Counts per (pid, function) as last read, to turn cumulative maps into window deltas.
type HistSnapshot = HashMap<(u32, u32), (u64, u64, Vec<u64>)>;

/// The running CUDA probes: files, links, duty cycle, histogram windows.
pub struct CudaProbes<'obj> {
    skel: CudaSkel<'obj>,
    reaper: Reaper,
    files: HashMap<FileId, ProbedFile>,
    duty: Duty,
    launches_attached: bool,
    prev_hist: HistSnapshot,
    window_start: Instant,
    window_start_ns: i64,
    /// Process names by pid, for histogram rows.
    process_names: HashMap<u32, String>,
    /// What was attached, for the exit report and `doctor`.
    pub probed: Vec<String>,
}

impl<'obj> CudaProbes<'obj> {
    /// Wraps a loaded skeleton.
    pub fn new(skel: CudaSkel<'obj>, sampling: &Sampling) -> Self {
        let fraction = sampling.launch_fraction.clamp(0.0, 1.0);
        let duty = Duty::new(fraction, sampling.period);
        let mut probes = CudaProbes {
            skel,
            reaper: Reaper::new(),
            files: HashMap::new(),
            // always-on launch probes are attached with their file; duty-cycled ones by tick()
            launches_attached: duty.always(),
            duty,
            prev_hist: HashMap::new(),
            window_start: Instant::now(),
            window_start_ns: crate::clock::realtime_ns(),
            process_names: HashMap::new(),
            probed: Vec::new(),
        };
        probes.set_gate(probes.launches_attached, false);
        probes
    }

    /// One uprobe_multi link over these (function id, file offset) pairs of a file.
    fn attach_multi(
        &self,
        host_path: &std::path::Path,
        funcs: &[(u32, u64)],
        ret: bool,
    ) -> Result<Link> {
        let prog = if ret {
            &self.skel.progs.handle__cuda_return
        } else {
            &self.skel.progs.handle__cuda_enter
        };
        let opts = UprobeMultiOpts {
            offsets: funcs.iter().map(|(_, off)| *off as usize).collect(),
            cookies: funcs.iter().map(|(id, _)| *id as u64).collect(),
            retprobe: ret,
            ..Default::default()
        };
        prog.attach_uprobe_multi_with_opts(-1, host_path, "", opts)
            .context("uprobe_multi link (needs Linux 6.6+)")
    }

    /// Entry and return links over `funcs`. The return link is attached first, so an entry
    /// never misses its return (a return without an entry is counted and dropped).
    fn attach_pair(&self, host_path: &std::path::Path, funcs: &[(u32, u64)]) -> Result<Vec<Link>> {
        if funcs.is_empty() {
            return Ok(Vec::new());
        }
        let ret = self.attach_multi(host_path, funcs, true)?;
        let entry = self.attach_multi(host_path, funcs, false)?;
        Ok(vec![ret, entry])
    }

    /// Probes a file discovery found, when it defines CUDA/NCCL functions (once per file).
    pub fn add_file(&mut self, f: &FoundFile) -> Result<()> {
        if self.files.contains_key(&f.id) {
            return Ok(());
        }
        let mut always = Vec::new();
        let mut launches = Vec::new();
        let mut names = Vec::new();
        for (id, name, class) in FUNCS {
            let Some(off) = f.symbols.get(*name) else {
                continue;
            };
            names.push(*name);
            if *class == Class::Launch {
                launches.push((*id, *off));
            } else {
                always.push((*id, *off));
            }
        }
        if names.is_empty() {
            return Ok(());
        }
        let always = self
            .attach_pair(&f.probe_path(), &always)
            .with_context(|| format!("attaching the CUDA uprobes in {}", f.path))?;
        let shown = format!(
            "{} ({}: {})",
            f.path,
            library_kind(&f.path),
            names.join(", ")
        );
        tracing::info!(file = %f.path, kind = library_kind(&f.path), functions = names.len(), "CUDA: probing");
        self.probed.push(shown);
        let mut pf = ProbedFile {
            path: f.path.clone(),
            found: f.clone(),
            launches,
            launch_links: Vec::new(),
            always,
        };
        if self.launches_attached {
            self.attach_launches(&mut pf);
        }
        self.files.insert(f.id.clone(), pf);
        Ok(())
    }

    fn attach_launches(&self, pf: &mut ProbedFile) {
        match self.attach_pair(&pf.found.probe_path(), &pf.launches) {
            Ok(links) => pf.launch_links = links,
            Err(e) => tracing::warn!("CUDA launch probes in {}: {e:#}", pf.path),
        }
    }

    fn set_gate(&mut self, launch_on: bool, cuda_off: bool) {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.launch_on = launch_on as u32;
            bss.cuda_off = cuda_off as u32;
        }
    }

    /// How long until `tick` has work to do (the duty cycle switches the launch probes on or
    /// off); `Duration::MAX` when they are attached all the time.
    pub fn due_in(&self) -> Duration {
        if self.duty.always() {
            return Duration::MAX;
        }
        let now = Instant::now();
        self.duty.next_change(now).saturating_duration_since(now)
    }

    /// Attaches or detaches the launch probes as the duty cycle says. Called often (every few
    /// ms) from the capture loop.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let want = self.duty.want(now);
        if want == self.launches_attached {
            return;
        }
        let mut files = std::mem::take(&mut self.files);
        if want {
            for pf in files.values_mut() {
                self.attach_launches(pf);
            }
            self.set_gate(true, false);
            self.duty.attached_since = Some(Instant::now());
        } else {
            self.set_gate(false, false);
            if let Some(s) = self.duty.attached_since.take() {
                self.duty.attached_in_window += now - s;
            }
            for pf in files.values_mut() {
                self.reaper.reap(std::mem::take(&mut pf.launch_links));
            }
        }
        self.files = files;
        self.launches_attached = want;
    }

    /// Stops all counting at once and detaches everything in the background (before the final
    /// drain).
    pub fn detach(&mut self) {
        self.set_gate(false, true);
        if let Some(s) = self.duty.attached_since.take() {
            self.duty.attached_in_window += Instant::now() - s;
        }
        self.launches_attached = false;
        for (_, pf) in self.files.drain() {
            self.reaper.reap(pf.launch_links);
            self.reaper.reap(pf.always);
        }
    }

    /// The process name histogram rows carry: the leader's comm, read once per pid while the
    /// process lives (many processes only ever make fast launches, which are no event rows).
    fn process_name(&mut self, pid: u32) -> String {
        self.process_names
            .entry(pid)
            .or_insert_with(|| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default()
            })
            .clone()
    }

    /// Histogram rows of the window that ends now, with what was sampled and how.
    pub fn take_window(&mut self) -> Result<(Vec<CudaHistRecord>, WindowSampling)> {
        let now = Instant::now();
        let now_ns = crate::clock::realtime_ns();
        let window = now - self.window_start;
        let launch_fraction = self.duty.take_fraction(window, now);
        let cur = self.read_histograms()?;
        let mut rows = Vec::new();
        let mut sampled_launches = 0i64;
        for (&(pid, fid), (count, sum, buckets)) in &cur {
            let Some((name, class)) = func(fid) else {
                continue;
            };
            let (pc, ps, pb) = match self.prev_hist.get(&(pid, fid)) {
                // a smaller count means the LRU map evicted and recreated the entry
                Some((pc, ps, pb)) if pc <= count => (*pc, *ps, pb.clone()),
                _ => (0, 0, Vec::new()),
            };
            if *count == pc {
                continue;
            }
            let fraction = if class == Class::Launch {
                launch_fraction
            } else {
                1.0
            };
            let mut first = true;
            for (b, n) in buckets.iter().enumerate() {
                let d = n.saturating_sub(pb.get(b).copied().unwrap_or(0)) as i64;
                if d == 0 {
                    continue;
                }
                if class == Class::Launch {
                    sampled_launches += d;
                }
                rows.push(CudaHistRecord {
                    time_unix_nano: self.window_start_ns,
                    interval_ns: now_ns - self.window_start_ns,
                    pid: pid as i32,
                    process_name: self.process_name(pid),
                    cuda_function: name,
                    event_name: class.event_name(),
                    bucket_low_ns: if b == 0 { 0 } else { 1i64 << b },
                    bucket_high_ns: 1i64 << (b + 1),
                    calls: d,
                    sum_ns: if first {
                        sum.saturating_sub(ps) as i64
                    } else {
                        0
                    },
                    sampled_fraction: fraction,
                });
                first = false;
            }
        }
        let sampling = WindowSampling {
            sampled_launches,
            detail: if self.duty.always() {
                "every CUDA/NCCL call probed (launch_sampling 1.0)".to_string()
            } else {
                format!(
                    "launch probes attached {:.1}% of the window ({:?} of every {:?}, random phase); \
                     estimate launches as calls / sampled_fraction in cuda_histograms; \
                     sync, memcpy, alloc and NCCL calls: every call",
                    launch_fraction * 100.0,
                    self.duty.period.mul_f64(self.duty.fraction),
                    self.duty.period
                )
            },
        };
        // forget processes whose histograms are gone (a recycled pid gets its own name)
        self.process_names
            .retain(|p, _| cur.keys().any(|(q, _)| q == p));
        self.prev_hist = cur;
        self.window_start = now;
        self.window_start_ns = now_ns;
        Ok((rows, sampling))
    }

    fn read_histograms(&self) -> Result<HistSnapshot> {
        let map = &self.skel.maps.cuda_hists;
        let mut out = HistSnapshot::new();
        for key in map.keys() {
            let Some(k) = read_record::<types::cw_cuda_hist_key>(&key) else {
                continue;
            };
            let Some(per_cpu) = map
                .lookup_percpu(&key, MapFlags::ANY)
                .context("reading CUDA histograms")?
            else {
                continue;
            };
            let mut total = (
                0u64,
                0u64,
                vec![0u64; types::cw_cuda_hist::default().buckets.len()],
            );
            for v in per_cpu {
                let Some(h) = read_record::<types::cw_cuda_hist>(&v) else {
                    continue;
                };
                total.0 += h.count;
                total.1 += h.sum_ns;
                for (t, b) in total.2.iter_mut().zip(h.buckets.iter()) {
                    *t += b;
                }
            }
            out.insert((k.tgid, k.func), total);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_table_is_complete_and_unique() {
        for id in 1..30u32 {
            assert!(func(id).is_some(), "id {id} missing");
        }
        assert!(func(30).is_none() && func(0).is_none());
        let mut names = symbols();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FUNCS.len());
    }

    #[test]
    fn cuda_record_layout_and_decoding() {
        assert_eq!(
            std::mem::size_of::<types::cw_cuda_event>(),
            48 + 6 * 8 + 24 + 8 + 32
        );
        let mut e = types::cw_cuda_event::default();
        e.hdr.r#type = crate::probes::wire::cw_event_type::CW_EV_CUDA.0;
        e.hdr.pid = 7;
        e.hdr.tid = 9;
        e.func = 1;
        e.grid = [128, 1, 1];
        e.block = [256, 1, 1];
        e.stream = 0x55;
        e.duration_ns = 2_100_000;
        let ev = crate::probes::record::decode_struct(&e, "CUDA");
        assert_eq!(ev.event_name, "cuda.launch");
        assert_eq!(ev.cuda_function, Some("cudaLaunchKernel"));
        assert_eq!(
            (ev.cuda_grid.as_deref(), ev.cuda_block.as_deref()),
            (Some("128,1,1"), Some("256,1,1"))
        );
        assert_eq!(
            (ev.cuda_stream, ev.bytes, ev.exit_code),
            (Some(0x55), None, None)
        );
        e.func = 99;
        // SAFETY: reading the bytes of a plain C struct we own.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &e as *const _ as *const u8,
                std::mem::size_of::<types::cw_cuda_event>(),
            )
        };
        assert!(
            crate::probes::decode(bytes, &BootToWall::sample()).is_none(),
            "unknown function ids are undecodable"
        );
    }

    #[test]
    fn duty_cycle_is_on_for_its_fraction_at_a_random_phase() {
        let mut d = Duty::new(0.25, Duration::from_millis(100));
        let start = d.period_start;
        let mut on = 0;
        for i in 0..1000u64 {
            if d.want(start + Duration::from_micros(i * 100)) {
                on += 1;
            }
        }
        // 10 periods of 100 ms sampled every 0.1 ms: 25 ms on in each
        assert!((240..=260).contains(&on), "on {on} of 1000 samples");
        assert!(Duty::new(1.0, Duration::from_secs(1)).want(Instant::now()));
    }

    #[test]
    fn library_kinds_by_name() {
        assert_eq!(
            library_kind("/x/nvidia/cu13/lib/libcudart.so.13"),
            "CUDA runtime"
        );
        assert_eq!(
            library_kind("/usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06"),
            "CUDA driver"
        );
        assert_eq!(library_kind("/x/libnccl.so.2"), "NCCL");
        assert_eq!(
            library_kind("/opt/app/bin/train"),
            "executable with the CUDA runtime linked statically"
        );
    }
}
