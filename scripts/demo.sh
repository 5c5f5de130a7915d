#!/bin/sh
# Build pivotd and serve the bundled demo model repository (demo/models:
# a Fashion-MNIST classifier, version 1 dense ONNX, version 2 the same
# network pivoted to 1/4 in its middle layer as .pvm). Installs what the
# build needs with apt-get when missing. Usage: scripts/demo.sh [PORT]
set -e
cd "$(dirname "$0")/.."
port=${1:-8000}
scripts/deps.sh build
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc 2>/dev/null || echo 2)"
cd ..
echo
echo "pivotd: serving demo/models on http://127.0.0.1:$port (Ctrl-C to stop)"
echo "Try, from another terminal:"
echo "  curl -s http://127.0.0.1:$port/v2/models/fashion"
echo "  curl -s -H 'Content-Type: application/json' -d @demo/sample.json http://127.0.0.1:$port/v2/models/fashion/infer"
echo "  curl -s -H 'Content-Type: application/json' -d @demo/sample.json http://127.0.0.1:$port/v2/models/fashion/versions/1/infer   # the dense original"
echo "  curl -s http://127.0.0.1:$port/metrics"
echo "and open http://127.0.0.1:$port/ in a browser for the live dashboard."
echo "(the sample is the first Fashion-MNIST test image, an ankle boot: class 9 has the largest logit)"
echo
exec build/daemon/pivotd --repository demo/models --listen "127.0.0.1:$port" \
  --backend-dir build/backends
