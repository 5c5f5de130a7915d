"""The quick check (`make check`, < 2 minutes on one core): a 784-1024-
1024-10 MLP on 10k training images, 1 dense epoch, pivot-pruned to 4x,
1 fine-tuning epoch, 1 int8 QAT epoch, exported to ONNX.  Asserts only
robust facts: accuracy > 70 %, pivoting keeps more squared weight mass
than a random permutation in every layer, and the ONNX file holds exactly
4 balanced dense blocks per pruned layer plus int8 scales whose grid
the weights lie on."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import torch


def main(a):
    from . import libpivot
    from .experiments import get_data
    from .export import (check_structure, export_onnx, layer_names,
                         onnx_metadata, onnx_weights, pivot_metadata, TINY)
    from .models import build
    from .quant import quantise_
    from .train import Masker, evaluate, layer_mask, train
    torch.set_num_threads(1)
    t0 = time.time()
    fails = []

    def check(ok, what):
        print("%s: %s" % ("ok" if ok else "FAIL", what), flush=True)
        if not ok:
            fails.append(what)

    n, seed = 4, 0
    xtr, ytr, xte, yte = get_data("cpu", "cls", 10000, 2000)
    torch.manual_seed(seed)
    m = build("mlp")
    L = m.prunable()
    train(m, xtr, ytr, 1, seed=seed)
    dense_acc = evaluate(m, xte, yte)
    impl = "c" if libpivot.find() is not None else "py"
    print("dense 1 epoch: %.4f; pruner: %s" % (dense_acc, impl), flush=True)
    out = [layer_mask(l, "pivot", n, seed, impl=impl) for l in L]
    rnd = [layer_mask(l, "random", n, seed)[1] for l in L]
    for i, ((_, r), rr) in enumerate(zip(out, rnd)):
        check(r > rr, "layer %d keeps more energy pivoted (%.3f) than random"
              " (%.3f)" % (i, r, rr))
    masker = Masker(L, [mm for mm, _ in out])
    before = evaluate(m, xte, yte)
    train(m, xtr, ytr, 1, cosine=True, masker=masker, seed=seed + 1)
    acc = evaluate(m, xte, yte)
    print("4x pivot-pruned: before fine-tuning %.4f, after %.4f"
          % (before, acc), flush=True)
    check(acc > 0.70, "fine-tuned 4x MLP accuracy %.4f > 0.70" % acc)
    train(m, xtr, ytr, 1, lr=1e-4, cosine=True, masker=masker,
          qat_layers=L, seed=seed + 2)
    scales = [quantise_(l) for l in L]
    masker.apply()
    qacc = evaluate(m, xte, yte)
    check(qacc > 0.70, "int8 (QAT) 4x MLP accuracy %.4f > 0.70" % qacc)

    work = a.workdir or tempfile.mkdtemp(prefix="pivot-train-")
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "mlp-4x-int8.onnx")
    meta = pivot_metadata(m, L, masker.masks, n, scales)
    export_onnx(m, path, xte[:1], L, masker.masks, meta)
    W = onnx_weights(path)
    md = onnx_metadata(path)
    for name in layer_names(m, L):
        w = W.get(name)
        check(w is not None, "initializer %s in the ONNX file" % name)
        if w is None:
            continue
        check(check_structure(w, n), "%s has exactly %d balanced dense blocks"
              % (name, n))
        sc = json.loads(md.get("pivot.int8." + name, "{}")).get("scales")
        check(sc is not None and len(sc) == w.shape[0],
              "int8 scales for %s in metadata_props" % name)
        if sc is not None:
            q = w / np.array(sc, dtype=np.float32)[:, None]
            on_grid = np.abs(q - np.round(q)) < 1e-3
            check(bool(on_grid.all()) and np.abs(q).max() <= 127.001,
                  "%s lies on its int8 grid" % name)
    # The exported model computes what the torch model computes.
    try:
        import onnx.reference  # noqa: F401  (onnx >= 1.13)
        from onnx.reference import ReferenceEvaluator
        ref = ReferenceEvaluator(path)
        got = ref.run(None, {"input": xte[:16].numpy()})[0]
        want = m.eval()(xte[:16]).detach().numpy()
        check(np.allclose(got, want, atol=1e-4),
              "ONNX reference output matches torch (batch 16)")
    except ImportError:
        print("skip: onnx.reference not available to run the model")
    pivot = os.path.join(os.path.dirname(__file__), "..", "..", "clients",
                         "pivot")
    if os.access(pivot, os.X_OK):
        # pivotd's own runtime runs the exported file and agrees with torch.
        xin = os.path.join(work, "x.npy")
        np.save(xin, xte[:16].numpy())
        r = subprocess.run([pivot, "run", path, "--input", xin,
                            "--output-dir", work],
                           capture_output=True, text=True)
        outp = os.path.join(work, "output.npy")
        if r.returncode == 0 and os.path.exists(outp):
            want = m.eval()(xte[:16]).detach().numpy()
            check(np.allclose(np.load(outp), want, atol=1e-3),
                  "pivot run on the exported ONNX matches torch (batch 16)")
        else:
            check(False, "pivot run %s: %s" % (path, r.stderr.strip()[-300:]))
        pvm = os.path.join(work, "mlp-4x.pvm")
        r = subprocess.run([pivot, "convert", path, pvm],
                           capture_output=True, text=True)
        print("pivot convert: rc=%d %s" % (r.returncode,
                                           (r.stdout + r.stderr).strip()[-300:]))
    else:
        print("skip: clients/pivot not built, exported model not run")
    if not a.workdir:
        shutil.rmtree(work)
    print("quick check: %d failure(s), %.0f s" % (len(fails), time.time() - t0))
    return 1 if fails else 0
