//! The sink's objects read back: partitions, sort order, row groups, storage per column.

use super::*;
use causeway_proto::columns::KEY_PAGE_ROWS;
use causeway_proto::names;
use object_store::memory::InMemory;

/// A sink on an in-memory store, host `h1`, that writes only when flushed.
fn memory_sink() -> (Arc<InMemory>, ParquetSink) {
    let store = Arc::new(InMemory::new());
    let sink = ParquetSink::new(
        store.clone(),
        SinkSettings {
            host: "h1".into(),
            flush_interval: Duration::from_secs(3600),
            flush_rows: 1_000_000,
            zstd_level: 3,
        },
    );
    (store, sink)
}

/// The one `kernel_events` file in `store`.
async fn only_event_file(store: &InMemory) -> impl parquet::file::reader::ChunkReader + 'static {
    let metas: Vec<_> = futures::StreamExt::collect::<Vec<_>>(store.list(None))
        .await
        .into_iter()
        .map(|m| m.unwrap())
        .filter(|m| m.location.as_ref().starts_with("kernel_events/"))
        .collect();
    assert_eq!(metas.len(), 1, "{metas:?}");
    store
        .get(&metas[0].location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

#[tokio::test]
async fn writes_one_object_per_partition_and_table() {
    let (store, mut sink) = memory_sink();
    let hour = 3_600_000_000_000_i64;
    let ev = |t: i64| KernelEvent {
        time_unix_nano: t,
        event_name: names::event::OFF_CPU,
        ..Default::default()
    };
    sink.push(
        &mut vec![ev(10 * hour + 5), ev(10 * hour + 1), ev(11 * hour)],
        vec![],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        sink.totals().files,
        0,
        "below thresholds nothing is written"
    );
    sink.flush().await.unwrap();
    let mut paths: Vec<String> = futures::StreamExt::collect::<Vec<_>>(store.list(None))
        .await
        .into_iter()
        .map(|m| m.unwrap().location.to_string())
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[0].starts_with("kernel_events/date=1970-01-01/hour=10/host=h1/part-"),
        "{paths:?}"
    );
    assert!(paths[1].contains("hour=11"), "{paths:?}");
    assert_eq!(sink.totals().rows, 3);
    assert_eq!(sink.buffered_rows(), 0);
}

