"""pivot-train command line.  See docs/TRAINING.md."""
import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

from .train import DENSE_FT_LR


def _ints(s):
    return [int(v) for v in s.split(",") if v]


def cmd_train(a):
    """One model through one method, optionally QAT, exported to ONNX."""
    from . import libpivot
    from .experiments import get_data
    from .export import export_onnx, pivot_metadata
    from .models import build
    from .quant import quantise_
    from .train import (Masker, evaluate, ft_lr_for, gradual_schedule,
                        layer_input_power, layer_mask, train)
    torch.set_num_threads(a.threads)
    dev = a.device
    xtr, ytr, xte, yte = get_data(dev, "reg" if a.model == "reg" else "cls",
                                  a.train_limit, a.test_limit, seed=1000)
    torch.manual_seed(a.seed)
    m = build(a.model).to(dev)
    L = m.prunable()
    log = lambda *x: print(*x, flush=True)
    if a.ft_lr is None:
        a.ft_lr = DENSE_FT_LR if a.method == "dense" else ft_lr_for(a.n)
    g, c = a.n * a.c, a.c     # c-of-n blocks: a.n * c groups, c per row
    if a.method == "random":
        masker = Masker(L, [layer_mask(l, "random", g, a.seed, c=c)[0]
                            for l in L])
        train(m, xtr, ytr, a.epochs, masker=masker, seed=a.seed)
        train(m, xtr, ytr, a.ft, lr=a.ft_lr, cosine=True, masker=masker,
              seed=a.seed + 1)
    else:
        train(m, xtr, ytr, a.epochs, seed=a.seed)
        log("dense after %d epochs: %.4f" % (a.epochs, evaluate(m, xte, yte)))
        teacher = copy.deepcopy(m).eval() if a.kd > 0 else None
        power = layer_input_power(m, L, xtr) if a.act_aware else [None] * len(L)
        if a.method == "pivot":
            out = [layer_mask(l, "pivot", g, a.seed, c=c, power=p, impl=a.impl)
                   for l, p in zip(L, power)]
            log("pruner: %s" % ("libpivot" if a.impl != "py" and
                                libpivot.find() else "python"))
            log("retained energy per layer: %s" %
                ", ".join("%.3f" % r for _, r in out))
            masker = Masker(L, [mm for mm, _ in out])
            log("before fine-tuning: %.4f" % evaluate(m, xte, yte))
            train(m, xtr, ytr, a.ft, lr=a.ft_lr, cosine=True, masker=masker,
                  teacher=teacher, kd=a.kd, seed=a.seed + 1)
        elif a.method == "gradual":
            if a.c != 1:
                sys.exit("--c: the gradual schedule runs block-diagonal masks")
            pf = (lambda: layer_input_power(m, L, xtr)) if a.act_aware else None
            sched, info = gradual_schedule(L, "pivot", a.n, a.seed,
                                           power_fn=pf, impl=a.impl)
            masker = Masker(L, [torch.ones_like(l.weight) for l in L])
            train(m, xtr, ytr, a.ft, lr=a.ft_lr, cosine=True, masker=masker,
                  schedule=sched, teacher=teacher, kd=a.kd, seed=a.seed + 1)
        elif a.method == "dense":
            masker = Masker(L, [torch.ones_like(l.weight) for l in L])
            train(m, xtr, ytr, a.ft, lr=a.ft_lr, cosine=True,
                  seed=a.seed + 1)
        else:
            sys.exit("unknown method %r" % a.method)
    log("after fine-tuning: %.4f" % evaluate(m, xte, yte))
    scales = None
    if a.qat_epochs > 0:
        train(m, xtr, ytr, a.qat_epochs, lr=a.qat_lr, cosine=True,
              masker=masker, qat_layers=L, seed=a.seed + 2)
        scales = [quantise_(l) for l in L]
        masker.apply()
        log("int8 weights (QAT %d epochs): %.4f"
            % (a.qat_epochs, evaluate(m, xte, yte)))
    if a.export:
        n_eff = a.n if a.method != "dense" else 1
        meta = pivot_metadata(m, L, masker.masks, n_eff * a.c if n_eff > 1
                              else 1, scales, c=a.c if n_eff > 1 else 1)
        filled = export_onnx(m, a.export, xte[:1], L, masker.masks, meta)
        log("wrote %s (%d in-block zeros replaced)" % (a.export, filled))


def cmd_table(a):
    from .experiments import markdown, run_table
    os.makedirs(a.out, exist_ok=True)
    cfg = {"E": a.epochs, "F": a.ft, "threads": a.threads, "impl": a.impl,
           "c": a.c,
           "ft_lr": a.ft_lr, "dense_ft_lr": a.dense_ft_lr,
           "kd": a.kd, "train_limit": a.train_limit,
           "test_limit": a.test_limit,
           "stream": os.path.join(a.out, "stream.jsonl")}
    t0 = time.time()
    recs = run_table(a.models.split(","), list(range(a.seeds)), _ints(a.ns),
                     cfg, a.device, a.methods.split(","), a.jobs,
                     os.path.join(a.out, "results.jsonl"))
    md = markdown(recs)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(md + "\n_run time: %.0f s on %s, %d worker(s)_\n"
                % (time.time() - t0, a.device, a.jobs))
    print(md)
    print("run time %.0f s" % (time.time() - t0))


