#!/usr/bin/env bash
# Prints: the time to start N instances of examples/hello through berth
# (need add → all running) next to starting them directly, their ratio, and
# the kill -9 → running-again median. Usage: bench/startup.sh [-n 50] [-rounds 20]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/lanmanager ./examples/hello
go run ./bench/startup -bin "$bin" "$@"
