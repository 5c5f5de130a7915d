# Shared set-up of the conformance scripts (sourced, not run).
# Expects abs_top_srcdir and abs_top_builddir (set by the Makefile; when run
# by hand they default to the tree this file is in). Defines:
#   PY         Debian's python3 (the first on PATH may be another)
#   PIVOT      the pivot CLI of the build tree
#   MODELS     the model cache (build tree), CONF_SRC this folder
#   need_python, need_ort, gen_model NAME, pivot_rc_ok RC

CONF_SRC=${CONF_SRC:-$(cd "$(dirname "$0")" && pwd)}
abs_top_srcdir=${abs_top_srcdir:-$(cd "$CONF_SRC/../.." && pwd)}
abs_top_builddir=${abs_top_builddir:-$abs_top_srcdir}
PY=/usr/bin/python3
PIVOT=${PIVOT:-$abs_top_builddir/clients/pivot}
MODELS=${PIVOT_MODELS:-$abs_top_builddir/tests/conformance/models}
PIVOT_BACKEND_DIR=${PIVOT_BACKEND_DIR:-$abs_top_builddir/backends}
export PIVOT_BACKEND_DIR
. "$abs_top_srcdir/scripts/npm-cache.sh"

conf_fail() {
  echo "FAIL: $*" >&2
  exit 1
}

need_python() {
  "$PY" -c 'import torch, torchvision, onnx, numpy' 2>/dev/null ||
    conf_fail "$PY lacks torch, torchvision, onnx or numpy: run scripts/deps.sh test"
}

# ONNX Runtime for Node in the cache (PIVOT_CACHE or <source tree>/.cache);
# installed there when missing. A read-only source tree (make distcheck)
# falls back to a cache in this folder of the build tree.
need_ort() {
  command -v node >/dev/null 2>&1 || conf_fail "node not found: run scripts/deps.sh test"
  npm_cache_pick "$abs_top_srcdir/scripts/ort.sh" "$abs_top_builddir/tests/conformance/.cache" || conf_fail "cannot create $PIVOT_CACHE"
  ort_dir=$(flock "$PIVOT_CACHE/.ort.lock" "$abs_top_srcdir/scripts/ort.sh") ||
    conf_fail "onnxruntime-node is not installed and could not be: run scripts/deps.sh test (it runs scripts/ort.sh)"
  NODE_PATH=$ort_dir/node_modules
  export NODE_PATH
}

# Generate model NAME into $MODELS/NAME unless it is there and current.
gen_model() {
  mkdir -p "$MODELS" || conf_fail "cannot create $MODELS"
  flock "$MODELS/.gen-$1.lock" nice -n 10 "$PY" "$CONF_SRC/gen_models.py" --out "$MODELS" "$1" >&2 ||
    conf_fail "$1: model generation failed"
}

# A crash shows as a signal (rc >= 128) or a sanitizer report, never as an
# ordinary error exit.
pivot_crashed() { # RC LOGFILE
  [ "$1" -ge 128 ] && return 0
  grep -qE 'Segmentation fault|Aborted|core dumped|AddressSanitizer|runtime error:|LeakSanitizer' "$2"
}
