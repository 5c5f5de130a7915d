#!/bin/sh
# Build pivotd and run every test. Installs what the build and the tests
# need (apt-get, npm) when missing. Usage: scripts/test.sh
set -e
cd "$(dirname "$0")/.."
top=$(pwd)
scripts/deps.sh test
jobs=$(nproc 2>/dev/null || echo 2)
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure --enable-werror
make -j"$jobs"
make -j"$jobs" check || { find . -name '*.log' -path '*tests*' -newer Makefile \
  -exec grep -l -E '^(FAIL|ERROR)' {} + 2>/dev/null | sed 's/^/failed log: /'; exit 1; }
