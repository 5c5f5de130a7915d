#!/usr/bin/python3
"""Generate the conformance models and their inputs.

Usage: gen_models.py --out DIR [NAME ...]   (no NAME: every model)
       gen_models.py --list

Each model goes to DIR/NAME/: model.onnx (+ external data for cnn_ext),
in/<input>.npy (extra input sets in in_<tag>/), meta.json (inputs, outputs,
opset, and a hash of this script, so editing it regenerates). A model whose
meta.json carries the current hash is left alone. Random weights and inputs
from fixed seeds: the same script gives the same files.

Needs Debian's python3-torch, python3-torchvision, python3-onnx and
python3-numpy (scripts/deps.sh test).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings

try:
    import numpy as np
    import onnx
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the test must fail loudly, not skip
    sys.exit("gen_models: %s; run scripts/deps.sh test "
             "(needs Debian's python3-torch, python3-torchvision, python3-onnx, python3-numpy)" % e)

# torch 1.13's exporter warns about folds it cannot do; constant_pad_pads
# below handles the one that matters.
warnings.filterwarnings("ignore", message="Constant folding")
warnings.filterwarnings("ignore", message="The shape inference of prim::Constant")

DARKNET_CFG = "/usr/share/darknet/cfg/yolov3-tiny.cfg"


def script_hash():
    with open(os.path.abspath(__file__), "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def randomize_bn(model, gen):
    """Non-trivial BN statistics, so a wrong BN fold shows in the outputs."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


# ---------------------------------------------------------------- models

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 2048)
        self.fc2 = nn.Linear(2048, 2048)
        self.fc3 = nn.Linear(2048, 10)

    def forward(self, x):
        # x.size(0) with a dynamic batch exports the Shape->Gather->Unsqueeze
        # ->Concat->Reshape pattern the importer must fold symbolically.
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
        # BN after the Relu cannot be folded by the exporter, so a real
        # BatchNormalization node reaches our importer.
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)) + y)  # residual Add
        y = F.max_pool2d(y, 2)
        y = self.bn3(F.relu(self.conv3(y)))
        y = F.max_pool2d(y, 2)
        return self.fc(torch.flatten(y, 1))


def parse_darknet_cfg(path):
    """Sections of a darknet .cfg as [(type, {key: value})]."""
    sections = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                sections.append((line.strip("[]").strip(), {}))
            elif "=" in line:
                k, v = line.split("=", 1)
                sections[-1][1][k.strip()] = v.strip()
    return sections


class Darknet(nn.Module):
    """The topology of a darknet cfg (the yolov3-tiny subset of layers).

    Yolo layers pass their input through; their inputs (the raw 255-channel
    head convolutions) are the model's outputs.
    """

    def __init__(self, cfg):
        super().__init__()
        sections = parse_darknet_cfg(cfg)
        if not sections or sections[0][0] not in ("net", "network"):
            raise ValueError("%s: first section is not [net]" % cfg)
        net = sections[0][1]
        self.width, self.height = int(net["width"]), int(net["height"])
        chans = [int(net.get("channels", 3))]  # output channels per layer
        self.layers = nn.ModuleList()
        self.kinds = []
        self.routes = {}
        cin = chans[0]
        for i, (kind, opt) in enumerate(sections[1:]):
            if kind == "convolutional":
                n, k = int(opt["filters"]), int(opt["size"])
                s = int(opt.get("stride", 1))
                pad = k // 2 if int(opt.get("pad", 0)) else int(opt.get("padding", 0))
                bn = int(opt.get("batch_normalize", 0))
                m = nn.Sequential()
                m.add_module("conv", nn.Conv2d(cin, n, k, s, pad, bias=not bn))
                if bn:
                    m.add_module("bn", nn.BatchNorm2d(n, eps=1e-5))
                act = opt.get("activation", "linear")
                if act == "leaky":
                    m.add_module("act", nn.LeakyReLU(0.1))
                elif act != "linear":
                    raise ValueError("layer %d: activation %s not handled" % (i, act))
                cout = n
            elif kind == "maxpool":
                k, s = int(opt["size"]), int(opt["stride"])
                m = nn.Sequential()
                if s == 1:
                    # darknet keeps the size with one extra column and row at
                    # the bottom/right; the widely used PyTorch port (and so
                    # the ONNX files users have) pads them explicitly with
                    # zeros, which is what ORT's optimiser gets wrong.
                    m.add_module("pad", nn.ZeroPad2d((0, k - 1, 0, k - 1)))
                m.add_module("pool", nn.MaxPool2d(k, s))
                cout = cin
            elif kind == "upsample":
                m = nn.Upsample(scale_factor=int(opt["stride"]), mode="nearest")
                cout = cin
            elif kind == "route":
                idx = [int(v) for v in opt["layers"].split(",")]
                idx = [j if j >= 0 else i + j for j in idx]
                self.routes[i] = idx
                m = nn.Identity()
                cout = sum(chans[j + 1] for j in idx)
            elif kind == "yolo":
                m = nn.Identity()
                cout = cin
            else:
                raise ValueError("layer %d: [%s] not handled" % (i, kind))
            self.layers.append(m)
            self.kinds.append(kind)
            chans.append(cout)
            cin = cout

    def forward(self, x):
        outs, heads = [], []
        for i, (kind, m) in enumerate(zip(self.kinds, self.layers)):
            if kind == "route":
                srcs = [outs[j] for j in self.routes[i]]
                x = srcs[0] if len(srcs) == 1 else torch.cat(srcs, 1)
            else:
                x = m(x)
            if kind == "yolo":
                heads.append(x)
            outs.append(x)
        return tuple(heads)


def constant_pad_pads(m, pads):
    """Give every Pad node the constant `pads` and drop the dead subgraph.

    torch 1.13 cannot constant-fold the Slice with step -1 it emits to build
    Pad's pads at opset >= 11, leaving a ConstantOfShape/Slice/Transpose/Cast
    chain; newer exporters emit the constant itself, which is what we keep.
    """
    from onnx import numpy_helper
    g = m.graph
    for i, n in enumerate(x for x in g.node if x.op_type == "Pad"):
        name = "pads_const_%d" % i
        g.initializer.append(numpy_helper.from_array(np.array(pads, np.int64), name))
        n.input[1] = name
    # Remove nodes nothing reads, until none is left.
    while True:
        used = {o.name for o in g.output} | {x for n in g.node for x in n.input}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {x for n in g.node for x in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)