/// A row group lists each thread's rows kind by kind, each kind in time order, so the page
/// index can skip the other kinds of a thread: a shuffled mix of two threads' off-CPU,
/// run-queue and futex records comes back grouped, and nothing is lost.
#[test]
fn rows_are_grouped_by_thread_then_kind_then_time() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int32Type;
    use arrow::datatypes::Int64Type;
    let kinds = [
        names::event::OFF_CPU,
        names::event::RUNQ,
        names::event::FUTEX_WAIT,
    ];
    let mut events = Vec::new();
    for k in 0..300i64 {
        events.push(KernelEvent {
            time_unix_nano: 1_000_000 - k * 7 % 1000 * 1000 + k,
            pid: 10,
            tid: 11 + (k % 2) as i32,
            event_name: kinds[(k % 3) as usize],
            ..Default::default()
        });
    }
    let batch = table::kernel_events_batch(&events).unwrap();
    let file = tempfile::tempfile().unwrap();
    let mut w = event_writer(file.try_clone().unwrap(), batch.schema(), 3).unwrap();
    // two pieces, as a row group gathers several pushes
    write_sorted(&mut w, &[batch.slice(0, 150), batch.slice(150, 150)]).unwrap();
    w.close().unwrap();
    let rows: Vec<(i32, String, i64)> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let tid = b
                    .column_by_name("tid")
                    .unwrap()
                    .as_primitive::<Int32Type>()
                    .clone();
                let time = b
                    .column_by_name("time_unix_nano")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone();
                let kind = b
                    .column_by_name("event_name")
                    .unwrap()
                    .as_string::<i32>()
                    .clone();
                (0..b.num_rows())
                    .map(|i| (tid.value(i), kind.value(i).to_string(), time.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
    assert_eq!(rows.len(), 300);
    let mut seen = std::collections::BTreeSet::new();
    for pair in rows.windows(2) {
        let ((t0, k0, ns0), (t1, k1, ns1)) = (&pair[0], &pair[1]);
        assert!(t0 <= t1, "threads in order: {pair:?}");
        if t0 == t1 && k0 == k1 {
            assert!(ns0 <= ns1, "time ascends within a kind: {pair:?}");
        } else {
            // a (thread, kind) run ends and never starts again
            assert!(seen.insert((*t0, k0.clone())), "{t0} {k0} split: {pair:?}");
        }
    }
    assert_eq!(
        seen.len(),
        5,
        "six (thread, kind) runs, five of them ended: {seen:?}"
    );
}

/// Strings are gathered as keys into one dictionary per column (shared_dictionary): every
/// row reads back with its own values, across pieces, nulls, repeats and one-off values,
/// and the file's strings are plain strings again.
#[test]
fn string_columns_read_back_row_for_row() {
    use arrow::array::Array;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let states = [names::state::SLEEP, names::state::DISK];
    let events: Vec<KernelEvent> = (0..3000i64)
        .map(|k| KernelEvent {
            time_unix_nano: 1_000_000 + (k * 7919) % 3000,
            pid: 10,
            tid: 11 + (k % 3) as i32,
            comm: format!("worker-{}", k % 3).into(),
            event_name: names::event::OFF_CPU,
            // nulls, repeats, and a value no other row has
            state: (k % 5 != 0).then_some(states[(k % 2) as usize]),
            waker_comm: (k % 7 == 0).then(|| format!("waker-{}", k % 4).into()),
            container_id: (k % 2 == 0).then(|| format!("{k:064x}")),
            ..Default::default()
        })
        .collect();
    let row = |e: &KernelEvent| {
        (
            e.time_unix_nano,
            e.comm.to_string(),
            e.state.map(str::to_string),
            e.waker_comm.as_ref().map(|c| c.to_string()),
            e.container_id.clone(),
        )
    };
    let mut want: Vec<_> = events.iter().map(row).collect();
    let batch = table::kernel_events_batch(&events).unwrap();
    let file = tempfile::tempfile().unwrap();
    let mut w = event_writer(file.try_clone().unwrap(), batch.schema(), 3).unwrap();
    let pieces: Vec<RecordBatch> = (0..3).map(|p| batch.slice(p * 1000, 1000)).collect();
    write_sorted(&mut w, &pieces).unwrap();
    w.close().unwrap();
    let mut got = Vec::new();
    for b in parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap() {
        let b = b.unwrap();
        let text = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
        let (comm, state, waker, container) = (
            text("comm"),
            text("state"),
            text("waker_comm"),
            text("container_id"),
        );
        let opt =
            |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        let time = b
            .column_by_name("time_unix_nano")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for i in 0..b.num_rows() {
            got.push((
                time.value(i),
                comm.value(i).to_string(),
                opt(&state, i),
                opt(&waker, i),
                opt(&container, i),
            ));
        }
    }
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "rows differ: first {:?}",
        got.iter().zip(&want).find(|(g, w)| g != w)
    );
}

/// An event file's row groups are whole pushes up to ROW_GROUP_ROWS rows, the last one the
/// rest: the writer never splits a sorted group (it once left a group of 65,536 rows and
/// one of the pushes' remainder), and its columns read back with the table's Arrow
/// types and nullability although the Arrow schema is left out of the footer.
#[tokio::test]
async fn event_files_are_whole_row_groups_and_read_back_the_table_schema() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let (store, mut sink) = memory_sink();
    let total = 70_000;
    for piece in 0..total / 1000 + 1 {
        let mut events: Vec<KernelEvent> = (piece * 1000..((piece + 1) * 1000).min(total))
            .map(|k| KernelEvent {
                time_unix_nano: 1_000_000 + k as i64,
                duration_ns: 5_000 + (k as i64 * 7919) % 100_000,
                pid: 10,
                tid: 11,
                event_name: names::event::OFF_CPU,
                state: Some(names::state::SLEEP),
                ..Default::default()
            })
            .collect();
        sink.push(&mut events, vec![], vec![]).await.unwrap();
    }
    sink.flush().await.unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(only_event_file(&store).await).unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(
        groups,
        vec![65_000, 5_000],
        "row groups of whole 1000-row pushes"
    );
    assert!(
        reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .is_none(),
        "no Arrow schema in the footer"
    );
    let expected = table::kernel_events_batch(&[]).unwrap().schema();
    for (read, want) in reader.schema().fields().iter().zip(expected.fields()) {
        assert_eq!(
            (read.name(), read.data_type(), read.is_nullable()),
            (want.name(), want.data_type(), want.is_nullable())
        );
    }
    assert_eq!(reader.schema().fields().len(), expected.fields().len());
    let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, total);
}

