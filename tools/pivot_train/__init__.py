"""pivot-train: train, prune by pivoting, fine-tune, quantise and export
permuted block-sparse ("pivoted") networks for pivotd.

Modules: data (Fashion-MNIST IDX loader), masks (balanced block masks,
pivot pruning, magnitude pruning), libpivot (ctypes binding to the C
pruner), models, train (masked training, gradual schedule, distillation,
quantisation-aware fine-tuning), quant, export (ONNX), experiments.
"""
__version__ = "0.1.0"
