#!/bin/sh
# Build pivotd and run every test, in two configurations: build/ (the
# ordinary flags, -Werror) and build-asan/ (AddressSanitizer, UBSan and
# LeakSanitizer: any report fails its test); then valgrind memcheck on the
# unit tests of build/. Installs what the build and the tests need
# (apt-get, npm) when missing.
# Usage: scripts/test.sh [plain] [asan] [valgrind]   (default: all three)
set -e
cd "$(dirname "$0")/.."
top=$(pwd)
scripts/deps.sh test
jobs=$(nproc 2>/dev/null || echo 2)
[ -x configure ] || autoreconf -fi
configs=${*:-plain asan valgrind}

failed_logs() {
  find . -name '*.log' -path '*tests*' -newer Makefile \
    -exec grep -l -E '^(FAIL|ERROR)' {} + 2>/dev/null | sed "s|^\.|failed log: $PWD|"
}

# build_and_check DIR CONFIGURE-FLAGS...
build_and_check() {
  dir=$1
  shift
  mkdir -p "$top/$dir"
  cd "$top/$dir"
  [ -f Makefile ] || ../configure "$@"
  make -j"$jobs"
  make -j"$jobs" check || { failed_logs; exit 1; }
  cd "$top"
}

for c in $configs; do
  echo "==== scripts/test.sh: $c"
  case $c in
  plain)
    build_and_check build --enable-werror
    ;;
  asan)
    # Sanitizer settings for every process the tests start (the daemon
    # under the Python tests, pivot under the conformance scripts):
    # reports go to stderr and fail the test; LSan checks leaks at exit.
    # Left out here, each for its cost: the fuzzers (clang builds them
    # with ASan+UBSan in `plain` already: CLANG=/bin/false), the big conformance
    # models (minutes under ASan, no code path the small cases miss; the
    # models `plain` generated are reused). The soak is shorter and skips
    # its RSS check (ASan's quarantine holds freed memory).
    PV_CONFORMANCE_SKIP=${PV_CONFORMANCE_SKIP_ASAN-"resnet18 mobilenet_v2 yolov3_tiny yolov3_tiny_p4 mobilenet_v3_small squeezenet1_1 shufflenet_v2_x0_5 efficientnet_b0 mobilenet_v2_opencl yolov3_tiny_p4_opencl"}
    export PV_CONFORMANCE_SKIP
    ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1
    LSAN_OPTIONS=suppressions=$top/tests/lsan.supp:print_suppressions=0
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    PV_ASAN=1 SOAK_SECONDS=${SOAK_SECONDS_ASAN:-30}
    export ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS PV_ASAN SOAK_SECONDS
    [ -d "$top/build/tests/conformance/models" ] && PIVOT_MODELS=$top/build/tests/conformance/models &&
      export PIVOT_MODELS
    # No -Werror: gcc's flow warnings (-Walloc-size-larger-than...) give
    # false positives on sanitizer-instrumented code; plain enforces them.
    # No OpenCL, no CUDA: PoCL with its LLVM, and the CUDA runtime, leak
    # their global state at exit, partly from libraries already unloaded
    # that no LSan suppression can name; plain tests both backends.
    build_and_check build-asan --enable-asan --disable-opencl --disable-cuda CLANG=/bin/false
    unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS PV_ASAN SOAK_SECONDS PIVOT_MODELS PV_CONFORMANCE_SKIP
    ;;
  valgrind)
    command -v valgrind >/dev/null 2>&1 || { echo "valgrind not installed: scripts/deps.sh test" >&2; exit 1; }
    [ -f "$top/build/Makefile" ] || build_and_check build --enable-werror
    make -C "$top/build/tests/unit" check-valgrind
    ;;
  *)
    echo "scripts/test.sh: unknown configuration '$c' (plain, asan, valgrind)" >&2
    exit 2
    ;;
  esac
done
