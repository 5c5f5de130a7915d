"""A backend that fails: when its prepare fails its nodes fall back to the
CPU backend; when its execute fails once the model serves, each request
gets a clear 500 naming the backend; when it fails the load's warm-up, the
model is not ready and says why. Other models serve on throughout."""
import os, shutil, time
from faultlib import *
from pvdtest import Daemon


def start(repo, wait_ready=True):
    # Server readiness needs every model ready: not so with a failed load.
    d = Daemon(repo, "--backend-dir", FAULT_LIBS, wait_ready=wait_ready)
    deadline = time.time() + 20
    while not all(w in d.logtext() for w in ("model prep version 1 loaded", "model ok version 1 loaded", "exec/1")):
        check(time.time() < deadline, "models not loaded:\n" + d.logtext())
        time.sleep(0.05)
    return d


repo = make_repo({"prep": [1], "exec": [1], "ok": [1]},
                 {"prep": {"backends": ["prepfail", "cpu"]}, "exec": {"backends": ["execfail", "cpu"]}})
try:
    with start(repo) as d:
        st, j = infer(d, "prep")
        check(st == 200, "prepare failure did not fall back to the CPU: %d %r" % (st, j))
        log = d.logtext()
        check("out of device memory" in log and "CPU backend" in log, "fallback not logged:\n" + log)
        for i in range(3):
            st, j = infer(d, "exec")
            check(st == 500 and "execfail" in j["error"] and "device lost" in j["error"],
                  "execute failure answered %d %r" % (st, j))
            check(infer(d, "ok")[0] == 200, "a healthy model failed beside a failing one")
        print("execute failure answered: %s" % j["error"])
        check(d.get("/v2/health/live")[0] == 200, "daemon not live after backend failures")
    os.environ["PV_FAULT_EXEC_ALWAYS"] = "1"
    try:
        d = start(repo, wait_ready=False)
    finally:
        del os.environ["PV_FAULT_EXEC_ALWAYS"]
    with d:
        st, j = infer(d, "exec")
        check(st == 503 and "warm-up" in j["error"] and "device lost" in j["error"],
              "a model failing its warm-up answered %d %r" % (st, j))
        print("warm-up failure answered: %s" % j["error"])
        check(d.get("/v2/models/exec/ready")[0] != 200, "exec ready")
        check(infer(d, "ok")[0] == 200 and infer(d, "prep")[0] == 200, "healthy models failed")
    print("backend faults: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
