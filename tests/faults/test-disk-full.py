"""Disk full while uploading (write, then fsync, fail with ENOSPC through
the enospc.c shim): the upload is refused with 507 and the reason, nothing
half-written is left in the repository, the old version serves on; once
space is back the same upload succeeds."""
import os, shutil
from faultlib import *
from pvdtest import Daemon

shim = os.path.join(FAULT_LIBS, "libenospc.so")
check(os.path.exists(shim), "build the shim first: %s" % shim)
repo = make_repo({"m": [1]})
blob = model_bytes(2)
try:
    for mode in ({"PV_ENOSPC_AFTER": str(len(blob) // 3)}, {"PV_ENOSPC_FSYNC": "1"}):
        env = dict(mode, LD_PRELOAD=shim, PV_ENOSPC_MATCH="/.upload-",
                   # The shim is preloaded ahead of a sanitizer runtime.
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            d = Daemon(repo)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        with d:
            st, j = d.json("PUT", "/v2/models/m/versions/2/model", blob)
            check(st == 507 and "No space left" in j["error"], "%r: upload answered %d %r" % (mode, st, j))
            print("%s: %s" % (list(mode)[0], j["error"]))
            check(served(d, "m") == ["1"], "after a failed upload m serves %r" % served(d, "m"))
            check(infer(d, "m")[0] == 200, "v1 stopped serving")
            check(check_disk(repo, "m") == [1], "repository changed")
    with Daemon(repo) as d:
        st, j = d.json("PUT", "/v2/models/m/versions/2/model", blob)
        check(st == 200 and served(d, "m") == ["2"], "upload with space back: %d %r" % (st, j))
        check(infer(d, "m")[0] == 200 and check_disk(repo, "m") == [1, 2], "v2 after the disk freed")
    print("disk full: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
