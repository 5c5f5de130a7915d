#!/usr/bin/python3
"""Convert face-api's TF.js detectors (weights manifest + .bin shards) to ONNX.

Usage: tfjs2onnx.py tiny MODEL_DIR OUT.onnx
       tfjs2onnx.py ssd  MODEL_DIR OUT.onnx

MODEL_DIR is the package's model/ folder. The graph reproduces the layers of
@vladmandic/face-api 1.7.15 (src/tinyFaceDetector, src/tinyYolov2,
src/ssdMobilenetv1) in NCHW; the preprocessing and decoding the JavaScript
does around the network go into metadata_props (docs/DETECTION.md), which
pivot's image and detect code read. Only the onnx helper API is needed.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# From src/tinyFaceDetector/const.ts: anchors in grid cells (w, h).
TINY_ANCHORS = [(1.603231, 2.094468), (6.041143, 7.080126),
                (2.882459, 3.518061), (4.266906, 5.178857),
                (9.041765, 10.66308)]
TINY_MEAN_RGB = (117.001, 114.697, 97.404)


def load_manifest(model_dir, name):
    """Dequantised float32 arrays by name, in TF layout (HWIO etc.)."""
    with open(os.path.join(model_dir, name + "-weights_manifest.json")) as f:
        groups = json.load(f)
    out = {}
    for grp in groups:
        data = b"".join(open(os.path.join(model_dir, p), "rb").read()
                        for p in grp["paths"])
        off = 0
        for w in grp["weights"]:
            shape = w["shape"]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qdt = {"uint8": np.uint8, "uint16": np.uint16,
                       "float16": np.float16}[q["dtype"]]
                raw = np.frombuffer(data, qdt, n, off)
                off += n * raw.itemsize
                if q["dtype"] == "float16":
                    arr = raw.astype(np.float32)
                else:
                    # TF.js computes q*scale+min in doubles, stores float32.
                    arr = (raw.astype(np.float64) * q["scale"]
                           + q["min"]).astype(np.float32)
            else:
                dt = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
                arr = np.frombuffer(data, dt, n, off).copy()
                off += n * arr.itemsize
            if w["dtype"] == "float32":
                arr = arr.astype(np.float32)
            out[w["name"]] = arr.reshape(shape)
        if off != len(data):
            sys.exit("tfjs2onnx: %s: manifest covers %d of %d bytes"
                     % (name, off, len(data)))
    return out


class Builder:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr),
                                                  name))
        return name

    def node(self, op, ins, name, **attrs):
        self.nodes.append(helper.make_node(op, ins, [name], name=name,
                                           **attrs))
        return name


def same_pool_pad(size, k, s):
    """TF 'same' total padding for a pool; TF puts the odd one at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def conv_hwio(b, x, prefix, w, bias, pads, group=1):
    """A TF HWIO (or depthwise HWC1) filter as an ONNX Conv."""
    if group > 1:
        wt = w.transpose(2, 3, 0, 1)  # [C,1,kh,kw]
    else:
        wt = w.transpose(3, 2, 0, 1)  # [O,I,kh,kw]
    ins = [x, b.const(prefix + ".w", wt)]
    if bias is not None:
        ins.append(b.const(prefix + ".b", bias))
    kh, kw = wt.shape[2], wt.shape[3]
    return b.node("Conv", ins, prefix, kernel_shape=[kh, kw], pads=pads,
                  strides=[1, 1], group=group)