def cmd_report(a):
    from .experiments import markdown
    # A cell (model, seed, compression, method, budget, rate) found in
    # several files counts once, the last one read: tables are often
    # merged from runs that each repeat the dense column.
    cells = {}
    for path in a.files:
        with open(path) as f:
            for l in f:
                if l.strip():
                    r = json.loads(l)
                    cells[tuple(r.get(k) for k in (
                        "model", "seed", "n", "method", "E", "F",
                        "ft_lr", "c"))] = r
    recs = list(cells.values())
    if a.default_rates:
        from .train import DENSE_FT_LR, ft_lr_for

        def at_default(r):
            if r["method"] == "dense@ft_lr":   # the dense model's extra runs
                return True
            return r.get("ft_lr") == (DENSE_FT_LR if r["method"] == "dense"
                                      else ft_lr_for(r["n"]))
        recs = [r for r in recs if at_default(r)]
    try:
        print(markdown(recs))
    except ValueError as e:
        sys.exit(str(e))


def cmd_gru(a):
    from .experiments import get_data
    from .rnn import run_gru
    torch.set_num_threads(a.threads)
    data = get_data(a.device, "cls", a.train_limit, a.test_limit)
    recs = run_gru(_ints(a.ns), list(range(a.seeds)), a.epochs, a.ft,
                   a.device, data)
    for r in recs:
        print(json.dumps(r), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)


def cmd_quick(a):
    from .quick import main
    sys.exit(main(a))


def main(argv=None):
    p = argparse.ArgumentParser(prog="pivot-train", description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available()
                   else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (the build machine is shared)")
    p.add_argument("--impl", choices=("auto", "c", "py"), default="auto",
                   help="pivot pruner: libpivot via ctypes, or numpy")
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--test-limit", type=int, default=None)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train/prune/fine-tune/QAT one model")
    t.add_argument("--model", default="mlp", choices=("mlp", "cnn", "reg"))
    t.add_argument("--method", default="pivot",
                   choices=("dense", "random", "pivot", "gradual"))
    t.add_argument("--n", type=int, default=4, help="compression")
    t.add_argument("--c", type=int, default=1,
                   help="c-of-n blocks: n*c row and column groups, each row "
                        "group reaching c column groups (1: block diagonal)")
    t.add_argument("--epochs", type=int, default=8, help="dense epochs")
    t.add_argument("--ft", type=int, default=4, help="fine-tuning epochs")
    t.add_argument("--ft-lr", type=float, default=None,
                   help="peak Adam rate of the fine-tuning phase (cosine to "
                   "0); default 1e-3 at --n 2 and for --method dense, 3e-3 "
                   "from --n 4 on")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--kd", type=float, default=0.0,
                   help="distillation weight from the dense model")
    t.add_argument("--act-aware", action="store_true")
    t.add_argument("--qat-epochs", type=int, default=0)
    t.add_argument("--qat-lr", type=float, default=1e-4)
    t.add_argument("--export", default=None, help="ONNX output path")
    t.set_defaults(fn=cmd_train)

    t = sub.add_parser("table", help="the accuracy-vs-compression table")
    t.add_argument("--models", default="mlp,cnn")
    t.add_argument("--methods",
                   default="random,pivot,pivot+,magnitude,magnitude+")
    t.add_argument("--ns", default="1,2,4,8,16")
    t.add_argument("--c", type=int, default=1,
                   help="pivot and random masks as c-of-n blocks (see train)")
    t.add_argument("--seeds", type=int, default=3)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--ft", type=int, default=4)
    t.add_argument("--ft-lr", type=float, default=None,
                   help="peak rate of the pruned columns' fine-tuning phase;"
                   " default by compression: 1e-3 at 2x, 3e-3 from 4x on")
    t.add_argument("--dense-ft-lr", type=float, default=DENSE_FT_LR,
                   help="peak rate of the dense column's second phase")
    t.add_argument("--kd", type=float, default=0.5)
    t.add_argument("--jobs", type=int, default=1)
    t.add_argument("--out", default="pivot-train-results")
    t.set_defaults(fn=cmd_table)

    t = sub.add_parser("report", help="markdown table from results.jsonl")
    t.add_argument("files", nargs="+")
    t.add_argument("--default-rates", action="store_true",
                   help="keep only the records fine-tuned at the default "
                   "rate of their compression")
    t.set_defaults(fn=cmd_report)

    t = sub.add_parser("gru", help="pivoted GRU on row-by-row Fashion-MNIST")
    t.add_argument("--ns", default="1,2,4,8")
    t.add_argument("--seeds", type=int, default=1)
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--ft", type=int, default=2)
    t.add_argument("--out", default=None)
    t.set_defaults(fn=cmd_gru)

    t = sub.add_parser("quick", help="the quick check that make check runs")
    t.add_argument("--workdir", default=None)
    t.set_defaults(fn=cmd_quick)

    a = p.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()
