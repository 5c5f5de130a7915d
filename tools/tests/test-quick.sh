#!/bin/sh
# The quick training check (< 2 minutes on one core): 4x pivot-pruned MLP
# > 70 %, pivoting keeps more energy than random permutations, exported
# ONNX has exactly the block structure and int8 scales.  Skips (77) when
# the Fashion-MNIST data or python3-torch is missing.
PY=${PYTHON:-/usr/bin/python3}
dir=${PIVOT_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -e "$dir/train-images-idx3-ubyte.gz" ] && [ ! -e "$dir/train-images-idx3-ubyte" ]; then
  echo "skip: Fashion-MNIST not found in $dir (Debian dataset-fashion-mnist)"; exit 77
fi
$PY -c 'import torch, onnx' 2>/dev/null || { echo "skip: python3-torch/onnx missing"; exit 77; }
cd "$(dirname "$0")/.." && exec nice -n 15 $PY -m pivot_train --device cpu quick
