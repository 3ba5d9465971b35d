// Package deptest holds no code, only the test that keeps berth's import
// arrows pointing the way docs/architecture.md draws them. It lives in a
// package of its own, which builds nothing and runs in about a second, so
// that the check runs with every `go test ./...` and not only with the slow
// end-to-end package.
package deptest
