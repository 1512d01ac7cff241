//! A window's rows held in memory as they arrive, keeping only the columns that have values.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::prelude::col;
use datafusion::prelude::lit;
use datafusion::prelude::SessionContext;

use crate::error::QueryError;

/// Rows of a window as they arrive, holding only the columns that have values: most
/// kind-specific columns are empty in one process's window, and holding their decoded nulls
/// would cost 8 bytes per row each.
pub(super) struct SparseWindow {
    schema: SchemaRef,
    /// Per batch, per column: the array, or `None` where the batch had no value in it.
    batches: Vec<(usize, Vec<Option<arrow::array::ArrayRef>>)>,
    bytes: usize,
}

impl SparseWindow {
    pub(super) fn new(schema: SchemaRef) -> Self {
        SparseWindow {
            schema,
            batches: Vec::new(),
            bytes: 0,
        }
    }

    /// Keeps a batch; false once the window holds more than `max_bytes`.
    pub(super) fn push(&mut self, batch: &RecordBatch, max_bytes: usize) -> bool {
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

    /// Bytes of the arrays held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Rows held.
    pub(super) fn rows(&self) -> usize {
        self.batches.iter().map(|(n, _)| n).sum()
    }

    /// The window as a table with the full schema: columns with values come from memory, the
    /// empty ones are typed null literals (which the planner folds: `x IS NOT NULL` on them is
    /// false without looking at a row). `partitions`: the session's target partitions (one per
    /// core), so scans of the window run in parallel.
    pub(super) fn into_view(
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
