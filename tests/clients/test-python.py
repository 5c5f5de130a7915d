"""clients/python/pivotd_client against the real pivotd: metadata,
infer (binary and JSON, numpy and the numpy-free Tensor) checked against
numpy, repository admin with a token, upload-and-swap, stats, metrics,
errors as PivotdError/ConnectError. The numpy-free path runs in a child
interpreter where importing numpy fails."""
import os, shutil, subprocess, sys, tempfile
from clienttest import *
import pivotd_client as pc

blob1, w1, b1 = gemm_relu(1)
blob2, w2, b2 = gemm_relu(2)
repo = make_repo({"mlp": {1: blob1}})
try:
    with start(repo, "--token", "tok") as d:
        c = pc.Client(url(d), token="tok")
        check(c.live() and c.ready(), "live/ready")
        check(c.server_metadata()["name"] == "pivotd", "server metadata")
        m = c.metadata("mlp")
        check(m["inputs"][0]["name"] == "x" and m["inputs"][0]["shape"] == [-1, 8], "metadata %r" % m)
        check(c.model_ready("mlp") and not c.model_ready("mlp", version=9), "model ready")
        x = np.random.default_rng(11).standard_normal((4, 8)).astype(np.float32)
        ref = reference(x, w1, b1)
        for binary in (True, False):
            y = c.infer("mlp", {"x": x}, binary=binary)["y"]
            check(isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (4, 3), "type %r" % y)
            check(np.allclose(y, ref, rtol=1e-5, atol=1e-5), "binary=%s values" % binary)
        y = c.infer("mlp", [x], outputs=["y"], request_id="r1")["y"]
        check(np.allclose(y, ref, rtol=1e-5, atol=1e-5) and c.last_response.get("id") == "r1", "list inputs, id")
        t = pc.Tensor("FP32", [4, 8], x.ravel().tolist())
        check(np.allclose(c.infer("mlp", {"x": t})["y"], ref, rtol=1e-5, atol=1e-5), "Tensor input")
        try:
            c.infer("mlp", {"x": x[:, :5]})
            check(False, "wrong shape accepted")
        except pc.PivotdError as e:
            check(e.status == 400 and "x" in e.message, "shape error %r" % e)
        try:
            c.infer("mlp", {"x": x.astype(np.float64)})
            check(False, "wrong dtype accepted")
        except pc.PivotdError as e:
            check(e.status == 400 and "FP64" in e.message, "dtype error %r" % e)

        # admin: a client without the token is refused, with it allowed
        try:
            pc.Client(url(d)).unload("mlp")
            check(False, "unload without token")
        except pc.PivotdError as e:
            check(e.status == 401, "401 %r" % e)
        v = c.upload("mlp", blob2)
        check(v == 2, "upload picked version %r" % v)
        check(np.allclose(c.infer("mlp", {"x": x})["y"], reference(x, w2, b2), rtol=1e-5, atol=1e-5), "swapped")
        check(c.last_response["model_version"] == "2", "version 2 answered")
        try:
            c.upload("mlp", b"not a model", version=5)
            check(False, "garbage upload accepted")
        except pc.PivotdError as e:
            check(e.status == 400, "bad upload %r" % e)
        idx = c.index()
        check(any(e["version"] == "2" and e["state"] == "READY" for e in idx), "index %r" % idx)
        c.unload("mlp")
        check(not c.model_ready("mlp"), "unloaded")
        check(c.load("mlp", config={"max_batch": 2})["state"] == "READY", "load with config")
        check(c.metadata("mlp")["max_batch_size"] == 2, "config override")
        c.infer("mlp", {"x": x[:1]})
        s = c.stats("mlp")["model_stats"][0]["inference_stats"]["success"]["count"]
        check(s == 1, "stats count %r" % s)
        check("pivotd_inference_success_total" in c.metrics(), "metrics")
        try:
            c.detect("mlp", b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
            check(False, "detect on a non-detector answered 200")
        except pc.PivotdError as e:
            check(400 <= e.status < 500, "detect refused %r" % e)
        try:
            c.metadata("nosuch")
            check(False, "unknown model")
        except pc.PivotdError as e:
            check(e.status == 404 and "nosuch" in e.message, "404 %r" % e)

        # without numpy: Tensor in, Tensor out
        child = r'''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ImportError("numpy blocked")
sys.meta_path.insert(0, Block())
import pivotd_client as pc
assert pc._np is None
c = pc.Client(sys.argv[1])
x = [float(i) / 10 for i in range(16)]
for binary in (True, False):
    y = c.infer("mlp", {"x": pc.Tensor("FP32", [2, 8], x)}, binary=binary)["y"]
    assert isinstance(y, pc.Tensor) and y.shape == [2, 3], y
    print(" ".join("%.6g" % v for v in y.data))
'''
        p = subprocess.run([sys.executable, "-c", child, url(d)], capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "numpy-free client: %s" % p.stderr)
        xs = (np.arange(16, dtype=np.float32) / 10).reshape(2, 8)
        want = reference(xs, w2, b2).ravel()
        for line in p.stdout.strip().split("\n"):
            got = np.array([float(v) for v in line.split()], np.float32)
            check(np.allclose(got, want, rtol=1e-5, atol=1e-5), "numpy-free values %r vs %r" % (got, want))
    try:
        pc.Client("http://127.0.0.1:%d" % free_port(), timeout=5).ready()
        check(False, "no server answered")
    except pc.ConnectError as e:
        check("cannot reach" in str(e), "ConnectError %r" % e)
    print("python client: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
