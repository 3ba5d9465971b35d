#!/usr/bin/env bash
# The test command: formatting, vet, every test under the race detector
# (end-to-end tests build and run the real binaries), and a short run of
# every fuzz target. Installs nothing beyond Go modules. The end-to-end
# network-namespace tests need root and iproute2's `ip` and skip without
# them; .ci/run installs `ip` and sets BERTH_E2E_NETNS=require so that in CI
# they run or fail, never skip.
set -euo pipefail
cd "$(dirname "$0")"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...
# The raw system calls of the mesh's event loops differ between Linux
# architectures (arm64 has no poll(2), only ppoll(2)): vet for arm64 too.
echo "== go vet, linux/arm64"
GOOS=linux GOARCH=arm64 go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m ./...

# fuzzone runs one fuzz target. -fuzzminimizetime 1s: the default (60 s
# per new interesting input) spent a whole 10 s run minimizing the first
# one found; boltfile's FuzzCheck ran 122 inputs in 10 s, 24,511 with it.
#
# Go 1.26's fuzz coordinator can fail a run with a bare "context deadline
# exceeded" when -fuzztime ends while a worker is busy (Go issue 75804,
# fixed in Go 1.27): no input failed and none is written. Such a run
# counts as passed only if it wrote no new failing input and the target's
# whole corpus then passes when replayed; any other failure fails the
# suite.
fuzzone() {
  local pkg=$1 dir=$2 target=$3 out before after
  before=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | sort || true)
  if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 1s "$pkg" 2>&1); then
    echo "$out" | tail -1
    return 0
  fi
  echo "$out"
  after=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | sort || true)
  if [ "$before" = "$after" ] && echo "$out" | grep -q '^    context deadline exceeded$' &&
    ! echo "$out" | grep -q -e 'panic:' -e 'Failing input written' -e '_test.go:[0-9]*:'; then
    echo "-- $target: the fuzz coordinator's deadline race, no failing input; replaying the corpus"
    go test -count=1 -run "^${target}\$" "$pkg"
    return
  fi
  return 1
}

echo "== fuzz (${FUZZTIME:=10s} per target)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target"
    fuzzone "$pkg" "$dir" "$target"
  done
done
echo "== all tests passed"
