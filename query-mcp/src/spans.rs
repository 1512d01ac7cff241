//! The `app_spans` table: application traces read in place from the OTLP files the OpenTelemetry
//! Collector's awss3exporter / fileexporter writes (`traces/year=…/month=…/day=…/hour=…/minute=…/*`),
//! marshalers `otlp_proto` (`.binpb`, `.pb`) and `otlp_json` (`.json`, one request per file or
//! per line), optionally gzip-compressed (`.gz`).
//!
//! Files are immutable once written, so each is decoded once and its rows are cached by
//! (path, size); a scan lists the prefix, decodes only new files and serves the rest from memory.
//! A file that does not decode is skipped with a warning naming it, never failing the query.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::Mutex;

use arrow::array::ArrayRef;
use arrow::array::Int32Builder;
use arrow::array::Int64Builder;
use arrow::array::StringBuilder;
use arrow::datatypes::DataType;
use arrow::datatypes::Field;
use arrow::datatypes::Schema;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use causeway_proto::names::attr;
use datafusion::catalog::Session;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::TracesData;

/// Table name.
pub const TABLE: &str = "app_spans";

/// Where trace files are looked for, under the store root (awss3exporter's `s3_prefix`).
pub const TRACES_PREFIX: &str = "traces";

/// Schema of `app_spans`.
pub fn schema() -> SchemaRef {
    use DataType::*;
    let n = |name: &str, dt: DataType| Field::new(name, dt, true);
    let r = |name: &str, dt: DataType| Field::new(name, dt, false);
    Arc::new(Schema::new(vec![
        r("trace_id", Utf8),
        r("span_id", Utf8),
        n("parent_span_id", Utf8),
        r("service_name", Utf8),
        r("name", Utf8),
        r("kind", Utf8),
        r("start_time_unix_nano", Int64),
        r("end_time_unix_nano", Int64),
        r("duration_ns", Int64),
        r("status_code", Utf8),
        n("pid", Int32),
        n("tid", Int32),
        n("thread_name", Utf8),
        n("host_name", Utf8),
        r("attributes", Utf8),
        r("source_file", Utf8),
    ]))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value_json(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> serde_json::Value {
    use serde_json::json;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => json!(s),
        Some(Value::BoolValue(b)) => json!(b),
        Some(Value::IntValue(i)) => json!(i),
        Some(Value::DoubleValue(d)) => json!(d),
        Some(Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|x| value_json(&Some(x.clone())))
            .collect(),
        Some(Value::KvlistValue(l)) => attrs_json(&l.values),
        Some(Value::BytesValue(b)) => json!(hex(b)),
        _ => serde_json::Value::Null,
    }
}

fn attrs_json(kvs: &[KeyValue]) -> serde_json::Value {
    serde_json::Value::Object(
        kvs.iter()
            .map(|kv| (kv.key.clone(), value_json(&kv.value)))
            .collect(),
    )
}

fn int_attr(kvs: &[KeyValue], key: &str) -> Option<i64> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            Value::StringValue(s) => s.parse().ok(),
            _ => None,
        })
}

fn str_attr(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

const KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];
const STATUS: [&str; 3] = ["unset", "ok", "error"];

/// Decodes one file's bytes by its name. Errors say what was expected.
pub fn decode_file(name: &str, bytes: &[u8]) -> Result<Vec<TracesData>, String> {
    let (base, data) = if let Some(b) = name.strip_suffix(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        (b, std::borrow::Cow::Owned(out))
    } else {
        (name, std::borrow::Cow::Borrowed(bytes))
    };
    if base.ends_with(".json") || base.ends_with(".jsonl") {
        let text = std::str::from_utf8(&data).map_err(|e| format!("not UTF-8 JSON: {e}"))?;
        if let Ok(one) = serde_json::from_str::<TracesData>(text) {
            return Ok(vec![one]);
        }
        // fileexporter: one request per line
        return text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str::<TracesData>(l)
                    .map_err(|e| format!("OTLP JSON line {}: {e}", i + 1))
            })
            .collect();
    }
    use prost::Message;
    TracesData::decode(&*data)
        .map(|t| vec![t])
        .map_err(|e| format!("OTLP protobuf: {e}"))
}

