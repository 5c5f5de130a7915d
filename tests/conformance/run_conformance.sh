#!/bin/sh
# One conformance test: run a model with `pivot run` and compare every output
# with ONNX Runtime's (relative L2 error <= tol).
# Usage: run_conformance.sh CASE.ct
# CASE.ct holds key=value lines: model= (a gen_models.py name), inputs= (the
# input set, default "in"), tol= (default 1e-4), args= (more `pivot run` flags),
# ref= (ort, the default, or generator: the generator's own outputs, for the
# few models ONNX Runtime refuses, e.g. recurrent ops in layout 1).
set -u
[ $# -eq 1 ] || { echo "usage: $0 CASE.ct" >&2; exit 99; }
case_file=$1
. "$(cd "$(dirname "$0")" && pwd)/conf-env.sh"

get() { sed -n "s/^$1=//p" "$case_file" | tail -n 1; }
[ -r "$case_file" ] || conf_fail "cannot read $case_file"
name=$(basename "$case_file" .ct)
# A slow configuration (scripts/test.sh asan) skips the big models: they
# cost minutes there and reach no code path the small cases miss.
case " ${PV_CONFORMANCE_SKIP:-} " in *" $name "*) echo "$name: skipped (PV_CONFORMANCE_SKIP)"; exit 77 ;; esac
model=$(get model); inputs=$(get inputs); tol=$(get tol); args=$(get args); refkind=$(get ref)
[ -n "$model" ] || conf_fail "$case_file: no model= line"
: "${inputs:=in}" "${tol:=1e-4}"

need_python
need_ort
[ -x "$PIVOT" ] || conf_fail "$PIVOT not built: run make first"
gen_model "$model"
mdir=$MODELS/$model
[ -d "$mdir/$inputs" ] || conf_fail "$model has no input set $inputs"

# --input NAME=FILE for every model input, in the model's order.
feeds=$("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join("%s=%s/%s.npy" % (n, sys.argv[2], n) for n in m["inputs"]))' \
  "$mdir/meta.json" "$mdir/$inputs") || conf_fail "$model: bad meta.json"

# The reference, computed once per model version and input set; for the
# generator's own inputs it is first checked against PyTorch's outputs.
ref=$mdir/ref_$inputs
if [ "$refkind" = generator ]; then
  [ "$inputs" = in ] || conf_fail "$case_file: ref=generator needs inputs=in"
  ref=$mdir/torch
elif [ ! -f "$ref/.done" ] || [ "$mdir/meta.json" -nt "$ref/.done" ]; then
  (
    flock 9
    rm -rf "$ref"
    node "$CONF_SRC/ort_run.js" "$mdir/model.onnx" "$ref" $feeds >/dev/null ||
      conf_fail "$model: ONNX Runtime failed"
    if [ "$inputs" = in ]; then
      "$PY" "$CONF_SRC/compare.py" "$mdir/meta.json" "$mdir/torch" "$ref" --tol 1e-4 \
        --label "$name: ORT vs PyTorch" >/dev/null ||
        conf_fail "$model: the ONNX Runtime reference disagrees with PyTorch"
    fi
    touch "$ref/.done"
  ) 9>"$mdir/.ref.lock" || exit 1
fi

out=$mdir/out_$name
rm -rf "$out" && mkdir -p "$out" || conf_fail "cannot create $out"
log=$mdir/pivot_$name.log
cmd="$PIVOT run $mdir/model.onnx"
for f in $feeds; do cmd="$cmd --input $f"; done
cmd="$cmd --output-dir $out $args"
echo "$name: $cmd"
timeout 600 $cmd >"$log" 2>&1
rc=$?
cat "$log"
[ $rc -eq 124 ] && conf_fail "$name: pivot run did not finish in 600 s"
pivot_crashed $rc "$log" && conf_fail "$name: pivot run crashed (exit $rc)"
[ $rc -eq 0 ] || conf_fail "$name: pivot run exited $rc"
"$PY" "$CONF_SRC/compare.py" "$mdir/meta.json" "$ref" "$out" --tol "$tol" --label "$name"
