//! causeway-collector: captures why threads are off CPU (state, waker, run-queue delay) with
//! eBPF and writes the records as Parquet to object storage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::Subcommand;

use causeway_collector::cli;
use causeway_collector::clock;
use causeway_collector::config;
use causeway_collector::config::Config;
use causeway_collector::config::UsageError;
use causeway_collector::demo;
use causeway_collector::doctor;
use causeway_collector::probes;
use causeway_collector::run;

#[derive(Parser)]
#[command(
    name = "causeway-collector",
    version,
    about = "Capture why threads wait: off-CPU intervals with state and waker, run-queue delay and process lifecycle, via eBPF, into Parquet on object storage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct RunArgs {
    /// YAML config file (see config/collector.example.yaml); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Trace only this process (tgid) and its children; repeat for several.
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pids: Vec<u32>,
    /// Trace only tasks in this cgroup v2 directory (and below).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<String>,
    /// Stop after this long (e.g. 30s); default: until SIGINT/SIGTERM.
    #[arg(long, value_parser = cli::duration)]
    duration: Option<Duration>,
    /// Object store: file:///dir, a directory, or s3://bucket/prefix [default: file://./data].
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// OTLP endpoint for the log records, e.g. http://127.0.0.1:4317 [default: none].
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// OTLP transport: grpc or http/protobuf [default: grpc].
    #[arg(long, value_name = "PROTOCOL", value_parser = ["grpc", "http/protobuf"])]
    otlp_protocol: Option<String>,
    /// Probe this trace-context writer (libcauseway_ctx.so or a binary) from the start; repeatable.
    #[arg(long = "trace-context-lib", value_name = "PATH")]
    trace_context_libs: Vec<String>,
    /// Probe this CUDA runtime/driver/NCCL library (or a binary with cudart linked in) from the
    /// start; repeatable (discovery finds the others through /proc/PID/maps).
    #[arg(long = "cuda-lib", value_name = "PATH")]
    cuda_libs: Vec<String>,
    /// Share of time the CUDA launch probes are attached, within (0, 1]; 1 counts every launch
    /// [default: 0.1].
    #[arg(long, value_name = "FRACTION")]
    cuda_launch_sampling: Option<f64>,
    /// Duty-cycle period of the CUDA launch probes [default: 10s].
    #[arg(long, value_parser = cli::duration)]
    cuda_sampling_period: Option<std::time::Duration>,
    /// Launches at least this long are recorded one by one [default: 100us].
    #[arg(long, value_parser = cli::duration)]
    cuda_slow_launch: Option<std::time::Duration>,
    /// OBI's pinned traces_ctx_v1 map [default: looked up under /sys/fs/bpf].
    #[arg(long, value_name = "PATH")]
    obi_map: Option<String>,
    /// Host partition name [default: this machine's host name].
    #[arg(long)]
    host: Option<String>,
    /// Minimum off-CPU interval recorded [default: 1ms].
    #[arg(long, value_parser = cli::duration)]
    min_off_cpu: Option<Duration>,
    /// Minimum run-queue wait recorded [default: 100us].
    #[arg(long, value_parser = cli::duration)]
    min_runq: Option<Duration>,
    /// Off-CPU intervals at least this long carry stacks; 0 disables [default: 10ms].
    #[arg(long, value_parser = cli::duration)]
    stack_threshold: Option<Duration>,
    /// Write a Parquet file at least this often [default: 10s].
    #[arg(long, value_parser = cli::duration)]
    flush_interval: Option<Duration>,
    /// ... or once this many rows are buffered [default: 200000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flush_rows: Option<u64>,
    /// Above this many events/s, sample and count what was shed; 0: no limit [default: 50000].
    #[arg(long)]
    max_events_per_second: Option<u64>,
    /// Shift this collector's view of UTC by this many ms (tests: one machine playing hosts
    /// whose clocks disagree).
    #[arg(long, hide = true, allow_hyphen_values = true, value_name = "MS")]
    simulate_clock_skew_ms: Option<i64>,
    /// Create this file (containing our pid) once the probes are attached.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Capture until SIGINT/SIGTERM or --duration, then flush everything.
    Run(RunArgs),
    /// Report what this kernel and these privileges allow, and load the probes once.
    Doctor,
    /// Record a built-in workload (a thread sleeps holding a mutex another thread waits on) and
    /// print the waiter's off-CPU time and its waker.
    Demo {
        /// Object store for the recording.
        #[arg(long, default_value = "file://./data")]
        store: String,
        /// How long the holder sleeps with the mutex held.
        #[arg(long, default_value = "200ms", value_parser = cli::duration)]
        hold: Duration,
    },
    /// The demo's workload (the demo runs it as its child).
    #[command(hide = true)]
    DemoWorkload {
        /// How long the holder sleeps with the mutex held.
        #[arg(long, default_value = "200ms", value_parser = cli::duration)]
        hold: Duration,
        /// Print {"ready":PID} and wait for a line on stdin first.
        #[arg(long)]
        wait_stdin: bool,
    },
}

