#!/bin/sh
# Cross-build the CPU kernels for aarch64 (NEON + portable C) and check
# them against a naive product under qemu-user. Needs Debian's
# gcc-aarch64-linux-gnu and qemu-user; exits 77 (skip) without them.
# Run from the build tree: tests/unit/cpu-cross-aarch64.sh
set -e
top_srcdir=${abs_top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${abs_top_builddir:-$top_srcdir}
command -v aarch64-linux-gnu-gcc >/dev/null || { echo "no aarch64-linux-gnu-gcc: skipped"; exit 77; }
command -v qemu-aarch64 >/dev/null || { echo "no qemu-aarch64: skipped"; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu=$top_srcdir/backends/cpu
aarch64-linux-gnu-gcc -std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter \
  -Wno-sign-compare -pthread -I"$top_builddir" -I"$top_srcdir/core" -I"$cpu" \
  "$top_srcdir/tests/unit/cpu-cross-check.c" \
  "$cpu/pool.c" "$cpu/isa.c" "$cpu/ukr-avx512.c" "$cpu/ukr-avx2.c" \
  "$cpu/ukr-neon.c" "$cpu/ukr-c.c" "$cpu/pack.c" "$cpu/gemm.c" \
  "$cpu/conv-nv.c" "$cpu/ukr-avx512-nv.c" \
  "$cpu/depthwise.c" "$cpu/csr.c" "$top_srcdir/core/tensor.c" \
  "$top_srcdir/core/error.c" -static -lm -o "$out/check"
qemu-aarch64 "$out/check"
