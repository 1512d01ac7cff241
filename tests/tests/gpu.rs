//! The GPU layer on a machine without a GPU: fake `libcudart.so.12`/`.so.13`, `libcuda.so.1` and
//! `libnccl.so.2` (tests/cuda/) with the real symbol names and signatures, whose "kernels" run on
//! a device thread, called by a real workload and uprobed for real by the collector.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use causeway_tests::bin;
use causeway_tests::fake_cuda;
use causeway_tests::int;
use causeway_tests::query_json;
use causeway_tests::sql;
use causeway_tests::Collector;
use causeway_tests::Scenario;
use causeway_tests::Workload;
use serde_json::Value;

/// The fake workload pinned to `cpu`, its device thread on `device_cpu`, waiting for `go`.
fn cuda_workload(exe: &str, cpu: &str, device_cpu: &str, args: &[&str]) -> Workload {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpu])
        .arg(fake_cuda().join(exe))
        .args(args)
        .arg("--wait-stdin");
    cmd.env("FAKECUDA_DEVICE_CPU", device_cpu);
    Workload::spawn_command(cmd)
}

/// A CPU hog pinned to `cpu`.
fn hog(cpu: &str, secs: u32) -> Child {
    Command::new(bin("causeway-testkit"))
        .args([
            "workload",
            "spin",
            "--threads",
            "1",
            "--cpu",
            cpu,
            "--time",
            &format!("{secs}s"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the hog")
}

/// Calls per function as the store counts them: histogram rows (every probed call) and event rows.
fn counted(store: &Path, pid: i32) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let hist = sql(
        store,
        &format!("SELECT cuda_function, CAST(sum(calls) AS BIGINT) AS n FROM cuda_histograms WHERE pid = {pid} GROUP BY cuda_function"),
    );
    let rows = sql(
        store,
        &format!(
            "SELECT cuda_function, count(*) AS n FROM kernel_events WHERE pid = {pid} \
             AND (event_name LIKE 'cuda.%' OR event_name = 'nccl.collective') GROUP BY cuda_function"
        ),
    );
    let map = |v: Vec<Value>| {
        v.iter()
            .map(|r| {
                (
                    r["cuda_function"].as_str().unwrap().to_string(),
                    int(r, "n"),
                )
            })
            .collect()
    };
    (map(hist), map(rows))
}

const LAUNCHES: &[&str] = &[
    "cudaLaunchKernel",
    "cudaLaunchKernel_ptsz",
    "cudaGraphLaunch",
    "cuLaunchKernel",
    "cuLaunchKernel_ptsz",
];

/// Every probed call is counted exactly (launches too, with sampling 1.0), every non-launch call
/// is a row, and the slow launches are explained by the pinned hog that stole their CPU.
#[test]
fn cuda_calls_counted_exactly_and_slow_launches_explained_by_a_pinned_hog() {
    let Some(s) =
        Scenario::new("cuda_calls_counted_exactly_and_slow_launches_explained_by_a_pinned_hog")
    else {
        return;
    };
    let store = s.store();
    let mut h = hog("0", 30);
    let w = cuda_workload(
        "cw-cuda-workload",
        "0",
        "1",
        &["--iterations", "100", "--launches", "200", "--gpu-us", "0"],
    );
    let pid = w.pid;
    let c = Collector::start(
        &store,
        &[
            "--pid",
            &pid.to_string(),
            "--flush-interval",
            "1s",
            "--cuda-launch-sampling",
            "1",
        ],
    );
    let result = w.run();
    std::thread::sleep(Duration::from_millis(300));
    let out = c.stop();
    let _ = h.kill();
    let _ = h.wait();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("libcudart.so.12 (CUDA runtime"),
        "the runtime was found: {report}"
    );
    assert!(
        report.contains("libcuda.so.1 (CUDA driver") && report.contains("libnccl.so.2 (NCCL"),
        "{report}"
    );

    let (hist, rows) = counted(&store, pid);
    let calls = result["calls"].as_object().expect("calls per function");
    assert_eq!(calls.len(), 29, "the workload calls every probed function");
    for (f, n) in calls {
        let n = n.as_i64().unwrap();
        assert!(n > 0, "{f} called");
        assert_eq!(
            hist.get(f).copied(),
            Some(n),
            "{f}: histogram count equals the calls made ({hist:?})"
        );
        if !LAUNCHES.contains(&f.as_str()) {
            assert_eq!(
                rows.get(f).copied(),
                Some(n),
                "{f}: one row per call ({rows:?})"
            );
        }
    }
    // every launch is in the histograms, only slow ones are rows
    assert!(
        rows.get("cudaLaunchKernel").copied().unwrap_or(0)
            < int(&result["calls"], "cudaLaunchKernel") / 10
    );
    let lost = sql(
        &store,
        "SELECT CAST(sum(dropped) AS BIGINT) AS d, CAST(sum(emitted) AS BIGINT) AS e FROM collector_stats WHERE kind = 'cuda_sampling'",
    );
    assert_eq!(
        int(&lost[0], "d"),
        0,
        "no call lost its entry or return: {lost:?}"
    );
    let launches: i64 = LAUNCHES.iter().map(|f| int(&result["calls"], f)).sum();
    assert_eq!(
        int(&lost[0], "e"),
        launches,
        "collector_stats counts the sampled launches"
    );
    // arguments: the launch grid and the copy sizes come from registers and the stack
    let args = sql(
        &store,
        &format!(
            "SELECT cuda_function, max(bytes) AS bytes, max(cuda_stream) AS stream, max(cuda_grid) AS grid FROM kernel_events \
             WHERE pid = {pid} AND cuda_function IN ('cudaMemcpy', 'ncclAllReduce', 'cuMemAlloc_v2', 'cudaStreamSynchronize', 'cudaMalloc') \
             GROUP BY cuda_function ORDER BY cuda_function"
        ),
    );
    let by: BTreeMap<&str, &Value> = args
        .iter()
        .map(|r| (r["cuda_function"].as_str().unwrap(), r))
        .collect();
    assert_eq!(int(by["cudaMemcpy"], "bytes"), 1 << 20, "{args:?}");
    assert_eq!(int(by["cudaMalloc"], "bytes"), 1 << 20, "{args:?}");
    assert_eq!(int(by["cuMemAlloc_v2"], "bytes"), 8192, "{args:?}");
    assert_eq!(
        int(by["ncclAllReduce"], "bytes"),
        4096,
        "1024 float32 elements: {args:?}"
    );
    assert_eq!(
        int(by["cudaStreamSynchronize"], "stream"),
        0x5000,
        "{args:?}"
    );

    // the analysis: slow launches explained by the hog's run-queue time
    let v = query_json(&[
        "gpu",
        "--pid",
        &pid.to_string(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(v["status"], "ok");
    let hog_pid = h.id() as i64;
    let behind = &v["launch_starvation"]["behind"];
    assert_eq!(
        behind[0]["pid"].as_i64(),
        Some(hog_pid),
        "launches waited behind the hog: {v}"
    );
    let slow = v["slowest_calls"].as_array().unwrap();
    let first = &slow[0];
    assert_eq!(
        first["class"], "launch",
        "launches come first, apart from sync waits: {v}"
    );
    assert!(
        first["host_side"]["run_queue_ms"].as_f64().unwrap()
            > first["duration_ms"].as_f64().unwrap() / 2.0,
        "{first}"
    );
    // a run-queue wait is charged to the task that ran just before the thread got its CPU back:
    // mostly the hog, now and then a kernel thread that slipped in after it
    let behind_hog = format!("run-queue wait behind pid {hog_pid}");
    let launches: Vec<&Value> = slow.iter().filter(|c| c["class"] == "launch").collect();
    let by_hog = launches
        .iter()
        .filter(|c| c["reason"].as_str().unwrap().contains(&behind_hog))
        .count();
    assert!(
        by_hog * 2 > launches.len(),
        "most slow launches are explained by the hog: {v}"
    );
    // the launched kernel is named after its host stub's symbol
    let named = slow
        .iter()
        .filter(|c| c["function"] == "cudaLaunchKernel")
        .collect::<Vec<_>>();
    assert!(
        !named.is_empty() && named.iter().all(|c| c["kernel"] == "add_vectors_kernel"),
        "{v}"
    );
    let first_wait = slow
        .iter()
        .position(|c| c["class"] != "launch")
        .expect("other calls are listed too");
    assert!(
        slow[first_wait..].iter().all(|c| c["class"] != "launch"),
        "waits are listed apart, after the launches: {v}"
    );
    let f = v["by_function"].as_array().unwrap();
    let launch = f
        .iter()
        .find(|x| x["function"] == "cudaLaunchKernel")
        .unwrap();
    assert_eq!(
        launch["calls"].as_i64(),
        Some(int(&result["calls"], "cudaLaunchKernel")),
        "{launch}"
    );
    assert_eq!(launch["percentile_source"], "histogram");
    assert!(launch["p99_ms"].as_f64().unwrap() < launch["p999_ms"].as_f64().unwrap() + 1e-9);
    let sync = f
        .iter()
        .find(|x| x["function"] == "cudaStreamSynchronize")
        .unwrap();
    assert_eq!(sync["percentile_source"], "rows", "{sync}");
    // the causal chain says the GPU was starved by the host, naming the hog (the window is the
    // run's last second: the workload ran for a fraction of one)
    let d = query_json(&[
        "diagnose",
        "--pid",
        &pid.to_string(),
        "--window",
        "1s",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(d["blocking_mechanism"], "cpu_contention", "{d}");
    assert_eq!(d["contention_source"]["pid"].as_i64(), Some(hog_pid), "{d}");
    assert!(
        d["recommended_action"]
            .as_str()
            .unwrap()
            .contains("CUDA launches were slow"),
        "{d}"
    );
}

/// A GPU-bound loop (long kernels, nothing else on the host): the chain ends at the GPU.
#[test]
fn gpu_bound_loop_diagnosed_as_gpu_sync() {
    let Some(s) = Scenario::new("gpu_bound_loop_diagnosed_as_gpu_sync") else {
        return;
    };
    let store = s.store();
    let w = cuda_workload(
        "cw-cuda-workload",
        "0",
        "1",
        &["--iterations", "40", "--launches", "10", "--gpu-us", "3000"],
    );
    let pid = w.pid;
    let c = Collector::start(
        &store,
        &["--pid", &pid.to_string(), "--flush-interval", "1s"],
    );
    w.run();
    std::thread::sleep(Duration::from_millis(300));
    c.stop();
    let d = query_json(&[
        "diagnose",
        "--pid",
        &pid.to_string(),
        "--window",
        "60s",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(d["blocking_mechanism"], "gpu_sync", "{d}");
    assert_eq!(d["contention_source"]["kind"], "gpu", "{d}");
    assert_eq!(
        d["contention_source"]["function"], "cudaStreamSynchronize",
        "{d}"
    );
    assert_eq!(
        d["contention_source"]["stream"].as_i64(),
        Some(0x5000),
        "{d}"
    );
    let chain = d["chain"].as_array().unwrap();
    assert_eq!(
        chain.last().unwrap()["role"],
        "gpu",
        "the chain stops at the GPU, not at the thread that signalled: {d}"
    );
    assert!(!d.to_string().contains("\"lock_contention\""), "{d}");
}

/// The `.so.13` runtime (current PyTorch wheels) in a process that starts after the collector:
/// found by the periodic /proc scan; with launch sampling the counts are estimates, and
/// collector_stats says how they were sampled.
#[test]
fn cuda13_runtime_found_later_and_duty_cycled_launches_estimated() {
    let Some(s) = Scenario::new("cuda13_runtime_found_later_and_duty_cycled_launches_estimated")
    else {
        return;
    };
    let store = s.store();
    let c = Collector::start(
        &store,
        &[
            "--flush-interval",
            "1s",
            "--cuda-launch-sampling",
            "0.3",
            "--cuda-sampling-period",
            "200ms",
            "--min-off-cpu",
            "10ms",
        ],
    );
    let w = cuda_workload(
        "cw-cuda-workload-13",
        "0",
        "1",
        &["--iterations", "1200", "--launches", "200", "--gpu-us", "1"],
    );
    let pid = w.pid;
    // the collector rescans /proc every second: let it find the new process's libraries
    std::thread::sleep(Duration::from_millis(2500));
    let result = w.run();
    std::thread::sleep(Duration::from_millis(300));
    let out = c.stop();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("libcudart.so.13 (CUDA runtime"), "{report}");
    let (hist, rows) = counted(&store, pid);
    let made = int(&result["calls"], "cudaLaunchKernel");
    let sampled = hist["cudaLaunchKernel"];
    assert!(
        sampled > 0 && sampled < made,
        "launches are sampled, not all probed: {sampled} of {made}"
    );
    // sync calls are never sampled
    assert_eq!(
        hist["cudaStreamSynchronize"],
        int(&result["calls"], "cudaStreamSynchronize")
    );
    assert_eq!(
        rows["cudaStreamSynchronize"],
        int(&result["calls"], "cudaStreamSynchronize")
    );
    let v = query_json(&[
        "gpu",
        "--pid",
        &pid.to_string(),
        "--store",
        store.to_str().unwrap(),
    ]);
    let f = v["by_function"].as_array().unwrap();
    let launch = f
        .iter()
        .find(|x| x["function"] == "cudaLaunchKernel")
        .unwrap();
    let estimate = launch["calls"].as_i64().unwrap();
    let fraction = launch["sampled_fraction"].as_f64().unwrap();
    assert!(
        (0.1..0.6).contains(&fraction),
        "sampled fraction near 0.3: {launch}"
    );
    let err = (estimate - made).abs() as f64 / made as f64;
    assert!(
        err < 0.35,
        "estimate {estimate} of {made} calls ({:.0}% off)",
        err * 100.0
    );
    let stats = sql(
        &store,
        "SELECT detail FROM collector_stats WHERE kind = 'cuda_sampling' AND emitted > 0 LIMIT 1",
    );
    assert!(
        stats[0]["detail"]
            .as_str()
            .unwrap()
            .contains("launch probes attached"),
        "{stats:?}"
    );
}
