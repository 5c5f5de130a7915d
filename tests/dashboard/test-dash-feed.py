"""GET /v2/dashboard/series on pivotd-fake, whose models take a known time
(sleep_ms): latency percentiles land in the right bucket, failures and
queue depth show in the points, and loads, unloads, hot swaps and failed
loads are logged as events; after forty quick swaps the newest version is
the live one."""
import shutil, threading, time
from pvdtest import *


def series(d):
    st, j = d.json("GET", "/v2/dashboard/series")
    check(st == 200, "series: %d %r" % (st, j))
    return j


def of(j, model, live=None):
    return [s for s in j["series"] if s["model"] == model and (live is None or s["live"] == live)]


repo = make_repo({
    "slow": {1: fake_model(1.0, sleep_ms=30), "config": {"max_batch": 1, "workers": 1}},
    "fast": {1: fake_model(2.0)},
})
try:
    with Daemon(repo) as d:
        # Four clients on a one-worker model that takes 30 ms: they queue.
        stop = threading.Event()
        done = [0]

        def client():
            c = d.conn()
            while not stop.is_set():
                st, _, _ = d.post("/v2/models/slow/infer", json.dumps(infer_body([1, 2, 3, 4])), conn=c)
                check(st == 200, "slow infer %d" % st)
                done[0] += 1

        ts = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        [t.start() for t in ts]
        for _ in range(5):
            st, _, _ = d.post("/v2/models/fast/infer", json.dumps(infer_body([1, 2, 3])))
            check(st == 400, "wrong shape refused")
        for _ in range(20):
            check(d.post("/v2/models/fast/infer", json.dumps(infer_body([1, 2, 3, 4])))[0] == 200, "fast infer")
        time.sleep(3.2)
        stop.set()
        [t.join() for t in ts]
        time.sleep(1.2)
        j = series(d)

        (s,) = of(j, "slow", live=True)
        # Each request waits 30 ms in the model plus its turn in the queue,
        # so the median is at least one model run; the 30 ms run itself
        # falls in the (25, 50] ms bucket.
        p50 = s["total"]["p50_ms"]
        check(25 < p50 <= 1000, "slow p50 %r" % p50)
        check(s["total"]["mean_ms"] >= 30, "slow mean %r" % s["total"]["mean_ms"])
        check(s["total"]["count"] == done[0], "slow count %d, clients %d" % (s["total"]["count"], done[0]))
        hist, le = s["total"]["hist"], j["bucket_le_ms"]
        below = sum(n for n, b in zip(hist, le) if b <= 25)
        check(below == 0, "no request faster than the model's 30 ms: %r" % hist)
        busy = [p for p in s["points"] if p[1] > 0]
        check(busy and max(p[9] for p in busy) >= 1, "queue depth seen under load: %r" % busy)
        check(all(p[6] is not None and p[7] is not None and p[7] >= 25 for p in busy),
              "queue and compute times per point: %r" % busy[:3])
        check(max(p[6] for p in busy) > 10, "queueing shows as queue time: %r" % [p[6] for p in busy])

        (f,) = of(j, "fast", live=True)
        check(f["total"]["count"] == 20 and f["total"]["fail"] == 5, "fast totals %r" % f["total"])
        check(sum(p[8] for p in f["points"]) == 5, "failures in the points")
        (fm,) = [m for m in j["models"] if m["name"] == "fast"]
        check(fm["fails"] == 5 and fm["state"] == "READY" and fm["versions"] == ["1"], "fast model %r" % fm)

        # Forty quick hot swaps under light load.
        for v in range(2, 42):
            st, r = d.json("PUT", "/v2/models/fast/versions/%d/model" % v, fake_model(float(v)))
            check(st == 200, "swap to %d: %r" % (v, r))
            d.post("/v2/models/fast/infer", json.dumps(infer_body([1, 2, 3, 4])))
            if v % 10 == 0:
                time.sleep(1.1)  # let some swaps fall into separate samples
        st, r = d.json("PUT", "/v2/models/fast/versions/42/model", fake_model(1.0, fail=1))
        check(st == 400 and "checksum" in r["error"], "failed load: %r" % r)
        st, r = d.json("POST", "/v2/repository/models/slow/unload")
        check(st == 200, "unload %r" % r)
        time.sleep(1.3)
        j = series(d)
        check(all(s["points"] for s in j["series"]), "every series has points")
        fv = [int(s["version"]) for s in of(j, "fast")]
        check(len(fv) == len(set(fv)) and 2 <= len(fv) <= 41, "one series per sampled version: %r" % fv)
        check([s["version"] for s in of(j, "fast", live=True)] == ["41"], "v41 serves: %r" %
              [(s["version"], s["live"]) for s in of(j, "fast")])
        check(of(j, "slow", live=True) == [] and len(of(j, "slow")) == 1, "the unloaded version is kept, not live")
        ev = [(e["model"], e["kind"], e.get("from"), e.get("to")) for e in j["events"]]
        swaps = [e for e in ev if e[1] == "swap"]
        check(len(swaps) >= 4 and swaps[-1][3] == "41", "swap events %r" % swaps)
        versions = [int(e[3]) for e in swaps]
        check(versions == sorted(versions), "swaps in order")
        check(("slow", "unload", "1", None) in ev, "unload event %r" % ev)
        for e in j["events"]:
            if e["kind"] == "swap":
                check(e["added"] == [e["to"]] and e["removed"] == [e["from"]], "one in, one out: %r" % e)
        first = sorted((e["model"], e["added"]) for e in j["events"] if e["kind"] == "load")
        check(first == [("fast", ["1"]), ("slow", ["1"])], "start-up loads %r" % first)
        failed = [e for e in j["events"] if e["kind"] == "load_failed"]
        check(len(failed) == 1 and "checksum" in failed[0]["message"], "failed load event %r" % failed)
        (sm,) = [m for m in j["models"] if m["name"] == "slow"]
        check(sm["state"] == "UNLOADED" and sm["versions"] == [], "slow model %r" % sm)
        check(len(j["events"]) <= 64, "events are bounded")
    print("dashboard feed: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
