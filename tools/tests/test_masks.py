"""Unit tests of the mask code (no training): python3 -m unittest."""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from pivot_train import libpivot, masks as mk  # noqa: E402


def planted(M, C, kk, n, seed, noise=0.05):
    """A matrix that IS block diagonal (n blocks) after hidden random
    permutations, plus small noise everywhere: the pruner must find it."""
    rng = np.random.default_rng(seed)
    rg, cg = rng.permutation(M) % n, rng.permutation(C) % n
    w = noise * rng.standard_normal((M, C * kk))
    blk = np.repeat(rg[:, None] == cg[None, :], kk, axis=1)
    w[blk] += rng.standard_normal(int(blk.sum()))
    return w.astype(np.float32), rg, cg


class TestMasks(unittest.TestCase):
    def test_splitmix_reference(self):
        # First outputs for seed 0 from the published splitmix64.c.
        r = mk.SplitMix64(0)
        self.assertEqual(r.next(), 0xE220A8397B1DCDAF)
        self.assertEqual(r.next(), 0x6E789E6AA1B965F4)

    def test_group_sizes_balanced(self):
        self.assertEqual(mk.group_sizes(10, 4).tolist(), [3, 3, 2, 2])
        self.assertRaises(ValueError, mk.group_sizes, 3, 4)
        self.assertRaises(ValueError, mk.group_sizes, 3, 0)

    def test_random_mask_is_balanced_block_diagonal(self):
        rg, cg = mk.random_pivot_groups(64, 48, 8, seed=3)
        m = mk.mask_from_groups(rg, cg, 9, 8)
        self.assertEqual(m.shape, (64, 48 * 9))
        self.assertAlmostEqual(m.mean(), 1 / 8)
        np.testing.assert_array_equal(m.sum(axis=1), 6 * 9)
        comps = mk.detect_blocks(m, 48, 9)
        self.assertEqual(len(comps), 8)
        self.assertTrue(all(len(r) == 8 and len(c) == 6 for r, c in comps))

    def test_general_pattern_density(self):
        rg, cg = mk.random_pivot_groups(40, 40, 4, seed=1)
        m = mk.mask_from_groups(rg, cg, 1, 4, c=2)
        self.assertAlmostEqual(m.mean(), 0.5)

    def test_pivot_finds_planted_blocks(self):
        w, rg, cg = planted(96, 80, 3, 8, seed=5)
        prg, pcg, ret = mk.pivot_prune_groups(w, 80, 3, 8, seed=0)
        m = mk.mask_from_groups(prg, pcg, 3, 8)
        truth = np.repeat(rg[:, None] == cg[None, :], 3, axis=1)
        np.testing.assert_array_equal(m > 0, truth)
        self.assertAlmostEqual(ret, mk.retained(w, m), places=6)
        rr, rc = mk.random_pivot_groups(96, 80, 8, seed=0)
        self.assertGreater(ret, 3 * mk.retained(w, mk.mask_from_groups(
            rr, rc, 3, 8)))

    def test_pivot_deterministic_and_balanced(self):
        w = np.random.default_rng(1).standard_normal((50, 30)).astype(np.float32)
        a = mk.pivot_prune_groups(w, 30, 1, 4, seed=7)
        b = mk.pivot_prune_groups(w, 30, 1, 4, seed=7)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        self.assertEqual(sorted(np.bincount(a[0]).tolist()), [12, 12, 13, 13])
        self.assertEqual(sorted(np.bincount(a[1]).tolist()), [7, 7, 8, 8])

    def test_magnitude_density(self):
        w = np.arange(1, 101, dtype=np.float32).reshape(10, 10)
        m = mk.magnitude_mask(w, 0.25)
        self.assertEqual(int(m.sum()), 25)
        self.assertTrue((w[m > 0] > 75).all())

    def test_detect_merges_through_shared_rows(self):
        w = np.zeros((4, 4), np.float32)
        w[0, 0] = w[0, 1] = w[1, 1] = w[2, 2] = w[3, 3] = 1
        self.assertEqual(len(mk.detect_blocks(w, 4, 1)), 3)

    def test_bad_geometry(self):
        self.assertRaises(ValueError, mk.channel_energy, np.ones((4, 5)), 2, 2)


