"""The accuracy-versus-compression experiments of docs/TRAINING.md.

Every column gets the same training budget of E + F epochs (Adam, lr 1e-3
constant for E epochs, then cosine to 0 over F epochs):
  dense      E dense + F dense
  random     a fixed random-permutation block mask from step 0, E + F
  pivot      E dense, prune by pivoting (one shot), F fine-tuning
  pivot+     E dense, F epochs of gradual pivoting (2, 4, ... n blocks,
             activation-aware) with distillation from the E-epoch model
  magnitude  E dense, unstructured magnitude pruning, F fine-tuning
  magnitude+ E dense, gradual magnitude pruning with the same distillation
"""
import copy
import json
import math
import os
import time

import numpy as np
import torch

from . import libpivot, masks as mk
from .data import load_fmnist
from .models import build
from .train import (DENSE_FT_LR, Masker, evaluate, ft_lr_for,
                    gradual_schedule, layer_input_power, layer_mask, train)


def get_data(device, task="cls", train_limit=None, test_limit=None, seed=0):
    xtr, ytr, xte, yte = load_fmnist()
    if train_limit:
        xtr, ytr = xtr[:train_limit], ytr[:train_limit]
    if test_limit:
        xte, yte = xte[:test_limit], yte[:test_limit]
    xtr, xte = torch.from_numpy(xtr), torch.from_numpy(xte)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    if task == "reg":
        xtr, ytr = rotated(xtr, seed)
        xte, yte = rotated(xte, seed + 1)
    return [t.to(device) for t in (xtr, ytr, xte, yte)]


def rotated(x, seed, max_deg=45.0):
    """Regression task: each image rotated by a uniform random angle in
    [-45, 45] degrees; the target is the angle / 45 (RMSE is reported in
    degrees).  Garment images have a canonical orientation, so the angle
    is learnable but not linear in the pixels."""
    g = torch.Generator().manual_seed(seed)
    ang = (torch.rand(x.shape[0], generator=g) * 2 - 1) * max_deg
    t = ang * math.pi / 180
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(t), -torch.sin(t)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(t), torch.cos(t)
    grid = torch.nn.functional.affine_grid(theta, x.shape, align_corners=False)
    xr = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    return xr, ang / max_deg


def _fresh(name, seed, device):
    torch.manual_seed(seed)
    return build(name).to(device)


