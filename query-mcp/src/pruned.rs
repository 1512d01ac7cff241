//! A listing table whose scans leave out, while planning, the files that cannot hold a row of
//! the query's time range.
//!
//! DataFusion's ListingTable prunes by partition (date/hour/host) while planning and by file
//! statistics only as it opens each file: a query about one minute of a busy hour opened all of
//! the hour's files to find the few that hold it. The collector writes each file
//! from a few seconds of events and the file statistics (cached by the session) hold each file's
//! `time_unix_nano` range, so the conjuncts on `time_unix_nano` against literals pick the files
//! before any is opened. Everything else — the other predicates, row groups, pages — is left to
//! the Parquet scan as before.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::ColumnStatistics;
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::execution::cache::cache_manager::CachedFileMetadata;
use datafusion::execution::cache::cache_manager::FileStatisticsCache;
use datafusion::execution::cache::Cache;
use datafusion::execution::cache::CacheEntryInfo;
use datafusion::execution::cache::TableScopedPath;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::Operator;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;

/// The time column every causeway table with rows in time has.
pub const TIME_COLUMN: &str = "time_unix_nano";

/// A [`ListingTable`] with time-range file pruning at planning (see the module docs).
#[derive(Debug)]
pub struct TimePruned {
    inner: Arc<ListingTable>,
    /// Index of `time_unix_nano` in the table schema (file statistics use the same order).
    time: usize,
}

impl TimePruned {
    /// Wraps `inner`; `None` when its schema has no `time_unix_nano`.
    pub fn new(inner: Arc<ListingTable>) -> Option<TimePruned> {
        let time = inner.schema().index_of(TIME_COLUMN).ok()?;
        Some(TimePruned { inner, time })
    }

    /// Whether a file may hold a row within `range` (inclusive): false only when its
    /// statistics say for certain that it does not.
    fn may_hold(
        &self,
        f: &datafusion::datasource::listing::PartitionedFile,
        range: (i64, i64),
    ) -> bool {
        let Some(stats) = f.statistics.as_ref() else {
            return true;
        };
        let Some(col) = stats.column_statistics.get(self.time) else {
            return true;
        };
        let value = |p: &datafusion::common::stats::Precision<ScalarValue>| match p.get_value() {
            Some(ScalarValue::Int64(Some(v))) => Some(*v),
            _ => None,
        };
        let below = value(&col.max_value).is_some_and(|max| max < range.0);
        let above = value(&col.min_value).is_some_and(|min| min > range.1);
        !(below || above)
    }
}

/// The inclusive `time_unix_nano` range the conjuncts `filters` allow, if they bound it at all.
pub fn time_range(filters: &[Expr]) -> Option<(i64, i64)> {
    column_range(filters, TIME_COLUMN)
}

/// The inclusive range of the integer column `name` the conjuncts `filters` allow, if they
/// bound it at all.
pub fn column_range(filters: &[Expr], name: &str) -> Option<(i64, i64)> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == name);
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    let mut bounded = false;
    let mut conjuncts: Vec<&Expr> = filters.iter().collect();
    while let Some(e) = conjuncts.pop() {
        match e {
            Expr::BinaryExpr(b) if b.op == Operator::And => {
                conjuncts.push(&b.left);
                conjuncts.push(&b.right);
            }
            Expr::BinaryExpr(b) => {
                // `column op literal`, or `literal op column` read the other way round
                let (op, v) = match (
                    is_column(&b.left),
                    int(&b.right),
                    is_column(&b.right),
                    int(&b.left),
                ) {
                    (true, Some(v), _, _) => (b.op, v),
                    (_, _, true, Some(v)) => match b.op.swap() {
                        Some(op) => (op, v),
                        None => continue,
                    },
                    _ => continue,
                };
                match op {
                    Operator::Eq => (lo, hi) = (lo.max(v), hi.min(v)),
                    Operator::Gt => lo = lo.max(v.saturating_add(1)),
                    Operator::GtEq => lo = lo.max(v),
                    Operator::Lt => hi = hi.min(v.saturating_sub(1)),
                    Operator::LtEq => hi = hi.min(v),
                    _ => continue,
                }
                bounded = true;
            }
            Expr::Between(b) if !b.negated && is_column(&b.expr) => {
                if let (Some(l), Some(h)) = (int(&b.low), int(&b.high)) {
                    (lo, hi) = (lo.max(l), hi.min(h));
                    bounded = true;
                }
            }
            _ => {}
        }
    }
    bounded.then_some((lo, hi))
}

