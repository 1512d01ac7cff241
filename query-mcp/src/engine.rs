//! The query engine: a DataFusion session with causeway's tables registered as hive-partitioned
//! listing tables over the store, so predicates on `date`, `hour` and `host` prune whole
//! directories and new files are listed at every query (no restart needed).

use std::collections::HashMap;
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
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::col;
use datafusion::prelude::lit;
use datafusion::prelude::SessionConfig;
use datafusion::prelude::SessionContext;
use serde_json::Value;

use crate::config::Security;
use crate::window_cache::scanned_files;
use crate::window_cache::Answers;
use crate::window_cache::Files;
use crate::window_cache::Kept;
use crate::window_cache::WindowCache;

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

/// Tables over the store, with their file schemas (defined once, in causeway-proto).
fn tables() -> Vec<(&'static str, SchemaRef)> {
    vec![
        (table::KERNEL_EVENTS, table::kernel_events_schema()),
        (table::STACKS, table::stacks_schema()),
        (table::COLLECTOR_STATS, table::collector_stats_schema()),
        (table::CUDA_HISTOGRAMS, table::cuda_histograms_schema()),
        (table::CLOCK_SYNC, table::clock_sync_schema()),
    ]
}

/// `schema` with its string columns read as string views: the Parquet reader then keeps short
/// values (task names, event names, states) inline instead of copying each into one buffer —
/// two string columns of a thread's window cost 3.5 ms instead of 16 over 728k rows.
fn view_strings(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View)),
            _ => f.clone(),
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// The pid allow/deny lists as filters on a table's `pid` column. `nullable_pid`: rows without a
/// pid (spans that do not record one) pass a deny list, never an allow list.
fn pid_policy(
    mut df: datafusion::dataframe::DataFrame,
    security: &Security,
    nullable_pid: bool,
) -> Result<datafusion::dataframe::DataFrame, DataFusionError> {
    if !security.allow_pids.is_empty() {
        let allowed = security.allow_pids.iter().map(|p| lit(*p)).collect();
        df = df.filter(col("pid").in_list(allowed, false))?;
    }
    if !security.deny_pids.is_empty() {
        let denied = security.deny_pids.iter().map(|p| lit(*p)).collect();
        let keep = col("pid").in_list(denied, true);
        df = df.filter(if nullable_pid {
            col("pid").is_null().or(keep)
        } else {
            keep
        })?;
    }
    Ok(df)
}

/// How long a directory listing is reused before new files are looked for.
pub const LISTING_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Rows of a capped query.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The rows as JSON objects.
    pub rows: Vec<Value>,
    /// More rows (or bytes) existed than the caps allow.
    pub truncated: bool,
}

/// DataFusion over one causeway store.
pub struct Engine {
    ctx: SessionContext,
    security: Security,
    /// Windows read before (see `window`).
    windows: Arc<WindowCache>,
    /// A window's engine: its window, with the answers given about its rows (window_cache.rs).
    window: Option<Kept>,
}

impl Engine {
    /// Opens the store and registers the tables with default limits and no pid policy.
    pub async fn open(store_url: &str) -> Result<Engine, QueryError> {
        Self::open_with(store_url, Security::default()).await
    }

