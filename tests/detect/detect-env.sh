# Shared set-up of the detection test scripts (sourced, not run). Defines
#   PY, PIVOT, WORK (cache of converted models and reference results),
#   det_fail MSG, need_faceapi (sets FACEAPI, the package folder, and
#   NODE_PATH), face_model tiny|ssd (converts a face-api detector to
#   $WORK/KIND.onnx), tiny_model.
DETECT_SRC=${DETECT_SRC:-$(cd "$(dirname "$0")" && pwd)}
abs_top_srcdir=${abs_top_srcdir:-$(cd "$DETECT_SRC/../.." && pwd)}
abs_top_builddir=${abs_top_builddir:-$abs_top_srcdir}
WORK=${DETECT_WORK:-$abs_top_builddir/tests/detect/work}
PY=/usr/bin/python3
PIVOT=${PIVOT:-$abs_top_builddir/clients/pivot}
PIVOT_BACKEND_DIR=${PIVOT_BACKEND_DIR:-$abs_top_builddir/backends}
export PIVOT_BACKEND_DIR
. "$abs_top_srcdir/scripts/npm-cache.sh"

det_fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# face-api, TF.js and jpeg-js in the cache (PIVOT_CACHE or <source>/.cache);
# fetched there when missing. A read-only source tree falls back to a cache
# in the build tree.
need_faceapi() {
  command -v node >/dev/null 2>&1 || det_fail "node not found: run scripts/deps.sh test"
  "$PY" -c 'import onnx, numpy' 2>/dev/null || det_fail "$PY lacks onnx or numpy: run scripts/deps.sh test"
  npm_cache_pick "$abs_top_srcdir/tools/faceapi/fetch.sh" "$abs_top_builddir/tests/detect/.cache" || det_fail "cannot create $PIVOT_CACHE"
  fdir=$(flock "$PIVOT_CACHE/.faceapi.lock" "$abs_top_srcdir/tools/faceapi/fetch.sh") ||
    det_fail "@vladmandic/face-api is not installed and could not be: run tools/faceapi/fetch.sh"
  FACEAPI=$fdir/node_modules/@vladmandic/face-api
  NODE_PATH=$fdir/node_modules
  export NODE_PATH
}

# $WORK/KIND.onnx (tiny or ssd), rebuilt when the converter is newer.
face_model() {
  mkdir -p "$WORK" || det_fail "cannot create $WORK"
  conv=$abs_top_srcdir/tools/faceapi/tfjs2onnx.py
  (
    flock 9
    if [ ! -f "$WORK/$1.onnx" ] || [ "$conv" -nt "$WORK/$1.onnx" ]; then
      "$PY" "$conv" "$1" "$FACEAPI/model" "$WORK/$1.onnx.tmp" &&
        mv "$WORK/$1.onnx.tmp" "$WORK/$1.onnx" || exit 1
    fi
  ) 9>"$WORK/.$1.lock" || det_fail "converting the $1 face detector failed"
}
tiny_model() { face_model tiny; }

# A crash shows as a signal or a sanitizer report, never as an error exit.
det_crashed() { # RC LOGFILE
  [ "$1" -ge 128 ] && return 0
  grep -qE 'Segmentation fault|Aborted|core dumped|AddressSanitizer|runtime error:|LeakSanitizer' "$2"
}
