#!/usr/bin/env bash
# Slowdown of a switch-heavy workload (perf bench sched pipe, pinned to one CPU: every switch
# traced) with nothing attached, with causeway-collector, with libbpf-tools offcputime and with
# an equivalent bpftrace script. Rounds are interleaved; prints the median µs/op per config, the
# spread, and the ratio to the no-tracer median of the same run.
# Usage: bash tests/perf/bench_overhead.sh [ROUNDS] [LOOPS]      (as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-5}"; loops="${2:-200000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/causeway/target}"
bin="$CARGO_TARGET_DIR/release"
for tool in perf taskset; do command -v $tool >/dev/null || { echo "needs $tool (apt-get install linux-perf util-linux)" >&2; exit 1; }; done
offcpu=$(command -v offcputime || ls /usr/sbin/offcputime 2>/dev/null || true)
bt=$(command -v bpftrace || true)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cat > "$work/offcpu.bt" <<'BT'
tracepoint:sched:sched_switch {
  @start[args->prev_pid] = nsecs;
  $s = @start[args->next_pid];
  if ($s) { @us[kstack, ustack, args->next_comm] = sum((nsecs - $s) / 1000); delete(@start[args->next_pid]); }
}
BT

run_workload() { taskset -c 0 perf bench sched pipe -l "$loops" 2>/dev/null | awk '/usecs\/op/ {print $1}'; }

start_tracer() { # prints the pid of the tracer once it is attached
  case "$1" in
    none) echo "" ;;
    causeway|causeway-nostacks)
      rm -f "$work/ready"
      local extra=(); [ "$1" = causeway-nostacks ] && extra=(--stack-threshold 0)
      "$bin/causeway-collector" run --store "$work/store" --ready-file "$work/ready" "${extra[@]}" >/dev/null 2>&1 &
      local p=$!; for _ in $(seq 1 300); do [ -f "$work/ready" ] && break; sleep 0.05; done; echo $p ;;
    offcputime)
      "$offcpu" 600 >/dev/null 2>&1 & local p=$!; sleep 2
      kill -0 "$p" 2>/dev/null || { echo "offcputime failed to start" >&2; exit 1; }
      echo $p ;;
    bpftrace)
      # bpftrace's own output is block-buffered: wait until its program is really loaded
      local before; before=$(bpftool prog list 2>/dev/null | grep -c tracepoint || true)
      "$bt" "$work/offcpu.bt" >/dev/null 2>&1 & local p=$!
      for _ in $(seq 1 300); do
        [ "$(bpftool prog list 2>/dev/null | grep -c tracepoint || true)" -gt "$before" ] && break; sleep 0.05
      done
      kill -0 "$p" 2>/dev/null || { echo "bpftrace failed to start" >&2; exit 1; }
      sleep 0.3; echo $p ;;
  esac
}

configs=(none causeway causeway-nostacks)
[ -n "$offcpu" ] && configs+=(offcputime) || echo "offcputime not found (apt-get install libbpf-tools): skipped" >&2
[ -n "$bt" ] && configs+=(bpftrace) || echo "bpftrace not found (apt-get install bpftrace): skipped" >&2
declare -A results
for r in $(seq 1 "$rounds"); do
  for c in "${configs[@]}"; do
    p=$(start_tracer "$c")
    v=$(run_workload)
    [ -n "$p" ] && { kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }
    results[$c]+="$v "
    echo "round $r $c: $v us/op" >&2
  done
done
python3 - "${configs[@]}" <<PY
import statistics, sys
res = {$(for c in "${configs[@]}"; do printf '"%s": [%s], ' "$c" "$(echo ${results[$c]} | tr ' ' ',')"; done)}
base = statistics.median(res["none"])
print("| tracer | median µs/op | spread (min–max) | × no tracer |")
print("|---|---:|---:|---:|")
for c in sys.argv[1:]:
    v = res[c]
    print(f"| {c} | {statistics.median(v):.2f} | {min(v):.2f}–{max(v):.2f} | {statistics.median(v) / base:.3f} |")
PY
