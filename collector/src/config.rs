//! The collector's YAML configuration: every field has a default, unknown keys are errors.
//!
//! `config/collector.example.yaml` lists every field with its default; a test keeps it loadable
//! and equal to [`Config::default`].

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use anyhow::Result;
use serde::Deserialize;
use serde::Deserializer;

/// A usage error: bad config file or flag. Exits with code 2, naming the field.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Top-level configuration of `causeway-collector run`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where Parquet objects go: `file:///dir`, a directory path, or `s3://bucket/prefix`.
    pub store: String,
    /// Host partition name; empty means the machine's host name.
    pub host: String,
    /// Process ids (tgids) to trace; empty traces every process.
    pub pids: Vec<u32>,
    /// Children forked by a traced process are traced too.
    pub follow_children: bool,
    /// cgroup v2 directory whose tasks (and descendants) are traced, e.g.
    /// `/sys/fs/cgroup/unified/system.slice/foo.service`.
    pub cgroup: Option<String>,
    /// Stop after this long (e.g. `30s`); unset runs until SIGINT/SIGTERM.
    #[serde(deserialize_with = "opt_duration")]
    pub duration: Option<Duration>,
    /// OTLP endpoint for log records, e.g. `http://127.0.0.1:4317` (gRPC) or
    /// `http://127.0.0.1:4318` (HTTP/protobuf, see `otlp.protocol`); unset exports nothing.
    pub otlp_endpoint: Option<String>,
    /// How log records are exported when `otlp_endpoint` is set.
    pub otlp: Otlp,
    /// Tagging events with the thread's current span.
    pub trace_context: TraceContext,
    /// CUDA runtime/driver and NCCL call probes.
    pub cuda: Cuda,
    /// CPUs the collector itself runs on (its own cpuset), e.g. `[1]`; empty: no pinning.
    pub cpus: Vec<usize>,
    /// Count BPF program run time (kernel.bpf_stats_enabled) so the `self` rows of
    /// collector_stats carry BPF ns per run; costs two clock reads per program run while on.
    pub bpf_stats: bool,
    /// Share of each second bpf_stats is on, within (0, 1]: the figures are that sample's; 1
    /// counts all the time.
    pub bpf_stats_sampling: f64,
    /// How often the traced processes' CPU cgroups' `cpu.stat` counters are read for CFS
    /// throttling (`cpu.throttle` rows); `0s` never reads them.
    #[serde(deserialize_with = "duration")]
    pub cpu_throttle_interval: Duration,
    /// Capture thresholds.
    pub thresholds: Thresholds,
    /// Ring buffer between the kernel and the collector.
    pub ring_buffer: RingBuffer,
    /// Parquet files in object storage.
    pub storage: Storage,
}

/// OTLP log export.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Otlp {
    /// `grpc` (port 4317) or `http/protobuf` (port 4318, path `/v1/logs` added when missing).
    pub protocol: OtlpProtocol,
    /// Log records per export request.
    pub batch_size: usize,
    /// Requests waiting for the endpoint; beyond it records are dropped and counted, never
    /// blocking capture.
    pub queue_batches: usize,
    /// Timeout of one export request.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Attempts per request on retryable failures (unavailable, 429, 5xx), with backoff.
    pub max_attempts: u32,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Trace context sources.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TraceContext {
    /// Probe causeway_ctx_publish in every process that maps a causeway-context writer.
    pub enabled: bool,
    /// Writer copies to probe from the start (discovery finds the others).
    pub libraries: Vec<String>,
    /// How often /proc is scanned for new writer copies.
    #[serde(deserialize_with = "duration")]
    pub scan_interval: Duration,
    /// OBI's pinned `traces_ctx_v1` map; null looks in /sys/fs/bpf and one level below.
    pub obi_map: Option<String>,
}

/// CUDA/NCCL uprobes (bpf/cuda.bpf.c). Discovery shares `trace_context.scan_interval`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Cuda {
    /// Probe the CUDA runtime, driver and NCCL in every process that maps them.
    pub enabled: bool,
    /// Libraries or binaries to probe from the start (discovery finds the others).
    pub libraries: Vec<String>,
    /// Share of each period the launch probes are attached, within (0, 1]: 1.0 counts every
    /// launch exactly at the full cost of a uprobe per launch; the default 0.1 costs about a
    /// tenth of that and gives estimated counts.
    pub launch_sampling: f64,
    /// Duty-cycle period of the launch probes. Each attach and detach costs the probed process
    /// a few milliseconds (the kernel rewrites its text and waits for grace periods), so the
    /// period is long.
    #[serde(deserialize_with = "duration")]
    pub sampling_period: Duration,
    /// Launches at least this long become rows (the rest are only in the histograms).
    #[serde(deserialize_with = "duration")]
    pub slow_launch: Duration,
}

