//go:build race

package e2e

// raceEnabled makes TestMain build the binaries with -race too, so that the
// daemons' own goroutines run under the race detector.
const raceEnabled = true
