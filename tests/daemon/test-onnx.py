"""pivotd with the real engine: an ONNX Gemm+Relu model built with the
onnx helper API, served and checked against numpy; then a second version
uploaded and swapped in. Skips (exit 77) where python3-onnx is missing."""
import os, shutil, sys, tempfile
try:
    import numpy as np
    import onnx
    from onnx import helper, TensorProto, numpy_helper
except ImportError:
    print("onnx/numpy for /usr/bin/python3 missing: skip")
    sys.exit(77)
from pvdtest import *


repo = tempfile.mkdtemp(prefix="pivotd-onnx-")
try:
    blob1, w1, b1 = gemm_relu(1)
    os.makedirs(os.path.join(repo, "mlp", "1"))
    open(os.path.join(repo, "mlp", "1", "model.onnx"), "wb").write(blob1)
    binary = os.environ.get("PIVOTD_REAL", os.path.join(os.path.dirname(PIVOTD), "..", "..", "daemon", "pivotd"))
    import pvdtest
    pvdtest.PIVOTD = binary
    with Daemon(repo) as d:
        st, j = d.json("GET", "/v2/models/mlp")
        check(st == 200 and j["inputs"][0]["shape"] == [-1, 8], "metadata %r" % j)
        x = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 8], "data": x.tolist()}]}
        st, j = d.json("POST", "/v2/models/mlp/infer", body)
        check(st == 200, "infer %d %r" % (st, j))
        y = np.array(j["outputs"][0]["data"], np.float32).reshape(3, 3)
        ref = np.maximum(x @ w1 + b1, 0)
        check(np.allclose(y, ref, rtol=1e-5, atol=1e-5), "values %r vs %r" % (y, ref))
        blob2, w2, b2 = gemm_relu(2)
        st, j = d.json("PUT", "/v2/models/mlp/versions/2/model", blob2)
        check(st == 200, "upload %r" % j)
        st, j = d.json("POST", "/v2/models/mlp/infer", body)
        y = np.array(j["outputs"][0]["data"], np.float32).reshape(3, 3)
        check(j["model_version"] == "2" and np.allclose(y, np.maximum(x @ w2 + b2, 0), rtol=1e-5, atol=1e-5), "v2 values")
        st, j = d.json("PUT", "/v2/models/mlp/versions/3/model", blob2[: len(blob2) // 2])
        check(st == 400 and "error" in j, "truncated ONNX refused: %r" % j)
        print("truncated upload answered: %s" % j["error"])
    print("onnx: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
