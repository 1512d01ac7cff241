//! The OTLP log record of a kernel event: what the OpenTelemetry pipeline receives.
//!
//! Columns of `kernel_events` and attributes here carry the same data; the test at the bottom
//! keeps the two in step.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::names::attr;
use crate::KernelEvent;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn hex_bytes(s: &Option<String>, len: usize) -> Vec<u8> {
    let Some(s) = s else { return Vec::new() };
    if s.len() != len * 2 {
        return Vec::new();
    }
    (0..len)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .unwrap_or_default()
}

/// A short human summary for the log body, e.g. `off-CPU 201.3 ms (sleep), woken by holder/42`.
pub fn summary(e: &KernelEvent) -> String {
    let ms = e.duration_ns as f64 / 1e6;
    match (e.state, &e.waker_comm, e.waker_tid) {
        (Some(state), Some(w), Some(wt)) => {
            format!("{} {ms:.3} ms ({state}), woken by {w}/{wt}", e.event_name)
        }
        (Some(state), _, _) => format!("{} {ms:.3} ms ({state})", e.event_name),
        _ if e.duration_ns > 0 => format!("{} {ms:.3} ms", e.event_name),
        _ => e.event_name.to_string(),
    }
}

/// The OTLP log record of one event. `observed_time_unix_nano` is the export time.
pub fn to_log_record(e: &KernelEvent, observed_time_unix_nano: u64) -> LogRecord {
    let mut a = vec![
        kv(attr::PROCESS_PID, Value::IntValue(e.pid as i64)),
        kv(attr::THREAD_ID, Value::IntValue(e.tid as i64)),
        kv(attr::THREAD_NAME, Value::StringValue(e.comm.to_string())),
        kv(
            attr::PROCESS_EXECUTABLE_NAME,
            Value::StringValue(e.process_name.to_string()),
        ),
        kv(attr::CPU, Value::IntValue(e.cpu as i64)),
        kv(attr::CGROUP_ID, Value::IntValue(e.cgroup_id)),
        kv(attr::DURATION_NS, Value::IntValue(e.duration_ns)),
    ];
    let mut opt_int = |k: &str, v: Option<i64>| {
        if let Some(v) = v {
            a.push(kv(k, Value::IntValue(v)));
        }
    };
    opt_int(attr::WAKER_PID, e.waker_pid.map(i64::from));
    opt_int(attr::WAKER_TID, e.waker_tid.map(i64::from));
    opt_int(attr::PREV_PID, e.prev_pid.map(i64::from));
    opt_int(attr::PREV_TID, e.prev_tid.map(i64::from));
    opt_int(attr::USER_STACK_ID, e.user_stack_id);
    opt_int(attr::KERNEL_STACK_ID, e.kernel_stack_id);
    opt_int(attr::PROCESS_PARENT_PID, e.ppid.map(i64::from));
    opt_int(attr::PROCESS_EXIT_CODE, e.exit_code.map(i64::from));
    opt_int(attr::FUTEX_UADDR, e.futex_uaddr);
    let bytes_key = if e.cuda_function.is_some() {
        attr::CUDA_BYTES
    } else {
        attr::BLOCK_BYTES
    };
    opt_int(bytes_key, e.bytes);
    opt_int(attr::CUDA_STREAM, e.cuda_stream);
    opt_int(attr::BLOCK_QUEUE_NS, e.io_queue_ns);
    opt_int(attr::PREV_CGROUP_ID, e.prev_cgroup_id);
    opt_int(attr::CPU_THROTTLED_PERIODS, e.cpu_throttled_periods);
    opt_int(attr::CPU_PERIODS, e.cpu_periods);
    let mut opt_str = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            a.push(kv(k, Value::StringValue(v.to_string())));
        }
    };
    opt_str(attr::STATE, e.state);
    opt_str(attr::WAKER_NAME, e.waker_comm.as_deref());
    opt_str(attr::PREV_NAME, e.prev_comm.as_deref());
    opt_str(attr::CONTAINER_ID, e.container_id.as_deref());
    opt_str(attr::K8S_POD_UID, e.pod_uid.as_deref());
    opt_str(attr::PROCESS_EXECUTABLE_PATH, e.path.as_deref());
    opt_str(attr::CORRELATION_METHOD, e.correlation_method);
    opt_str(attr::FUTEX_OP, e.futex_op);
    opt_str(attr::BLOCK_DEVICE, e.device.as_deref());
    opt_str(attr::BLOCK_OP, e.io_op.as_deref());
    opt_str(attr::SOURCE_ADDRESS, e.saddr.as_deref());
    opt_str(attr::DESTINATION_ADDRESS, e.daddr.as_deref());
    opt_str(attr::CUDA_FUNCTION, e.cuda_function);
    opt_str(attr::CUDA_GRID, e.cuda_grid.as_deref());
    opt_str(attr::CUDA_BLOCK, e.cuda_block.as_deref());
    opt_str(attr::CUDA_KERNEL, e.cuda_kernel.as_deref());
    opt_str(attr::KERNEL_LOCK, e.kernel_lock.as_deref());
    opt_str(attr::KERNEL_LOCK_KIND, e.kernel_lock_kind);
    opt_str(attr::PREV_CONTAINER_ID, e.prev_container_id.as_deref());
    opt_str(attr::CPU_MAX, e.cpu_max.as_deref());
    LogRecord {
        time_unix_nano: e.time_unix_nano as u64,
        observed_time_unix_nano,
        severity_number: 0,
        severity_text: String::new(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(summary(e))),
        }),
        attributes: a,
        dropped_attributes_count: 0,
        flags: 0,
        trace_id: hex_bytes(&e.trace_id, 16),
        span_id: hex_bytes(&e.span_id, 8),
        event_name: e.event_name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    fn attr_int(r: &LogRecord, key: &str) -> Option<i64> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value {
                Some(AnyValue {
                    value: Some(Value::IntValue(v)),
                }) => Some(v),
                _ => None,
            })
    }

    #[test]
    fn off_cpu_event_maps_to_semconv_attributes() {
        let e = KernelEvent {
            time_unix_nano: 5,
            duration_ns: 200_000_000,
            pid: 10,
            tid: 11,
            event_name: names::event::OFF_CPU,
            state: Some(names::state::SLEEP),
            waker_tid: Some(12),
            waker_comm: Some("holder".into()),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: Some("b7ad6b7169203331".into()),
            ..Default::default()
        };
        let r = to_log_record(&e, 9);
        assert_eq!(r.event_name, "sched.off_cpu");
        assert_eq!(r.time_unix_nano, 5);
        assert_eq!(attr_int(&r, "process.pid"), Some(10));
        assert_eq!(attr_int(&r, "thread.id"), Some(11));
        assert_eq!(attr_int(&r, "causeway.waker.tid"), Some(12));
        assert_eq!(attr_int(&r, "causeway.waker.pid"), None);
        assert_eq!(r.trace_id.len(), 16);
        assert_eq!(
            r.span_id,
            vec![0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        assert_eq!(
            summary(&e),
            "sched.off_cpu 200.000 ms (sleep), woken by holder/12"
        );
    }

    #[test]
    fn malformed_trace_ids_are_left_empty() {
        let e = KernelEvent {
            trace_id: Some("zz".into()),
            ..Default::default()
        };
        assert!(to_log_record(&e, 0).trace_id.is_empty());
    }
}
