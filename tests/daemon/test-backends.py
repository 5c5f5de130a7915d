"""pivotd with the real engine and the GPU backends: a model's config.json
lists its backend preference and the daemon honours it, falling back with a
log line; metadata, stats and every Prometheus series carry the backend
that runs the model. OpenCL runs on PoCL here; a machine without a usable
OpenCL device must say so in the log, and then the CPU takes over. Also a
kernel that fails to build (a bad PIVOT_OPENCL_OPTIONS): logged, the CPU
runs the model, the answers stay right. Skips (exit 77) where
python3-onnx is missing or the OpenCL backend is not built."""
import os, re, shutil, sys, tempfile
try:
    import numpy as np
    from onnx import helper, TensorProto, numpy_helper
except ImportError:
    print("onnx/numpy for /usr/bin/python3 missing: skip")
    sys.exit(77)
import pvdtest
from pvdtest import Daemon, check, gemm_relu_onnx

binary = os.environ.get("PIVOTD_REAL", os.path.join(os.path.dirname(pvdtest.PIVOTD), "..", "..", "daemon", "pivotd"))
top = os.path.dirname(os.path.dirname(os.path.abspath(binary)))
if not any(os.path.exists(os.path.join(top, "backends", "opencl", p, "pivot-backend-opencl.so"))
           for p in (".libs", ".")):
    print("OpenCL backend not built: skip")
    sys.exit(77)
pvdtest.PIVOTD = binary

K, N = 16, 8
rng = np.random.default_rng(3)
w = rng.standard_normal((K, N)).astype(np.float32)
b = rng.standard_normal(N).astype(np.float32)


def add_model(repo, name, backends):
    os.makedirs(os.path.join(repo, name, "1"))
    open(os.path.join(repo, name, "1", "model.onnx"), "wb").write(gemm_relu_onnx(w, b))
    if backends is not None:
        with open(os.path.join(repo, name, "config.json"), "w") as f:
            f.write('{"backends": [%s]}' % ", ".join('"%s"' % s for s in backends))


x = rng.standard_normal((3, K)).astype(np.float32)
ref = np.maximum(x @ w + b, 0)
body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, K], "data": x.ravel().tolist()}]}


def serve_and_check(d, name, want):
    """want: the backend label every view must show."""
    st, j = d.json("POST", "/v2/models/%s/infer" % name, body)
    check(st == 200, "%s: infer %d %r" % (name, st, j))
    y = np.array(j["outputs"][0]["data"], np.float32).reshape(3, N)
    check(np.allclose(y, ref, rtol=1e-5, atol=1e-5), "%s: values %r vs %r" % (name, y, ref))
    st, j = d.json("GET", "/v2/models/%s" % name)
    check(st == 200 and j["backend"] == want, "%s: metadata backend %r, want %s" % (name, j.get("backend"), want))
    st, j = d.json("GET", "/v2/models/%s/stats" % name)
    check(st == 200 and j["model_stats"][0]["backend"] == want,
          "%s: stats backend %r, want %s" % (name, j["model_stats"][0].get("backend"), want))
    st, txt, _ = d.get("/metrics")
    txt = txt.decode()
    # Per-version series carry the backend; per-model ones (failures by
    # reason, loads) have no version and so no backend.
    series = [l for l in txt.splitlines()
              if not l.startswith("#") and 'model="%s",version=' % name in l]
    check(len(series) > 10, "%s: per-version metrics series: %r" % (name, series))
    bad = [l for l in series if 'backend="%s"' % want not in l]
    check(not bad, "%s: series without backend=%s: %r" % (name, want, bad[:3]))
    check(any(re.match(r'pivotd_request_duration_seconds_count\{[^}]*\} [1-9]', l) for l in series),
          "%s: request counted" % name)


repo = tempfile.mkdtemp(prefix="pivotd-backends-")
cache = tempfile.mkdtemp(prefix="pivotd-clcache-")
os.environ["XDG_CACHE_HOME"] = cache  # the OpenCL binary cache stays in the test
try:
    add_model(repo, "gpu", ["cuda", "opencl", "cpu"])
    add_model(repo, "nosuch", ["nosuch", "cpu"])
    add_model(repo, "plain", None)
    with Daemon(repo) as d:
        log = d.logtext()
        ocl_failed = re.search(r"backend 'opencl': .*using the next backend", log)
        gpu = "cpu" if ocl_failed else "opencl"
        if ocl_failed:
            print("no usable OpenCL device here, the log says so: %s" % ocl_failed.group(0))
        serve_and_check(d, "gpu", gpu)
        serve_and_check(d, "nosuch", "cpu")
        serve_and_check(d, "plain", "cpu")
        log = d.logtext()
        # The first choice that is missing is named, and so is the fallback.
        check("backend 'nosuch' (first in its backends list) runs none of its nodes; falling back to 'cpu'" in log,
              "fallback from nosuch logged:\n" + log)
        check(re.search(r"nosuch.*using the next backend", log), "the loader names the missing plugin:\n" + log)
        if gpu != "cpu":
            # cuda is first: without a GPU both its init failure and the
            # fallback are logged; with one, cuda runs the model.
            check(re.search(r"backend 'cuda': .*using the next backend", log) and
                  "backend 'cuda' (first in its backends list) runs none of its nodes; falling back to 'opencl'" in log
                  or re.search(r"model gpu version 1 loaded .*\(backend cuda\)", log), "cuda fallback logged:\n" + log)
        check(re.search(r"model plain version 1 loaded .*\(backend cpu\)", log), "plain on cpu:\n" + log)
        print("labels: gpu=%s nosuch=cpu plain=cpu" % gpu)

    # A kernel that fails to build: the OpenCL backend is skipped with the
    # compiler's message, the CPU serves the model.
    if not ocl_failed:
        os.environ["PIVOT_OPENCL_OPTIONS"] = "-Dfloat=no_such_type"
        with Daemon(repo) as d:
            log = d.logtext()
            check("opencl: kernel build failed" in log, "build failure logged:\n" + log)
            serve_and_check(d, "gpu", "cpu")
            check("backend 'cuda' (first in its backends list) runs none of its nodes; falling back to 'cpu'"
                  in d.logtext(), "fallback to cpu logged")
        del os.environ["PIVOT_OPENCL_OPTIONS"]
        print("kernel build failure: logged, cpu took over")
    print("backends: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
