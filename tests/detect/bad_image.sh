#!/bin/sh
# `pivot detect` on bad images and on a model that is no detector: each
# must fail with exit 1 and a message naming the problem, never crash.
set -u
. "$(cd "$(dirname "$0")" && pwd)/detect-env.sh"
need_faceapi
tiny_model
[ -x "$PIVOT" ] || det_fail "$PIVOT not built: run make first"
bad=$WORK/bad
rm -rf "$bad" && mkdir -p "$bad" || det_fail "cannot create $bad"
: >"$bad/empty.jpg"
echo "this is not an image" >"$bad/text.jpg"
size=$(wc -c <"$FACEAPI/demo/sample1.jpg")
head -c $((size / 2)) "$FACEAPI/demo/sample1.jpg" >"$bad/truncated.jpg"
"$PY" - "$bad" <<'PYEOF' || det_fail "cannot write the crafted files"
import struct, sys, zlib
d = sys.argv[1]
def chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))
# A valid PNG header claiming 20000 x 20000 pixels and a few bytes of data.
ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
open(d + "/huge.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                                   chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
# The same as a JPEG frame header.
sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 20000, 20000, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
open(d + "/huge.jpg", "wb").write(b"\xff\xd8" + sof + b"\xff\xd9")
import onnx
m = onnx.load(sys.argv[1] + "/../tiny.onnx")
del m.metadata_props[:]
onnx.save(m, d + "/plain.onnx")
PYEOF

fails=0
expect() { # FILE MODEL PATTERN
  "$PIVOT" detect "$2" "$1" >"$bad/out" 2>"$bad/err"
  st=$?
  if det_crashed $st "$bad/err"; then
    echo "$1: crashed (exit $st)"; fails=$((fails + 1)); return
  fi
  if [ $st -ne 1 ] || ! grep -q "$3" "$bad/err"; then
    echo "$1: exit $st, stderr: $(cat "$bad/err") (want exit 1 and /$3/)"; fails=$((fails + 1)); return
  fi
  echo "$(basename "$1"): $(cat "$bad/err")"
}
expect "$bad/empty.jpg" "$WORK/tiny.onnx" "empty image"
expect "$bad/text.jpg" "$WORK/tiny.onnx" "not a JPEG, PNG"
expect "$bad/truncated.jpg" "$WORK/tiny.onnx" "truncated"
expect "$bad/huge.png" "$WORK/tiny.onnx" "20000x20000, larger than the limit"
expect "$bad/huge.jpg" "$WORK/tiny.onnx" "20000x20000, larger than the limit"
expect "$bad/missing.jpg" "$WORK/tiny.onnx" "No such file"
expect "$FACEAPI/demo/sample1.jpg" "$bad/plain.onnx" "not a detector"
[ $fails -eq 0 ] || det_fail "$fails bad inputs not handled"
echo "bad_image: ok"
