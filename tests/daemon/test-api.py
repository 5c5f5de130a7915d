"""Every endpoint of pivotd against the real daemon: protocol answers,
values computed by the model, and 4xx with {"error"} for bad input."""
import json, os, re, shutil, struct, subprocess, threading
from pvdtest import *

repo = make_repo({
    "lin": {1: fake_model(2.0, 1.0), 2: fake_model(3.0, 0.0),
            "config": {"max_batch": 8, "max_queue_delay_us": 20000, "workers": 1}},
    "other": {1: fake_model(1.0, 0.5, n=3)},
    "slow": {1: fake_model(1.0, sleep_ms=400), "config": {"queue_size": 1, "workers": 1}},
})
try:
    with Daemon(repo, "--max-body", "64K") as d:
        st, j = d.json("GET", "/v2/health/live"); check(st == 200 and j["live"], "live")
        st, j = d.json("GET", "/v2/health/ready"); check(st == 200 and j["ready"], "ready")
        st, j = d.json("GET", "/v2")
        check(st == 200 and j["name"] == "pivotd" and "binary_tensor_data" in j["extensions"], "server metadata %r" % j)
        st, j = d.json("GET", "/v2/models/lin")
        check(st == 200 and j["versions"] == ["2"], "latest-1 policy serves only v2: %r" % j)
        check(j["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "input metadata %r" % j["inputs"])
        check(j["outputs"][0]["name"] == "y", "output metadata")
        st, j = d.json("GET", "/v2/models/lin/ready"); check(st == 200 and j["ready"], "model ready")
        st, j = d.json("GET", "/v2/models/lin/versions/1/ready"); check(st == 503 and not j["ready"], "v1 not loaded")

        # JSON infer, nested data, id echoed; values from the model (3x).
        x = [0.1, -2.5, 3.25e-3, 1e10, 7, 8, 9, 10]
        body = {"id": "req-7", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                           "data": [x[:4], x[4:]]}]}
        st, j = d.json("POST", "/v2/models/lin/infer", body)
        check(st == 200, "infer %d %r" % (st, j))
        want = [struct.unpack("f", struct.pack("f", struct.unpack("f", struct.pack("f", v))[0] * 3.0))[0] for v in x]
        check(j["id"] == "req-7" and j["model_name"] == "lin" and j["model_version"] == "2", "envelope %r" % j)
        out = j["outputs"][0]
        check(out["shape"] == [2, 4] and out["datatype"] == "FP32", "output shape %r" % out)
        check([struct.unpack("f", struct.pack("f", v))[0] for v in out["data"]] == want, "values %r vs %r" % (out["data"], want))
        # Specific version 2 and unknown version 1.
        st, j = d.json("POST", "/v2/models/lin/versions/2/infer", infer_body([1, 2, 3, 4]))
        check(st == 200 and j["outputs"][0]["data"] == [3, 6, 9, 12], "versioned infer %r" % j)
        st, j = d.json("POST", "/v2/models/lin/versions/1/infer", infer_body([1, 2, 3, 4]))
        check(st == 404 and "version 1" in j["error"], "unknown version %r" % j)
        st, j = d.json("POST", "/v2/models/nope/infer", infer_body([1, 2, 3, 4]))
        check(st == 404 and "nope" in j["error"], "unknown model %r" % j)

        # Binary input and binary output.
        xs = [1.5, -2, 3, 4, 5, 6, 7, 8]
        hdr = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                      "parameters": {"binary_data_size": 32}}],
                          "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
        st, data, h = d.request("POST", "/v2/models/lin/infer", hdr + struct.pack("8f", *xs),
                                {"Inference-Header-Content-Length": str(len(hdr))})
        check(st == 200, "binary infer %d %r" % (st, data[:200]))
        n = int(h["inference-header-content-length"])
        j = json.loads(data[:n])
        check(j["outputs"][0]["parameters"]["binary_data_size"] == 32, "binary size %r" % j)
        check(list(struct.unpack("8f", data[n:])) == [v * 3 for v in xs], "binary values")
        # Whole body one raw input (header length 0).
        st, data, h = d.request("POST", "/v2/models/lin/infer", struct.pack("4f", 1, 2, 3, 4),
                                {"Inference-Header-Content-Length": "0"})
        check(st == 200 and json.loads(data)["outputs"][0]["data"] == [3, 6, 9, 12], "raw body %d %r" % (st, data))
        # binary_data_output on the request with JSON input.
        st, data, h = d.request("POST", "/v2/models/lin/infer",
                                json.dumps(infer_body([1, 2, 3, 4], parameters={"binary_data_output": True})))
        n = int(h["inference-header-content-length"])
        check(st == 200 and struct.unpack("4f", data[n:]) == (3, 6, 9, 12), "binary_data_output")

        # Errors: always 4xx with {"error": ...} naming what is wrong.
        def err(body, code, *words, path="/v2/models/lin/infer", headers=None):
            st, data, _ = d.request("POST", path, body, headers)
            j = json.loads(data)
            check(st == code and isinstance(j.get("error"), str), "want %d, got %d %r" % (code, st, j))
            for w in words:
                check(w in j["error"], "%r not in %r" % (w, j["error"]))
        err('{"inputs": [', 400, "malformed JSON")
        err("[1,2]", 400, "JSON object")
        err(infer_body([1, 2, 3]  , n=3), 400, "'x'", "[1,3]", "[-1,4]")
        err({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}, 400, "'x'", "INT32", "FP32")
        err({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3]}]}, 400, "'x'", "3 elements")
        err({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, "a", 4]}]}, 400, "'x'", "not a number")
        err({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}, 400, "unknown input 'z'")
        err({"inputs": []}, 400, "missing input 'x'")
        err(infer_body([1, 2, 3, 4], outputs=[{"name": "q"}]), 400, "unknown output 'q'")
        err(json.dumps(infer_body([0.5] * 20000)), 413, "limit")
        err("{}", 400, "Inference-Header-Content-Length", headers={"Inference-Header-Content-Length": "x"})
        # Mutated bodies: any answer but a crash or a hang; errors are JSON.
        import random
        rnd = random.Random(7)
        good = json.dumps({"id": "a", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                                 "data": [[1, 2, 3, 4]]}], "outputs": [{"name": "y"}]})
        for i in range(300):
            b = bytearray(good.encode())
            for _ in range(rnd.randint(1, 4)):
                op = rnd.randint(0, 2)
                k = rnd.randrange(len(b))
                if op == 0: b[k] = rnd.choice(b'[]{}",:0123456789-eE. x')
                elif op == 1: del b[k:k + rnd.randint(1, 8)]
                else: b[k:k] = rnd.choice([b"[", b"]", b'"data":', b"1e999", b"-", b"[[[[", b"\\"])
            hdr = {"Inference-Header-Content-Length": str(rnd.randint(0, len(b) + 5))} if i % 5 == 0 else None
            st, data, _ = d.request("POST", "/v2/models/lin/infer", bytes(b), hdr)
            check(st in (200, 400), "mutated body %r -> %d" % (bytes(b), st))
            if st == 400:
                check("error" in json.loads(data), "error body")
        st, j = d.json("GET", "/v2/health/live"); check(st == 200, "alive after mutated bodies")
        st, j = d.json("GET", "/v2/nothing"); check(st == 404 and "error" in j, "unknown path")
        st, j = d.json("DELETE", "/v2/models/lin"); check(st == 405 and "error" in j, "wrong method")

        # Dynamic batching: 8 concurrent single-row requests share runs.
        res = []
        def one(i):
            st, j = d.json("POST", "/v2/models/lin/infer", infer_body([i, i, i, i]))
            res.append((st, i, j["outputs"][0]["data"] if st == 200 else j))
        ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
        check(all(st == 200 and out == [3 * i] * 4 for st, i, out in res), "batched results %r" % res)
        st, j = d.json("GET", "/v2/models/lin/stats")
        ms = j["model_stats"][0]
        check(ms["name"] == "lin" and ms["version"] == "2", "stats %r" % ms)
        check(ms["inference_stats"]["success"]["count"] >= 13, "success count %r" % ms["inference_stats"])
        check(ms["inference_stats"]["fail"]["count"] >= 5, "fail count %r" % ms["inference_stats"])
        check(any(b["batch_size"] > 1 for b in ms["batch_stats"]), "no batch > 1: %r" % ms["batch_stats"])
        check(ms["execution_count"] < ms["inference_count"], "batches counted once")
        st, j = d.json("GET", "/v2/models/stats"); check(st == 200 and len(j["model_stats"]) == 3, "all stats")
        st, j = d.json("GET", "/v2/models/lin/versions/2/stats"); check(st == 200 and len(j["model_stats"]) == 1, "version stats")
        st, j = d.json("GET", "/v2/models/lin/versions/7/stats"); check(st == 404, "stats of unknown version")
        st, j = d.json("GET", "/v2/models/lin/versions/2"); check(st == 200 and j["name"] == "lin", "version metadata")
        st, j = d.json("GET", "/v2/models/lin/versions/7"); check(st == 404, "metadata of unknown version")

        # A tiny model without batching runs on the HTTP thread once
        # measured (8 runs) while its queue is empty, on the workers
        # otherwise: the values are right either way, in sequence and with
        # concurrent clients mixing both paths.
        for i in range(20):
            st, j = d.json("POST", "/v2/models/other/infer", infer_body([i, -i, 0.25], n=3))
            check(st == 200 and j["outputs"][0]["data"] == [i + 0.5, 0.5 - i, 0.75], "inline %d: %r" % (i, j))
        res = []
        def other(i):
            for k in range(10):
                st, j = d.json("POST", "/v2/models/other/infer", infer_body([i, k, -1], n=3))
                res.append((st, i, k, j["outputs"][0]["data"] if st == 200 else j))
        ts = [threading.Thread(target=other, args=(i,)) for i in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        check(len(res) == 40 and all(st == 200 and out == [i + 0.5, k + 0.5, -0.5] for st, i, k, out in res),
              "inline and queued results %r" % res)
        st, j = d.json("POST", "/v2/models/other/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]})
        check(st == 400 and "error" in j, "bad shape still a 400 %r" % j)

        # Full queue: 503 with Retry-After, the others succeed.
        got = []
        def slow_one():
            got.append(d.request("POST", "/v2/models/slow/infer", json.dumps(infer_body([1, 2, 3, 4]))))
        ts = [threading.Thread(target=slow_one) for _ in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        codes = sorted(st for st, _, _ in got)
        check(codes.count(503) >= 1 and codes.count(200) >= 1, "queue full codes %r" % codes)
        check(all(h.get("retry-after") == "1" and "full" in json.loads(b)["error"] for st, b, h in got if st == 503), "503 needs Retry-After")
        st, j = d.json("GET", "/v2/models/nope/stats"); check(st == 404, "stats of unknown model")

        # Metrics: valid Prometheus text, histograms present.
        st, data, h = d.request("GET", "/metrics")
        check(st == 200 and h["content-type"].startswith("text/plain; version=0.0.4"), "metrics type")
        txt = data.decode()
        check(re.search(r'pivotd_request_duration_seconds_bucket\{model="lin",version="2",backend="[a-z]+",le="\+Inf"\} [1-9]', txt), "histogram")
        check('pivotd_inference_failure_total{model="lin",reason="bad_request"}' in txt, "failure counter")
        p = subprocess.run(["promtool", "check", "metrics"], input=data, capture_output=True)
        check(p.returncode == 0, "promtool: %s %s" % (p.stdout, p.stderr))

        # Repository: index, unload, load with a config override.
        st, j = d.json("POST", "/v2/repository/index", {})
        check(st == 200 and {e["name"] for e in j} == {"lin", "other", "slow"}, "index %r" % j)
        st, j = d.json("POST", "/v2/repository/models/other/unload"); check(st == 200, "unload %r" % j)
        st, j = d.json("GET", "/v2/models/other/ready"); check(st == 503, "unloaded not ready")
        st, j = d.json("GET", "/v2/health/ready"); check(st == 200, "ready ignores unloaded models")
        st, j = d.json("POST", "/v2/models/other/infer", infer_body([1, 2, 3], n=3)); check(st == 503, "infer unloaded %r" % j)
        st, j = d.json("POST", "/v2/repository/models/other/load", {"parameters": {"config": '{"max_bath": 2}'}})
        check(st == 400 and "max_bath" in j["error"], "bad override names the field %r" % j)
        st, j = d.json("POST", "/v2/repository/models/other/load", {"parameters": {"config": '{"max_batch": 2}'}})
        check(st == 200, "load %r" % j)
        st, j = d.json("GET", "/v2/models/other"); check(j["max_batch_size"] == 2, "override applied %r" % j)
        st, j = d.json("POST", "/v2/repository/models/ghost/load"); check(st == 404, "load unknown %r" % j)
        # Upload-and-swap: a broken file keeps v2 serving and returns the cause.
        st, j = d.json("PUT", "/v2/models/lin/versions/3/model", fake_model(5.0, fail=1))
        check(st == 400 and "checksum mismatch" in j["error"], "failed upload %r" % j)
        check(not os.path.exists(os.path.join(repo, "lin", "3")), "failed upload removed")
        st, j = d.json("POST", "/v2/models/lin/infer", infer_body([1, 1, 1, 1]))
        check(j["model_version"] == "2" and j["outputs"][0]["data"] == [3] * 4, "old version serves")
        st, j = d.json("PUT", "/v2/models/lin/versions/3/model", fake_model(5.0))
        check(st == 200 and j["state"] == "READY", "upload %r" % j)
        st, j = d.json("POST", "/v2/models/lin/infer", infer_body([1, 1, 1, 1]))
        check(j["model_version"] == "3" and j["outputs"][0]["data"] == [5] * 4, "new version serves %r" % j)
        st, j = d.json("PUT", "/v2/models/new/versions/1/model", fake_model(7.0))
        check(st == 200, "upload of a new model %r" % j)
        st, j = d.json("POST", "/v2/models/new/infer", infer_body([1, 1, 1, 1]))
        check(st == 200 and j["outputs"][0]["data"] == [7] * 4, "new model serves")
        st, j = d.json("PUT", "/v2/models/lin/versions/9/model", "x" * 70000)
        check(st == 200 or st == 400, "upload size limit is max-upload, not max-body")

    # Token: admin endpoints need it; others do not.
    with Daemon(repo, "--token", "s3cret") as d:
        st, j = d.json("POST", "/v2/repository/models/lin/unload"); check(st == 401 and "Bearer" in j["error"], "no token %r" % j)
        st, j = d.json("POST", "/v2/repository/models/lin/unload", None, {"Authorization": "Bearer wrong"}); check(st == 401, "bad token")
        st, j = d.json("POST", "/v2/repository/models/lin/unload", None, {"Authorization": "Bearer s3cret"}); check(st == 200, "token ok %r" % j)
        st, j = d.json("GET", "/v2/models/other"); check(st == 200, "non-admin without token")

    # Settings: a bad field or flag is named, exit 2.
    bad = os.path.join(repo, "bad.json")
    with open(bad, "w") as f:
        f.write('{"listen": "127.0.0.1:0", "max_bodyy": 5}')
    p = subprocess.run([PIVOTD, "--config", bad, "--repository", repo], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2 and "max_bodyy" in p.stderr, "bad config field: %d %s" % (p.returncode, p.stderr))
    p = subprocess.run([PIVOTD, "--config", "/nonexistent.json"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2, "missing --config file")
    p = subprocess.run([PIVOTD, "--bogus"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2 and "--bogus" in p.stderr, "bad flag %s" % p.stderr)
    p = subprocess.run([PIVOTD, "--threads", "many"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2 and "--threads" in p.stderr, "bad value %s" % p.stderr)
    # The shipped default config is valid: only the repository is refused.
    dflt = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "systemd", "pivotd.json")
    p = subprocess.run([PIVOTD, "--config", dflt, "--repository", "/nonexistent-repo"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2 and "repository" in p.stderr and "config" not in p.stderr, "default config: %s" % p.stderr)
    print("api: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