    /// Opens the store and registers the tables. The pid policy is applied by registering
    /// `kernel_events` as a filtered view: no query (tool or SQL) can see a hidden pid.
    pub async fn open_with(store_url: &str, security: Security) -> Result<Engine, QueryError> {
        let location = StoreLocation::parse(store_url)
            .map_err(|e| QueryError::Usage(format!("invalid --store: {e:#}")))?;
        let (root, store) = location
            .open_for_url()
            .map_err(|e| QueryError::Runtime(format!("opening store {location}: {e:#}")))?;
        let config = session_config()?;
        // DataFusion caches directory listings with no expiry by default: a long-running server
        // would never see the collector's new files. One second keeps S3 listings cheap under
        // bursts of tool calls and new data visible.
        let caches = CacheManagerConfig::default()
            .with_list_files_cache_ttl(Some(LISTING_TTL))
            .with_metadata_cache_limit(security.footer_cache_mib * 1024 * 1024);
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            .with_memory_limit(security.memory_limit_mib * 1024 * 1024, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_object_store(&root, store);
        for (name, schema) in tables() {
            let url = ListingTableUrl::parse(location.table_url(name))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![
                    ("date".to_string(), DataType::Utf8),
                    ("hour".to_string(), DataType::Utf8),
                    ("host".to_string(), DataType::Utf8),
                ]);
            let cfg = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(view_strings(&schema));
            // ListingTable keeps no statistics cache of its own: without the session's, every
            // query would decode every file's footer statistics again while planning (4 s
            // instead of 0.5 s for a causal chain on an hour of 50k events/s). Tables with
            // rows in time keep only their time column's there (pruned.rs).
            let cache = crate::pruned::SlimStatistics::wrap(
                ctx.runtime_env().cache_manager.get_file_statistic_cache(),
                &schema,
            );
            let listing = Arc::new(ListingTable::try_new(cfg)?.with_cache(cache));
            // tables with rows in time skip, while planning, the files outside a query's range
            let table: Arc<dyn TableProvider> =
                match crate::pruned::TimePruned::new(listing.clone()) {
                    Some(t) => Arc::new(t),
                    None => listing,
                };
            let policy = !security.allow_pids.is_empty() || !security.deny_pids.is_empty();
            if (name == table::KERNEL_EVENTS || name == table::CUDA_HISTOGRAMS) && policy {
                let df = pid_policy(ctx.read_table(table)?, &security, false)?;
                ctx.register_table(name, df.into_view())?;
            } else {
                ctx.register_table(name, table)?;
            }
        }
        // application traces, read in place where the OTel Collector writes them
        let spans = Arc::new(crate::spans::AppSpans::new(
            location
                .open(false)
                .map_err(|e| QueryError::Runtime(format!("opening store {location}: {e:#}")))?,
            crate::spans::TRACES_PREFIX,
        ));
        let policy = !security.allow_pids.is_empty() || !security.deny_pids.is_empty();
        if policy {
            let df = pid_policy(ctx.read_table(spans)?, &security, true)?;
            ctx.register_table(crate::spans::TABLE, df.into_view())?;
        } else {
            ctx.register_table(crate::spans::TABLE, spans)?;
        }
        let windows = Arc::new(WindowCache::new(security.window_cache_mib * 1024 * 1024));
        Ok(Engine {
            ctx,
            security,
            windows,
            window: None,
        })
    }

    /// A clear error for a pid the policy hides (instead of an empty answer).
    pub fn check_pid(&self, pid: i64) -> Result<(), QueryError> {
        if i32::try_from(pid).is_ok_and(|p| self.security.pid_visible(p)) {
            Ok(())
        } else {
            Err(QueryError::Usage(format!(
                "pid {pid} is not visible under this server's pid policy"
            )))
        }
    }

