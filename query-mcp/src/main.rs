//! causeway-query: DataFusion over causeway's object storage, as SQL, a diagnosis command and a
//! read-only MCP server (stdio or Streamable HTTP). `sql`, `diagnose` and the MCP tools share one
//! engine and one code path per analysis.

/// Parquet decoding allocates and frees large page buffers and zstd contexts per column chunk,
/// where glibc's malloc spends much of a tool call in its own bookkeeping.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod analysis;
mod answer;
mod bench;
mod config;
mod engine;
mod error;
mod mcp;
mod pruned;
mod spans;
mod window_cache;
mod window_table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use clap::Subcommand;
use clap::ValueEnum;
use rmcp::ServiceExt;

use crate::analysis::report::Report;
use crate::config::Config;
use crate::engine::local::LocalEngine;
use crate::engine::Engine;
use crate::error::QueryError;

#[derive(Parser)]
#[command(
    name = "causeway-query",
    version,
    about = "Query causeway's kernel records: SQL, diagnoses, and a read-only MCP server for agents."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// Run one read-only SQL statement (SELECT/WITH) over kernel_events, stacks, collector_stats, cuda_histograms, app_spans.
    Sql {
        /// The query.
        query: String,
        /// Object store: file:///dir, a directory, or s3://bucket/prefix.
        #[arg(long, default_value = "file://./data", value_name = "URL")]
        store: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Serve the MCP tools over stdio or Streamable HTTP.
    Serve {
        /// Object store [default: the config's, else file://./data].
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Speak MCP on stdin/stdout.
        #[arg(long, conflicts_with = "http", required_unless_present = "http")]
        stdio: bool,
        /// Serve Streamable HTTP at ADDR (e.g. 127.0.0.1:8700); needs a bearer token.
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// YAML config (see config/query.example.yaml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Latency of each tool's analysis on a store, N runs on one warm engine (JSON).
    #[command(hide = true)]
    Bench {
        /// Object store.
        #[arg(long)]
        store: String,
        /// The process to analyse.
        #[arg(long)]
        pid: i64,
        /// Runs per tool.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Analyse the process on this host only (a fleet store); also times a fleet-wide scan.
        #[arg(long)]
        host: Option<String>,
        /// Also time this statement (repeatable); {pid}, {start} and {end} (the bench's 60 s
        /// window, ns) are filled in.
        #[arg(long = "sql")]
        statements: Vec<String>,
        /// Time only this tool (repeatable; resolve_causal_chain, query_off_cpu_events,
        /// run_sql_window_waker_p99; sql: only the --sql statements): a profile of one tool's work.
        #[arg(long = "tool")]
        tools: Vec<String>,
        /// Decoded windows kept between calls, MiB (security.window_cache_mib; 0: every call
        /// decodes its window again).
        #[arg(long, default_value_t = config::Security::default().window_cache_mib)]
        window_cache_mib: usize,
    },
    /// The causal chain behind a process's latency (same analysis as resolve_causal_chain).
    Diagnose {
        /// The slow process.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        pid: i64,
        /// Window in seconds ending at the process's last event (1..=300).
        #[arg(long, default_value = "60s", value_parser = parse_window)]
        window: i64,
        /// Object store.
        #[arg(long, default_value = "file://./data", value_name = "URL")]
        store: String,
        /// Print the full JSON answer.
        #[arg(long)]
        json: bool,
        /// Include stacks of the longest wait.
        #[arg(long)]
        stacks: bool,
        /// Only this host partition (pids repeat across a fleet's hosts).
        #[arg(long)]
        host: Option<String>,
    },
    /// CUDA call latency of a process, slow calls explained by the host (analyze_gpu_launch_latency).
    Gpu {
        /// The process.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        pid: i64,
        /// Window in seconds ending at the process's last CUDA record (1..=3600).
        #[arg(long, default_value = "60s", value_parser = parse_long_window)]
        window: i64,
        #[command(flatten)]
        out: StoreHostJson,
    },
    /// Each host's clock against the store's (a fleet's common time line), and how close events
    /// of two hosts may be and still be ordered (estimate_clock_offsets).
    Clocks {
        /// Samples from this long before the newest (1m..=24h).
        #[arg(long, default_value = "1h", value_parser = parse_clock_window)]
        window: i64,
        #[command(flatten)]
        out: StoreHostJson,
    },
    /// Off-CPU flamegraph (SVG) of a process: stacks rooted at thread and blocking state.
    Flamegraph {
        /// The process.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        pid: i64,
        /// Window in seconds ending at the process's last event (1..=3600).
        #[arg(long, default_value = "60s", value_parser = parse_long_window)]
        window: i64,
        /// Where to write the SVG.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Object store.
        #[arg(long, default_value = "file://./data", value_name = "URL")]
        store: String,
        /// Write the folded stacks instead of the SVG (for other flamegraph tools).
        #[arg(long)]
        folded: bool,
    },
    /// Chrome/Perfetto trace JSON: app spans and kernel intervals on one timeline per thread.
    Timeline {
        /// A trace: its spans and its threads' kernel events.
        #[arg(
            long,
            value_name = "HEX",
            conflicts_with = "pid",
            required_unless_present = "pid"
        )]
        trace_id: Option<String>,
        /// Or a process: its kernel events in the window.
        #[arg(long)]
        pid: Option<i64>,
        /// Window in seconds ending at the process's last event (with --pid).
        #[arg(long, default_value = "10s", value_parser = parse_window)]
        window: i64,
        /// Where to write the JSON (open it in https://ui.perfetto.dev or chrome://tracing).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Object store.
        #[arg(long, default_value = "file://./data", value_name = "URL")]
        store: String,
    },
    /// What the kernel did during a trace: per span, time on CPU, run queue, locks, I/O … (explain_trace).
    ExplainTrace {
        /// Trace id, 32 hex digits.
        #[arg(long, value_name = "HEX")]
        trace_id: String,
        /// Object store (app traces are read from its `traces/` prefix).
        #[arg(long, default_value = "file://./data", value_name = "URL")]
        store: String,
        /// Print the full JSON answer.
        #[arg(long)]
        json: bool,
    },
}

