#!/bin/sh
# Instructions per request (not a test): pivotd-fake under
# `valgrind --tool=callgrind --separate-threads=yes`, N keep-alive
# requests of each kind from bench-client.py, counters dumped between
# kinds. Instruction counts do not depend on the load of the machine, so
# they compare two builds where wrk's requests/s cannot. Prints Ir per
# request summed over the daemon's threads, and the heaviest functions
# (inclusive of nothing: self cost) per kind when TOP=n is set.
# Usage: bench-callgrind.sh [N]   (PIVOTD=path to pivotd-fake's binary)
set -eu
N=${1:-300}
TOP=${TOP:-0}
here=$(cd "$(dirname "$0")" && pwd)
PIVOTD=${PIVOTD:-$here/pivotd-fake}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
# Under valgrind the models' measured compute is ~50x the real one: the
# inline limit is raised so the requests take the path they take natively.
. "$here/bench-repo.sh"
bench_repo "$tmp" '{"max_batch": 1, "workers": 1, "inline_max_us": 1000000}'
# libtool wrapper: valgrind the real binary with the wrapper's library path.
if [ -x "$(dirname "$PIVOTD")/.libs/$(basename "$PIVOTD")" ] && head -c2 "$PIVOTD" | grep -q '#!'; then
  bin="$(dirname "$PIVOTD")/.libs/$(basename "$PIVOTD")"
  libdir=$(sed -n "s/^ *LD_LIBRARY_PATH=\"\([^\"$]*\):\$LD_LIBRARY_PATH\".*/\1/p" "$PIVOTD" | head -1)
  LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
else
  bin=$PIVOTD
fi
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$tmp/cg.out" \
  "$bin" --config "$tmp/cfg.json" --repository "$tmp/repo" --listen 127.0.0.1:0 \
  --port-file "$tmp/port" --repository-poll-ms 0 2>"$tmp/log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do sleep 0.1; i=$((i+1)); [ $i -lt 600 ] || { cat "$tmp/log"; exit 1; }; done
port=$(cat "$tmp/port")
i=0
until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do
  sleep 0.1; i=$((i+1))
  [ $i -lt 600 ] || { curl -s -XPOST "http://127.0.0.1:$port/v2/repository/index"; exit 1; }
done
# Warm up every path (allocator, inline decision after 8 runs), then zero.
for k in live bin json bin10 json10; do /usr/bin/python3 "$here/bench-client.py" "$port" "$k" 30; done
callgrind_control -z "$pid" >/dev/null 2>&1
printf '%-8s %12s   %s\n' kind Ir/request 'per thread (busiest first)'
for k in live bin json bin10 json10; do
  /usr/bin/python3 "$here/bench-client.py" "$port" "$k" "$N"
  callgrind_control -d "$k" "$pid" >/dev/null 2>&1
  tot=0 per= top=0 topf=
  for f in $(grep -l "^desc: Trigger: .*$k\$" "$tmp"/cg.out.* 2>/dev/null); do
    t=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f")
    t=${t:-0}
    tot=$((tot + t))
    [ "$t" -ge $((N * 100)) ] && per="$per $((t / N))"
    [ "$t" -gt "$top" ] && top=$t && topf=$f
    [ -n "${KEEP:-}" ] && cp "$f" "$KEEP/$k.$(basename "$f")"
    mv "$f" "$f.done"
  done
  printf '%-8s %12d  %s\n' "$k" $((tot / N)) "$(echo $per | tr ' ' '\n' | sort -rn | tr '\n' ' ')"
  [ "$TOP" -gt 0 ] && [ -n "$topf" ] && callgrind_annotate --inclusive=no --auto=no --threshold=100 "$topf.done" 2>/dev/null |
    sed -n '/^Ir  *file:function/,$p' | sed -n "3,$((TOP + 2))p" |
    sed -e 's|\[/[^]]*/\([^/]*\)\]$|[\1]|' -e 's|/[^ ]*/||' -e "s|^|    |"
done
exit 0
