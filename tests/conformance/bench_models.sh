#!/bin/sh
# Model timings: `pivot run --repeat N` against ONNX Runtime (optimiser on,
# one and two intra-op threads) on the same inputs, in the same run; prints
# medians and ratios. A benchmark, not a test: the machine is shared and
# noisy, so only the ratios of one run mean anything.
# Usage: bench_models.sh [MODEL[:INPUTSET] ...]   (default: resnet18,
#        yolov3_tiny, mlp at batch 1 and 32). PIVOT_BENCH_REPEAT (default 20).
set -u
. "$(cd "$(dirname "$0")" && pwd)/conf-env.sh"
repeat=${PIVOT_BENCH_REPEAT:-20}
cases=${*:-resnet18:in yolov3_tiny:in mlp:in_b1 mlp:in_b32}

need_python
need_ort
[ -x "$PIVOT" ] || conf_fail "$PIVOT not built: run make first"

# The first "<number> ms" on a line that says "median".
median_ms() {
  sed -n 's/.*[Mm]edian[^0-9]*\([0-9][0-9.]*\) *ms.*/\1/p; s/.*median_ms=\([0-9.]*\).*/\1/p' "$1" | head -n 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

echo "pivot run --repeat $repeat vs ONNX Runtime $(sed -n 's/^ORT_VERSION=//p' "$abs_top_srcdir/scripts/ort.sh") (graphOptimizationLevel all), medians after one warm-up"
echo "$(nproc) cores: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
printf '%-14s %-6s %10s %10s %10s %10s %11s %11s\n' model input "pivot t1" "pivot t2" "ort t1" "ort t2" "ort1/piv1" "ort2/piv2"
tmp=$MODELS/bench.tmp
mkdir -p "$tmp"
for c in $cases; do
  model=${c%%:*}
  set=${c#*:}
  [ "$set" = "$c" ] && set=in
  gen_model "$model"
  mdir=$MODELS/$model
  [ -d "$mdir/$set" ] || { echo "$model: no input set $set" >&2; continue; }
  feeds=$("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join("%s=%s/%s.npy" % (n, sys.argv[2], n) for n in m["inputs"]))' \
    "$mdir/meta.json" "$mdir/$set")
  pin=""
  for f in $feeds; do pin="$pin --input $f"; done
  for t in 1 2; do
    "$PIVOT" run "$mdir/model.onnx" $pin --output-dir "$tmp" --threads $t --repeat "$repeat" \
      >"$tmp/pivot$t.log" 2>&1 || { echo "$model: pivot run failed:" >&2; cat "$tmp/pivot$t.log" >&2; }
    node "$CONF_SRC/ort_run.js" "$mdir/model.onnx" "$tmp" $feeds --time --threads $t \
      --repeat "$repeat" >"$tmp/ort$t.log" 2>&1 || { echo "$model: ORT failed:" >&2; cat "$tmp/ort$t.log" >&2; }
  done
  p1=$(median_ms "$tmp/pivot1.log"); p2=$(median_ms "$tmp/pivot2.log")
  o1=$(median_ms "$tmp/ort1.log"); o2=$(median_ms "$tmp/ort2.log")
  printf '%-14s %-6s %10s %10s %10s %10s %11s %11s\n' "$model" "$set" \
    "${p1:-?}" "${p2:-?}" "${o1:-?}" "${o2:-?}" "$(ratio "${o1:-0}" "${p1:-0}")" "$(ratio "${o2:-0}" "${p2:-0}")"
done
echo "times in ms; a ratio > 1 means pivot is faster than ONNX Runtime with the same thread count"
rm -rf "$tmp"