class GRUNet(nn.Module):
    """Reads a 28x28 image row by row (28 steps of 28 features), as the
    pivoted GRU of tools/pivot_train does; batch_first export adds the
    Transpose/Squeeze/Gather nodes around the ONNX GRU."""

    def __init__(self, hidden=96):
        super().__init__()
        self.gru = nn.GRU(28, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = self.gru(x.flatten(1, 2))
        return self.fc(out[:, -1])


class RNNZoo(nn.Module):
    """LSTM (2 layers, bidirectional) -> GRU (bidirectional) -> RNN (tanh),
    batch_first: every recurrent op, both directions, stacked layers."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 32, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(64, 24, batch_first=True, bidirectional=True)
        self.rnn = nn.RNN(48, 16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y, _ = self.lstm(x.flatten(1, 2))
        y, _ = self.gru(y)
        y, _ = self.rnn(y)
        return self.fc(y[:, -1])


# ------------------------------------------- recurrent ops built directly
# Attributes PyTorch never exports (reverse direction, sequence_lens,
# peepholes, clip, input_forget, initial states, GRU linear_before_reset=0,
# layout 1), built with onnx.helper; the cross-check reference is this
# numpy implementation of the ONNX operator text, independent of ours.

def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def np_rnn(op, x, W, R, B, sl, h0, c0, P, H, direction, clip, lbr, coupled, layout):
    """Returns Y [T, D, B, H], Y_h [D, B, H], Y_c (LSTM) in layout 0; x in layout 0."""
    T, Bt, _ = x.shape
    D = 2 if direction == "bidirectional" else 1
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    cl = (lambda v: np.clip(v, -clip, clip)) if clip else (lambda v: v)
    Y = np.zeros((T, D, Bt, H), np.float64)
    Yh = np.zeros((D, Bt, H)); Yc = np.zeros((D, Bt, H))
    for d in range(D):
        rev = direction == "reverse" or d == 1
        w, r = W[d].astype(np.float64), R[d].astype(np.float64)
        b = B[d].astype(np.float64) if B is not None else np.zeros(2 * G * H)
        wb, rb = b[:G * H], b[G * H:]
        for n in range(Bt):
            L = int(sl[n]) if sl is not None else T
            h = h0[d, n].astype(np.float64) if h0 is not None else np.zeros(H)
            c = c0[d, n].astype(np.float64) if c0 is not None else np.zeros(H)
            for t in (range(L - 1, -1, -1) if rev else range(L)):
                gx = w @ x[t, n] + wb
                if op == "RNN":
                    h = np.tanh(cl(gx + r @ h + rb))
                elif op == "GRU":
                    z = _sig(cl(gx[:H] + r[:H] @ h + rb[:H]))
                    rr = _sig(cl(gx[H:2 * H] + r[H:2 * H] @ h + rb[H:2 * H]))
                    if lbr:
                        hh = np.tanh(cl(gx[2 * H:] + rr * (r[2 * H:] @ h + rb[2 * H:])))
                    else:
                        hh = np.tanh(cl(gx[2 * H:] + r[2 * H:] @ (rr * h) + rb[2 * H:]))
                    h = (1 - z) * hh + z * h
                else:
                    g = gx + r @ h + rb
                    p = P[d].astype(np.float64) if P is not None else np.zeros(3 * H)
                    i = _sig(cl(g[:H] + p[:H] * c))
                    f = 1 - i if coupled else _sig(cl(g[2 * H:3 * H] + p[2 * H:] * c))
                    c = f * c + i * np.tanh(cl(g[3 * H:]))
                    o = _sig(cl(g[H:2 * H] + p[H:2 * H] * c))
                    h = o * np.tanh(c)
                Y[t, d, n] = h
            Yh[d, n] = h
            Yc[d, n] = c
    return Y.astype(np.float32), Yh.astype(np.float32), Yc.astype(np.float32)


RNN_CASES = [
    # op, direction, hidden, attributes, with seq_lens, initial states, peepholes
    ("LSTM", "reverse", 7, {"clip": 2.5}, True, False, True),
    ("LSTM", "bidirectional", 6, {"input_forget": 1}, False, True, True),
    ("GRU", "reverse", 5, {"linear_before_reset": 0, "clip": 1.5}, True, True, False),
    ("GRU", "bidirectional", 4, {"linear_before_reset": 1}, True, False, False),
    ("RNN", "bidirectional", 6, {"clip": 0.9}, True, True, False),
]


def build_rnn_attrs(rng, layout=0):
    """Input x [T=6, B=3, I=5] in layout 0, [B, T, I] in layout 1."""
    from onnx import helper, numpy_helper, TensorProto
    T, Bt, I = 6, 3, 5
    x = rng.standard_normal((T, Bt, I), dtype=np.float32)
    sl = np.array([T, max(1, T - 2), 1][:Bt], np.int32)
    inits = [numpy_helper.from_array(sl, "seq_lens")]
    nodes, outs, refs = [], [], []
    for k, (op, direction, H, attrs, use_sl, use_h0, use_p) in enumerate(RNN_CASES):
        D = 2 if direction == "bidirectional" else 1
        G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
        W = (rng.standard_normal((D, G * H, I)) * 0.6).astype(np.float32)
        R = (rng.standard_normal((D, G * H, H)) * 0.6).astype(np.float32)
        B = (rng.standard_normal((D, 2 * G * H)) * 0.3).astype(np.float32)
        h0 = rng.standard_normal((D, Bt, H)).astype(np.float32) if use_h0 else None
        c0 = rng.standard_normal((D, Bt, H)).astype(np.float32) if use_h0 and op == "LSTM" else None
        P = (rng.standard_normal((D, 3 * H)) * 0.5).astype(np.float32) if use_p else None
        names = {}
        for nm, arr in (("W", W), ("R", R), ("B", B), ("h0", h0), ("c0", c0), ("P", P)):
            if arr is not None:
                if layout and nm in ("h0", "c0"):
                    arr = np.ascontiguousarray(arr.transpose(1, 0, 2))
                names[nm] = "%s%d_%s" % (op.lower(), k, nm)
                inits.append(numpy_helper.from_array(arr, names[nm]))
        ins = ["x", names["W"], names["R"], names["B"], "seq_lens" if use_sl else "",
               names.get("h0", "")]
        if op == "LSTM":
            ins += [names.get("c0", ""), names.get("P", "")]
        o = ["%s%d_Y" % (op.lower(), k), "%s%d_Yh" % (op.lower(), k)]
        if op == "LSTM":
            o.append("%s%d_Yc" % (op.lower(), k))
        while ins and ins[-1] == "":
            ins.pop()
        kw = dict(attrs, direction=direction, hidden_size=H)
        if layout:
            kw["layout"] = 1
        nodes.append(helper.make_node(op, ins, o, name="%s%d" % (op.lower(), k), **kw))
        Y, Yh, Yc = np_rnn(op, x, W, R, B, sl if use_sl else None, h0, c0, P, H, direction,
                           attrs.get("clip", 0), attrs.get("linear_before_reset", 0),
                           attrs.get("input_forget", 0), layout)
        if layout:
            Y, Yh, Yc = Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
        res = [Y, Yh] + ([Yc] if op == "LSTM" else [])
        for name, arr in zip(o, res):
            outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
            refs.append(np.ascontiguousarray(arr))
    xs = [Bt, T, I] if layout else [T, Bt, I]
    g = helper.make_graph(nodes, "rnn_attrs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                          outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 7
    x_in = np.ascontiguousarray(x.transpose(1, 0, 2)) if layout else x
    return m, {"x": x_in}, [o.name for o in outs], refs


def pivot_prune_gru(gru, n, gen):
    """Block-diagonal W and R after one hidden-unit and one input-feature
    permutation shared by the three gates (tools/pivot_train/rnn.py)."""
    H, I = gru.hidden_size, gru.input_size
    hg = torch.randperm(H, generator=gen) % n
    ig = torch.randperm(I, generator=gen) % n
    rows = hg.repeat(3)
    with torch.no_grad():
        gru.weight_ih_l0.mul_((rows[:, None] == ig[None, :]).float() * n ** 0.5)
        gru.weight_hh_l0.mul_((rows[:, None] == hg[None, :]).float() * n ** 0.5)


def pivot_prune(model, n, min_channels, gen):
    """Prune weights to the pivoted pattern: after a random row and column
    permutation, n balanced diagonal blocks; zeros stay stored in the file.

    Linear layers and convolutions (by channel: [Cout, Cin] blocks, every
    kernel tap alike) whose output and input counts are both >= min_channels.
    Groups differ by at most one row or column where the counts do not
    divide by n. Kept weights are scaled by sqrt(n) to keep activations O(1).
    """
    for m in model.modules():
        if isinstance(m, nn.Linear):
            cout, cin = m.weight.shape
        elif isinstance(m, nn.Conv2d) and m.groups == 1:
            cout, cin = m.weight.shape[:2]
        else:
            continue
        if min(cout, cin) < min_channels:
            continue
        rows = torch.randperm(cout, generator=gen).numpy()
        cols = torch.randperm(cin, generator=gen).numpy()
        mask = torch.zeros(cout, cin)
        for r, c in zip(np.array_split(rows, n), np.array_split(cols, n)):
            mask[np.ix_(r, c)] = 1.0
        shape = [cout, cin] + [1] * (m.weight.dim() - 2)
        m.weight.data.mul_(mask.view(shape) * n ** 0.5)


def build_mlp(gen):
    return MLP()


def build_cnn(gen):
    m = SmallCNN()
    randomize_bn(m, gen)
    return m


def build_resnet18(gen):
    import torchvision
    m = torchvision.models.resnet18(weights=None)
    randomize_bn(m, gen)
    return m


def build_mobilenet_v2(gen):
    import torchvision
    m = torchvision.models.mobilenet_v2(weights=None)
    randomize_bn(m, gen)
    return m


def build_mlp_p8(gen):
    m = MLP()
    pivot_prune(m, 8, 512, gen)
    return m


def build_gru(gen):
    return GRUNet()


def build_rnn_zoo(gen):
    return RNNZoo()


def build_gru_p4(gen):
    m = GRUNet()
    pivot_prune_gru(m.gru, 4, gen)
    return m


def build_yolov3_tiny_p4(gen):
    m = build_yolov3_tiny(gen)
    pivot_prune(m, 4, 128, gen)
    return m


def build_yolov3_tiny(gen):
    m = Darknet(DARKNET_CFG)
    # Keep activations O(1) through the 13 layers so the relative error
    # measures arithmetic, not denormals.
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, a=0.1, nonlinearity="leaky_relu")
            if mod.bias is not None:
                nn.init.normal_(mod.bias, 0.0, 0.1)
    randomize_bn(m, gen)
    return m


class OpZoo(nn.Module):
    """The elementwise, reduction, index and layout ops of ops_ext.c, one
    output per family so a failure names the op."""

    def __init__(self):
        super().__init__()
        self.prelu = nn.PReLU(8)
        nn.init.uniform_(self.prelu.weight, -0.5, 0.5)
        self.ct1 = nn.ConvTranspose1d(8, 4, 3, stride=2, padding=1, output_padding=1,
                                      dilation=2)
        self.ct2 = nn.ConvTranspose2d(8, 6, (3, 2), stride=(2, 3), padding=(1, 0),
                                      output_padding=(1, 2), groups=2)

    def forward(self, x):  # x [2, 8, 6, 6]
        act = (F.hardsigmoid(x) + F.hardswish(x) + self.prelu(x) + F.elu(x, 0.7)
               + F.selu(x) + F.celu(x, 1.3) + F.softplus(x) + F.softsign(x))
        trig = torch.sin(x) * torch.cos(2 * x) + torch.sign(x - 0.1)
        y = x.flip(3)
        minmax = torch.minimum(x, y) - 2 * torch.maximum(x, y[:, :1]) + (x + y) / 2
        cmp = ((x <= y).float() + 2 * (x >= 0.3).float()
               + 4 * torch.logical_xor(x > 0, y > 0).float()
               + 8 * torch.logical_and(x > 0, y < 0).float()
               + 16 * torch.logical_or(x > 1, y < -1).float())
        mod = torch.fmod(x * 3, 0.7)
        red = torch.cat([x.amax(dim=(2, 3)), x.amin(dim=1).flatten(1),
                         (x * 0.5 + 1).prod(dim=3).flatten(1),
                         x.norm(p=1, dim=2).flatten(1), x.norm(p=2, dim=(1, 3)),
                         torch.logsumexp(x, dim=1).flatten(1)], 1)
        amax = torch.argmax(x, dim=1, keepdim=True)
        amin = torch.argmin(x.flatten(2), dim=2)
        tile = x[:, :2].repeat(1, 2, 3, 1)
        topv, topi = torch.topk(x.flatten(1), 7)
        botv, boti = torch.topk(x.flatten(1), 5, largest=False)
        idx = (torch.arange(2 * 8 * 6 * 6).reshape(2, 8, 6, 6) * 7) % 6
        gath = torch.gather(x, 3, idx[..., :4])
        cs = torch.cumsum(x, dim=2) + torch.cumsum(x.flip(1), dim=1)
        d2s = F.pixel_shuffle(x, 2)
        s2d = F.pixel_unshuffle(x, 2)
        inorm = F.instance_norm(x, weight=torch.linspace(0.5, 1.5, 8),
                                bias=torch.linspace(-1, 1, 8))
        ct1 = self.ct1(x.flatten(2))
        ct2 = self.ct2(x)
        ein = torch.cat([torch.einsum("nchw,ndhw->ncd", x, x.flip(1)).flatten(1),
                         torch.einsum("...ij,...jk->...ik", x, x).flatten(1),
                         torch.einsum("ncii->nc", x)], 1)
        return (act, trig, minmax, cmp, mod, red, amax, amin, tile, topv, topi,
                botv, boti, gath, cs, d2s, s2d, inorm, ct1, ct2, ein)


OPZOO_OUTPUTS = ["act", "trig", "minmax", "cmp", "mod", "red", "argmax", "argmin",
                 "tile", "topv", "topi", "botv", "boti", "gather", "cumsum",
                 "d2s", "s2d", "inorm", "convt1d", "convt2d", "einsum"]


class ScatterZoo(nn.Module):
    """Index assignment exports ScatterND."""

    def forward(self, x):  # x [2, 8, 6, 6]
        y = x.clone()
        y[:, 2:5] = x[:, :3] * 2
        y[1, :, 3] = -x[0, :, 1]
        return y


class SegNet(nn.Module):
    """A small encoder-decoder: strided convs down, ConvTranspose and
    bilinear / bicubic Resize back up."""

    def __init__(self):
        super().__init__()
        self.down1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1,
                                      groups=2)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Conv2d(8 + 16 + 16 + 32, 5, 1)

    def forward(self, x):  # x [1, 3, 48, 64]
        a = F.relu(self.down1(x))
        b = F.relu(self.down2(a))
        u = F.relu(self.bn(self.up1(b)))
        u = F.relu(self.up2(u + a))
        h, w = x.shape[2], x.shape[3]
        s1 = F.interpolate(a, scale_factor=2.0, mode="bilinear", align_corners=False)
        s2 = F.interpolate(a, size=(h, w), mode="bilinear", align_corners=True)
        s3 = F.interpolate(b, size=(h, w), mode="bicubic", align_corners=False)
        return self.head(torch.cat([u, s1, s2, s3], 1))


def build_opzoo(gen):
    return OpZoo()


def build_scatter(gen):
    return ScatterZoo()


def build_segnet(gen):
    m = SegNet()
    randomize_bn(m, gen)
    return m


def build_transformer(gen):
    # dropout 0 and eval: the exported graph is the inference one.
    # Sequence-first (batch_first=False) keeps torch 1.13 off its fused
    # attention fast path, which it cannot export.
    return nn.Sequential(
        nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128,
                                   dropout=0.0, activation="gelu"),
        nn.LayerNorm(64))


def torchvision_builder(name):
    def build(gen):
        import torchvision
        m = getattr(torchvision.models, name)(weights=None)
        randomize_bn(m, gen)
        return m
    return build


# ---------------------------------------------------------------- hand-built graphs
# Ops and attributes PyTorch never exports, written with onnx.helper. Their
# cross-check of the ONNX Runtime reference is numpy, written here from the
# ONNX operator spec (the "torch" folder holds it).

def _np_resize_linear_asym(x, scales):
    """Linear resize, asymmetric coordinates, one axis at a time."""
    for a, s in enumerate(scales):
        if s == 1:
            continue
        n_in = x.shape[a]
        n_out = int(np.float32(s) * np.float32(n_in))
        c = np.clip(np.arange(n_out, dtype=np.float64) / s, 0, n_in - 1)
        i0 = np.floor(c).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = (c - i0).reshape([-1 if k == a else 1 for k in range(x.ndim)])
        x = np.take(x, i0, axis=a) * (1 - w) + np.take(x, i1, axis=a) * w
    return x.astype(np.float32)


def _np_convt_same_upper(x, w, stride, out_hw):
    """ConvTranspose with output_shape (ONNX: total padding
    stride*(in-1) + ek - out, SAME_UPPER puts the odd one at the end)."""
    N, C, H, W = x.shape
    M, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    full = np.zeros([N, M, stride[0] * (H - 1) + kh, stride[1] * (W - 1) + kw])
    for i in range(H):
        for j in range(W):
            full[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw] += \
                np.einsum("nc,cmij->nmij", x[:, :, i, j], w)
    y = np.zeros([N, M] + list(out_hw))
    for a in range(2):
        tot = max(0, full.shape[2 + a] - out_hw[a])
        pb = tot // 2
        sl = [slice(None)] * 4
        sl[2 + a] = slice(pb, pb + out_hw[a])
        full = full[tuple(sl)]
    y[:, :, :full.shape[2], :full.shape[3]] = full
    return y.astype(np.float32)


def _outputs():
    """(outs, ref, out) for a hand-built graph: out(name, elem type, array)
    declares a graph output and records its reference value."""
    from onnx import helper as oh
    outs, ref = [], []

    def out(name, elem, arr):
        outs.append(oh.make_tensor_value_info(name, elem, list(arr.shape)))
        ref.append(arr)
    return outs, ref, out


def build_onnx_zoo(rng):
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.standard_normal([2, 4, 6, 6], dtype=np.float32)
    y = rng.standard_normal([4, 1, 6], dtype=np.float32)
    wt = (rng.standard_normal([4, 3, 3, 3]) * 0.3).astype(np.float32)
    div = np.array([3, -4, 5, -2, 7, 6], dtype=np.int64)
    nodes, (outs, ref, out) = [], _outputs()
    N = oh.make_node
    nodes += [N("ThresholdedRelu", ["x"], ["thr"], alpha=0.3),
              N("Softsign", ["x"], ["ss"]),
              N("Shrink", ["x"], ["shr"], lambd=0.4, bias=0.1),
              N("Sum", ["thr", "ss", "shr"], ["act"])]
    out("act", TP.FLOAT, np.where(x > 0.3, x, 0) + x / (1 + np.abs(x))
        + np.where(x < -0.4, x + 0.1, np.where(x > 0.4, x - 0.1, 0)))
    # The rest of the unary math, each on inputs inside its domain.
    nodes += [N("Mul", ["x", "half"], ["xh"]), N("Tan", ["xh"], ["tan"]),
              N("Atan", ["x"], ["atan"]), N("Asinh", ["x"], ["asinh"]),
              N("Sinh", ["x"], ["sinh"]), N("Cosh", ["x"], ["cosh"]),
              N("Mul", ["x", "two"], ["x2r"]), N("Round", ["x2r"], ["round"]),
              N("Tanh", ["x"], ["t"]), N("Asin", ["t"], ["asin"]), N("Acos", ["t"], ["acos"]),
              N("Mul", ["t", "nine"], ["t9"]), N("Atanh", ["t9"], ["atanh"]),
              N("Abs", ["x"], ["axm"]), N("Add", ["axm", "one"], ["ax1"]),
              N("Acosh", ["ax1"], ["acosh"]),
              N("Sum", ["tan", "atan", "asinh", "sinh", "cosh", "round", "asin", "acos",
                        "atanh", "acosh"], ["math"])]
    t = np.tanh(x.astype(np.float64))
    math = (np.tan(x * 0.5) + np.arctan(x) + np.arcsinh(x) + np.sinh(x) + np.cosh(x)
            + np.round(x * np.float32(2)) + np.arcsin(t) + np.arccos(t) + np.arctanh(t * 0.9)
            + np.arccosh(1 + np.abs(x)))
    out("math", TP.FLOAT, math.astype(np.float32))
    nodes += [N("Mean", ["x", "y"], ["mean"]), N("Max", ["x", "y", "thr"], ["max3"])]
    out("mean", TP.FLOAT, (x + y) / 2)
    out("max3", TP.FLOAT, np.maximum(np.maximum(x, y), np.where(x > 0.3, x, 0)))
    nodes += [N("ReduceSumSquare", ["x"], ["rss"], axes=[1, 3], keepdims=0),
              N("Abs", ["x"], ["ax"]),
              N("ReduceLogSum", ["ax"], ["rls"], axes=[2])]
    out("rss", TP.FLOAT, (x.astype(np.float64) ** 2).sum(axis=(1, 3)).astype(np.float32))
    out("rls", TP.FLOAT, np.log(np.abs(x).astype(np.float64).sum(axis=2, keepdims=True)).astype(np.float32))
    nodes += [N("SpaceToDepth", ["x"], ["s2d"], blocksize=2),
              N("DepthToSpace", ["x"], ["d2s"], blocksize=2, mode="DCR")]
    b = 2
    n_, c_, h_, w_ = x.shape
    s2d = x.reshape(n_, c_, h_ // b, b, w_ // b, b).transpose(0, 3, 5, 1, 2, 4).reshape(n_, c_ * 4, h_ // b, w_ // b)
    d2s = x.reshape(n_, b, b, c_ // 4, h_, w_).transpose(0, 3, 4, 1, 5, 2).reshape(n_, c_ // 4, h_ * b, w_ * b)
    out("s2d", TP.FLOAT, s2d)
    out("d2s", TP.FLOAT, d2s)
    # Integer Mod with the divisor's sign (fmod=0) on truncated x*10.
    nodes += [N("Mul", ["x", "ten"], ["x10"]), N("Cast", ["x10"], ["xi"], to=TP.INT64),
              N("Mod", ["xi", "div"], ["imod"])]
    xi = np.trunc(x * np.float32(10)).astype(np.int64)
    out("imod", TP.INT64, np.mod(xi, div))
    # Ties: floor(2x) has many; ONNX Runtime takes the lower index first.
    nodes += [N("Mul", ["x", "two"], ["x2"]), N("Floor", ["x2"], ["fl"]),
              N("Reshape", ["fl", "flat"], ["fl2"]),
              N("TopK", ["fl2", "k"], ["tv", "ti"], axis=1, largest=1, sorted=1),
              N("ArgMax", ["fl"], ["amaxl"], axis=3, keepdims=0, select_last_index=1),
              N("ArgMin", ["fl"], ["aminl"], axis=1, keepdims=1, select_last_index=1)]
    fl = np.floor(x * 2).reshape(2, -1)
    order = np.argsort(-fl, axis=1, kind="stable")[:, :9]
    out("tv", TP.FLOAT, np.take_along_axis(fl, order, 1).astype(np.float32))
    out("ti", TP.INT64, order.astype(np.int64))
    f4 = np.floor(x * 2)
    out("amaxl", TP.INT64, (5 - np.argmax(f4[..., ::-1], axis=3)).astype(np.int64))
    out("aminl", TP.INT64, (3 - np.argmin(f4[:, ::-1], axis=1))[:, None].astype(np.int64))
    nodes += [N("CumSum", ["x", "ax3"], ["cs"], exclusive=1, reverse=1)]
    cs = np.flip(np.cumsum(np.flip(x, 3), axis=3), 3) - x
    out("cs", TP.FLOAT, cs.astype(np.float32))
    nodes += [N("Resize", ["x", "", "scales"], ["rz"], mode="linear",
                coordinate_transformation_mode="asymmetric")]
    out("rz", TP.FLOAT, _np_resize_linear_asym(x, [1, 1, 2.0, 1.5]))
    nodes += [N("ConvTranspose", ["x", "wt"], ["ct"], strides=[2, 2],
                output_shape=[12, 11], auto_pad="SAME_UPPER")]
    out("ct", TP.FLOAT, _np_convt_same_upper(x, wt, (2, 2), (12, 11)))
    nodes += [N("LayerNormalization", ["x", "lns", "lnb"], ["ln", "lnm", "lni"], axis=2,
                epsilon=1e-3)]
    lns = np.linspace(0.5, 1.5, 36, dtype=np.float32).reshape(6, 6)
    lnb = np.linspace(-1, 1, 6, dtype=np.float32)
    xd = x.astype(np.float64).reshape(2, 4, 36)
    mu = xd.mean(axis=2, keepdims=True)
    var = xd.var(axis=2, keepdims=True)
    ln = ((xd - mu) / np.sqrt(var + 1e-3)).reshape(x.shape) * lns + lnb
    out("ln", TP.FLOAT, ln.astype(np.float32))
    out("lnm", TP.FLOAT, mu.reshape(2, 4, 1, 1).astype(np.float32))
    out("lni", TP.FLOAT, (1 / np.sqrt(var + 1e-3)).reshape(2, 4, 1, 1).astype(np.float32))
    inits = [nh.from_array(np.array(10, np.float32), "ten"), nh.from_array(div, "div"),
             nh.from_array(np.array(2, np.float32), "two"),
             nh.from_array(np.array(0.5, np.float32), "half"),
             nh.from_array(np.array(0.9, np.float32), "nine"),
             nh.from_array(np.array(1, np.float32), "one"),
             nh.from_array(np.array([2, -1], np.int64), "flat"),
             nh.from_array(np.array([9], np.int64), "k"),
             nh.from_array(np.array(3, np.int64), "ax3"),
             nh.from_array(np.array([1, 1, 2.0, 1.5], np.float32), "scales"),
             nh.from_array(wt, "wt"), nh.from_array(lns, "lns"), nh.from_array(lnb, "lnb")]
    g = oh.make_graph(nodes, "onnx_zoo",
                      [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape)),
                       oh.make_tensor_value_info("y", TP.FLOAT, list(y.shape))],
                      outs, inits)
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    return m, {"x": x, "y": y}, [o.name for o in outs], ref


def _np_conv3x3(x, w):
    """3 x 3 convolution with pads 1 and stride 1, in float64."""
    n, _, h, wd = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros([n, w.shape[0], h, wd])
    for i in range(3):
        for j in range(3):
            y += np.einsum("oc,nchw->nohw", w[:, :, i, j].astype(np.float64),
                           xp[:, :, i:i + h, j:j + wd])
    return y


def _helper_model(name, nodes, inputs, outs, inits, opset, ir):
    """A model of onnx.helper parts: inputs as {name: (elem type, array)}."""
    from onnx import helper as oh
    g = oh.make_graph(nodes, name, [oh.make_tensor_value_info(k, t, list(a.shape))
                                    for k, (t, a) in inputs.items()], outs, inits)
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def _np_linear_axis(x, axis, coord):
    """Linear interpolation of x along axis at float coordinates (clamped
    into the input, as ONNX Runtime's linear Resize does)."""
    n = x.shape[axis]
    c = np.clip(coord.astype(np.float64), 0, n - 1)
    i1 = np.minimum(np.floor(c).astype(np.int64), n - 1)
    i2 = np.minimum(i1 + 1, n - 1)
    w = (c - i1).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, i1, axis) * (1 - w) + np.take(x, i2, axis) * w


def build_onnx_o24(rng):
    """Opset 24 (ONNX 1.19): the new ops pivotd runs, RMSNormalization (23)
    and Swish (24), QuantizeLinear's precision (23), and ops whose 23 / 24
    versions only added types (Cast, Flatten, Pad, Reshape, Squeeze,
    Transpose, Unsqueeze), with numpy references."""
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.standard_normal([2, 4, 3, 5], dtype=np.float32)
    x64 = x.astype(np.float64)
    s5 = np.linspace(0.5, 1.5, 5, dtype=np.float32)
    s4 = np.linspace(2, -1, 4, dtype=np.float32).reshape(4, 1, 1)
    w1 = (rng.standard_normal([3, 4, 1, 1]) * 0.5).astype(np.float32)
    nodes, (outs, ref, out) = [], _outputs()
    N = oh.make_node
    nodes += [N("RMSNormalization", ["x", "s5"], ["rms"]),
              N("RMSNormalization", ["x", "s4"], ["rms1"], axis=1, epsilon=0.1)]
    out("rms", TP.FLOAT, (x64 / np.sqrt((x64 ** 2).mean(axis=3, keepdims=True) + 1e-5)
                          * s5).astype(np.float32))
    out("rms1", TP.FLOAT, (x64 / np.sqrt((x64 ** 2).mean(axis=(1, 2, 3), keepdims=True) + 0.1)
                           * s4).astype(np.float32))
    nodes += [N("Swish", ["x"], ["sw"]), N("Swish", ["x"], ["sw7"], alpha=0.7)]
    out("sw", TP.FLOAT, (x64 / (1 + np.exp(-x64))).astype(np.float32))
    out("sw7", TP.FLOAT, (x64 / (1 + np.exp(-0.7 * x64))).astype(np.float32))
    # Q -> DQ of an activation, the division at FLOAT precision (23)
    nodes += [N("QuantizeLinear", ["x", "qs", "qz"], ["q"], precision=1),
              N("DequantizeLinear", ["q", "qs", "qz"], ["qdq"])]
    q = np.clip(np.rint(x / np.float32(0.05)) + 128, 0, 255)
    out("qdq", TP.FLOAT, ((q - 128) * np.float32(0.05)).astype(np.float32))
    # shape ops at their 23 / 24 versions
    nodes += [N("Flatten", ["sw"], ["fl"], axis=2),
              N("Transpose", ["x"], ["tr"], perm=[0, 2, 1, 3]),
              N("Unsqueeze", ["x", "ax0"], ["us"]),
              N("Squeeze", ["us", "ax0"], ["sq"]),
              N("Pad", ["x", "pads", "pval"], ["pd"]),
              N("Reshape", ["x", "shp"], ["rs"]),
              N("Mul", ["x", "three"], ["x3"]), N("Cast", ["x3"], ["ca"], to=TP.INT64),
              N("Conv", ["rms", "w1"], ["cv"]), N("Relu", ["cv"], ["cr"])]
    sw = x64 / (1 + np.exp(-x64))
    out("fl", TP.FLOAT, sw.reshape(8, 15).astype(np.float32))
    out("tr", TP.FLOAT, x.transpose(0, 2, 1, 3))
    out("sq", TP.FLOAT, x)
    out("pd", TP.FLOAT, np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 2)), constant_values=-0.5))
    out("rs", TP.FLOAT, x.reshape(2, 60))
    out("ca", TP.INT64, np.trunc(x * np.float32(3)).astype(np.int64))
    rms = x64 / np.sqrt((x64 ** 2).mean(axis=3, keepdims=True) + 1e-5) * s5
    cv = np.einsum("oc,nchw->nohw", w1[:, :, 0, 0].astype(np.float64), rms)
    out("cr", TP.FLOAT, np.maximum(cv, 0).astype(np.float32))
    inits = [nh.from_array(s5, "s5"), nh.from_array(s4, "s4"),
             nh.from_array(np.array(0.05, np.float32), "qs"),
             nh.from_array(np.array(128, np.uint8), "qz"),
             nh.from_array(np.array([0], np.int64), "ax0"),
             nh.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64), "pads"),
             nh.from_array(np.array(-0.5, np.float32), "pval"),
             nh.from_array(np.array([2, 60], np.int64), "shp"),
             nh.from_array(np.array(3, np.float32), "three"),
             nh.from_array(w1, "w1")]
    m = _helper_model("onnx_o24", nodes, {"x": (TP.FLOAT, x)}, outs, inits, 24, 12)
    return m, {"x": x}, [o.name for o in outs], ref


