# The body of tiny_faceapi.sh and ssd_faceapi.sh (sourced): a face-api
# detector converted by tools/faceapi/tfjs2onnx.py and run by `pivot
# detect`, against @vladmandic/face-api itself (TF.js CPU backend) on some
# of the package's sample photos ($kind: tiny or ssd; $photos):
#  1. on the JPEGs (libjpeg-turbo here, jpeg-js there): the same faces,
#     IoU >= 0.9 each, scores within 0.02;
#  2. on PNGs of the very pixels jpeg-js decoded: IoU >= 0.999, scores
#     within 0.001, so the converter, the resize and the network are exact.
# The reference's results are cached in $WORK.
. "$(cd "$(dirname "$0")" && pwd)/detect-env.sh"
need_faceapi
face_model "$kind"
[ -x "$PIVOT" ] || det_fail "$PIVOT not built: run make first"
ref=$WORK/ref_$kind
(
  flock 9
  if [ ! -f "$ref/.done" ] || [ "$DETECT_SRC/faceapi_ref.js" -nt "$ref/.done" ]; then
    rm -rf "$ref" && mkdir -p "$ref/png" || exit 1
    files=
    for p in $photos; do files="$files $FACEAPI/demo/$p"; done
    PNG_DIR=$ref/png nice -n 5 node "$DETECT_SRC/faceapi_ref.js" "$kind" "$FACEAPI/model" $files \
      >"$ref/ref.jsonl" 2>"$ref/node.log" || { cat "$ref/node.log"; exit 1; }
    touch "$ref/.done"
  fi
) 9>"$WORK/.ref_$kind.lock" || det_fail "the face-api reference failed"

rc=0
for src in jpeg png; do
  out=$WORK/out_${kind}_$src
  rm -rf "$out" && mkdir -p "$out" || det_fail "cannot create $out"
  for p in $photos; do
    img=$FACEAPI/demo/$p
    [ $src = png ] && img=$ref/png/$p.png
    # Below the model's 0.5 so that boxes near it can be matched.
    "$PIVOT" detect "$WORK/$kind.onnx" "$img" --json --score 0.45 >"$out/$p.json" 2>"$out/$p.log"
    st=$?
    det_crashed $st "$out/$p.log" && det_fail "pivot detect crashed on $img (exit $st)"
    [ $st -eq 0 ] || { cat "$out/$p.log"; det_fail "pivot detect failed on $img"; }
  done
  if [ $src = jpeg ]; then
    "$PY" "$DETECT_SRC/compare_dets.py" "$ref/ref.jsonl" "$out" --iou 0.9 --dscore 0.02 --label "$kind/jpeg" || rc=1
  else
    "$PY" "$DETECT_SRC/compare_dets.py" "$ref/ref.jsonl" "$out" --iou 0.999 --dscore 0.001 --label "$kind/same-pixels" || rc=1
  fi
done
[ $rc -eq 0 ] || det_fail "pivot's $kind detector disagrees with face-api"
echo "$kind vs face-api: ok"
