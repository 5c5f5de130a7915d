#!/bin/sh
# Build pivotd and serve the bundled demo model repository (demo/models:
# a Fashion-MNIST classifier, version 1 dense ONNX, version 2 the same
# network pivoted to 1/4 in its middle layer as .pvm) plus TinyFaceDetector,
# converted from the trained weights of the npm package @vladmandic/face-api
# (fetched into .cache/, git-ignored), in build/demo-models. Installs what
# the build needs with apt-get when missing. Usage: scripts/demo.sh [PORT]
set -e
cd "$(dirname "$0")/.."
port=${1:-8000}
scripts/deps.sh demo
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc 2>/dev/null || echo 2)"
cd ..
# The repository served: the bundled models and the face detector.
repo=build/demo-models
rm -rf "$repo" && mkdir -p "$repo/tinyface/1"
cp -R demo/models/. "$repo/"
faceapi=$(tools/faceapi/fetch.sh)/node_modules/@vladmandic/face-api
/usr/bin/python3 tools/faceapi/tfjs2onnx.py tiny "$faceapi/model" "$repo/tinyface/1/model.onnx"
echo '{"workers": 1}' >"$repo/tinyface/config.json"
echo
echo "pivotd: serving $repo on http://127.0.0.1:$port (Ctrl-C to stop)"
echo "Try, from another terminal:"
echo "  curl -s http://127.0.0.1:$port/v2/models/fashion"
echo "  curl -s -H 'Content-Type: application/json' -d @demo/sample.json http://127.0.0.1:$port/v2/models/fashion/infer"
echo "  curl -s -H 'Content-Type: application/json' -d @demo/sample.json http://127.0.0.1:$port/v2/models/fashion/versions/1/infer   # the dense original"
echo "  curl -s http://127.0.0.1:$port/metrics"
echo "and open http://127.0.0.1:$port/ in a browser for the live dashboard."
echo "(the sample is the first Fashion-MNIST test image, an ankle boot: class 9 has the largest logit)"
echo "  curl -s -H 'Content-Type: image/jpeg' --data-binary @$faceapi/demo/sample1.jpg 'http://127.0.0.1:$port/v2/models/tinyface/detect?score=0.5'"
echo "(TinyFaceDetector: three faces, boxes in the photo's pixels; 'build/clients/pivot detect $repo/tinyface/1/model.onnx PHOTO --out boxes.png' draws them)"
echo
exec build/daemon/pivotd --repository "$repo" --listen "127.0.0.1:$port" \
  --backend-dir build/backends