def tiny(model_dir):
    w = load_manifest(model_dir, "tiny_face_detector_model")
    b = Builder()
    size = 416
    x = "input"
    # conv0: 3x3 'valid' convolution with bias, then leaky 0.1.
    x = conv_hwio(b, x, "conv0", w["conv0/filters"], w["conv0/bias"],
                  [0, 0, 0, 0])
    x = b.node("LeakyRelu", [x], "conv0.act", alpha=0.1)
    hw = size - 2
    strides = [2, 2, 2, 2, 2, 1]
    for i in range(1, 7):
        out, p0, p1 = same_pool_pad(hw, 2, strides[i - 1])
        x = b.node("MaxPool", [x], "pool%d" % i, kernel_shape=[2, 2],
                   strides=[strides[i - 1]] * 2, pads=[p0, p0, p1, p1])
        hw = out
        if i == 6:
            break
        p = "conv%d" % i
        # Separable conv: explicit 1-pixel pad, depthwise 3x3, pointwise 1x1
        # with bias, leaky 0.1 (src/tinyYolov2/depthwiseSeparableConv.ts).
        dw = w[p + "/depthwise_filter"]
        x = conv_hwio(b, x, p + ".dw", dw, None, [1, 1, 1, 1],
                      group=dw.shape[2])
        x = conv_hwio(b, x, p + ".pw", w[p + "/pointwise_filter"],
                      w[p + "/bias"], [0, 0, 0, 0])
        x = b.node("LeakyRelu", [x], p + ".act", alpha=0.1)
    x = conv_hwio(b, x, "conv8", w["conv8/filters"], w["conv8/bias"],
                  [0, 0, 0, 0])
    b.nodes[-1].output[0] = "output"
    ninp = helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                         [1, 3, size, size])
    nout = helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                         [1, 25, hw, hw])
    g = helper.make_graph(b.nodes, "tiny_face_detector", [ninp], [nout],
                          b.inits)
    meta = {
        "pivot.image.resize": "pad_square",
        "pivot.image.channels": "rgb",
        "pivot.image.mean": ",".join(repr(v) for v in TINY_MEAN_RGB),
        "pivot.image.std": "255,255,255",
        "pivot.detect.type": "yolo2",
        "pivot.detect.anchors": ",".join("%r,%r" % a for a in TINY_ANCHORS),
        "pivot.detect.iou": "0.4",
        "pivot.detect.score": "0.5",
        "pivot.detect.labels": "face",
    }
    return g, meta


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("tiny", "ssd"):
        sys.exit(__doc__)
    kind, model_dir, out = sys.argv[1:]
    g, meta = {"tiny": tiny, "ssd": ssd}[kind](model_dir)
    m = helper.make_model(g, producer_name="pivot tfjs2onnx",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, out)


