"""Helpers of the fault tests: ONNX models whose version shows in their
answers (version v computes y = x @ (v * W)), a repository of them, the
real pivotd, and checks of what a repository holds on disk."""
import json, os, sys, tempfile

try:
    import numpy as np
    from onnx import helper, TensorProto, numpy_helper
except ImportError:
    print("onnx/numpy for /usr/bin/python3 missing: skip")
    sys.exit(77)
import pvdtest
from pvdtest import check

pvdtest.PIVOTD = os.environ.get("PIVOTD_REAL", pvdtest.PIVOTD)
FAULT_LIBS = os.environ.get("FAULT_LIBS", os.path.join(os.path.dirname(__file__), ".libs"))
K, N = 64, 32  # big enough (8 kB) that an upload spans many writes
W = np.random.default_rng(7).standard_normal((K, N)).astype(np.float32)
X = np.random.default_rng(8).standard_normal((2, K)).astype(np.float32)


def model_bytes(v):
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"])], "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", N])],
        [numpy_helper.from_array(W * np.float32(v), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def make_repo(models, config=None):
    """models: {name: [versions]}; config: {name: dict} for config.json."""
    root = tempfile.mkdtemp(prefix="pivotd-fault-")
    for name, versions in models.items():
        for v in versions:
            os.makedirs(os.path.join(root, name, str(v)))
            with open(os.path.join(root, name, str(v), "model.onnx"), "wb") as f:
                f.write(model_bytes(v))
        if config and name in config:
            with open(os.path.join(root, name, "config.json"), "w") as f:
                json.dump(config[name], f)
    return root


def infer(d, name):
    """(status, json) of one request; on 200 checks the values against the
    version the answer names."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, K], "data": X.ravel().tolist()}]}
    st, j = d.json("POST", "/v2/models/%s/infer" % name, body)
    if st == 200:
        v = int(j["model_version"])
        y = np.array(j["outputs"][0]["data"], np.float32).reshape(2, N)
        check(np.allclose(y, X @ (W * v), rtol=1e-4, atol=1e-4), "%s v%d: wrong values" % (name, v))
    return st, j


def served(d, name):
    st, j = d.json("GET", "/v2/models/%s" % name)
    return j.get("versions") if st == 200 else None


def check_disk(root, name):
    """Every version folder holds exactly one whole model file (or none),
    and nothing else is left in the model folder but config.json. Returns
    the versions with a model, ascending."""
    versions = []
    for e in sorted(os.listdir(os.path.join(root, name))):
        p = os.path.join(root, name, e)
        if e == "config.json":
            continue
        check(e.isdigit() and os.path.isdir(p), "stray %s in the repository" % p)
        files = os.listdir(p)
        if not files:
            continue  # killed between mkdir and rename: no model, never listed
        check(files == ["model.onnx"], "%s holds %r" % (p, files))
        with open(os.path.join(p, "model.onnx"), "rb") as f:
            check(f.read() == model_bytes(int(e)), "%s/model.onnx is not whole" % p)
        versions.append(int(e))
    return sorted(versions)
