//! A decoded window's rows as a table that skips whole batches by event kind, thread and time.
//!
//! A tool asks several questions of one window (the causal chain: per thread, wakers, CPU
//! holders, the longest wait, what a thread did during it), most about one kind or one thread.
//! An in-memory table has no statistics: each question evaluated its `event_name` comparison
//! on every row (strings) and copied out the rows it kept. The window's rows arrive sorted by
//! process, thread, kind and time (the collector's sort order), so its batches are cut where
//! the kind changes, and each batch knows its kind and the range of its threads and times:
//! a question about one kind reads only that kind's batches, and its kind comparison is
//! answered by the choice of batches (the filter is exact, DataFusion does not evaluate it
//! again); one about a thread over a span reads the few batches that can hold it.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::Array;
use arrow::array::AsArray;
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::datatypes::Int32Type;
use arrow::datatypes::Int64Type;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::Operator;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;

use crate::pruned::column_range;
use crate::pruned::TIME_COLUMN;

const KIND: &str = "event_name";
const THREAD: &str = "tid";

/// One batch and what it holds.
#[derive(Debug)]
struct Held {
    batch: RecordBatch,
    /// Its one kind, when the table has a kind column.
    kind: Option<String>,
    /// Inclusive ranges of its threads and times (`None`: unknown, never skipped by them).
    threads: Option<(i64, i64)>,
    times: Option<(i64, i64)>,
}

/// The table (see the module docs).
#[derive(Debug)]
pub struct WindowTable {
    schema: SchemaRef,
    /// Per partition, its batches.
    parts: Vec<Vec<Held>>,
    /// Every batch holds one kind: filters on the kind are answered exactly.
    by_kind: bool,
}

impl WindowTable {
    /// The table of `parts` (batches of `schema`), each batch cut where the kind changes.
    pub fn new(schema: SchemaRef, parts: Vec<Vec<RecordBatch>>) -> WindowTable {
        let kind_col = schema
            .index_of(KIND)
            .ok()
            .filter(|&c| schema.field(c).data_type() == &DataType::Utf8View);
        let parts: Vec<Vec<Held>> = parts
            .into_iter()
            .map(|batches| {
                batches
                    .into_iter()
                    .flat_map(|b| cut_by_kind(b, kind_col))
                    .collect()
            })
            .collect();
        let by_kind = kind_col.is_some() && parts.iter().flatten().all(|h| h.kind.is_some());
        WindowTable {
            schema,
            parts,
            by_kind,
        }
    }
}

/// `batch` cut into runs of one kind, each with what it holds.
fn cut_by_kind(batch: RecordBatch, kind_col: Option<usize>) -> Vec<Held> {
    let Some(c) = kind_col else {
        return vec![held(batch, None)];
    };
    let kinds = batch.column(c).as_string_view();
    if kinds.null_count() > 0 {
        return vec![held(batch, None)];
    }
    let mut out = Vec::new();
    let mut start = 0;
    for row in 1..=batch.num_rows() {
        if row == batch.num_rows() || kinds.value(row) != kinds.value(start) {
            let kind = kinds.value(start).to_string();
            out.push(held(batch.slice(start, row - start), Some(kind)));
            start = row;
        }
    }
    out
}

fn held(batch: RecordBatch, kind: Option<String>) -> Held {
    let range = |name: &str| -> Option<(i64, i64)> {
        let col = batch.column_by_name(name)?;
        match col.data_type() {
            DataType::Int32 => {
                let a = col.as_primitive::<Int32Type>();
                Some((
                    arrow::compute::min(a)? as i64,
                    arrow::compute::max(a)? as i64,
                ))
            }
            DataType::Int64 => {
                let a = col.as_primitive::<Int64Type>();
                Some((arrow::compute::min(a)?, arrow::compute::max(a)?))
            }
            _ => None,
        }
    };
    // (nulls are left out of the ranges: the ranges asked come from comparisons, which no
    // null passes)
    Held {
        threads: range(THREAD),
        times: range(TIME_COLUMN),
        kind,
        batch,
    }
}

/// The kinds a filter allows, when it is only a comparison of the kind column with literals
/// (`=`, `IN`, an OR of them); `None` for any other filter.
fn kinds_of(e: &Expr) -> Option<BTreeSet<String>> {
    let literal = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    };
    let is_kind = |e: &Expr| matches!(e, Expr::Column(c) if c.name == KIND);
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
            if is_kind(&b.left) {
                literal(&b.right).map(|k| BTreeSet::from([k]))
            } else if is_kind(&b.right) {
                literal(&b.left).map(|k| BTreeSet::from([k]))
            } else {
                None
            }
        }
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let mut kinds = kinds_of(&b.left)?;
            kinds.extend(kinds_of(&b.right)?);
            Some(kinds)
        }
        Expr::InList(l) if !l.negated && is_kind(&l.expr) => {
            l.list.iter().map(literal).collect::<Option<BTreeSet<_>>>()
        }
        _ => None,
    }
}

