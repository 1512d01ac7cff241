#!/usr/bin/env python3
"""causeway's benchmark harness: every figure next to its baseline measured in the same run.

  P1  BPF ns per sched_switch (kernel bpf_stats) vs an empty program on the same hook
  P2a slowdown of pinned `perf bench sched pipe` (every switch traced): none / the floor (empty
      programs on sched_switch and sched_waking, the hooks causeway needs) / causeway /
      libbpf-tools offcputime / bpftrace, interleaved rounds
  P2b throughput loss of a service load (HTTP server, lock + thread pool, bounded clients)
  P3  per-call cost of the CUDA uprobes on the fake libcudart vs a bare uprobe on the symbol
  P4  user-space ingest events/s on one core (causeway-testkit bench-ingest), and a live capture at the highest
      switch rate this machine makes, with every event kept: events/s, drops, collector CPU
  P5  tool latency on a synthetic store vs DuckDB on the same Parquet files
  P6  bytes per event in object storage (live captures with the default file settings, one a
      round; the synthetic store)
  P7  collector peak RSS during those captures; offcputime's and bpftrace's during P2a

Medians of --rounds interleaved rounds with the spread (min–max). Prints a markdown table and
writes JSON (--json). Run as root from anywhere: python3 tests/perf/bench_all.py [--quick]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", "/var/cache/causeway/target")
BIN = os.environ.get("CAUSEWAY_BIN_DIR", f"{TARGET}/release")
COLLECTOR, QUERY = f"{BIN}/causeway-collector", f"{BIN}/causeway-query"
TESTKIT = f"{BIN}/causeway-testkit"
BT_SCRIPT = """tracepoint:sched:sched_switch {
  @start[args->prev_pid] = nsecs;
  $s = @start[args->next_pid];
  if ($s) { @us[kstack, ustack, args->next_comm] = sum((nsecs - $s) / 1000); delete(@start[args->next_pid]); }
}
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def peak_rss(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def bpf_prog_count():
    out = subprocess.run(["bpftool", "prog", "list"], capture_output=True, text=True).stdout
    return out.count("\n")


# Every tracer runs this long after attaching before a measurement starts: overhead is measured
# in steady state, not during a tracer's start-up (causeway symbolizes the first stacks of every
# process on the host in its first second; measured at once, that read as ×1.11 against ×1.06).
SETTLE_S = 2


class Tracer:
    """One tracer configuration, started and stopped around each measurement."""

    def __init__(self, name, tmp):
        self.name, self.tmp, self.p = name, tmp, None

    def start(self, extra=()):
        if self.name == "none":
            return self
        if self.name == "floor":
            self._collector_until_ready(["bare-sched"], TESTKIT)
        elif self.name.startswith("causeway"):
            if self.name == "causeway-nostacks":
                extra = ("--stack-threshold", "0", *extra)
            store = os.path.join(self.tmp, "store-overhead")
            self._collector_until_ready(["run", "--store", store, *extra])
        elif self.name == "offcputime":
            self.p = subprocess.Popen([shutil.which("offcputime") or "/usr/sbin/offcputime", "600"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(SETTLE_S)
        elif self.name == "bpftrace":
            script = os.path.join(self.tmp, "offcpu.bt")
            open(script, "w").write(BT_SCRIPT)
            before = bpf_prog_count()
            self.p = subprocess.Popen(["bpftrace", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(300):
                if bpf_prog_count() > before:
                    break
                time.sleep(0.05)
            time.sleep(SETTLE_S)
        if self.p is not None and self.p.poll() is not None:
            raise RuntimeError(f"{self.name} exited at start")
        return self

    def _collector_until_ready(self, args, exe=COLLECTOR):
        """Starts `EXE ARGS --ready-file F` (the collector by default) and waits until it has attached (F
        exists), then lets it settle; raises if it never attaches."""
        ready = os.path.join(self.tmp, f"ready-{self.name}")
        if os.path.exists(ready):
            os.remove(ready)
        self.p = subprocess.Popen([exe, *args, "--ready-file", ready],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            if os.path.exists(ready) or self.p.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(ready):
            raise RuntimeError(f"{self.name}: causeway-collector {args[0]} did not attach")
        time.sleep(SETTLE_S)

    def stop(self):
        rss = peak_rss(self.p.pid) if self.p else None
        if self.p:
            self.p.send_signal(2)
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p = None
        return rss


def med(v):
    return statistics.median(v) if v else None


def spread(v):
    return f"{min(v):.2f}–{max(v):.2f}" if v else ""


def pipe_us_per_op(loops):
    out = subprocess.run(["taskset", "-c", "0", "perf", "bench", "sched", "pipe", "-l", str(loops)],
                         capture_output=True, text=True, check=True).stdout
    return next(float(l.split()[0]) for l in out.splitlines() if "usecs/op" in l)


def service_rps(seconds):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests/perf/service_load.py"), "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["requests_per_s"]


def p1(a, res):
    out = subprocess.run([TESTKIT, "bench-bpf", "--json", "--secs", str(3 if a.quick else 5)],
                         capture_output=True, text=True, check=True).stdout
    res["P1"] = json.loads(out.strip().splitlines()[-1])


def p2(a, res, tmp):
    tracers = ["none", "floor", "causeway", "causeway-nostacks"]
    if shutil.which("offcputime") or os.path.exists("/usr/sbin/offcputime"):
        tracers.append("offcputime")
    else:
        log("*** offcputime not found (apt-get install libbpf-tools): left out of P2 ***")
    if shutil.which("bpftrace"):
        tracers.append("bpftrace")
    else:
        log("*** bpftrace not found: left out of P2 ***")
    loops = 50_000 if a.quick else 200_000
    secs = 3 if a.quick else 5
    pipe = {t: [] for t in tracers}
    svc = {t: [] for t in tracers}
    rss = {t: [] for t in tracers}
    for r in range(a.rounds):
        for t in tracers:
            tr = Tracer(t, tmp).start()
            try:
                pipe[t].append(pipe_us_per_op(loops))
                svc[t].append(service_rps(secs))
            finally:
                m = tr.stop()
            if m:
                rss[t].append(m)
            log(f"P2 round {r + 1} {t:<11} pipe {pipe[t][-1]:.2f} µs/op, service {svc[t][-1]:.0f} req/s")
    res["P2"] = {"pipe_us_per_op": pipe, "service_requests_per_s": svc, "tracer_peak_rss_bytes": rss,
                 "pipe_loops": loops, "service_seconds": secs}


def p3(a, res):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests/perf/bench_cuda.py"), "--rounds", str(a.rounds),
                          "--launches", str(100_000 if a.quick else 300_000),
                          "--only", "none,bare-entry+ret,causeway-nocuda,causeway-1.0,causeway-0.1"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        log(f"*** P3 failed: {out.stderr[-2000:]} ***")
        return
    res["P3"] = json.loads(out.stdout.strip().splitlines()[-1])


def p4_p6_p7(a, res, tmp):
    out = subprocess.run(["taskset", "-c", "0", TESTKIT, "bench-ingest", "--json",
                          "--events", str(500_000 if a.quick else 2_000_000)],
                         capture_output=True, text=True, check=True).stdout
    res["P4_ingest"] = json.loads(out)
    # live: a set switch rate (every wake-up is an off-CPU and a run-queue record, all kept:
    # thresholds at their minimum, no rate limit), one fresh collector per step. The run queue's
    # minimum is 0: its waits are the kernel's, from enqueue, and many last under 1 µs.
    def q(store, sql):
        return json.loads(subprocess.run([QUERY, "sql", sql, "--format", "json", "--store", store],
                                         capture_output=True, text=True, check=True).stdout or "[]")

    def live(target, store, extra):
        ready = store + ".ready"
        c = subprocess.Popen([COLLECTOR, "run", "--store", store, "--ready-file", ready, "--min-off-cpu", "1us",
                              "--min-runq", "0", "--max-events-per-second", "0", *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        w = subprocess.run([TESTKIT, "workload", "rate", "--rate", str(target // 2), "--seconds", "3" if a.quick else "8"],
                           capture_output=True, text=True, check=True)
        c.send_signal(2)
        c.wait(timeout=120)
        return w

    def store_bytes_per_event(store):
        rows = q(store, "SELECT count(*) AS n FROM kernel_events")[0]["n"]
        nbytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(store, "kernel_events"))
                     for f in fs if f.endswith(".parquet"))
        return rows, (nbytes / rows if rows else None)

    steps = []
    for target in ([50_000, 200_000] if a.quick else [50_000, 100_000, 200_000, 400_000]):
        store = os.path.join(tmp, f"store-live-{target}")
        # files (and collector_stats rows) every 2 s: the stats see each stretch of the run
        w = live(target, store, ["--flush-interval", "2s"])
        me = q(store, "SELECT sum(dropped) AS dropped, max(peak_rss_bytes) AS peak, max(emitted * 1e9 / interval_ns) AS rate, "
               "max(cpu_percent) AS cpu, avg(bpf_ns_per_run) AS bpf_ns FROM collector_stats WHERE kind = 'self' AND interval_ns > 1000000000")[0]
        rows, bpe = store_bytes_per_event(store)
        step = {"target_events_per_s": target, "switches_per_s": json.loads(w.stdout)["switches_per_s"],
                "events_per_s": me.get("rate"), "dropped": me.get("dropped", 0), "peak_rss_bytes": me.get("peak"),
                "collector_cpu_percent_max": me.get("cpu"), "bpf_ns_per_run": me.get("bpf_ns"),
                "rows": rows, "bytes_per_event": bpe}
        steps.append(step)
        log(f"P4 live {target:>7}/s target: {step['events_per_s'] or 0:,.0f} events/s, {step['dropped']} dropped, "
            f"peak RSS {(step['peak_rss_bytes'] or 0) / 2**20:.0f} MiB, CPU {step['collector_cpu_percent_max'] or 0:.0f} %")
        shutil.rmtree(store, ignore_errors=True)
    res["P4_live"] = steps
    first_drop = next((s["target_events_per_s"] for s in steps if s["dropped"]), None)
    res["P4_drops_begin_between"] = first_drop
    base = steps[0]
    # P6 as stored with the collector's own file settings (a file per 10 s or 200k rows; the
    # 2 s files above carry their footers over fewer rows), and P7 at that rate: one capture a
    # round, the median and the spread (a capture's bytes move with the workload's wake-up mix)
    p6, p7, counted = [], [], []
    for r in range(a.rounds):
        store = os.path.join(tmp, f"store-live-p6-{r}")
        live(base["target_events_per_s"], store, [])
        rows, bpe = store_bytes_per_event(store)
        peak = q(store, "SELECT max(peak_rss_bytes) AS peak FROM collector_stats WHERE kind = 'self'")[0].get("peak")
        shutil.rmtree(store, ignore_errors=True)
        if bpe:
            p6.append(bpe)
            counted.append(rows)
        if peak:
            p7.append(peak)
        log(f"P6 capture {r + 1}: {rows} rows, {bpe or 0:.2f} B/event, peak RSS {(peak or 0) / 2**20:.0f} MiB")
    res["P6"] = {"capture_bytes_per_event": med(p6), "capture_bytes_per_event_runs": p6,
                 "capture_rows_runs": counted, "capture_bytes_per_event_2s_files": base["bytes_per_event"]}
    res["P7"] = {"collector_peak_rss_bytes": med(p7) or base["peak_rss_bytes"],
                 "collector_peak_rss_bytes_runs": p7, "at_events_per_s": base["events_per_s"]}


def p5(a, res, tmp):
    store = a.query_store or os.path.join(tmp, "store-query")
    if not os.path.isdir(os.path.join(store, "kernel_events")):
        log(f"P5: writing a synthetic store of {a.query_seconds} s at {a.query_rate} events/s ...")
        subprocess.run([TESTKIT, "synth", "--store", store, "--seconds", str(a.query_seconds), "--rate", str(a.query_rate)],
                       check=True, stderr=subprocess.DEVNULL)
    n = 5 if a.quick else 20
    # as a long-running server answers (a window decoded for one call is kept for the next
    # about the same process and window), and with nothing kept: every call decodes its window
    df = json.loads(subprocess.run([QUERY, "bench", "--store", store, "--pid", "4242", "--iterations", str(n)],
                                   capture_output=True, text=True, check=True).stdout)
    cold = json.loads(subprocess.run([QUERY, "bench", "--store", store, "--pid", "4242", "--iterations", str(n),
                                      "--window-cache-mib", "0"],
                                     capture_output=True, text=True, check=True).stdout)
    dk = subprocess.run([sys.executable, os.path.join(ROOT, "tests/perf/duckdb_tools.py"), store, "4242", str(n)],
                        capture_output=True, text=True)
    nbytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(store, "kernel_events"))
                 for f in fs if f.endswith(".parquet"))
    if a.query_store:
        counted = subprocess.run([QUERY, "sql", "--store", store, "--format", "json", "SELECT count(*) AS n FROM kernel_events"],
                                 capture_output=True, text=True)
        rows = json.loads(counted.stdout)[0]["n"] if counted.returncode == 0 else None
    else:
        rows = a.query_seconds * a.query_rate
    res["P5"] = {"rows": rows, "causeway": df, "causeway_nothing_kept": cold, "duckdb": json.loads(dk.stdout) if dk.returncode == 0 else None,
                 "duckdb_error": None if dk.returncode == 0 else dk.stderr[-500:]}
    if rows:
        res.setdefault("P6", {})["synthetic_bytes_per_event"] = nbytes / rows


def table(res):
    rows = []

    def add(pid, what, ours, base, ratio, goal, met):
        rows.append((pid, what, ours, base, ratio, goal, "yes" if met else ("no" if met is not None else "")))

    if "P1" in res:
        for k, r in enumerate(res["P1"]):
            ns, empty = r["sched_switch_ns"], r["empty_ns"]
            add("P1", f"BPF ns per sched_switch, {r['config']}", f"{ns:.0f}", f"{empty:.0f} (empty program)",
                f"×{ns / empty:.1f}; sched_waking {r['sched_waking_ns']:.0f} ns (empty {r.get('empty_waking_ns', 0):.0f})", "≤ 150 ns" if k == 0 else "",
                ns <= 150 if k == 0 else None)
    if "P2" in res:
        p = res["P2"]
        base = med(p["pipe_us_per_op"]["none"])
        floor = med(p["pipe_us_per_op"].get("floor", []))
        for t, v in p["pipe_us_per_op"].items():
            if t != "none":
                what = "empty programs on sched_switch + sched_waking (floor)" if t == "floor" else t
                ratio = f"×{med(v) / base:.3f}"
                if floor and t != "floor":
                    ratio += f"; ×{med(v) / floor:.3f} over the floor"
                add("P2a", f"pipe ping-pong µs/op, {what} (spread {spread(v)})", f"{med(v):.2f}", f"{base:.2f} (none)",
                    ratio, "≤ ×1.05" if t == "causeway" else "", med(v) / base <= 1.05 if t == "causeway" else None)
        sb = med(p["service_requests_per_s"]["none"])
        for t, v in p["service_requests_per_s"].items():
            if t != "none":
                loss = 1 - med(v) / sb
                add("P2b", f"service req/s, {t} (spread {min(v):.0f}–{max(v):.0f})", f"{med(v):.0f}", f"{sb:.0f} (none)",
                    f"{loss * 100:+.1f} % loss", "≤ 1 % loss" if t == "causeway" else "", loss <= 0.01 if t == "causeway" else None)
        for t, v in p["tracer_peak_rss_bytes"].items():
            if v:
                add("P7", f"peak RSS of {t} during P2", f"{med(v) / 2**20:.0f} MiB", "", "", "", None)
    if "P3" in res:
        by = {r["config"]: r for r in res["P3"]["results"]}
        for c in ("causeway-1.0", "causeway-0.1"):
            if c in by:
                r = by[c]
                add("P3", f"cudaLaunchKernel ns/call, {c}", f"{r['ns_per_launch']:.0f}",
                    f"{by['causeway-nocuda']['ns_per_launch']:.0f} (collector without CUDA probes)",
                    f"×{r['ratio_vs_collector_without_cuda']:.3f}; {r['added_vs_bare_entry_ret_ns']:+.0f} ns vs bare entry+ret",
                    "≤ ×1.03 at the default duty cycle" if c == "causeway-0.1" else "",
                    r["ratio_vs_collector_without_cuda"] <= 1.03 if c == "causeway-0.1" else None)
    if "P4_ingest" in res:
        r = res["P4_ingest"]
        add("P4", "ingest events/s, one core (decode+enrich+Parquet)", f"{r['one_core_end_to_end_events_per_s']:,.0f}",
            "", f"capture stage {r['capture_stage_events_per_s']:,.0f}/s, writer {r['writer_stage_events_per_s']:,.0f}/s",
            "≥ 1M events/s", r["one_core_end_to_end_events_per_s"] >= 1e6)
    if "P4_live" in res:
        for r in res["P4_live"]:
            add("P4", f"live capture at {r['target_events_per_s']:,}/s target (all kept): events/s, drops",
                f"{r['events_per_s'] or 0:,.0f}/s, {r['dropped']} dropped", "",
                f"collector CPU {r['collector_cpu_percent_max'] or 0:.0f} % (max window), peak RSS {(r['peak_rss_bytes'] or 0) / 2**20:.0f} MiB",
                "no drops at 200k/s" if r["target_events_per_s"] == 200_000 else "",
                r["dropped"] == 0 if r["target_events_per_s"] == 200_000 else None)
    if "P5" in res:
        duck = res["P5"]["duckdb"] or {}
        if not duck:
            # the baseline could not run: causeway's figures still count, the goal cannot be judged
            why = (res["P5"].get("duckdb_error") or "no output").strip().splitlines()[-1:] or ["?"]
            log(f"*** P5: DuckDB baseline did not run ({why[0]}); `pip install duckdb` for it ***")
        for how, runs in (("", res["P5"]["causeway"]), (", nothing kept", res["P5"].get("causeway_nothing_kept") or {})):
            for k, v in runs.items():
                d = duck.get(k)
                add("P5", f"{k} p50 ms{how} ({res['P5']['rows'] or '?'} rows)", f"{v['p50_ms']:.0f}",
                    f"{d['p50_ms']:.0f} (DuckDB)" if d else "DuckDB did not run",
                    f"×{v['p50_ms'] / d['p50_ms']:.2f}" + (f"; first call {v['first_ms']:.0f} ms" if "first_ms" in v else "")
                    if d else "", "< 100 ms and < DuckDB",
                    (v["p50_ms"] < 100 and v["p50_ms"] < d["p50_ms"]) if d else None)
    if "P6" in res:
        r = res["P6"]
        if r.get("capture_bytes_per_event"):
            two = r.get("capture_bytes_per_event_2s_files")
            runs = r.get("capture_bytes_per_event_runs") or [r["capture_bytes_per_event"]]
            add("P6", f"bytes per event, live capture (default file settings; spread {spread(runs)}, "
                f"{len(runs)} captures)", f"{r['capture_bytes_per_event']:.2f}", "",
                f"{two:.2f} in the P4 run's 2 s files" if two else "", "≤ 5", r["capture_bytes_per_event"] <= 5)
        if r.get("synthetic_bytes_per_event"):
            add("P6", "bytes per event, synthetic store (random values)", f"{r['synthetic_bytes_per_event']:.2f}", "", "", "", None)
    if "P7" in res:
        r = res["P7"]
        runs = r.get("collector_peak_rss_bytes_runs") or [r["collector_peak_rss_bytes"]]
        add("P7", f"collector peak RSS at {r['at_events_per_s'] or 0:,.0f} events/s (spread {min(runs) / 2**20:.0f}–{max(runs) / 2**20:.0f} MiB)",
            f"{r['collector_peak_rss_bytes'] / 2**20:.0f} MiB", "", "", "≤ 64 MiB", r["collector_peak_rss_bytes"] <= 64 * 2**20)
    out = ["| | what | causeway | baseline (same run) | ratio / detail | goal | met |", "|---|---|---:|---:|---|---|---|"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def markdown(res, argv):
    """docs/benchmarks.md: what each P measures, the command, the machine, the table."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cmd = "python3 tests/perf/bench_all.py " + " ".join(argv[1:])
    return f"""# Benchmarks

Written by `tests/perf/bench_all.py --markdown docs/benchmarks.md` (as root). Every figure is
measured side by side with its baseline in the same run, in interleaved rounds, and reported as
the median with its spread; compare ratios across runs, not absolute figures (this VM's speed
varies from day to day).

```text
{__doc__.split(chr(10), 1)[1].rstrip()}
```

## The latest full run

`{cmd}` — {when}, kernel {res['machine']}, {res['cpus']} CPUs, {res['rounds']} rounds{' (quick)' if res['quick'] else ''}.

{table(res)}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="shorter runs (for a smoke test; figures are noisier)")
    ap.add_argument("--only", default="P1,P2,P3,P4,P5", help="subset, e.g. P1,P4")
    ap.add_argument("--query-store", help="an existing store for P5 (default: synthesize one)")
    ap.add_argument("--query-seconds", type=int, default=None,
                    help="seconds of the synthetic P5 store (default 3600, the 1 h store the goal names; 600 with --quick)")
    ap.add_argument("--query-rate", type=int, default=50_000)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", metavar="FILE",
                    help="write the table, the command and the machine to FILE (docs/benchmarks.md)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_all.py loads BPF programs: run it as root")
    if a.query_seconds is None:
        a.query_seconds = 600 if a.quick else 3600
    only = set(a.only.split(","))
    res = {"rounds": a.rounds, "quick": a.quick, "machine": os.uname().release, "cpus": os.cpu_count()}
    tmp = tempfile.mkdtemp(prefix="causeway-bench-")
    try:
        if "P1" in only:
            p1(a, res)
        if "P2" in only:
            p2(a, res, tmp)
        if "P3" in only:
            p3(a, res)
        if "P4" in only:
            p4_p6_p7(a, res, tmp)
        if "P5" in only:
            res.setdefault("P6", {})
            p5(a, res, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(res))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(markdown(res, sys.argv))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
