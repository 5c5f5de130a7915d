"""pivot-bench against the real pivotd: a short concurrency sweep (1 s
windows, 1:2:1) whose CSV and JSON rows must agree with each other and
with the server's own request count; rate mode, JSON payloads, .npy
inputs, --compare, and the exit codes."""
import csv, json, os, shutil, subprocess, tempfile
from clienttest import *

blob1, _, _ = gemm_relu(1)
blob2, _, _ = gemm_relu(2, k=8, n=3)
repo = make_repo({"mlp": {1: blob1}, "mlp2": {1: blob2}})
tmp = tempfile.mkdtemp(prefix="pivot-bench-test-")
try:
    with start(repo) as d:
        env = {"PIVOTD_URL": url(d)}
        before = d.json("GET", "/v2/models/mlp/stats")[1]["model_stats"][0]["inference_stats"]["success"]["count"]
        c, j = os.path.join(tmp, "r.csv"), os.path.join(tmp, "r.json")
        rc, out, err = run([PIVOT_BENCH, "mlp", "--window", "1", "--warmup", "0.2", "--max-windows", "4",
                            "--concurrency", "1:2:1", "--csv", c, "--json", j], env=env)
        check(rc == 0, "bench: %d %s %s" % (rc, out, err))
        rows = list(csv.DictReader(open(c)))
        check([r["concurrency"] for r in rows] == ["1", "2"], "csv levels %r" % rows)
        doc = json.load(open(j))
        check(doc["url"] == url(d) and doc["payload"] == "binary" and len(doc["results"]) == 2, "json head %r" % doc)
        total = before
        for r, jr in zip(rows, doc["results"]):
            thr, p50, p90, p95, p99 = (float(r[k]) for k in ("throughput_per_s", "p50_us", "p90_us", "p95_us", "p99_us"))
            check(thr > 0 and 0 < p50 <= p90 <= p95 <= p99, "percentiles ordered, throughput positive: %r" % r)
            check(int(r["errors"]) == 0 and int(r["requests"]) > 0 and 1 <= int(r["windows"]) <= 4, "counts %r" % r)
            # the server saw each request; its time per request covers queue + compute
            st, sq, sc = float(r["server_total_us"]), float(r["server_queue_us"]), float(r["server_compute_us"])
            check(st > 0 and sc > 0 and sq >= 0 and st + 1 >= sq + sc, "server split %r" % r)
            # a client's wait includes the server's time for the same requests
            check(float(r["mean_us"]) >= 0.9 * st, "client mean latency below the server's: %r" % r)
            check(abs(jr["throughput_per_s"] - thr) < 0.01 and jr["concurrency"] == int(r["concurrency"]), "csv/json agree %r %r" % (r, jr))
        after = d.json("GET", "/v2/models/mlp/stats")[1]["model_stats"][0]["inference_stats"]["success"]["count"]
        measured = sum(int(r["requests"]) for r in rows)
        check(after - before >= measured, "server counted %d requests, bench measured %d" % (after - before, measured))
        check("concurrency" in out and "infer/s" in out, "text table %r" % out)

        # rate mode with JSON payloads and an .npy input; compare two models
        x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
        np.save(os.path.join(tmp, "x.npy"), x)
        rc, out, err = run([PIVOT_BENCH, "mlp", "--compare", "mlp2", "--rate", "50", "--window", "0.5", "--warmup", "0",
                            "--max-windows", "3", "--json-payload", "--input", "x=" + os.path.join(tmp, "x.npy"),
                            "--json", j, "--quiet"], env=env)
        check(rc == 0, "rate/compare: %d %s %s" % (rc, out, err))
        doc = json.load(open(j))
        r0, r1 = doc["results"][0], doc["compare"][0]
        check(doc["payload"] == "json" and r0["rate"] == 50 and r1["model"] == "mlp2", "rate doc %r" % doc)
        # an open loop at 50/s delivers about 50/s whatever the model
        check(35 <= r0["throughput_per_s"] <= 65, "rate held: %r" % r0)
        check(abs(r1["throughput_ratio"] - r1["throughput_per_s"] / r0["throughput_per_s"]) < 1e-6, "ratio %r" % r1)
        check("relative to" in out, "compare table %r" % out)
        # the server batched the 2-row .npy input: it reports batch >= 1 and saw 2-row requests
        st = d.json("GET", "/v2/models/mlp/stats")[1]["model_stats"][0]
        check(any(b["batch_size"] >= 2 for b in st["batch_stats"]), "2-row requests reached the model %r" % st["batch_stats"])

        # on a terminal, a progress line per window on stderr; never in a pipe
        import pty
        master, slave = pty.openpty()
        p = subprocess.run([PIVOT_BENCH, "mlp", "--window", "0.3", "--warmup", "0", "--max-windows", "3"],
                           stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ, PIVOTD_URL=url(d)), timeout=60)
        os.close(slave)
        tty = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            tty += chunk
        os.close(master)
        check(p.returncode == 0 and b"\r" in tty and b"window 1/3" in tty, "progress line on a tty: %r" % tty)
        check(b"window 1/3" not in p.stdout, "progress kept off stdout")

        # exit codes
        rc, _, err = run([PIVOT_BENCH, "nosuch", "--window", "0.2"], env=env)
        check(rc == 1 and "nosuch" in err, "unknown model: %d %r" % (rc, err))
        for argv in (["mlp", "--concurrency", "0"], ["mlp", "--concurrency", "2:1"], ["mlp", "--window"], [],
                     ["mlp", "--bogus"], ["mlp", "--input", os.path.join(tmp, "none.npy")]):
            rc, _, err = run([PIVOT_BENCH] + argv, env=env)
            check(rc == 2 and err.strip(), "usage error %r: %d %r" % (argv, rc, err))
    rc, _, err = run([PIVOT_BENCH, "mlp", "--url", "http://127.0.0.1:%d" % free_port()])
    check(rc == 3, "no server: %d %r" % (rc, err))
    print("pivot-bench: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