class TestLibpivotPruner(unittest.TestCase):
    """pivot-train prunes with libpivot's pv_pivot_prune (the pruner of
    `pivot convert --prune`) through ctypes.  `make check` points
    PIVOT_LIBPIVOT at the library it built, so there the library must load;
    the numpy pruner is only a fallback for a tree without a build."""

    def setUp(self):
        if libpivot.find() is None:
            if os.environ.get("PIVOT_LIBPIVOT"):
                self.fail("PIVOT_LIBPIVOT=%s does not load: %s"
                          % (os.environ["PIVOT_LIBPIVOT"], libpivot.why()))
            self.skipTest("libpivot.so not built: %s" % libpivot.why())

    def test_tool_uses_libpivot_masks(self):
        import torch
        from pivot_train.train import layer_mask
        for (M, C, kk, n) in ((96, 80, 3, 8), (64, 64, 1, 4), (33, 20, 1, 2)):
            w, _, _ = planted(M, C, kk, n, seed=M)
            w += np.random.default_rng(M).standard_normal(w.shape).astype(
                np.float32) * 0.5
            layer = (torch.nn.Conv2d(C, M, (1, kk)) if kk > 1
                     else torch.nn.Linear(C, M))
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w).view_as(layer.weight))
            t, ret = layer_mask(layer, "pivot", n, 11)
            cm, cret = libpivot.prune(w, C, kk, n, 1, 11)
            np.testing.assert_array_equal(
                t.numpy().reshape(M, C * kk), cm,
                "pivot-train's mask is not libpivot's for %dx%dx%d n=%d"
                % (M, C, kk, n))
            self.assertAlmostEqual(ret, cret, places=5)
            # One balanced block per group, density exactly 1/n.
            self.assertEqual(int(cm.sum()),
                             sum(r * c for r, c in zip(
                                 mk.group_sizes(M, n), mk.group_sizes(C, n)))
                             * kk)

    def test_planted_structure_recovered(self):
        for (M, C, kk, n) in ((96, 80, 3, 8), (64, 64, 1, 4)):
            w, rg, cg = planted(M, C, kk, n, seed=M + 1)
            cm, cret = libpivot.prune(w, C, kk, n, 1, 3)
            np.testing.assert_array_equal(cm, mk.mask_from_groups(rg, cg, kk, n))
            self.assertGreater(cret, 0.9)

    def test_fallback_keeps_no_more_than_libpivot(self):
        """Both pruners keep far more mass than a random permutation; the
        numpy fallback is a simpler search and keeps at most what the
        library keeps (measured: 2-4 % less) on unstructured weights."""
        rng = np.random.default_rng(5)
        for (M, C, kk, n) in ((256, 200, 1, 8), (64, 32, 9, 4)):
            w = (rng.standard_normal((M, C * kk)) * (1 + rng.random((M, 1)))
                 * (1 + rng.random((1, C * kk)))).astype(np.float32)
            _, cret = libpivot.prune(w, C, kk, n, 1, 11)
            _, _, pret = mk.pivot_prune_groups(w, C, kk, n, 1, 11)
            self.assertGreater(pret, 1.0 / n * 1.05)
            self.assertGreaterEqual(cret, pret * 0.999)


