#!/bin/sh
# pivotd speedup of pivoted models: exports the MLP, the small CNN and the
# GRU (hidden 128) with balanced block masks at 1/2/4/8/16x (values do not
# change speed; the GRU's W and R share one hidden-unit permutation) and
# times each with `pivot run --repeat N` at batch 1 and 32, in ROUNDS
# alternating rounds; prints the least CPU time of one run over the rounds
# (at one thread the figure that moves least on a shared machine; medians
# of wall time moved 2x between runs here) and the ratio to the dense
# model.
# Usage: [C=2] tools/speedup.sh [REPEAT] [BACKEND] [THREADS]
# C=2: the MLP and CNN masks as c-of-n blocks (pivot-train --c 2; the
# GRU keeps block-diagonal ones).
# One thread by default: these models run in well under a millisecond at
# batch 1, where a second thread's hand-offs are as large as the work.
REPEAT=${1:-50}
BACKEND=${2:-cpu}
THREADS=${3:-1}
PY=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
pivot=${PIVOT:-$here/../clients/pivot}
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
cd "$here" && PV_C=${C:-1} $PY - "$dir" <<'PYEOF' 2>/dev/null || exit 1
import os, sys, torch, numpy as np
from pivot_train.models import build
from pivot_train.train import Masker, layer_mask
from pivot_train.export import export_onnx, pivot_metadata
torch.set_num_threads(1)
d = sys.argv[1]
for name in ("mlp", "cnn"):
    for n in (1, 2, 4, 8, 16):
        torch.manual_seed(0)
        m = build(name)
        L = m.prunable()
        c = int(os.environ["PV_C"]) if n > 1 else 1
        masks = [layer_mask(l, "random", n * c, 0, c=c)[0] for l in L]
        Masker(L, masks)
        use = n > 1
        export_onnx(m, "%s/%s-%d.onnx" % (d, name, n), torch.rand(1, 1, 28, 28),
                    L if use else (), masks if use else (),
                    pivot_metadata(m, L, masks, n))
from pivot_train.models import GRUClassifier
from pivot_train.rnn import export_gru, gru_layers, gru_masks
for n in (1, 2, 4, 8, 16):
    torch.manual_seed(0)
    m = GRUClassifier()
    if n > 1:
        Masker(gru_layers(m), gru_masks(m.gru, n, 0))   # zeros outside the blocks
    export_gru(m, n, 0, "%s/gru-%d.onnx" % (d, n))
for b in (1, 32):
    np.save("%s/x%d.npy" % (d, b), np.random.rand(b, 1, 28, 28).astype(np.float32))
PYEOF
# ROUNDS rounds (default 3) in which every model takes its turn, so that a
# slow stretch of a shared machine hits them alike; the lowest of the
# rounds per model and batch.
ROUNDS=${ROUNDS:-3}
round=1
while [ "$round" -le "$ROUNDS" ]; do
  for model in mlp cnn gru; do
    for b in 1 32; do
      for n in 1 2 4 8 16; do
        t=$("$pivot" run "$dir/$model-$n.onnx" --input "$dir/x$b.npy" \
            --output-dir "$dir/out" --backend "$BACKEND" --threads "$THREADS" --repeat "$REPEAT" 2>&1 |
            sed -n 's/^time .* min cpu \([0-9.]*\) ms.*/\1/p')
        if [ -n "$t" ]; then echo "$model $b $n $t"; else echo "$model $b $n fail"; fi
      done
    done
  done >> "$dir/times"
  round=$((round + 1))
done
echo "model batch x min_cpu_ms ratio_to_dense (lowest of $ROUNDS rounds)"
awk '{ k = $1 " " $2 " " $3
       if ($4 == "fail") { bad[k] = 1; next }
       if (!(k in m) || $4 + 0 < m[k]) m[k] = $4 + 0 }
     END { split("mlp cnn gru", ms, " ")
           for (i = 1; i <= 3; i++) for (b = 1; b <= 32; b += 31) {
             base = m[ms[i] " " b " 1"]
             for (n = 1; n <= 16; n *= 2) {
               k = ms[i] " " b " " n
               if (!(k in m)) { printf "%s b%d %dx: pivot run failed\n", ms[i], b, n; continue }
               r = base > 0 ? sprintf("%.2f", base / m[k]) : "n/a"
               printf "%s %d %d %.3f %s\n", ms[i], b, n, m[k], r } } }' "$dir/times"
