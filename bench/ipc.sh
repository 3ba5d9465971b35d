#!/usr/bin/env bash
# Prints: messages/s delivered and p50/p99 hop latency of 64-byte messages,
# 1→16 fan-out and 16 peers each sending to one other, through berth's IPC
# hub and through NATS, with their ratio and whether issue 11's goals are
# met (see go doc ./bench/ipc). Installs nats-server from Debian's packages
# if missing (as root), starts it on 127.0.0.1 on a port it picks itself,
# and stops it on exit. Usage: bench/ipc.sh [-window 3s] [-warmup 1s]
# [-load 0.5 | -rate N] [-cpuprofile FILE] [-only berth|nats]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nats-server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench/ipc.sh: nats-server is missing: apt-get install nats-server (as root)" >&2
    exit 1
  fi
  echo "== installing nats-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nats-server >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq nats-server >/dev/null; }
fi
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
go build -o "$dir/ipc" ./bench/ipc
# -p -1: nats-server picks a free port itself and writes it to the ports
# file, so no port is assumed free.
nats-server -a 127.0.0.1 -p -1 --ports_file_dir "$dir" -l "$dir/nats.log" &
pid=$!
ports="$dir/nats-server_$pid.ports"
for _ in $(seq 100); do
  [ -s "$ports" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "bench/ipc.sh: nats-server exited:" >&2; cat "$dir/nats.log" >&2; exit 1; }
  sleep 0.1
done
url=$(grep -o 'nats://127\.0\.0\.1:[0-9]*' "$ports" 2>/dev/null | head -n1 || true)
[ -n "$url" ] || { echo "bench/ipc.sh: nats-server wrote no port in 10 s" >&2; exit 1; }
echo "nats-server $(nats-server --version | sed 's/^nats-server: //') at $url" >&2
"$dir/ipc" -nats "$url" -nats-pid "$pid" "$@"
