#!/usr/bin/env bash
# Tool latency on a synthetic store (default: 1 h at 50k events/s = 180M rows), causeway-query
# (DataFusion) and DuckDB side by side on the same files, same machine, same run.
# Usage: bash tests/perf/bench_query.sh [STORE_DIR] [SECONDS] [RATE] [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
store="${1:-/var/tmp/causeway-bench-store}"; seconds="${2:-3600}"; rate="${3:-50000}"; n="${4:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/causeway/target}"
bin="$CARGO_TARGET_DIR/release"
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install -q duckdb
if [ ! -d "$store/kernel_events" ]; then
  "$bin/causeway-collector" synth --store "$store" --seconds "$seconds" --rate "$rate"
fi
df=$("$bin/causeway-query" bench --store "$store" --pid 4242 --iterations "$n")
dk=$(python3 tests/perf/duckdb_tools.py "$store" 4242 "$n")
python3 - "$df" "$dk" <<'PY'
import json, sys
df, dk = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("| tool | causeway p50 ms | causeway p99 ms | DuckDB p50 ms | DuckDB p99 ms | p50 ratio (causeway/DuckDB) |")
print("|---|---:|---:|---:|---:|---:|")
for k in df:
    a, b = df[k], dk[k]
    print(f"| {k} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {a['p50_ms'] / b['p50_ms']:.2f} |")
PY
