#!/usr/bin/env bash
# Runs every test: unit tests, and end-to-end tests that load the real BPF programs (as root).
# Installs what the tests need first (scripts/setup.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
venv_bin=$(bash scripts/setup.sh --test | tail -n 1)
# the test clients' Python first: the Rust tests start moto and workloads through `python3`
export PATH="$venv_bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/causeway/target}"
# no two modules import each other
python3 scripts/import_cycles.py
# one profile (release) for binaries and tests: the dependency set is built once
cargo build --release --workspace --bins
# end-to-end tests share the CPUs and the kernel's tracepoints: one at a time
cargo test --release --workspace -- --test-threads=1
# MCP server driven by real clients (Python MCP SDK) on data recorded by the real collector
# trace context end to end: an OpenTelemetry SDK app with the causeway_otel hook, OTLP receivers;
# the OTel Collector configs in otel-config/
CAUSEWAY_BIN_DIR="$CARGO_TARGET_DIR/release" python3 -m pytest -q tests/mcp tests/trace tests/otelconfig tests/compose
