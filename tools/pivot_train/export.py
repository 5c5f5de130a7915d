"""ONNX export of pruned models: pruned weights stored as zeros, so any
runtime runs the file and `pivot convert` detects the blocks exactly."""
import json

import numpy as np
import torch

from . import masks as mk
from .models import layer_geometry

# Stands in for a weight that is exactly zero inside a kept block: an
# exact zero could split a block in the detector's union-find, while
# 1e-30 is a normal float32 that changes no output and rounds to int8 0.
TINY = np.float32(1e-30)


def fill_block_zeros_(layers, masks_):
    """Replace exact zeros inside kept blocks by TINY; returns how many."""
    count = 0
    with torch.no_grad():
        for l, m in zip(layers, masks_):
            hole = (l.weight == 0) & (m > 0)
            count += int(hole.sum().item())
            l.weight[hole] = float(TINY)
    return count


def export_onnx(model, path, example, layers=(), masks_=(), metadata=None,
                dynamic_batch=True, input_name="input", output_name="output"):
    """Export with opset 13 and a dynamic batch dimension.  metadata (a
    dict of str -> JSON-able) lands in ONNX metadata_props as JSON text."""
    import onnx
    # the ONNX file holds plain [Cout, Cin, kh, kw] weights whatever
    # layout the model trained in
    model = model.eval().cpu().to(memory_format=torch.contiguous_format)
    layers = list(layers)
    masks_ = [m.cpu() for m in masks_]
    filled = fill_block_zeros_(layers, masks_) if layers else 0
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} \
        if dynamic_batch else None
    torch.onnx.export(model, example.cpu(), path, opset_version=13,
                      input_names=[input_name], output_names=[output_name],
                      dynamic_axes=axes, do_constant_folding=True)
    if metadata:
        m = onnx.load(path)
        for k, v in metadata.items():
            p = m.metadata_props.add()
            p.key = k
            p.value = v if isinstance(v, str) else json.dumps(v)
        onnx.save(m, path)
    return filled


def onnx_weights(path):
    """name -> numpy array of every initializer."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def onnx_metadata(path):
    import onnx
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def check_structure(w, n):
    """True when the nonzero pattern of weight w (Linear [M, K] or Conv
    [M, C, kh, kw]) has exactly n connected components of balanced size,
    each a full (dense) block: what the detector needs to recover n."""
    if w.ndim == 4:
        M, C, kk = w.shape[0], w.shape[1], w.shape[2] * w.shape[3]
    else:
        M, C, kk = w.shape[0], w.shape[1], 1
    w2 = w.reshape(M, C * kk)
    comps = mk.detect_blocks(w2, C, kk)
    if len(comps) != n:
        return False
    rs, cs = sorted(len(r) for r, _ in comps), sorted(len(c) for _, c in comps)
    if rs != sorted(mk.group_sizes(M, n).tolist()) or \
            cs != sorted(mk.group_sizes(C, n).tolist()):
        return False
    nnz = int((np.abs(w2) > 0).sum())
    return nnz == sum(len(r) * len(c) * kk for r, c in comps)


def layer_names(model, layers):
    """Parameter names of the layers' weights (as ONNX initializer names)."""
    ids = {id(l.weight): name for name, l in
           ((n + ".weight", m) for n, m in model.named_modules()) if
           hasattr(l, "weight")}
    return [ids[id(l.weight)] for l in layers]


def pivot_metadata(model, layers, masks_, n, scales=None, c=1):
    """Metadata for pivotd: per pruned layer the block count and geometry,
    and, after quantisation-aware training, the int8 scales (symmetric,
    per output channel, w = q * scale[row], q in [-127, 127])."""
    meta = {"pivot.format": "pivot-train/1"}
    names = layer_names(model, layers)
    for i, (name, l) in enumerate(zip(names, layers)):
        M, C, kk = layer_geometry(l)
        meta["pivot.layer." + name] = {"blocks": n, "M": M, "C": C, "kk": kk}
        if c > 1:   # c-of-n: n row groups, each reaching c column groups
            meta["pivot.layer." + name]["c"] = c
        if scales is not None:
            meta["pivot.int8." + name] = {"axis": 0, "bits": 8,
                                          "symmetric": True,
                                          "scales": scales[i]}
    return meta
