#!/bin/sh
# The installed unit passes `systemd-analyze verify` (which also checks
# that ExecStart's program exists, so the built pivotd stands in for the
# installed one). Any diagnostic fails the test.
unit=${SYSTEMD_UNIT:-../../systemd/pivotd.service}
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze not installed (Debian: apt-get install systemd): skip"
  exit 77
fi
[ -f "$unit" ] || { echo "FAIL: $unit not built"; exit 1; }
daemon=${PIVOTD_REAL:-../../daemon/pivotd}
[ -x "$daemon" ] || { echo "pivotd not built (no libmicrohttpd/cJSON/libuv): skip"; exit 77; }
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
for key in Type=notify DynamicUser=yes ProtectSystem=strict NoNewPrivileges=yes Restart=on-failure \
    'ReadWritePaths=-/var/lib/pivotd/models' 'DeviceAllow=char-drm rw' 'DeviceAllow=char-nvidia\* rw' \
    'DeviceAllow=/dev/mali0 rw' StateDirectory= ConfigurationDirectory=; do
  grep -q "^$key" "$unit" || { echo "FAIL: $unit lacks $key"; exit 1; }
done
sed "s|^ExecStart=[^ ]*|ExecStart=$daemon|" "$unit" > "$dir/pivotd.service"
out=$(systemd-analyze verify "$dir/pivotd.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  echo "FAIL: systemd-analyze verify (exit $rc):"
  echo "$out"
  exit 1
fi
echo "systemd-analyze verify: clean"
