//! OTLP export of kernel events as log records (gRPC or HTTP/protobuf).
//!
//! The writer thread offers every batch it receives; [`OtlpExporter::offer`] converts it to log
//! records and queues them without ever blocking: when the bounded queue is full (endpoint down
//! or slow) the records are dropped and counted. A sender thread exports each request with
//! retries and exponential backoff on retryable failures (gRPC UNAVAILABLE & co., HTTP 429/5xx,
//! connection errors). Counters reach `collector_stats` as the `otlp` row.
//!
//! The collector's own cost (the `self` row of each stats window) goes out on the same queue as
//! OTLP metrics (`causeway.collector.*`), so the pipeline that receives the records also sees what
//! producing them cost.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use anyhow::Result;
use causeway_proto::names::attr;
use causeway_proto::otlp::to_log_record;
use causeway_proto::KernelEvent;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::logs::v1::ScopeLogs;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::mpsc;

use crate::clock::realtime_ns;
use crate::config::Otlp;
use crate::config::OtlpProtocol;

/// Export counters since start.
#[derive(Debug, Default)]
pub struct OtlpCounters {
    /// Log records the endpoint accepted.
    pub exported: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Records dropped after the last failed attempt (or a non-retryable error), or left in the
    /// queue at shutdown.
    pub failed: AtomicU64,
    /// Records queued or in flight.
    pub in_queue: AtomicU64,
}

/// Takes a batch off the in-queue count when the sender is done with it, however it ends.
struct InQueue<'a>(&'a OtlpCounters, u64);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .in_queue
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(self.1))
            });
    }
}

/// The capture side of the exporter: cheap, non-blocking.
pub struct OtlpExporter {
    tx: Option<mpsc::Sender<Export>>,
    batch_size: usize,
    pending: Vec<LogRecord>,
    /// Shared with the sender thread.
    pub counters: Arc<OtlpCounters>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Records decoded and dropped since start (the cumulative metrics).
    totals: (u64, u64),
    /// Start of the cumulative metrics, UTC ns.
    started: i64,
}

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// The gRPC URL as given; the HTTP URL gets `/v1/logs` when it has no path.
fn http_url(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(u) if u.path() == "/" || u.path().is_empty() => {
            format!("{}/v1/logs", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_string(),
    }
}

/// The metrics URL next to a logs URL (`…/v1/logs` → `…/v1/metrics`; a custom logs path gets
/// `/v1/metrics` at its origin).
fn metrics_url(logs_url: &str) -> String {
    match logs_url.strip_suffix("/v1/logs") {
        Some(base) => format!("{base}/v1/metrics"),
        None => match url::Url::parse(logs_url) {
            Ok(u) => format!("{}/v1/metrics", u.origin().ascii_serialization()),
            Err(_) => logs_url.to_string(),
        },
    }
}

/// What the sender thread exports.
enum Export {
    Logs(Vec<LogRecord>),
    Metrics(Vec<pm::Metric>),
}

enum Client {
    Grpc(
        LogsServiceClient<tonic::transport::Channel>,
        MetricsServiceClient<tonic::transport::Channel>,
    ),
    Http {
        client: reqwest::Client,
        url: String,
    },
}

/// Outcome of one attempt.
enum Attempt {
    Ok,
    Retry(String),
    Fail(String),
}

impl Client {
    /// One metrics export, no retries (the next window brings fresh values).
    async fn send_metrics(&mut self, req: ExportMetricsServiceRequest) -> Result<(), String> {
        match self {
            Client::Grpc(_, m) => m
                .export(req)
                .await
                .map(|_| ())
                .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message())),
            Client::Http { client, url } => {
                use prost::Message;
                let url = metrics_url(url);
                match client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(req.encode_to_vec())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {} from {url}", r.status().as_u16())),
                    Err(e) => Err(format!("{url}: {e}")),
                }
            }
        }
    }

    async fn send(&mut self, req: ExportLogsServiceRequest) -> Attempt {
        match self {
            Client::Grpc(c, _) => match c.export(req).await {
                Ok(_) => Attempt::Ok,
                Err(s) => {
                    use tonic::Code::*;
                    let msg = format!("gRPC {:?}: {}", s.code(), s.message());
                    match s.code() {
                        Unavailable | ResourceExhausted | Aborted | DeadlineExceeded
                        | Cancelled | Unknown | Internal => Attempt::Retry(msg),
                        _ => Attempt::Fail(msg),
                    }
                }
            },
            Client::Http { client, url } => {
                use prost::Message;
                let resp = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(req.encode_to_vec())
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => Attempt::Ok,
                    Ok(r) => {
                        let code = r.status().as_u16();
                        let msg = format!("HTTP {code} from {url}");
                        if matches!(code, 408 | 429 | 502 | 503 | 504) {
                            Attempt::Retry(msg)
                        } else {
                            Attempt::Fail(msg)
                        }
                    }
                    Err(e) => Attempt::Retry(format!("{url}: {e}")),
                }
            }
        }
    }
}

