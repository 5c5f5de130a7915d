"""int8 fake quantisation with a straight-through estimator.

Symmetric, per output channel (one scale per row of the M x C*kk matrix).
With block-diagonal pivoting each row lies in exactly one block, so this is
also a per-block-row scale: an int8 kernel multiplies each block row's
int32 accumulator by one float."""
import torch


def row_scales(w):
    """Per-output-channel scale = max|w| / 127 (1 where a row is all zero)."""
    amax = w.detach().abs().flatten(1).max(dim=1).values
    return torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))


def _snap(w):
    s = row_scales(w).view(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / s), -127, 127) * s


class FakeQuant:
    """Straight-through estimator by swapping storage: before the forward
    pass each weight's data is replaced by its int8-grid value; after the
    backward pass the float master is restored, so the optimiser applies
    the gradient taken at the quantised point to the float weight."""

    def __init__(self, layers):
        self.layers = list(layers)
        self.master = None

    def swap_in(self):
        self.master = [l.weight.data.clone() for l in self.layers]
        with torch.no_grad():
            for l in self.layers:
                l.weight.data.copy_(_snap(l.weight.data))

    def swap_out(self):
        with torch.no_grad():
            for l, m in zip(self.layers, self.master):
                l.weight.data.copy_(m)
        self.master = None


def quantise_(layer):
    """Snap a layer's weight to its int8 grid in place; returns the scales
    (float32 list) an int8 kernel needs: w = q * scale[row]."""
    with torch.no_grad():
        s = row_scales(layer.weight)
        sv = s.view(-1, *([1] * (layer.weight.dim() - 1)))
        layer.weight.copy_(torch.clamp(torch.round(layer.weight / sv),
                                       -127, 127) * sv)
    return [float(v) for v in s.cpu()]
