"""Repository watching and SIGHUP: a new version folder is picked up by the
poller; with polling off, SIGHUP rescans and re-reads the settings file
(a token added to the file then guards the admin endpoints), while flags
keep overriding the file."""
import shutil, time
from pvdtest import *


def wait_version(d, model, want, secs=10):
    deadline = time.time() + secs
    while time.time() < deadline:
        st, j = d.json("GET", "/v2/models/%s" % model)
        if st == 200 and j["versions"] == [want]:
            return True
        time.sleep(0.05)
    return False


def add_version(repo, model, v, text):
    os.makedirs(os.path.join(repo, model, str(v)))
    with open(os.path.join(repo, model, str(v), "model.onnx"), "w") as f:
        f.write(text)


repo = make_repo({"m": {1: fake_model(1.0)}})
try:
    with Daemon(repo, "--repository-poll-ms", "100") as d:
        add_version(repo, "m", 2, fake_model(2.0))
        check(wait_version(d, "m", "2"), "poller did not load version 2")
        st, j = d.json("POST", "/v2/models/m/infer", infer_body([1, 1, 1, 1]))
        check(j["outputs"][0]["data"] == [2] * 4, "version 2 serves")
        # A broken new version keeps version 2 serving and shows the cause.
        add_version(repo, "m", 3, fake_model(3.0, fail=1))
        time.sleep(0.6)
        st, j = d.json("POST", "/v2/models/m/infer", infer_body([1, 1, 1, 1]))
        check(st == 200 and j["model_version"] == "2", "old version still serves %r" % j)
        st, j = d.json("POST", "/v2/repository/index", {})
        check(any("checksum mismatch" in e["reason"] for e in j), "index shows the load error %r" % j)

    shutil.rmtree(os.path.join(repo, "m", "3"))
    with Daemon(repo) as d:  # polling off (the harness passes 0)
        add_version(repo, "m", 4, fake_model(4.0))
        time.sleep(0.3)
        st, j = d.json("GET", "/v2/models/m")
        check(j["versions"] == ["2"], "no polling: still version 2 %r" % j)
        with open(os.path.join(d.dir, "cfg.json"), "w") as f:
            f.write('{"token": "t0k", "repository_poll_ms": 50}')
        d.proc.send_signal(signal.SIGHUP)
        check(wait_version(d, "m", "4"), "SIGHUP did not rescan")
        st, j = d.json("POST", "/v2/repository/models/m/unload")
        check(st == 401, "token from the reloaded file not enforced: %d %r" % (st, j))
        # The flag --repository-poll-ms 0 still wins over the file's 50.
        add_version(repo, "m", 5, fake_model(5.0))
        time.sleep(0.5)
        st, j = d.json("GET", "/v2/models/m")
        check(j["versions"] == ["4"], "file overrode a flag after SIGHUP: %r" % j)

    # Unload-first: the swap works; a failed load brings the old file back.
    with Daemon(repo, "--unload-first") as d:
        st, j = d.json("PUT", "/v2/models/m/versions/6/model", fake_model(6.0))
        check(st == 200, "unload-first upload %r" % j)
        st, j = d.json("POST", "/v2/models/m/infer", infer_body([1, 1, 1, 1]))
        check(st == 200 and j["outputs"][0]["data"] == [6] * 4, "unload-first serves v6 %r" % j)
        st, j = d.json("PUT", "/v2/models/m/versions/7/model", fake_model(7.0, fail=1))
        check(st == 400 and "checksum mismatch" in j["error"], "unload-first failed upload %r" % j)
        st, j = d.json("POST", "/v2/models/m/infer", infer_body([1, 1, 1, 1]))
        check(st == 200 and j["model_version"] == "6", "unload-first fell back to v6 %r" % j)
    print("reload: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
