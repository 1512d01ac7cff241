//! The probe sets a run loads: the off-CPU set (required; it owns the shared filter, ring buffer
//! and counters) and the sets that add to it (block I/O, kernel locks, TCP retransmits, trace
//! context, CUDA), each of which is left out, with a warning, when it cannot load or attach on
//! this kernel. A set that fails part-way is dropped whole: its links detach with it.

use std::mem::MaybeUninit;
use std::path::Path;
use std::path::PathBuf;

use anyhow::Result;
use causeway_proto::table::CudaHistRecord;
use libbpf_rs::OpenObject;

use crate::config::Config;
use crate::probes::blockio;
use crate::probes::blockio::BlockioSkel;
use crate::probes::cuda;
use crate::probes::discovery;
use crate::probes::kernel_lock;
use crate::probes::kernel_lock::KernelLockSkel;
use crate::probes::offcpu;
use crate::probes::offcpu::OffcpuSkel;
use crate::probes::settings::Settings;
use crate::probes::tcp;
use crate::probes::tcp::TcpSkel;
use crate::probes::tracectx;
use crate::probes::tracectx::TracectxSkel;

/// Where the skeletons' objects live while the skeletons do.
pub(super) struct Objects {
    offcpu: MaybeUninit<OpenObject>,
    block: MaybeUninit<OpenObject>,
    kernel_lock: MaybeUninit<OpenObject>,
    tcp: MaybeUninit<OpenObject>,
    ctx: MaybeUninit<OpenObject>,
    cuda: MaybeUninit<OpenObject>,
}

impl Objects {
    pub(super) fn new() -> Objects {
        Objects {
            offcpu: MaybeUninit::uninit(),
            block: MaybeUninit::uninit(),
            kernel_lock: MaybeUninit::uninit(),
            tcp: MaybeUninit::uninit(),
            ctx: MaybeUninit::uninit(),
            cuda: MaybeUninit::uninit(),
        }
    }
}

/// The loaded and attached probe sets, and the discovery of libraries to probe.
pub(super) struct ProbeSets<'obj> {
    /// The off-CPU set: the ring buffer and counters every set shares.
    pub(super) offcpu: OffcpuSkel<'obj>,
    block: Option<BlockioSkel<'obj>>,
    kernel_lock: Option<KernelLockSkel<'obj>>,
    tcp: Option<TcpSkel<'obj>>,
    ctx: Option<TracectxSkel<'obj>>,
    /// The CUDA/NCCL uprobes and their launch duty cycle.
    pub(super) cuda: Option<cuda::CudaProbes<'obj>>,
    discovery: tracectx::Discovery,
    scanner: discovery::Scanner,
}

/// A probe set that adds to the capture: when it cannot load or attach (no tracefs, an older
/// kernel), capture goes on without it and says so.
fn optional<T>(what: &str, load_and_attach: impl FnOnce() -> Result<T>) -> Option<T> {
    load_and_attach()
        .map_err(|e| tracing::warn!("{what} are not captured: {e:#}"))
        .ok()
}

/// The settings every set is loaded with, from the configuration.
pub(super) fn settings(cfg: &Config) -> Result<Settings> {
    let cgroup = cfg
        .cgroup
        .as_deref()
        .map(crate::probes::cgroup::resolve)
        .transpose()?;
    Ok(Settings {
        min_off_cpu: cfg.thresholds.min_off_cpu,
        min_runq: cfg.thresholds.min_runq,
        stack_threshold: cfg.thresholds.stack,
        pids: cfg.pids.clone(),
        follow_children: cfg.follow_children,
        cgroup,
        ring_buffer_bytes: (cfg.ring_buffer.size_mib.next_power_of_two()) * 1024 * 1024,
        min_block: cfg.thresholds.min_block_io,
        obi_map: if cfg.trace_context.enabled {
            cfg.trace_context
                .obi_map
                .as_ref()
                .map(PathBuf::from)
                .or_else(tracectx::find_obi_map)
        } else {
            None
        },
        boot_clock: false, // CAUSEWAY_BOOT_CLOCK=1 still applies
    })
}

