//! Tests of the workspace's zstd patch (`vendor/zstd`): the bulk API's contexts are reused
//! within a thread, come back clean, and Parquet's reader goes through them.

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use zstd::bulk::{kept_on_this_thread, Compressor, Decompressor};

/// Text that compresses well, and differently at levels 1 and 19.
fn sample() -> Vec<u8> {
    (0..20_000u32)
        .flat_map(|i| {
            format!(
                "thread {} waited {} ns on futex 0x{:x}\n",
                i % 17,
                i * 31,
                i % 5
            )
            .into_bytes()
        })
        .collect()
}

#[test]
fn contexts_are_kept_and_handed_out_again_on_the_same_thread() {
    // a fresh thread: its pool starts empty whatever other tests did
    std::thread::spawn(|| {
        assert_eq!(kept_on_this_thread(), (0, 0));
        let d = Decompressor::new().unwrap();
        let c = Compressor::new(3).unwrap();
        drop((d, c));
        assert_eq!(kept_on_this_thread(), (1, 1), "dropped contexts are kept");
        let d = Decompressor::new().unwrap();
        let c = Compressor::new(3).unwrap();
        assert_eq!(
            kept_on_this_thread(),
            (0, 0),
            "new ones take the kept contexts"
        );
        drop((d, c));
        // a context lent out or given a parameter may hold anything: freed, not kept
        let mut c = Compressor::new(3).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        drop(c);
        assert_eq!(kept_on_this_thread(), (1, 0));
    })
    .join()
    .unwrap();
}

#[test]
fn a_kept_context_forgets_its_level_and_dictionary() {
    std::thread::spawn(|| {
        let data = sample();
        // level 19 with a dictionary, then dropped: kept only if small (it compressed, so
        // its workspace is large and it is freed) — either way the next one must be clean
        let dictionary = &data[..4096];
        let mut c = Compressor::with_dictionary(19, dictionary).unwrap();
        let with_dictionary = c.compress(&data).unwrap();
        drop(c);
        let mut d = Decompressor::with_dictionary(dictionary).unwrap();
        assert_eq!(d.decompress(&with_dictionary, data.len()).unwrap(), data);
        drop(d);
        assert_eq!(
            kept_on_this_thread().0,
            1,
            "a decompressor is kept after use"
        );
        // the kept decompressor no longer has the dictionary: a frame that needs it fails
        let mut d = Decompressor::new().unwrap();
        assert!(
            d.decompress(&with_dictionary, data.len()).is_err(),
            "the dictionary of the context's last user is dropped"
        );
        // an unused compressor is kept; reused at another level it compresses at that level
        drop(Compressor::new(19).unwrap());
        assert_eq!(kept_on_this_thread().1, 1);
        let level1 = Compressor::new(1).unwrap().compress(&data).unwrap();
        // zstd's one-shot function, with a context of its own
        let mut reference = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
        zstd::zstd_safe::compress(&mut reference, &data, 1).unwrap();
        assert_eq!(level1, reference, "same bytes as a fresh level-1 context");
        assert_eq!(
            Decompressor::new()
                .unwrap()
                .decompress(&level1, data.len())
                .unwrap(),
            data
        );
    })
    .join()
    .unwrap();
}

#[test]
fn parquet_reads_zstd_columns_through_kept_contexts() {
    std::thread::spawn(|| {
        let n = 50_000i64;
        let batch = RecordBatch::try_from_iter([
            (
                "time_unix_nano",
                Arc::new(Int64Array::from_iter_values(0..n)) as _,
            ),
            (
                "comm",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("worker-{}", i % 7)),
                )) as _,
            ),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .set_max_row_group_row_count(Some(10_000))
            .build();
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let read = || {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.clone()))
                .unwrap()
                .build()
                .unwrap();
            let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
            arrow::compute::concat_batches(&batch.schema(), &batches).unwrap()
        };
        assert_eq!(read(), batch);
        let (d, c) = kept_on_this_thread();
        assert!(
            d >= 1 && c >= 1,
            "the reader's contexts came back: {d} decompressors, {c} compressors"
        );
        // read again: the same contexts serve the 2 columns x 5 row groups, and the data is whole
        assert_eq!(read(), batch);
        assert_eq!(
            kept_on_this_thread(),
            (d, c),
            "no context made or lost by a second read"
        );
    })
    .join()
    .unwrap();
}
