//! causeway-query: DataFusion over causeway's object storage.
//!
//! This build has the `sql` command; the MCP server (`serve`), `diagnose` and `explain-trace`
//! arrive with their issues and share the same engine ([`engine`]).

mod engine;

use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;
use clap::ValueEnum;

#[derive(Parser)]
#[command(name = "causeway-query", version, about = "Query causeway's kernel records (and, soon, serve them over MCP).")]
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
    /// Run one read-only SQL statement (SELECT/WITH) over the tables kernel_events, stacks and
    /// collector_stats.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway-query: error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Sql { query, store, format } => {
                let engine = engine::Engine::open(&store).await?;
                let batches = engine.sql(&query).await?;
                let out = match format {
                    Format::Table => engine::format_table(&batches)?,
                    Format::Json => engine::format_json(&batches)?,
                    Format::Csv => engine::format_csv(&batches)?,
                };
                println!("{out}");
                Ok::<(), engine::QueryError>(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway-query: error: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
