"""GRU with pivoted input (W) and recurrent (R) matrices.

Hidden units are split into n balanced groups by a fixed random
permutation; input features likewise.  Gate rows of hidden unit i (all
three gates) connect only to the features and hidden units of i's group,
so W and R are block diagonal after permuting, with the SAME permutation
on R's rows (per gate) and columns: the recurrence h -> h then stays in
permuted order, and the permutation is applied once to x and undone once
on the last h."""
import copy
import time

import torch

from . import masks as mk
from .train import Masker, evaluate, train


class _W:
    """Adapter giving a bare Parameter the .weight attribute Masker uses."""

    def __init__(self, p):
        self.weight = p


def gru_masks(gru, n, seed):
    H = gru.hidden_size
    I = gru.input_size
    rng = mk.SplitMix64(seed)
    hg = torch.from_numpy(mk.random_groups(H, n, rng))
    ig = torch.from_numpy(mk.random_groups(I, n, rng))
    rows = hg.repeat(3)                                   # gates r, z, n
    m_ih = (rows[:, None] == ig[None, :]).float()
    m_hh = (rows[:, None] == hg[None, :]).float()
    dev = gru.weight_ih_l0.device
    return [m_ih.to(dev), m_hh.to(dev)]


def gru_layers(model):
    return [_W(model.gru.weight_ih_l0), _W(model.gru.weight_hh_l0)]


def run_gru(ns, seeds, E, F, device, data, batch=128):
    """Dense vs random-permutation pivoted GRU, trained from scratch with
    the same budget.  Returns records."""
    from .models import GRUClassifier
    xtr, ytr, xte, yte = data
    recs = []
    for seed in seeds:
        for n in ns:
            t0 = time.time()
            torch.manual_seed(seed)
            m = GRUClassifier().to(device)
            masker = None
            if n > 1:
                masker = Masker(gru_layers(m), gru_masks(m.gru, n, seed))
            train(m, xtr, ytr, E, masker=masker, batch=batch, seed=seed)
            train(m, xtr, ytr, F, cosine=True, masker=masker, batch=batch,
                  seed=seed + 1)
            recs.append({"model": "gru", "seed": seed, "n": n,
                         "method": "dense" if n == 1 else "random",
                         "acc": evaluate(m, xte, yte), "E": E, "F": F,
                         "seconds": round(time.time() - t0, 1)})
    return recs


def export_gru(model, n, seed, path):
    """Export to ONNX (opset 13: one GRU node, linear_before_reset=1, as
    PyTorch computes it), with exact zeros outside the blocks."""
    from .export import export_onnx
    model = copy.deepcopy(model).cpu().eval()
    layers = gru_layers(model)
    masks_ = gru_masks(model.gru, n, seed) if n > 1 else []
    ex = torch.zeros(1, 1, 28, 28)
    return export_onnx(model, path, ex, layers if n > 1 else (), masks_,
                       metadata={"pivot.format": "pivot-train/1",
                                 "pivot.gru.blocks": n})
