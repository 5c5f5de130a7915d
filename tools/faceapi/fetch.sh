#!/bin/sh
# Install the face-api reference (the trained weights in model/, the sample
# photos in demo/, and its pure-JavaScript implementation with TF.js and a
# JPEG decoder) into a cache directory, only when missing, and print the
# directory that holds node_modules/.
# Usage: tools/faceapi/fetch.sh [--check]
#   PIVOT_CACHE  cache root (default: <source tree>/.cache); this goes in $PIVOT_CACHE/faceapi
#   --check      install nothing; exit 1 with a message when it is missing
# --ignore-scripts: nothing here needs native code; the CPU backend of
# TF.js is plain JavaScript.
set -e
FACEAPI_VERSION=1.7.15
TFJS_VERSION=4.22.0
JPEGJS_VERSION=0.4.4
here=$(cd "$(dirname "$0")" && pwd)
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

if have_it; then
  echo "$dir"
  exit 0
fi
if [ "$1" = --check ]; then
  echo "faceapi: @vladmandic/face-api@$FACEAPI_VERSION is not installed in $dir; run tools/faceapi/fetch.sh" >&2
  exit 1
fi
command -v npm >/dev/null 2>&1 || {
  echo "faceapi: npm not found; run scripts/deps.sh test" >&2
  exit 1
}
mkdir -p "$dir"
# A package.json of our own keeps npm from walking up into the source tree.
[ -f "$dir/package.json" ] || echo '{"name":"pivot-faceapi-cache","private":true}' >"$dir/package.json"
echo "faceapi: installing @vladmandic/face-api@$FACEAPI_VERSION into $dir" >&2
(cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
  "@vladmandic/face-api@$FACEAPI_VERSION" "@tensorflow/tfjs@$TFJS_VERSION" \
  "jpeg-js@$JPEGJS_VERSION" "@tensorflow/tfjs-backend-wasm@$TFJS_VERSION" >&2)
have_it || {
  echo "faceapi: installed, but $mod lacks the files we need" >&2
  exit 1
}
echo "$dir"
