#!/bin/sh
# `pivot bench` runs to the end on this CPU, OpenBLAS column included (it
# once forced OpenBLAS's AVX-512 kernels on CPUs without AVX-512 and died
# of an illegal instruction), and prints its rows. A smoke test: the
# figures themselves are a benchmark's, never asserted.
set -u
top_builddir=${abs_top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
out=$(env -u OPENBLAS_CORETYPE "$top_builddir/clients/pivot" bench --section kernels \
  --quick --sizes 1024 --batch 1 --density 1,1/2 --threads 1 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || { echo "FAIL: pivot bench exited $rc"; exit 1; }
echo "$out" | grep -q '^# OpenBLAS: ' || { echo "FAIL: no OpenBLAS line"; exit 1; }
echo "$out" | grep -Eq '^ *1024 +1 +1 +1/2 \|' || { echo "FAIL: no 1/2 row"; exit 1; }
echo "pivot bench: ok"