def unit(name, seed, ns, cfg, device, methods):
    """All columns for one model and one seed; returns result records."""
    torch.set_num_threads(cfg.get("threads", 1))
    if str(device).startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    xtr, ytr, xte, yte = get_data(device, "reg" if name == "reg" else "cls",
                                  cfg.get("train_limit"), cfg.get("test_limit"),
                                  seed=1000)
    E, Fe, bs = cfg["E"], cfg["F"], cfg.get("batch", 128)
    # peak rates of the F phase: pruned columns (by compression unless
    # given), dense column
    lr_d = cfg.get("dense_ft_lr") or DENSE_FT_LR

    def lr_at(n):
        return cfg.get("ft_lr") or ft_lr_for(n)
    recs = []
    impl = cfg.get("impl", "auto")
    # c-of-n blocks: compression n as c * n groups, each row group reaching
    # c column groups (c = 1: block diagonal).  Pivot and random masks.
    cc = cfg.get("c", 1)
    pruner = ("numpy" if impl == "py" or
              (impl == "auto" and libpivot.find() is None) else "libpivot")

    def rec(method, n, lr, **kw):
        r = {"model": name, "seed": seed, "n": n, "method": method,
             "E": E, "F": Fe, "pruner": pruner, "ft_lr": lr,
             "c": cc if method in ("pivot", "random") and n > 1 else 1}
        r.update(kw)
        r["seconds"] = round(time.time() - t0, 1)
        recs.append(r)
        if cfg.get("stream"):
            # one line per result as it comes, so a cut-off run keeps them
            with open(cfg["stream"], "a") as f:
                f.write(json.dumps(r) + "\n")

    t0 = time.time()
    base = _fresh(name, seed, device)
    train(base, xtr, ytr, E, batch=bs, seed=seed)
    acc_e = evaluate(base, xte, yte)
    # The dense column; when the pruned columns fine-tune at other rates,
    # the dense model at those rates too, to show which rate suits it (the
    # table compares against the dense column's own rate).
    dense_runs = [("dense", lr_d, {"acc_before": acc_e})]
    for lr in sorted({lr_at(n) for n in ns if n > 1} - {lr_d}):
        dense_runs.append(("dense@ft_lr", lr, {}))
    for method, lr, extra in dense_runs:
        dense = copy.deepcopy(base)
        train(dense, xtr, ytr, Fe, lr=lr, cosine=True, batch=bs,
              seed=seed + 1)
        rec(method, 1, lr, acc=evaluate(dense, xte, yte), **extra)
    power = layer_input_power(base, base.prunable(), xtr) \
        if "pivot+" in methods else None

    for n in ns:
        if n == 1:
            continue
        lr_f = lr_at(n)
        if "random" in methods:
            m = _fresh(name, seed, device)
            L = m.prunable()
            masker = Masker(L, [layer_mask(l, "random", n * cc, seed, c=cc)[0]
                                for l in L])
            train(m, xtr, ytr, E, masker=masker, batch=bs, seed=seed)
            train(m, xtr, ytr, Fe, lr=lr_f, cosine=True, masker=masker,
                  batch=bs, seed=seed + 1)
            rec("random", n, lr_f, acc=evaluate(m, xte, yte))
        for kind in ("pivot", "magnitude"):
            if kind in methods:
                m = copy.deepcopy(base)
                L = m.prunable()
                g, c = (n * cc, cc) if kind == "pivot" else (n, 1)
                out = [layer_mask(l, kind, g, seed, c=c,
                                  impl=cfg.get("impl", "auto")) for l in L]
                extra = {"retained": [r for _, r in out]}
                if kind == "pivot":
                    extra["retained_random"] = [
                        layer_mask(l, "random", g, seed, c=c)[1] for l in L]
                masker = Masker(L, [mm for mm, _ in out])
                before = evaluate(m, xte, yte)
                train(m, xtr, ytr, Fe, lr=lr_f, cosine=True, masker=masker,
                      batch=bs, seed=seed + 1)
                rec(kind, n, lr_f, acc=evaluate(m, xte, yte), acc_before=before,
                    **extra)
            if kind + "+" in methods:
                m = copy.deepcopy(base)
                L = m.prunable()
                teacher = copy.deepcopy(base).eval()
                pf = (lambda m=m, L=L: layer_input_power(m, L, xtr)) \
                    if kind == "pivot" else None
                sched, info = gradual_schedule(L, kind, n, seed, power_fn=pf,
                                               impl=cfg.get("impl", "auto"))
                masker = Masker(L, [torch.ones_like(l.weight) for l in L])
                train(m, xtr, ytr, Fe, lr=lr_f, cosine=True, masker=masker,
                      schedule=sched, teacher=teacher, kd=cfg.get("kd", 0.5),
                      batch=bs, seed=seed + 1)
                rec(kind + "+", n, lr_f, acc=evaluate(m, xte, yte),
                    retained=info["retained"])
    return recs


def _unit_star(args):
    return unit(*args)


