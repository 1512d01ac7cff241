//! Store URLs shared by the collector and the query service.
//!
//! `--store` accepts `file:///abs/dir`, `file://./rel/dir`, a plain directory path, or
//! `s3://bucket/prefix`. S3 credentials, region and endpoint come from the standard AWS
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`); an `http://` endpoint is allowed as is.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use anyhow::Context;
use anyhow::Result;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use url::Url;

/// Where a causeway store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory (absolute).
    Local(PathBuf),
    /// An S3 (or S3-compatible) bucket and a key prefix without slashes at either end.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Local(p) => write!(f, "file://{}", p.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl StoreLocation {
    /// Parses a `--store` value. Relative local paths are resolved against the working directory.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            bail!("store URL is empty: use file:///dir, a directory path, or s3://bucket/prefix");
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("store URL {s:?} names no bucket: use s3://bucket/prefix");
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        let path = if let Some(rest) = s.strip_prefix("file://") {
            rest
        } else if s.contains("://") {
            bail!("unsupported store URL {s:?}: use file:///dir, a directory path, or s3://bucket/prefix");
        } else {
            s
        };
        if path.is_empty() {
            bail!("store URL {s:?} names no directory");
        }
        let p = PathBuf::from(path);
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir()
                .context("reading the working directory")?
                .join(p)
        };
        Ok(StoreLocation::Local(normalize(abs)))
    }

    /// Opens the store with object paths relative to the store root. `create` makes a missing
    /// local directory (the collector writes); readers get a clear error instead.
    pub fn open(&self, create: bool) -> Result<Arc<dyn ObjectStore>> {
        match self {
            StoreLocation::Local(dir) => {
                if create {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating store directory {}", dir.display()))?;
                } else if !dir.is_dir() {
                    bail!("store directory {} does not exist", dir.display());
                }
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("opening store directory {}", dir.display()))?;
                Ok(Arc::new(fs))
            }
            StoreLocation::S3 { prefix, .. } => {
                let s3 = self.open_bucket()?;
                if prefix.is_empty() {
                    Ok(s3)
                } else {
                    Ok(Arc::new(PrefixStore::new(
                        s3,
                        ObjectPath::from(prefix.as_str()),
                    )))
                }
            }
        }
    }

    /// The store as the query engine registers it: the URL of the object store's root
    /// (`file:///` or `s3://bucket/`) and a store whose paths are absolute under that root.
    pub fn open_for_url(&self) -> Result<(Url, Arc<dyn ObjectStore>)> {
        match self {
            StoreLocation::Local(dir) => {
                if !dir.is_dir() {
                    bail!("store directory {} does not exist", dir.display());
                }
                Ok((Url::parse("file:///")?, Arc::new(LocalFileSystem::new())))
            }
            StoreLocation::S3 { bucket, .. } => {
                Ok((Url::parse(&format!("s3://{bucket}/"))?, self.open_bucket()?))
            }
        }
    }

    /// URL of a table's directory, ending with `/` (what a listing table scans).
    pub fn table_url(&self, table: &str) -> String {
        match self {
            StoreLocation::Local(dir) => {
                format!(
                    "file://{}/{table}/",
                    dir.display().to_string().trim_end_matches('/')
                )
            }
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                format!("s3://{bucket}/{table}/")
            }
            StoreLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{table}/"),
        }
    }

    /// Removes temporary files that a writer killed mid-`put` left behind on a local store
    /// (object_store stages `name#N` and renames it into place). Only files older than
    /// `min_age` go, so a concurrent writer's staging file is never touched. S3 has nothing to
    /// clean: an interrupted PUT leaves no object. Returns how many files were removed.
    pub fn remove_stale_staging(&self, min_age: std::time::Duration) -> usize {
        let StoreLocation::Local(dir) = self else {
            return 0;
        };
        let mut removed = 0;
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = entry.file_name();
                let stale = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|a| a >= min_age);
                if name.to_string_lossy().contains(".parquet#")
                    && stale
                    && std::fs::remove_file(&path).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// The HTTP server behind the store, whose `Date` header every host writing here shares as
    /// a reference clock; `None` for a local directory.
    pub fn http_endpoint(&self) -> Option<String> {
        match self {
            StoreLocation::Local(_) => None,
            StoreLocation::S3 { .. } => Some(s3_endpoint().unwrap_or_else(|| {
                let region = std::env::var("AWS_REGION")
                    .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|_| "us-east-1".into());
                format!("https://s3.{region}.amazonaws.com")
            })),
        }
    }

    fn open_bucket(&self) -> Result<Arc<dyn ObjectStore>> {
        let StoreLocation::S3 { bucket, .. } = self else {
            unreachable!("open_bucket is only called for S3 locations")
        };
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(ep) = s3_endpoint() {
            b = b
                .with_endpoint(&ep)
                .with_allow_http(ep.starts_with("http://"));
            // S3-compatible servers (MinIO, moto) serve buckets under the path, not the host.
            b = b.with_virtual_hosted_style_request(false);
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        let s3 = b
            .build()
            .with_context(|| format!("configuring S3 bucket {bucket}"))?;
        Ok(Arc::new(s3))
    }
}

/// An S3-compatible endpoint from the standard variables, when one is set.
fn s3_endpoint() -> Option<String> {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .ok()
}

/// Removes `.` and `..` segments without touching the file system (the directory may not exist).
fn normalize(p: PathBuf) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        assert_eq!(
            StoreLocation::parse("file:///var/lib/cw").unwrap(),
            StoreLocation::Local("/var/lib/cw".into())
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            StoreLocation::parse("file://./data").unwrap(),
            StoreLocation::Local(cwd.join("data"))
        );
        assert_eq!(
            StoreLocation::parse("data/x/../y").unwrap(),
            StoreLocation::Local(cwd.join("data/y"))
        );
        assert_eq!(
            StoreLocation::parse("s3://b/p/q/").unwrap(),
            StoreLocation::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(
            StoreLocation::parse("s3://b").unwrap().table_url("t"),
            "s3://b/t/"
        );
        assert_eq!(
            StoreLocation::parse("s3://b/p").unwrap().table_url("t"),
            "s3://b/p/t/"
        );
    }

    #[test]
    fn rejects_what_it_cannot_open_with_a_reason() {
        for bad in ["", "gs://x", "s3://", "s3:///p", "file://"] {
            let err = StoreLocation::parse(bad).unwrap_err().to_string();
            assert!(err.contains("store URL"), "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("part-1.parquet#7"), b"half").unwrap();
        std::fs::write(dir.path().join("part-1.parquet"), b"whole").unwrap();
        let here = StoreLocation::Local(dir.path().to_path_buf());
        assert_eq!(
            here.remove_stale_staging(std::time::Duration::from_secs(3600)),
            0,
            "too young"
        );
        assert_eq!(here.remove_stale_staging(std::time::Duration::ZERO), 1);
        assert!(dir.path().join("part-1.parquet").exists());
        let missing = StoreLocation::Local(dir.path().join("nope"));
        assert!(missing.open(false).is_err());
        assert!(missing.open(true).is_ok());
    }
}
