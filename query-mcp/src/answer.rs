//! A statement's answer as the engine gives it (record batches within the row cap), and the
//! forms it leaves in: JSON rows (tools, `run_sql`), typed rows (analyses), text tables and CSV
//! (the CLI).

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::QueryError;

/// The batches of a capped statement.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// At most `security.max_rows` rows.
    pub batches: Vec<RecordBatch>,
    /// More rows existed than the cap allows.
    pub truncated: bool,
}

impl Answer {
    /// Rows held.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// Bytes of the rows held (the slices' own bytes, not the buffers they may share).
    pub fn bytes(&self) -> usize {
        self.batches
            .iter()
            .flat_map(|b| b.columns())
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum()
    }

    /// The rows as JSON objects, cut (and marked truncated) past `max_bytes` of JSON.
    pub fn json(&self, max_bytes: usize) -> Result<Rows, QueryError> {
        let mut rows = to_json_rows(&self.batches)?;
        let mut truncated = self.truncated;
        let mut bytes = 0usize;
        if let Some(cut) = rows.iter().position(|r| {
            bytes += r.to_string().len();
            bytes > max_bytes
        }) {
            rows.truncate(cut);
            truncated = true;
        }
        Ok(Rows { rows, truncated })
    }

    /// The rows decoded into `T`, one per row, by column name.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<Vec<T>, QueryError> {
        let mut out = Vec::with_capacity(self.num_rows());
        for b in self.batches.iter().filter(|b| b.num_rows() > 0) {
            let rows: Vec<T> = serde_arrow::from_record_batch(b).map_err(|e| {
                QueryError::Runtime(format!("decoding rows of {:?}: {e}", b.schema()))
            })?;
            out.extend(rows);
        }
        Ok(out)
    }
}

/// Rows of a capped query, as JSON objects.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The rows as JSON objects.
    pub rows: Vec<Value>,
    /// More rows (or bytes) existed than the caps allow.
    pub truncated: bool,
}

/// A nullable integer column read as 0 when null (sums over no rows, missing ids).
pub fn or_zero<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
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
