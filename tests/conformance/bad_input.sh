#!/bin/sh
# `pivot run` on bad input: each case must exit nonzero with a clear message
# naming what is wrong (checked with grep), and never crash or hang. With
# valgrind installed, the cases run again under it and must show no memory
# error (PIVOT_VALGRIND=0 skips that part).
set -u
. "$(cd "$(dirname "$0")" && pwd)/conf-env.sh"

"$PY" -c 'import onnx, numpy' 2>/dev/null ||
  conf_fail "$PY lacks onnx or numpy: run scripts/deps.sh test"
[ -x "$PIVOT" ] || conf_fail "$PIVOT not built: run make first"
bad=$abs_top_builddir/tests/conformance/bad
rm -rf "$bad" && mkdir -p "$bad/out" || conf_fail "cannot create $bad"
"$PY" "$CONF_SRC/gen_bad.py" "$bad" || conf_fail "gen_bad.py failed"

use_valgrind=no
if [ "${PIVOT_VALGRIND:-1}" != 0 ] && command -v valgrind >/dev/null 2>&1; then
  use_valgrind=yes
fi
# clients/pivot is a libtool wrapper script in the build tree; valgrind must
# see the real program.
libtool_exec=""
[ -x "$abs_top_builddir/libtool" ] && libtool_exec="$abs_top_builddir/libtool --mode=execute"

passed=0 failed=0
log=$bad/case.log

# expect CASE "NAMES" "WORDS" -- ARGS: each ERE of NAMES (what the message
# must name: a file, an input, an op) must match the output, and each ERE of
# WORDS (what it must say is wrong) must match the output with every path and
# file name cut out, so an echoed path cannot pass for an explanation. '~'
# stands for a space; matching ignores case.
expect() {
  cname=$1 names=$2 words=$3
  shift 4
  ok=yes why=""
  timeout 60 "$PIVOT" run "$@" --output-dir "$bad/out" >"$log" 2>&1
  rc=$?
  sed -E 's#[^[:space:]'"'"'"]*(/|\.onnx|\.npy)[^[:space:]'"'"'":]*##g' "$log" >"$log.words"
  if [ $rc -eq 124 ]; then ok=no why="hung (killed after 60 s)"
  elif pivot_crashed $rc "$log"; then ok=no why="crashed (exit $rc)"
  elif [ $rc -eq 0 ]; then ok=no why="exit 0 on bad input"
  else
    for p in $names; do
      p=$(printf %s "$p" | tr '~' ' ')
      grep -qiE -- "$p" "$log" || { ok=no why="${why}message does not name /$p/; "; }
    done
    for p in $words; do
      p=$(printf %s "$p" | tr '~' ' ')
      grep -qiE -- "$p" "$log.words" || { ok=no why="${why}message lacks /$p/; "; }
    done
  fi
  msg=$(head -c 300 "$log" | tr '\n' ' ')
  if [ $ok = yes ]; then
    passed=$((passed + 1))
    echo "ok   $cname: exit $rc: $msg"
  else
    failed=$((failed + 1))
    echo "FAIL $cname: $why"
    echo "     pivot run $*: exit $rc: $msg"
  fi
  if [ $use_valgrind = yes ] && [ $ok = yes ]; then
    timeout 300 $libtool_exec valgrind -q --error-exitcode=99 --errors-for-leak-kinds=none \
      "$PIVOT" run "$@" --output-dir "$bad/out" >"$log.vg" 2>&1
    vrc=$?
    if [ $vrc -eq 99 ] || [ $vrc -eq 124 ] || pivot_crashed $vrc "$log.vg"; then
      failed=$((failed + 1))
      echo "FAIL $cname under valgrind (exit $vrc):"
      sed -n '1,30p' "$log.vg"
    fi
  fi
}

B=$bad
two=$B/two_inputs.onnx
onnxerr='parse|truncat|invalid|corrupt|malformed|decod|protobuf|not~an~onnx|unexpected|bad'
noent='no~such~file|not~found|cannot~open|does~not~exist|doesn.t~exist|missing'
expect truncated-onnx "cut\.onnx" "$onnxerr" -- "$B/cut.onnx" --input "$B/good.npy"
expect corrupt-onnx "noise\.onnx" "$onnxerr" -- "$B/noise.onnx" --input "$B/good.npy"
expect empty-onnx "blank\.onnx" "empty|no~graph|$onnxerr" -- "$B/blank.onnx" --input "$B/good.npy"
expect missing-model "absent\.onnx" "$noent" -- "$B/absent.onnx" --input "$B/good.npy"
expect unsupported-op "Unique dedupe_0" "opset 12 unsupported|not~supported|no~support|unknown|not~implemented" -- \
  "$B/op.onnx" --input "$B/good.npy"
expect recursive-function "Spiral" "deep|recurs|nest" -- "$B/recurse.onnx" --input "$B/good.npy"
expect function-opset "Lift" "opset 15" -- "$B/fnopset.onnx" --input "$B/good.npy"
expect if-outputs "pick_0 If" "else~branch~has~2~outputs" -- "$B/ifbad.onnx" --input "$B/good.npy"
expect if-deep "deep_" "nest" -- "$B/ifdeep.onnx" --input "$B/good.npy"
expect data-shaped-k "topk_0 TopK" "not~known~before~execution" -- "$B/dynk.onnx" --input "$B/good.npy"
expect roi-huge "roi_0 RoiAlign" "samples" -- "$B/roibig.onnx" --input "$B/good.npy"
expect grid-shape "warp_0 GridSample \\[1,2,2,3\\]" "does~not~fit" -- "$B/gridbad.onnx" --input "$B/good.npy"
expect missing-input "right" "missing|not~given|not~provided|not~supplied|required|needs|expects|no~value" -- \
  "$two" --input "left=$B/good.npy"
expect unknown-input "nosuch" "no~input|unknown|not~an~input|has~no|no~such" -- \
  "$two" --input "left=$B/good.npy" --input "right=$B/good.npy" --input "nosuch=$B/good.npy"
expect wrong-shape "right" "shape|dim 2.{0,3}4" -- \
  "$two" --input "left=$B/good.npy" --input "right=$B/wide.npy"
expect wrong-dtype "right" "int32|i4 float|f4|fp32" -- \
  "$two" --input "left=$B/good.npy" --input "right=$B/ints.npy"
expect npy-missing "absent\.npy" "$noent" -- \
  "$two" --input "left=$B/good.npy" --input "right=$B/absent.npy"
expect npy-garbage "noise\.npy" "npy|magic|header|format|invalid|not~a" -- \
  "$two" --input "left=$B/good.npy" --input "right=$B/noise.npy"
expect npy-truncated "half\.npy" "truncat|short|size|bytes|end~of~file|EOF|expected" -- \
  "$two" --input "left=$B/good.npy" --input "right=$B/half.npy"

[ $use_valgrind = yes ] && echo "(the passing cases ran again under valgrind)"
echo "bad_input: $passed passed, $failed failed"
[ $failed -eq 0 ]