    /// The limits this engine enforces.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// Runs one read-only statement with the row, byte, time and memory caps, returning JSON
    /// rows. This is the path of every tool and of `run_sql`.
    pub async fn query(&self, query: &str) -> Result<Rows, QueryError> {
        if let Some(kept) = self.answer_kept(query) {
            tracing::debug!(query, "answer kept with the window");
            return Ok(kept);
        }
        let options = read_only();
        let max_rows = self.security.max_rows;
        let started = std::time::Instant::now();
        let run = async {
            let df = self.ctx.sql_with_options(query, options).await?;
            let df = df.limit(0, Some(max_rows + 1))?;
            let task = Arc::new(df.task_ctx());
            let plan = df.create_physical_plan().await?;
            let planned = started.elapsed();
            let batches = datafusion::physical_plan::collect(plan, task).await?;
            Ok::<_, QueryError>((batches, planned))
        };
        let (batches, planned) = tokio::time::timeout(self.security.timeout(), run).await.map_err(|_| {
            QueryError::Usage(format!(
                "query cancelled after the {} s limit (security.query_timeout_s); narrow the time window or add filters",
                self.security.query_timeout_s
            ))
        })??;
        // (fields are evaluated only when debug logging is on: no cache lookups otherwise)
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            planning_ms = planned.as_secs_f64() * 1e3,
            statistics_cached = self
                .ctx
                .runtime_env()
                .cache_manager
                .get_file_statistic_cache()
                .map_or(0, |c| c.len()),
            footers_cached = self
                .ctx
                .runtime_env()
                .cache_manager
                .get_file_metadata_cache()
                .len(),
            query,
            "query answered"
        );
        let mut rows = to_json_rows(&batches)?;
        let mut truncated = rows.len() > max_rows;
        rows.truncate(max_rows);
        let mut bytes = 0usize;
        if let Some(cut) = rows.iter().position(|r| {
            bytes += r.to_string().len();
            bytes > self.security.max_result_bytes
        }) {
            rows.truncate(cut);
            truncated = true;
        }
        let answer = Rows { rows, truncated };
        if let Some(window) = &self.window {
            if let Ok(mut answers) = window.answers.lock() {
                answers.keep(query, &answer, bytes);
            }
        }
        Ok(answer)
    }

    /// A window engine's earlier answer to `query`, if it gave one.
    fn answer_kept(&self, query: &str) -> Option<Rows> {
        self.window
            .as_ref()?
            .answers
            .lock()
            .ok()?
            .get(query)
            .cloned()
    }

    /// An engine whose `kernel_events` holds only the rows matching `predicate`, and only
    /// `columns` of them (name the ones the predicates use too), decoded once and kept in memory
    /// for one analysis. A tool that asks several questions of one process and window
    /// (`query_off_cpu_events` asks five) then decodes the process's rows once instead of once
    /// per question; the statements, and the SQL a report quotes, stay the same. `None` when
    /// the window's rows take more than half of `security.memory_limit_mib` (the caller asks the
    /// store directly then, under the usual memory limit). A window is kept for later calls
    /// (`security.window_cache_mib`) and reused only while its scan would read the same files
    /// (window_cache.rs), together with the answers the returned engine gives about it: a
    /// statement asked again of a kept window is answered from them.
    pub async fn window(
        &self,
        columns: &[&str],
        predicate: &str,
    ) -> Result<Option<Engine>, QueryError> {
        let max_bytes = self.security.memory_limit_mib * 1024 * 1024 / 2;
        let started = std::time::Instant::now();
        use futures::StreamExt;
        let sql = format!(
            "SELECT {} FROM kernel_events WHERE {predicate}",
            columns.join(", ")
        );
        enum Held {
            Kept(Kept),
            Read(SparseWindow, Files),
        }
        let collect = async {
            let df = self.ctx.sql_with_options(&sql, read_only()).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let task = Arc::new(df.task_ctx());
            let plan = df.create_physical_plan().await?;
            let files = scanned_files(&plan);
            if let Some(kept) = self.windows.get(&sql, &files) {
                return Ok::<_, QueryError>(Some(Held::Kept(kept)));
            }
            let mut stream = datafusion::physical_plan::execute_stream(plan, task)?;
            let mut window = SparseWindow::new(schema);
            while let Some(batch) = stream.next().await {
                if !window.push(&batch?, max_bytes) {
                    return Ok(None);
                }
            }
            Ok(Some(Held::Read(window, files)))
        };
        let Some(held) = tokio::time::timeout(self.security.timeout(), collect)
            .await
            .map_err(|_| {
                QueryError::Usage(format!(
                    "reading the window took longer than the {} s limit (security.query_timeout_s); narrow the time window",
                    self.security.query_timeout_s
                ))
            })??
        else {
            return Ok(None);
        };
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), self.ctx.runtime_env());
        let partitions = self.ctx.copied_config().target_partitions();
        let kept = match held {
            Held::Kept(kept) => {
                tracing::debug!(
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    predicate,
                    "window kept from an earlier call"
                );
                kept
            }
            Held::Read(window, files) => {
                tracing::debug!(
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    bytes = window.bytes,
                    predicate,
                    "window read"
                );
                let bytes = window.bytes;
                let kept = Kept {
                    rows: window.rows(),
                    table: window.into_view(&ctx, partitions)?,
                    answers: Answers::default(),
                };
                self.windows.put(&sql, files, kept.clone(), bytes);
                kept
            }
        };
        ctx.register_table(table::KERNEL_EVENTS, kept.table.clone())?;
        Ok(Some(Engine {
            ctx,
            security: self.security.clone(),
            windows: Arc::new(WindowCache::new(0)),
            window: Some(kept),
        }))
    }

    /// True for the engine of a window that holds no row: every question about its rows has
    /// no rows to answer from.
    pub fn holds_no_rows(&self) -> bool {
        self.window.as_ref().is_some_and(|w| w.rows == 0)
    }

    /// Runs one read-only statement: no DDL, DML, COPY or SET (DataFusion's SQLOptions).
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let df = self.ctx.sql_with_options(query, read_only()).await?;
        Ok(df.collect().await?)
    }
}

/// DataFusion's settings: its defaults, any DATAFUSION_* environment variable (each of its
/// options, e.g. `DATAFUSION_EXECUTION_BATCH_SIZE`), and two partitions per core unless
/// `DATAFUSION_EXECUTION_TARGET_PARTITIONS` says otherwise. With one partition per core (its
/// default) a scan's byte ranges split unevenly and a core waits on the other's reads: on the
/// 2-core VM the tools answer 13-18% sooner with 4 partitions than with 2 (3, 6 and 8 no better
/// than 4; `causeway-query bench` on a 1 h store, interleaved runs).
fn session_config() -> Result<SessionConfig, QueryError> {
    const PARTITIONS: &str = "DATAFUSION_EXECUTION_TARGET_PARTITIONS";
    let mut config = SessionConfig::from_env().map_err(|e| {
        QueryError::Usage(format!(
            "a DATAFUSION_* environment variable holds a bad value: {e}"
        ))
    })?;
    if std::env::var_os(PARTITIONS).is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        config = config.with_target_partitions(2 * cores);
    }
    Ok(config.with_information_schema(true))
}