class TestTrainLayout(unittest.TestCase):
    """The CNN trains channels-last on the CPU; the layout must not change
    what is learnt, nor the masks, nor the exported weights."""

    def test_same_training_either_layout(self):
        import torch
        from pivot_train.models import build
        from pivot_train.train import Masker, conv_layout, layer_mask, train
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(3)
        x = torch.rand(96, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (96,), generator=g)
        self.assertIs(conv_layout(build("cnn"), x), torch.channels_last)
        self.assertIsNone(conv_layout(build("mlp"), x))
        runs = []
        for layout in ("auto", None):
            torch.manual_seed(0)
            m = build("cnn")
            L = m.prunable()
            masker = Masker(L, [layer_mask(l, "random", 4, 0)[0] for l in L])
            train(m, x, y, 2, masker=masker, batch=32, seed=1, layout=layout)
            runs.append((m, masker))
        (a, ma), (b, _) = runs
        self.assertTrue(a.conv2.weight.is_contiguous(
            memory_format=torch.channels_last))
        self.assertTrue(b.conv2.weight.is_contiguous())
        for pa, pb in zip(a.parameters(), b.parameters()):
            self.assertTrue(torch.allclose(pa, pb, atol=2e-4, rtol=1e-3),
                            float((pa - pb).abs().max()))
        for l, m in zip(a.prunable(), ma.masks):
            self.assertEqual(int(((l.weight != 0) & (m == 0)).sum()), 0)
        # and the trained weights moved: the comparison is not vacuous
        torch.manual_seed(0)
        self.assertGreater(float((build("cnn").conv2.weight
                                  - b.conv2.weight).abs().max()), 1e-3)


class TestTableRates(unittest.TestCase):
    """The table fine-tunes each compression at its own default rate (or
    at the one given) and trains the dense model at each pruned rate."""

    def test_rates_by_compression(self):
        from unittest import mock
        from pivot_train import experiments
        from pivot_train.train import DENSE_FT_LR, ft_lr_for
        self.assertNotEqual(ft_lr_for(2), ft_lr_for(8))
        rng = np.random.default_rng(0)
        fake = (rng.random((256, 1, 28, 28), dtype=np.float32),
                rng.integers(0, 10, 256),
                rng.random((64, 1, 28, 28), dtype=np.float32),
                rng.integers(0, 10, 64))
        cfg = {"E": 1, "F": 1, "batch": 64}
        for given in (None, 5e-3):
            with mock.patch.object(experiments, "load_fmnist",
                                   lambda: fake):
                recs = experiments.unit("mlp", 0, [1, 2, 8],
                                        dict(cfg, ft_lr=given), "cpu",
                                        ["random", "pivot"])
            got = {(r["method"], r["n"]): r["ft_lr"] for r in recs}
            for n in (2, 8):
                for meth in ("random", "pivot"):
                    self.assertEqual(got[(meth, n)], given or ft_lr_for(n))
            self.assertEqual(got[("dense", 1)], DENSE_FT_LR)
            extra = sorted(r["ft_lr"] for r in recs
                           if r["method"] == "dense@ft_lr")
            want = {given} if given else {ft_lr_for(2), ft_lr_for(8)}
            self.assertEqual(extra, sorted(want - {DENSE_FT_LR}))


class TestReport(unittest.TestCase):
    """pivot-train report merges files: a cell repeated across files
    counts once, and cells at different rates or budgets do not mix."""

    def report(self, *files, flags=()):
        import contextlib
        import io
        from pivot_train.__main__ import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["report", *flags, *files])
        return out.getvalue()

    def write(self, d, name, recs):
        import json
        path = os.path.join(d, name)
        with open(path, "w") as f:
            for r in recs:
                f.write(json.dumps(dict({"model": "mlp", "E": 4, "F": 8},
                                        **r)) + "\n")
        return path

    def test_merge(self):
        import tempfile
        dense = [{"seed": s, "n": 1, "method": "dense", "ft_lr": 1e-3,
                  "acc": a} for s, a in ((0, 0.90), (1, 0.91))]
        hi = [{"seed": s, "n": 2, "method": "pivot", "ft_lr": 3e-3,
               "acc": 0.80} for s in (0, 1)]
        lo = [{"seed": s, "n": 2, "method": "pivot", "ft_lr": 1e-3,
               "acc": 0.85} for s in (0, 1)]
        with tempfile.TemporaryDirectory() as d:
            a = self.write(d, "a.jsonl", dense + hi)
            b = self.write(d, "b.jsonl", dense + lo)
            # the std of 90 and 91 is 0.7; counted twice it would be 0.6
            self.assertIn("| 1 | 90.5 ± 0.7 |", self.report(a))
            with self.assertRaises(SystemExit) as e:
                self.report(a, b)
            self.assertIn("several rates", str(e.exception))
            t = self.report(a, b, flags=["--default-rates"])
            self.assertIn("| 2 | 90.5 ± 0.7 | – | – | 85.0 ± 0.0 |", t)
            c = self.write(d, "c.jsonl", [dict(r, E=8, F=4) for r in lo])
            with self.assertRaises(SystemExit) as e:
                self.report(a, c)
            self.assertIn("budgets", str(e.exception))


