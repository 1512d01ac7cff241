//! The one error type of queries and analyses: the caller's mistakes (exit code 2, a tool result
//! with `isError` naming the problem) apart from everything else.

use datafusion::error::DataFusionError;

/// A query failure, split into the caller's mistakes (exit 2) and everything else.
#[derive(Debug)]
pub enum QueryError {
    /// Bad SQL, unknown table or column, a statement that is not read-only, a bad store URL.
    Usage(String),
    /// The store or the engine failed.
    Runtime(String),
}

impl QueryError {
    /// True for the caller's mistakes.
    pub fn is_usage(&self) -> bool {
        matches!(self, QueryError::Usage(_))
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Usage(m) | QueryError::Runtime(m) => f.write_str(m),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let usage = matches!(
            e.find_root(),
            DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_)
                | DataFusionError::ResourcesExhausted(_)
        );
        let msg = e.to_string();
        if usage {
            QueryError::Usage(msg)
        } else {
            QueryError::Runtime(msg)
        }
    }
}

impl From<QueryError> for String {
    fn from(e: QueryError) -> String {
        e.to_string()
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Runtime(e.to_string())
    }
}
