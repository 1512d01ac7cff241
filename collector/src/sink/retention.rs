//! Retention: deletes whole hour partitions older than the age limit, then the oldest ones while
//! the store is above the byte cap. Only objects inside causeway's partition layout are touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use causeway_proto::layout;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Objects deleted.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Tables whose partitions retention manages.
const TABLES: &[&str] = &[
    "kernel_events",
    "stacks",
    "collector_stats",
    "cuda_histograms",
    "clock_sync",
];

/// One retention pass at `now_unix_nano`. `max_age_hours` 0 or `max_bytes` 0 disable that limit.
pub async fn enforce(
    store: &Arc<dyn ObjectStore>,
    now_unix_nano: i64,
    max_age_hours: u64,
    max_bytes: u64,
) -> Result<Deleted> {
    // bucket -> objects (path, size)
    let mut by_bucket: BTreeMap<i64, Vec<(ObjectPath, u64)>> = BTreeMap::new();
    for t in TABLES {
        let mut list = store.list(Some(&ObjectPath::from(*t)));
        while let Some(meta) = list.next().await {
            let meta = meta?;
            if !meta.location.as_ref().ends_with(".parquet") {
                continue;
            }
            if let Some(b) = layout::bucket_of_path(meta.location.as_ref()) {
                by_bucket
                    .entry(b)
                    .or_default()
                    .push((meta.location, meta.size));
            }
        }
    }
    let mut doomed: Vec<i64> = Vec::new();
    if max_age_hours > 0 {
        // a partition goes once its whole hour is older than the limit
        let now_bucket = layout::hour_bucket(now_unix_nano);
        let oldest_kept = now_bucket - max_age_hours as i64;
        doomed.extend(by_bucket.keys().copied().filter(|b| *b < oldest_kept));
    }
    if max_bytes > 0 {
        let mut total: u64 = by_bucket
            .iter()
            .filter(|(b, _)| !doomed.contains(b))
            .flat_map(|(_, objs)| objs.iter().map(|o| o.1))
            .sum();
        for (b, objs) in &by_bucket {
            if total <= max_bytes {
                break;
            }
            if !doomed.contains(b) {
                doomed.push(*b);
                total -= objs.iter().map(|o| o.1).sum::<u64>();
            }
        }
    }
    let mut deleted = Deleted::default();
    for b in doomed {
        for (path, size) in by_bucket.remove(&b).unwrap_or_default() {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    deleted.objects += 1;
                    deleted.bytes += size;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    const HOUR: i64 = 3_600_000_000_000;

    async fn put(store: &Arc<dyn ObjectStore>, table: &str, bucket: i64, size: usize) {
        let p = format!(
            "{}/part-x.parquet",
            layout::partition_dir(table, bucket, "h")
        );
        store
            .put(&ObjectPath::from(p), PutPayload::from(vec![0u8; size]))
            .await
            .unwrap();
    }

    async fn count(store: &Arc<dyn ObjectStore>) -> usize {
        store.list(None).collect::<Vec<_>>().await.len()
    }

    #[tokio::test]
    async fn age_limit_deletes_whole_old_hours_only() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let now = 500 * HOUR + 10;
        put(&store, "kernel_events", 500 - 73, 10).await;
        put(&store, "stacks", 500 - 73, 10).await;
        put(&store, "kernel_events", 500 - 72, 10).await;
        put(&store, "kernel_events", 500, 10).await;
        let foreign = ObjectPath::from("kernel_events/README");
        store
            .put(&foreign, PutPayload::from(vec![1u8]))
            .await
            .unwrap();
        let d = enforce(&store, now, 72, 0).await.unwrap();
        assert_eq!(
            d,
            Deleted {
                objects: 2,
                bytes: 20
            }
        );
        assert_eq!(
            count(&store).await,
            3,
            "foreign objects and recent hours stay"
        );
    }

    #[tokio::test]
    async fn byte_cap_deletes_oldest_first() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for b in 0..5 {
            put(&store, "kernel_events", 100 + b, 100).await;
        }
        let d = enforce(&store, 105 * HOUR, 0, 250).await.unwrap();
        assert_eq!(d.objects, 3);
        let left: Vec<String> = store
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert!(
            left.iter()
                .all(|p| p.contains("hour=07") || p.contains("hour=08")),
            "{left:?}"
        );
    }
}
