#!/usr/bin/env python3
"""How query cost grows with a fleet store: hosts × hours.

Two synthetic stores grow in steps through the real Parquet sink (`causeway-testkit synth`,
one partition per host-hour): one adds hosts (2 h each), one adds hours (4 hosts). At each step
`causeway-query bench --host synth-1` times, on one warm engine, what an agent asks of one host
(resolve_causal_chain, query_off_cpu_events and a window/waker/p99 SQL over 60 s) and a
fleet-wide scan (off-CPU time per host over every hour). Prints a markdown table and JSON.

Usage: python3 tests/perf/bench_scale.py [--rate 200] [--hosts 1,4,16,64] [--hours 1,4,16]
       [--iterations 10] [--dir /var/tmp/causeway-scale] [--json FILE]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

TARGET = os.environ.get("CARGO_TARGET_DIR", "/var/cache/causeway/target")
BIN = os.environ.get("CAUSEWAY_BIN_DIR", f"{TARGET}/release")
START = 1_795_773_600  # 2026-11-27T10:00:00Z


def synth(store, seconds, rate, hosts, first_host, start):
    subprocess.run([f"{BIN}/causeway-testkit", "synth", "--store", store, "--seconds", str(seconds),
                    "--rate", str(rate), "--hosts", str(hosts), "--first-host", str(first_host),
                    "--start", str(start)], check=True, stderr=subprocess.DEVNULL)


def size(store):
    files, nbytes = 0, 0
    for root, _, names in os.walk(os.path.join(store, "kernel_events")):
        for n in names:
            if n.endswith(".parquet"):
                files += 1
                nbytes += os.path.getsize(os.path.join(root, n))
    return files, nbytes


def measure(store, iterations):
    out = subprocess.run([f"{BIN}/causeway-query", "bench", "--store", store, "--pid", "4242",
                          "--host", "synth-1", "--iterations", str(iterations)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=200, help="events/s per host")
    ap.add_argument("--hosts", default="1,4,16,64", help="host counts of the hosts series (2 h each)")
    ap.add_argument("--hours", default="1,4,16", help="hour counts of the hours series (4 hosts)")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--dir", default="/var/tmp/causeway-scale")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    shutil.rmtree(a.dir, ignore_errors=True)
    points = []

    def point(series, store, hosts, hours):
        files, nbytes = size(store)
        r = measure(store, a.iterations)
        rows = hosts * hours * 3600 * a.rate
        p = {"series": series, "hosts": hosts, "hours": hours, "host_hours": hosts * hours, "rows": rows,
             "files": files, "bytes": nbytes, **{k: v["p50_ms"] for k, v in r.items()}}
        points.append(p)
        print(f"{series}: {hosts} hosts × {hours} h = {rows:,} rows in {files} files: "
              + ", ".join(f"{k} {v['p50_ms']:.0f} ms" for k, v in r.items()), file=sys.stderr)

    store = os.path.join(a.dir, "hosts")
    done = 0
    for n in [int(x) for x in a.hosts.split(",")]:
        t = time.time()
        synth(store, 2 * 3600, a.rate, n - done, done + 1, START)
        print(f"  (synth {n - done} hosts × 2 h in {time.time() - t:.0f} s)", file=sys.stderr)
        done = n
        point("hosts", store, n, 2)

    store = os.path.join(a.dir, "hours")
    done = 0
    for h in [int(x) for x in a.hours.split(",")]:
        synth(store, (h - done) * 3600, a.rate, 4, 1, START + done * 3600)
        done = h
        point("hours", store, 4, h)

    cols = ["resolve_causal_chain", "query_off_cpu_events", "run_sql_window_waker_p99", "fleet_scan_off_cpu_by_host"]
    print(f"\nrate {a.rate} events/s per host; p50 of {a.iterations} runs on one warm engine (fleet scan: 5)\n")
    print("| series | hosts | hours | rows | files | chain p50 ms | off-CPU events p50 ms | window SQL p50 ms | fleet scan p50 ms | fleet scan M rows/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in points:
        rate = p["rows"] / 1e6 / (p["fleet_scan_off_cpu_by_host"] / 1e3)
        print(f"| {p['series']} | {p['hosts']} | {p['hours']} | {p['rows']:,} | {p['files']} | "
              + " | ".join(f"{p[c]:.0f}" for c in cols) + f" | {rate:.0f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rate_per_host": a.rate, "points": points}, f, indent=1)
    shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
