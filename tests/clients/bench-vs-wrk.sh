#!/bin/sh
# Not a test: how far pivot-bench's own figures are from wrk's on the same
# server, model and body (a 784-float binary infer on pivotd-fake, y = 2x),
# one after the other in the same run, at 1 and 8 connections. The ratio
# pivot-bench/wrk says how much of the reported latency is the load
# generator itself. Usage: sh bench-vs-wrk.sh [SECONDS]
set -eu
DUR=${1:-5}
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_TOP:-$top}
PIVOTD=${PIVOTD:-$build/tests/daemon/pivotd-fake}
command -v wrk >/dev/null || { echo "wrk not installed"; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
mkdir -p "$tmp/repo/tiny/1"
echo "PVFAKE scale=2 bias=0 n=784 sleep_ms=0 fail=0" > "$tmp/repo/tiny/1/model.onnx"
echo '{"max_batch": 1, "workers": 1}' > "$tmp/repo/tiny/config.json"
echo '{}' > "$tmp/cfg.json"
"$PIVOTD" --config "$tmp/cfg.json" --repository "$tmp/repo" --listen 127.0.0.1:0 \
  --port-file "$tmp/port" --repository-poll-ms 0 2>"$tmp/log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do sleep 0.05; i=$((i+1)); [ $i -lt 200 ] || { cat "$tmp/log"; exit 1; }; done
url=http://127.0.0.1:$(cat "$tmp/port")
until curl -sf "$url/v2/health/ready" >/dev/null; do sleep 0.05; done
# The same body pivot-bench sends: its random input, written by pivotctl's
# request builder, is replaced here by one fixed body for both tools.
/usr/bin/python3 - "$tmp" <<'PY'
import json, random, struct, sys
d = sys.argv[1]
random.seed(1)
x = [random.uniform(0, 1) for _ in range(784)]
hdr = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 784],
                  "parameters": {"binary_data_size": 3136}}], "parameters": {"binary_data_output": False}}).encode()
open(d + "/bin", "wb").write(hdr + struct.pack("<784f", *x))
open(d + "/hdrlen", "w").write(str(len(hdr)))
import numpy
numpy.save(d + "/x.npy", numpy.array(x, numpy.float32).reshape(1, 784))
PY
printf '%-5s %12s %12s %9s %9s %9s %9s %8s %8s\n' conns wrk_req/s pb_req/s wrk_p50 pb_p50 wrk_p99 pb_p99 thr_ratio p50_ratio
for c in 1 8; do
  w=$(BODY="$tmp/bin" HDRLEN=$(cat "$tmp/hdrlen") PATH_=/v2/models/tiny/infer \
      wrk -t1 -c$c -d${DUR}s --latency -s "$top/tests/daemon/bench-post.lua" "$url" | grep RESULT)
  "$build/clients/pivot-bench" tiny --url "$url" --concurrency $c --window "$DUR" --max-windows 1 \
      --warmup 0.5 --input "x=$tmp/x.npy" --quiet --csv "$tmp/pb.csv" >/dev/null
  pb=$(tail -1 "$tmp/pb.csv")
  /usr/bin/python3 - "$c" "$w" "$pb" <<'PY'
import sys
c, w, pb = sys.argv[1], dict(kv.split("=") for kv in sys.argv[2].split()[1:]), sys.argv[3].split(",")
wr, wp50, wp99 = float(w["rps"]), float(w["p50_us"]), float(w["p99_us"])
pr, pp50, pp99 = float(pb[4]), float(pb[5]), float(pb[8])
print("%-5s %12.0f %12.0f %9.0f %9.0f %9.0f %9.0f %8.2f %8.2f" % (c, wr, pr, wp50, pp50, wp99, pp99, pr / wr, pp50 / wp50))
PY
done
