#!/usr/bin/env bash
# Prints round trips/s and p50/p99 through berth's WebSocket gateway next to
# the same requests sent directly over HTTP keep-alive, and pushes/s through
# its management API (issue 12; see go doc ./bench/gateway). Everything runs
# in one process on 127.0.0.1. Usage: bench/gateway.sh [-clients 16]
# [-duration 5s] [-max 2000000]
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/gateway "$@"
