"""pivotd's detect endpoint with the real engine and TinyFaceDetector:
a sample photo as JPEG, thresholds as query parameters, the answer the
same as `pivot detect`'s in the photo's pixels, statistics counted like
infer, and bad bodies (empty, not an image, truncated, a 20000x20000
header, a model that is no detector) answered 4xx with a clear error."""
import json, os, shutil, struct, subprocess, sys, tempfile, zlib
from pvdtest import *
import pvdtest

src = os.environ["DETECT_SRC"]
env_sh = os.path.join(src, "detect-env.sh")
# The shell helpers fetch face-api and convert the model; reuse them.
out = subprocess.run(["sh", "-c", '. "$0"; need_faceapi; tiny_model; echo "$FACEAPI"; echo "$WORK"', env_sh],
                     capture_output=True, text=True)
if out.returncode:
    sys.stderr.write(out.stdout + out.stderr)
    sys.exit(1)
faceapi, work = out.stdout.split("\n")[-3:-1]
pivot = os.path.join(os.environ["abs_top_builddir"], "clients", "pivot")
photo = os.path.join(faceapi, "demo", "sample1.jpg")
jpeg = open(photo, "rb").read()

repo = tempfile.mkdtemp(prefix="pivotd-detect-")
try:
    os.makedirs(os.path.join(repo, "tiny", "1"))
    shutil.copy(os.path.join(work, "tiny.onnx"), os.path.join(repo, "tiny", "1", "model.onnx"))
    # Not a detector: the same network without its metadata.
    import onnx
    m = onnx.load(os.path.join(work, "tiny.onnx"))
    del m.metadata_props[:]
    os.makedirs(os.path.join(repo, "plain", "1"))
    onnx.save(m, os.path.join(repo, "plain", "1", "model.onnx"))
    cli = json.loads(subprocess.run([pivot, "detect", os.path.join(work, "tiny.onnx"), photo, "--json",
                                     "--score", "0.6"], check=True, capture_output=True, text=True).stdout)
    # An Ultralytics-style export (no pivot.* metadata: names, stride,
    # task), its output a fixed [1, 4+2, 3] box tensor (YOLOv8 layout):
    # box 1 'dog' at 0.9, centre (30, 20), 10 x 8 in the 64 x 64 input.
    from onnx import helper as oh, TensorProto as TP, numpy_helper as nh
    import numpy as np
    def ultralytics_export(name, boxes):
        """A model whose output0 is `boxes` whatever the 64 x 64 image (the
        input still feeds it), with an Ultralytics export's metadata."""
        g = oh.make_graph(
            [oh.make_node("ReduceMean", ["images"], ["m"], keepdims=1),
             oh.make_node("Mul", ["m", "zero"], ["z"]),
             oh.make_node("Reshape", ["z", "one"], ["z1"]),
             oh.make_node("Add", ["boxes", "z1"], ["output0"])], name,
            [oh.make_tensor_value_info("images", TP.FLOAT, [1, 3, 64, 64])],
            [oh.make_tensor_value_info("output0", TP.FLOAT, list(boxes.shape))],
            [nh.from_array(boxes, "boxes"), nh.from_array(np.zeros(1, np.float32), "zero"),
             nh.from_array(np.array([1, 1, 1], np.int64), "one")])
        um = oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)])
        for k, v in (("names", "{0: 'cat', 1: 'dog'}"), ("stride", "32"), ("task", "detect")):
            um.metadata_props.add(key=k, value=v)
        os.makedirs(os.path.join(repo, name, "1"))
        onnx.save(um, os.path.join(repo, name, "1", "model.onnx"))
    boxes = np.zeros((1, 6, 3), np.float32)
    boxes[0, :4, 1] = [30, 20, 10, 8]
    boxes[0, 5, 1] = 0.9
    ultralytics_export("ultra", boxes)
    # The same as a YOLO26-style end-to-end export: final boxes [1, 300, 6]
    # (x0, y0, x1, y1, score, class); two overlapping dogs both come back
    # (no NMS of ours on final boxes).
    e2e = np.zeros((1, 300, 6), np.float32)
    e2e[0, 0] = [25, 16, 35, 24, 0.9, 1]
    e2e[0, 1] = [26, 16, 35, 24, 0.8, 1]
    ultralytics_export("ultra26", e2e)
    def png(w, h):
        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
        raw = b"".join(b"\x00" + b"\x80\x40\x20" * w for _ in range(h))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    pvdtest.PIVOTD = os.environ["PIVOTD_REAL"]
    with Daemon(repo, "--backend-dir", os.environ["PIVOT_BACKEND_DIR"]) as d:
        st, j = d.json("POST", "/v2/models/tiny/detect?score=0.6", jpeg, {"Content-Type": "image/jpeg"})
        check(st == 200, "detect %d %r" % (st, j))
        check(j["model_name"] == "tiny" and j["model_version"] == "1", "names %r" % j)
        check((j["width"], j["height"]) == (cli["width"], cli["height"]) == (1920, 1280), "size %r" % j)
        check(len(j["detections"]) == len(cli["detections"]) >= 2, "count %r vs %r" % (j, cli))
        for a, b in zip(j["detections"], cli["detections"]):
            check(a["label"] == "face" and abs(a["score"] - b["score"]) < 1e-5 and
                  all(abs(x - y) < 1e-2 for x, y in zip(a["box"], b["box"])), "box %r vs %r" % (a, b))
            check(a["score"] > 0.6 and 0 <= a["box"][0] < a["box"][2] <= 1920, "box %r" % a)
        # A stricter threshold and top_k=1 cut the list; a versioned URL works.
        st, j1 = d.json("POST", "/v2/models/tiny/versions/1/detect?top_k=1", jpeg)
        check(st == 200 and len(j1["detections"]) == 1, "top_k %r" % j1)
        check(j1["detections"][0]["score"] == max(x["score"] for x in j["detections"]), "best first %r" % j1)
        st, j2 = d.json("POST", "/v2/models/tiny/detect?score=0.99", jpeg)
        check(st == 200 and j2["detections"] == [], "score=0.99 %r" % j2)
        st, s = d.json("GET", "/v2/models/tiny/stats")
        check(st == 200 and s["model_stats"][0]["inference_stats"]["success"]["count"] == 3, "stats %r" % s)

        # EXIF orientation, inserted into the same bytes (the pixels as
        # stored are unchanged): 6 (turn 90 clockwise to view) swaps the
        # size; orientation=stored gives back the plain answer exactly; 2
        # (mirrored) mirrors the faces, and a face detector finds them
        # mirrored. The pixel mapping itself is test-image's.
        def with_exif(o):
            tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + \
                struct.pack(">HHIHH", 0x0112, 3, 1, o, 0) + b"\x00" * 4
            app1 = b"Exif\x00\x00" + tiff
            return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]
        st, j6 = d.json("POST", "/v2/models/tiny/detect?score=0.6", with_exif(6))
        check(st == 200 and (j6["width"], j6["height"], j6["orientation"]) == (1280, 1920, 6), "exif 6 %r" % j6)
        check(j["orientation"] == 1, "no exif: orientation %r" % j)
        st, js = d.json("POST", "/v2/models/tiny/detect?score=0.6&orientation=stored", with_exif(6))
        check(st == 200 and (js["width"], js["height"], js["orientation"]) == (1920, 1280, 6) and
              js["detections"] == j["detections"], "orientation=stored %r vs %r" % (js, j))
        st, j2m = d.json("POST", "/v2/models/tiny/detect?score=0.5", with_exif(2))
        check(st == 200 and (j2m["width"], j2m["height"], j2m["orientation"]) == (1920, 1280, 2), "exif 2 %r" % j2m)
        def iou(a, b):
            w = min(a[2], b[2]) - max(a[0], b[0])
            h = min(a[3], b[3]) - max(a[1], b[1])
            i = max(w, 0) * max(h, 0)
            return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)
        for a in j["detections"]:
            x0, y0, x1, y1 = a["box"]
            mirrored = [1920 - x1, y0, 1920 - x0, y1]
            best = max((iou(mirrored, b["box"]) for b in j2m["detections"]), default=0)
            check(best > 0.6, "face %r not found mirrored: %r" % (a, j2m["detections"]))
        print("exif: 6 -> %dx%d, 2 -> %d faces (%d upright)" % (j6["width"], j6["height"], len(j2m["detections"]), len(j["detections"])))

        # The same photo as lossless WebP (its pixels as PIL decodes the
        # JPEG, the same libjpeg-turbo): the same faces.
        try:
            import io
            from PIL import Image, features
            webp_ok = features.check("webp")
        except ImportError:
            webp_ok = False
        if webp_ok:
            buf = io.BytesIO()
            Image.open(photo).convert("RGB").save(buf, "WEBP", lossless=True)
            st, jw = d.json("POST", "/v2/models/tiny/detect?score=0.6", buf.getvalue(), {"Content-Type": "image/webp"})
            check(st == 200 and (jw["width"], jw["height"]) == (1920, 1280) and
                  len(jw["detections"]) == len(j["detections"]), "webp %r vs %r" % (jw, j))
            for a, b in zip(jw["detections"], j["detections"]):
                check(abs(a["score"] - b["score"]) < 0.01 and
                      all(abs(x - y) < 2 for x, y in zip(a["box"], b["box"])), "webp box %r vs %r" % (a, b))
            print("webp: %d faces" % len(jw["detections"]))
        else:
            print("webp: skipped (PIL without WebP)")

        # multipart/form-data, as curl -F and HTML forms send: the part
        # named "image" (after a text field), or any part sent as a file.
        def form(parts):
            bnd = "pivotdtestbnd7d3f"
            out = b""
            for name, fname, data in parts:
                disp = 'form-data; name="%s"' % name + ('; filename="%s"' % fname if fname else "")
                out += ("--%s\r\nContent-Disposition: %s\r\n\r\n" % (bnd, disp)).encode() + data + b"\r\n"
            return out + ("--%s--\r\n" % bnd).encode(), {"Content-Type": "multipart/form-data; boundary=" + bnd}
        for parts in ([("note", None, b"hello"), ("image", "p.jpg", jpeg)],
                      [("upload", "photo.jpg", jpeg)]):
            body, hdr = form(parts)
            st, jm = d.json("POST", "/v2/models/tiny/detect?score=0.6", body, hdr)
            check(st == 200 and jm["detections"] == j["detections"], "multipart %r" % jm)
        body, hdr = form([("note", None, b"no picture here")])
        st, jm = d.json("POST", "/v2/models/tiny/detect", body, hdr)
        check(st == 400 and "no image" in jm.get("error", ""), "multipart without an image: %d %r" % (st, jm))
        print("multipart: ok (%s)" % jm["error"])

        # The Ultralytics model, served with its own defaults: a 128 x 64
        # photo letterboxed into 64 x 64 (scale 1/2, 16 rows of padding
        # above): the dog box maps to (50, 0, 70, 16) in the photo.
        st, ju = d.json("POST", "/v2/models/ultra/detect", png(128, 64), {"Content-Type": "image/png"})
        check(st == 200 and len(ju["detections"]) == 1, "ultralytics %d %r" % (st, ju))
        du = ju["detections"][0]
        check(du["label"] == "dog" and du["class"] == 1 and abs(du["score"] - 0.9) < 1e-6 and
              all(abs(a - b) < 1e-3 for a, b in zip(du["box"], [50, 0, 70, 16])), "ultralytics box %r" % du)
        print("ultralytics: %r" % du)
        st, je = d.json("POST", "/v2/models/ultra26/detect", png(128, 64), {"Content-Type": "image/png"})
        check(st == 200 and [x["score"] for x in je["detections"]] == [0.9, 0.8] and
              all(abs(a - b) < 1e-3 for a, b in zip(je["detections"][1]["box"], [52, 0, 70, 16])),
              "end-to-end %d %r" % (st, je))
        st, je = d.json("POST", "/v2/models/ultra26/detect?iou=0.5", png(128, 64), {"Content-Type": "image/png"})
        check(st == 200 and len(je["detections"]) == 1, "end-to-end with iou=0.5 %r" % je)

        def bad(body, want, path="/v2/models/tiny/detect", status=400):
            st, j = d.json("POST", path, body, {"Content-Type": "image/png"})
            check(st == status and want in j.get("error", ""), "%s: %d %r (want %d /%s/)" % (path, st, j, status, want))
            print("%d %s" % (st, j["error"]))

        bad(b"", "empty image")
        bad(b"hello, not a picture", "not a JPEG, PNG")
        bad(jpeg[: len(jpeg) // 2], "truncated")
        ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
        huge = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        bad(huge, "20000x20000")
        bad(jpeg, "not a detector", "/v2/models/plain/detect")
        bad(jpeg, "score", "/v2/models/tiny/detect?score=2")
        bad(jpeg, "top_k", "/v2/models/tiny/detect?top_k=x")
        bad(jpeg, "orientation", "/v2/models/tiny/detect?orientation=up")
        bad(jpeg, "unknown model", "/v2/models/nope/detect", 404)
        st, s = d.json("GET", "/v2/models/tiny/stats")
        check(s["model_stats"][0]["inference_stats"]["fail"]["count"] >= 1, "the truncated JPEG counts as a failure %r" % s)
    print("detect daemon: ok")
finally:
    shutil.rmtree(repo, ignore_errors=True)
