#!/usr/bin/env bash
# Prints requests/s, p50/p99 and the proxy's CPU per request of the same
# wrk load through berth's ingress, through HAProxy (mode tcp, round-robin)
# over the same 2 instances, and to one instance directly, with the ratios
# (issue 10; see go doc ./bench/mesh). Installs haproxy and wrk from
# Debian's packages when missing (as root). Usage: bench/mesh.sh
# [-duration 10s] [-conns 32] [-threads 2] [-rounds 1] [-keep] [-cpuprofile FILE]
# [-haproxy-smart-connect]
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in haproxy wrk; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench/mesh.sh: missing ${missing[*]}: apt-get install ${missing[*]} (as root)" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/lanmanager ./cmd/master ./examples/hello ./bench/mesh
"$bin/mesh" -bin "$bin" "$@"
