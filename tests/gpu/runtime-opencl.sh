#!/bin/bash
# The OpenCL backend through the runtime and the CLI, on PoCL in CI:
#  - pivoted (.pvm, folded) models: every layer, pivoted ones included, runs
#    on OpenCL (`pivot inspect --backend`), outputs equal to the CPU
#    backend's within 1e-5 relative; the bundled demo model and a fresh
#    `pivot convert --prune` of its dense version;
#  - `pivot bench --backend opencl` (quick): rows for every density, the
#    pivoted result equal to the dense one on the zero-filled matrix (no
#    timing is asserted);
#  - faults: a kernel that fails to build (bad PIVOT_OPENCL_OPTIONS) and a
#    missing plugin are logged, the CPU takes over with the same outputs;
#    the bench refuses to report a backend that did not run.
set -u
PIVOT=${PIVOT:-$(dirname "$0")/../../clients/pivot}
SRC=${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2>/dev/null || { echo "numpy for $PY missing: skip"; exit 77; }
[ -x "$PIVOT" ] || { echo "$PIVOT not built"; exit 99; }
T=$(mktemp -d) || exit 99
trap 'rm -rf "$T"' EXIT
export XDG_CACHE_HOME=$T/cache # the program binary cache stays here
fail() { echo "FAIL: $*"; exit 1; }

# Without a usable OpenCL device there is nothing to test here.
if ! "$PIVOT" inspect "$SRC/demo/models/fashion/2/model.pvm" --backend opencl >"$T/probe" 2>&1; then
  cat "$T/probe"; fail "inspect on opencl"
fi
if grep -q "backend 'opencl'.*using the next backend" "$T/probe"; then
  cat "$T/probe"; echo "no usable OpenCL device: skip"; exit 77
fi

"$PY" -c 'import numpy as np; np.save("'"$T"'/x.npy", np.random.default_rng(7).standard_normal((5, 784)).astype(np.float32))'
"$PIVOT" convert "$SRC/demo/models/fashion/1/model.onnx" "$T/p8.pvm" --prune 1/8 >"$T/convert.log" 2>&1 ||
  { cat "$T/convert.log"; fail "convert --prune 1/8"; }

compare() { # compare DIR_A DIR_B LABEL
  "$PY" - "$1" "$2" "$3" <<'EOF'
import glob, os, sys
import numpy as np
a_dir, b_dir, label = sys.argv[1:]
files = sorted(glob.glob(os.path.join(a_dir, "*.npy")))
if not files:
    sys.exit("%s: no outputs in %s" % (label, a_dir))
for f in files:
    a, b = np.load(f), np.load(os.path.join(b_dir, os.path.basename(f)))
    err = np.abs(a.astype(np.float64) - b).max() / max(np.abs(a).max(), 1e-30)
    print("%s: %s max rel err %.2e" % (label, os.path.basename(f), err))
    if a.shape != b.shape or not err <= 1e-5:
        sys.exit("%s: outputs differ" % label)
EOF
}

for m in "$SRC/demo/models/fashion/2/model.pvm" "$T/p8.pvm"; do
  name=$(basename "$m")
  "$PIVOT" inspect "$m" --backend opencl,cpu --json >"$T/inspect.json" 2>"$T/inspect.log" ||
    { cat "$T/inspect.log"; fail "$name: inspect"; }
  "$PY" - "$T/inspect.json" "$name" <<'EOF' || fail "$name: layers not on opencl"
import json, sys
j = json.load(open(sys.argv[1]))
layers = j["layers"]
piv = [l for l in layers if l["density"] < 1]
off = [l["name"] for l in layers if l["backend"] != "opencl"]
print("%s: %d layers, %d pivoted, not on opencl: %s" % (sys.argv[2], len(layers), len(piv), off))
sys.exit(1 if off or not piv else 0)
EOF
  "$PIVOT" run "$m" --input "$T/x.npy" --output-dir "$T/cpu" --backend cpu >/dev/null 2>&1 || fail "$name: run on cpu"
  "$PIVOT" run "$m" --input "$T/x.npy" --output-dir "$T/ocl" --backend opencl,cpu >"$T/run.log" 2>&1 ||
    { cat "$T/run.log"; fail "$name: run on opencl"; }
  compare "$T/cpu" "$T/ocl" "$name opencl vs cpu" || exit 1
done

# The bench: every density reported, the pivoted kernel right.
"$PIVOT" bench --backend opencl --quick --sizes 256 --batch 1,8 --density 1,1/4 >"$T/bench.txt" 2>"$T/bench.log" ||
  { cat "$T/bench.log" "$T/bench.txt"; fail "bench --backend opencl"; }
cat "$T/bench.txt"
"$PY" - "$T/bench.txt" <<'EOF' || fail "bench table"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l[:1] != "#" and "|" in l and "M=K" not in l]
dens = sorted(set(r[2] for r in rows))
bad = [r for r in rows if r[2] != "1" and not float(r[-1]) < 1e-4]
print("bench rows %d, densities %s, bad relerr %s" % (len(rows), dens, bad))
sys.exit(0 if len(rows) == 4 and dens == ["1", "1/4"] and not bad else 1)
EOF

# A kernel that fails to build: logged, the CPU runs everything, same outputs.
m=$T/p8.pvm
PIVOT_OPENCL_OPTIONS=-Dfloat=no_such_type "$PIVOT" run "$m" --input "$T/x.npy" --output-dir "$T/bad" \
  --backend opencl,cpu >"$T/bad.log" 2>&1 || { cat "$T/bad.log"; fail "run with a build failure"; }
grep -q "opencl: kernel build failed" "$T/bad.log" && grep -q "using the next backend" "$T/bad.log" ||
  { cat "$T/bad.log"; fail "build failure not logged"; }
"$PIVOT" run "$m" --input "$T/x.npy" --output-dir "$T/cpu" --backend cpu >/dev/null 2>&1 || fail "p8 on cpu"
compare "$T/cpu" "$T/bad" "build failure: cpu took over" || exit 1
PIVOT_OPENCL_OPTIONS=-Dfloat=no_such_type "$PIVOT" inspect "$m" --backend opencl,cpu --json 2>/dev/null |
  grep -q '"backend":"opencl"' && fail "a layer stayed on the broken backend"
# The bench does not pass off CPU times as OpenCL ones.
PIVOT_OPENCL_OPTIONS=-Dfloat=no_such_type "$PIVOT" bench --backend opencl --quick --sizes 64 \
  --batch 1 --density 1 >"$T/bb.txt" 2>&1 && { cat "$T/bb.txt"; fail "bench on a broken backend succeeded"; }
grep -q "ran on 'cpu', not 'opencl'" "$T/bb.txt" || { cat "$T/bb.txt"; fail "bench error unclear"; }
# A plugin that is not there.
"$PIVOT" run "$m" --input "$T/x.npy" --output-dir "$T/none" --backend nosuch,cpu >"$T/none.log" 2>&1 ||
  { cat "$T/none.log"; fail "run with a missing plugin"; }
grep -q "pivot-backend-nosuch.so not found" "$T/none.log" || { cat "$T/none.log"; fail "missing plugin not logged"; }
compare "$T/cpu" "$T/none" "missing plugin: cpu took over" || exit 1
echo "runtime-opencl: ok"