/// An integer literal (the planner may have cast it to the column's Int64 already).
fn int(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(*v),
        Expr::Literal(ScalarValue::Int32(Some(v)), _) => Some(*v as i64),
        Expr::Literal(ScalarValue::UInt64(Some(v)), _) => i64::try_from(*v).ok(),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for TimePruned {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        let Some(range) = time_range(filters) else {
            return Ok(plan);
        };
        let Some(config) = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|e| e.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(plan);
        };
        // the same number of groups (a group may end up empty): the plan's partitioning stays
        let groups: Vec<FileGroup> = config
            .file_groups
            .iter()
            .map(|g| {
                FileGroup::new(
                    g.files()
                        .iter()
                        .filter(|f| self.may_hold(f, range))
                        .cloned()
                        .collect(),
                )
            })
            .collect();
        let before: usize = config.file_groups.iter().map(|g| g.len()).sum();
        let after: usize = groups.iter().map(|g| g.len()).sum();
        tracing::trace!(before, after, "files left by the time range");
        if after == before {
            return Ok(plan);
        }
        if after == 0 {
            return Ok(Arc::new(EmptyExec::new(plan.schema())));
        }
        let mut pruned = config.clone();
        pruned.file_groups = groups;
        Ok(DataSourceExec::from_data_source(pruned))
    }
}

/// The file statistics cache of one time-pruned table: the shared cache, holding for each
/// file only the statistics of its time column (and its row count and size). Every scan
/// plans with the statistics of all the files of the partitions it names — an hour of a busy
/// host is hundreds of files of ~50 columns each — cloning and merging each file's before the
/// time range leaves a few. Nothing
/// else at planning reads them: the time range picks the files (above), `max(time)` is
/// answered from them, and the Parquet scan prunes row groups and pages by each file's own
/// footer, not by these.
pub struct SlimStatistics {
    inner: Arc<FileStatisticsCache>,
    /// Index of the time column in the file schema.
    time: usize,
}

impl SlimStatistics {
    /// `inner` (the session's cache) for a table whose file schema has its time column at `time`.
    pub fn new(inner: Arc<FileStatisticsCache>, time: usize) -> SlimStatistics {
        SlimStatistics { inner, time }
    }

    /// The cache a table of `schema` plans with: `shared` itself for a table without a time
    /// column, else a slim view of it.
    pub fn wrap(
        shared: Option<Arc<FileStatisticsCache>>,
        schema: &SchemaRef,
    ) -> Option<Arc<FileStatisticsCache>> {
        match (shared, schema.index_of(TIME_COLUMN)) {
            (Some(inner), Ok(time)) => Some(Arc::new(SlimStatistics::new(inner, time))),
            (shared, _) => shared,
        }
    }

    /// `value` with every column's statistics but the time column's unknown.
    fn slim(&self, mut value: CachedFileMetadata) -> CachedFileMetadata {
        let mut stats = value.statistics.as_ref().clone();
        for (c, column) in stats.column_statistics.iter_mut().enumerate() {
            if c != self.time {
                *column = ColumnStatistics::new_unknown();
            }
        }
        value.statistics = Arc::new(stats);
        value
    }
}

impl Cache<TableScopedPath, CachedFileMetadata> for SlimStatistics {
    fn get(&self, key: &TableScopedPath) -> Option<CachedFileMetadata> {
        self.inner.get(key)
    }

    fn put(&self, key: &TableScopedPath, value: CachedFileMetadata) -> Option<CachedFileMetadata> {
        self.inner.put(key, self.slim(value))
    }

    fn remove(&self, k: &TableScopedPath) -> Option<CachedFileMetadata> {
        self.inner.remove(k)
    }

