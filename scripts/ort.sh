#!/bin/sh
# Install ONNX Runtime for Node (the conformance reference) into a cache
# directory, only when it is missing, and print that directory.
# Usage: scripts/ort.sh [--check]
#   PIVOT_CACHE  cache root (default: <source tree>/.cache); ORT goes in $PIVOT_CACHE/ort
#   --check      install nothing; exit 1 with a message when ORT is missing
# The package ships its Linux x64 CPU library inside it.
set -e
ORT_VERSION=1.30.0
here=$(cd "$(dirname "$0")" && pwd)
. "$here/npm-cache.sh"
cache=${PIVOT_CACHE:-$(cd "$here/.." && pwd)/.cache}
dir=$cache/ort
mod=$dir/node_modules/onnxruntime-node

have_ort() {
  [ -f "$mod/package.json" ] || return 1
  grep -q "\"version\": *\"$ORT_VERSION\"" "$mod/package.json" || return 1
  (cd "$dir" && node -e "require('onnxruntime-node')") >/dev/null 2>&1
}

[ "${1:-}" = --check ] && check=--check || check=
npm_cache_get ort "$dir" have_ort $check "onnxruntime-node@$ORT_VERSION"
