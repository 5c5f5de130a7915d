#!/bin/sh
# pivotd HTTP benchmark (not a test): wrk against infer on a tiny model
# (784 inputs, y = 2x: compute well under 10 us) with keep-alive at
# concurrency 1, 8 and 64, JSON and binary bodies; then the same 784
# inputs into a classifier-shaped model answering 10 outputs (tiny10).
# Server overhead per request = mean(total) - mean(compute) from the
# daemon's own statistics. cpu_us = the daemon's CPU time (all threads,
# user + kernel, from /proc/PID/task/*/schedstat) per request: on a
# shared machine it moves far less than requests/s.
set -eu
PIVOTD=${PIVOTD:-$(dirname "$0")/pivotd-fake}
DUR=${DUR:-5}
# Extra pivotd flags, e.g. PIVOTD_ARGS="--http-threads 2".
PIVOTD_ARGS=${PIVOTD_ARGS:-}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
. "$here/bench-repo.sh"
bench_repo "$tmp" '{"max_batch": 1, "workers": 1}'
/usr/bin/python3 - "$tmp" <<'PY'
import json, random, struct, sys
d = sys.argv[1]
random.seed(1)
x = [random.uniform(-1, 1) for _ in range(784)]
open(d + "/json", "w").write(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 784], "data": [float("%.7g" % v) for v in x]}]}))
hdr = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 784], "parameters": {"binary_data_size": 3136}}],
                  "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
open(d + "/bin", "wb").write(hdr + struct.pack("784f", *x))
open(d + "/hdrlen", "w").write(str(len(hdr)))
PY
"$PIVOTD" --config "$tmp/cfg.json" --repository "$tmp/repo" --listen 127.0.0.1:0 \
  --port-file "$tmp/port" --repository-poll-ms 0 $PIVOTD_ARGS 2>"$tmp/log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do sleep 0.05; i=$((i+1)); [ $i -lt 200 ] || { cat "$tmp/log"; exit 1; }; done
port=$(cat "$tmp/port")
until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do sleep 0.05; done

stats() { curl -s "http://127.0.0.1:$port/v2/models/$1/stats"; }
cpu_ns() { cat /proc/$pid/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
# row LABEL CONNS CPU0 CPU1 RESULT-LINE [OVERHEAD]
row() {
  echo "$5" | sed 's/[a-z0-9_]*=//g' | {
    read -r _ rps p50 p99 err n
    cpu=$(echo "$3 $4 $n" | awk '{ printf "%.1f", ($3 > 0 ? ($2 - $1) / $3 / 1000 : 0) }')
    printf '%-7s %5s %10s %8s %8s %12s %7s %7s\n' "$1" "$2" "$rps" "$p50" "$p99" "${6:--}" "$cpu" "$err"
  }
}
printf '%-7s %5s %10s %8s %8s %12s %7s %7s\n' payload conns req/s p50_us p99_us overhead_us cpu_us errors
# Baseline in the same run: GET /v2/health/live, the HTTP cost alone.
for c in 1 8 64; do
  t=1; [ "$c" -gt 1 ] && t=2
  echo '' > "$tmp/empty"
  c0=$(cpu_ns)
  out=$(BODY="$tmp/empty" PATH_=/v2/health/live wrk -t$t -c$c -d${DUR}s --latency -s "$here/bench-get.lua" "http://127.0.0.1:$port" | grep RESULT)
  row live "$c" "$c0" "$(cpu_ns)" "$out"
done
for kind in json bin json10 bin10; do
  model=tiny; body=$kind
  case $kind in *10) model=tiny10; body=${kind%10} ;; esac
  for c in 1 8 64; do
    t=1; [ "$c" -gt 1 ] && t=2
    hl=; [ "$body" = bin ] && hl=$(cat "$tmp/hdrlen")
    s0=$(stats $model)
    c0=$(cpu_ns)
    out=$(BODY="$tmp/$body" HDRLEN="$hl" PATH_=/v2/models/$model/infer wrk -t$t -c$c -d${DUR}s --latency -s "$here/bench-post.lua" "http://127.0.0.1:$port" | grep RESULT)
    c1=$(cpu_ns)
    s1=$(stats $model)
    ovh=$(/usr/bin/python3 -c '
import json, sys
a, b = (json.loads(s)["model_stats"][0]["inference_stats"] for s in sys.argv[1:3])
n = b["success"]["count"] - a["success"]["count"]
tot = b["success"]["ns"] - a["success"]["ns"]
comp = b["compute_infer"]["ns"] - a["compute_infer"]["ns"]
print("%.1f" % ((tot - comp) / max(n, 1) / 1e3))' "$s0" "$s1")
    row "$kind" "$c" "$c0" "$c1" "$out" "$ovh"
  done
done
