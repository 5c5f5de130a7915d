#!/bin/sh
# Install the face-api reference (the trained weights in model/, the sample
# photos in demo/, and its pure-JavaScript implementation with TF.js and a
# JPEG decoder) into a cache directory, only when missing, and print the
# directory that holds node_modules/.
# Usage: tools/faceapi/fetch.sh [--check]
#   PIVOT_CACHE  cache root (default: <source tree>/.cache); this goes in $PIVOT_CACHE/faceapi
#   --check      install nothing; exit 1 with a message when it is missing
# Nothing here needs native code; the CPU backend of TF.js is JavaScript.
set -e
FACEAPI_VERSION=1.7.15
TFJS_VERSION=4.22.0
JPEGJS_VERSION=0.4.4
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/npm-cache.sh"
cache=${PIVOT_CACHE:-$(cd "$here/../.." && pwd)/.cache}
dir=$cache/faceapi
mod=$dir/node_modules/@vladmandic/face-api

have_it() {
  [ -f "$mod/package.json" ] || return 1
  grep -q "\"version\": *\"$FACEAPI_VERSION\"" "$mod/package.json" || return 1
  [ -f "$mod/model/tiny_face_detector_model.bin" ] || return 1
  [ -f "$dir/node_modules/@tensorflow/tfjs/package.json" ] || return 1
  [ -f "$dir/node_modules/jpeg-js/package.json" ] || return 1
  [ -f "$dir/node_modules/@tensorflow/tfjs-backend-wasm/package.json" ] || return 1
}

[ "${1:-}" = --check ] && check=--check || check=
npm_cache_get faceapi "$dir" have_it $check \
  "@vladmandic/face-api@$FACEAPI_VERSION" "@tensorflow/tfjs@$TFJS_VERSION" \
  "jpeg-js@$JPEGJS_VERSION" "@tensorflow/tfjs-backend-wasm@$TFJS_VERSION"