def _pb_field(num, payload):
    """A length-delimited protobuf field: appended to a message's bytes, it
    sets fields Debian's onnx 1.12 does not know (kept as unknown fields)."""
    def varint(v):
        out = b""
        while True:
            out += bytes([(v & 0x7f) | (0x80 if v > 0x7f else 0)])
            v >>= 7
            if not v:
                return out
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def build_onnx_fn(rng, overloads=False):
    """Model-local functions (ModelProto.functions): a function calling a
    function, attributes given by the caller (`ref_attr_name`) or left to
    the function's default (`attribute_proto`, IR 9), calls that omit an
    optional input or leave an output unused, two calls of one function
    (names inside must not collide), with numpy references; with
    `overloads`, two overloads of one function name (IR 10) pick the
    activation. onnx 1.12 knows neither attribute_proto nor overload: they
    are appended as raw fields, and its checker is skipped."""
    import onnx
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.standard_normal([2, 3, 4], dtype=np.float32)
    w = rng.standard_normal([4, 4], dtype=np.float32) * 0.5
    N = oh.make_node
    D = "local.fn"

    def ref_attr(name, ref, t):
        a = onnx.AttributeProto()
        a.name, a.ref_attr_name, a.type = name, ref, t
        return a
    # Scaled(x, lo) -> (y, dead): y = LeakyRelu(Clip(x * s, lo), alpha);
    # s from the caller, alpha 0.3 by default; lo optional.
    sconst = N("Constant", [], ["sv"])
    sconst.attribute.append(ref_attr("value_float", "s", onnx.AttributeProto.FLOAT))
    lrelu = N("LeakyRelu", ["t"], ["y"])
    lrelu.attribute.append(ref_attr("alpha", "alpha", onnx.AttributeProto.FLOAT))
    scaled = oh.make_function(D, "Scaled", ["x", "lo"], ["y", "dead"],
                              [sconst, N("Mul", ["x", "sv"], ["xs"]),
                               N("Clip", ["xs", "lo"], ["t"]), lrelu,
                               N("Neg", ["y"], ["dead"])],
                              [oh.make_opsetid("", 17)], ["s"])
    scaled = onnx.FunctionProto.FromString(
        scaled.SerializeToString() +
        _pb_field(11, oh.make_attribute("alpha", 0.3).SerializeToString()))

    def act(op, ov):
        """Act[ov] (one name, two overloads) or Act_ov (two names)."""
        fn = oh.make_function(D, "Act" if overloads else "Act_" + ov, ["x"], ["y"],
                              [N(op, ["x"], ["y"])], [oh.make_opsetid("", 17)], [])
        if overloads:
            fn = onnx.FunctionProto.FromString(fn.SerializeToString() +
                                               _pb_field(13, ov.encode()))
        return fn
    act_t, act_s = act("Tanh", "tanh"), act("Sigmoid", "sig")

    def call(node, ov):
        if not overloads:
            node.op_type = "Act_" + ov
            return node
        return onnx.NodeProto.FromString(node.SerializeToString() + _pb_field(8, ov.encode()))
    # Block(x, w, lo) -> y = Scaled(x @ w, lo; s=2) + Act[ov](Scaled(x; s=0.5, alpha=0.1))
    def block(ov):
        return oh.make_function(D, "Block_" + ov, ["x", "w", "lo"], ["y"],
                                [N("MatMul", ["x", "w"], ["h"]),
                                 N("Scaled", ["h", "lo"], ["a", "d1"], domain=D, s=2.0),
                                 N("Scaled", ["x"], ["c", "u"], domain=D, s=0.5, alpha=0.1),
                                 call(N("Act", ["c"], ["ca"], domain=D), ov),
                                 N("Add", ["a", "ca"], ["y"])],
                                [oh.make_opsetid("", 17), oh.make_opsetid(D, 1)], [])
    nodes = [N("Block_tanh", ["x", "w", "lo"], ["y1"], domain=D, name="b1"),
             N("Block_sig", ["y1", "w"], ["y2"], domain=D, name="b2")]

    def np_block(v, lo, f):
        lr = lambda t, a: np.where(t >= 0, t, a * t)
        v = v.astype(np.float64)
        h = v @ w.astype(np.float64) * 2
        if lo is not None:
            h = np.maximum(h, lo)
        return lr(h, 0.3) + f(lr(v * 0.5, 0.1))
    y1 = np_block(x, -0.25, np.tanh).astype(np.float32)
    y2 = np_block(y1, None, lambda t: 1 / (1 + np.exp(-t))).astype(np.float32)
    outs, ref, out = _outputs()
    out("y1", TP.FLOAT, y1)
    out("y2", TP.FLOAT, y2)
    g = oh.make_graph(nodes, "onnx_fn", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      outs, [nh.from_array(w, "w"), nh.from_array(np.array(-0.25, np.float32), "lo")])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid(D, 1)],
                      functions=[scaled, act_t, act_s, block("tanh"), block("sig")])
    m.ir_version = 10 if overloads else 9
    return m, {"x": x}, [o.name for o in outs], ref


