"""Helpers for the client tests: a temp repository holding small ONNX
models built with the onnx helper API, the real pivotd started on a free
port (tests/daemon/pvdtest.py's Daemon), and a runner for the client
programs. Skips (exit 77) where python3-onnx or numpy is missing."""
import os, shutil, subprocess, sys, tempfile
try:
    import numpy as np
    import onnx
    from onnx import helper, TensorProto, numpy_helper
except ImportError:
    print("onnx/numpy for /usr/bin/python3 missing: skip")
    sys.exit(77)
import pvdtest
from pvdtest import Daemon, check, gemm_relu

BUILD = os.environ.get("CLIENTS_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "clients"))
PIVOTCTL = os.path.join(BUILD, "pivotctl")
PIVOT_BENCH = os.path.join(BUILD, "pivot-bench")
pvdtest.PIVOTD = os.environ.get("PIVOTD_REAL", os.path.join(BUILD, "..", "daemon", "pivotd"))
BACKEND_DIR = os.environ.get("PIVOTD_BACKENDS")


def reference(x, w, b):
    return np.maximum(x @ w + b, 0)


def make_repo(models):
    """models: {name: {version: onnx bytes}} -> repository path."""
    root = tempfile.mkdtemp(prefix="pivotd-clients-")
    for name, versions in models.items():
        for v, blob in versions.items():
            d = os.path.join(root, name, str(v))
            os.makedirs(d)
            with open(os.path.join(d, "model.onnx"), "wb") as f:
                f.write(blob)
    return root


def start(repo, *args):
    extra = ["--backend-dir", BACKEND_DIR] if BACKEND_DIR else []
    return Daemon(repo, *(extra + list(args)))


def run(argv, env=None, timeout=120, cwd=None):
    """(exit code, stdout, stderr) of a client program; never inherits the
    caller's PIVOTD_URL/PIVOTD_TOKEN unless env gives them."""
    e = {k: v for k, v in os.environ.items() if k not in ("PIVOTD_URL", "PIVOTD_TOKEN")}
    e.update(env or {})
    p = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=timeout, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def url(d):
    return "http://127.0.0.1:%d" % d.port


def free_port():
    """A port nobody listens on (bound, then closed)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