impl Default for Cuda {
    fn default() -> Self {
        Cuda {
            enabled: true,
            libraries: Vec::new(),
            launch_sampling: 0.1,
            sampling_period: Duration::from_secs(10),
            slow_launch: Duration::from_micros(100),
        }
    }
}

impl Default for Otlp {
    fn default() -> Self {
        Otlp {
            protocol: OtlpProtocol::Grpc,
            batch_size: 512,
            queue_batches: 64,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
        }
    }
}

impl Default for TraceContext {
    fn default() -> Self {
        TraceContext {
            enabled: true,
            libraries: Vec::new(),
            scan_interval: Duration::from_secs(1),
            obi_map: None,
        }
    }
}

/// What is worth a record.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Off-CPU intervals shorter than this are counted in the kernel, not sent.
    #[serde(deserialize_with = "duration")]
    pub min_off_cpu: Duration,
    /// Run-queue waits shorter than this are counted in the kernel, not sent.
    #[serde(deserialize_with = "duration")]
    pub min_runq: Duration,
    /// Block I/O requests shorter than this are not sent.
    #[serde(deserialize_with = "duration")]
    pub min_block_io: Duration,
    /// Off-CPU intervals at least this long carry user and kernel stacks; `0s` disables stacks.
    #[serde(deserialize_with = "duration")]
    pub stack: Duration,
    /// Beyond this many events per second the collector samples (lifecycle events are never
    /// sampled) and counts what it shed; 0 disables the limit.
    pub max_events_per_second: u64,
}

/// Kernel → user-space transport.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RingBuffer {
    /// Size in MiB (rounded up to a power of two). The default 4 MiB holds ~0.5 s at 50k
    /// events/s; the programs wake the reader once a quarter of it is unread; its pages count
    /// twice in RSS (the data area is mapped twice).
    pub size_mib: u32,
    /// How often the ring buffer is read and decoded records are handed to the writer (records
    /// are submitted without wakeups; a quarter-full ring buffer wakes the reader sooner).
    #[serde(deserialize_with = "duration")]
    pub drain_interval: Duration,
    /// Decoded events waiting for the writer at most; above this the collector stops draining
    /// (the ring buffer absorbs the burst, then the kernel drops and counts), so memory stays
    /// bounded when the store or the encoder falls behind.
    pub max_in_flight: usize,
}

/// Parquet output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Write a file at least this often (when there are rows).
    #[serde(deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// ... or as soon as this many rows are buffered.
    pub flush_rows: usize,
    /// zstd level of the Parquet pages (1..=22).
    pub zstd_level: i32,
    /// Delete partitions older than this many hours; 0 keeps everything.
    pub retention_hours: u64,
    /// Delete the oldest partitions while the store holds more than this many bytes; 0: no cap.
    pub retention_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: "file://./data".into(),
            host: String::new(),
            pids: Vec::new(),
            follow_children: true,
            cgroup: None,
            duration: None,
            otlp_endpoint: None,
            otlp: Otlp::default(),
            trace_context: TraceContext::default(),
            cuda: Cuda::default(),
            cpus: Vec::new(),
            bpf_stats: true,
            bpf_stats_sampling: 0.1,
            cpu_throttle_interval: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            ring_buffer: RingBuffer::default(),
            storage: Storage::default(),
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_off_cpu: Duration::from_millis(1),
            min_runq: Duration::from_micros(100),
            min_block_io: Duration::from_micros(100),
            stack: Duration::from_millis(10),
            max_events_per_second: 50_000,
        }
    }
}

impl Default for RingBuffer {
    fn default() -> Self {
        RingBuffer {
            size_mib: 4,
            drain_interval: Duration::from_millis(100),
            max_in_flight: 65_536,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            flush_interval: Duration::from_secs(10),
            flush_rows: 200_000,
            zstd_level: 3,
            retention_hours: 72,
            retention_bytes: 0,
        }
    }
}

