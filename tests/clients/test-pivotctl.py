"""pivotctl against the real pivotd: every command, text and --json
output, the values infer writes against numpy, and each exit code
(0 ok, 1 refused, 2 usage, 3 cannot connect)."""
import json, os, shutil, tempfile
from clienttest import *

blob1, w1, b1 = gemm_relu(1)
blob2, w2, b2 = gemm_relu(2)
repo = make_repo({"mlp": {1: blob1}})
tmp = tempfile.mkdtemp(prefix="pivotctl-test-")
try:
    x = np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    np.save(os.path.join(tmp, "x.npy"), x)
    np.save(os.path.join(tmp, "xi.npy"), x.astype(np.int32))
    with start(repo) as d:
        env = {"PIVOTD_URL": url(d)}

        def ctl(*a, **kw):
            return run([PIVOTCTL] + list(a), env=kw.get("env", env), cwd=tmp)

        rc, out, err = ctl("status")
        check(rc == 0 and "live: yes, ready: yes" in out and "mlp v1 READY" in out, "status: %d %r %r" % (rc, out, err))
        rc, out, _ = ctl("status", "--json")
        j = json.loads(out)
        check(rc == 0 and j["ready"] is True and j["server"]["name"] == "pivotd" and j["models"][0]["name"] == "mlp", "status --json %r" % j)
        # the flag beats the environment
        rc, out, _ = ctl("--url", url(d), "status", env={"PIVOTD_URL": "http://127.0.0.1:%d" % free_port()})
        check(rc == 0, "--url overrides PIVOTD_URL")

        rc, out, _ = ctl("models")
        check(rc == 0 and out.split("\n")[1].split()[:3] == ["mlp", "1", "READY"], "models: %r" % out)
        rc, out, _ = ctl("models", "mlp")
        check(rc == 0 and "x" in out and "[-1,8]" in out and "[-1,3]" in out, "models mlp: %r" % out)
        rc, out, _ = ctl("models", "mlp", "--json")
        check(rc == 0 and json.loads(out)["inputs"][0]["shape"] == [-1, 8], "models mlp --json %r" % out)

        # infer: binary (default) and JSON payloads, named and positional inputs
        for extra in ([], ["--json-payload"]):
            od = os.path.join(tmp, "out%d" % len(extra))
            rc, out, err = ctl("infer", "mlp", "x.npy", "-o", od, *extra)
            check(rc == 0, "infer %r: %d %s" % (extra, rc, err))
            y = np.load(os.path.join(od, "y.npy"))
            check(y.shape == (3, 3) and np.allclose(y, reference(x, w1, b1), rtol=1e-5, atol=1e-5), "infer values %r" % y)
        rc, out, _ = ctl("infer", "mlp", "x=x.npy", "--output", "y", "--json", "-o", "named")
        j = json.loads(out)
        check(rc == 0 and j["model_version"] == "1" and j["outputs"][0]["shape"] == [3, 3]
              and os.path.exists(os.path.join(tmp, j["outputs"][0]["file"])), "infer --json %r" % j)
        rc, _, err = ctl("infer", "mlp", "xi.npy")
        check(rc == 1 and "INT32" in err, "wrong dtype refused by the server: %d %r" % (rc, err))
        rc, _, err = ctl("infer", "mlp", "nope.npy")
        check(rc == 2 and "nope.npy" in err, "missing input file is a usage error: %d %r" % (rc, err))
        rc, _, err = ctl("infer", "nosuch", "x.npy")
        check(rc == 1 and "nosuch" in err, "unknown model: %d %r" % (rc, err))
        rc, _, err = ctl("infer", "mlp", "x.npy", "x.npy")
        check(rc == 2, "two files for one input: %d %r" % (rc, err))

        # upload-and-swap: a new version by default, then a bad file refused
        mfile = os.path.join(tmp, "v2.onnx")
        open(mfile, "wb").write(blob2)
        rc, out, err = ctl("upload", "mlp", mfile)
        check(rc == 0 and "version 2" in out, "upload: %d %r %r" % (rc, out, err))
        rc, out, _ = ctl("infer", "mlp", "x.npy", "-o", "v2")
        y = np.load(os.path.join(tmp, "v2", "y.npy"))
        check("version 2" in out and np.allclose(y, reference(x, w2, b2), rtol=1e-5, atol=1e-5), "swapped values")
        open(os.path.join(tmp, "bad.onnx"), "wb").write(blob2[: len(blob2) // 2])
        rc, _, err = ctl("upload", "mlp", "bad.onnx", "-V", "7")
        check(rc == 1 and "version 7" in err, "bad upload refused: %d %r" % (rc, err))
        rc, _, _ = ctl("infer", "mlp", "x.npy", "-o", "still")
        check(rc == 0 and np.allclose(np.load(os.path.join(tmp, "still", "y.npy")), reference(x, w2, b2), rtol=1e-5, atol=1e-5),
              "v2 still serves after a failed upload")
        rc, _, err = ctl("upload", "mlp", "missing.onnx")
        check(rc == 2, "upload of a missing file: %d %r" % (rc, err))

        # unload / load
        rc, out, _ = ctl("unload", "mlp")
        check(rc == 0 and "unloaded" in out, "unload %r" % out)
        rc, _, err = ctl("infer", "mlp", "x.npy")
        check(rc == 1, "infer after unload refused: %d %r" % (rc, err))
        rc, out, _ = ctl("load", "mlp", "--json")
        check(rc == 0 and json.loads(out)["state"] == "READY", "load --json %r" % out)
        rc, out, _ = ctl("load", "mlp", "--config", '{"max_batch": 4}')
        check(rc == 0 and "READY" in out, "load with a config override %r" % out)
        rc, out, _ = ctl("models", "mlp", "--json")
        check(json.loads(out)["max_batch_size"] == 4, "override applied %r" % out)
        rc, _, err = ctl("load", "mlp", "--config", '{"no_such_field": 1}')
        check(rc == 1 and "no_such_field" in err, "bad override named: %d %r" % (rc, err))
        rc, _, err = ctl("load", "nosuch")
        check(rc == 1, "load of an unknown model: %d %r" % (rc, err))

        # stats and metrics count requests (a load starts a fresh version,
        # so send two after it)
        for _ in range(2):
            check(ctl("infer", "mlp", "x.npy", "-o", "s")[0] == 0, "infer after load")
        rc, out, _ = ctl("stats", "mlp", "--json")
        j = json.loads(out)
        n = sum(m["inference_stats"]["success"]["count"] for m in j["model_stats"])
        check(rc == 0 and n == 2, "stats --json %r" % j)
        rc, out, _ = ctl("stats")
        check(rc == 0 and out.startswith("MODEL") and "mlp" in out, "stats %r" % out)
        rc, out, _ = ctl("metrics")
        check(rc == 0 and "pivotd_request_duration_seconds_bucket" in out, "metrics")

        # detect: this model is no detector, so the server refuses (either
        # no route, or the model has no detection decoding)
        png = os.path.join(tmp, "a.png")
        open(png, "wb").write(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
        rc, _, err = ctl("detect", "mlp", png)
        check(rc == 1 and err.strip(), "detect on a non-detector refused: %d %r" % (rc, err))

        # usage errors
        for argv in (["frobnicate"], [], ["infer", "mlp"], ["upload", "mlp"], ["--timeout", "x", "status"],
                     ["status", "--bogus"], ["load"], ["models", "a", "b"]):
            rc, _, err = ctl(*argv)
            check(rc == 2 and err.strip(), "usage error for %r: %d %r" % (argv, rc, err))
        rc, out, _ = ctl("--help")
        check(rc == 0 and "upload" in out, "--help")

    # cannot connect: a port nobody listens on
    rc, _, err = run([PIVOTCTL, "--url", "http://127.0.0.1:%d" % free_port(), "status"])
    check(rc == 3 and "cannot reach" in err, "no server: %d %r" % (rc, err))

    # a token: admin commands need it, from the flag or the environment
    with start(repo, "--token", "s3cret") as d:
        env = {"PIVOTD_URL": url(d)}
        rc, _, err = run([PIVOTCTL, "unload", "mlp"], env=env)
        check(rc == 1 and "401" in err, "unload without token: %d %r" % (rc, err))
        rc, _, err = run([PIVOTCTL, "unload", "mlp", "--token", "wrong"], env=env)
        check(rc == 1, "wrong token: %d %r" % (rc, err))
        rc, _, err = run([PIVOTCTL, "load", "mlp", "--token", "s3cret"], env=env)
        check(rc == 0, "--token: %d %r" % (rc, err))
        rc, _, err = run([PIVOTCTL, "load", "mlp"], env=dict(env, PIVOTD_TOKEN="s3cret"))
        check(rc == 0, "PIVOTD_TOKEN: %d %r" % (rc, err))
    print("pivotctl: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
