#!/usr/bin/python3
"""Write the bad inputs of bad_input.sh into DIR (small, fixed seeds).

Usage: gen_bad.py DIR
Models: two_inputs.onnx (left, right: float [2,3] -> Add), op.onnx (a
Unique, which pivotd does not support, node "dedupe_0", opset 12), cut.onnx
(the first 60% of a valid Gemm model), noise.onnx (random bytes), blank.onnx
(empty), recurse.onnx (model-local function "Spiral" calling itself,
node "coil_0"), fnopset.onnx (function "Lift" importing opset 15 in a
model of opset 13). Tensors: good.npy (float32 [2,3]), wide.npy (float32 [2,4]),
ints.npy (int32 [2,3]), noise.npy (random bytes), half.npy (a valid header,
half the data). File names share no word with the messages the test looks
for, so a message that only echoes the path cannot pass.
"""
import os
import sys

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    sys.exit("gen_bad: %s; run scripts/deps.sh test" % e)


def save(model, path):
    onnx.checker.check_model(model)
    onnx.save_model(model, path)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_bad.py DIR")
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(7)
    f23 = [2, 3]

    g = helper.make_graph(
        [helper.make_node("Add", ["left", "right"], ["sum"], name="add_0")], "two_inputs",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23),
         helper.make_tensor_value_info("right", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, f23)])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
         os.path.join(d, "two_inputs.onnx"))

    # Unique: its output shape depends on the data (Einsum, used here
    # before, is supported now).
    g = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["y"], name="dedupe_0", sorted=1)],
        "unique", [helper.make_tensor_value_info("x", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)]),
         os.path.join(d, "op.onnx"))

    # Model-local functions: one that calls itself (inlining must stop with
    # an error, not recurse until the stack or memory runs out), and one
    # whose opset differs from the model's.
    fn = helper.make_function("my.fns", "Spiral", ["x"], ["y"],
                              [helper.make_node("Spiral", ["x"], ["y"], domain="my.fns")],
                              [helper.make_opsetid("", 13), helper.make_opsetid("my.fns", 1)], [])
    g = helper.make_graph(
        [helper.make_node("Spiral", ["left"], ["sum"], name="coil_0", domain="my.fns")], "recurse",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, f23)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("my.fns", 1)], functions=[fn])
    onnx.save_model(m, os.path.join(d, "recurse.onnx"))   # the checker refuses recursion too
    fn = helper.make_function("my.fns", "Lift", ["x"], ["y"], [helper.make_node("Relu", ["x"], ["y"])],
                              [helper.make_opsetid("", 15)], [])
    g = helper.make_graph(
        [helper.make_node("Lift", ["left"], ["sum"], name="lift_0", domain="my.fns")], "fnopset",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, f23)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("my.fns", 1)], functions=[fn])
    onnx.save_model(m, os.path.join(d, "fnopset.onnx"))

    # If: a branch with two outputs for a node with one; and Ifs nested 40
    # deep (the importer stops at 32, it does not recurse without bound).
    one = helper.make_graph([helper.make_node("Neg", ["left"], ["a"])], "one", [],
                            [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)])
    two = helper.make_graph([helper.make_node("Neg", ["left"], ["a"]),
                             helper.make_node("Abs", ["left"], ["b"])], "two", [],
                            [helper.make_tensor_value_info("a", TensorProto.FLOAT, None),
                             helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["sum"], name="pick_0", then_branch=one,
                          else_branch=two)], "ifbad",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, None)], [cond])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                    os.path.join(d, "ifbad.onnx"))
    body = one
    for k in range(40):
        body = helper.make_graph(
            [helper.make_node("If", ["cond"], ["a"], name="deep_%d" % k, then_branch=body,
                              else_branch=one)], "lvl%d" % k, [],
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)])
    g = helper.make_graph(body.node, "ifdeep",
                          [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23)],
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)], [cond])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                    os.path.join(d, "ifdeep.onnx"))

    # A data-shaped model (NonZero) whose TopK takes K from an activation:
    # refused as an ordinary plan refuses it, not read before it exists.
    flat = numpy_helper.from_array(np.array([-1], np.int64), "flat_shape")
    st0 = numpy_helper.from_array(np.array([0], np.int64), "st0")
    en1 = numpy_helper.from_array(np.array([1], np.int64), "en1")
    g = helper.make_graph(
        [helper.make_node("NonZero", ["left"], ["nz"], name="nz_0"),
         helper.make_node("Reshape", ["left", "flat_shape"], ["flat"], name="flat_0"),
         helper.make_node("Slice", ["flat", "st0", "en1"], ["kf"], name="kf_0"),
         helper.make_node("Abs", ["kf"], ["ka"], name="ka_0"),
         helper.make_node("Cast", ["ka"], ["k"], name="k_0", to=TensorProto.INT64),
         helper.make_node("TopK", ["flat", "k"], ["sum", "idx"], name="topk_0")], "dynk",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("nz", TensorProto.INT64, None)], [flat, st0, en1])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                    os.path.join(d, "dynk.onnx"))
    # RoiAlign asking for 65536 x 65536 bins of 8192^2 samples.
    g = helper.make_graph(
        [helper.make_node("RoiAlign", ["img", "rois", "bi"], ["pool"], name="roi_0",
                          output_height=65536, output_width=65536, sampling_ratio=8192),
         helper.make_node("Neg", ["left"], ["sum"], name="neg_0")], "roibig",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, f23),
         helper.make_tensor_value_info("pool", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((1, 0, 4, 4), np.float32), "img"),
         numpy_helper.from_array(np.array([[0, 0, 2, 2]], np.float32), "rois"),
         numpy_helper.from_array(np.array([0], np.int64), "bi")])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)]),
                    os.path.join(d, "roibig.onnx"))

    # GridSample whose grid has 3 coordinates for a 2-D image.
    shp = numpy_helper.from_array(np.array([1, 1, 2, 3], np.int64), "shp")
    grid = numpy_helper.from_array(rng.uniform(-1, 1, (1, 2, 2, 3)).astype(np.float32), "grid")
    g = helper.make_graph(
        [helper.make_node("Reshape", ["left", "shp"], ["img"], name="img_0"),
         helper.make_node("GridSample", ["img", "grid"], ["sum"], name="warp_0")], "gridbad",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, None)], [shp, grid])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)]),
                    os.path.join(d, "gridbad.onnx"))

    w = numpy_helper.from_array(rng.standard_normal((64, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm_0", transB=1)],
        "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, f23)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], [w, b])
    blob = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    with open(os.path.join(d, "cut.onnx"), "wb") as f:
        f.write(blob[: len(blob) * 6 // 10])
    with open(os.path.join(d, "noise.onnx"), "wb") as f:
        f.write(rng.bytes(4096))
    open(os.path.join(d, "blank.onnx"), "wb").close()

    np.save(os.path.join(d, "good.npy"), rng.standard_normal(f23).astype(np.float32))
    np.save(os.path.join(d, "wide.npy"), rng.standard_normal((2, 4)).astype(np.float32))
    np.save(os.path.join(d, "ints.npy"), np.arange(6, dtype=np.int32).reshape(f23))
    with open(os.path.join(d, "noise.npy"), "wb") as f:
        f.write(rng.bytes(512))
    np.save(os.path.join(d, "full.npy"), rng.standard_normal((64, 64)).astype(np.float32))
    with open(os.path.join(d, "full.npy"), "rb") as f:
        blob = f.read()
    os.unlink(os.path.join(d, "full.npy"))
    with open(os.path.join(d, "half.npy"), "wb") as f:
        f.write(blob[: 128 + (len(blob) - 128) // 2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
