//! Where decoded events go: Parquet objects in the store, and OTLP log records to a pipeline.

pub mod otlp;
pub mod parquet;
pub mod retention;