class _FnBlock(torch.nn.Module):
    def __init__(self, ci, co, slope):
        super().__init__()
        self.conv = torch.nn.Conv2d(ci, co, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(co)
        self.slope = slope

    def forward(self, x):
        return torch.nn.functional.leaky_relu(self.bn(self.conv(x)), self.slope)


class _FnStage(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = _FnBlock(c, c, 0.1)
        self.b = _FnBlock(c, c, 0.2)

    def forward(self, x):
        return self.b(self.a(x)) + x


def build_fn_modules(gen):
    """torch.onnx.export with export_modules_as_functions: each Stage and
    Block a model-local function (Stage calling Block), LeakyRelu's slope a
    function attribute."""
    m = torch.nn.Sequential(_FnBlock(3, 8, 0.05), _FnStage(8), _FnStage(8),
                            torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 10))
    randomize_bn(m, gen)
    return m


def _np_attention(Q, K, V, mask=None, past_k=None, past_v=None, scale=None,
                  causal=False, qh=None, kvh=None, softcap=0.0):
    """ONNX Attention (opset 23) in float64, as onnx.reference computes it."""
    f = lambda a: None if a is None else a.astype(np.float64)
    Q, K, V, past_k, past_v = f(Q), f(K), f(V), f(past_k), f(past_v)
    three = Q.ndim == 3
    if three:
        B = Q.shape[0]
        split = lambda x, h: x.reshape(B, x.shape[1], h, -1).transpose(0, 2, 1, 3)
        Q, K, V = split(Q, qh), split(K, kvh), split(V, kvh)
    if scale is None:
        scale = 1 / np.sqrt(Q.shape[3])
    if past_k is not None:
        K, V = np.concatenate([past_k, K], 2), np.concatenate([past_v, V], 2)
    pk, pv = K.copy(), V.copy()
    rep = Q.shape[1] // K.shape[1]
    K, V = np.repeat(K, rep, 1), np.repeat(V, rep, 1)
    s = Q @ K.transpose(0, 1, 3, 2) * scale
    if softcap > 0:
        s = softcap * np.tanh(s / softcap)
    if mask is not None:
        s = s + (np.where(mask, 0, -np.inf) if mask.dtype == np.bool_ else mask)
    if causal:
        sq, t = s.shape[-2:]
        past = t - sq
        s = s + np.where(np.arange(t)[None, :] > np.arange(sq)[:, None] + past, -np.inf, 0)
    s = np.exp(s - s.max(-1, keepdims=True))
    y = (s / s.sum(-1, keepdims=True)) @ V
    if three:
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    return y, pk, pv


def _np_rope(x, cos, sin, pid=None, interleaved=False, dim=0, heads=0):
    """ONNX RotaryEmbedding (opset 23) as onnx.reference computes it."""
    x = x.astype(np.float64)
    shape = x.shape
    x = x.transpose(0, 2, 1, 3) if x.ndim == 4 else x.reshape(shape[0], shape[1], heads, -1)
    d = x.shape[3]
    dim = dim or d
    if pid is not None:
        cos, sin = cos[pid], sin[pid]
    cos, sin = cos[:, :, None, :].astype(np.float64), sin[:, :, None, :].astype(np.float64)
    rot = x[..., :dim]
    x1, x2 = (rot[..., 0::2], rot[..., 1::2]) if interleaved else np.split(rot, 2, -1)
    re, im = cos * x1 - sin * x2, sin * x1 + cos * x2
    rot = np.stack([re, im], -1).reshape(rot.shape) if interleaved else np.concatenate([re, im], -1)
    y = np.concatenate([rot, x[..., dim:]], -1)
    return y.reshape(shape) if len(shape) == 3 else y.transpose(0, 2, 1, 3)


def build_onnx_attn(rng):
    """Attention (opset 23): 4-D multi-head with a different value head
    size; 3-D grouped-query heads with a bool mask; 4-D with a KV cache
    (past in, present out), is_causal, a float mask, scale and softcap;
    RotaryEmbedding (23) 4-D by halves and 3-D interleaved and partial at
    position_ids; numpy references."""
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    r = lambda *s: rng.standard_normal(s, dtype=np.float32)
    q1, k1, v1 = r(2, 3, 4, 8), r(2, 3, 6, 8), r(2, 3, 6, 5)
    q2, k2, v2 = r(2, 5, 4 * 6), r(2, 7, 2 * 6), r(2, 7, 2 * 3)
    m2 = rng.random((5, 7)) > 0.3
    m2[:, 0] = True                    # every query sees at least one key
    q3, k3, v3 = r(1, 4, 3, 8), r(1, 2, 3, 8), r(1, 2, 3, 8)
    pk3, pv3 = r(1, 2, 5, 8), r(1, 2, 5, 8)
    m3 = r(1, 1, 3, 8) * 0.5
    N = oh.make_node
    nodes = [N("Attention", ["q1", "k1", "v1"], ["y1"]),
             N("Attention", ["q2", "k2", "v2", "m2"], ["y2"], q_num_heads=4, kv_num_heads=2),
             N("Attention", ["q3", "k3", "v3", "m3", "pk3", "pv3"], ["y3", "prk", "prv"],
               is_causal=1, scale=0.2, softcap=3.0)]
    # RotaryEmbedding: 4-D, halves, full head; 3-D interleaved, partial
    # (rotary_embedding_dim 4 of 6), angles read at position_ids.
    ang = np.outer(np.arange(16), 1.0 / 100 ** (np.arange(2) / 2))       # [16, 2]
    cos4, sin4 = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    pid = np.array([[3, 0, 7, 15, 1], [2, 2, 9, 4, 11]], np.int64)
    ang1 = rng.random((2, 4, 4)) * 3                                     # [B, S, D/2] of q1
    c1, s1 = np.cos(ang1).astype(np.float32), np.sin(ang1).astype(np.float32)
    nodes += [N("RotaryEmbedding", ["q1", "c1", "s1"], ["r1"]),
              N("RotaryEmbedding", ["q2", "cos4", "sin4", "pid"], ["r2"], interleaved=1,
                rotary_embedding_dim=4, num_heads=4)]
    outs, ref, out = _outputs()
    out("y1", TP.FLOAT, _np_attention(q1, k1, v1)[0].astype(np.float32))
    out("r1", TP.FLOAT, _np_rope(q1, c1, s1).astype(np.float32))
    out("r2", TP.FLOAT, _np_rope(q2, cos4, sin4, pid, True, 4, 4).astype(np.float32))
    out("y2", TP.FLOAT, _np_attention(q2, k2, v2, m2, qh=4, kvh=2)[0].astype(np.float32))
    y3, prk, prv = _np_attention(q3, k3, v3, m3, pk3, pv3, scale=0.2, causal=True, softcap=3.0)
    out("y3", TP.FLOAT, y3.astype(np.float32))
    out("prk", TP.FLOAT, prk.astype(np.float32))
    out("prv", TP.FLOAT, prv.astype(np.float32))
    ins = {"q1": q1, "k1": k1, "v1": v1, "q2": q2, "k2": k2, "v2": v2,
           "q3": q3, "k3": k3, "v3": v3}
    inits = [nh.from_array(m2, "m2"), nh.from_array(m3, "m3"),
             nh.from_array(pk3, "pk3"), nh.from_array(pv3, "pv3"),
             nh.from_array(c1, "c1"), nh.from_array(s1, "s1"),
             nh.from_array(cos4, "cos4"), nh.from_array(sin4, "sin4"), nh.from_array(pid, "pid")]
    m = _helper_model("onnx_attn", nodes, {k: (TP.FLOAT, a) for k, a in ins.items()},
                      outs, inits, 23, 11)
    return m, ins, [o.name for o in outs], ref


def build_onnx_o22(rng):
    """Opset 22 (ONNX 1.17): what opsets 18-22 changed in ops pivotd runs,
    with numpy references.  Pad's axes input (18) and wrap mode (19),
    Split's num_outputs (18), Resize's axes and keep_aspect_ratio_policy
    (18) and half_pixel_symmetric (19), AveragePool's dilations (19),
    ScatterND's max / min (18), Reduce* axes as an input (18), Mish (18),
    Gelu (20), GroupNormalization (21's per-channel scale), CastLike (15),
    and a plain Conv + Relu."""
    import math as m_
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.standard_normal([2, 4, 6, 6], dtype=np.float32)
    w1 = (rng.standard_normal([3, 4, 1, 1]) * 0.5).astype(np.float32)
    b1 = rng.standard_normal([3], dtype=np.float32)
    upd = rng.standard_normal([3, 6, 6], dtype=np.float32)
    sidx = np.array([[0, 1], [1, 2], [0, 1]], np.int64)
    nodes, (outs, ref, out) = [], _outputs()
    N = oh.make_node
    x64 = x.astype(np.float64)
    # Pad: reflect on axes [-1, 2] (begin 1 / 2, end 0 / 1), wrap on axis 3
    # alone; Split the reflect-padded width 7 into 3, 3, 1.
    nodes += [N("Pad", ["x", "pads_r", "", "axes_r"], ["pr"], mode="reflect"),
              N("Pad", ["x", "pads_w", "", "axes_w"], ["pw"], mode="wrap"),
              N("Split", ["pr"], ["sp0", "sp1", "sp2"], axis=3, num_outputs=3)]
    pr = np.pad(x, ((0, 0), (0, 0), (2, 1), (1, 0)), mode="reflect")
    out("pr", TP.FLOAT, pr)
    out("pw", TP.FLOAT, np.pad(x, ((0, 0), (0, 0), (0, 0), (2, 3)), mode="wrap"))
    out("sp0", TP.FLOAT, pr[..., 0:3])
    out("sp1", TP.FLOAT, pr[..., 3:6])
    out("sp2", TP.FLOAT, pr[..., 6:7])
    # Resize: linear, half_pixel_symmetric, scales on axes [2, 3] only.
    nodes += [N("Resize", ["x", "", "rs_scales"], ["rs"], mode="linear", axes=[2, 3],
                coordinate_transformation_mode="half_pixel_symmetric")]
    y = x64
    for axis, sc in ((2, np.float32(1.7)), (3, np.float32(1.3))):
        n_in = y.shape[axis]
        on = int(sc * np.float32(n_in))
        adj = on / (float(sc) * n_in)
        coord = n_in / 2 * (1 - adj) + (np.arange(on) + 0.5) / float(sc) - 0.5
        y = _np_linear_axis(y, axis, coord)
    out("rs", TP.FLOAT, y.astype(np.float32))
    # Resize with sizes and one factor for both axes: not_larger on axes
    # [3, 2] (sizes 8 / 10: factor 8/6), not_smaller on [2, 3] (5 / 9:
    # factor 9/6); nearest, asymmetric, floor.
    nodes += [N("Resize", ["x", "", "", "sz_nl"], ["rnl"], mode="nearest", axes=[3, 2],
                keep_aspect_ratio_policy="not_larger",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
              N("Resize", ["x", "", "", "sz_ns"], ["rns"], mode="nearest", axes=[2, 3],
                keep_aspect_ratio_policy="not_smaller",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    for name, f in (("rnl", np.float32(8) / np.float32(6)),
                    ("rns", np.float32(9) / np.float32(6))):
        on = int(np.floor(f * np.float32(6) + np.float32(0.5)))
        idx = np.minimum(np.floor(np.arange(on, dtype=np.float32) / f).astype(np.int64), 5)
        out(name, TP.FLOAT, x[:, :, idx][:, :, :, idx])
    # AveragePool with dilations 2, kernel 2, pads 1, pads not counted.
    nodes += [N("AveragePool", ["x"], ["ap"], kernel_shape=[2, 2], dilations=[2, 2],
                pads=[1, 1, 1, 1])]
    ap = np.zeros([2, 4, 6, 6])
    for oy in range(6):
        for ox in range(6):
            taps = [(oy + 2 * kh - 1, ox + 2 * kw - 1) for kh in range(2) for kw in range(2)]
            taps = [(i, j) for i, j in taps if 0 <= i < 6 and 0 <= j < 6]
            ap[:, :, oy, ox] = sum(x64[:, :, i, j] for i, j in taps) / len(taps)
    out("ap", TP.FLOAT, ap.astype(np.float32))
    # ScatterND max and min, one index repeated.
    nodes += [N("ScatterND", ["x", "sidx", "upd"], ["smax"], reduction="max"),
              N("ScatterND", ["x", "sidx", "upd"], ["smin"], reduction="min")]
    for name, f in (("smax", np.maximum), ("smin", np.minimum)):
        r = x.copy()
        for t in range(3):
            r[tuple(sidx[t])] = f(r[tuple(sidx[t])], upd[t])
        out(name, TP.FLOAT, r)
    # Reductions with axes as an input.
    nodes += [N("ReduceMax", ["x", "ax1"], ["rmax"], keepdims=0),
              N("ReduceMean", ["x", "ax_hw"], ["rmean"], keepdims=1)]
    out("rmax", TP.FLOAT, x.max(axis=1))
    out("rmean", TP.FLOAT, x64.mean(axis=(2, 3), keepdims=True).astype(np.float32))
    # Activations of opsets 18 and 20.
    erf = np.vectorize(m_.erf)
    nodes += [N("Mish", ["x"], ["mish"]), N("Gelu", ["x"], ["gelu"]),
              N("Gelu", ["x"], ["gelut"], approximate="tanh")]
    out("mish", TP.FLOAT, (x64 * np.tanh(np.log1p(np.exp(x64)))).astype(np.float32))
    out("gelu", TP.FLOAT, (0.5 * x64 * (1 + erf(x64 / m_.sqrt(2)))).astype(np.float32))
    gt = 0.5 * x64 * (1 + np.tanh(m_.sqrt(2 / m_.pi) * (x64 + 0.044715 * x64 ** 3)))
    out("gelut", TP.FLOAT, gt.astype(np.float32))
    # GroupNormalization, 2 groups of 2 channels, scale and bias per
    # channel (opset 21's form).
    gsc = np.linspace(0.5, 2, 4, dtype=np.float32)
    gbi = np.linspace(-1, 1, 4, dtype=np.float32)
    nodes += [N("GroupNormalization", ["x", "gsc", "gbi"], ["gn"], num_groups=2, epsilon=1e-3)]
    xg = x64.reshape(2, 2, -1)
    gn = ((xg - xg.mean(axis=2, keepdims=True)) /
          np.sqrt(xg.var(axis=2, keepdims=True) + 1e-3)).reshape(x.shape)
    out("gn", TP.FLOAT, (gn * gsc[None, :, None, None] + gbi[None, :, None, None]).astype(np.float32))
    # CastLike to INT64 (truncation), and a 1x1 Conv + Relu.
    nodes += [N("Mul", ["x", "three"], ["x3"]), N("CastLike", ["x3", "likei"], ["ci"]),
              N("Conv", ["x", "w1", "b1"], ["cv"]), N("Relu", ["cv"], ["cr"])]
    out("ci", TP.INT64, np.trunc(x * np.float32(3)).astype(np.int64))
    cv = np.einsum("oc,nchw->nohw", w1[:, :, 0, 0].astype(np.float64), x64) \
        + b1[None, :, None, None]
    out("cr", TP.FLOAT, np.maximum(cv, 0).astype(np.float32))
    inits = [nh.from_array(np.array([1, 2, 0, 1], np.int64), "pads_r"),
             nh.from_array(np.array([-1, 2], np.int64), "axes_r"),
             nh.from_array(np.array([2, 3], np.int64), "pads_w"),
             nh.from_array(np.array([3], np.int64), "axes_w"),
             nh.from_array(np.array([1.7, 1.3], np.float32), "rs_scales"),
             nh.from_array(np.array([8, 10], np.int64), "sz_nl"),
             nh.from_array(np.array([5, 9], np.int64), "sz_ns"),
             nh.from_array(sidx, "sidx"), nh.from_array(upd, "upd"),
             nh.from_array(np.array([1], np.int64), "ax1"),
             nh.from_array(np.array([-1, 2], np.int64), "ax_hw"),
             nh.from_array(np.array(3, np.float32), "three"),
             nh.from_array(np.array(0, np.int64), "likei"),
             nh.from_array(w1, "w1"), nh.from_array(b1, "b1"),
             nh.from_array(gsc, "gsc"), nh.from_array(gbi, "gbi")]
    m = _helper_model("onnx_o22", nodes, {"x": (TP.FLOAT, x)}, outs, inits, 22, 10)
    return m, {"x": x}, [o.name for o in outs], ref


def build_onnx_more(rng):
    """Ops of classic and transformer models that torch 1.13 does not export
    as such, with numpy references: LRN (AlexNet, GoogLeNet), Trilu
    (attention masks), GatherND, ScatterElements, OneHot, Hardmax,
    LpNormalization, MeanVarianceNormalization, GlobalLpPool, EyeLike."""
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.standard_normal([2, 5, 3, 4], dtype=np.float32)
    m = rng.standard_normal([2, 3, 4], dtype=np.float32)
    nodes, (outs, ref, out) = [], _outputs()
    N = oh.make_node
    x64 = x.astype(np.float64)
    # LRN, size 3 and 5 (ONNX Runtime refuses even sizes; ours follow the spec).
    for name, size, alpha, beta, bias in (("lrn3", 3, 1e-2, 0.75, 1.0),
                                          ("lrn5", 5, 2e-2, 0.5, 2.0)):
        nodes.append(N("LRN", ["x"], [name], size=size, alpha=alpha, beta=beta, bias=bias))
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        sq = np.zeros_like(x64)
        for c in range(5):
            sq[:, c] = (x64[:, max(0, c - lo):min(5, c + hi + 1)] ** 2).sum(axis=1)
        out(name, TP.FLOAT, (x64 / (bias + alpha / size * sq) ** beta).astype(np.float32))
    # Trilu on a batch of 3 x 4 matrices.
    nodes += [N("Trilu", ["m", "k1"], ["triu"], upper=1),
              N("Trilu", ["m", "km1"], ["tril"], upper=0),
              N("Trilu", ["m"], ["triu0"])]
    out("triu", TP.FLOAT, np.triu(m, 1))
    out("tril", TP.FLOAT, np.tril(m, -1))
    out("triu0", TP.FLOAT, np.triu(m, 0))
    # GatherND: whole rows of m by (batch, row), and with batch_dims 1.
    gi = np.array([[1, 2], [0, 0], [1, -1]], np.int64)
    gb = np.array([[[2], [0]], [[1], [1]]], np.int64)
    nodes += [N("GatherND", ["m", "gi"], ["gnd"]),
              N("GatherND", ["m", "gb"], ["gndb"], batch_dims=1)]
    out("gnd", TP.FLOAT, np.stack([m[1, 2], m[0, 0], m[1, -1]]))
    out("gndb", TP.FLOAT, np.stack([m[0][[2, 0]], m[1][[1, 1]]]))
    # ScatterElements on axis 1 of m: plain, add (repeated index), max.
    si = np.array([[[0, 2, 1, 0]], [[2, 2, 0, 1]]], np.int64)
    su = rng.standard_normal([2, 1, 4], dtype=np.float32)
    si2 = np.array([[[1, 1]], [[0, 0]]], np.int64)
    su2 = rng.standard_normal([2, 1, 2], dtype=np.float32)
    nodes += [N("ScatterElements", ["m", "si", "su"], ["sel"], axis=1),
              N("ScatterElements", ["m", "si2", "su2"], ["seladd"], axis=1, reduction="add"),
              N("ScatterElements", ["m", "si2", "su2"], ["selmax"], axis=-2, reduction="max")]
    r = m.copy()
    for b in range(2):
        for j in range(4):
            r[b, si[b, 0, j], j] = su[b, 0, j]
    out("sel", TP.FLOAT, r)
    for name, f in (("seladd", np.add), ("selmax", np.maximum)):
        r = m.copy()
        for b in range(2):
            for j in range(2):
                r[b, si2[b, 0, j], j] = f(r[b, si2[b, 0, j], j], su2[b, 0, j])
        out(name, TP.FLOAT, r)
    # OneHot: depth 4, values [-1, 5]; a negative index counts from the end,
    # an out-of-range one gives an all-off row.
    oi = np.array([[0, 3, -1], [2, 7, 1]], np.int64)
    nodes += [N("OneHot", ["oi", "depth", "ohv"], ["oh"]),
              N("OneHot", ["oi", "depth", "ohv"], ["oh0"], axis=0)]
    eye = np.zeros([2, 3, 4], np.float32) - 1
    for a in range(2):
        for b in range(3):
            v = oi[a, b] + (4 if oi[a, b] < 0 else 0)
            if 0 <= v < 4:
                eye[a, b, v] = 5
    out("oh", TP.FLOAT, eye)
    out("oh0", TP.FLOAT, np.moveaxis(eye, -1, 0).copy())
    # Hardmax (opset 13: along axis), LpNormalization p 1 and 2, MVN.
    nodes += [N("Hardmax", ["x"], ["hmax"], axis=1),
              N("LpNormalization", ["x"], ["lp2"], axis=1, p=2),
              N("LpNormalization", ["x"], ["lp1"], axis=-1, p=1),
              N("MeanVarianceNormalization", ["x"], ["mvn"]),
              N("MeanVarianceNormalization", ["x"], ["mvn13"], axes=[1, 3])]
    hm = np.zeros_like(x)
    am = np.argmax(x, axis=1)
    for a in range(2):
        for i in range(3):
            for j in range(4):
                hm[a, am[a, i, j], i, j] = 1
    out("hmax", TP.FLOAT, hm)
    out("lp2", TP.FLOAT, (x64 / np.sqrt((x64 ** 2).sum(axis=1, keepdims=True))).astype(np.float32))
    out("lp1", TP.FLOAT, (x64 / np.abs(x64).sum(axis=-1, keepdims=True)).astype(np.float32))
    for name, axes in (("mvn", (0, 2, 3)), ("mvn13", (1, 3))):
        mu = x64.mean(axis=axes, keepdims=True)
        sd = np.sqrt((x64 ** 2).mean(axis=axes, keepdims=True) - mu ** 2)
        out(name, TP.FLOAT, ((x64 - mu) / (sd + 1e-9)).astype(np.float32))
    # GlobalLpPool p 3, EyeLike k 1 in INT64.
    nodes += [N("GlobalLpPool", ["x"], ["glp"], p=3),
              N("EyeLike", ["m2d"], ["eye"], k=1, dtype=TP.INT64)]
    out("glp", TP.FLOAT, ((np.abs(x64) ** 3).sum(axis=(2, 3), keepdims=True) ** (1 / 3)).astype(np.float32))
    out("eye", TP.INT64, np.eye(3, 4, 1, dtype=np.int64))
    inits = [nh.from_array(np.array([1], np.int64), "k1"),
             nh.from_array(np.array([-1], np.int64), "km1"),
             nh.from_array(gi, "gi"), nh.from_array(gb, "gb"),
             nh.from_array(si, "si"), nh.from_array(su, "su"),
             nh.from_array(si2, "si2"), nh.from_array(su2, "su2"),
             nh.from_array(oi, "oi"), nh.from_array(np.array(4, np.int64), "depth"),
             nh.from_array(np.array([-1, 5], np.float32), "ohv"),
             nh.from_array(np.zeros([3, 4], np.float32), "m2d")]
    model = _helper_model("onnx_more", nodes, {"x": (TP.FLOAT, x), "m": (TP.FLOAT, m)},
                          outs, inits, 18, 8)
    return model, {"x": x, "m": m}, [o.name for o in outs], ref


def _np_nms(boxes, scores, max_out, iou, score_thr, center):
    """NonMaxSuppression as the ONNX spec and ONNX Runtime: per batch and
    class, candidates above score_thr by descending score, a box kept
    unless a kept one overlaps it by IoU > iou."""
    rows = []
    B, C, N = scores.shape
    for b in range(B):
        bx = boxes[b].astype(np.float64)
        if center:
            c = np.stack([bx[:, 1] - bx[:, 3] / 2, bx[:, 0] - bx[:, 2] / 2,
                          bx[:, 1] + bx[:, 3] / 2, bx[:, 0] + bx[:, 2] / 2], 1)
        else:
            c = np.stack([np.minimum(bx[:, 0], bx[:, 2]), np.minimum(bx[:, 1], bx[:, 3]),
                          np.maximum(bx[:, 0], bx[:, 2]), np.maximum(bx[:, 1], bx[:, 3])], 1)
        area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        for k in range(C):
            s = scores[b, k]
            order = [i for i in np.argsort(-s, kind="stable") if s[i] > score_thr]
            kept = []
            for i in order:
                if len(kept) >= max_out:
                    break
                ok = True
                for j in kept:
                    iy = min(c[i, 2], c[j, 2]) - max(c[i, 0], c[j, 0])
                    ix = min(c[i, 3], c[j, 3]) - max(c[i, 1], c[j, 1])
                    if area[i] > 0 and area[j] > 0 and iy > 0 and ix > 0:
                        inter = iy * ix
                        if inter / (area[i] + area[j] - inter) > iou:
                            ok = False
                            break
                if ok:
                    kept.append(i)
                    rows.append([b, k, i])
    return np.array(rows, np.int64).reshape(-1, 3)


def build_onnx_dyn(rng):
    """Ops whose output shape depends on the data, on activations (so the
    engine runs them mid-graph and infers what follows from their result):
    NonMaxSuppression (corner and centre boxes, score threshold, a cap per
    class, none kept), NonZero (FP32 with -0 and NaN, INT64, BOOL, a
    result followed by more ops), Compress (flattened and along an axis);
    numpy references."""
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    B, C, N = 2, 3, 12
    xy = rng.random([B, N, 2], dtype=np.float32) * 40
    wh = rng.random([B, N, 2], dtype=np.float32) * 25 + 1
    boxes = np.concatenate([xy, xy + wh], 2).astype(np.float32)
    boxes[0, 3] = boxes[0, 3, [2, 3, 0, 1]]          # corners in the other order
    scores = rng.random([B, C, N], dtype=np.float32)
    scores[1, 2] = np.linspace(0.1, 0.0, N, dtype=np.float32)   # none above 0.2
    cbox = np.concatenate([xy + wh / 2, wh], 2).astype(np.float32)
    x = rng.standard_normal([3, 5], dtype=np.float32)
    x[0, 1], x[1, 2], x[2, 0] = -0.0, np.nan, 0.0
    xi = rng.integers(-2, 3, [2, 3, 4]).astype(np.int64)
    cond = np.array([True, False, True, True, False, True, False], bool)
    nodes, (outs, ref, out) = [], _outputs()
    N_ = oh.make_node
    # The inputs go through an op first, so that the data-shaped ops read
    # activations, not constants the loader would fold.
    nodes += [N_("Identity", ["boxes"], ["bx"]), N_("Identity", ["scores"], ["sc"]),
              N_("Identity", ["cbox"], ["cb"])]
    nodes.append(N_("NonMaxSuppression", ["bx", "sc", "mo3", "iou5", "st2"], ["nms"]))
    out("nms", TP.INT64, _np_nms(boxes, scores, 3, 0.5, 0.2, 0))
    nodes.append(N_("NonMaxSuppression", ["cb", "sc", "mo20", "iou3"], ["nms_c"],
                    center_point_box=1))
    out("nms_c", TP.INT64, _np_nms(cbox, scores, 20, 0.3, -np.inf, 1))
    nodes.append(N_("NonMaxSuppression", ["bx", "sc"], ["nms_0"]))
    out("nms_0", TP.INT64, np.zeros([0, 3], np.int64))
    # Gather the kept boxes' scores: shapes after the data-shaped op.
    nodes += [N_("Gather", ["nms", "i2"], ["nms_box"], axis=1),
              N_("Gather", ["bx", "nms_box"], ["kept"], axis=1)]
    sel = _np_nms(boxes, scores, 3, 0.5, 0.2, 0)[:, 2]
    out("kept", TP.FLOAT, boxes[:, sel])
    nodes += [N_("Identity", ["x"], ["xa"]), N_("NonZero", ["xa"], ["nz"]),
              N_("Identity", ["xi"], ["xib"]), N_("NonZero", ["xib"], ["nz_i"]),
              N_("Greater", ["xa", "zero"], ["pos"]), N_("NonZero", ["pos"], ["nz_b"]),
              N_("Transpose", ["nz_b"], ["nz_bt"]), N_("GatherND", ["xa", "nz_bt"], ["posv"]),
              N_("Shape", ["posv"], ["npos"])]
    out("nz", TP.INT64, np.array(np.nonzero(x), np.int64))
    out("nz_i", TP.INT64, np.array(np.nonzero(xi), np.int64))
    out("nz_b", TP.INT64, np.array(np.nonzero(x > 0), np.int64))
    out("posv", TP.FLOAT, x[x > 0])
    out("npos", TP.INT64, np.array([int((x > 0).sum())], np.int64))
    nodes += [N_("Compress", ["xa", "cond"], ["cmp_flat"]),
              N_("Compress", ["xib", "cond3"], ["cmp_ax"], axis=-1)]
    out("cmp_flat", TP.FLOAT, np.compress(cond, x))
    out("cmp_ax", TP.INT64, np.compress(cond[:3], xi, axis=-1))
    inits = [nh.from_array(np.array([3], np.int64), "mo3"),
             nh.from_array(np.array([20], np.int64), "mo20"),
             nh.from_array(np.array([0.5], np.float32), "iou5"),
             nh.from_array(np.array([0.3], np.float32), "iou3"),
             nh.from_array(np.array([0.2], np.float32), "st2"),
             nh.from_array(np.array(2, np.int64), "i2"),
             nh.from_array(np.array(0, np.float32), "zero"),
             nh.from_array(cond, "cond"), nh.from_array(cond[:3], "cond3")]
    inputs = {"boxes": (TP.FLOAT, boxes), "scores": (TP.FLOAT, scores),
              "cbox": (TP.FLOAT, cbox), "x": (TP.FLOAT, x), "xi": (TP.INT64, xi)}
    m = _helper_model("onnx_dyn", nodes, inputs, outs, inits, 13, 7)
    return m, {k: v[1] for k, v in inputs.items()}, [o.name for o in outs], ref


class DetPost(nn.Module):
    """A detector's post-processing as torch exports it: score filter by
    boolean mask (NonZero + GatherND), torchvision's batched NMS
    (NonMaxSuppression), top boxes of what is left."""

    def forward(self, boxes, scores, labels):  # [N, 4], [N], [N]
        import torchvision  # imported before the trace (build_detpost)
        keep = scores > 0.25
        b, s, c = boxes[keep], scores[keep], labels[keep]
        k = torchvision.ops.batched_nms(b, s, c, 0.45)
        return b[k], s[k], c[k], k


def build_detpost(rng):
    """DetPost exported by torch at opset 11 (three inputs, so through the
    hand-built path); PyTorch's outputs are the reference."""
    import io
    import torchvision  # noqa: F401 (a first import inside the trace fails)
    n = 60
    xy = rng.random([n, 2], dtype=np.float32) * 60
    boxes = np.concatenate([xy, xy + rng.random([n, 2], dtype=np.float32) * 30 + 2], 1)
    scores = rng.random([n], dtype=np.float32)
    labels = rng.integers(0, 4, [n]).astype(np.int64)
    args = tuple(torch.from_numpy(a) for a in (boxes, scores, labels))
    names = ["b", "s", "c", "k"]
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(DetPost(), args, buf, opset_version=11,
                          input_names=["boxes", "scores", "labels"], output_names=names)
        ref = [t.numpy() for t in DetPost()(*args)]
    m = onnx.load_from_string(buf.getvalue())
    return m, {"boxes": boxes, "scores": scores, "labels": labels}, names, ref


def build_onnx_if(rng):
    """If (flattened at load into guarded branches and a select): branches
    of different output shapes, a branch initializer, names from the
    enclosing scope, an If nested in a branch (its condition computed in
    the branch), one taken and one not, and a constant condition."""
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.standard_normal([3, 4], dtype=np.float32)
    x[0, 0] = 9.0  # max > 5: the nested If takes its then branch
    N_ = oh.make_node
    f32 = lambda name: oh.make_tensor_value_info(name, TP.FLOAT, None)
    # Nested: inside outer then, cond2 = ReduceMax(x) > 5 computed in the branch.
    inner = oh.make_graph(
        [N_("Relu", ["x"], ["in_t"])], "inner_then", [], [f32("in_t")])
    inner_e = oh.make_graph(
        [N_("Neg", ["x"], ["in_e"])], "inner_else", [], [f32("in_e")])
    then_g = oh.make_graph(
        [N_("Mul", ["x", "two"], ["t0"]), N_("Add", ["t0", "bias"], ["t1"]),
         N_("ReduceMax", ["x"], ["mx"], keepdims=0), N_("Greater", ["mx", "five"], ["c2"]),
         N_("If", ["c2"], ["t2"], then_branch=inner, else_branch=inner_e),
         N_("Add", ["t1", "t2"], ["t_out"])],
        "then", [], [f32("t_out")],
        [nh.from_array(np.array(2, np.float32), "two"),
         nh.from_array(np.arange(4, dtype=np.float32), "bias")])
    else_g = oh.make_graph([N_("Transpose", ["x"], ["e_out"])], "else", [], [f32("e_out")])
    nodes = [N_("ReduceSum", ["x"], ["s"], keepdims=0), N_("Greater", ["s", "lo"], ["c_true"]),
             N_("Greater", ["s", "hi"], ["c_false"]),
             N_("If", ["c_true"], ["y_true"], then_branch=then_g, else_branch=else_g),
             N_("If", ["c_false"], ["y_false"], then_branch=then_g, else_branch=else_g),
             N_("If", ["c_const"], ["y_const"],
                then_branch=oh.make_graph([N_("Sigmoid", ["x"], ["k_t"])], "kt", [], [f32("k_t")]),
                else_branch=oh.make_graph([N_("Tanh", ["x"], ["k_e"])], "ke", [], [f32("k_e")]))]
    s_ = float(x.astype(np.float64).sum())
    then_ref = x * 2 + np.arange(4, dtype=np.float32) + np.maximum(x, 0)
    outs, ref, out = _outputs()
    out("y_true", TP.FLOAT, then_ref.astype(np.float32))
    out("y_false", TP.FLOAT, x.T.copy())
    out("y_const", TP.FLOAT, (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32))
    inits = [nh.from_array(np.array(s_ - 1, np.float32), "lo"),
             nh.from_array(np.array(s_ + 1, np.float32), "hi"),
             nh.from_array(np.array(5, np.float32), "five"),
             nh.from_array(np.array(True), "c_const")]
    m = _helper_model("onnx_if", nodes, {"x": (TP.FLOAT, x)}, outs, inits, 13, 7)
    return m, {"x": x}, ["y_true", "y_false", "y_const"], ref


def build_onnx_qdq(rng):
    """A QDQ-quantized convolution as ONNX Runtime's quantization tools
    write it (opset 13): uint8 activations per tensor, int8 weights per
    output channel, an int32 bias; plus an int8 per-channel quantization of
    the input.  numpy references."""
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.uniform(-2, 2, [1, 3, 8, 8]).astype(np.float32)
    wq = rng.integers(-127, 128, [4, 3, 3, 3]).astype(np.int8)
    ws = np.array([0.01, 0.02, 0.005, 0.015], np.float32)
    xs, xz = np.float32(0.02), np.uint8(128)
    bq = rng.integers(-500, 500, [4]).astype(np.int32)
    bs = (xs * ws).astype(np.float32)
    cs = np.array([0.05, 0.01, 0.02], np.float32)
    cz = np.array([3, -2, 0], np.int8)
    nodes, (outs, ref, out) = [], _outputs()
    N = oh.make_node
    nodes += [N("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
              N("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
              N("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
              N("DequantizeLinear", ["bq", "bs"], ["bd"], axis=0),
              N("Conv", ["xd", "wd", "bd"], ["y"], pads=[1, 1, 1, 1]),
              N("Relu", ["y"], ["yr"]),
              N("QuantizeLinear", ["x", "cs", "cz"], ["xc"], axis=1)]
    q = np.clip(np.rint(x / xs) + 128, 0, 255).astype(np.uint8)
    out("xq", TP.UINT8, q)
    xd = ((q.astype(np.int64) - 128) * np.float64(xs))
    wd = wq.astype(np.float64) * ws.astype(np.float64)[:, None, None, None]
    bd = bq.astype(np.float64) * bs.astype(np.float64)
    y = _np_conv3x3(xd, wd) + bd[None, :, None, None]
    out("yr", TP.FLOAT, np.maximum(y, 0).astype(np.float32))
    xc = np.clip(np.rint(x / cs[None, :, None, None]) + cz[None, :, None, None], -128, 127)
    out("xc", TP.INT8, xc.astype(np.int8))
    inits = [nh.from_array(np.array(xs, np.float32), "xs"), nh.from_array(np.array(xz), "xz"),
             nh.from_array(wq, "wq"), nh.from_array(ws, "ws"),
             nh.from_array(np.zeros(4, np.int8), "wz"),
             nh.from_array(bq, "bq"), nh.from_array(bs, "bs"),
             nh.from_array(cs, "cs"), nh.from_array(cz, "cz")]
    m = _helper_model("onnx_qdq", nodes, {"x": (TP.FLOAT, x)}, outs, inits, 13, 7)
    return m, {"x": x}, [o.name for o in outs], ref


def _np_roialign_max(x, rois, bidx, oh, ow, sr, scale):
    """RoiAlign mode max with half_pixel coordinates, as ONNX Runtime."""
    N, C, H, W = x.shape
    y = np.zeros([len(rois), C, oh, ow], np.float64)
    for r, (ro, b) in enumerate(zip(rois.astype(np.float64), bidx)):
        x1, y1 = ro[0] * scale - 0.5, ro[1] * scale - 0.5
        bw, bh = (ro[2] * scale - 0.5 - x1) / ow, (ro[3] * scale - 0.5 - y1) / oh
        for ph in range(oh):
            for pw in range(ow):
                best = None
                for iy in range(sr):
                    yy = y1 + ph * bh + (iy + 0.5) * bh / sr
                    for ix in range(sr):
                        xx = x1 + pw * bw + (ix + 0.5) * bw / sr
                        if yy < -1 or yy > H or xx < -1 or xx > W:
                            v = np.zeros(C)
                        else:
                            yv, xv = max(yy, 0.0), max(xx, 0.0)
                            yl, xl = int(yv), int(xv)
                            if yl >= H - 1:
                                yl = yh = H - 1
                                yv = float(yl)
                            else:
                                yh = yl + 1
                            if xl >= W - 1:
                                xl = xh = W - 1
                                xv = float(xl)
                            else:
                                xh = xl + 1
                            ly, lx = yv - yl, xv - xl
                            v = np.max([(1 - ly) * (1 - lx) * x[b, :, yl, xl],
                                        (1 - ly) * lx * x[b, :, yl, xh],
                                        ly * (1 - lx) * x[b, :, yh, xl],
                                        ly * lx * x[b, :, yh, xh]], axis=0)
                        best = v if best is None else np.maximum(best, v)
                y[r, :, ph, pw] = best
    return y.astype(np.float32)


def build_onnx_grid(rng):
    """GridSample at opset 20 (the N-D form and its mode names): 2-D in
    every mode x padding x align_corners, 3-D linear and nearest; grids
    reach past the borders and hit the corner pixels exactly; and
    RoiAlign. PyTorch's grid_sample and torchvision's roi_align are the
    references (the ONNX rules are theirs; ONNX Runtime checks the
    graph)."""
    from onnx import TensorProto as TP, helper as oh
    oh_mod = oh
    x = rng.standard_normal([2, 3, 5, 7], dtype=np.float32)
    g = (rng.random([2, 4, 6, 2], dtype=np.float32) * 2.8 - 1.4).astype(np.float32)
    g[0, 0, :4] = [[-1, -1], [1, 1], [-1, 1], [0.5, -0.25]]
    x3 = rng.standard_normal([1, 2, 3, 4, 5], dtype=np.float32)
    g3 = (rng.random([1, 2, 3, 4, 3], dtype=np.float32) * 2.8 - 1.4).astype(np.float32)
    nodes, (outs, ref, out) = [], _outputs()
    tx, tg, tx3, tg3 = (torch.from_numpy(a) for a in (x, g, x3, g3))
    for mode, tmode in (("linear", "bilinear"), ("nearest", "nearest"), ("cubic", "bicubic")):
        for pad in ("zeros", "border", "reflection"):
            for ac in (0, 1):
                name = "g_%s_%s_%d" % (mode, pad, ac)
                nodes.append(oh.make_node("GridSample", ["x", "g"], [name], mode=mode,
                                          padding_mode=pad, align_corners=ac))
                out(name, TP.FLOAT, F.grid_sample(tx, tg, mode=tmode, padding_mode=pad,
                                                  align_corners=bool(ac)).numpy())
    for mode, tmode in (("linear", "bilinear"), ("nearest", "nearest")):
        for pad, ac in (("zeros", 0), ("border", 1), ("reflection", 0), ("reflection", 1)):
            name = "g3_%s_%s_%d" % (mode, pad, ac)
            nodes.append(oh.make_node("GridSample", ["x3", "g3"], [name], mode=mode,
                                      padding_mode=pad, align_corners=ac))
            out(name, TP.FLOAT, F.grid_sample(tx3, tg3, mode=tmode, padding_mode=pad,
                                              align_corners=bool(ac)).numpy())
    # RoiAlign (opset 16 semantics): both coordinate modes, a fixed and an
    # adaptive sampling ratio, regions past the border; torchvision's
    # roi_align (aligned = half_pixel) is the reference.
    import torchvision
    xr = rng.standard_normal([2, 3, 20, 24], dtype=np.float32)
    xy = rng.random([7, 2], dtype=np.float32) * 40 - 4
    rois = np.concatenate([xy, xy + rng.random([7, 2], dtype=np.float32) * 25], 1)
    bidx = rng.integers(0, 2, [7]).astype(np.int64)
    trois = torch.from_numpy(np.concatenate([bidx[:, None].astype(np.float32), rois], 1))
    for name, ct, sr, scale, oh, ow in (("roi_half", "half_pixel", 2, 0.5, 5, 4),
                                        ("roi_out", "output_half_pixel", 0, 1.0, 3, 3)):
        nodes.append(oh_mod.make_node("RoiAlign", ["xr", "rois", "bidx"], [name],
                                      coordinate_transformation_mode=ct,
                                      sampling_ratio=sr, spatial_scale=scale,
                                      output_height=oh, output_width=ow))
        out(name, TP.FLOAT, torchvision.ops.roi_align(
            torch.from_numpy(xr), trois, (oh, ow), scale, sr if sr > 0 else -1,
            ct == "half_pixel").numpy())
    # mode max, as ONNX Runtime defines it (the largest weighted corner of
    # each sample, the largest sample of each bin): a numpy reference.
    nodes.append(oh_mod.make_node("RoiAlign", ["xr", "rois", "bidx"], ["roi_max"],
                                  mode="max", sampling_ratio=2, spatial_scale=0.5,
                                  output_height=4, output_width=3))
    out("roi_max", TP.FLOAT, _np_roialign_max(xr, rois, bidx, 4, 3, 2, 0.5))
    inputs = {"x": (TP.FLOAT, x), "g": (TP.FLOAT, g), "x3": (TP.FLOAT, x3),
              "g3": (TP.FLOAT, g3), "xr": (TP.FLOAT, xr), "rois": (TP.FLOAT, rois),
              "bidx": (TP.INT64, bidx)}
    m = _helper_model("onnx_grid", nodes, inputs, outs, [], 20, 9)
    return m, {k: v[1] for k, v in inputs.items()}, [o.name for o in outs], ref


class VolNet(nn.Module):
    """Volumetric layers (video and medical models): Conv3d with stride,
    dilation and groups, BatchNorm3d, MaxPool3d (ceil_mode) and AvgPool3d
    without the pads, ConvTranspose3d, and a 2-D grid_sample (opset 16)
    warping one plane by a grid the network computes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv3d(4, 8, 3, stride=(1, 2, 2), padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.c2 = nn.Conv3d(8, 8, (3, 3, 1), padding=(2, 2, 0), dilation=(2, 2, 1), groups=2)
        self.up = nn.ConvTranspose3d(8, 4, (2, 3, 3), stride=2, padding=(0, 1, 1),
                                     output_padding=(0, 1, 1))
        self.flow = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):  # x [1, 4, 6, 10, 10]
        a = F.relu(self.bn(self.c1(x)))
        b = F.relu(self.c2(a))
        p = F.max_pool3d(b, 2, ceil_mode=True) + F.avg_pool3d(b, 3, 2, 1,
                                                             count_include_pad=False)
        u = self.up(b)
        plane = x[:, :, 0]
        grid = torch.tanh(self.flow(plane)).permute(0, 2, 3, 1) * 1.2
        warp = F.grid_sample(plane, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)
        return p, u, warp


def build_volnet(gen):
    m = VolNet()
    randomize_bn(m, gen)
    return m


def build_onnx_fp16(rng):
    """FP16 models as converters write them: (1) keep_io_types: an FP32
    input cast to FP16, FP16 weights (Conv, Gemm), a cast back to FP32 at
    the output; (2) an FP16 input and an FP16 output.  pivotd computes in
    FP32 from the FP16-rounded values, so the numpy reference does the
    same (an FP16 runtime also rounds every intermediate value)."""
    from onnx import TensorProto as TP, helper as oh, numpy_helper as nh
    x = rng.standard_normal([2, 3, 6, 6], dtype=np.float32)
    xh = rng.standard_normal([2, 5], dtype=np.float32).astype(np.float16)
    w = (rng.standard_normal([4, 3, 3, 3]) * 0.3).astype(np.float16)
    b = rng.standard_normal([4]).astype(np.float16)
    wg = (rng.standard_normal([144, 7]) * 0.1).astype(np.float16)
    sc = rng.standard_normal([5]).astype(np.float16)
    N = oh.make_node
    nodes = [N("Cast", ["x"], ["x16"], to=TP.FLOAT16),
             N("Conv", ["x16", "w", "b"], ["c16"], pads=[1, 1, 1, 1]),
             N("Relu", ["c16"], ["r16"]),
             N("Flatten", ["r16"], ["f16"]),
             N("MatMul", ["f16", "wg"], ["g16"]),
             N("Cast", ["g16"], ["y"], to=TP.FLOAT),
             N("Mul", ["xh", "sc"], ["m16"]),
             N("Add", ["m16", "xh"], ["yh"])]
    c = _np_conv3x3(x.astype(np.float16), w) + b.astype(np.float64)[None, :, None, None]
    y = np.maximum(c, 0).reshape(2, -1) @ wg.astype(np.float64)
    yh = xh.astype(np.float64) * sc.astype(np.float64) + xh.astype(np.float64)
    outs = [oh.make_tensor_value_info("y", TP.FLOAT, [2, 7]),
            oh.make_tensor_value_info("yh", TP.FLOAT16, [2, 5])]
    ref = [y.astype(np.float32), yh.astype(np.float16)]
    inits = [nh.from_array(w, "w"), nh.from_array(b, "b"), nh.from_array(wg, "wg"),
             nh.from_array(sc, "sc")]
    m = _helper_model("onnx_fp16", nodes, {"x": (TP.FLOAT, x), "xh": (TP.FLOAT16, xh)},
                      outs, inits, 13, 7)
    return m, {"x": x, "xh": xh}, ["y", "yh"], ref


# name: builder, opset, input names, output names, conformance input shape,
# dynamic batch, extra input sets {tag: shape}, external data.
MODELS = {
    "mlp": dict(build=build_mlp, opset=13, inputs=["x"], outputs=["logits"],
                shape=[3, 1, 28, 28], dynamic=True,
                extra={"b1": [1, 1, 28, 28], "b32": [32, 1, 28, 28]}),
    # fc1 and fc2 at density 1/8 (fc3, 10 rows, stays dense).
    "mlp_p8": dict(build=build_mlp_p8, opset=13, inputs=["x"], outputs=["logits"],
                   shape=[3, 1, 28, 28], dynamic=True,
                   extra={"b1": [1, 1, 28, 28], "b32": [32, 1, 28, 28]}),
    # A GRU (batch_first, so Transpose and Gather around it) dense and with
    # W and R pivot-pruned to 1/4; dynamic batch.
    "gru": dict(build=build_gru, opset=13, inputs=["x"], outputs=["logits"],
                shape=[3, 1, 28, 28], dynamic=True, extra={"b1": [1, 1, 28, 28]}),
    "gru_p4": dict(build=build_gru_p4, opset=14, inputs=["x"], outputs=["logits"],
                   shape=[5, 1, 28, 28], dynamic=True),
    "rnn_zoo": dict(build=build_rnn_zoo, opset=14, inputs=["x"], outputs=["logits"],
                    shape=[3, 1, 28, 28], dynamic=True, extra={"b1": [1, 1, 28, 28]}),
    # Recurrent-op attributes exporters never write (built with onnx.helper;
    # numpy reference): reverse, sequence_lens, peepholes, clip, states.
    "rnn_attrs": dict(onnx=build_rnn_attrs),
    # The same in layout 1 (batch first): input [B, T, I].
    "rnn_attrs_l1": dict(onnx=lambda rng: build_rnn_attrs(rng, layout=1)),
    "cnn": dict(build=build_cnn, opset=17, inputs=["input"], outputs=["logits"],
                shape=[2, 3, 32, 32]),
    "cnn_ext": dict(build=build_cnn, opset=11, inputs=["input"], outputs=["logits"],
                    shape=[2, 3, 32, 32], external=True),
    "resnet18": dict(build=build_resnet18, opset=11, inputs=["image"], outputs=["logits"],
                     shape=[1, 3, 224, 224]),
    "mobilenet_v2": dict(build=build_mobilenet_v2, opset=13, inputs=["image"],
                         outputs=["logits"], shape=[1, 3, 224, 224]),
    # '/' in the output names checks that both sides sanitise file names alike.
    "yolov3_tiny": dict(build=build_yolov3_tiny, opset=11, inputs=["image"],
                        outputs=["yolo/13", "yolo/26"], shape=[1, 3, 416, 416],
                        pads=[0, 0, 0, 0, 0, 0, 1, 1]),
    # Convolutions with >= 128 input and output channels at density 1/4.
    "yolov3_tiny_p4": dict(build=build_yolov3_tiny_p4, opset=13, inputs=["image"],
                           outputs=["yolo/13", "yolo/26"], shape=[1, 3, 416, 416],
                           pads=[0, 0, 0, 0, 0, 0, 1, 1]),
    # HardSwish (opset 14) and HardSigmoid in the squeeze-excite blocks.
    "mobilenet_v3_small": dict(build=torchvision_builder("mobilenet_v3_small"), opset=14,
                               inputs=["image"], outputs=["logits"], shape=[1, 3, 224, 224]),
    "squeezenet1_1": dict(build=torchvision_builder("squeezenet1_1"), opset=13,
                          inputs=["image"], outputs=["logits"], shape=[1, 3, 224, 224]),
    # Channel shuffle: Reshape / Transpose / Reshape, and Split.
    "shufflenet_v2_x0_5": dict(build=torchvision_builder("shufflenet_v2_x0_5"), opset=13,
                               inputs=["image"], outputs=["logits"], shape=[1, 3, 224, 224]),
    # SiLU as Sigmoid * Mul, squeeze-excite.
    "efficientnet_b0": dict(build=torchvision_builder("efficientnet_b0"), opset=13,
                            inputs=["image"], outputs=["logits"], shape=[1, 3, 224, 224]),
    "segnet": dict(build=build_segnet, opset=11, inputs=["image"], outputs=["mask"],
                   shape=[1, 3, 48, 64]),
    "segnet_o13": dict(build=build_segnet, opset=13, inputs=["image"], outputs=["mask"],
                       shape=[2, 3, 48, 64]),
    "opzoo": dict(build=build_opzoo, opset=13, inputs=["x"], outputs=OPZOO_OUTPUTS,
                  shape=[2, 8, 6, 6]),
    "opzoo_o17": dict(build=build_opzoo, opset=17, inputs=["x"], outputs=OPZOO_OUTPUTS,
                      shape=[2, 8, 6, 6]),
    "scatter": dict(build=build_scatter, opset=16, inputs=["x"], outputs=["y"],
                    shape=[2, 8, 6, 6]),
    # MatMul / Softmax attention, Erf GELU and LayerNormalization (opset 17).
    # Hand-built: ops and attributes torch does not export (see build_onnx_zoo).
    "onnx_zoo": dict(onnx=build_onnx_zoo),
    # Hand-built at opset 22, which Debian's onnx (1.12, opset 17) cannot
    # check: its checker is skipped, ONNX Runtime checks the graph instead.
    "onnx_o22": dict(onnx=build_onnx_o22, check=False),
    "onnx_o24": dict(onnx=build_onnx_o24, check=False),
    "onnx_more": dict(onnx=build_onnx_more, check=False),
    "onnx_attn": dict(onnx=build_onnx_attn, check=False),
    "onnx_qdq": dict(onnx=build_onnx_qdq),
    # Model-local functions: hand-built (nesting, attribute defaults,
    # omitted inputs, unused outputs) and as torch exports modules.
    "onnx_fn": dict(onnx=build_onnx_fn, check=False),
    # The same with overloads (IR 10), which ONNX Runtime 1.30 does not
    # resolve inside a function: numpy reference only (ref=generator).
    "onnx_fn_overload": dict(onnx=lambda rng: build_onnx_fn(rng, overloads=True), check=False),
    "fn_modules": dict(build=build_fn_modules, opset=15, inputs=["image"], outputs=["logits"],
                       shape=[2, 3, 8, 8], export={"export_modules_as_functions": {_FnBlock, _FnStage}}),
    "onnx_fp16": dict(onnx=build_onnx_fp16),
    "onnx_grid": dict(onnx=build_onnx_grid, check=False),
    "onnx_dyn": dict(onnx=build_onnx_dyn),
    "detpost": dict(onnx=build_detpost),
    "onnx_if": dict(onnx=build_onnx_if),
    "volnet": dict(build=build_volnet, opset=16, inputs=["x"], outputs=["pool", "up", "warp"],
                   shape=[1, 4, 6, 10, 10]),
    "transformer": dict(build=build_transformer, opset=17, inputs=["tokens"],
                        outputs=["features"], shape=[10, 2, 64]),
}


def sanitize(name):
    """The file name `pivot run` gives an output: unsafe characters -> '_'."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)


def write_npy(path, arr):
    np.save(path, np.ascontiguousarray(arr), allow_pickle=False)


def generate(name, spec, out_dir):
    seed = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = spec["build"](gen).eval()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spec["shape"], dtype=np.float32)

    tmp = tempfile.mkdtemp(prefix=".%s." % name, dir=out_dir)
    try:
        onnx_path = os.path.join(tmp, "model.onnx")
        dyn = None
        if spec.get("dynamic"):
            dyn = {n: {0: "batch"} for n in spec["inputs"] + spec["outputs"]}
        with torch.no_grad():
            torch.onnx.export(model, (torch.from_numpy(x),), onnx_path,
                              input_names=spec["inputs"], output_names=spec["outputs"],
                              opset_version=spec["opset"], do_constant_folding=True,
                              dynamic_axes=dyn, **spec.get("export", {}))
            y = model(torch.from_numpy(x))
        if spec.get("pads"):
            m = onnx.load(onnx_path)
            constant_pad_pads(m, spec["pads"])
            onnx.save_model(m, onnx_path)
        if spec.get("external"):
            m = onnx.load(onnx_path)
            os.unlink(onnx_path)
            onnx.save_model(m, onnx_path, save_as_external_data=True,
                            all_tensors_to_one_file=True, location="model.onnx.data",
                            size_threshold=0)
        m = onnx.load(onnx_path)
        onnx.checker.check_model(m)
        ops = sorted({n.op_type for n in m.graph.node})

        os.mkdir(os.path.join(tmp, "in"))
        write_npy(os.path.join(tmp, "in", spec["inputs"][0] + ".npy"), x)
        for tag, shape in spec.get("extra", {}).items():
            d = os.path.join(tmp, "in_" + tag)
            os.mkdir(d)
            write_npy(os.path.join(d, spec["inputs"][0] + ".npy"),
                      rng.standard_normal(shape, dtype=np.float32))
        ys = y if isinstance(y, tuple) else (y,)
        # PyTorch's own outputs: a cross-check of the ORT reference, so a
        # broken reference cannot pass unnoticed.
        os.mkdir(os.path.join(tmp, "torch"))
        for o, t in zip(spec["outputs"], ys):
            write_npy(os.path.join(tmp, "torch", sanitize(o) + ".npy"), t.numpy())
        meta = {
            "name": name, "opset": spec["opset"], "ops": ops,
            "inputs": spec["inputs"], "outputs": spec["outputs"],
            "files": {o: sanitize(o) + ".npy" for o in spec["outputs"]},
            "shape": spec["shape"], "dynamic_batch": bool(spec.get("dynamic")),
            "external_data": bool(spec.get("external")),
            "torch_rms": [float(t.float().pow(2).mean().sqrt()) for t in ys],
            "generator": script_hash(),
        }
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        dest = os.path.join(out_dir, name)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print("gen_models: %s: opset %d, ops %s" % (name, spec["opset"], " ".join(ops)))


def generate_onnx(name, spec, out_dir):
    seed = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    m, feeds, outputs, ref = spec["onnx"](rng)
    if spec.get("check", True):
        onnx.checker.check_model(m)
    tmp = tempfile.mkdtemp(prefix=".%s." % name, dir=out_dir)
    try:
        onnx.save_model(m, os.path.join(tmp, "model.onnx"))
        for d, arrs in (("in", feeds), ("torch", dict(zip(outputs, ref)))):
            os.mkdir(os.path.join(tmp, d))
            for k, v in arrs.items():
                write_npy(os.path.join(tmp, d, sanitize(k) + ".npy"), v)
        meta = {"name": name, "opset": m.opset_import[0].version,
                "ops": sorted({n.op_type for n in m.graph.node}),
                "inputs": list(feeds), "outputs": outputs,
                "files": {o: sanitize(o) + ".npy" for o in outputs},
                "reference_check": "numpy", "generator": script_hash()}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        dest = os.path.join(out_dir, name)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print("gen_models: %s: opset %d, ops %s" % (name, meta["opset"], " ".join(meta["ops"])))


def up_to_date(name, out_dir):
    try:
        with open(os.path.join(out_dir, name, "meta.json")) as f:
            return json.load(f).get("generator") == script_hash()
    except (OSError, ValueError):
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="cache directory")
    ap.add_argument("--list", action="store_true", help="print the model names")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    if a.list:
        print("\n".join(MODELS))
        return 0
    if not a.out:
        ap.error("--out DIR is required")
    names = a.names or list(MODELS)
    for n in names:
        if n not in MODELS:
            ap.error("unknown model %r (known: %s)" % (n, ", ".join(MODELS)))
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    for n in names:
        if not up_to_date(n, a.out):
            (generate_onnx if "onnx" in MODELS[n] else generate)(n, MODELS[n], a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
