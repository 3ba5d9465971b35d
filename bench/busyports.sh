#!/usr/bin/env bash
# Runs tests while bench/busyports holds about 11,000 TCP ports on 127.0.0.1
# (whole blocks where tests once assumed ports were free, half of berth's
# default ranges and of 20000-30000, 2 % of everything else), as on a
# machine where other programs hold ports. The tests must pass all the same.
# Usage: bench/busyports.sh [go test arguments]
# Default: -race -count=3 on the packages that bind ports or check for leaks.
# BUSY_FLAGS passes flags to busyports (see go doc ./bench/busyports).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
go build -o "$dir/busyports" ./bench/busyports
# shellcheck disable=SC2086
"$dir/busyports" -ready "$dir/held" -for 90m ${BUSY_FLAGS:-} &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 600); do
  [ -s "$dir/held" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "busyports exited"; exit 1; }
  sleep 0.1
done
[ -s "$dir/held" ] || { echo "busyports did not get ready in 60 s"; exit 1; }
if [ $# -eq 0 ]; then
  set -- -race -count=3 -timeout 60m ./internal/... ./portoffice/ ./pipes/ ./lan/ ./master/ ./e2e/
fi
go test "$@"