def ssd(model_dir):
    """SSD-MobileNetV1 (src/ssdMobilenetv1): MobileNetV1 with relu6, depthwise
    batch norm folded into the depthwise filters, six box predictors."""
    w = load_manifest(model_dir, "ssd_mobilenetv1_model")
    b = Builder()
    eps = 0.0010000000474974513  # mobileNetV1.ts

    def same_pads(size, k, s):
        # TF 'same': the odd padding pixel goes at the bottom/right.
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return out, [total // 2, total // 2, total - total // 2, total - total // 2]

    def pointwise(x, size, prefix, name, stride):
        """conv2d 'same' + bias (convolution_bn_offset) + relu6."""
        f = w[prefix + "/weights"]
        out, pads = same_pads(size, f.shape[0], stride)
        x = b.node("Conv", [x, b.const(name + ".w", f.transpose(3, 2, 0, 1)),
                            b.const(name + ".b", w[prefix + "/convolution_bn_offset"])],
                   name, kernel_shape=list(f.shape[:2]), pads=pads,
                   strides=[stride, stride], group=1)
        return b.node("Clip", [x, b.const(name + ".lo", np.array(0, np.float32)),
                               b.const(name + ".hi", np.array(6, np.float32))],
                      name + ".relu6"), out

    def depthwise(x, size, idx, stride):
        p = "MobilenetV1/Conv2d_%d_depthwise" % idx
        name = "conv%d.dw" % idx
        f = w[p + "/depthwise_weights"].astype(np.float64)  # [3,3,C,1]
        scale = w[p + "/BatchNorm/gamma"].astype(np.float64) / np.sqrt(
            w[p + "/BatchNorm/moving_variance"].astype(np.float64) + eps)
        bias = w[p + "/BatchNorm/beta"] - w[p + "/BatchNorm/moving_mean"] * scale
        f = (f * scale[None, None, :, None]).astype(np.float32)
        out, pads = same_pads(size, 3, stride)
        x = b.node("Conv", [x, b.const(name + ".w", f.transpose(2, 3, 0, 1)),
                            b.const(name + ".b", bias.astype(np.float32))],
                   name, kernel_shape=[3, 3], pads=pads, strides=[stride, stride],
                   group=f.shape[2])
        return b.node("Clip", [x, b.const(name + ".lo", np.array(0, np.float32)),
                               b.const(name + ".hi", np.array(6, np.float32))],
                      name + ".relu6"), out

    def predictor(x, idx, kind, per):
        """1x1 conv, then NHWC order flattened to [1, H*W*A, per]."""
        p = "Prediction/BoxPredictor_%d/%s" % (idx, kind)
        name = "box%d.%s" % (idx, "cls" if kind == "ClassPredictor" else "loc")
        f = w[p + "/weights"]
        x = b.node("Conv", [x, b.const(name + ".w", f.transpose(3, 2, 0, 1)),
                            b.const(name + ".b", w[p + "/biases"])], name,
                   kernel_shape=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1], group=1)
        x = b.node("Transpose", [x], name + ".nhwc", perm=[0, 2, 3, 1])
        return b.node("Reshape", [x, b.const(name + ".shape", np.array([1, -1, per], np.int64))],
                      name + ".flat")

    size = 512
    x, hw = pointwise("input", size, "MobilenetV1/Conv2d_0_pointwise", "conv0", 2)
    conv11 = None
    for i in range(1, 14):
        x, hw = depthwise(x, hw, i, 2 if i in (2, 4, 6, 12) else 1)
        x, hw = pointwise(x, hw, "MobilenetV1/Conv2d_%d_pointwise" % i, "conv%d.pw" % i, 1)
        if i == 11:
            conv11 = x
    feats = [conv11, x]
    y = x
    for i in range(8):
        y, hw = pointwise(y, hw, "Prediction/Conv2d_%d_pointwise" % i, "pred%d" % i,
                          2 if i % 2 else 1)
        if i % 2:
            feats.append(y)
    locs = [predictor(f, i, "BoxEncodingPredictor", 4) for i, f in enumerate(feats)]
    clss = [predictor(f, i, "ClassPredictor", 3) for i, f in enumerate(feats)]
    b.nodes.append(helper.make_node("Concat", locs, ["deltas"], name="deltas", axis=1))
    c = b.node("Concat", clss, "logits3", axis=1)
    # Class 2 is never read by face-api (outputLayer.ts): keep background
    # and face only.
    b.nodes.append(helper.make_node(
        "Slice", [c, b.const("cls.starts", np.array([0], np.int64)),
                  b.const("cls.ends", np.array([2], np.int64)),
                  b.const("cls.axes", np.array([2], np.int64))], ["logits"], name="logits"))
    anchors = w["Output/extra_dim"].astype(np.float32)
    n = anchors.shape[1]
    b.nodes.append(helper.make_node("Identity", [b.const("anchors.c", anchors)], ["anchors"],
                                    name="anchors"))
    ninp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    outs = [helper.make_tensor_value_info("deltas", TensorProto.FLOAT, [1, n, 4]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, n, 2]),
            helper.make_tensor_value_info("anchors", TensorProto.FLOAT, [1, n, 4])]
    g = helper.make_graph(b.nodes, "ssd_mobilenetv1", [ninp], outs, b.inits)
    meta = {
        "pivot.image.resize": "pad_square",
        "pivot.image.channels": "rgb",
        "pivot.image.mean": "127.5",
        "pivot.image.std": "127.5",
        "pivot.detect.type": "ssd",
        "pivot.detect.variances": "0.1,0.1,0.2,0.2",
        "pivot.detect.iou": "0.5",
        "pivot.detect.score": "0.5",
        "pivot.detect.top_k": "100",
        "pivot.detect.labels": "face",
    }
    return g, meta


if __name__ == "__main__":
    main()
