#!/bin/sh
# Bounded libFuzzer run over the .pvm reader, seeded with generated files.
# FUZZ_SECONDS (default 20) bounds the time; skipped (77) without clang.
set -e
[ -x ./fuzz-pvm ] || { echo "fuzz-pvm not built (no clang): skipped"; exit 77; }
corpus=$(mktemp -d "${TMPDIR:-/tmp}/pvm-corpus.XXXXXX")
trap 'rm -rf "$corpus"' EXIT
./gen-pvm-seeds "$corpus"
./fuzz-pvm -max_total_time="${FUZZ_SECONDS:-20}" -max_len=8192 \
  -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
