"""kill -9 in the middle of an upload, and at random points of upload-and-
swap: after a restart on the same repository every version folder holds a
whole model, no temp file is left, and the newest whole version serves
(the last good one, or the new one if its file was complete)."""
import os, random, shutil, socket, threading, time
from faultlib import *
from pvdtest import Daemon


def kill(d):
    d.proc.kill()
    d.proc.wait()
    shutil.rmtree(d.dir, ignore_errors=True)


repo = make_repo({"m": [1]})
try:
    # 1. Half an upload on the wire, then kill -9.
    d = Daemon(repo)
    blob = model_bytes(2)
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"PUT /v2/models/m/versions/2/model HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(blob))
    s.sendall(blob[: len(blob) // 2])
    deadline = time.time() + 10
    while not any(f.startswith(".upload-") for f in os.listdir(os.path.join(repo, "m"))):
        check(time.time() < deadline, "no temp file while uploading")
        time.sleep(0.01)
    time.sleep(0.1)
    kill(d)
    s.close()
    with Daemon(repo) as d:
        check(served(d, "m") == ["1"], "after kill -9 mid-upload m serves %r" % served(d, "m"))
        check(infer(d, "m")[0] == 200, "v1 does not answer")
        check(check_disk(repo, "m") == [1], "repository after kill -9 mid-upload")
        check("never finished" in d.logtext(), "stale upload removal not logged")

    # 2. kill -9 at random moments of upload-and-swap.
    rng = random.Random(1)
    outcomes = {"old": 0, "new": 0}
    good = 1
    for v in range(2, 12):
        d = Daemon(repo)
        def upload():
            try:
                d.json("PUT", "/v2/models/m/versions/%d/model" % v, model_bytes(v))
            except Exception:
                pass  # the daemon was killed under it: expected
        t = threading.Thread(target=upload)
        t.daemon = True
        t.start()
        time.sleep(rng.uniform(0, 0.03))
        kill(d)
        t.join(5)
        with Daemon(repo) as d:
            on_disk = check_disk(repo, "m")
            check(on_disk[-1] in (good, v), "kill at %d: disk holds %r" % (v, on_disk))
            check(served(d, "m") == [str(on_disk[-1])], "kill at %d: serves %r, disk %r" % (v, served(d, "m"), on_disk))
            st, j = infer(d, "m")
            check(st == 200 and int(j["model_version"]) == on_disk[-1], "kill at %d: %d %r" % (v, st, j))
        outcomes["new" if on_disk[-1] == v else "old"] += 1
        good = on_disk[-1]
    print("kill -9 during swaps: %r" % outcomes)
    print("kill9: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
