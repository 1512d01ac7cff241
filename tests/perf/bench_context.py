#!/usr/bin/env python3
"""Cost of publishing the trace context, per span and per attach/detach, side by side:

  sdk            OpenTelemetry SDK span (start_as_current_span + end), no hook   (baseline)
  sdk+hook       same, with causeway_otel installed, no collector running (writer only)
  sdk+hook+probe same, with causeway-collector probing causeway_ctx_publish (writer + uprobe)
  c              causeway_ctx_attach + causeway_ctx_detach from C, no collector
  c+probe        same, collector probing (2 uprobe hits per pair)

Rounds are interleaved (collector stopped/started between phases), median of --rounds; prints a
markdown table and JSON. Needs root (the collector) and a C compiler.
Usage: python3 tests/perf/bench_context.py [--rounds 5] [--spans 20000] [--pairs 200000]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAUSEWAY_BIN_DIR", "/var/cache/causeway/target/release")

PY_WORKER = r'''
import sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
hook = sys.argv[1] == "hook"
n = int(sys.argv[2])
tp = TracerProvider()
trace.set_tracer_provider(tp)
if hook:
    import causeway_otel
    causeway_otel.install()
t = trace.get_tracer("bench")
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(n // 10):
        with t.start_as_current_span("w"):
            pass
    s = time.perf_counter_ns()
    for _ in range(n):
        with t.start_as_current_span("x"):
            pass
    print((time.perf_counter_ns() - s) / n, flush=True)
'''

C_WORKER = r'''
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "causeway_ctx.h"
static uint64_t now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    uint8_t tr[16] = {1}, sp[8] = {2};
    char line[16];
    printf("ready\n"); fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        uint64_t s = now();
        for (long i = 0; i < n; i++) { sp[7] = (uint8_t)i; causeway_ctx_detach(causeway_ctx_attach(tr, sp, 1)); }
        printf("%f\n", (double)(now() - s) / n); fflush(stdout);
    }
    return 0;
}
'''


class Worker:
    def __init__(self, argv, env):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.p.stdout.readline().strip() == "ready"

    def measure(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        return float(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--spans", type=int, default=20000)
    ap.add_argument("--pairs", type=int, default=200000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="causeway-bench-ctx-")
    cc = shutil.which("cc") or shutil.which("clang")
    lib = os.path.join(tmp, "libcauseway_ctx.so")
    subprocess.run([cc, "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-o", lib,
                    os.path.join(ROOT, "context/c/causeway_ctx.c")], check=True)
    with open(os.path.join(tmp, "w.c"), "w") as f:
        f.write(C_WORKER)
    cbin = os.path.join(tmp, "w")
    subprocess.run([cc, "-O2", "-I", os.path.join(ROOT, "context/c"), "-o", cbin, os.path.join(tmp, "w.c"),
                    "-L", tmp, "-lcauseway_ctx", f"-Wl,-rpath,{tmp}"], check=True)
    env = dict(os.environ, CAUSEWAY_CTX_LIB=lib,
               PYTHONPATH=os.path.join(ROOT, "context/python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    workers = {
        "sdk": Worker([sys.executable, "-c", PY_WORKER, "plain", str(a.spans)], env),
        "sdk+hook": Worker([sys.executable, "-c", PY_WORKER, "hook", str(a.spans)], env),
        "c": Worker([cbin, str(a.pairs)], env),
    }
    pids = [str(w.p.pid) for w in workers.values()]
    res = {k: [] for k in ["sdk", "sdk+hook", "sdk+hook+probe", "c", "c+probe"]}
    for r in range(a.rounds):
        for k, w in workers.items():
            res[k].append(w.measure())
        ready = os.path.join(tmp, f"ready{r}")
        args = [os.path.join(BIN, "causeway-collector"), "run", "--store", os.path.join(tmp, "store"),
                "--ready-file", ready, "--trace-context-lib", lib]
        for p in pids:
            args += ["--pid", p]
        c = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        while not os.path.exists(ready):
            assert c.poll() is None, "collector failed to start"
            time.sleep(0.05)
        res["sdk+hook+probe"].append(workers["sdk+hook"].measure())
        res["c+probe"].append(workers["c"].measure())
        c.send_signal(signal.SIGINT)
        c.wait()
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    for w in workers.values():
        w.close()
    med = {k: statistics.median(v) for k, v in res.items()}
    spread = {k: (min(v), max(v)) for k, v in res.items()}
    rows = [
        ("OTel SDK span, no hook (baseline)", "sdk", None),
        ("+ causeway_otel hook (writer, no probe)", "sdk+hook", "sdk"),
        ("+ hook + collector uprobe", "sdk+hook+probe", "sdk"),
        ("C attach+detach pair, no probe", "c", None),
        ("C attach+detach pair + uprobe (2 hits)", "c+probe", "c"),
    ]
    print("| what | ns per op (median) | spread | added vs baseline | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, k, base in rows:
        added = f"{med[k] - med[base]:.0f} ns" if base else "—"
        ratio = f"×{med[k] / med[base]:.3f}" if base else "—"
        print(f"| {label} | {med[k]:.0f} | {spread[k][0]:.0f}–{spread[k][1]:.0f} | {added} | {ratio} |")
    print(json.dumps({"median_ns": med, "spread_ns": spread, "rounds": a.rounds}))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
