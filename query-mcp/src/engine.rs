//! The query engine: a DataFusion session with causeway's tables registered as hive-partitioned
//! listing tables over the store, so predicates on `date`, `hour` and `host` prune whole
//! directories and new files are listed at every query (no restart needed).

use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use causeway_proto::table;
use causeway_store::StoreLocation;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::listing::ListingTableConfig;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionConfig;
use datafusion::prelude::SessionContext;

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
        );
        let msg = e.to_string();
        if usage {
            QueryError::Usage(msg)
        } else {
            QueryError::Runtime(msg)
        }
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Runtime(e.to_string())
    }
}

/// Tables over the store, with their file schema (None: inferred from the files).
fn tables() -> Vec<(&'static str, Option<SchemaRef>)> {
    vec![
        (table::KERNEL_EVENTS, Some(table::kernel_events_schema())),
        (table::STACKS, Some(table::stacks_schema())),
        ("collector_stats", None),
    ]
}

/// DataFusion over one causeway store.
pub struct Engine {
    ctx: SessionContext,
}

impl Engine {
    /// Opens the store and registers the tables.
    pub async fn open(store_url: &str) -> Result<Engine, QueryError> {
        let location = StoreLocation::parse(store_url)
            .map_err(|e| QueryError::Usage(format!("invalid --store: {e:#}")))?;
        let (root, store) = location
            .open_for_url()
            .map_err(|e| QueryError::Runtime(format!("opening store {location}: {e:#}")))?;
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_object_store(&root, store);
        let state = ctx.state();
        for (name, schema) in tables() {
            let url = ListingTableUrl::parse(location.table_url(name))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![
                    ("date".to_string(), DataType::Utf8),
                    ("hour".to_string(), DataType::Utf8),
                    ("host".to_string(), DataType::Utf8),
                ]);
            let mut cfg = ListingTableConfig::new(url).with_listing_options(options);
            cfg = match schema {
                Some(s) => cfg.with_schema(s),
                None => match cfg.clone().infer_schema(&state).await {
                    Ok(c) => c,
                    // no files yet: the table appears once the collector has written some
                    Err(_) => continue,
                },
            };
            ctx.register_table(name, Arc::new(ListingTable::try_new(cfg)?))?;
        }
        Ok(Engine { ctx })
    }

    /// Runs one read-only statement: no DDL, DML, COPY or SET (DataFusion's SQLOptions).
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self.ctx.sql_with_options(query, options).await?;
        Ok(df.collect().await?)
    }
}

/// An ASCII table.
pub fn format_table(batches: &[RecordBatch]) -> Result<String, QueryError> {
    Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

/// A JSON array of row objects.
pub fn format_json(batches: &[RecordBatch]) -> Result<String, QueryError> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    let bytes = w.into_inner();
    Ok(if bytes.is_empty() { "[]".into() } else { String::from_utf8_lossy(&bytes).into_owned() })
}

/// CSV with a header row. Nested columns (stack frames, per-CPU counters) are written in their
/// display form, `[a, b, c]`, since CSV has no lists.
pub fn format_csv(batches: &[RecordBatch]) -> Result<String, QueryError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut buf);
        for b in batches {
            w.write(&flatten_nested(b)?)?;
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    use arrow::array::Array;
    use arrow::array::StringArray;
    use arrow::datatypes::Field;
    use arrow::datatypes::Schema;
    use arrow::util::display::ArrayFormatter;
    use arrow::util::display::FormatOptions;

    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
            let strings: StringArray = (0..col.len())
                .map(|i| col.is_valid(i).then(|| fmt.value(i).to_string()))
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(strings) as arrow::array::ArrayRef);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(col.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
