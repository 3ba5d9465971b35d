// Package e2e holds berth's end-to-end tests: they build the real
// lanmanager, master and example binaries (with -race when the tests run
// with it; a DATA RACE in any daemon's log fails the test) and run them as
// separate processes.
//
// Most tests talk over loopback. The multi-machine tests (netns_test.go,
// machines_test.go) build a lab of network namespaces: a bridge in a
// namespace of its own and one namespace per host (the lanmanager's and
// three masters'), each with eth0 on the bridge and an address from
// 10.213.77.0/24, a range that exists only inside those namespaces; nothing
// is added to the root namespace. They kill whole machines (every process
// in a namespace, after pulling its cable), cut a host off by taking its
// eth0 down and heal it by bringing it back. They need root and iproute2's
// `ip` and skip with a message without them; BERTH_E2E_NETNS=require (set
// by .ci/run as root) makes that skip a failure.
//
// Besides what berth reports, the tests look at the machine itself: every
// master runs with a marker in its environment that its children inherit,
// so the tests count the processes that really run (childProcs, leaders)
// and the ports that really listen (listeningPorts).
//
// Scenarios print their measurements as lines of the form
//
//	FIGURE name key=value key=value ...
//
// so that `go test -v -run 'Netns|Restart50|Burst|CrashLoop|Drain' ./e2e |
// grep FIGURE` collects them.
package e2e
