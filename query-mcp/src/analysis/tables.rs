//! `run_sql` and `list_tables`: the tables as they are, under the engine's caps.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use super::report::Report;
use super::text::DATA_NOTICE;
use crate::engine::Engine;
use crate::error::QueryError;

/// `run_sql` arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlArgs {
    /// One SELECT or WITH statement over kernel_events, stacks, collector_stats, cuda_histograms, app_spans.
    pub query: String,
}

/// `run_sql` answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SqlReport {
    /// Result rows as objects.
    pub rows: Vec<Value>,
    /// More rows or bytes existed than the caps allow.
    pub truncated: bool,
    /// How to read traced strings.
    pub notice: String,
}

impl Report for SqlReport {
    fn summary(&self) -> String {
        format!(
            "{} rows{}",
            self.rows.len(),
            if self.truncated { " (truncated)" } else { "" }
        )
    }
}

/// Runs one capped read-only statement.
pub async fn run_sql(engine: &dyn Engine, a: &SqlArgs) -> Result<SqlReport, QueryError> {
    let r = engine.query(&a.query).await?;
    Ok(SqlReport {
        rows: r.rows,
        truncated: r.truncated,
        notice: DATA_NOTICE.into(),
    })
}

/// `list_tables` answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TablesReport {
    /// One entry per table: name and columns with types.
    pub tables: Vec<Value>,
}

impl Report for TablesReport {
    fn summary(&self) -> String {
        let names: Vec<&str> = self
            .tables
            .iter()
            .map(|t| t["name"].as_str().unwrap_or(""))
            .collect();
        format!("tables: {}", names.join(", "))
    }
}

/// The tables and their columns with types.
pub async fn list_tables(engine: &dyn Engine) -> Result<TablesReport, QueryError> {
    // one row per table, so the row cap never cuts a table off the list
    let q = "SELECT table_name, array_agg(column_name ORDER BY ordinal_position) AS names, \
             array_agg(data_type ORDER BY ordinal_position) AS types FROM information_schema.columns \
             WHERE table_schema = 'public' GROUP BY table_name ORDER BY table_name";
    let rows = engine.query(q).await?.rows;
    let tables = rows
        .into_iter()
        .map(|row| {
            let (names, types) = (
                row["names"].as_array().cloned().unwrap_or_default(),
                row["types"].as_array().cloned().unwrap_or_default(),
            );
            let columns: Vec<Value> = names
                .iter()
                .zip(types.iter())
                .map(|(n, t)| serde_json::json!({"name": n, "type": t}))
                .collect();
            serde_json::json!({"name": row["table_name"], "columns": columns})
        })
        .collect();
    Ok(TablesReport { tables })
}
