#!/usr/bin/python3
"""Compare pivot's detections with the reference's, image by image.

Usage: compare_dets.py REF.jsonl PIVOT_DIR [--iou 0.9] [--dscore 0.02]
                       [--thr 0.5] [--label NAME]
REF.jsonl: one {"image", "width", "height", "detections": [{"box", "score"}]}
a line (faceapi_ref.js); PIVOT_DIR/IMAGE.json: `pivot detect --json` output,
run with a score threshold below --thr so that boxes near it can be matched.

Every reference box must match one pivot box (IoU >= --iou, scores within
--dscore) and vice versa. The only box allowed to go unmatched is one whose
score lies within --dscore of --thr: two JPEG decoders move scores by up to
~0.015, so such a box may fall on either side of the threshold.
"""
import argparse
import json
import os
import sys


def iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("pivot_dir")
    ap.add_argument("--iou", type=float, default=0.9)
    ap.add_argument("--dscore", type=float, default=0.02)
    ap.add_argument("--thr", type=float, default=0.5)
    ap.add_argument("--label", default="detect")
    a = ap.parse_args()
    bad = 0
    total = 0
    for line in open(a.ref):
        ref = json.loads(line)
        name = ref["image"]
        path = os.path.join(a.pivot_dir, name + ".json")
        try:
            got = json.load(open(path))
        except (OSError, ValueError) as e:
            print("%s: %s: no pivot result: %s" % (a.label, name, e))
            bad += 1
            continue
        if (got["width"], got["height"]) != (ref["width"], ref["height"]):
            print("%s: %s: size %dx%d, reference %dx%d" % (
                a.label, name, got["width"], got["height"], ref["width"],
                ref["height"]))
            bad += 1
        r = [d for d in ref["detections"]]
        p = [d for d in got["detections"] if d["score"] > a.thr - a.dscore]
        used = set()
        worst_iou, worst_ds = 1.0, 0.0
        for d in sorted(r, key=lambda d: -d["score"]):
            best, bi = -1.0, None
            for j, q in enumerate(p):
                if j in used:
                    continue
                v = iou(d["box"], q["box"])
                if v > best:
                    best, bi = v, j
            if bi is None or best < a.iou or abs(p[bi]["score"] - d["score"]) > a.dscore:
                if d["score"] < a.thr + a.dscore and (bi is None or best < a.iou):
                    print("%s: %s: borderline reference box %s score %.4f unmatched (allowed)"
                          % (a.label, name, [round(x, 1) for x in d["box"]], d["score"]))
                    continue
                print("%s: %s: reference box %s score %.4f: best pivot match IoU %.3f score %s"
                      % (a.label, name, [round(x, 1) for x in d["box"]], d["score"], best,
                         "%.4f" % p[bi]["score"] if bi is not None else "-"))
                bad += 1
                continue
            used.add(bi)
            worst_iou = min(worst_iou, best)
            worst_ds = max(worst_ds, abs(p[bi]["score"] - d["score"]))
        for j, q in enumerate(p):
            if j in used or q["score"] <= a.thr:
                continue
            if q["score"] < a.thr + a.dscore:
                print("%s: %s: borderline pivot box score %.4f unmatched (allowed)"
                      % (a.label, name, q["score"]))
                continue
            print("%s: %s: pivot box %s score %.4f has no reference box"
                  % (a.label, name, [round(x, 1) for x in q["box"]], q["score"]))
            bad += 1
        total += len(r)
        print("%s: %s: %d faces (reference %d), worst IoU %.4f, worst score diff %.4f"
              % (a.label, name, sum(1 for q in p if q["score"] > a.thr), len(r),
                 worst_iou, worst_ds))
    if total == 0:
        print("%s: the reference found no faces at all: a broken reference" % a.label)
        bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
