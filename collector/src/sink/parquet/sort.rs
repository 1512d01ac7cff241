//! A row group's rows in the table's sort order, (pid, tid, event_name, time): plain keys
//! sorted once, rows gathered from the pieces in slices, string columns as dictionary keys.

use std::sync::Arc;

use anyhow::Result;
use arrow::array::DictionaryArray;
use arrow::array::Int32Array;
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use causeway_proto::table;
use parquet::arrow::ArrowWriter;

/// Bits of a row's index within its piece in the sort key ([`super::ENCODE_CHUNK`] rows a piece at
/// most; the rest of 32 bits number the pieces).
const PIECE_BITS: u32 = 12;

/// Writes the rows of `batches` ordered by (pid, tid, event_name, time_unix_nano): plain keys
/// sorted once, then the rows gathered straight from the pieces in slices, so the sorted copy
/// never exists whole (the writer's memory peak was two full copies of a row group); string
/// columns are gathered as keys into one dictionary each ([`shared_dictionary`]).
///
/// A thread's records of one kind lie together, so the page index prunes the pages of the other
/// kinds: most questions ask about one kind (a process's off-CPU intervals, its run-queue
/// waits), and a thread's off-CPU, run-queue and futex records interleave in time.
pub(super) fn write_sorted<W: std::io::Write + Send>(
    writer: &mut ArrowWriter<W>,
    batches: &[RecordBatch],
) -> Result<()> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int32Type;
    use arrow::datatypes::Int64Type;
    // one row's place: (pid, tid) in one word, the kind and the time since the group's first
    // in another, then the row's batch and index; two word compares decide almost every pair
    // (a tuple of six fields sorts slower). A group holds one hour's rows, so
    // the time fits the 48 bits left (78 h); were it to pass them, order within a thread would
    // loosen, never a row be lost.
    let tmin = batches
        .iter()
        .filter_map(|b| b.column_by_name("time_unix_nano"))
        .filter_map(|c| arrow::compute::min(c.as_primitive::<Int64Type>()))
        .min()
        .unwrap_or(0);
    let mut keys: Vec<(u64, u64, u32)> =
        Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for (b, batch) in batches.iter().enumerate() {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| anyhow::anyhow!("kernel_events has no {name} column"))
        };
        let (pid, tid, time, kind) = (
            col("pid")?.as_primitive::<Int32Type>().values(),
            col("tid")?.as_primitive::<Int32Type>().values(),
            col("time_unix_nano")?.as_primitive::<Int64Type>().values(),
            col("event_name")?.as_string::<i32>(),
        );
        anyhow::ensure!(
            b < 1 << (32 - PIECE_BITS) && batch.num_rows() <= 1 << PIECE_BITS,
            "a row group of {} pieces, one of {} rows",
            batches.len(),
            batch.num_rows()
        );
        keys.extend((0..batch.num_rows()).map(|i| {
            // signed order as unsigned: flip the sign bit
            let thread =
                u64::from(pid[i] as u32 ^ 1 << 31) << 32 | u64::from(tid[i] as u32 ^ 1 << 31);
            let since = (time[i].saturating_sub(tmin) as u64).min((1 << 48) - 1);
            let at = (b as u32) << PIECE_BITS | i as u32;
            (thread, (kind_key(kind.value(i)) & 0xffff) << 48 | since, at)
        }));
    }
    keys.sort_unstable();
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok(());
    };
    // columns no row of the group fills stay shared nulls: gathering them would build a fresh
    // zero-filled array per slice for nothing (most columns, most of the time)
    let columns: Vec<Gather> = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<arrow::array::ArrayRef> =
                batches.iter().map(|b| b.column(c).clone()).collect();
            if !arrays.iter().any(|a| a.null_count() < a.len()) {
                Gather::Nulls
            } else if schema.field(c).data_type() == &arrow::datatypes::DataType::Utf8 {
                shared_dictionary(&arrays)
            } else {
                Gather::Values(arrays)
            }
        })
        .collect();
    let schema = written_schema(&schema);
    for slice in keys.chunks(16 * 1024) {
        let at: Vec<(usize, usize)> = slice
            .iter()
            .map(|k| {
                (
                    (k.2 >> PIECE_BITS) as usize,
                    (k.2 & ((1 << PIECE_BITS) - 1)) as usize,
                )
            })
            .collect();
        let gathered = columns
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| column.gather(field.data_type(), &at))
            .collect::<Result<Vec<_>, _>>()?;
        writer.write(&RecordBatch::try_new(schema.clone(), gathered)?)?;
    }
    Ok(())
}

