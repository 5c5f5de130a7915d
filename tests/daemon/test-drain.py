"""SIGTERM drains: a slow request in flight completes with its answer, new
connections are refused at once, and pivotd exits 0."""
import shutil, socket, threading, time
from pvdtest import *

repo = make_repo({"slow": {1: fake_model(2.0, sleep_ms=1500)}})
try:
    d = Daemon(repo)
    try:
        out = {}

        def slow():
            out["r"] = d.json("POST", "/v2/models/slow/infer", infer_body([1, 2, 3, 4]))

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.4)
        t0 = time.time()
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        refused = False
        try:
            socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
        except OSError:
            refused = True
        check(refused, "a new connection was accepted while draining")
        t.join(10)
        st, j = out["r"]
        check(st == 200 and j["outputs"][0]["data"] == [2, 4, 6, 8], "in-flight request: %d %r" % (st, j))
        rc = d.proc.wait(10)
        check(rc == 0, "exit status %d" % rc)
        check(time.time() - t0 < 5, "drain took too long")
    except BaseException:
        sys.stderr.write(d.logtext())
        raise
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        shutil.rmtree(d.dir, ignore_errors=True)
    print("drain: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
