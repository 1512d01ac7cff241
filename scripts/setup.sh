#!/usr/bin/env bash
# Installs what building and running causeway needs on Debian 12 (as root), once.
set -euo pipefail
need=()
command -v clang >/dev/null || need+=(clang llvm)
[ -e /usr/include/gelf.h ] || need+=(libelf-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v make >/dev/null || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; causeway needs Rust 1.85+ (https://rustup.rs), Debian's rustc is too old" >&2
  exit 1
fi
# tp_btf probes work without tracefs; later probes (syscalls, uprobes) need it
if [ -d /sys/kernel/tracing ] && [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "setup: could not mount tracefs (continuing)" >&2
fi
# pinned maps (an OBI traces_ctx_v1 map given with --obi-map) live in the BPF filesystem; a
# fresh machine may not have it mounted
if [ -d /sys/fs/bpf ] && ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup: could not mount the BPF filesystem at /sys/fs/bpf (pinned maps unavailable; continuing)" >&2
fi
