#!/bin/sh
# Reproduces the tables of docs/TRAINING.md: MLP and small CNN on
# Fashion-MNIST at 1/2/4/8/16x, the rotation-angle regression model and the
# pivoted GRU.  Usage: [DEVICE=cuda] [JOBS=6] [SEEDS=3] tools/reproduce.sh OUTDIR
# [EARLIER=1] also reruns the earlier E8F4 tables.
# Then, one table per directory: python3 -m pivot_train report OUTDIR/cls/stream.jsonl
OUT=${1:-pivot-train-results}
PY=${PYTHON:-/usr/bin/python3}
DEV=${DEVICE:-cpu}
JOBS=${JOBS:-1}
SEEDS=${SEEDS:-3}
LIMIT=${LIMIT:-}        # e.g. "timeout 500" to bound each part
cd "$(dirname "$0")" || exit 1
mkdir -p "$OUT"
# The current recipe: 4 dense epochs, prune, 8 epochs of fine-tuning from
# a peak rate chosen by compression (1e-3 at 2x, 3e-3 from 4x on; the
# dense column keeps 1e-3, its better rate).
$LIMIT $PY -m pivot_train --device "$DEV" table --models mlp,cnn \
    --methods random,pivot,magnitude --epochs 4 --ft 8 \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/cls" > "$OUT/cls.log" 2>&1 &
# The MLP with 2-of-2n blocks (--c 2) for the pivot and random columns
# (magnitude pruning does not depend on c; it is rerun so the table stands
# alone).
$LIMIT $PY -m pivot_train --device "$DEV" table --models mlp \
    --methods random,pivot,magnitude --epochs 4 --ft 8 --c 2 \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/cls-c2" > "$OUT/cls-c2.log" 2>&1 &
# The earlier tables (E8F4 with pivot+ and magnitude+, fine-tuning at 1e-3):
# [EARLIER=1] reproduces them too.
if [ -n "${EARLIER:-}" ]; then
  $LIMIT $PY -m pivot_train --device "$DEV" table --models mlp,cnn \
      --ft-lr 1e-3 --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/cls-e8f4" \
      > "$OUT/cls-e8f4.log" 2>&1 &
fi
$LIMIT $PY -m pivot_train --device "$DEV" table --models reg --ns 1,4,8,16 \
    --methods random,pivot,pivot+,magnitude --ft-lr 1e-3 --seeds "$SEEDS" \
    --jobs "$SEEDS" --out "$OUT/reg" > "$OUT/reg.log" 2>&1 &
$LIMIT $PY -m pivot_train --device "$DEV" gru --ns 1,2,4,8 --seeds "$SEEDS" \
    --out "$OUT/gru.jsonl" > "$OUT/gru.log" 2>&1 &
wait
