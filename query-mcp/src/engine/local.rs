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
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::col;
use datafusion::prelude::lit;
use datafusion::prelude::SessionConfig;
use datafusion::prelude::SessionContext;

use super::sparse::SparseWindow;
use super::Engine;
use crate::answer::Answer;
use crate::config::Security;
use crate::error::QueryError;
use crate::window_cache::scanned_files;
use crate::window_cache::Answers;
use crate::window_cache::Files;
use crate::window_cache::Kept;
use crate::window_cache::WindowCache;

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
/// values (task names, event names, states) inline instead of copying each into one buffer.
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

/// DataFusion over one causeway store.
pub struct LocalEngine {
    ctx: SessionContext,
    security: Security,
    /// Windows read before (see `window`).
    windows: Arc<WindowCache>,
    /// A window's engine: its window, with the answers given about its rows (window_cache.rs).
    window: Option<Kept>,
}

impl LocalEngine {
    /// Opens the store and registers the tables with default limits and no pid policy.
    pub async fn open(store_url: &str) -> Result<LocalEngine, QueryError> {
        Self::open_with(store_url, Security::default()).await
    }

    /// Opens the store and registers the tables. The pid policy is applied by registering
    /// `kernel_events` as a filtered view: no query (tool or SQL) can see a hidden pid.
    pub async fn open_with(store_url: &str, security: Security) -> Result<LocalEngine, QueryError> {
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
            let table = listing_table(&ctx, &location, name, &schema)?;
            if (name == table::KERNEL_EVENTS || name == table::CUDA_HISTOGRAMS)
                && security.has_pid_policy()
            {
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
        if security.has_pid_policy() {
            let df = pid_policy(ctx.read_table(spans)?, &security, true)?;
            ctx.register_table(crate::spans::TABLE, df.into_view())?;
        } else {
            ctx.register_table(crate::spans::TABLE, spans)?;
        }
        let windows = Arc::new(WindowCache::new(security.window_cache_mib * 1024 * 1024));
        Ok(LocalEngine {
            ctx,
            security,
            windows,
            window: None,
        })
    }

    /// A window engine's earlier answer to `statement`, if it gave one.
    fn answer_kept(&self, statement: &str) -> Option<Answer> {
        self.window
            .as_ref()?
            .answers
            .lock()
            .ok()?
            .get(statement)
            .cloned()
    }

    /// Logs a statement's times (the fields are evaluated only when debug logging is on).
    fn log_answered(
        &self,
        statement: &str,
        started: std::time::Instant,
        planned: std::time::Duration,
    ) {
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
            query = statement,
            "query answered"
        );
    }

    /// Reads the rows of `sql` into a window (`None` past `max_bytes`), or finds them kept.
    async fn read_window(&self, sql: &str, max_bytes: usize) -> Result<Option<Held>, QueryError> {
        use futures::StreamExt;
        let df = self.ctx.sql_with_options(sql, read_only()).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        let files = scanned_files(&plan);
        if let Some(kept) = self.windows.get(sql, &files) {
            return Ok(Some(Held::Kept(kept)));
        }
        let mut stream = datafusion::physical_plan::execute_stream(plan, task)?;
        let mut window = SparseWindow::new(schema);
        while let Some(batch) = stream.next().await {
            if !window.push(&batch?, max_bytes) {
                return Ok(None);
            }
        }
        Ok(Some(Held::Read(window, files)))
    }
}

/// A window as `read_window` found it: kept from an earlier call, or read now.
enum Held {
    Kept(Kept),
    Read(SparseWindow, Files),
}

