//! causeway-testkit: what only the tests and the benchmark harness use, kept out of the shipped
//! collector — workloads with known answers, synthetic stores written through the real sink,
//! and the BPF and ingest benchmarks.

mod bench_bpf;
mod bench_ingest;
mod synth;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_collector::run;
use clap::Parser;
use clap::Subcommand;

#[derive(Parser)]
#[command(
    name = "causeway-testkit",
    version,
    about = "Workloads, synthetic stores and benchmarks for causeway's tests and harness (not shipped)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Built-in workloads with known answers.
    #[command(subcommand)]
    Workload(workload::Workload),
    /// Write a synthetic store through the real Parquet sink.
    Synth {
        /// Target store.
        #[arg(long)]
        store: String,
        /// Seconds of data.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        /// Events per second.
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        /// pid of the hot process.
        #[arg(long, default_value_t = 4242)]
        hot_pid: i32,
        /// Start, Unix seconds (default 2026-11-27T10:00:00Z).
        #[arg(long, default_value_t = 1_795_773_600)]
        start: i64,
        /// Hosts (synth-1 … synth-N), each with `rate` events/s of its own.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        hosts: u32,
        /// Number of the first host (to grow a fleet store in steps).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        first_host: u32,
    },
    /// User-space ingest throughput on one core: wire records → decode → enrich → Parquet.
    BenchIngest {
        /// Records to push through.
        #[arg(long, default_value_t = 2_000_000)]
        events: usize,
        /// CPU to pin to.
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Keep the Parquet files written, in this directory.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// BPF ns per sched_switch event, against an empty program on the same hook.
    BenchBpf {
        /// Seconds of pipe ping-pong to measure.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A bare (empty) uprobe on a symbol until SIGINT: the per-call baseline of the CUDA probes
    /// (tests/perf/bench_cuda.py).
    BareUprobe {
        /// The library or binary.
        #[arg(long)]
        binary: PathBuf,
        /// The function.
        #[arg(long)]
        symbol: String,
        /// Add a return probe (entry + return, like the CUDA probes).
        #[arg(long = "return")]
        with_return: bool,
        /// Created once attached.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Empty sched_switch and sched_waking programs until SIGINT: the floor of any tracer on
    /// the hooks the off-CPU probe needs (tests/perf/bench_all.py P2a).
    BareSched {
        /// Created once attached.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    causeway_collector::cli::init_logging();
    let result = match Cli::parse().command {
        Command::Workload(w) => workload::run(w),
        Command::Synth {
            store,
            seconds,
            rate,
            hot_pid,
            start,
            hosts,
            first_host,
        } => {
            let hosts = first_host..=first_host.saturating_add(hosts - 1);
            synth::run(&store, seconds, rate, hot_pid, start * 1_000_000_000, hosts)
        }
        Command::BenchIngest {
            events,
            cpu,
            json,
            keep,
        } => bench_ingest::run(events, cpu, json, keep),
        Command::BenchBpf { secs, json } => bench_bpf::run(secs, json),
        Command::BareUprobe {
            binary,
            symbol,
            with_return,
            ready_file,
        } => {
            run::install_signal_handlers();
            bench_bpf::bare_uprobe(&binary, &symbol, with_return, ready_file.as_deref())
        }
        Command::BareSched { ready_file } => {
            run::install_signal_handlers();
            bench_bpf::bare_sched(ready_file.as_deref())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway-testkit: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