/// Read-only statements only: no DDL, DML, COPY or SET (DataFusion's SQLOptions).
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Rows of a window as they arrive, holding only the columns that have values: most
/// kind-specific columns are empty in one process's window, and holding their decoded nulls
/// would cost 8 bytes per row each.
struct SparseWindow {
    schema: SchemaRef,
    /// Per batch, per column: the array, or `None` where the batch had no value in it.
    batches: Vec<(usize, Vec<Option<arrow::array::ArrayRef>>)>,
    bytes: usize,
}

impl SparseWindow {
    fn new(schema: SchemaRef) -> Self {
        SparseWindow {
            schema,
            batches: Vec::new(),
            bytes: 0,
        }
    }

    /// Keeps a batch; false once the window holds more than `max_bytes`.
    fn push(&mut self, batch: &RecordBatch, max_bytes: usize) -> bool {
        use arrow::array::Array;
        let n = batch.num_rows();
        if n > 0 {
            let columns: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| (c.null_count() < n).then(|| c.clone()))
                .collect();
            self.bytes += columns
                .iter()
                .flatten()
                .map(|c| c.get_array_memory_size())
                .sum::<usize>();
            self.batches.push((n, columns));
        }
        self.bytes <= max_bytes
    }

    /// Rows held.
    fn rows(&self) -> usize {
        self.batches.iter().map(|(n, _)| n).sum()
    }

    /// The window as a table with the full schema: columns with values come from memory, the
    /// empty ones are typed null literals (which the planner folds: `x IS NOT NULL` on them is
    /// false without looking at a row). `partitions`: the session's target partitions (one per
    /// core), so scans of the window run in parallel.
    fn into_view(
        self,
        ctx: &SessionContext,
        partitions: usize,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>, QueryError> {
        let partitions = partitions.max(1);
        let width = self.schema.fields().len();
        let kept: Vec<usize> = (0..width)
            .filter(|&c| self.batches.iter().any(|(_, cols)| cols[c].is_some()))
            .collect();
        let kept_schema = Arc::new(self.schema.project(&kept)?);
        // a batch without values in a kept column gets a slice of one null array per column
        // (a scheduler window's off-CPU batches have no run-queue columns and the other way
        // round): zeroed buffers for each would be tens of MB of fresh pages per window
        let longest = self.batches.iter().map(|(n, _)| *n).max().unwrap_or(0);
        let mut nulls: HashMap<usize, arrow::array::ArrayRef> = HashMap::new();
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
        for (k, (n, mut cols)) in self.batches.into_iter().enumerate() {
            let arrays = kept
                .iter()
                .map(|&c| {
                    cols[c].take().unwrap_or_else(|| {
                        nulls
                            .entry(c)
                            .or_insert_with(|| {
                                arrow::array::new_null_array(
                                    self.schema.field(c).data_type(),
                                    longest,
                                )
                            })
                            .slice(0, n)
                    })
                })
                .collect();
            parts[k % partitions].push(RecordBatch::try_new(kept_schema.clone(), arrays)?);
        }
        let table = crate::window_table::WindowTable::new(kept_schema, parts);
        let exprs = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, f)| {
                if kept.contains(&c) {
                    Ok(col(datafusion::common::Column::from_name(f.name())))
                } else {
                    datafusion::common::ScalarValue::try_from(f.data_type())
                        .map(|null| lit(null).alias(f.name()))
                }
            })
            .collect::<Result<Vec<_>, DataFusionError>>()?;
        Ok(ctx.read_table(Arc::new(table))?.select(exprs)?.into_view())
    }
}

/// Batches as JSON row objects.
pub fn to_json_rows(batches: &[RecordBatch]) -> Result<Vec<Value>, QueryError> {
    let text = format_json(batches)?;
    serde_json::from_str::<Value>(&text)
        .map(|v| v.as_array().cloned().unwrap_or_default())
        .map_err(|e| QueryError::Runtime(format!("encoding rows: {e}")))
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
    Ok(if bytes.is_empty() {
        "[]".into()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// CSV with a header row. Nested columns (stack frames, per-CPU counters) are written in their
/// display form, `[a, b, c]`, since CSV has no lists.
pub fn format_csv(batches: &[RecordBatch]) -> Result<String, QueryError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
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
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
