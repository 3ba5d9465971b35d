// Package e2e holds berth's end-to-end tests: they build the real
// lanmanager, master and example binaries and run them as separate
// processes talking over loopback.
package e2e