#[async_trait::async_trait]
impl Engine for LocalEngine {
    /// Runs one read-only statement with the row, time and memory caps. A window engine keeps
    /// its answers: a statement asked again of a kept window is answered from them.
    async fn answer(&self, statement: &str) -> Result<Answer, QueryError> {
        if let Some(kept) = self.answer_kept(statement) {
            tracing::debug!(query = statement, "answer kept with the window");
            return Ok(kept);
        }
        let max_rows = self.security.max_rows;
        let started = std::time::Instant::now();
        let run = async {
            let df = self.ctx.sql_with_options(statement, read_only()).await?;
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
        self.log_answered(statement, started, planned);
        let answer = capped(batches, max_rows);
        if let Some(window) = &self.window {
            if let Ok(mut answers) = window.answers.lock() {
                answers.keep(statement, &answer);
            }
        }
        Ok(answer)
    }

    async fn sql(&self, statement: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let df = self.ctx.sql_with_options(statement, read_only()).await?;
        Ok(df.collect().await?)
    }

    /// The window's rows take at most half of `security.memory_limit_mib`. A window is kept
    /// for later calls (`security.window_cache_mib`) and reused only while its scan would read
    /// the same files (window_cache.rs), together with the answers the returned engine gives
    /// about it. `query_off_cpu_events` asks five questions of one window, the causal chain
    /// about twenty of two.
    async fn window(
        &self,
        columns: &[&str],
        predicate: &str,
    ) -> Result<Option<Box<dyn Engine>>, QueryError> {
        let max_bytes = self.security.memory_limit_mib * 1024 * 1024 / 2;
        let started = std::time::Instant::now();
        let sql = format!(
            "SELECT {} FROM kernel_events WHERE {predicate}",
            columns.join(", ")
        );
        let Some(held) = tokio::time::timeout(self.security.timeout(), self.read_window(&sql, max_bytes))
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
                let ms = started.elapsed().as_secs_f64() * 1e3;
                tracing::debug!(ms, predicate, "window kept from an earlier call");
                kept
            }
            Held::Read(window, files) => {
                let (ms, bytes) = (started.elapsed().as_secs_f64() * 1e3, window.bytes());
                tracing::debug!(ms, bytes, predicate, "window read");
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
        Ok(Some(Box::new(LocalEngine {
            ctx,
            security: self.security.clone(),
            windows: Arc::new(WindowCache::new(0)),
            window: Some(kept),
        })))
    }

    fn holds_no_rows(&self) -> bool {
        self.window.as_ref().is_some_and(|w| w.rows == 0)
    }

    fn security(&self) -> &Security {
        &self.security
    }
}

/// At most `max_rows` of `batches`, marked truncated when there were more.
fn capped(mut batches: Vec<RecordBatch>, max_rows: usize) -> Answer {
    let mut left = max_rows;
    let mut truncated = false;
    for b in batches.iter_mut() {
        if b.num_rows() > left {
            *b = b.slice(0, left);
            truncated = true;
        }
        left -= b.num_rows();
    }
    batches.retain(|b| b.num_rows() > 0);
    Answer { batches, truncated }
}

/// A listing table of one of causeway's tables: hive partitions by date, hour and host, string
/// columns read as views, file statistics cached slim, files outside a query's time range
/// skipped while planning (pruned.rs).
fn listing_table(
    ctx: &SessionContext,
    location: &StoreLocation,
    name: &str,
    schema: &SchemaRef,
) -> Result<Arc<dyn TableProvider>, QueryError> {
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
        .with_schema(view_strings(schema));
    // ListingTable keeps no statistics cache of its own: without the session's, every query
    // would decode every file's footer statistics again while planning. Tables with rows in
    // time keep only their time column's there.
    let cache = crate::pruned::SlimStatistics::wrap(
        ctx.runtime_env().cache_manager.get_file_statistic_cache(),
        schema,
    );
    let listing = Arc::new(ListingTable::try_new(cfg)?.with_cache(cache));
    Ok(match crate::pruned::TimePruned::new(listing.clone()) {
        Some(t) => Arc::new(t),
        None => listing,
    })
}

/// DataFusion's settings: its defaults, any DATAFUSION_* environment variable (each of its
/// options, e.g. `DATAFUSION_EXECUTION_BATCH_SIZE`), and two partitions per core unless
/// `DATAFUSION_EXECUTION_TARGET_PARTITIONS` says otherwise: with one partition per core (its
/// default) a scan's byte ranges split unevenly and a core waits on the other's reads.
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