/// The layout the readers and P6 rely on: times delta-encoded, durations split into byte
/// streams (both read back exactly), zstd only where the column table says, and a page index of
/// min/max only on the sort key and the trace ids, while every column keeps its page
/// offsets (a page skipped on the key is skipped in every column read).
#[tokio::test]
async fn event_files_index_pages_on_the_sort_key_only_and_split_durations() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::basic::Encoding;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    let (store, mut sink) = memory_sink();
    let duration = |k: i64| {
        if k % 3 == 0 {
            0
        } else {
            1 + k * k * 7919 % 9_000_000
        }
    };
    let mut events: Vec<KernelEvent> = (0..30_000_i64)
        .map(|k| KernelEvent {
            time_unix_nano: 1_000_000 + k * 1013,
            duration_ns: duration(k),
            pid: 10,
            tid: 11 + (k % 2) as i32,
            event_name: names::event::RUNQ,
            ..Default::default()
        })
        .collect();
    sink.push(&mut events, vec![], vec![]).await.unwrap();
    sink.flush().await.unwrap();
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
        only_event_file(&store).await,
        options,
    )
    .unwrap();
    let meta = reader.metadata().clone();
    let group = meta.row_group(0);
    let column = |name: &str| {
        let at = (0..group.num_columns())
            .find(|&c| group.column(c).column_path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        (at, group.column(at))
    };
    let encodings = |name: &str| column(name).1.encodings().collect::<Vec<_>>();
    assert!(encodings("time_unix_nano").contains(&Encoding::DELTA_BINARY_PACKED));
    assert!(encodings("duration_ns").contains(&Encoding::BYTE_STREAM_SPLIT));
    // zstd only where it shrinks the column; the rest is read without a codec
    for name in ["time_unix_nano", "duration_ns", "tid", "prev_tid", "comm"] {
        assert!(
            matches!(
                column(name).1.compression(),
                parquet::basic::Compression::ZSTD(_)
            ),
            "{name} is zstd"
        );
    }
    for name in ["event_name", "waker_tid", "futex_uaddr", "kernel_stack_id"] {
        assert_eq!(
            column(name).1.compression(),
            parquet::basic::Compression::UNCOMPRESSED,
            "{name} is uncompressed"
        );
    }
    let index = &meta.column_index().expect("a column index")[0];
    let offsets = &meta.offset_index().expect("an offset index")[0];
    let indexed = causeway_proto::columns::KERNEL_EVENTS
        .iter()
        .filter(|c| c.storage.page_index);
    for name in indexed.map(|c| c.name) {
        assert!(
            !matches!(index[column(name).0], ColumnIndexMetaData::NONE),
            "{name} has page statistics"
        );
    }
    for name in ["duration_ns", "state", "cpu", "comm", "prev_tid"] {
        assert!(
            matches!(index[column(name).0], ColumnIndexMetaData::NONE),
            "{name} has no page statistics"
        );
    }
    assert!(offsets.iter().all(|o| !o.page_locations().is_empty()));
    // pages of KEY_PAGE_ROWS rows on the key columns, bigger ones elsewhere
    let page_rows = |name: &str| {
        let pages = offsets[column(name).0].page_locations();
        let firsts: Vec<i64> = pages.iter().map(|p| p.first_row_index).collect();
        let mut rows: Vec<i64> = firsts.windows(2).map(|w| w[1] - w[0]).collect();
        rows.push(group.num_rows() - firsts.last().copied().unwrap_or(0));
        rows
    };
    let keyed = causeway_proto::columns::KERNEL_EVENTS
        .iter()
        .filter(|c| c.storage.key_pages);
    for name in keyed.map(|c| c.name) {
        let rows = page_rows(name);
        assert!(
            rows.len() >= 30_000 / KEY_PAGE_ROWS && rows.iter().all(|&n| n <= KEY_PAGE_ROWS as i64),
            "{name}: pages of {rows:?} rows"
        );
    }
    for name in ["time_unix_nano", "duration_ns", "comm"] {
        let rows = page_rows(name);
        assert!(rows.len() <= 2, "{name}: pages of {rows:?} rows");
    }
    let mut read: Vec<(i64, i64)> = Vec::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (t, d) = (col("time_unix_nano"), col("duration_ns"));
        read.extend(t.values().iter().zip(d.values()).map(|(t, d)| (*t, *d)));
    }
    read.sort_unstable();
    let want: Vec<(i64, i64)> = (0..30_000)
        .map(|k| (1_000_000 + k * 1013, duration(k)))
        .collect();
    assert_eq!(read, want);
}
