"""Masked training: fixed masks from the start, one-shot prune + fine-tune,
a gradual schedule (block count doubling dense -> target), distillation
from a teacher, and int8 quantisation-aware fine-tuning."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from . import libpivot, masks as mk
from .models import layer_geometry
from .quant import FakeQuant


# Peak Adam rate of the phase after one-shot pruning (cosine to 0), by
# compression n.  MLP 784-1024-1024-10, E4F8, 3 seeds each
# (docs/TRAINING.md), test accuracy %:
#   n:             2             4             8             16
#   from 1e-3: 89.99 ± 0.15  89.84 ± 0.07  89.43 ± 0.15  88.92 ± 0.16
#   from 3e-3: 89.84 ± 0.19  89.89 ± 0.24  90.06 ± 0.06  89.75 ± 0.19
# (the 1e-3 row at 4-16x from an H200, where 2x gave 90.16 ± 0.12).
# A lightly pruned model starts near the dense optimum, which a high rate
# knocks it out of; a heavily pruned one has far to go.  The dense
# model's own second phase is best at 1e-3 (3e-3: 89.81 ± 0.10 against
# 90.23 ± 0.18).
DENSE_FT_LR = 1e-3


def ft_lr_for(n):
    """The default fine-tuning rate at compression n (n = 1: dense)."""
    return DENSE_FT_LR if n <= 2 else 3e-3


def layer_input_power(model, layers, x, batches=8, batch=256):
    """E[x_ch^2] of each layer's input channels over a few training
    batches: activation-aware pivoting weighs a weight by how much signal
    actually flows through it, so dead inputs stop attracting blocks."""
    stats = [None] * len(layers)

    def make(i):
        def hook(mod, inp):
            a = inp[0].detach()
            p = (a * a).transpose(0, 1).flatten(1).mean(dim=1)
            stats[i] = p if stats[i] is None else stats[i] + p
        return hook
    hs = [l.register_forward_pre_hook(make(i)) for i, l in enumerate(layers)]
    model.eval()
    with torch.no_grad():
        for b in range(batches):
            model(x[b * batch:(b + 1) * batch])
    for h in hs:
        h.remove()
    return [(s / batches).double().cpu().numpy() for s in stats]


def layer_mask(layer, kind, n, seed, c=1, power=None, impl="auto"):
    """(mask tensor shaped like layer.weight, retained energy) for one layer.
    kind: 'pivot' (prune by pivoting), 'random' (fixed random permutation,
    balanced blocks), 'magnitude' (unstructured, density c/n)."""
    M, C, kk = layer_geometry(layer)
    w = layer.weight.detach().cpu().double().numpy().reshape(M, C * kk)
    if n == 1:
        m = np.ones_like(w, dtype=np.float32)
    elif kind == "magnitude":
        m = mk.magnitude_mask(w, c / n)
    elif kind == "random":
        rg, cg = mk.random_pivot_groups(M, C, n, seed)
        m = mk.mask_from_groups(rg, cg, kk, n, c)
    elif kind == "pivot":
        ws = w
        if power is not None:
            ws = w * np.repeat(np.sqrt(power + 1e-12), kk)[None, :]
        if impl == "c" or (impl == "auto" and libpivot.find() is not None):
            m, _ = libpivot.prune(ws, C, kk, n, c, seed)
        else:
            rg, cg, _ = mk.pivot_prune_groups(ws, C, kk, n, c, seed)
            m = mk.mask_from_groups(rg, cg, kk, n, c)
    else:
        raise ValueError("unknown mask kind %r" % kind)
    ret = mk.retained(w, m)
    t = torch.from_numpy(m).to(layer.weight.device).view_as(layer.weight)
    return t, ret


class Masker:
    """Keeps masked weights at zero: gradients are masked before the step
    (so Adam's moments stay clean) and weights after it."""

    def __init__(self, layers, masks_):
        self.layers, self.masks = list(layers), list(masks_)
        self.apply()

    def set(self, masks_):
        self.masks = list(masks_)
        self.apply()

    def apply(self):
        with torch.no_grad():
            for l, m in zip(self.layers, self.masks):
                l.weight.mul_(m)

    def mask_grads(self):
        for l, m in zip(self.layers, self.masks):
            if l.weight.grad is not None:
                l.weight.grad.mul_(m)


def evaluate(model, x, y, batch=1000):
    """Accuracy (classification, y int64) or RMSE (regression, y float)."""
    model.eval()
    correct, se = 0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(x[i:i + batch])
            if y.dtype == torch.int64:
                correct += (out.argmax(1) == y[i:i + batch]).sum().item()
            else:
                se += ((out.squeeze(1) - y[i:i + batch]) ** 2).sum().item()
    if y.dtype == torch.int64:
        return correct / x.shape[0]
    return math.sqrt(se / x.shape[0])


def conv_layout(model, x):
    """The memory format to train a model in.  On the CPU a convolutional
    network trains in channels-last (NHWC): torch's oneDNN convolutions
    and its max-pooling are vectorised for it, and with the default NCHW
    max_pool2d alone took a quarter of the small CNN's step (one step,
    batch 128, one thread: 102-153 ms NCHW, 84-92 ms NHWC).  The layout does
    not change what the network computes."""
    if x.dim() != 4 or x.device.type != "cpu":
        return None
    if not any(p.dim() == 4 for p in model.parameters()):
        return None
    return torch.channels_last


def train(model, x, y, epochs, lr=1e-3, cosine=False, masker=None,
          schedule=None, teacher=None, kd=0.0, temp=4.0, qat_layers=None,
          batch=128, seed=0, layout="auto"):
    """One training phase with Adam.  schedule(step, total) may return new
    masks for the masker (gradual pruning).  Classification uses cross
    entropy (mixed with a distillation term when kd > 0), regression MSE.
    layout: "auto" (conv_layout), or a torch.memory_format, or None."""
    fmt = conv_layout(model, x) if layout == "auto" else layout
    if fmt is not None:
        model.to(memory_format=fmt)     # in place, before Adam sees them
    g = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    steps = epochs * ((n + batch - 1) // batch)
    fq = FakeQuant(qat_layers) if qat_layers else None
    cls = y.dtype == torch.int64
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(x.device)
        model.train()
        for i in range(0, n, batch):
            if schedule is not None:
                new = schedule(step, steps)
                if new is not None:
                    masker.set(new)
            if cosine:
                for pg in opt.param_groups:
                    pg["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            idx = perm[i:i + batch]
            xb, yb = x[idx], y[idx]
            if fmt is not None:
                xb = xb.contiguous(memory_format=fmt)
            if fq:
                fq.swap_in()
            out = model(xb)
            if cls:
                loss = F.cross_entropy(out, yb)
                if teacher is not None and kd > 0:
                    with torch.no_grad():
                        t = teacher(xb)
                    kl = F.kl_div(F.log_softmax(out / temp, 1),
                                  F.softmax(t / temp, 1),
                                  reduction="batchmean") * temp * temp
                    loss = (1 - kd) * loss + kd * kl
            else:
                loss = F.mse_loss(out.squeeze(1), yb)
                if teacher is not None and kd > 0:
                    with torch.no_grad():
                        t = teacher(xb).squeeze(1)
                    loss = (1 - kd) * loss + kd * F.mse_loss(out.squeeze(1), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if fq:
                fq.swap_out()
            if masker is not None:
                masker.mask_grads()
            opt.step()
            if masker is not None:
                masker.apply()
            step += 1
    return model


def gradual_schedule(layers, kind, target_n, seed, ramp_frac=0.5,
                     power_fn=None, impl="auto"):
    """Dense -> 1/target_n in stages n = 2, 4, ..., target_n spread evenly
    over the first ramp_frac of the phase; each stage re-pivots (or
    re-selects magnitudes) on the current weights, which were trained
    under the previous stage's mask, so blocks refine instead of jumping."""
    stages = []
    n = 2
    while n < target_n:
        stages.append(n)
        n *= 2
    stages.append(target_n)
    done = set()
    info = {"retained": None}

    def sched(step, total):
        ramp = max(1, int(total * ramp_frac))
        k = min(len(stages) - 1, step * len(stages) // ramp)
        if k in done:
            return None
        done.add(k)
        power = power_fn() if power_fn else [None] * len(layers)
        out = [layer_mask(l, kind, stages[k], seed, power=p, impl=impl)
               for l, p in zip(layers, power)]
        info["retained"] = [r for _, r in out]
        return [m for m, _ in out]
    return sched, info
