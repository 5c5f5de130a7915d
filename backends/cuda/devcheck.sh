#!/bin/bash
# Check the CUDA backend on a machine with an NVIDIA GPU, in under 5 minutes:
# build it, run the CUDA tests (every kernel and a small graph against CPU
# references), then the pivoted-kernel benchmark (pivoted vs cuBLAS dense on
# the same shapes; speedup and linearity).
#
# Works offline. With autotools, pkg-config and protobuf-c present it does
# the full build (autoreconf; configure --enable-cuda; make); otherwise, or
# if that fails, it builds the backend, the test and the benchmark directly
# with nvcc and gcc. Run from anywhere:  bash backends/cuda/devcheck.sh
# Environment: NVCC, CUDA_HOME, JOBS (default: cores, at most 16),
# DEVCHECK_DIRECT=1 to skip the autotools build, BENCH_REPS (default 50).
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
START=$(date +%s)
JOBS=${JOBS:-$(n=$(nproc 2>/dev/null || echo 4); [ "$n" -gt 16 ] && n=16; echo "$n")}
say() { printf '== [%3ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

say "what this machine has"
NVCC=${NVCC:-$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)}
if [ -n "$NVCC" ]; then
  CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
  echo "nvcc: $NVCC ($("$NVCC" --version | tail -1))"
else
  CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  echo "nvcc: not found (set NVCC or CUDA_HOME)"
fi
echo "CUDA_HOME: $CUDA_HOME"
if have nvidia-smi; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
    nvidia-smi -L
else
  echo "nvidia-smi: not found"
fi
CUDA_LIBDIR=""
for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib" /usr/lib/x86_64-linux-gnu; do
  if ls "$d"/libcublas.so* >/dev/null 2>&1; then CUDA_LIBDIR=$d; break; fi
done
echo "cuBLAS: ${CUDA_LIBDIR:-not found}"
for t in gcc autoreconf pkg-config protoc-c make; do
  printf '%s: %s\n' "$t" "$(command -v $t || echo no)"
done
have pkg-config && printf 'libprotobuf-c: %s\n' "$(pkg-config --modversion libprotobuf-c 2>/dev/null || echo no)"

TEST=""
BENCH=""
export PIVOT_BACKEND_DIR
full_build() {
  have autoreconf && have pkg-config && pkg-config --exists libprotobuf-c || return 1
  say "full build: autoreconf, configure --enable-cuda, make -j$JOBS"
  { autoreconf -fi && ./configure --enable-cuda NVCC="$NVCC" CUDA_HOME="$CUDA_HOME" &&
    make -j"$JOBS" && make -C tests/gpu -j"$JOBS" test-cuda; } > devcheck-build.log 2>&1 ||
    { tail -30 devcheck-build.log; return 1; }
  grep -E 'CUDA backend|OpenCL backend' devcheck-build.log | head -2
  TEST="$ROOT/tests/gpu/test-cuda"
  BENCH="$ROOT/backends/cuda/pivot-bench-cuda"
  PIVOT_BACKEND_DIR="$ROOT/backends"
}

direct_build() {
  say "direct build with nvcc and gcc (no autotools)"
  B="$ROOT/build-devcheck"
  mkdir -p "$B" && echo "#define PACKAGE_VERSION \"devcheck\"" > "$B/config.h"
  local CU="-I$CUDA_HOME/include" L="-L$CUDA_LIBDIR -Wl,-rpath,$CUDA_LIBDIR -lcublas -lcudart -lstdc++"
  local W="-std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -fPIC -pthread"
  # DEVCHECK_ASAN=1: host code under AddressSanitizer (CUDA needs the
  # shadow gap unprotected).
  if [ "${DEVCHECK_ASAN:-0}" = 1 ]; then
    W="$W -g -fsanitize=address -fno-omit-frame-pointer"
    export ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=0
  fi
  "$NVCC" -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80 \
    -Xcompiler -fPIC -Ibackends/cuda -c backends/cuda/kernels.cu -o "$B/kernels.o" || return 1
  gcc $W -shared -I"$B" -Icore core/error.c core/tensor.c core/graph.c core/backend.c core/pivot.c \
    -o "$B/libpivot.so" -ldl -lm || return 1
  gcc $W -shared -I"$B" -Icore -Ibackends/opencl $CU backends/cuda/cuda.c "$B/kernels.o" \
    -o "$B/pivot-backend-cuda.so" -L"$B" -lpivot $L -Wl,-rpath,"$B" || return 1
  gcc $W -I"$B" -Icore -DBACKEND='"cuda"' tests/gpu/test-gpu.c -o "$B/test-cuda" \
    -L"$B" -lpivot -Wl,-rpath,"$B" -lm || return 1
  gcc $W $CU backends/cuda/bench-pivot.c "$B/kernels.o" -o "$B/pivot-bench-cuda" $L -lm || return 1
  TEST="$B/test-cuda"
  BENCH="$B/pivot-bench-cuda"
  PIVOT_BACKEND_DIR="$B"
}

if [ -z "$NVCC" ] || [ -z "$CUDA_LIBDIR" ]; then
  # No toolkit here: use binaries built elsewhere and shipped in the tree.
  B="$ROOT/build-devcheck"
  [ -x "$B/test-cuda" ] && [ -x "$B/pivot-bench-cuda" ] || { say "no CUDA toolkit and no prebuilt binaries"; exit 1; }
  say "no CUDA toolkit: using prebuilt binaries in $B"
  TEST="$B/test-cuda" BENCH="$B/pivot-bench-cuda" PIVOT_BACKEND_DIR="$B"
  export LD_LIBRARY_PATH="$B${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
elif [ "${DEVCHECK_DIRECT:-0}" = 1 ] || ! full_build; then
  direct_build || { say "build failed"; exit 1; }
fi

say "CUDA tests ($TEST)"
"$TEST"
trc=$?
case $trc in 0) echo "tests: PASS" ;; 77) echo "tests: SKIP (no usable GPU)" ;; *) echo "tests: FAIL ($trc)" ;; esac

say "pivoted-kernel benchmark ($BENCH)"
"$BENCH" "${BENCH_REPS:-50}"
brc=$?
say "done: tests rc=$trc, benchmark rc=$brc"
[ $trc -eq 0 ] && [ $brc -eq 0 ]
