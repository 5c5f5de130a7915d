#!/usr/bin/python3
"""Regenerate the fuzz seed corpus: small valid ONNX and .npy files plus a
few edge cases. The files are committed; run this only to change them:
    /usr/bin/python3 tests/fuzz/make-corpus.py tests/fuzz/corpus
Not written here: onnx/functions*.onnx, copies of the conformance models
onnx_fn and onnx_fn_overload (tests/conformance/gen_models.py) and of
gen_bad.py's recurse.onnx (model-local functions).
"""
import io
import os
import sys

import numpy as np
import onnx
from numpy.lib import format as npf
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

out = sys.argv[1] if len(sys.argv) > 1 else "corpus"
os.makedirs(f"{out}/onnx", exist_ok=True)
os.makedirs(f"{out}/npy", exist_ok=True)


def save_onnx(name, nodes, inputs, outputs, inits=(), opset=13):
    g = h.make_graph(nodes, name, inputs, outputs, list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)],
                     producer_name="corpus")
    m.metadata_props.add(key="labels", value="a,b")
    data = m.SerializeToString()
    with open(f"{out}/onnx/{name}.onnx", "wb") as f:
        f.write(data)
    return data


rng = np.random.default_rng(0)
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 4])
y = h.make_tensor_value_info("y", T.FLOAT, ["N", 3])
w = nh.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
b = h.make_tensor("b", T.FLOAT, [3], [0.5, -1.0, 2.0])  # float_data
mlp = save_onnx("mlp", [h.make_node("MatMul", ["x", "w"], ["h"]),
                        h.make_node("Add", ["h", "b"], ["y"], name="add")],
                [x], [y], [w, b])

xi = h.make_tensor_value_info("img", T.FLOAT, [1, 2, 5, 5])
yi = h.make_tensor_value_info("out", T.FLOAT, None)
cw = nh.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "cw")
save_onnx("conv_attrs", [
    h.make_node("Conv", ["img", "cw", ""], ["c"], name="conv", group=2,
                pads=[1, 1, 1, 1], strides=[1, 1], auto_pad="NOTSET"),
    h.make_node("LeakyRelu", ["c"], ["l"], alpha=0.1),
    h.make_node("Resize", ["l", "", "scales"], ["out"], mode="nearest"),
], [xi], [yi], [cw, h.make_tensor("scales", T.FLOAT, [4], [1, 1, 2, 2])],
    opset=11)

save_onnx("constants", [
    h.make_node("Constant", [], ["k"], value=h.make_tensor(
        "k", T.INT64, [2], [-1, 12])),
    h.make_node("Constant", [], ["f"], value_float=0.25),
    h.make_node("Constant", [], ["i"], value_ints=[1, 2]),
    h.make_node("Reshape", ["x", "k"], ["r"]),
    h.make_node("Mul", ["r", "f"], ["y"]),
], [x], [y], opset=17)

types = [h.make_tensor("t%d" % t, t, [2], [1, 0]) for t in
         (T.INT8, T.UINT8, T.INT16, T.UINT16, T.INT32, T.BOOL, T.FLOAT16)]
types += [h.make_tensor("t64", T.INT64, [2], [1, -1]),
          h.make_tensor("td", T.DOUBLE, [2], [1.0, -1.0]),
          h.make_tensor("tu", T.UINT64, [2], [1, 2]),
          h.make_tensor("tu32", T.UINT32, [2], [1, 2]),
          h.make_tensor("ts", T.INT64, [], [7]),
          h.make_tensor("tz", T.FLOAT, [0, 3], [])]
save_onnx("typed", [h.make_node("Concat", [t.name for t in types], ["y"],
                                axis=0)], [], [y], types)

ext = nh.from_array(np.ones((2, 2), np.float32), "e")
ext.data_location = T.EXTERNAL
for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "16")):
    ext.external_data.add(key=k, value=v)
save_onnx("external", [h.make_node("Add", ["x", "e"], ["y"])], [x], [y],
          [ext])

save_onnx("if_subgraph", [h.make_node(
    "If", ["c"], ["y"], then_branch=h.make_graph(
        [h.make_node("Identity", ["x"], ["y"])], "t", [], [y]),
    else_branch=h.make_graph([h.make_node("Neg", ["x"], ["y"])], "e", [],
                             [y]))],
    [x, h.make_tensor_value_info("c", T.BOOL, [])], [y])
save_onnx("opset18", [h.make_node("Relu", ["x"], ["y"])], [x], [y],
          opset=18)
save_onnx("opset99", [h.make_node("Relu", ["x"], ["y"])], [x], [y],
          opset=99)
with open(f"{out}/onnx/truncated.onnx", "wb") as f:
    f.write(mlp[:len(mlp) // 2])
open(f"{out}/onnx/empty.onnx", "wb").close()


def save_npy(name, a, version=None, fortran=False):
    buf = io.BytesIO()
    if fortran:
        a = np.asfortranarray(a)
    npf.write_array(buf, a, version=version)
    with open(f"{out}/npy/{name}.npy", "wb") as f:
        f.write(buf.getvalue())
    return buf.getvalue()


f4 = save_npy("f4", np.arange(6, dtype=np.float32).reshape(2, 3))
for c in ("f8", "f2", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "?"):
    save_npy(c.replace("?", "b1"), (np.arange(4) % 3).astype(c))
save_npy("scalar", np.array(1.5, np.float32))
save_npy("empty", np.zeros((0, 3), np.float32))
save_npy("v2", np.arange(3, dtype=np.int32), version=(2, 0))
save_npy("v3", np.arange(3, dtype=np.int32), version=(3, 0))
save_npy("fortran", np.ones((2, 3), np.float32), fortran=True)
save_npy("bigendian", np.arange(3, dtype=">f4"))
with open(f"{out}/npy/truncated.npy", "wb") as f:
    f.write(f4[:-5])