def run_table(models, seeds, ns, cfg, device, methods, jobs=1, out=None):
    work = [(m, s, ns, cfg, device, methods) for m in models for s in seeds]
    if jobs > 1:
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        with ctx.Pool(jobs) as pool:
            results = pool.map(_unit_star, work, chunksize=1)
    else:
        results = [_unit_star(w) for w in work]
    recs = [r for rs in results for r in rs]
    if out:
        with open(out, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    return recs


def _ms(vals, scale=100.0, digits=1):
    if not vals:
        return "–"
    a = np.array(vals) * scale
    if len(a) == 1:
        return "%.*f" % (digits, a[0])
    return "%.*f ± %.*f" % (digits, a.mean(), digits, a.std(ddof=1))


def markdown(recs):
    """One table per model: rows = compression, columns = methods,
    mean ± sample std over seeds (accuracy %)."""
    lines = []
    for model in sorted({r["model"] for r in recs}):
        R = [r for r in recs if r["model"] == model]
        # regression records hold RMSE of angle/45: report degrees
        scale = 45.0 if model == "reg" else 100.0
        unit_ = "RMSE of the angle in degrees (lower is better)" \
            if model == "reg" else "test accuracy %"
        seeds = sorted({r["seed"] for r in R})
        ns = sorted({r["n"] for r in R} | {1})
        dense = [r["acc"] for r in R if r["method"] == "dense"]
        # a cell averages its seeds: never runs of other budgets or rates
        budgets = {(r["E"], r["F"]) for r in R}
        if len(budgets) > 1:
            raise ValueError("%s: records of different budgets (E, F) %s; "
                             "report them apart" % (model, sorted(budgets)))
        # the header names one rate per compression for the pruned columns
        row_rates = {}
        for r in R:
            if r["method"] != "dense@ft_lr":
                kind = "dense" if r["method"] == "dense" else "pruned"
                row_rates.setdefault((r["n"], kind), set()).add(
                    r.get("ft_lr"))
        cs = {}
        for r in R:
            if r["method"] in ("pivot", "random") and r["n"] > 1:
                cs.setdefault((r["n"], r["method"]), set()).add(r.get("c", 1))
        if any(len(v) > 1 for v in cs.values()):
            raise ValueError("%s: cells of several block patterns c %s; "
                             "report them apart" % (model, sorted(
                                 k for k, v in cs.items() if len(v) > 1)))
        c_all = sorted({c for v in cs.values() for c in v})
        mixed = sorted(k for k, v in row_rates.items() if len(v) > 1)
        if mixed:
            raise ValueError("%s: rows fine-tuned at several rates %s; "
                             "report them apart or with --default-rates"
                             % (model, mixed))
        rates = ""
        if "ft_lr" in R[0]:
            lr_d = next(r["ft_lr"] for r in R if r["method"] == "dense")
            by_n = {n: min(v) for (n, kind), v in row_rates.items()
                    if kind == "pruned"}
            lrs = set(by_n.values()) or {lr_d}
            if len(lrs) == 1:
                pruned = "%g" % lrs.pop()
            else:       # runs of equal rates: "0.001 at 2x, 0.003 at 4-16x"
                runs = []
                for n, lr in sorted(by_n.items()):
                    if runs and runs[-1][0] == lr:
                        runs[-1][2] = n
                    else:
                        runs.append([lr, n, n])
                pruned = ", ".join(
                    "%g at %dx" % (lr, a) if a == b else
                    "%g at %d-%dx" % (lr, a, b) for lr, a, b in runs)
            rates = "; F-phase peak rate %s (pruned), %g (dense)" % (
                pruned, lr_d)
        if c_all != [1] and c_all:
            rates += "; pivot and random masks: %s" % ", ".join(
                "c-of-n blocks (each row group reaches c = %d column groups)"
                % c if c > 1 else "block diagonal" for c in c_all)
        lines.append("**%s**, %d seed(s), E=%d + F=%d epochs%s; %s"
                     " (mean ± std)\n" % (model, len(seeds), R[0]["E"],
                                          R[0]["F"], rates, unit_))
        lines.append("| × | dense | random | pivot before FT | pivot | pivot+ |"
                     " magnitude before FT | magnitude | magnitude+ |"
                     " energy pivot / random |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for n in ns:
            def get(meth, key="acc"):
                return [r[key] for r in R if r["method"] == meth
                        and r["n"] == n and key in r]
            ms = lambda v: _ms(v, scale)
            if n == 1:
                d = ms(dense)
                lines.append("| 1 | %s | %s | %s | %s | %s | %s | %s | %s | 1 |"
                             % ((d,) * 8))
                continue
            en = [np.mean(a) / np.mean(b) for a, b in
                  zip(get("pivot", "retained"), get("pivot", "retained_random"))]
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                n, ms(dense), ms(get("random")),
                ms(get("pivot", "acc_before")), ms(get("pivot")),
                ms(get("pivot+")), ms(get("magnitude", "acc_before")),
                ms(get("magnitude")), ms(get("magnitude+")),
                _ms(en, 1.0, 2)))
        for lr in sorted({r["ft_lr"] for r in R
                          if r["method"] == "dense@ft_lr"}):
            dft = [r["acc"] for r in R if r["method"] == "dense@ft_lr"
                   and r["ft_lr"] == lr]
            lines.append("\nThe dense model with the pruned columns' F-phase"
                         " rate %g: %s" % (lr, _ms(dft, scale)))
        lines.append("")
    return "\n".join(lines)
