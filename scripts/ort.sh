#!/bin/sh
# Install ONNX Runtime for Node (the conformance reference) into a cache
# directory, only when it is missing, and print that directory.
# Usage: scripts/ort.sh [--check]
#   PIVOT_CACHE  cache root (default: <source tree>/.cache); ORT goes in $PIVOT_CACHE/ort
#   --check      install nothing; exit 1 with a message when ORT is missing
# --ignore-scripts: the package ships its CPU binaries; its postinstall only
# downloads optional GPU binaries from outside the npm registry.
set -e
ORT_VERSION=1.30.0
here=$(cd "$(dirname "$0")" && pwd)
cache=${PIVOT_CACHE:-$(cd "$here/.." && pwd)/.cache}
dir=$cache/ort
mod=$dir/node_modules/onnxruntime-node

have_ort() {
  [ -f "$mod/package.json" ] || return 1
  grep -q "\"version\": *\"$ORT_VERSION\"" "$mod/package.json" || return 1
  (cd "$dir" && node -e "require('onnxruntime-node')") >/dev/null 2>&1
}

if have_ort; then
  echo "$dir"
  exit 0
fi
if [ "$1" = --check ]; then
  echo "ort: onnxruntime-node@$ORT_VERSION is not installed in $dir; run scripts/deps.sh test (or scripts/ort.sh)" >&2
  exit 1
fi
command -v npm >/dev/null 2>&1 || {
  echo "ort: npm not found; run scripts/deps.sh test" >&2
  exit 1
}
mkdir -p "$dir"
# A package.json of our own keeps npm from walking up into the source tree.
[ -f "$dir/package.json" ] || echo '{"name":"pivot-ort-cache","private":true}' >"$dir/package.json"
echo "ort: installing onnxruntime-node@$ORT_VERSION into $dir" >&2
(cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
  "onnxruntime-node@$ORT_VERSION" >&2)
have_ort || {
  echo "ort: onnxruntime-node@$ORT_VERSION installed but does not load in node" >&2
  exit 1
}
echo "$dir"
