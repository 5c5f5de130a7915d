#!/bin/sh
# Install what pivotd needs to build, run and test, from Debian's packages,
# only when something is missing. Usage: scripts/deps.sh [build|demo|test]
# (demo: build, plus what converting the face detector needs)
set -e
want=build
[ -n "$1" ] && want=$1

pkgs="build-essential autoconf automake libtool pkg-config
  libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev libcjson-dev libuv1-dev
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libsystemd-dev
  libcurl4-openssl-dev libjpeg-dev libpng-dev libwebp-dev libheif-dev
  libopenblas-dev libcunit1-dev"
if [ "$want" = test ]; then
  pkgs="$pkgs python3-torch python3-torchvision python3-onnx python3-numpy
    darknet clang libclang-rt-14-dev prometheus valgrind wrk curl
    dataset-fashion-mnist gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
    chromium fonts-dejavu-core systemd"
fi
if [ "$want" = demo ]; then
  pkgs="$pkgs python3-onnx python3-numpy"
fi

missing=""
# Node.js may come from elsewhere than Debian (npm's own builds): any
# working node and npm will do.
if [ "$want" != build ] && ! { command -v node >/dev/null && command -v npm >/dev/null; }; then
  missing="nodejs npm"
fi
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# ONNX Runtime (the conformance reference) from npm, only when missing.
if [ "$want" = test ]; then
  "$(dirname "$0")/ort.sh"
fi
# face-api (trained face detectors, sample photos, the reference) from npm.
if [ "$want" != build ]; then
  "$(dirname "$0")/../tools/faceapi/fetch.sh" >/dev/null
fi