fn overlaps(held: Option<(i64, i64)>, asked: Option<(i64, i64)>) -> bool {
    match (held, asked) {
        (Some((lo, hi)), Some((a, b))) => lo <= b && a <= hi,
        _ => true,
    }
}

#[async_trait]
impl TableProvider for WindowTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.by_kind && kinds_of(f).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let kinds = filters
            .iter()
            .filter_map(kinds_of)
            .reduce(|a, b| a.intersection(&b).cloned().collect());
        let (threads, times) = (
            column_range(filters, THREAD),
            column_range(filters, TIME_COLUMN),
        );
        let parts: Vec<Vec<RecordBatch>> = self
            .parts
            .iter()
            .map(|part| {
                part.iter()
                    .filter(|h| match (&kinds, &h.kind) {
                        (Some(k), Some(kind)) => k.contains(kind),
                        _ => true,
                    })
                    .filter(|h| overlaps(h.threads, threads) && overlaps(h.times, times))
                    .map(|h| h.batch.clone())
                    .collect()
            })
            .collect();
        tracing::trace!(
            read = parts.iter().map(Vec::len).sum::<usize>(),
            of = self.parts.iter().map(Vec::len).sum::<usize>(),
            ?kinds,
            ?threads,
            ?times,
            "window batches"
        );
        Ok(MemorySourceConfig::try_new_exec(
            &parts,
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::array::Int64Array;
    use arrow::array::StringViewArray;
    use arrow::datatypes::Field;
    use arrow::datatypes::Schema;
    use datafusion::prelude::SessionContext;

    /// Questions about one kind, one thread or one span see exactly the rows a plain table
    /// gives them, and a kind's filter is not evaluated again.
    #[tokio::test]
    async fn questions_see_the_rows_a_plain_table_gives() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(TIME_COLUMN, DataType::Int64, false),
            Field::new(THREAD, DataType::Int32, false),
            Field::new(KIND, DataType::Utf8View, false),
            Field::new("duration_ns", DataType::Int64, true),
        ]));
        // thread 1: 3 off-CPU then 2 run-queue rows; thread 2: 2 off-CPU rows — in two batches,
        // the first crossing both a kind and a thread boundary
        let batch = |t: Vec<i64>, tid: Vec<i32>, k: Vec<&str>, d: Vec<Option<i64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(t)),
                    Arc::new(Int32Array::from(tid)),
                    Arc::new(StringViewArray::from(k)),
                    Arc::new(Int64Array::from(d)),
                ],
            )
            .unwrap()
        };
        let parts = vec![
            vec![batch(
                vec![10, 20, 30, 15, 25],
                vec![1, 1, 1, 1, 1],
                vec![
                    "sched.off_cpu",
                    "sched.off_cpu",
                    "sched.off_cpu",
                    "sched.runq",
                    "sched.runq",
                ],
                vec![Some(1), Some(2), Some(3), Some(4), None],
            )],
            vec![batch(
                vec![12, 40],
                vec![2, 2],
                vec!["sched.off_cpu", "sched.off_cpu"],
                vec![Some(5), Some(6)],
            )],
        ];
        let window = SessionContext::new();
        let table = WindowTable::new(schema.clone(), parts.clone());
        assert!(table.by_kind);
        window.register_table("t", Arc::new(table)).unwrap();
        let plain = SessionContext::new();
        plain
            .register_table(
                "t",
                Arc::new(datafusion::datasource::MemTable::try_new(schema, parts).unwrap()),
            )
            .unwrap();
        for q in [
            "SELECT tid, event_name, count(*) AS n, sum(duration_ns) AS d FROM t WHERE event_name = 'sched.runq' GROUP BY tid, event_name",
            "SELECT count(*) AS n FROM t WHERE event_name IN ('sched.off_cpu', 'sched.runq')",
            "SELECT count(*) AS n FROM t WHERE event_name = 'block.io'",
            "SELECT time_unix_nano FROM t WHERE tid = 1 AND event_name = 'sched.off_cpu' AND time_unix_nano >= 15 AND time_unix_nano < 30 ORDER BY time_unix_nano",
            "SELECT time_unix_nano FROM t WHERE tid = 2 AND time_unix_nano > 11 ORDER BY time_unix_nano",
            "SELECT count(*) AS n FROM t WHERE duration_ns IS NULL OR event_name = 'sched.off_cpu'",
        ] {
            let a = window.sql(q).await.unwrap().collect().await.unwrap();
            let b = plain.sql(q).await.unwrap().collect().await.unwrap();
            assert_eq!(
                arrow::util::pretty::pretty_format_batches(&a).unwrap().to_string(),
                arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string(),
                "{q}"
            );
        }
        // the kind's filter is answered by the choice of batches: no filter left in the plan
        let plan = window
            .sql("EXPLAIN SELECT count(*) FROM t WHERE event_name = 'sched.runq'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&plan)
            .unwrap()
            .to_string();
        assert!(!text.contains("FilterExec"), "{text}");
    }
}