/// The schema the writer is given: string columns as dictionaries (see [`shared_dictionary`]).
/// The file's Parquet schema is the same either way (a dictionary of strings is written as
/// its strings).
pub(super) fn written_schema(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::DataType;
    let fields: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Arc::new(f.as_ref().clone().with_data_type(DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8),
            ))),
            _ => f.clone(),
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// A column of `len` nulls of a [`written_schema`] type, from the shared zeroed buffer.
fn null_column(data_type: &arrow::datatypes::DataType, len: usize) -> arrow::array::ArrayRef {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    match data_type {
        DataType::Dictionary(_, _) => {
            let keys = table::null_column(&DataType::Int32, len);
            Arc::new(DictionaryArray::<Int32Type>::new(
                keys.as_primitive().clone(),
                arrow::array::new_empty_array(&DataType::Utf8),
            ))
        }
        other => table::null_column(other, len),
    }
}

/// One column of a row group's pieces, ready to be gathered in sort order.
enum Gather {
    /// No row has a value.
    Nulls,
    /// The pieces' arrays.
    Values(Vec<arrow::array::ArrayRef>),
    /// A string column as keys into one array of its distinct values (see
    /// [`shared_dictionary`]).
    Dictionary {
        keys: Vec<arrow::array::ArrayRef>,
        values: arrow::array::ArrayRef,
    },
}

impl Gather {
    /// The rows `at` ((piece, row) pairs) as one array of `data_type` (a [`written_schema`] type).
    fn gather(
        &self,
        data_type: &arrow::datatypes::DataType,
        at: &[(usize, usize)],
    ) -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
        use arrow::array::AsArray;
        fn refs(arrays: &[arrow::array::ArrayRef]) -> Vec<&dyn arrow::array::Array> {
            arrays.iter().map(|a| a.as_ref()).collect()
        }
        match self {
            Gather::Nulls => Ok(null_column(data_type, at.len())),
            Gather::Values(arrays) => arrow::compute::interleave(&refs(arrays), at),
            Gather::Dictionary { keys, values } => {
                let keys = arrow::compute::interleave(&refs(keys), at)?;
                Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
                    keys.as_primitive().clone(),
                    values.clone(),
                )?))
            }
        }
    }
}

/// A string column's pieces as keys into one array of its distinct values: the sort then
/// gathers 4-byte keys instead of copying every string (a copy call per value). The writer
/// takes the dictionaries as the strings they stand for: it builds its own dictionary pages
/// from the values either way.
fn shared_dictionary(pieces: &[arrow::array::ArrayRef]) -> Gather {
    use arrow::array::Array;
    use arrow::array::AsArray;
    // random seeds: task names are chosen by the traced system, and colliding ones must not
    // make a row group's index quadratic
    let mut index: std::collections::HashMap<&[u8], i32, foldhash::fast::RandomState> =
        Default::default();
    let mut values = arrow::array::StringBuilder::new();
    let keys = pieces
        .iter()
        .map(|piece| {
            let piece = piece.as_string::<i32>();
            // consecutive rows often repeat a value (a thread's name, its state)
            let mut last: Option<(&str, i32)> = None;
            let keys: Vec<i32> = (0..piece.len())
                .map(|i| {
                    if piece.is_null(i) {
                        return 0;
                    }
                    let v = piece.value(i);
                    match last {
                        Some((lv, lk)) if lv == v => lk,
                        _ => {
                            let next = index.len() as i32;
                            let k = *index.entry(v.as_bytes()).or_insert_with(|| {
                                values.append_value(v);
                                next
                            });
                            last = Some((v, k));
                            k
                        }
                    }
                })
                .collect();
            Arc::new(Int32Array::new(keys.into(), piece.nulls().cloned())) as arrow::array::ArrayRef
        })
        .collect();
    Gather::Dictionary {
        keys,
        values: Arc::new(values.finish()),
    }
}

/// Groups a thread's rows by event name in the sort: equal names give equal keys, and any new
/// event kind gets its own without a list to keep (FNV-1a; which kind comes first is not
/// meaningful).
fn kind_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
