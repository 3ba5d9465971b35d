#!/usr/bin/env bash
# Prints: the time to fork and exec N instances of a tiny program directly
# and wait until each said ready on a pipe, the time for the same N through
# a real lanmanager and 2 real masters (need add → all running), and their
# ratio. Usage: bench/procs.sh [-n 1000] [-masters 2] [-perf DIR] [-keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/lanmanager ./cmd/master ./bench/procs/tiny
go run ./bench/procs -bin "$bin" "$@"
