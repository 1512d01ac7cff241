"""The same questions as causeway-query's tools, asked of DuckDB on the same Parquet files.
Prints one JSON object of p50/p99 milliseconds per tool (one warm connection, N runs)."""
import json
import sys
import time

import duckdb

store, pid, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
con.execute(f"CREATE VIEW kernel_events AS SELECT * FROM read_parquet('{store}/kernel_events/**/*.parquet', hive_partitioning = true)")
end = con.execute(f"SELECT max(time_unix_nano) FROM kernel_events WHERE pid = {pid}").fetchone()[0]
start = end - 60_000_000_000
w = f"pid = {pid} AND time_unix_nano >= {start} AND time_unix_nano < {end}"
tid = pid + 1
newest = con.execute("SELECT max(time_unix_nano) FROM kernel_events").fetchone()[0]
chain = [
    "SELECT max(time_unix_nano) FROM kernel_events",
    f"SELECT max(time_unix_nano + duration_ns) FROM kernel_events WHERE pid = {pid} AND time_unix_nano >= {newest - 300_000_000_000}",
    f"SELECT tid, comm, event_name, coalesce(state, 'runq') AS state, count(*), sum(duration_ns), max(duration_ns) FROM kernel_events WHERE {w} AND event_name IN ('sched.off_cpu', 'sched.runq') GROUP BY ALL",
    f"SELECT waker_pid, waker_tid, waker_comm, count(*), sum(duration_ns) AS total, max(duration_ns) FROM kernel_events WHERE {w} AND event_name = 'sched.off_cpu' AND state = 'sleep' AND waker_tid IS NOT NULL AND waker_pid <> 0 AND waker_tid <> tid GROUP BY ALL ORDER BY total DESC LIMIT 5",
    f"SELECT prev_pid, prev_tid, prev_comm, count(*), sum(duration_ns) AS total, max(duration_ns) FROM kernel_events WHERE {w} AND event_name = 'sched.runq' AND prev_pid <> {pid} GROUP BY ALL ORDER BY total DESC LIMIT 5",
    f"SELECT tid, time_unix_nano, duration_ns FROM kernel_events WHERE {w} AND event_name = 'sched.off_cpu' AND waker_tid = {pid + 2} ORDER BY duration_ns DESC LIMIT 1",
    f"SELECT state, duration_ns, waker_tid, least(time_unix_nano + duration_ns, {end}) - greatest(time_unix_nano, {end - 2_000_000}) AS o FROM kernel_events WHERE pid = {pid} AND tid = {pid + 2} AND event_name = 'sched.off_cpu' AND time_unix_nano < {end} AND time_unix_nano + duration_ns > {end - 2_000_000} AND time_unix_nano >= {start} ORDER BY o DESC LIMIT 1",
]
off = f"pid = {pid} AND tid = {tid} AND event_name = 'sched.off_cpu' AND time_unix_nano >= {start} AND time_unix_nano < {end}"
off_cpu = [
    f"SELECT count(*), sum(duration_ns), approx_quantile(duration_ns, 0.5), approx_quantile(duration_ns, 0.99), approx_quantile(duration_ns, 0.999) FROM kernel_events WHERE {off}",
    f"SELECT state, count(*), sum(duration_ns) AS t FROM kernel_events WHERE {off} GROUP BY state ORDER BY t DESC",
    f"SELECT waker_pid, waker_tid, waker_comm, count(*), sum(duration_ns) AS t FROM kernel_events WHERE {off} AND waker_tid IS NOT NULL GROUP BY ALL ORDER BY t DESC LIMIT 10",
    f"SELECT * FROM kernel_events WHERE {off} ORDER BY duration_ns DESC LIMIT 50",
]
sql = [f"SELECT waker_tid, count(*), approx_quantile(duration_ns, 0.99) FROM kernel_events WHERE {off} GROUP BY waker_tid"]
out = {}
for name, queries in [("resolve_causal_chain", chain), ("query_off_cpu_events", off_cpu), ("run_sql_window_waker_p99", sql)]:
    ms = []
    for _ in range(iterations):
        t = time.perf_counter()
        for q in queries:
            con.execute(q).fetchall()
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    out[name] = {"p50_ms": ms[len(ms) // 2], "p99_ms": ms[min(len(ms) - 1, round((len(ms) - 1) * 0.99))], "n": iterations}
print(json.dumps(out))
