//! The S3 path against a real S3-compatible server (moto) started by the test: the collector
//! writes through s3://bucket/prefix with the standard AWS environment, and causeway-query
//! reads the same objects back.

use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::net::TcpStream;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use causeway_tests::can_trace;
use causeway_tests::int;
use causeway_tests::require_tool;
use causeway_tests::sql_env;
use causeway_tests::Collector;
use causeway_tests::Workload;

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_available() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, port }
}

/// A moto server with `bucket` created, and the AWS environment that points clients at it.
fn moto_with_bucket(bucket: &str) -> (Moto, Vec<(&'static str, String)>) {
    let moto = start_moto();
    let (code, body) = http(moto.port, "PUT", &format!("/{bucket}"));
    assert_eq!(code, 200, "creating the bucket: {body}");
    let env = vec![
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", moto.port),
        ),
    ];
    (moto, env)
}

/// One raw HTTP/1.1 request; returns the status code and body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    http_body(port, method, path, "")
}

/// One raw HTTP/1.1 request with a body.
fn http_body(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, resp)
}

#[test]
fn collector_writes_and_query_reads_through_s3() {
    if !can_trace("collector_writes_and_query_reads_through_s3")
        || !require_tool(
            "collector_writes_and_query_reads_through_s3",
            moto_available(),
            "python moto[server]",
        )
    {
        return;
    }
    let (moto, env) = moto_with_bucket("causeway-test");
    let store = "s3://causeway-test/fleet/a";
    let w = Workload::spawn(&["mutex", "--hold", "100ms"]);
    let pid = w.pid;
    let c = Collector::start_with_env(
        store,
        &env,
        &["--pid", &pid.to_string(), "--host", "s3-host"],
    );
    let result = w.run();
    std::thread::sleep(Duration::from_millis(300));
    c.stop();

    let (code, listing) = http(
        moto.port,
        "GET",
        "/causeway-test?list-type=2&prefix=fleet/a/kernel_events/",
    );
    assert_eq!(code, 200, "{listing}");
    assert!(
        listing.contains("/hour="),
        "objects are hive-partitioned: {listing}"
    );
    assert!(listing.contains("host=s3-host/part-"), "{listing}");

    let rows = sql_env(
        store,
        &env,
        &format!(
            "SELECT duration_ns, waker_tid, host FROM kernel_events WHERE pid = {pid} AND tid = {} \
             AND event_name = 'sched.off_cpu' ORDER BY duration_ns DESC LIMIT 1",
            int(&result, "waiter_tid")
        ),
    );
    assert_eq!(rows.len(), 1, "the waiter's interval came back through S3");
    assert_eq!(
        int(&rows[0], "waker_tid"),
        int(&result, "holder_tid"),
        "{rows:?}"
    );
    assert_eq!(rows[0]["host"], "s3-host");
    let ms = int(&rows[0], "duration_ns") as f64 / 1e6;
    assert!((90.0..=110.0).contains(&ms), "{ms} ms");
}

