#!/usr/bin/env bash
# Regenerates the Go code of the driver protocol (driverplugin/driverpb)
# from driver.proto. Needs protoc (Debian: apt-get install protobuf-compiler);
# installs the two Go plugins at the pinned versions below into a private
# directory. The generated files are checked in: run this after changing
# driver.proto, and commit both.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO=v1.36.12      # google.golang.org/protobuf, as in go.mod
PROTOC_GEN_GO_GRPC=v1.6.2   # google.golang.org/grpc/cmd/protoc-gen-go-grpc

command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
GOBIN=$bin go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"
PATH=$bin:$PATH protoc -I driverplugin/driverpb \
  --go_out=driverplugin/driverpb --go_opt=paths=source_relative \
  --go-grpc_out=driverplugin/driverpb --go-grpc_opt=paths=source_relative \
  driverplugin/driverpb/driver.proto
echo "regenerated driverplugin/driverpb"
