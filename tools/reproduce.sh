#!/bin/sh
# Reproduces the tables of docs/TRAINING.md: MLP and small CNN on
# Fashion-MNIST at 1/2/4/8/16x, the rotation-angle regression model and the
# pivoted GRU.  Usage: [DEVICE=cuda] [JOBS=6] [SEEDS=3] tools/reproduce.sh OUTDIR
# Then: python3 -m pivot_train report OUTDIR/*/stream.jsonl
OUT=${1:-pivot-train-results}
PY=${PYTHON:-/usr/bin/python3}
DEV=${DEVICE:-cpu}
JOBS=${JOBS:-1}
SEEDS=${SEEDS:-3}
LIMIT=${LIMIT:-}        # e.g. "timeout 500" to bound each part
cd "$(dirname "$0")" || exit 1
mkdir -p "$OUT"
$LIMIT $PY -m pivot_train --device "$DEV" table --models mlp,cnn \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/cls" > "$OUT/cls.log" 2>&1 &
$LIMIT $PY -m pivot_train --device "$DEV" table --models reg --ns 1,4,8,16 \
    --methods random,pivot,pivot+,magnitude --seeds "$SEEDS" \
    --jobs "$SEEDS" --out "$OUT/reg" > "$OUT/reg.log" 2>&1 &
$LIMIT $PY -m pivot_train --device "$DEV" gru --ns 1,2,4,8 --seeds "$SEEDS" \
    --out "$OUT/gru.jsonl" > "$OUT/gru.log" 2>&1 &
wait
