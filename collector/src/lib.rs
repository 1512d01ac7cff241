//! causeway's collector: eBPF probe sets (`probes`), the capture loop (`run`), the Parquet and
//! OTLP sinks (`sink`), and what they need (configuration, clocks, stacks, containers, the
//! collector's own cost). The `causeway-collector` binary is its CLI; `causeway-testkit` (tests
//! and benchmarks only, not shipped) drives it too.

pub mod cli;
pub mod clock;
pub mod clocksync;
pub mod config;
pub mod containers;
pub mod demo;
pub mod doctor;
pub mod overhead;
pub mod preflight;
pub mod probes;
pub mod run;
pub mod sink;
pub mod stacks;
pub mod stats;
pub mod throttle;
