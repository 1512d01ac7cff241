#!/usr/bin/env bash
# Installs what building and running causeway needs on Debian 12 (as root), once.
#   bash scripts/setup.sh          build and run: clang, libelf, protoc, …
#   bash scripts/setup.sh --test   also what the tests drive: bpftool, fault tools, Node.js (the
#                                  MCP Inspector CLI) and a Python virtual environment with the
#                                  test clients (tests/requirements.txt); prints its bin directory
#                                  last, for PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
test_deps=false
[ "${1:-}" = "--test" ] && test_deps=true
need=()
command -v clang >/dev/null || need+=(clang llvm)
[ -e /usr/include/gelf.h ] || need+=(libelf-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v make >/dev/null || need+=(make)
if $test_deps; then
  command -v bpftool >/dev/null || need+=(bpftool)
  # fault scenarios: loop devices + ext4, network namespaces + veth, nftables drops
  command -v losetup >/dev/null || need+=(util-linux)
  command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
  command -v ip >/dev/null || need+=(iproute2)
  command -v nft >/dev/null || need+=(nftables)
  command -v npx >/dev/null || need+=(nodejs npm)
  python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
fi
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
if $test_deps; then
  # the test clients, in a virtual environment of their own (Debian's Python refuses system-wide
  # pip installs); reinstalled only when tests/requirements.txt changes
  venv="${CAUSEWAY_VENV:-/var/cache/causeway/venv}"
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  stamp="$venv/.requirements.sha256"
  want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing the Python test clients into $venv" >&2
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$want" > "$stamp"
  fi
  echo "$venv/bin"
fi
