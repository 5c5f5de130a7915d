#!/bin/sh
# Run a libFuzzer target for a bounded time on its committed seed corpus
# (corpus/NAME for fuzz-NAME). New inputs go to a scratch directory so the
# source tree stays clean; a crash leaves its input as crash-* here.
# PV_FUZZ_SECONDS sets the time (default 10: seven targets share the CI budget).
prog=$1
name=$(basename "$prog" | sed 's/^fuzz-//')
srcdir=${srcdir:-.}
seeds=$srcdir/corpus/$name
scratch=$(mktemp -d "${TMPDIR:-/tmp}/pv-fuzz-$name.XXXXXX") || exit 99
trap 'rm -rf "$scratch"' EXIT
# Third-party leaks only (tests/lsan.supp says which and why).
LSAN_OPTIONS="suppressions=$srcdir/../lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
"$prog" -max_total_time="${PV_FUZZ_SECONDS:-10}" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix=./"$name"- "$scratch" "$seeds"
