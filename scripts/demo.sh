#!/usr/bin/env bash
# The demo on the embedded default: record the built-in mutex workload into ./data (a local
# object store) and print the waiter's off-CPU time and its waker, then read it back with SQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/causeway/target}"
echo "demo: building (the first build of the dependency set takes a while)..." >&2
cargo build --release --workspace --bins --quiet
bin="$CARGO_TARGET_DIR/release"
store="file://$PWD/data"
"$bin/causeway-collector" demo --store "$store"
echo
echo "Read back from the store with causeway-query:"
"$bin/causeway-query" sql "SELECT comm, tid, state, round(duration_ns / 1e6, 1) AS off_cpu_ms, waker_comm, waker_tid
  FROM kernel_events WHERE event_name = 'sched.off_cpu' AND comm = 'cw-waiter'
  ORDER BY time_unix_nano DESC, duration_ns DESC LIMIT 3" --store "$store"
echo
echo "The causal chain (the same analysis as the MCP tool resolve_causal_chain):"
pid=$("$bin/causeway-query" sql "SELECT pid FROM kernel_events WHERE comm = 'cw-waiter' ORDER BY time_unix_nano DESC LIMIT 1" --store "$store" --format csv | tail -n 1)
"$bin/causeway-query" diagnose --pid "$pid" --window 60s --stacks --store "$store"
