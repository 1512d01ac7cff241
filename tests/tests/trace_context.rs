//! Trace context from a Rust program that links the causeway-context writer statically: the
//! collector finds `causeway_ctx_publish` in the executable's own symbol table (no shared
//! library), probes it, and tags the thread's off-CPU intervals inside spans — and only those.
//! Also where the scheduler's tracepoint does not hand the collector a switch-in: the interval
//! is rebuilt at the thread's next switch-out, with the span it was in.

use causeway_tests::bin;
use causeway_tests::can_trace;
use causeway_tests::int;
use causeway_tests::sql;
use causeway_tests::Collector;
use causeway_tests::Workload;
use serde_json::Value;

/// What one run of `cw-traced-worker` (five 30 ms sleeps inside spans, each followed by one
/// outside) left under a collector started with `env`.
struct WorkerRun {
    /// The worker thread's off-CPU rows of 25 ms or more, in time order.
    rows: Vec<Value>,
    /// The worker's result line (tid, span ids, trace id).
    result: Value,
    /// The collector's report on stderr.
    report: String,
    /// `collector_stats` totals of kind `switch_in_missed`: (rebuilt, lost).
    missed: (i64, i64),
}

impl WorkerRun {
    fn start(env: &[(&str, String)]) -> WorkerRun {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let w = Workload::spawn_command(std::process::Command::new(bin("cw-traced-worker")));
        let pid = w.pid.to_string();
        let c = Collector::start_with_env(
            store.to_str().unwrap(),
            env,
            &["--pid", &pid, "--flush-interval", "1s"],
        );
        let result = w.run();
        let out = c.stop();
        let report = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            report.contains("trace context probed in:") && report.contains("cw-traced-worker"),
            "the executable was not probed: {report}"
        );
        let rows = sql(
            &store,
            &format!(
                "SELECT span_id, trace_id, correlation_method, duration_ns FROM kernel_events WHERE pid = {pid} \
                 AND tid = {} AND event_name = 'sched.off_cpu' AND duration_ns >= 25000000 ORDER BY time_unix_nano",
                int(&result, "tid")
            ),
        );
        let missed = sql(
            &store,
            "SELECT coalesce(sum(emitted), 0) AS rebuilt, coalesce(sum(dropped), 0) AS lost \
             FROM collector_stats WHERE kind = 'switch_in_missed'",
        );
        let missed = (int(&missed[0], "rebuilt"), int(&missed[0], "lost"));
        WorkerRun {
            rows,
            result,
            report,
            missed,
        }
    }

    /// The span ids of the rows, in time order (None: outside a span).
    fn spans_got(&self) -> Vec<Option<String>> {
        self.rows
            .iter()
            .map(|r| r["span_id"].as_str().map(String::from))
            .collect()
    }

    /// What every sleep should carry: in span 1, outside, in span 2, outside, …
    fn spans_wanted(&self) -> Vec<Option<String>> {
        self.result["spans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| [Some(s.as_str().unwrap().to_string()), None])
            .collect()
    }

    /// Every tagged row carries the worker's trace id, from the uprobe.
    fn assert_tags_come_from_the_writer(&self) {
        for r in self.rows.iter().filter(|r| r["span_id"].is_string()) {
            assert_eq!(r["trace_id"], self.result["trace_id"], "{r}");
            assert_eq!(r["correlation_method"], "uprobe", "{r}");
        }
    }
}

#[test]
fn a_statically_linked_rust_writer_tags_its_spans() {
    if !can_trace("a_statically_linked_rust_writer_tags_its_spans") {
        return;
    }
    let run = WorkerRun::start(&[]);
    // Each of the ten sleeps has its row and its span. About one run in 50 on this VM, the
    // scheduler's tracepoint never hands the collector one of the worker's switch-ins; that
    // interval is then rebuilt at the next switch-out (switch_in_missed), and must be here too.
    assert_eq!(
        run.spans_got(),
        run.spans_wanted(),
        "{:?}\nswitch-ins missed (rebuilt, lost): {:?}",
        run.rows,
        run.missed
    );
    assert_eq!(run.missed.1, 0, "a switch-in was lost: {}", run.report);
    run.assert_tags_come_from_the_writer();
}

/// A switch-in the sched_switch handler is not called for (made to order: every third of the
/// worker's is ignored) is rebuilt from the kernel's arrival time: every sleep has its row, of
/// its length, tagged with the span it slept in although the thread changed spans before the
/// rebuild.
#[test]
fn a_switch_in_the_tracepoint_misses_is_rebuilt_with_its_span() {
    if !can_trace("a_switch_in_the_tracepoint_misses_is_rebuilt_with_its_span") {
        return;
    }
    let run = WorkerRun::start(&[("CAUSEWAY_TEST_SKIP_SWITCH_IN", "3".into())]);
    assert!(
        run.missed.0 >= 3 && run.missed.1 == 0,
        "switch-ins missed (rebuilt, lost): {:?}\n{}",
        run.missed,
        run.report
    );
    assert!(
        run.report
            .contains("rebuilt from the kernel's arrival times"),
        "{}",
        run.report
    );
    assert_eq!(run.spans_got(), run.spans_wanted(), "{:?}", run.rows);
    for r in &run.rows {
        let ms = int(r, "duration_ns") as f64 / 1e6;
        assert!(
            (29.0..60.0).contains(&ms),
            "a 30 ms sleep lasted {ms} ms: {r}"
        );
    }
    run.assert_tags_come_from_the_writer();
}

/// On the boot clock (kernels without the scheduler's arrival times) a missed switch-in cannot be
/// rebuilt: its interval is missing, and counted as lost.
#[test]
fn a_missed_switch_in_without_arrival_times_is_counted_lost() {
    if !can_trace("a_missed_switch_in_without_arrival_times_is_counted_lost") {
        return;
    }
    let run = WorkerRun::start(&[
        ("CAUSEWAY_TEST_SKIP_SWITCH_IN", "3".into()),
        ("CAUSEWAY_BOOT_CLOCK", "1".into()),
    ]);
    let missing = 10 - run.rows.len() as i64;
    assert!(
        run.missed.0 == 0 && missing >= 1 && run.missed.1 >= missing,
        "{missing} sleeps without a row; switch-ins missed (rebuilt, lost): {:?}",
        run.missed
    );
}
