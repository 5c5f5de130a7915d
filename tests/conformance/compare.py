#!/usr/bin/python3
"""Compare a model's outputs with a reference: relative L2 error per output.

Usage: compare.py META.json REF_DIR OUT_DIR [--tol T] [--label L]
Prints one line per output; exits 1 when an output is missing, differs in
shape or dtype, is not finite, or its error exceeds T (default 1e-4).
"""
import argparse
import json
import os
import sys

try:
    import numpy as np
except ImportError as e:
    sys.exit("compare: %s; run scripts/deps.sh test" % e)


def rel_l2(out, ref):
    d = np.linalg.norm((out.astype(np.float64) - ref.astype(np.float64)).ravel())
    n = np.linalg.norm(ref.astype(np.float64).ravel())
    # An all-zero reference is compared absolutely: any nonzero is an error.
    return d / n if n > 0 else d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("meta")
    ap.add_argument("ref")
    ap.add_argument("out")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    with open(a.meta) as f:
        meta = json.load(f)
    label = a.label or meta["name"]
    ok, worst = True, 0.0
    for name in meta["outputs"]:
        fn = meta["files"][name]
        rp, op = os.path.join(a.ref, fn), os.path.join(a.out, fn)
        if not os.path.exists(op):
            print("%s: output %s: missing %s" % (label, name, op))
            ok = False
            continue
        ref = np.load(rp, allow_pickle=False)
        try:
            out = np.load(op, allow_pickle=False)
        except Exception as e:  # a corrupt output file is a failure, not a crash
            print("%s: output %s: unreadable %s: %s" % (label, name, op, e))
            ok = False
            continue
        if out.shape != ref.shape or out.dtype != ref.dtype:
            print("%s: output %s: got %s %s, expected %s %s"
                  % (label, name, out.dtype, list(out.shape), ref.dtype, list(ref.shape)))
            ok = False
            continue
        if not np.all(np.isfinite(out)):
            print("%s: output %s: %d non-finite values" % (label, name, int(np.sum(~np.isfinite(out)))))
            ok = False
            continue
        e = rel_l2(out, ref)
        worst = max(worst, e)
        good = e <= a.tol
        ok = ok and good
        print("%s: output %s %s: rel_l2=%.3g (tol %.0e) %s"
              % (label, name, list(out.shape), e, a.tol, "ok" if good else "FAIL"))
    print("%s: %s, max rel_l2=%.3g" % (label, "PASS" if ok else "FAIL", worst))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