impl<'obj> ProbeSets<'obj> {
    /// Loads and attaches every set the configuration asks for, then probes the libraries it
    /// names and those a first scan of /proc finds.
    pub(super) fn load(objects: &'obj mut Objects, cfg: &Config, s: &Settings) -> Result<Self> {
        let mut offcpu = offcpu::load(&mut objects.offcpu, s)?;
        offcpu::attach(&mut offcpu)?;
        let block = optional("block I/O", || {
            let mut b = blockio::load(&mut objects.block, s, &offcpu)?;
            blockio::attach(&mut b)?;
            Ok(b)
        });
        let kernel_lock = optional("kernel lock waits", || {
            let mut k = kernel_lock::load(&mut objects.kernel_lock, s, &offcpu)?;
            kernel_lock::attach(&mut k)?;
            Ok(k)
        });
        let tcp = optional("TCP retransmits", || {
            let mut t = tcp::load(&mut objects.tcp, s, &offcpu)?;
            tcp::attach(&mut t)?;
            Ok(t)
        });
        // trace context: a uprobe on every writer copy, found now and by periodic scans
        let ctx = match cfg.trace_context.enabled {
            true => tracectx::load(&mut objects.ctx, s, &offcpu)
                .map_err(|e| tracing::warn!("events are not tagged with trace context: {e:#}"))
                .ok(),
            false => None,
        };
        // CUDA runtime/driver and NCCL: uprobes on every copy discovery finds
        let sampling = cuda::Sampling {
            launch_fraction: cfg.cuda.launch_sampling,
            period: cfg.cuda.sampling_period,
            slow_launch: cfg.cuda.slow_launch,
        };
        let cuda = match cfg.cuda.enabled {
            true => optional("CUDA calls", || {
                let skel = cuda::load(&mut objects.cuda, s, &offcpu, &sampling)?;
                Ok(cuda::CudaProbes::new(skel, &sampling))
            }),
            false => None,
        };
        // one pass over /proc finds both the trace-context writer and the CUDA libraries
        let mut wanted = Vec::new();
        if ctx.is_some() {
            wanted.push(tracectx::PROBE_SYMBOL);
        }
        if cuda.is_some() {
            wanted.extend(cuda::symbols());
        }
        let mut sets = ProbeSets {
            offcpu,
            block,
            kernel_lock,
            tcp,
            ctx,
            cuda,
            discovery: tracectx::Discovery::default(),
            scanner: discovery::Scanner::new(wanted),
        };
        sets.probe_named_libraries(cfg);
        sets.scan();
        Ok(sets)
    }

    /// The trace-context writers and CUDA libraries the configuration names.
    fn probe_named_libraries(&mut self, cfg: &Config) {
        if let Some(cs) = &self.ctx {
            for lib in &cfg.trace_context.libraries {
                if let Err(e) = self.discovery.attach_path(cs, Path::new(lib)) {
                    tracing::warn!("trace_context.libraries: {e:#}");
                }
            }
        }
        if let Some(cp) = self.cuda.as_mut() {
            for lib in &cfg.cuda.libraries {
                let added =
                    discovery::examine_path(Path::new(lib), &cuda::symbols()).and_then(|f| {
                        if f.symbols.is_empty() {
                            anyhow::bail!("{lib} defines no CUDA/NCCL function")
                        } else {
                            cp.add_file(&f)
                        }
                    });
                if let Err(e) = added {
                    tracing::warn!("cuda.libraries: {e:#}");
                }
            }
        }
    }

    /// Probes the writers and libraries that processes mapped since the last scan.
    pub(super) fn scan(&mut self) {
        for f in self.scanner.scan() {
            if let Some(cs) = &self.ctx {
                if let Err(e) = self.discovery.attach(cs, &f) {
                    tracing::warn!("{e:#}");
                }
            }
            if let Some(cp) = self.cuda.as_mut() {
                if let Err(e) = cp.add_file(&f) {
                    tracing::warn!("{e:#}");
                }
            }
        }
    }

    /// Detaches every program, so a last drain takes every record the counters count.
    pub(super) fn detach(&mut self) {
        self.offcpu.links = Default::default();
        if let Some(b) = self.block.as_mut() {
            b.links = Default::default();
        }
        if let Some(t) = self.tcp.as_mut() {
            t.links = Default::default();
        }
        if let Some(k) = self.kernel_lock.as_mut() {
            k.links = Default::default();
        }
        if let Some(cp) = self.cuda.as_mut() {
            cp.detach();
        }
    }

    /// The CUDA window's histograms and sampling, when CUDA is probed.
    pub(super) fn take_cuda_window(
        &mut self,
    ) -> Option<Result<(Vec<CudaHistRecord>, cuda::WindowSampling)>> {
        self.cuda.as_mut().map(|cp| cp.take_window())
    }

    /// The files probed for trace context, and for CUDA/NCCL.
    pub(super) fn probed(&mut self) -> (Vec<String>, Vec<String>) {
        let cuda = self
            .cuda
            .as_mut()
            .map(|c| std::mem::take(&mut c.probed))
            .unwrap_or_default();
        (std::mem::take(&mut self.discovery.probed), cuda)
    }
}