fn parse_long_window(s: &str) -> Result<i64, String> {
    let n: i64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("invalid window {s:?}: use seconds, e.g. 60s"))?;
    if !(1..=3600).contains(&n) {
        return Err(format!("window must be within 1s..=3600s, got {s}"));
    }
    Ok(n)
}

/// The store, a host filter and the output form, shared by the analysis commands.
#[derive(clap::Args)]
struct StoreHostJson {
    /// Object store.
    #[arg(long, default_value = "file://./data", value_name = "URL")]
    store: String,
    /// Print the full JSON answer.
    #[arg(long)]
    json: bool,
    /// Only this host partition.
    #[arg(long)]
    host: Option<String>,
}

fn parse_clock_window(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("invalid window {s:?}: e.g. 90s, 30m, 6h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid window {s:?}: e.g. 90s, 30m, 6h")),
    };
    if !(60..=86_400).contains(&secs) {
        return Err(format!("window must be within 1m..=24h, got {s}"));
    }
    Ok(secs)
}

fn write_out(path: &std::path::Path, bytes: &[u8]) -> Result<(), QueryError> {
    std::fs::write(path, bytes)
        .map_err(|e| QueryError::Usage(format!("cannot write {}: {e}", path.display())))
}

fn parse_window(s: &str) -> Result<i64, String> {
    let n: i64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("invalid window {s:?}: use seconds, e.g. 60s"))?;
    if !(1..=300).contains(&n) {
        return Err(format!("window must be within 1s..=300s, got {s}"));
    }
    Ok(n)
}

async fn serve(
    store: Option<String>,
    stdio: bool,
    http: Option<SocketAddr>,
    config: Option<PathBuf>,
) -> Result<(), QueryError> {
    let cfg = match &config {
        Some(p) => Config::load(p).map_err(QueryError::Usage)?,
        None => Config::default(),
    };
    let store = store.unwrap_or_else(|| cfg.store.clone());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        tracing::warn!("causeway-query needs no privileges: serve it as an unprivileged user with read access to the store");
    }
    let engine: Arc<dyn Engine> =
        Arc::new(LocalEngine::open_with(&store, cfg.security.clone()).await?);
    if stdio {
        let service = mcp::Server::new(engine, Default::default())
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| QueryError::Runtime(format!("starting the stdio server: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| QueryError::Runtime(format!("stdio server: {e}")))?;
        return Ok(());
    }
    let addr = http.expect("clap requires --stdio or --http");
    let token = mcp::http::load_token(&cfg).map_err(QueryError::Usage)?;
    mcp::http::serve(engine, addr, &cfg, token)
        .await
        .map_err(|e| QueryError::Runtime(format!("{e:#}")))
}

/// Memory settings that keep tool calls from faulting fresh pages in over and over:
///
/// - Transparent huge pages off for this process. mimalloc asks for huge pages on its arenas
///   (`MADV_HUGEPAGE`), and the kernel then zeroes 2 MiB at the first touch of each: a tool call
///   decodes tens of MB into fresh memory.
/// - glibc's malloc (the C libraries' allocator: zstd takes a ~100 KiB decompression context for
///   every column chunk the Parquet reader opens) keeps its heap instead of trimming it and
///   serving large blocks from fresh mmaps (page faults on every call).
///
/// Done before any work: both apply from then on. A failure costs speed only.
fn memory_settings() {
    // SAFETY: prctl and mallopt with integer arguments: a flag of this process's mm, and
    // thresholds of glibc's allocator; neither touches memory the program holds.
    let (thp, mmap, trim, pad) = unsafe {
        (
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0),
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20),
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20),
            libc::mallopt(libc::M_TOP_PAD, 16 << 20),
        )
    };
    if thp != 0 || mmap != 1 || trim != 1 || pad != 1 {
        tracing::debug!(
            thp,
            mmap,
            trim,
            pad,
            "memory settings not all taken (continuing)"
        );
    }
}