    fn contains_key(&self, k: &TableScopedPath) -> bool {
        self.inner.contains_key(k)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn clear(&self) {
        self.inner.clear()
    }

    fn name(&self) -> String {
        format!("SlimStatistics({})", self.inner.name())
    }

    fn cache_limit(&self) -> usize {
        self.inner.cache_limit()
    }

    fn update_cache_limit(&self, limit: usize) {
        self.inner.update_cache_limit(limit)
    }

    fn cache_ttl(&self) -> Option<std::time::Duration> {
        self.inner.cache_ttl()
    }

    fn update_cache_ttl(&self, ttl: Option<std::time::Duration>) {
        self.inner.update_cache_ttl(ttl)
    }

    fn drop_table_entries(
        &self,
        table_ref: &datafusion::common::TableReference,
    ) -> datafusion::error::Result<()> {
        self.inner.drop_table_entries(table_ref)
    }

    fn list_entries(
        &self,
    ) -> datafusion::common::HashMap<TableScopedPath, CacheEntryInfo<CachedFileMetadata>> {
        self.inner.list_entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::col;
    use datafusion::prelude::lit;

    /// The cache keeps a file's row count and its time column's statistics, and nothing else.
    #[test]
    fn slim_statistics_keep_only_the_time_column() {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::arrow::datatypes::Field;
        use datafusion::arrow::datatypes::Schema;
        use datafusion::common::stats::Precision;
        use datafusion::common::Statistics;
        use datafusion::execution::cache::default_cache::DefaultCache;
        use datafusion::execution::cache::SchemaFingerprint;
        let schema = Schema::new(vec![
            Field::new("pid", DataType::Int32, false),
            Field::new(TIME_COLUMN, DataType::Int64, false),
        ]);
        let column = |min: ScalarValue, max: ScalarValue| ColumnStatistics {
            null_count: Precision::Exact(0),
            min_value: Precision::Exact(min),
            max_value: Precision::Exact(max),
            ..ColumnStatistics::new_unknown()
        };
        let stats = Statistics {
            num_rows: Precision::Exact(10),
            total_byte_size: Precision::Exact(100),
            column_statistics: vec![
                column(ScalarValue::Int32(Some(1)), ScalarValue::Int32(Some(9))),
                column(ScalarValue::Int64(Some(5)), ScalarValue::Int64(Some(50))),
            ],
        };
        let inner: Arc<FileStatisticsCache> = Arc::new(DefaultCache::<
            TableScopedPath,
            CachedFileMetadata,
        >::new(1 << 20));
        let cache = SlimStatistics::new(inner.clone(), 1);
        let key = TableScopedPath {
            table: None,
            path: "date=2026-11-27/part-1.parquet".into(),
        };
        let meta = object_store::ObjectMeta {
            location: key.path.clone(),
            last_modified: Default::default(),
            size: 100,
            e_tag: None,
            version: None,
        };
        cache.put(
            &key,
            CachedFileMetadata::new(
                meta,
                Arc::new(SchemaFingerprint::from_schema(&schema)),
                Arc::new(stats.clone()),
                None,
            ),
        );
        let kept = cache.get(&key).expect("kept").statistics;
        assert_eq!(kept.num_rows, stats.num_rows);
        assert_eq!(kept.column_statistics[1], stats.column_statistics[1]);
        assert_eq!(kept.column_statistics[0], ColumnStatistics::new_unknown());
        // the same entry through the shared cache (the engine reports its length)
        assert_eq!(inner.len(), 1);
    }

    #[test]
    fn time_bounds_come_from_the_conjuncts_on_the_time_column() {
        let t = || col(TIME_COLUMN);
        assert_eq!(
            time_range(&[
                t().gt_eq(lit(10i64)),
                t().lt(lit(20i64)),
                col("pid").eq(lit(4))
            ]),
            Some((10, 19))
        );
        assert_eq!(
            time_range(&[lit(10i64).lt_eq(t()).and(t().lt_eq(lit(30i64)))]),
            Some((10, 30))
        );
        assert_eq!(
            time_range(&[t().between(lit(5i64), lit(7i64))]),
            Some((5, 7))
        );
        assert_eq!(time_range(&[t().eq(lit(9i64))]), Some((9, 9)));
        // an expression of the column, an OR, another column: no bound
        assert_eq!(
            time_range(&[(t() + col("duration_ns")).gt_eq(lit(10i64))]),
            None
        );
        assert_eq!(time_range(&[t().gt(lit(1i64)).or(t().lt(lit(0i64)))]), None);
        assert_eq!(time_range(&[col("pid").gt(lit(1i64))]), None);
        // one bound only
        assert_eq!(time_range(&[t().gt(lit(10i64))]), Some((11, i64::MAX)));
    }
}