/// The rows of one file as a batch.
pub fn to_batch(source: &str, requests: &[TracesData]) -> Result<RecordBatch, DataFusionError> {
    let mut trace_id = StringBuilder::new();
    let mut span_id = StringBuilder::new();
    let mut parent = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut start = Int64Builder::new();
    let mut end = Int64Builder::new();
    let mut dur = Int64Builder::new();
    let mut status = StringBuilder::new();
    let mut pid = Int32Builder::new();
    let mut tid = Int32Builder::new();
    let mut tname = StringBuilder::new();
    let mut host = StringBuilder::new();
    let mut attrs = StringBuilder::new();
    let mut src = StringBuilder::new();
    for req in requests {
        for rs in &req.resource_spans {
            let res_attrs = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let svc =
                str_attr(res_attrs, "service.name").unwrap_or_else(|| "unknown_service".into());
            let res_pid = int_attr(res_attrs, attr::PROCESS_PID);
            // matches the collector's host partition when both take the machine's host name
            let res_host = str_attr(res_attrs, "host.name");
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    trace_id.append_value(hex(&s.trace_id));
                    span_id.append_value(hex(&s.span_id));
                    if s.parent_span_id.is_empty() {
                        parent.append_null();
                    } else {
                        parent.append_value(hex(&s.parent_span_id));
                    }
                    service.append_value(&svc);
                    name.append_value(&s.name);
                    kind.append_value(KINDS.get(s.kind as usize).copied().unwrap_or("unspecified"));
                    let (st, en) = (s.start_time_unix_nano as i64, s.end_time_unix_nano as i64);
                    start.append_value(st);
                    end.append_value(en);
                    dur.append_value((en - st).max(0));
                    let code = s.status.as_ref().map(|x| x.code as usize).unwrap_or(0);
                    status.append_value(STATUS.get(code).copied().unwrap_or("unset"));
                    pid.append_option(
                        int_attr(&s.attributes, attr::PROCESS_PID)
                            .or(res_pid)
                            .map(|p| p as i32),
                    );
                    tid.append_option(int_attr(&s.attributes, attr::THREAD_ID).map(|t| t as i32));
                    tname.append_option(str_attr(&s.attributes, attr::THREAD_NAME));
                    host.append_option(res_host.as_deref());
                    attrs.append_value(attrs_json(&s.attributes).to_string());
                    src.append_value(source);
                }
            }
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(service.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(dur.finish()),
        Arc::new(status.finish()),
        Arc::new(pid.finish()),
        Arc::new(tid.finish()),
        Arc::new(tname.finish()),
        Arc::new(host.finish()),
        Arc::new(attrs.finish()),
        Arc::new(src.finish()),
    ];
    Ok(RecordBatch::try_new(schema(), cols)?)
}

/// `app_spans` over one prefix of an object store.
#[derive(Debug)]
pub struct AppSpans {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// path → (size, rows); files are immutable, so size identifies a version
    cache: Mutex<HashMap<Path, (u64, RecordBatch)>>,
}

impl AppSpans {
    /// Spans under `prefix` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> AppSpans {
        AppSpans {
            store,
            prefix: Path::from(prefix),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn is_trace_file(p: &Path) -> bool {
        let n = p.filename().unwrap_or("");
        let n = n.strip_suffix(".gz").unwrap_or(n);
        !n.starts_with('.')
            && [".binpb", ".pb", ".proto", ".json", ".jsonl"]
                .iter()
                .any(|e| n.ends_with(e))
    }

    /// All rows, decoding only files not seen before.
    pub async fn batches(&self) -> Result<Vec<RecordBatch>, DataFusionError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut out = Vec::with_capacity(metas.len());
        let mut live = std::collections::HashSet::new();
        for m in metas
            .into_iter()
            .filter(|m| Self::is_trace_file(&m.location))
        {
            live.insert(m.location.clone());
            let cached = self
                .cache
                .lock()
                .expect("cache lock")
                .get(&m.location)
                .cloned();
            if let Some((_, b)) = cached.filter(|(s, _)| *s == m.size) {
                out.push(b);
                continue;
            }
            let bytes = match self.store.get(&m.location).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
                Err(object_store::Error::NotFound { .. }) => continue, // deleted by retention meanwhile
                Err(e) => return Err(DataFusionError::External(Box::new(e))),
            };
            let name = m.location.to_string();
            match decode_file(&name, &bytes) {
                Ok(reqs) => {
                    let b = to_batch(&name, &reqs)?;
                    self.cache
                        .lock()
                        .expect("cache lock")
                        .insert(m.location.clone(), (m.size, b.clone()));
                    out.push(b);
                }
                Err(e) => tracing::warn!("app_spans: skipping {name}: {e}"),
            }
        }
        self.cache
            .lock()
            .expect("cache lock")
            .retain(|p, _| live.contains(p));
        Ok(out)
    }
}

#[async_trait]
impl TableProvider for AppSpans {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batches = self.batches().await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            schema(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn sample() -> TracesData {
        let kv = |k: &str, v: Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        TracesData {
            resource_spans: vec![ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![kv("service.name", Value::StringValue("shop".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1; 8],
                        name: "GET /cart".into(),
                        kind: 2,
                        start_time_unix_nano: 1_000,
                        end_time_unix_nano: 5_000,
                        attributes: vec![
                            kv("thread.id", Value::IntValue(77)),
                            kv("process.pid", Value::IntValue(70)),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn decodes_protobuf_json_and_gzip() {
        use prost::Message;
        let t = sample();
        let pb = t.encode_to_vec();
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("abababab"), "OTLP JSON ids are hex: {json}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &pb).unwrap();
        let gz = gz.finish().unwrap();
        for (name, bytes) in [
            ("a.binpb", pb.clone()),
            ("a.json", json.clone().into_bytes()),
            ("a.binpb.gz", gz),
        ] {
            let reqs = decode_file(name, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let b = to_batch(name, &reqs).unwrap();
            assert_eq!(b.num_rows(), 1, "{name}");
            let row = crate::answer::to_json_rows(&[b]).unwrap().remove(0);
            assert_eq!(row["trace_id"], "abababababababababababababababab");
            assert_eq!(row["span_id"], "0101010101010101");
            assert_eq!(
                (row["tid"].as_i64(), row["pid"].as_i64()),
                (Some(77), Some(70))
            );
            assert_eq!(
                (row["kind"].as_str(), row["service_name"].as_str()),
                (Some("server"), Some("shop"))
            );
            assert_eq!(row["duration_ns"], 4_000);
        }
        let lines = format!("{json}\n{json}\n");
        assert_eq!(
            decode_file("b.json", lines.as_bytes()).unwrap().len(),
            2,
            "fileexporter JSON lines"
        );
        assert!(decode_file("c.binpb", b"\xff\xff garbage").is_err());
        assert!(decode_file("c.json", b"{not json").is_err());
    }
}
