"""The dashboard at GET / on the real pivotd with two small ONNX models under
load: first its JSON feed (/v2/dashboard/series) against what the clients
themselves counted, then the page in headless Chromium (cdp-check.js): it
loads, its numbers change under load, a hot swap shows on the timeline,
nothing is logged to the console. The screenshot is kept as
dashboard.png in the build directory. Skips (exit 77) without chromium,
node or python3-onnx."""
import os, re, shutil, subprocess, sys, tempfile, threading, time
try:
    import numpy as np
    import onnx
    from onnx import helper, TensorProto, numpy_helper
except ImportError:
    print("onnx/numpy for /usr/bin/python3 missing: skip")
    sys.exit(77)
import pvdtest
from pvdtest import *

HERE = os.path.dirname(os.path.abspath(__file__))
ARTIFACTS = os.environ.get("DASH_ARTIFACTS", os.getcwd())
CHROMIUM = shutil.which(os.environ.get("CHROMIUM", "chromium"))
NODE = shutil.which("node")
if not CHROMIUM or not NODE:
    print("chromium or node missing: skip")
    sys.exit(77)


def mlp(seed, k, h, n):
    """Gemm-Relu-Gemm with random weights: big enough to take some time."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((k, h)) / np.sqrt(k)).astype(np.float32)
    w2 = (rng.standard_normal((h, n)) / np.sqrt(h)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
         helper.make_node("Gemm", ["r", "w2"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


class Load:
    """Client threads posting to one model; counts what succeeded."""

    def __init__(self, d, model, k, threads, pause=0.0):
        self.ok, self.bad, self.stop = 0, [], threading.Event()
        self.mu = threading.Lock()
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, k],
                                       "data": [float(i % 7) for i in range(k)]}]})

        def run():
            c = d.conn()
            while not self.stop.is_set():
                try:
                    st, data, _ = d.post("/v2/models/%s/infer" % model, body, conn=c)
                except Exception as e:
                    self.bad.append(repr(e))
                    if len(self.bad) > 10:
                        return  # the daemon is gone: the test reports it
                    c = d.conn()
                    continue
                with self.mu:
                    if st == 200:
                        self.ok += 1
                    else:
                        self.bad.append((st, data[:200]))
                if pause:
                    time.sleep(pause)

        self.ts = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        [t.start() for t in self.ts]

    def end(self):
        self.stop.set()
        [t.join() for t in self.ts]
        check(not self.bad, "failed requests: %r" % self.bad[:3])
        return self.ok


def series(d, since=None):
    st, j = d.json("GET", "/v2/dashboard/series" + ("" if since is None else "?since=%s" % since))
    check(st == 200, "series: %d %r" % (st, j))
    return j


def of(j, model, live=None):
    return [s for s in j["series"] if s["model"] == model and (live is None or s["live"] == live)]


repo = tempfile.mkdtemp(prefix="pivotd-dash-")
try:
    for name, blob in (("mlp", mlp(1, 256, 512, 10)), ("classifier", mlp(3, 64, 64, 4))):
        os.makedirs(os.path.join(repo, name, "1"))
        with open(os.path.join(repo, name, "1", "model.onnx"), "wb") as f:
            f.write(blob)
    v2 = os.path.join(repo, "mlp-v2.onnx")
    with open(v2, "wb") as f:
        f.write(mlp(2, 256, 512, 10))
    pvdtest.PIVOTD = os.environ.get("PIVOTD_REAL", os.path.join(HERE, "..", "..", "daemon", "pivotd"))
    with Daemon(repo) as d:
        # The page: one self-contained HTML document.
        st, page, hdrs = d.get("/")
        check(st == 200 and hdrs["content-type"].startswith("text/html"), "GET / %d %r" % (st, hdrs))
        text = page.decode("utf-8")
        check("/v2/dashboard/series" in text, "the page polls the series endpoint")
        remote = [u for u in re.findall(r"(?:https?:)?//[\w.-]+[^\s\"')]*", text)
                  if not u.startswith("http://www.w3.org/2000/svg")]
        check(not remote, "the page refers to other hosts: %r" % remote)
        check(re.search(r"<script[^>]+src=|<link[^>]+stylesheet|@import", text) is None,
              "the page loads no other file")
        check(d.request("POST", "/")[0] == 405, "POST / is refused")

        # Bad arguments are named.
        for bad in ("abc", "-5", "12x"):
            st, j = d.json("GET", "/v2/dashboard/series?since=" + bad)
            check(st == 400 and bad in j["error"], "since=%s: %d %r" % (bad, st, j))

        busy = Load(d, "mlp", 256, threads=2)
        calm = Load(d, "classifier", 64, threads=1, pause=0.02)
        # At least three samples under load (more time on a slow machine).
        deadline = time.time() + 20
        while True:
            time.sleep(1)
            j = series(d)
            if all(len([p for p in s["points"] if p[1] > 0]) >= 3 for s in j["series"]) or time.time() > deadline:
                break
        names = sorted(m["name"] for m in j["models"])
        check(names == ["classifier", "mlp"], "models %r" % names)
        check(len(j["bucket_le_ms"]) + 1 == len(of(j, "mlp")[0]["window"]["hist"]), "one count per bucket and +Inf")
        loads = sorted((e["model"], e["to"]) for e in j["events"] if e["kind"] == "load")
        check(loads == [("classifier", "1"), ("mlp", "1")], "load events %r" % j["events"])
        for name in ("mlp", "classifier"):
            (s,) = of(j, name, live=True)
            w = s["window"]
            check(s["version"] == "1" and s["backend"], "series %s %r" % (name, s["version"]))
            check(w["count"] > 0 and sum(w["hist"]) == w["count"], "%s window %r" % (name, w))
            check(0 < w["p50_ms"] <= w["p90_ms"] <= w["p95_ms"] <= w["p99_ms"], "%s percentiles %r" % (name, w))
            pts = s["points"]
            check(len(pts) >= 3 and all(b[0] - a[0] >= 500 for a, b in zip(pts, pts[1:])), "%s points once a second" % name)
            check(any(p[1] > 0 for p in pts[-3:]), "%s rate under load: %r" % (name, pts[-3:]))
            for p in pts:
                if p[1] > 0:
                    check(p[2] is not None and p[2] <= p[3] <= p[4], "%s point percentiles %r" % (name, p))
        # The busy model has the higher rate.
        check(of(j, "mlp", True)[0]["window"]["rate"] > of(j, "classifier", True)[0]["window"]["rate"] * 0.5,
              "rates %r" % [s["window"]["rate"] for s in j["series"]])
        # `since` returns only newer points.
        newest = max(s["points"][-1][0] for s in j["series"])
        later = series(d, newest)
        check(all(p[0] > newest for s in later["series"] for p in s["points"]), "since filters points")

        # The page in Chromium; it also swaps mlp to version 2 half-way.
        shot = os.path.join(ARTIFACTS, "dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        env = dict(os.environ, CHROMIUM=CHROMIUM)
        probe = subprocess.run([NODE, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"])
        cmd = [NODE] + ([] if probe.returncode == 0 else ["--experimental-websocket"])
        r = subprocess.run(cmd + [os.path.join(HERE, "cdp-check.js"), "http://127.0.0.1:%d/" % d.port,
                                  shot, "mlp", "2", v2], env=env, capture_output=True, text=True, timeout=120)
        sys.stderr.write(r.stderr[-3000:])
        check(r.returncode == 0, "cdp-check failed (%d)" % r.returncode)
        seen = json.loads(r.stdout.strip().splitlines()[-1])
        print("page before: %r" % seen["first"]["models"])
        print("page after swap: %r" % seen["last"]["models"])
        check(not seen["errors"], "console errors: %r" % seen["errors"])
        origin = "http://127.0.0.1:%d/" % d.port
        check(seen["requests"] and all(u.startswith(origin) for u in seen["requests"]),
              "the page asked only its own server: %r" % seen["requests"])
        a, b, z = seen["first"], seen["second"], seen["last"]
        check(a["title"] == "pivotd dashboard" and z["status"].startswith("live"), "status %r" % z["status"])
        num = lambda s, m, k: float(s["models"][m][k].replace(",", "").rstrip("kM"))
        check(num(b, "mlp", "count") > num(a, "mlp", "count"), "the request count moves")
        check(num(z, "classifier", "count") > num(a, "classifier", "count"), "every card moves")
        check(num(b, "mlp", "rate") > 0 and b["models"]["mlp"]["p99"] != "–", "rate and latency shown: %r" % b["models"]["mlp"])
        check(seen["swapStatus"] == 200, "swap answered %r" % seen["swapStatus"])
        check(z["models"]["mlp"]["versions"].startswith("v2") and z["models"]["mlp"]["state"] == "READY",
              "card after swap %r" % z["models"]["mlp"])
        check(any("v1 → v2" in m for m in z["swapMarkers"]), "swap marker %r" % z["swapMarkers"])
        check(z["ratePoints"]["mlp"] >= 5, "rate line drawn: %r" % z["ratePoints"])
        check(z["histBars"] >= 8 and "mlp" in z["histTitle"], "histogram of the busiest model: %r" % z["histTitle"])
        with open(shot, "rb") as f:
            png = f.read()
        check(png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1280, "screenshot is a 1280-wide PNG")
        print("screenshot: %s (%d bytes)" % (shot, len(png)))

        # A failed load shows as an event, and the old version keeps serving.
        with open(v2, "rb") as f:
            blob = f.read()
        st, j = d.json("PUT", "/v2/models/mlp/versions/3/model", blob[: len(blob) // 3])
        check(st == 400, "truncated upload refused: %d" % st)

        n_busy, n_calm = busy.end(), calm.end()
        time.sleep(1.5)  # one more sample after the last request
        j = series(d)
        kinds = [(e["model"], e["kind"], e.get("from"), e.get("to")) for e in j["events"]]
        check(("mlp", "swap", "1", "2") in kinds, "swap event %r" % kinds)
        failed = [e for e in j["events"] if e["kind"] == "load_failed"]
        check(len(failed) == 1 and failed[0]["model"] == "mlp" and failed[0]["message"], "failed load event %r" % failed)
        check([s["version"] for s in of(j, "mlp", live=True)] == ["2"], "v2 serves")
        # The dashboard counted exactly what the clients got, across the swap
        # too: what v1 served after its last sample is read as it is freed.
        for name, n in (("classifier", n_calm), ("mlp", n_busy)):
            got = sum(s["total"]["count"] for s in of(j, name))
            check(got == n, "%s: dashboard %d, clients %d" % (name, got, n))
        print("requests: mlp %d, classifier %d; dashboard agrees" % (n_busy, n_calm))
    print("dashboard: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
