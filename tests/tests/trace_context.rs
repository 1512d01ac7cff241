//! Trace context from a Rust program that links the causeway-context writer statically: the
//! collector finds `causeway_ctx_publish` in the executable's own symbol table (no shared
//! library), probes it, and tags the thread's off-CPU intervals inside spans — and only those.

use causeway_tests::bin;
use causeway_tests::can_trace;
use causeway_tests::int;
use causeway_tests::sql;
use causeway_tests::Collector;
use causeway_tests::Workload;

#[test]
fn a_statically_linked_rust_writer_tags_its_spans() {
    if !can_trace("a_statically_linked_rust_writer_tags_its_spans") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let w = Workload::spawn_command(std::process::Command::new(bin("cw-traced-worker")));
    let pid = w.pid.to_string();
    let c = Collector::start(&store, &["--pid", &pid, "--flush-interval", "1s"]);
    let result = w.run();
    let out = c.stop();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("trace context probed in:") && report.contains("cw-traced-worker"),
        "the executable was not probed: {report}"
    );
    let tid = int(&result, "tid");
    let spans: Vec<String> = result["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let rows = sql(
        &store,
        &format!(
            "SELECT span_id, trace_id, correlation_method FROM kernel_events WHERE pid = {pid} AND tid = {tid} \
             AND event_name = 'sched.off_cpu' AND duration_ns >= 25000000 ORDER BY time_unix_nano"
        ),
    );
    // sleeps alternate: in span 1, outside, in span 2, outside, …
    let got: Vec<Option<String>> = rows
        .iter()
        .map(|r| r["span_id"].as_str().map(String::from))
        .collect();
    let want: Vec<Option<String>> = spans.iter().flat_map(|s| [Some(s.clone()), None]).collect();
    // Known, open: about one run in 50-100 on this VM loses one whole 30 ms interval (the
    // kernel side emits 9 of 10; no drop, no short interval counted; which one varies: first,
    // middle, last). Until that is found, one missing interval is reported loudly and
    // tolerated; any wrong or missing tag on the intervals recorded, or a second loss, fails.
    if got != want {
        let one_lost = got.len() + 1 == want.len()
            && (0..want.len()).any(|k| {
                let mut w = want.clone();
                w.remove(k);
                w == got
            });
        assert!(one_lost, "{rows:?}\n got: {got:?}\nwant: {want:?}");
        eprintln!(
            "WARNING: one of the worker's 10 sleeps has no off-CPU record (a known, open loss of \
             one interval in ~1-2 % of runs); the {} recorded are tagged right",
            got.len()
        );
    }
    for r in rows.iter().filter(|r| r["span_id"].is_string()) {
        assert_eq!(r["trace_id"], result["trace_id"], "{r}");
        assert_eq!(r["correlation_method"], "uprobe", "{r}");
    }
}