class TestCofN(unittest.TestCase):
    """--c: pivot and random masks as c-of-n blocks at the same density
    (compression n as n*c groups), recorded per cell; cells of different
    c do not mix in a report."""

    def test_table_masks_and_records(self):
        from unittest import mock
        from pivot_train import experiments
        rng = np.random.default_rng(1)
        fake = (rng.random((128, 1, 28, 28), dtype=np.float32),
                rng.integers(0, 10, 128),
                rng.random((32, 1, 28, 28), dtype=np.float32),
                rng.integers(0, 10, 32))
        seen = []
        real = experiments.Masker

        def spy(layers, masks_):
            seen.extend(m.numpy() for m in masks_)
            return real(layers, masks_)
        with mock.patch.object(experiments, "load_fmnist", lambda: fake), \
                mock.patch.object(experiments, "Masker", spy):
            recs = experiments.unit("mlp", 0, [4], {"E": 1, "F": 1, "batch": 64,
                                                    "c": 2}, "cpu",
                                    ["random", "pivot", "magnitude"])
        c = {r["method"]: r["c"] for r in recs}
        self.assertEqual((c["pivot"], c["random"], c["magnitude"]), (2, 2, 1))
        # every pruned mask keeps 1/4; the random and pivot ones are 2 of 8
        # groups: each row reaches exactly 2 of the 8 column groups
        for m in seen:
            self.assertAlmostEqual(float(m.mean()), 0.25, places=2)
        for m in seen[:4]:          # random (2 layers), then pivot (2)
            K = m.shape[1]
            patterns = {tuple(np.flatnonzero(row)) for row in m}
            self.assertEqual(len(patterns), 8)
            self.assertTrue(all(len(p) == K // 4 for p in patterns))

    def test_report_refuses_mixed_c(self):
        from pivot_train.experiments import markdown
        base = {"model": "mlp", "E": 1, "F": 1, "ft_lr": 1e-3}
        recs = [dict(base, seed=0, n=1, method="dense", acc=0.9),
                dict(base, seed=0, n=2, method="pivot", acc=0.9, c=2),
                dict(base, seed=1, n=2, method="pivot", acc=0.9, c=1)]
        with self.assertRaises(ValueError) as e:
            markdown(recs)
        self.assertIn("block patterns", str(e.exception))
        self.assertIn("c = 2", markdown(recs[:2]))


class TestOpenblasCore(unittest.TestCase):
    """The package names OpenBLAS's core before torch loads it (Debian's
    OpenBLAS 0.3.21 runs SSE3 kernels on AVX-512 Xeons it does not know)
    and leaves a user's choice alone."""

    def run_import(self, env_value):
        import subprocess
        env = dict(os.environ)
        env.pop("OPENBLAS_CORETYPE", None)
        if env_value is not None:
            env["OPENBLAS_CORETYPE"] = env_value
        code = ("import os, pivot_train; "
                "print(os.environ.get('OPENBLAS_CORETYPE', ''))")
        r = subprocess.run([sys.executable, "-c", code], env=env,
                           cwd=os.path.join(os.path.dirname(__file__), ".."),
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    def test_core_from_cpu_flags(self):
        import platform
        flags = set()
        if os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        if platform.machine() != "x86_64":
            want = ""
        elif {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            want = "SkylakeX"
        elif {"avx2", "fma"} <= flags:
            want = "Haswell"
        else:
            want = ""
        self.assertEqual(self.run_import(None), want)
        self.assertEqual(self.run_import("Zen"), "Zen")


if __name__ == "__main__":
    unittest.main()
