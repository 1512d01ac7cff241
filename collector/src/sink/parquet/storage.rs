//! How the writer stores each column, from the table in `causeway_proto::columns`: zstd or not,
//! page statistics, page size, encoding.

use anyhow::Result;
use arrow::record_batch::RecordBatch;
use causeway_proto::columns;
use causeway_proto::columns::Encoding;
use causeway_proto::columns::KEY_PAGE_ROWS;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::basic::ZstdLevel;
use parquet::file::properties::EnabledStatistics;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Rows per row group of an event file: each is a time slice, sorted by (pid, tid, event_name,
/// time).
pub(super) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// zstd, statistics per column chunk (per page where the table says so), row groups of at most
/// [`ROW_GROUP_ROWS`], small pages and encodings as the table says. Applies to every table by
/// column name (the other tables share `time_unix_nano`, `pid`, …).
fn writer_properties(zstd_level: i32) -> Result<WriterProperties> {
    use parquet::basic::Encoding as Parquet;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    // The writer has one page row limit for all columns; it closes a column's page after any
    // write batch that takes the page past that column's byte limit. Write batches of
    // KEY_PAGE_ROWS and a byte limit of 1 on the key columns close their pages every
    // KEY_PAGE_ROWS rows; the others still close theirs at the row limit or 1 MiB.
    props = props.set_write_batch_size(KEY_PAGE_ROWS);
    for c in columns::KERNEL_EVENTS {
        let path = || ColumnPath::from(c.name);
        let s = c.storage;
        if s.page_index {
            props = props.set_column_statistics_enabled(path(), EnabledStatistics::Page);
        }
        if s.key_pages {
            props = props.set_column_data_page_size_limit(path(), 1);
        }
        let encoding = match s.encoding {
            Encoding::Default => None,
            Encoding::DeltaBinaryPacked => Some(Parquet::DELTA_BINARY_PACKED),
            Encoding::ByteStreamSplit => Some(Parquet::BYTE_STREAM_SPLIT),
        };
        if let Some(e) = encoding {
            props = props
                .set_column_dictionary_enabled(path(), false)
                .set_column_encoding(path(), e);
        }
    }
    Ok(props.build())
}

/// The writer of a `kernel_events` file: columns the table does not compress are stored
/// uncompressed. It leaves out the Arrow schema Arrow writers embed in the footer (~3.3 KB a
/// file): every column's type reads back the same from the Parquet schema.
pub(super) fn event_writer<W: std::io::Write + Send>(
    w: W,
    schema: arrow::datatypes::SchemaRef,
    zstd_level: i32,
) -> Result<ArrowWriter<W>> {
    let mut props = writer_properties(zstd_level)?.into_builder();
    for c in columns::KERNEL_EVENTS.iter().filter(|c| !c.storage.zstd) {
        props = props.set_column_compression(ColumnPath::from(c.name), Compression::UNCOMPRESSED);
    }
    let options = parquet::arrow::arrow_writer::ArrowWriterOptions::new()
        .with_properties(props.build())
        .with_skip_arrow_metadata(true);
    Ok(ArrowWriter::try_new_with_options(
        w,
        super::sort::written_schema(&schema),
        options,
    )?)
}

/// Encodes a batch as a complete Parquet file (see [`writer_properties`]).
pub fn encode(batch: &RecordBatch, zstd_level: i32) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        batch.schema(),
        Some(writer_properties(zstd_level)?),
    )?;
    w.write(batch)?;
    w.close()?;
    Ok(buf)
}
