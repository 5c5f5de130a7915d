"""Helpers for pivotd black-box tests: a temp repository of fake models,
the real daemon binary started on a free port, and a small HTTP client.
The daemon is always stopped (finally/atexit), whatever the test does."""
import atexit, http.client, json, os, shutil, signal, struct, subprocess, sys, tempfile, time

PIVOTD = os.environ.get("PIVOTD", os.path.join(os.path.dirname(__file__), "pivotd-fake"))
_live = []


def _cleanup():
    for p in _live:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_cleanup)


def fake_model(scale, bias=0.0, n=4, sleep_ms=0, fail=0):
    return "PVFAKE scale=%r bias=%r n=%d sleep_ms=%d fail=%d\n" % (scale, bias, n, sleep_ms, fail)


def make_repo(models):
    """models: {name: {version: text, 'config': dict}}"""
    root = tempfile.mkdtemp(prefix="pivotd-test-")
    for name, vs in models.items():
        os.makedirs(os.path.join(root, name))
        for v, text in vs.items():
            if v == "config":
                with open(os.path.join(root, name, "config.json"), "w") as f:
                    json.dump(text, f)
                continue
            d = os.path.join(root, name, str(v))
            os.makedirs(d)
            with open(os.path.join(d, "model.onnx"), "w") as f:
                f.write(text)
    return root


class Daemon:
    def __init__(self, repo, *args, wait_ready=True):
        self.repo = repo
        self.dir = tempfile.mkdtemp(prefix="pivotd-run-")
        self.port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "log"), "w+")
        cmd = [PIVOTD, "--config", "/dev/null" if False else os.path.join(self.dir, "cfg.json"),
               "--repository", repo, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
               "--repository-poll-ms", "0"] + list(args)
        with open(os.path.join(self.dir, "cfg.json"), "w") as f:
            f.write("{}")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        _live.append(self.proc)
        deadline = time.time() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("pivotd did not start:\n" + self.logtext())
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())
        if wait_ready:
            while True:
                st, _, _ = self.get("/v2/health/ready")
                if st == 200:
                    break
                if time.time() > deadline:
                    raise RuntimeError("pivotd not ready:\n" + self.logtext())
                time.sleep(0.02)

    def logtext(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.conn()
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if conn is None:
            c.close()
        return r.status, data, hdrs

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None, headers=None, conn=None):
        return self.request("POST", path, body, headers, conn)

    def json(self, method, path, body=None, headers=None):
        st, data, _ = self.request(method, path, body, headers)
        return st, json.loads(data) if data else None

    def rss(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("pivotd did not exit on SIGTERM")
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc = self.stop()
        log = self.logtext()
        if exc[0] is not None:
            sys.stderr.write("---- pivotd log\n" + log)
        shutil.rmtree(self.dir, ignore_errors=True)
        if exc[0] is None:
            # Sanitizer builds report into the log: a finding fails the test.
            check("runtime error" not in log and "Sanitizer" not in log, "sanitizer report:\n" + log[-4000:])
            check(rc == 0, "pivotd exited %d after SIGTERM" % rc)


def infer_body(x, n=4, **extra):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(x) // n, n], "data": x}]}
    body.update(extra)
    return body


def gemm_relu_onnx(w, b):
    """ONNX bytes of y = Relu(x @ w + b) with a variable batch (x is
    [N, K] for w [K, N]). Needs python3-onnx: the callers import it (and
    skip without it) before they call this."""
    from onnx import helper, TensorProto, numpy_helper
    k, n = w.shape
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "gemm_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def gemm_relu(seed, k=8, n=3):
    """A random Gemm+Relu model: (onnx bytes, w, b)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    return gemm_relu_onnx(w, b), w, b


def check(cond, what):
    if not cond:
        raise AssertionError(what)