impl OtlpExporter {
    /// Starts the sender thread. Connections are lazy: an endpoint that is down at start only
    /// shows as retries and drops.
    pub fn start(endpoint: &str, cfg: &Otlp, host: &str) -> Result<OtlpExporter> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = match cfg.protocol {
            OtlpProtocol::Grpc => {
                let ch = {
                    let _guard = rt.enter();
                    tonic::transport::Endpoint::from_shared(endpoint.to_string())
                        .with_context(|| format!("invalid OTLP endpoint {endpoint}"))?
                        .connect_timeout(Duration::from_secs(5))
                        .timeout(cfg.timeout)
                        .connect_lazy()
                };
                Client::Grpc(
                    LogsServiceClient::new(ch.clone()),
                    MetricsServiceClient::new(ch),
                )
            }
            OtlpProtocol::HttpProtobuf => Client::Http {
                client: reqwest::Client::builder()
                    .timeout(cfg.timeout)
                    .build()
                    .context("building the HTTP client")?,
                url: http_url(endpoint),
            },
        };
        let resource = Resource {
            attributes: vec![
                kv(attr::HOST_NAME, host),
                kv("service.name", "causeway-collector"),
                kv(attr::COLLECTOR_VERSION, env!("CARGO_PKG_VERSION")),
            ],
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::channel::<Export>(cfg.queue_batches);
        let counters = Arc::new(OtlpCounters::default());
        let c = counters.clone();
        let max_attempts = cfg.max_attempts;
        let shown = endpoint.to_string();
        let thread = std::thread::Builder::new().name("cw-otlp".into()).spawn(move || {
            let mut client = client;
            rt.block_on(async move {
                let mut warned_at = 0u64;
                let mut metrics_warned = false;
                while let Some(export) = rx.recv().await {
                    let records = match export {
                        Export::Logs(r) => r,
                        Export::Metrics(metrics) => {
                            let req = ExportMetricsServiceRequest {
                                resource_metrics: vec![pm::ResourceMetrics {
                                    resource: Some(resource.clone()),
                                    scope_metrics: vec![pm::ScopeMetrics {
                                        scope: Some(InstrumentationScope {
                                            name: "causeway".into(),
                                            version: env!("CARGO_PKG_VERSION").into(),
                                            ..Default::default()
                                        }),
                                        metrics,
                                        ..Default::default()
                                    }],
                                    ..Default::default()
                                }],
                            };
                            match client.send_metrics(req).await {
                                Ok(()) => metrics_warned = false,
                                Err(msg) if !metrics_warned => {
                                    tracing::warn!("OTLP metrics export to {shown} failed (the collector's own cost; kept in collector_stats): {msg}");
                                    metrics_warned = true;
                                }
                                Err(_) => {}
                            }
                            continue;
                        }
                    };
                    let n = records.len() as u64;
                    let _done = InQueue(&c, n);
                    let req = ExportLogsServiceRequest {
                        resource_logs: vec![ResourceLogs {
                            resource: Some(resource.clone()),
                            scope_logs: vec![ScopeLogs {
                                scope: Some(InstrumentationScope {
                                    name: "causeway".into(),
                                    version: env!("CARGO_PKG_VERSION").into(),
                                    ..Default::default()
                                }),
                                log_records: records,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                    };
                    let mut delay = Duration::from_millis(200);
                    let mut attempt = 1;
                    loop {
                        match client.send(req.clone()).await {
                            Attempt::Ok => {
                                c.exported.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            Attempt::Retry(msg) if attempt < max_attempts => {
                                tracing::debug!("OTLP export to {shown} failed (attempt {attempt}), retrying: {msg}");
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(Duration::from_secs(5));
                                attempt += 1;
                            }
                            Attempt::Retry(msg) | Attempt::Fail(msg) => {
                                let failed = c.failed.fetch_add(n, Ordering::Relaxed) + n;
                                // one warning per ~10k lost records, not one per batch
                                if failed / 10_000 >= warned_at {
                                    warned_at = failed / 10_000 + 1;
                                    tracing::warn!("OTLP export to {shown} failed, {n} records dropped ({failed} so far): {msg}");
                                }
                                break;
                            }
                        }
                    }
                }
            })
        })?;
        Ok(OtlpExporter {
            tx: Some(tx),
            batch_size: cfg.batch_size,
            pending: Vec::new(),
            counters,
            thread: Some(thread),
            totals: (0, 0),
            started: realtime_ns(),
        })
    }

    /// Converts and queues events; never blocks. Full batches go now, the rest with `flush`.
    pub fn offer(&mut self, events: &[KernelEvent]) {
        let observed = realtime_ns() as u64;
        for e in events {
            self.pending.push(to_log_record(e, observed));
            if self.pending.len() >= self.batch_size {
                self.send_pending();
            }
        }
    }

    /// Queues what is pending (the writer calls this after each batch it receives).
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.send_pending();
        }
    }

    fn send_pending(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        let n = batch.len() as u64;
        let Some(tx) = &self.tx else { return };
        self.counters.in_queue.fetch_add(n, Ordering::Relaxed);
        if tx.try_send(Export::Logs(batch)).is_err() {
            self.counters.in_queue.fetch_sub(n, Ordering::Relaxed);
            self.counters
                .dropped_queue_full
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Queues the collector's own cost for one window as OTLP metrics (dropped when the queue
    /// is full: the same numbers are in collector_stats).
    pub fn offer_self_metrics(&mut self, row: &crate::stats::StatsRecord) {
        let Some(o) = row.overhead else { return };
        self.totals.0 += row.emitted.max(0) as u64;
        self.totals.1 += row.dropped.max(0) as u64;
        let at = (row.time_unix_nano + row.interval_ns) as u64;
        let gauge =
            |name: &str, unit: &str, desc: &str, v: pm::number_data_point::Value| pm::Metric {
                name: name.into(),
                unit: unit.into(),
                description: desc.into(),
                data: Some(pm::metric::Data::Gauge(pm::Gauge {
                    data_points: vec![pm::NumberDataPoint {
                        time_unix_nano: at,
                        value: Some(v),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            };
        let sum = |name: &str, desc: &str, v: u64| pm::Metric {
            name: name.into(),
            unit: "{record}".into(),
            description: desc.into(),
            data: Some(pm::metric::Data::Sum(pm::Sum {
                data_points: vec![pm::NumberDataPoint {
                    start_time_unix_nano: self.started as u64,
                    time_unix_nano: at,
                    value: Some(pm::number_data_point::Value::AsInt(v as i64)),
                    ..Default::default()
                }],
                aggregation_temporality: pm::AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        use pm::number_data_point::Value::AsDouble;
        use pm::number_data_point::Value::AsInt;
        let mut metrics = vec![
            gauge(
                "causeway.collector.cpu.utilization",
                "1",
                "CPU time of the collector process per wall time (1 = one CPU)",
                AsDouble(o.cpu_percent / 100.0),
            ),
            gauge(
                "causeway.collector.memory.rss",
                "By",
                "Resident memory of the collector",
                AsInt(o.rss_bytes),
            ),
            sum(
                "causeway.collector.records.decoded",
                "Kernel records decoded by the collector",
                self.totals.0,
            ),
            sum(
                "causeway.collector.records.dropped",
                "Kernel records lost (ring buffer full)",
                self.totals.1,
            ),
        ];
        if let (Some(ns), Some(pct)) = (o.bpf_ns_per_run, o.bpf_cpu_percent) {
            metrics.push(gauge(
                "causeway.collector.bpf.run_time",
                "ns",
                "Mean run time of the collector's BPF programs per run",
                AsDouble(ns),
            ));
            metrics.push(gauge(
                "causeway.collector.bpf.cpu.utilization",
                "1",
                "CPU time in the collector's BPF programs per wall time",
                AsDouble(pct / 100.0),
            ));
        }
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Export::Metrics(metrics));
        }
    }

    /// Sends what is pending and waits up to `deadline` for the queue to drain.
    pub fn shutdown(mut self, deadline: Duration) -> Arc<OtlpCounters> {
        self.flush();
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let start = std::time::Instant::now();
            while !t.is_finished() && start.elapsed() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                let left = self.counters.in_queue.swap(0, Ordering::Relaxed);
                self.counters.failed.fetch_add(left, Ordering::Relaxed);
                tracing::warn!(
                    "OTLP queue not drained within {deadline:?}: {left} records dropped"
                );
            }
        }
        self.counters.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_go_next_to_the_logs() {
        assert_eq!(
            metrics_url("http://h:4318/v1/logs"),
            "http://h:4318/v1/metrics"
        );
        assert_eq!(
            metrics_url("http://h:4318/custom/logs"),
            "http://h:4318/v1/metrics"
        );
    }

    #[test]
    fn http_urls_get_the_logs_path() {
        assert_eq!(http_url("http://h:4318"), "http://h:4318/v1/logs");
        assert_eq!(http_url("http://h:4318/"), "http://h:4318/v1/logs");
        assert_eq!(
            http_url("http://h:4318/custom/logs"),
            "http://h:4318/custom/logs"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        // nothing listens on port 9 (discard): every export fails, the queue of 1 fills up
        let cfg = Otlp {
            batch_size: 10,
            queue_batches: 1,
            max_attempts: 2,
            timeout: Duration::from_millis(200),
            ..Otlp::default()
        };
        let mut ex = OtlpExporter::start("http://127.0.0.1:9", &cfg, "h").unwrap();
        let events = vec![
            KernelEvent {
                event_name: "sched.off_cpu",
                ..Default::default()
            };
            1000
        ];
        let t = std::time::Instant::now();
        ex.offer(&events);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "offer must not block"
        );
        let c = ex.shutdown(Duration::from_secs(10));
        let dropped = c.dropped_queue_full.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        assert_eq!(c.exported.load(Ordering::Relaxed), 0);
        assert_eq!(dropped + failed, 1000, "every record is accounted for");
        assert!(
            dropped >= 980,
            "at most two batches were in flight: {dropped}"
        );
    }
}