#[test]
fn an_unreachable_store_fails_before_capture_with_a_clear_error() {
    if !can_trace("an_unreachable_store_fails_before_capture_with_a_clear_error") {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(causeway_tests::bin("causeway-collector"))
        .args(["run", "--duration", "1s", "--store", "s3://nobucket/x"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_MAX_RETRIES", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("s3://nobucket/x"),
        "the error names the store: {err}"
    );
}

/// A fleet: two collectors write as two hosts into one bucket; queries see both, and a host
/// filter keeps one host's pid from being read as the other's (pids repeat across hosts).
#[test]
fn two_hosts_share_one_store_and_answers_filter_by_host() {
    if !can_trace("two_hosts_share_one_store_and_answers_filter_by_host")
        || !require_tool(
            "two_hosts_share_one_store_and_answers_filter_by_host",
            moto_available(),
            "python moto[server]",
        )
    {
        return;
    }
    let (_moto, env) = moto_with_bucket("causeway-fleet");
    let store = "s3://causeway-fleet";
    let wa = Workload::spawn(&["mutex", "--hold", "100ms"]);
    let wb = Workload::spawn(&["sleep", "--each", "20ms", "--count", "5"]);
    let (pa, pb) = (wa.pid, wb.pid);
    let ca =
        Collector::start_with_env(store, &env, &["--pid", &pa.to_string(), "--host", "node-a"]);
    let cb =
        Collector::start_with_env(store, &env, &["--pid", &pb.to_string(), "--host", "node-b"]);
    let holder = int(&wa.run(), "holder_tid");
    wb.run();
    std::thread::sleep(Duration::from_millis(300));
    ca.stop();
    cb.stop();

    let hosts = sql_env(
        store,
        &env,
        "SELECT host, count(DISTINCT pid) AS pids FROM kernel_events GROUP BY host ORDER BY host",
    );
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(
        (hosts[0]["host"].as_str(), hosts[1]["host"].as_str()),
        (Some("node-a"), Some("node-b"))
    );

    let diagnose = |host: &str| {
        let out = Command::new(causeway_tests::bin("causeway-query"))
            .args([
                "diagnose",
                "--pid",
                &pa.to_string(),
                "--json",
                "--store",
                store,
                "--host",
                host,
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, a, err) = diagnose("node-a");
    assert_eq!(code, Some(0), "{err}");
    let a: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(a["blocking_mechanism"], "lock_contention", "{a}");
    assert_eq!(a["contention_source"]["tid"].as_i64(), Some(holder), "{a}");
    let (code, b, err) = diagnose("node-b");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        b.contains("No kernel events are recorded"),
        "pid {pa} has no events on node-b: {b}"
    );
    let (code, _, err) = diagnose("node-a' OR 1=1 --");
    assert_eq!(code, Some(2), "a bad host name is a usage error: {err}");
    assert!(err.contains("host must be a host name"), "{err}");
}

/// A fleet whose clocks disagree: node-b's collector runs 250 ms behind (simulated). Both time
/// their requests to the store's server, so `clocks` finds each host's offset against the store
/// within a bound that holds the truth, the skew between them, and the timeline puts a server
/// span of node-b after its client span of node-a although node-b's raw start is earlier.
#[test]
fn fleet_clock_offsets_are_estimated_against_the_store() {
    if !can_trace("fleet_clock_offsets_are_estimated_against_the_store")
        || !require_tool(
            "fleet_clock_offsets_are_estimated_against_the_store",
            moto_available(),
            "python moto[server]",
        )
    {
        return;
    }
    let (moto, env) = moto_with_bucket("causeway-clocks");
    let store = "s3://causeway-clocks";
    let w = Workload::spawn(&["sleep", "--each", "20ms", "--count", "5"]);
    let pid = w.pid.to_string();
    let ca = Collector::start_with_env(store, &env, &["--pid", &pid, "--host", "node-a"]);
    let cb = Collector::start_with_env(
        store,
        &env,
        &[
            "--pid",
            &pid,
            "--host",
            "node-b",
            "--simulate-clock-skew-ms",
            "-250",
        ],
    );
    w.run();
    // the samplers converge at one request a second
    std::thread::sleep(Duration::from_secs(14));
    ca.stop();
    cb.stop();

    let query = |args: &[&str]| {
        let out = Command::new(causeway_tests::bin("causeway-query"))
            .args(args)
            .args(["--store", store])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let r = query(&["clocks", "--json"]);
    let hosts = r["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{r}");
    for (h, truth) in [(&hosts[0], 0.0), (&hosts[1], 250.0)] {
        assert_eq!(h["basis"], "store_clock", "{h}");
        let (lo, hi) = (
            h["offset_low_ms"].as_f64().unwrap(),
            h["offset_high_ms"].as_f64().unwrap(),
        );
        assert!(
            lo <= truth && truth <= hi,
            "{}: true offset {truth} ms outside [{lo}, {hi}]",
            h["host"]
        );
        assert!(
            h["uncertainty_ms"].as_f64().unwrap() < 50.0,
            "samples did not converge: {h}"
        );
        assert!(h["samples"].as_i64().unwrap() >= 5, "{h}");
    }
    let p = &r["pairs"][0];
    assert_eq!(
        (p["a"].as_str(), p["b"].as_str()),
        (Some("node-a"), Some("node-b"))
    );
    let tol = p["corrected_order_tolerance_ms"].as_f64().unwrap();
    assert!((p["skew_ms"].as_f64().unwrap() - 250.0).abs() <= tol, "{p}");
    assert!(
        p["raw_order_tolerance_ms"].as_f64().unwrap() >= 250.0,
        "{p}"
    );

    // a client span on node-a and its server span on node-b, each stamped by its own clock:
    // truly the server started 150 ms after the client, but node-b's clock reads 250 ms behind
    let t = r["hosts"][0]["sampled_at_unix_nano"].as_i64().unwrap();
    let trace = "5b8efff798038103d269b633813fc60c";
    let span = |host: &str, svc: &str, id: &str, parent: &str, kind: i32, start: i64, end: i64| {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}},{{"key":"host.name","value":{{"stringValue":"{host}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":"GET /cart","kind":{kind},"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}"}}]}}]}}]}}"#
        )
    };
    let ms = 1_000_000;
    let dir = "/causeway-clocks/traces/year=2026/month=01/day=01/hour=00/minute=00";
    let client = span(
        "node-a",
        "front",
        "eee19b7ec3c1b174",
        "",
        3,
        t,
        t + 400 * ms,
    );
    let server = span(
        "node-b",
        "cart",
        "eee19b7ec3c1b175",
        "eee19b7ec3c1b174",
        2,
        t - 100 * ms,
        t + 100 * ms,
    );
    assert_eq!(
        http_body(moto.port, "PUT", &format!("{dir}/client.json"), &client).0,
        200
    );
    assert_eq!(
        http_body(moto.port, "PUT", &format!("{dir}/server.json"), &server).0,
        200
    );
    let out = std::env::temp_dir().join(format!(
        "causeway-fleet-timeline-{}.json",
        std::process::id()
    ));
    let status = Command::new(causeway_tests::bin("causeway-query"))
        .args(["timeline", "--trace-id", trace, "--store", store, "--out"])
        .arg(&out)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .unwrap();
    assert!(status.success());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let spans: Vec<&serde_json::Value> = doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "span")
        .collect();
    let find = |svc: &str| {
        spans
            .iter()
            .find(|e| e["args"]["service"] == svc)
            .copied()
            .unwrap_or_else(|| panic!("{svc}: {doc}"))
    };
    let (c, s) = (find("front"), find("cart"));
    assert_eq!(s["args"]["start_vs_parent_on_another_host"], "after", "{s}");
    assert_ne!(c["pid"], s["pid"], "each host its own track");
    let gap_ms = (s["ts"].as_f64().unwrap() - c["ts"].as_f64().unwrap()) / 1000.0;
    assert!(
        (gap_ms - 150.0).abs() <= tol,
        "server starts {gap_ms:.1} ms after the client on the common clock: {doc}"
    );
    assert_eq!(
        doc["otherData"]["clocks"]["hosts"].as_array().map(Vec::len),
        Some(2)
    );
}
