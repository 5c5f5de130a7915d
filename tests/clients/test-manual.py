"""docs/MANUAL.md's commands work as written: every ```sh block preceded
by <!-- test --> runs, in order, in one bash (set -e) against pivotd
serving a copy of demo/models with only version 1 of `fashion`, from a
directory where demo/ and clients/ are the source tree's. Then a few
results are checked: the sample is classified as class 9 (an ankle boot)
by both versions, the upload made version 2, the bench wrote its rows."""
import os, re, shutil, subprocess, tempfile
from clienttest import *

SRC = os.environ.get("PIVOTD_SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
manual = open(os.path.join(SRC, "docs", "MANUAL.md")).read()
blocks = re.findall(r"<!-- test -->\s*\n```sh\n(.*?)```", manual, re.S)
check(len(blocks) >= 8, "found %d marked blocks" % len(blocks))

repo = tempfile.mkdtemp(prefix="pivotd-manual-repo-")
work = tempfile.mkdtemp(prefix="pivotd-manual-")
try:
    shutil.copytree(os.path.join(SRC, "demo", "models", "fashion"), os.path.join(repo, "fashion"))
    shutil.rmtree(os.path.join(repo, "fashion", "2"))
    for name in ("demo", "clients"):
        os.symlink(os.path.join(os.path.abspath(SRC), name), os.path.join(work, name))
    # the manual says python3: the one with numpy
    bindir = os.path.join(work, ".bin")
    os.makedirs(bindir)
    os.symlink("/usr/bin/python3", os.path.join(bindir, "python3"))
    path = os.pathsep.join([bindir, os.path.abspath(BUILD), os.path.dirname(os.path.abspath(pvdtest.PIVOTD)),
                            os.environ.get("PATH", "/usr/bin:/bin")])
    script = "set -euo pipefail\n" + "".join(
        "echo '### block %d'\n%s" % (i + 1, b) for i, b in enumerate(blocks))
    with start(repo) as d:
        env = {k: v for k, v in os.environ.items() if k not in ("PIVOTD_TOKEN", "PYTHONPATH")}
        env.update(PIVOTD_URL=url(d), PATH=path)
        p = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        out = p.stdout
        check(p.returncode == 0, "manual blocks failed (exit %d):\n%s\n---- stderr\n%s" % (p.returncode, out[-4000:], p.stderr[-4000:]))
        check(out.count("class 9") == 1, "the sample is class 9:\n" + out)
        check("fashion: version 2 uploaded" in out, "upload made version 2:\n" + out)
        for f in ("out/logits.npy", "out-v2/logits.npy", "out-v1/logits.npy"):
            y = np.load(os.path.join(work, f))
            check(y.shape == (1, 10) and int(y.argmax()) == 9, "%s: %r" % (f, y))
        check(os.path.isdir(os.path.join(repo, "fashion", "2")), "uploaded version written to the repository")
        rows = open(os.path.join(work, "bench.csv")).read().strip().split("\n")
        check(len(rows) == 3 and rows[0].startswith("model,version,concurrency"), "bench.csv %r" % rows)
        check("relative to" in out, "compare printed")
        check(re.search(r'pivotd_request_duration_seconds_count\{model="fashion",version="2"', out), "metrics line")
        check(re.search(r"^9 \d+$", out, re.M), "python client line:\n" + out)
        check(re.search(r"^200 text/html", out, re.M), "dashboard answered:\n" + out)
    print("manual: %d blocks ok" % len(blocks))
finally:
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
