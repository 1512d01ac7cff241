//! What the analyses and the MCP tools ask of a query engine ([`Engine`]), and the engine
//! causeway has: DataFusion in this process over the store (`local::LocalEngine`).

pub mod local;
mod sparse;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::answer::Answer;
use crate::answer::Rows;
use crate::config::Security;
use crate::error::QueryError;

/// A read-only SQL engine over causeway's tables, with the caps and the pid policy of its
/// [`Security`] applied to every statement.
#[async_trait]
pub trait Engine: Send + Sync {
    /// Runs one read-only statement within the row, time and memory caps.
    async fn answer(&self, statement: &str) -> Result<Answer, QueryError>;

    /// Runs one read-only statement with no row cap (the CLI's `sql`).
    async fn sql(&self, statement: &str) -> Result<Vec<RecordBatch>, QueryError>;

    /// An engine whose `kernel_events` holds only `columns` of the rows matching `predicate`,
    /// decoded once, for the several questions one analysis asks of one process and window;
    /// `None` when they are too many to hold (ask this engine then).
    async fn window(
        &self,
        columns: &[&str],
        predicate: &str,
    ) -> Result<Option<Box<dyn Engine>>, QueryError>;

    /// True for the engine of a window that holds no row.
    fn holds_no_rows(&self) -> bool;

    /// The limits this engine enforces.
    fn security(&self) -> &Security;

    /// A clear error for a pid the policy hides (instead of an empty answer).
    fn check_pid(&self, pid: i64) -> Result<(), QueryError> {
        if i32::try_from(pid).is_ok_and(|p| self.security().pid_visible(p)) {
            Ok(())
        } else {
            Err(QueryError::Usage(format!(
                "pid {pid} is not visible under this server's pid policy"
            )))
        }
    }
}

impl dyn Engine + '_ {
    /// The rows of one statement as JSON objects, within the row and byte caps: the path of
    /// `run_sql` and of the tools that return rows.
    pub async fn query(&self, statement: &str) -> Result<Rows, QueryError> {
        self.answer(statement)
            .await?
            .json(self.security().max_result_bytes)
    }

    /// The rows of one statement, within the row cap, decoded into `T` by column name.
    pub async fn rows<T: DeserializeOwned>(&self, statement: &str) -> Result<Vec<T>, QueryError> {
        self.answer(statement).await?.typed()
    }
}
