// Command berth-driver-bwrap is the bwrap driver: it runs each child in a
// bubblewrap sandbox (package sandbox), as a berth driver plugin reached
// through go-plugin (package driverplugin). Needs pick it with
// `need add ... --driver bwrap --driver-opt bind=/srv/data`.
//
// Install it as <pluginsdirectory>/berth-driver-bwrap; see docs/drivers.md,
// "The bwrap driver".
package main

import (
	"os"
	"time"

	"berth/driverplugin"
	"berth/sandbox"
	"berth/version"
)

func main() {
	driverplugin.Logger().Info("bwrap driver serving", "pid", os.Getpid())
	d := driverplugin.NewProcessDriver(driverplugin.Fingerprint{
		Name: sandbox.Name, Version: version.String(), Available: true, Signals: true,
	}, sandbox.Driver{})
	d.Check = (&sandbox.Checker{TTL: time.Minute}).Check
	d.Options = func(opts []string) error { _, err := sandbox.ParseOptions(opts); return err }
	driverplugin.Serve(d)
}
