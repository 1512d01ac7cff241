//! Where decoded events go: Parquet objects in the store (the OTLP exporter joins with issue 5).

pub mod parquet;
pub mod retention;
