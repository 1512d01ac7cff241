#!/usr/bin/env bash
# Builds the fake CUDA libraries and the workload into $1 (default: ./out):
#   libcuda.so.1, libcudart.so.12, libcudart.so.13, libnccl.so.2,
#   cw-cuda-workload (linked against .so.12), cw-cuda-workload-13 (against .so.13).
# Frame pointers and no CET: every function starts with `push %rbp`, as libcudart's do, so the
# kernel emulates the probed instruction instead of single-stepping it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/out}"
mkdir -p "$out"
CC="${CC:-cc}"
flags=(-O2 -g -fPIC -fno-omit-frame-pointer -fcf-protection=none -fno-ipa-icf -Wall -Wextra -I"$here")
"$CC" "${flags[@]}" -shared -Wl,-soname,libcuda.so.1 -o "$out/libcuda.so.1" "$here/fake_cuda.c" -lpthread
for v in 12 13; do
  "$CC" "${flags[@]}" -shared -Wl,-soname,libcudart.so.$v -o "$out/libcudart.so.$v" "$here/fake_cudart.c" \
    "$out/libcuda.so.1"
done
"$CC" "${flags[@]}" -shared -Wl,-soname,libnccl.so.2 -o "$out/libnccl.so.2" "$here/fake_nccl.c" "$out/libcuda.so.1"
"$CC" "${flags[@]}" -o "$out/cw-cuda-workload" "$here/workload.c" \
  "$out/libcudart.so.12" "$out/libcuda.so.1" "$out/libnccl.so.2" -Wl,-rpath,"$out"
"$CC" "${flags[@]}" -o "$out/cw-cuda-workload-13" "$here/workload.c" \
  "$out/libcudart.so.13" "$out/libcuda.so.1" "$out/libnccl.so.2" -Wl,-rpath,"$out"
