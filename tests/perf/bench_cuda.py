#!/usr/bin/env python3
"""Cost of the CUDA probes on a launch-bound loop (issue 7 / P3), side by side in one run:

  none           cudaLaunchKernel loop, nothing attached                          (baseline)
  bare-entry     an empty uprobe on cudaLaunchKernel (causeway-testkit bare-uprobe)
  bare-entry+ret an empty uprobe + uretprobe on it                                (probe baseline)
  causeway-nocuda the collector with its CUDA probes off (cuda.enabled false)  (collector baseline)
  causeway-1.0   the collector, every launch probed (cuda.launch_sampling 1.0)
  causeway-0.1   the collector, default duty cycle (launch probes attached 10% of the time)

The loop is tests/cuda's fake libcudart.so.12 with FAKECUDA_LAUNCH_NS of host work per launch
(default 8000: a launch-bound PyTorch loop of tiny ops runs ~8-10 us per op on an H100). Rounds are
interleaved, each configuration once per round; medians of --rounds with min-max spread. Prints a
markdown table and JSON. Needs root and a C compiler.
Usage: python3 tests/perf/bench_cuda.py [--rounds 5] [--launches 200000] [--launch-ns 8000]
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAUSEWAY_BIN_DIR", "/var/cache/causeway/target/release")


def wait_ready(proc, ready):
    deadline = time.time() + 60
    while not os.path.exists(ready):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"probe process did not attach: {proc.args}")
        time.sleep(0.02)
    time.sleep(0.2)


def start(config, libs, tmp):
    ready = os.path.join(tmp, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    lib = os.path.join(libs, "libcudart.so.12")
    if config == "none":
        return None
    if config.startswith("bare"):
        args = [os.path.join(BIN, "causeway-testkit"), "bare-uprobe", "--binary", lib, "--symbol",
                "cudaLaunchKernel", "--ready-file", ready]
        if config.endswith("+ret"):
            args.append("--return")
    else:
        args = [os.path.join(BIN, "causeway-collector"), "run", "--store", os.path.join(tmp, "store"),
                "--ready-file", ready]
        fraction = config.split("-")[1]
        if fraction == "nocuda":
            cfg = os.path.join(tmp, "nocuda.yaml")
            with open(cfg, "w") as f:
                f.write("cuda:\n  enabled: false\n")
            args += ["--config", cfg]
        else:
            args += ["--cuda-launch-sampling", fraction, "--cuda-lib", lib]
    p = subprocess.Popen(args, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         env={**os.environ, "CAUSEWAY_LOG": "error"})
    wait_ready(p, ready)
    return p


def stop(p):
    if p is not None:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--launches", type=int, default=200000)
    ap.add_argument("--launch-ns", type=int, default=8000)
    ap.add_argument("--cpu", default="0", help="CPU the loop is pinned to")
    ap.add_argument("--only", help="comma-separated subset of the configurations")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_cuda.py needs root (uprobes)")
    tmp = tempfile.mkdtemp(prefix="causeway-bench-cuda-")
    libs = os.path.join(tmp, "fakecuda")
    subprocess.run(["bash", os.path.join(ROOT, "tests/cuda/build.sh"), libs], check=True)
    configs = ["none", "bare-entry", "bare-entry+ret", "causeway-nocuda", "causeway-1.0", "causeway-0.1"]
    if a.only:
        configs = a.only.split(",")
    ns = {c: [] for c in configs}
    env = {**os.environ, "FAKECUDA_LAUNCH_NS": str(a.launch_ns)}
    for r in range(a.rounds):
        for c in configs:
            p = start(c, libs, tmp)
            try:
                out = subprocess.run(["taskset", "-c", a.cpu, os.path.join(libs, "cw-cuda-workload"), "--bench",
                                      str(a.launches)], env=env, capture_output=True, text=True, check=True)
            finally:
                stop(p)
            ns[c].append(json.loads(out.stdout)["ns_per_launch"])
            print(f"round {r + 1} {c:<15} {ns[c][-1]:9.1f} ns/launch", file=sys.stderr)
    med = {c: statistics.median(v) for c, v in ns.items()}
    base = med["none"]
    rows = []
    print(f"\n{a.launches} cudaLaunchKernel calls per run, {a.launch_ns} ns host work each, "
          f"pinned to CPU {a.cpu}, {a.rounds} interleaved rounds (median, min-max)\n")
    print("| config | ns per launch | spread | added vs none | × none | CUDA probes: × collector without them | added vs bare entry+ret |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in configs:
        v = ns[c]
        added = med[c] - base
        probed = c in ("causeway-1.0", "causeway-0.1")
        vs_bare = med[c] - med["bare-entry+ret"] if probed and "bare-entry+ret" in med else None
        vs_nocuda = med[c] / med["causeway-nocuda"] if probed and "causeway-nocuda" in med else None
        rows.append({"config": c, "ns_per_launch": med[c], "min": min(v), "max": max(v), "added_ns": added,
                     "ratio": med[c] / base, "ratio_vs_collector_without_cuda": vs_nocuda,
                     "added_vs_bare_entry_ret_ns": vs_bare})
        print(f"| {c} | {med[c]:.0f} | {min(v):.0f}-{max(v):.0f} | {added:+.0f} | ×{med[c] / base:.3f} | "
              f"{'' if vs_nocuda is None else f'×{vs_nocuda:.3f}'} | {'' if vs_bare is None else f'{vs_bare:+.0f}'} |")
    print()
    print(json.dumps({"launches": a.launches, "launch_ns": a.launch_ns, "rounds": a.rounds, "results": rows}))


if __name__ == "__main__":
    main()