fn config_for(args: &RunArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if !args.pids.is_empty() {
        cfg.pids = args.pids.clone();
    }
    macro_rules! set {
        ($field:expr, $value:expr) => {
            if let Some(v) = $value.clone() {
                $field = v;
            }
        };
    }
    set!(cfg.store, args.store);
    set!(cfg.host, args.host);
    set!(cfg.thresholds.min_off_cpu, args.min_off_cpu);
    set!(cfg.thresholds.min_runq, args.min_runq);
    set!(cfg.thresholds.stack, args.stack_threshold);
    set!(cfg.storage.flush_interval, args.flush_interval);
    set!(
        cfg.thresholds.max_events_per_second,
        args.max_events_per_second
    );
    if let Some(r) = args.flush_rows {
        cfg.storage.flush_rows = r as usize;
    }
    if args.cgroup.is_some() {
        cfg.cgroup = args.cgroup.clone();
    }
    if args.duration.is_some() {
        cfg.duration = args.duration;
    }
    if args.otlp_endpoint.is_some() {
        cfg.otlp_endpoint = args.otlp_endpoint.clone();
    }
    match args.otlp_protocol.as_deref() {
        Some("grpc") => cfg.otlp.protocol = config::OtlpProtocol::Grpc,
        Some("http/protobuf") => cfg.otlp.protocol = config::OtlpProtocol::HttpProtobuf,
        _ => {}
    }
    cfg.trace_context
        .libraries
        .extend(args.trace_context_libs.iter().cloned());
    cfg.cuda.libraries.extend(args.cuda_libs.iter().cloned());
    if let Some(f) = args.cuda_launch_sampling {
        cfg.cuda.launch_sampling = f;
    }
    if let Some(d) = args.cuda_sampling_period {
        cfg.cuda.sampling_period = d;
    }
    if let Some(d) = args.cuda_slow_launch {
        cfg.cuda.slow_launch = d;
    }
    if args.obi_map.is_some() {
        cfg.trace_context.obi_map = args.obi_map.clone();
    }
    cfg.validate().map_err(|e| anyhow::anyhow!(UsageError(e)))?;
    causeway_store::StoreLocation::parse(&cfg.store)
        .map_err(|e| anyhow::anyhow!(UsageError(format!("invalid `store`: {e:#}"))))?;
    if let Some(cg) = &cfg.cgroup {
        probes::cgroup::resolve(cg)
            .map_err(|e| anyhow::anyhow!(UsageError(format!("invalid `cgroup`: {e:#}"))))?;
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => config_for(&args).and_then(|cfg| {
            run::install_signal_handlers();
            if let Some(ms) = args.simulate_clock_skew_ms {
                tracing::warn!(ms, "simulating a clock {ms} ms off (every UTC time this collector writes is shifted)");
                clock::simulate_skew(ms * 1_000_000);
            }
            let summary = run::run(
                &cfg,
                run::RunOptions { ready_file: args.ready_file.clone(), ..Default::default() },
            )?;
            eprint!("{}", summary.report());
            Ok(())
        }),
        Command::Doctor => doctor::run(),
        Command::Demo { store, hold } => {
            run::install_signal_handlers();
            let cfg = Config { store, ..Config::default() };
            causeway_store::StoreLocation::parse(&cfg.store)
                .map_err(|e| anyhow::anyhow!(UsageError(format!("invalid --store: {e:#}"))))
                .and_then(|_| demo::run(cfg, hold))
        }
        Command::DemoWorkload { hold, wait_stdin } => demo::mutex_workload(hold, wait_stdin),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some();
            eprintln!("causeway-collector: error: {e:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