/// Prints a report: its JSON, or its text.
fn print_report<R: Report>(r: &R, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
    } else {
        print!("{}", r.text().trim_end());
        println!();
    }
}

/// Writes a report's document to `out` and says so.
fn write_document<R: Report>(r: &R, out: &std::path::Path) -> Result<(), QueryError> {
    let doc = r.document().map(|d| d.text.as_bytes()).unwrap_or_default();
    write_out(out, doc)?;
    eprintln!("{} written to {}", r.summary(), out.display());
    Ok(())
}

/// Runs one command.
async fn dispatch(command: Command) -> Result<(), QueryError> {
    match command {
        Command::Sql {
            query,
            store,
            format,
        } => {
            let engine = LocalEngine::open(&store).await?;
            let batches = engine.sql(&query).await?;
            let out = match format {
                Format::Table => answer::format_table(&batches)?,
                Format::Json => answer::format_json(&batches)?,
                Format::Csv => answer::format_csv(&batches)?,
            };
            println!("{out}");
        }
        Command::Serve {
            store,
            stdio,
            http,
            config,
        } => serve(store, stdio, http, config).await?,
        Command::Bench {
            store,
            pid,
            iterations,
            host,
            statements,
            tools,
            window_cache_mib,
        } => {
            let security = config::Security {
                window_cache_mib,
                ..Default::default()
            };
            let engine = LocalEngine::open_with(&store, security).await?;
            bench::run(&engine, pid, iterations, host, &statements, &tools).await?
        }
        Command::Diagnose {
            pid,
            window,
            store,
            json,
            stacks,
            host,
        } => {
            let engine = LocalEngine::open(&store).await?;
            let args = analysis::causal_chain::ChainArgs {
                target_pid: Some(pid),
                latency_window_s: Some(window),
                include_stacks: Some(stacks),
                host,
                ..Default::default()
            };
            print_report(&analysis::causal_chain::run(&engine, &args).await?, json);
        }
        Command::Clocks {
            window,
            out: StoreHostJson { store, json, host },
        } => {
            let engine = LocalEngine::open(&store).await?;
            let a = analysis::clocks::ClockArgs {
                window_s: Some(window),
                host,
            };
            print_report(&analysis::clocks::run(&engine, &a).await?, json);
        }
        Command::Gpu {
            pid,
            window,
            out: StoreHostJson { store, json, host },
        } => {
            let engine = LocalEngine::open(&store).await?;
            let a = analysis::gpu::GpuArgs {
                pid,
                window_s: Some(window),
                host,
            };
            print_report(&analysis::gpu::run(&engine, &a).await?, json);
        }
        Command::Flamegraph {
            pid,
            window,
            out,
            store,
            folded,
        } => {
            let engine = LocalEngine::open(&store).await?;
            let a = analysis::views::FlameArgs {
                pid,
                window_s: Some(window),
            };
            if folded {
                let lines = analysis::views::folded_off_cpu(&engine, &a).await?;
                write_out(&out, (lines.join("\n") + "\n").as_bytes())?;
                eprintln!("{} folded stacks written to {}", lines.len(), out.display());
            } else {
                write_document(&analysis::views::flamegraph(&engine, &a).await?, &out)?;
            }
        }
        Command::Timeline {
            trace_id,
            pid,
            window,
            out,
            store,
        } => {
            let engine = LocalEngine::open(&store).await?;
            let a = analysis::views::TimelineArgs {
                trace_id,
                pid,
                window_s: Some(window),
            };
            write_document(&analysis::views::export_timeline(&engine, &a).await?, &out)?;
        }
        Command::ExplainTrace {
            trace_id,
            store,
            json,
        } => {
            let engine = LocalEngine::open(&store).await?;
            let a = analysis::trace::TraceArgs { trace_id };
            print_report(&analysis::trace::run(&engine, &a).await?, json);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAUSEWAY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    memory_settings();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway-query: error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(dispatch(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway-query: error: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
