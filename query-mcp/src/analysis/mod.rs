//! Analyses behind the MCP tools and the CLI, one module per tool. Each builds SQL from
//! validated, typed arguments only (numbers, never caller text), runs it through an
//! [`crate::engine::Engine`] (caps, timeout, pid policy) and shapes the answer.

pub mod causal_chain;
pub mod clocks;
pub mod gpu;
pub mod json;
pub mod mechanism;
pub mod off_cpu;
pub mod report;
pub mod sql;
pub mod tables;
pub mod text;
pub mod trace;
pub mod views;