impl Config {
    /// Loads a YAML file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow!(UsageError(format!(
                "cannot read config file {}: {e}",
                path.display()
            )))
        })?;
        Self::parse(&text).map_err(|e| anyhow!(UsageError(format!("{}: {e}", path.display()))))
    }

    /// Parses YAML text; the error names the offending field path.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                format!("invalid config: {inner}")
            } else {
                format!("invalid config field `{path}`: {inner}")
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges that the types cannot express; the error names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let bad = |field: &str, why: &str| Err(format!("invalid config field `{field}`: {why}"));
        if self.store.trim().is_empty() {
            return bad("store", "must not be empty");
        }
        if self.pids.contains(&0) {
            return bad("pids", "0 is not a process id");
        }
        if !(1..=1024).contains(&self.ring_buffer.size_mib) {
            return bad("ring_buffer.size_mib", "must be within 1..=1024");
        }
        if self.ring_buffer.drain_interval.is_zero()
            || self.ring_buffer.drain_interval > Duration::from_secs(10)
        {
            return bad("ring_buffer.drain_interval", "must be within (0s, 10s]");
        }
        if self.ring_buffer.max_in_flight < 1024 {
            return bad("ring_buffer.max_in_flight", "must be at least 1024");
        }
        if self.storage.flush_interval.is_zero() {
            return bad("storage.flush_interval", "must be positive");
        }
        if !(self.bpf_stats_sampling > 0.0 && self.bpf_stats_sampling <= 1.0) {
            return bad("bpf_stats_sampling", "must be within (0, 1]");
        }
        if self.storage.flush_rows == 0 {
            return bad("storage.flush_rows", "must be positive");
        }
        if !(1..=22).contains(&self.storage.zstd_level) {
            return bad("storage.zstd_level", "must be within 1..=22");
        }
        if let Some(d) = self.duration {
            if d.is_zero() {
                return bad("duration", "must be positive");
            }
        }
        if let Some(ep) = &self.otlp_endpoint {
            match url::Url::parse(ep) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return bad(
                    "otlp_endpoint",
                    "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:4317",
                ),
            }
        }
        if !(1..=65536).contains(&self.otlp.batch_size) {
            return bad("otlp.batch_size", "must be within 1..=65536");
        }
        if !(1..=4096).contains(&self.otlp.queue_batches) {
            return bad("otlp.queue_batches", "must be within 1..=4096");
        }
        if self.otlp.timeout.is_zero() {
            return bad("otlp.timeout", "must be positive");
        }
        if !(1..=20).contains(&self.otlp.max_attempts) {
            return bad("otlp.max_attempts", "must be within 1..=20");
        }
        if !(self.cuda.launch_sampling > 0.0 && self.cuda.launch_sampling <= 1.0) {
            return bad(
                "cuda.launch_sampling",
                "must be within (0, 1]: the share of time launches are probed",
            );
        }
        if self.cuda.sampling_period < Duration::from_millis(100)
            || self.cuda.sampling_period > Duration::from_secs(600)
        {
            return bad("cuda.sampling_period", "must be within 100ms..=10m");
        }
        if self.trace_context.scan_interval < Duration::from_millis(100) {
            return bad("trace_context.scan_interval", "must be at least 100ms");
        }
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1024);
        if let Some(c) = self.cpus.iter().find(|c| **c >= ncpu.max(1024)) {
            return bad("cpus", &format!("cpu {c} does not exist"));
        }
        Ok(())
    }
}

/// Parses `250ms`, `10s`, `1.5m`, `2h`, `100us`, `0`. A bare number is rejected as ambiguous.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 100us, 1ms, 10s, 5m, 1h"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "invalid duration {s:?}: a unit is required (ns, us, ms, s, m, h)"
            ))
        }
        u => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {u:?} (ns, us, ms, s, m, h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("invalid duration {s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_the_default() {
        let text = include_str!("../../config/collector.example.yaml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("thresholds:\n  min_offcpu: 1ms\n").unwrap_err();
        assert!(err.contains("min_offcpu"), "{err}");
        let err = Config::parse("stroe: x\n").unwrap_err();
        assert!(err.contains("stroe"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = Config::parse("thresholds:\n  min_off_cpu: fast\n").unwrap_err();
        assert!(err.contains("thresholds.min_off_cpu"), "{err}");
        let err = Config::parse("storage:\n  zstd_level: 99\n").unwrap_err();
        assert!(err.contains("storage.zstd_level"), "{err}");
        let err = Config::parse("pids: [1, -3]\n").unwrap_err();
        assert!(err.contains("pids"), "{err}");
        let err = Config::parse("ring_buffer:\n  size_mib: 0\n").unwrap_err();
        assert!(err.contains("ring_buffer.size_mib"), "{err}");
    }

    #[test]
    fn durations_parse_with_units_only() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1 fortnight").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
