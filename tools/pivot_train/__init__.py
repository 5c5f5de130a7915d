"""pivot-train: train, prune by pivoting, fine-tune, quantise and export
permuted block-sparse ("pivoted") networks for pivotd.

Modules: data (Fashion-MNIST IDX loader), masks (balanced block masks,
pivot pruning, magnitude pruning), libpivot (ctypes binding to the C
pruner), models, train (masked training, gradual schedule, distillation,
quantisation-aware fine-tuning), quant, export (ONNX), experiments.
"""
__version__ = "0.1.0"


def _openblas_coretype():
    """Debian's torch multiplies through OpenBLAS 0.3.21, which takes some
    AVX-512 Xeons for a Prescott and runs SSE3 kernels: one MLP training
    step took 61 ms instead of 20 on the 2-core build machine. Name the
    core from the CPU's flags before torch loads the library, unless the
    user already chose one (OPENBLAS_CORETYPE)."""
    import os
    import platform
    if os.environ.get("OPENBLAS_CORETYPE") or platform.machine() != "x86_64":
        return
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f
                          if l.startswith("flags")), [])
    except OSError:
        return
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    elif {"avx2", "fma"} <= set(flags):
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"


_openblas_coretype()
