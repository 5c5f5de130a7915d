#!/bin/sh
# Model timings: `pivot run --repeat N` against ONNX Runtime (optimiser on,
# one and two intra-op threads) on the same inputs, in the same run; prints
# medians and ratios. A benchmark, not a test: the machine is shared and
# noisy, so only the ratios of one run mean anything.
# Usage: bench_models.sh [MODEL[:INPUTSET[:ORTMODEL]] ...]
#   ORTMODEL: the model ORT runs instead (a pruned model against its dense
#   original: ORT does not exploit stored zeros). Default: resnet18, mobilenet_v2,
#   yolov3_tiny and its 1/4 pruning, the MLP and its 1/8 pruning at batch 1
#   and 32. PIVOT_BENCH_REPEAT: repeats (default 20). PIVOT_BENCH_ROUNDS
#   (default 3): rounds in which pivot and ORT take turns; each figure is
#   the lowest of the rounds' medians, since this machine's speed moves
#   by up to 2x for seconds at a time and a single median catches the one
#   runtime in a slow stretch and not the other.
set -u
. "$(cd "$(dirname "$0")" && pwd)/conf-env.sh"
repeat=${PIVOT_BENCH_REPEAT:-20}
rounds=${PIVOT_BENCH_ROUNDS:-3}
cases=${*:-resnet18:in mobilenet_v2:in yolov3_tiny:in yolov3_tiny_p4:in:yolov3_tiny mlp:in_b1 mlp_p8:in_b1:mlp mlp:in_b32 mlp_p8:in_b32:mlp}

need_python
need_ort
[ -x "$PIVOT" ] || conf_fail "$PIVOT not built: run make first"

# pivot run prints "time X ms (median of N, BACKEND), min Y ms, min cpu Z ms";
# ort_run.js "median_ms=X ... min_cpu_ms=Z".
median_ms() {
  sed -n 's/^time \([0-9][0-9.]*\) ms (median.*/\1/p; s/^median_ms=\([0-9.]*\).*/\1/p' "$1" | head -n 1
}
# The least CPU time of one run: steadier than wall time on a shared machine.
min_cpu_ms() {
  sed -n 's/^time .*min cpu \([0-9][0-9.]*\) ms.*/\1/p; s/^median_ms=.*min_cpu_ms=\([0-9.]*\).*/\1/p' "$1" | head -n 1
}
# The lowest figure (FUNC: median_ms or min_cpu_ms) over the rounds' logs
# $tmp/NAME.*.log.
lowest() {
  for f in "$tmp/$2".*.log; do "$1" "$f"; done | sort -g | head -n 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

# Generate everything first: generation must not overlap the timings.
for c in $cases; do
  for m in $(echo "$c" | awk -F: '{ print $1; if (NF > 2) print $3 }'); do gen_model "$m"; done
done

echo "pivot run --repeat $repeat vs ONNX Runtime $(sed -n 's/^ORT_VERSION=//p' "$abs_top_srcdir/scripts/ort.sh") (graphOptimizationLevel all), medians after one warm-up, the lowest of $rounds alternating rounds"
echo "$(nproc) cores: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
printf '%-16s %-6s %-12s %9s %9s %9s %9s %9s %9s %9s\n' model input "ORT model" "pivot t1" "pivot t2" "ort t1" "ort t2" ort1/piv1 ort2/piv2 cpu1-ratio
tmp=$MODELS/bench.tmp
mkdir -p "$tmp"
for c in $cases; do
  model=${c%%:*} set="" ortmodel=""
  case $c in *:*) set=${c#*:} ;; esac
  case $set in *:*) ortmodel=${set#*:} set=${set%%:*} ;; esac
  : "${set:=in}" "${ortmodel:=$model}"
  gen_model "$model"
  [ "$ortmodel" = "$model" ] || gen_model "$ortmodel"
  mdir=$MODELS/$model
  odir=$MODELS/$ortmodel
  [ -d "$mdir/$set" ] || { echo "$model: no input set $set" >&2; continue; }
  feeds=$("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join("%s=%s/%s.npy" % (n, sys.argv[2], n) for n in m["inputs"]))' \
    "$mdir/meta.json" "$mdir/$set")
  ofeeds=$("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join("%s=%s/%s.npy" % (n, sys.argv[2], n) for n in m["inputs"]))' \
    "$odir/meta.json" "$odir/$set")
  pin=""
  for f in $feeds; do pin="$pin --input $f"; done
  rm -f "$tmp"/*.log
  r=0
  while [ "$r" -lt "$rounds" ]; do
    r=$((r + 1))
    for t in 1 2; do
      "$PIVOT" run "$mdir/model.onnx" $pin --output-dir "$tmp" --threads $t --repeat "$repeat" \
        >"$tmp/pivot$t.$r.log" 2>&1 || { echo "$model: pivot run failed:" >&2; cat "$tmp/pivot$t.$r.log" >&2; }
      node "$CONF_SRC/ort_run.js" "$odir/model.onnx" "$tmp" $ofeeds --time --threads $t \
        --repeat "$repeat" >"$tmp/ort$t.$r.log" 2>&1 || { echo "$model: ORT failed:" >&2; cat "$tmp/ort$t.$r.log" >&2; }
    done
  done
  p1=$(lowest median_ms pivot1); p2=$(lowest median_ms pivot2)
  o1=$(lowest median_ms ort1); o2=$(lowest median_ms ort2)
  c1=$(lowest min_cpu_ms pivot1); d1=$(lowest min_cpu_ms ort1)
  printf '%-16s %-6s %-12s %9s %9s %9s %9s %9s %9s %9s\n' "$model" "$set" "$ortmodel" \
    "${p1:-?}" "${p2:-?}" "${o1:-?}" "${o2:-?}" "$(ratio "${o1:-0}" "${p1:-0}")" "$(ratio "${o2:-0}" "${p2:-0}")" \
    "$(ratio "${d1:-0}" "${c1:-0}")"
done
echo "times in ms; a ratio > 1 means pivot is faster than ONNX Runtime with the same thread count"
echo "cpu1-ratio: the same at one thread from the least process CPU time of one run (ORT / pivot)"
rm -rf "$tmp"
